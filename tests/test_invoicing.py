"""Bill cycle engine: recurring per charge period (advance, catch-up, credits), proration, one-time, usage,
bundle discounts, coupons, tax and draft headers; settlement against what was issued (ledger and pending
drafts): adjustments and credits of earlier periods with their reasons and references, credit notes, the
lookback, the review and exceptions; the invoicing checks; a property test of settlement in batches.
In-memory DuckDB; every expected amount is worked out by hand in the comments (docs/billing.md has the same
examples)."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from decimal import Decimal as D

import duckdb
import pytest

from domain import install_macros
from pipelines.invoicing import INVOICE_COLUMNS, INVOICE_LINE_COLUMNS, build_invoice_lines, build_invoices
from pipelines.invoicing.engine import build_settlement_lines
from pipelines.invoicing.inputs import create_invoicing_inputs
from pipelines.invoicing.review import billing_exceptions, settlement_review
from warehouse.ddl import create_tables

FEB, MAR, APR = date(2025, 2, 1), date(2025, 3, 1), date(2025, 4, 1)
OPEN = date(9999, 12, 31)

# catalog ---------------------------------------------------------------------------------
BASIC, PLUS, FIXED30, NOPRORATE, QUARTER, ARREARS = 100, 101, 103, 104, 105, 106
MONTHLY10, QUARTERLY30, ANNUAL120, YEN, DINAR = 107, 108, 109, 110, 111
INTERVALS = {QUARTER: "QUARTERLY", QUARTERLY30: "QUARTERLY", ANNUAL120: "ANNUAL"}  # others NULL = MONTHLY

# customers / tax jurisdictions
CUSTOMERS = [{"customer_id": cid, "name": f"C{cid}", "country": country, "state": state}
             for cid, country, state in [(1, "US", "CA"), (2, "US", "OR"), (3, "DE", None), (4, "FR", None),
                                         (6, "JP", None), (7, "KW", None)]]
CUSTOMERS.append({"customer_id": 5, "name": "C5 Ltd", "country": "US", "state": "CA", "customer_type": "BUSINESS"})
TAX_RATES = [{"tax_rate_id": rid, "country": country, "state": state, "tax_name": name, "rate": rate,
              "effective_from": f, "effective_to": t}
             for rid, country, state, name, rate, f, t in [
                 (1, "US", "CA", "CA sales tax", "0.072500", date(2020, 1, 1), None),
                 (2, "US", None, "US sales tax", "0.050000", date(2020, 1, 1), None),
                 (3, "DE", None, "VAT", "0.190000", date(2020, 1, 1), date(2025, 4, 1)),
                 (4, "DE", None, "VAT", "0.160000", date(2025, 4, 1), None),
                 (5, "JP", None, "Consumption tax", "0.100000", date(2020, 1, 1), None)]]  # no KW rate
# products, plans, recurring charges
PRODUCTS = [{"product_id": pid, "sku": f"SKU{pid}", "name": name, "category": "MOBILE", "product_type": ptype,
             "base_price": price}
            for pid, name, ptype, price in [(10, "Mobile Basic", "SUBSCRIPTION", "29.99"),
                                            (11, "Mobile Plus", "SUBSCRIPTION", "49.99"),
                                            (20, "Phone X", "ONE_TIME", "499.00"),
                                            (21, "Activation fee", "ONE_TIME", "25.00")]]
_PLANS = [
    (BASIC, 10, "Basic", "29.99", None, True, "IN_ADVANCE"),
    (PLUS, 11, "Plus", "49.99", None, True, "IN_ADVANCE"),
    (FIXED30, 10, "Fixed30", "30.00", 30, True, "IN_ADVANCE"),
    (NOPRORATE, 10, "NoProrate", "10.00", None, False, "IN_ADVANCE"),
    (QUARTER, 10, "Quarterly", "89.97", None, True, "IN_ADVANCE"),
    (ARREARS, 10, "Arrears", "31.00", None, True, "IN_ARREARS"),
    (MONTHLY10, 10, "Monthly10", "10.00", None, True, "IN_ADVANCE"),
    (QUARTERLY30, 10, "Quarterly30", "30.00", None, True, "IN_ADVANCE"),
    (ANNUAL120, 10, "Annual120", "120.00", None, True, "IN_ADVANCE"),
    (YEN, 10, "Yen", "1000", None, True, "IN_ADVANCE"),
    (DINAR, 10, "Dinar", "10.000", None, True, "IN_ADVANCE"),
]
PLANS = [{"plan_id": plan, "product_id": product, "name": name} for plan, product, name, *_ in _PLANS]
PLAN_PRODUCT = {p["plan_id"]: p["product_id"] for p in PLANS}
CHARGES = [row for plan, _, _, price, pdays, prorate, timing in _PLANS for row in (
    {"price_id": plan * 10, "plan_id": plan, "billing_timing": timing, "prorate": prorate, "unit_price": price,
     "proration_days": pdays, "effective_from": date(2020, 1, 1),
     "billing_interval": INTERVALS.get(plan)},
    # a usage charge of the same plan must never produce a recurring line
    {"price_id": plan * 10 + 1, "plan_id": plan, "charge_code": "DATA", "charge_type": "USAGE", "metric": "data_mb",
     "charge_model": "PER_UNIT", "billing_timing": "IN_ARREARS", "prorate": False, "unit_price": "0.01",
     "effective_from": date(2020, 1, 1)})]
BUNDLES = [{"bundle_id": 7, "name": "Family", "discount_pct": "0.100000"}]
BUNDLE_MEMBERS = [{"bundle_member_id": 1, "bundle_id": 7, "product_id": 10}]  # Mobile Basic is a member

# where create_invoicing_inputs(con, "core") puts the inputs
INPUTS = {"accounts": "core.billing_accounts", "customers": "core.customers",
          "versions": "core.subscription_versions", "charges": "core.plan_charges", "products": "core.products",
          "plans": "core.price_plans", "bundles": "core.bundles_history", "bundle_members": "core.bundle_members",
          "orders": "core.orders", "order_items": "core.order_items", "tax_rates": "core.tax_rates",
          "rated": "core.rated_usage", "billed": "core.invoice_lines", "document_lines": "core.document_lines",
          "voids": "core.voids", "finalized_months": "core.finalized_months", "coupons": "core.coupons",
          "coupon_products": "core.coupon_products", "coupon_redemptions": "core.coupon_redemptions"}
BILLED = INPUTS["billed"]


def _ins(con, table, **cols):
    names = ", ".join(cols)
    marks = ", ".join("?" for _ in cols)
    con.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(cols.values()))


@pytest.fixture
def con():
    c = install_macros(duckdb.connect())
    yield c
    c.close()


def given(con, **rows):
    """The twelve inputs with the catalog above, plus ``rows`` (accounts, versions, orders, ...)."""
    catalog = {"customers": CUSTOMERS, "tax_rates": TAX_RATES, "products": PRODUCTS, "plans": PLANS,
               "charges": CHARGES, "bundles": BUNDLES, "bundle_members": BUNDLE_MEMBERS}
    assert create_invoicing_inputs(con, "core", **{**catalog, **rows}) == INPUTS


def account(aid, *, customer=1, bcd=1, cycle="MONTHLY", terms=14, currency="USD"):
    """Account ``aid`` (number A0001 for 1: the helper's default), USD unless said."""
    return {"account_id": aid, "customer_id": customer, "billing_cycle": cycle, "bill_cycle_day": bcd,
            "payment_terms_days": terms, "currency": currency}


def version(sub, aid, plan, start, end=OPEN, *, qty=1, bundle=None):
    return {"subscription_id": sub, "account_id": aid, "product_id": PLAN_PRODUCT[plan], "plan_id": plan,
            "bundle_id": bundle, "quantity": qty, "valid_from": start, "valid_to": end, "order_id": 1,
            "change_kind": "ACTIVATE"}


def replace_versions(con, *versions):
    """What the state layer says after a change: the services' versions, all of them."""
    con.execute("DELETE FROM core.subscription_versions")
    for v in versions:
        _ins(con, "core.subscription_versions", **v)


def run(con, month, **options):
    rel = build_invoice_lines(con, month, **INPUTS, **options)
    cols = rel.columns
    return [dict(zip(cols, r)) for r in rel.fetchall()]


def bill(con, month, **options):
    """Run the month and store its lines as drafts (what the writer does)."""
    con.execute(f"DELETE FROM {BILLED} WHERE billing_month = ?", [month])
    rel = build_invoice_lines(con, month, **INPUTS, **options)
    rel.create_view("_new_lines", replace=True)
    con.execute(f"INSERT INTO {BILLED} BY NAME SELECT * FROM _new_lines")
    return run_stored(con, month)


def run_stored(con, month):
    rel = con.sql(f"SELECT * FROM {BILLED} WHERE billing_month = DATE '{month}' "
                  "ORDER BY account_id, line_type, subscription_id, service_start, line_id")
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]


def headers(con, month):
    return [dict(zip(INVOICE_COLUMNS, r)) for r in build_invoices(con, month, BILLED).fetchall()]


def rec(lines, line_type="RECURRING"):
    return sorted(((l["service_start"], l["service_end"], l["amount"]) for l in lines if l["line_type"] == line_type))


# tests ------------------------------------------------------------------------------------

def test_columns_match_ddl(con):
    """The engine's columns are the contract's, with the default input names (core.*, billing.*) too."""
    given(con)
    assert build_invoice_lines(con, MAR, **INPUTS).columns == INVOICE_LINE_COLUMNS
    create_tables(con, ["billing.rated_usage", "billing.invoice_lines", "billing.invoices", "ledger.document_lines",
                        "ledger.voids", "ledger.finalized_months"])  # the core.* inputs are given() above
    rel = build_invoice_lines(con, MAR)
    assert rel.columns == INVOICE_LINE_COLUMNS
    table_cols = [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name='billing' AND table_name='invoice_lines' ORDER BY column_index").fetchall()]
    assert rel.columns == table_cols
    inv_cols = [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name='billing' AND table_name='invoices' ORDER BY column_index").fetchall()]
    assert build_invoices(con, MAR, "billing.invoice_lines").columns == inv_cols == INVOICE_COLUMNS
    # every table and column of the DDL is commented
    assert con.execute("SELECT count(*) FROM duckdb_columns() WHERE schema_name='billing' "
                       "AND table_name IN ('invoice_lines','invoices') AND (comment IS NULL OR comment = '')").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name='billing' "
                       "AND table_name IN ('invoice_lines','invoices') AND comment IS NOT NULL").fetchone()[0] == 2


def test_first_partial_period_then_advance(con):
    """Calendar account, service from Feb 10.
    Feb run: P = [Feb 1, Mar 1) 28 days: [Feb 10, Mar 1) = 19 days -> 29.99 x 19 / 28 = 20.3503571428 -> 20.35;
             N = [Mar 1, Apr 1) in advance: a full period = exactly 29.99.
    Mar run (Feb lines billed): March already covered -> only April 29.99."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, date(2025, 2, 10))])
    feb = bill(con, FEB)
    assert rec(feb) == [(date(2025, 2, 10), date(2025, 3, 1), D("20.35")), (date(2025, 3, 1), date(2025, 4, 1), D("29.99"))]
    first = next(l for l in feb if l["service_start"] == date(2025, 2, 10))
    assert (first["days"], first["period_days"], first["amount_precise"]) == (19, 28, D("20.3503571429"))
    mar = bill(con, MAR)
    assert rec(mar) == [(date(2025, 4, 1), date(2025, 5, 1), D("29.99"))]
    assert [l["line_type"] for l in mar] == ["RECURRING"]


def test_first_run_catches_up_current_period(con):
    """No billing history: the invoice charges P (not yet billed) and N in advance."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, date(2024, 11, 1))])
    assert rec(run(con, MAR)) == [(date(2025, 3, 1), date(2025, 4, 1), D("29.99")),
                                  (date(2025, 4, 1), date(2025, 5, 1), D("29.99"))]


def test_mid_month_start(con):
    """Start Mar 20: [Mar 20, Apr 1) = 12 of 31 days: 29.99 x 12 / 31 = 359.88 / 31 = 11.6090322581 -> 11.61."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, date(2025, 3, 20))])
    lines = run(con, MAR)
    assert rec(lines) == [(date(2025, 3, 20), date(2025, 4, 1), D("11.61")), (date(2025, 4, 1), date(2025, 5, 1), D("29.99"))]
    part = lines[0] if lines[0]["service_start"] == date(2025, 3, 20) else lines[1]
    assert (part["days"], part["period_days"], part["amount_precise"], part["unit_price"], part["quantity"]) == (
        12, 31, D("11.6090322581"), D("29.99"), D("1"))


def test_fixed_denominator_and_no_proration(con):
    """proration_days = 30: 30.00 x 12 / 30 = 12.00 for [Mar 20, Apr 1).
    prorate = false: any partial period is charged the full 10.00, for the whole period."""
    given(con, accounts=[account(1)],
          versions=[version(1, 1, FIXED30, date(2025, 3, 20)), version(2, 1, NOPRORATE, date(2025, 3, 20))])
    lines = run(con, MAR)
    fixed = [l for l in lines if l["subscription_id"] == 1]
    assert [(l["service_start"], l["days"], l["period_days"], l["amount"]) for l in fixed] == [
        (date(2025, 3, 20), 12, 30, D("12.00")), (date(2025, 4, 1), 30, 30, D("30.00"))]
    flat = [l for l in lines if l["subscription_id"] == 2]
    assert [(l["service_start"], l["service_end"], l["amount"]) for l in flat] == [
        (date(2025, 3, 1), date(2025, 4, 1), D("10.00")), (date(2025, 4, 1), date(2025, 5, 1), D("10.00"))]


def test_upgrade_mid_month_credit_and_new_charge(con):
    """Feb run (plan Basic, no change known): Feb 29.99 + March 29.99 in advance.
    Upgrade to Plus on Mar 10 (known at the March run):
      credit Basic [Mar 10, Apr 1) = 22/31: 29.99 x 22 / 31 = 659.78 / 31 = 21.2832258065 -> -21.28
      charge Plus  [Mar 10, Apr 1):         49.99 x 22 / 31 = 1099.78 / 31 = 35.4767741935 -> 35.48
      April Plus in advance 49.99."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, date(2025, 2, 1))])
    feb = bill(con, FEB)
    march_line = next(l for l in feb if l["service_start"] == date(2025, 3, 1))
    replace_versions(con, version(1, 1, BASIC, date(2025, 2, 1), date(2025, 3, 10)), version(1, 1, PLUS, date(2025, 3, 10)))
    mar = bill(con, MAR)
    credit = [l for l in mar if l["line_type"] == "RECURRING_CREDIT"]
    assert len(credit) == 1
    c = credit[0]
    assert (c["service_start"], c["service_end"], c["days"], c["period_days"], c["amount_precise"], c["amount"]) == (
        date(2025, 3, 10), date(2025, 4, 1), 22, 31, D("-21.28"), D("-21.28"))
    assert c["reference_line_id"] == march_line["line_id"] and c["plan_id"] == BASIC and c["price_id"] == BASIC * 10
    assert [(l["plan_id"], l["service_start"], l["service_end"], l["amount"]) for l in mar if l["line_type"] == "RECURRING"] == [
        (PLUS, date(2025, 3, 10), date(2025, 4, 1), D("35.48")), (PLUS, date(2025, 4, 1), date(2025, 5, 1), D("49.99"))]
    # April with Feb + March billed: everything up to May is settled, only May in advance
    apr = bill(con, APR)
    assert [(l["line_type"], l["plan_id"], l["service_start"], l["amount"]) for l in apr] == [
        ("RECURRING", PLUS, date(2025, 5, 1), D("49.99"))]
    # re-running March after April changes nothing (billed is read only for earlier months)
    assert run(con, MAR) == mar


def test_downgrade_at_period_end(con):
    """Plus until Apr 1, Basic from Apr 1 (downgrade at period end): no credit, April billed on Basic."""
    given(con, accounts=[account(1)], versions=[version(1, 1, PLUS, date(2025, 2, 1))])
    bill(con, FEB)
    replace_versions(con, version(1, 1, PLUS, date(2025, 2, 1), date(2025, 4, 1)), version(1, 1, BASIC, date(2025, 4, 1)))
    mar = bill(con, MAR)
    assert [(l["line_type"], l["plan_id"], l["service_start"], l["service_end"], l["amount"]) for l in mar] == [
        ("RECURRING", BASIC, date(2025, 4, 1), date(2025, 5, 1), D("29.99"))]


def test_cancellation_credit_with_bundle_discount(con):
    """Bundle Family (10 %), Basic from Feb 1, cancelled Mar 10.
    Feb: 29.99 with discount -round(2.999) = -3.00 -> net 26.99; CA tax 7.25 %: 26.99 x 0.0725 = 1.956775 -> 1.96.
    Mar: credit [Mar 10, Apr 1) -21.28, discount -round(-2.128) = +2.13, net -19.15,
         tax reversed at the credited line's rate: -19.15 x 0.0725 = -1.388375 -> -1.39. Nothing for April."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, date(2025, 2, 1), bundle=7)])
    feb = bill(con, FEB)
    for l in feb:
        assert (l["amount"], l["discount_amount"], l["net_amount"], l["tax_rate"], l["tax_amount"], l["total_amount"]) == (
            D("29.99"), D("-3.00"), D("26.99"), D("0.072500"), D("1.96"), D("28.95"))
    replace_versions(con, version(1, 1, BASIC, date(2025, 2, 1), date(2025, 3, 10), bundle=7))
    mar = bill(con, MAR)
    assert len(mar) == 1
    c = mar[0]
    assert (c["line_type"], c["service_start"], c["service_end"], c["amount"], c["discount_amount"], c["net_amount"],
            c["tax_amount"], c["total_amount"]) == (
        "RECURRING_CREDIT", date(2025, 3, 10), date(2025, 4, 1), D("-21.28"), D("2.13"), D("-19.15"), D("-1.39"), D("-20.54"))
    # April: nothing due, nothing to credit -> no lines, no invoice
    assert bill(con, APR) == []


def test_cancellation_before_prepaid_period_credits_whole_line(con):
    """Cancelled effective Mar 1 after March was billed in advance: the whole line is reversed exactly."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, date(2025, 2, 10))])
    feb = bill(con, FEB)
    con.execute("UPDATE core.subscription_versions SET valid_to = DATE '2025-03-01'")
    mar = bill(con, MAR)
    prepaid = next(l for l in feb if l["service_start"] == date(2025, 3, 1))
    assert [(l["line_type"], l["amount_precise"], l["reference_line_id"]) for l in mar] == [
        ("RECURRING_CREDIT", -prepaid["amount_precise"], prepaid["line_id"])]


def test_quantity_change_credits_old_quantity(con):
    """Quantity 1 -> 3 from Mar 16: credit qty 1 for [Mar 16, Apr 1) = 16/31, charge qty 3 for the same days.
    29.99 x 16 / 31 = 15.4787096774 -> -15.48; 3 x 29.99 = 89.97 x 16 / 31 = 46.4361290323 -> 46.44."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, date(2025, 2, 1))])
    bill(con, FEB)
    replace_versions(con, version(1, 1, BASIC, date(2025, 2, 1), date(2025, 3, 16)),
                     version(1, 1, BASIC, date(2025, 3, 16), qty=3))
    mar = bill(con, MAR)
    assert [(l["line_type"], l["quantity"], l["service_start"], l["amount"]) for l in mar] == [
        ("RECURRING", D(3), date(2025, 3, 16), D("46.44")), ("RECURRING", D(3), date(2025, 4, 1), D("89.97")),
        ("RECURRING_CREDIT", D(1), date(2025, 3, 16), D("-15.48"))]


def test_one_time_items(con):
    """Confirmed order effective Mar 20: device 1 x 499.00 and activation fee (no agreed price -> base 25.00).
    A cancelled order and an order effective in the next period are not billed in March."""
    orders = [{"order_id": oid, "order_number": f"O{oid}", "account_id": 1, "status": status, "effective_date": eff}
              for oid, status, eff in [(500, "CONFIRMED", date(2025, 3, 20)), (501, "CANCELLED", date(2025, 3, 21)),
                                       (502, "CONFIRMED", date(2025, 4, 2))]]
    items = [{"order_item_id": 1, "order_id": 500, "product_id": 20, "unit_price": "499.00", "subscription_id": 1},
             {"order_item_id": 2, "order_id": 500, "product_id": 21, "unit_price": None, "subscription_id": 1},
             {"order_item_id": 3, "order_id": 500, "product_id": 10, "plan_id": BASIC, "subscription_id": 1},
             {"order_item_id": 4, "order_id": 501, "product_id": 20, "unit_price": "499.00"},
             {"order_item_id": 5, "order_id": 502, "product_id": 21, "quantity": 2, "unit_price": "20.00"}]
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, date(2025, 3, 20))], orders=orders,
          order_items=items)
    mar = bill(con, MAR)
    one = [(l["source_ref"], l["product_id"], l["quantity"], l["unit_price"], l["amount"], l["service_start"], l["tax_amount"])
           for l in mar if l["line_type"] == "ONE_TIME"]
    # tax CA 7.25 %: 499.00 x 0.0725 = 36.1775 -> 36.18; 25.00 x 0.0725 = 1.8125 -> 1.81
    assert sorted(one) == [("1", 20, D(1), D("499.00"), D("499.00"), date(2025, 3, 20), D("36.18")),
                           ("2", 21, D(1), D("25.00"), D("25.00"), date(2025, 3, 20), D("1.81"))]
    apr = bill(con, APR)
    assert [(l["source_ref"], l["amount"]) for l in apr if l["line_type"] == "ONE_TIME"] == [("5", D("40.00"))]


def test_usage_lines_from_rated(con):
    """Rated rows of the month become lines as rated (amounts copied, not re-rounded); the rated line type is kept.
    A charge with no usage at all (0 events, 0.00) is not invoiced; usage within the allowance (events, 0.00) is."""
    rated = [{"rated_line_id": rid, "billing_month": month, "account_id": 1, "subscription_id": 1, "plan_id": BASIC,
              "price_id": BASIC * 10 + 1, "charge_code": "DATA", "metric": "data_mb", "line_type": ltype,
              "service_start": date(2025, 3, 1), "service_end": date(2025, 4, 1), "quantity": qty,
              "billable_quantity": billable, "event_count": events, "unit_price": price, "amount_precise": precise,
              "amount": amount}
             for rid, month, ltype, qty, billable, events, price, precise, amount in [
        ("r1", MAR, "USAGE", "1234.56", "1234.56", 10, "0.01", "12.3456000000", "12.35"),
        ("r2", MAR, "MINIMUM_TRUE_UP", "0", "0", 0, None, "5", "5.00"),
        ("r0", FEB, "USAGE", "100", "100", 1, "0.01", "1", "1.00"),          # another month
        ("rz", MAR, "USAGE", "0", "0", 0, "0.01", "0", "0"),                 # no usage at all
        ("ra", MAR, "USAGE", "400", "0", 3, "0.01", "0", "0"),               # within the allowance
    ]]
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, date(2025, 3, 1))], rated=rated)
    usage = [l for l in run(con, MAR) if l["source_ref"] in ("r0", "r1", "r2", "rz", "ra")]
    assert sorted((l["source_ref"], l["line_type"], l["quantity"], l["unit_price"], l["amount_precise"], l["amount"],
                   l["discount_amount"], l["tax_amount"], l["product_id"]) for l in usage) == [
        ("r1", "USAGE", D("1234.56"), D("0.01"), D("12.3456"), D("12.35"), D(0), D("0.90"), 10),  # 12.35 x 0.0725 = 0.895375 -> 0.90
        ("r2", "MINIMUM_TRUE_UP", D(0), None, D(5), D("5.00"), D(0), D("0.36"), 10),              # 5 x 0.0725 = 0.3625 -> 0.36
        ("ra", "USAGE", D(0), D("0.01"), D(0), D(0), D(0), D(0), 10),
    ]


def test_tax_jurisdictions_and_rate_change(con):
    """CA customer: state rate 7.25 % beats the US country rate; OR customer: no state rate -> US 5 %.
    DE: VAT 19 % until Apr 1, 16 % from Apr 1; the tax point is the issue date = the period end: the February
    invoice (issued Mar 1) taxes March in advance at 19 %, the March invoice (issued Apr 1, the day the rate
    changes) taxes April at 16 %. FR: no rate -> tax_rate NULL, tax 0, jurisdiction recorded (a blocking
    NO_TAX_RATE exception, tests/test_invoicing_settlement.py)."""
    given(con, accounts=[account(aid, customer=aid) for aid in (1, 2, 3, 4)],
          versions=[version(aid, aid, BASIC, date(2025, 2, 1)) for aid in (1, 2, 3, 4)])
    feb = bill(con, FEB)
    got = {(l["account_id"], l["service_start"]): (l["tax_jurisdiction"], l["tax_name"], l["tax_rate"], l["tax_amount"], l["tax_point"])
           for l in feb}
    # 29.99 x 0.0725 = 2.174275 -> 2.17; x 0.05 = 1.4995 -> 1.50; x 0.19 = 5.6981 -> 5.70
    assert got[(1, date(2025, 3, 1))] == ("US-CA", "CA sales tax", D("0.072500"), D("2.17"), MAR)
    assert got[(2, date(2025, 3, 1))] == ("US-OR", "US sales tax", D("0.050000"), D("1.50"), MAR)
    assert got[(3, date(2025, 3, 1))] == ("DE", "VAT", D("0.190000"), D("5.70"), MAR)
    assert got[(4, date(2025, 3, 1))] == ("FR", None, None, D("0"), MAR)
    mar = bill(con, MAR)
    de = [l for l in mar if l["account_id"] == 3]
    # March invoice, tax point Apr 1 (its issue date), the day 16 % starts: 29.99 x 0.16 = 4.7984 -> 4.80
    assert [(l["service_start"], l["tax_rate"], l["tax_amount"], l["tax_point"]) for l in de] == [
        (date(2025, 4, 1), D("0.160000"), D("4.80"), APR)]


def test_bill_cycle_day_15(con):
    """BCD 15, March run: P = [Feb 15, Mar 15) (28 days), N = [Mar 15, Apr 15).
    Service from Feb 20: 23 days: 29.99 x 23 / 28 = 689.77 / 28 = 24.6346428571 -> 24.63; N full 29.99.
    Invoice date Mar 15, due Mar 15 + 14 = Mar 29."""
    given(con, accounts=[account(1, bcd=15)], versions=[version(1, 1, BASIC, date(2025, 2, 20))])
    mar = bill(con, MAR)
    assert rec(mar) == [(date(2025, 2, 20), date(2025, 3, 15), D("24.63")), (date(2025, 3, 15), date(2025, 4, 15), D("29.99"))]
    (h,) = headers(con, MAR)
    assert (h["invoice_id"], h["period_start"], h["period_end"], h["invoice_date"], h["due_date"]) == (
        "INV-A0001-20250315", date(2025, 2, 15), date(2025, 3, 15), date(2025, 3, 15), date(2025, 3, 29))


def test_quarterly_account(con):
    """Quarterly, calendar, on a QUARTERLY charge (89.97 per quarter): February has no period end (no invoice);
    March bills the charge period [Jan 1, Apr 1) (90 days) and [Apr 1, Jul 1) in advance. Service from Feb 15:
    45 days: 89.97 x 45 / 90 = 44.985 -> 44.99 (half away from zero)."""
    given(con, accounts=[account(1, cycle="QUARTERLY")], versions=[version(1, 1, QUARTER, date(2025, 2, 15))])
    assert run(con, FEB) == []
    assert rec(run(con, MAR)) == [(date(2025, 2, 15), date(2025, 4, 1), D("44.99")), (date(2025, 4, 1), date(2025, 7, 1), D("89.97"))]
    assert run(con, APR) == []


def test_in_arrears_recurring_billed_for_p_only(con):
    given(con, accounts=[account(1)], versions=[version(1, 1, ARREARS, date(2025, 3, 1))])
    assert rec(run(con, MAR)) == [(date(2025, 3, 1), date(2025, 4, 1), D("31.00"))]


def test_deleted_rows_ignored(con):
    given(con, accounts=[account(1), account(2)],
          versions=[version(1, 1, BASIC, date(2025, 3, 1)), version(2, 2, BASIC, date(2025, 3, 1))])
    con.execute("UPDATE core.billing_accounts SET is_deleted = true WHERE account_id = 2")
    assert {l["account_id"] for l in run(con, MAR)} == {1}


def _scenario(con):
    given(con, accounts=[account(aid, customer=cust, bcd=bcd) for aid, cust, bcd in [(1, 1, 1), (2, 2, 15), (3, 3, 1)]],
          versions=[version(1, 1, BASIC, date(2025, 2, 10), bundle=7), version(2, 2, PLUS, date(2025, 1, 5), qty=2),
                    version(3, 3, BASIC, date(2025, 3, 3)), version(4, 3, NOPRORATE, date(2025, 3, 3))],
          orders=[{"order_id": 1, "order_number": "O1", "account_id": 3, "effective_date": date(2025, 3, 3)}],
          order_items=[{"order_item_id": 1, "order_id": 1, "product_id": 20, "quantity": 2, "unit_price": "333.333"}])


def test_idempotent_and_totals(con):
    _scenario(con)
    bill(con, FEB)
    first = build_invoice_lines(con, MAR, **INPUTS).fetchall()
    second = build_invoice_lines(con, MAR, **INPUTS).fetchall()
    assert first == second and len(first) > 0
    assert len({r[0] for r in first}) == len(first)  # line_id unique
    mar = bill(con, MAR)
    assert run(con, MAR) == mar  # re-run with the month's own lines stored: identical
    inv = headers(con, MAR)
    assert headers(con, MAR) == inv
    assert [h["invoice_number"] for h in inv] == ["D-202503-000001", "D-202503-000002", "D-202503-000003"]
    for h in inv:
        ls = [l for l in mar if l["invoice_id"] == h["invoice_id"]]
        assert h["status"] == "DRAFT" and h["line_count"] == len(ls) > 0
        assert h["subtotal"] == sum(l["amount"] for l in ls)
        assert h["discount_total"] == sum(l["discount_amount"] for l in ls)
        assert h["net_total"] == sum(l["net_amount"] for l in ls) == h["subtotal"] + h["discount_total"]
        assert h["tax_total"] == sum(l["tax_amount"] for l in ls)
        assert h["total"] == sum(l["total_amount"] for l in ls) == h["net_total"] + h["tax_total"]
    for l in mar:
        assert l["net_amount"] == l["amount"] + l["discount_amount"]
        assert l["total_amount"] == l["net_amount"] + l["tax_amount"]
    # account 3: two 333.333 devices = 666.666 -> 666.67; 9.99 x ... no-prorate full 10.00 for March and April
    dev = next(l for l in mar if l["line_type"] == "ONE_TIME")
    assert (dev["amount_precise"], dev["amount"]) == (D("666.666"), D("666.67"))


def test_zero_line_accounts_get_no_invoice(con):
    given(con, accounts=[account(1), account(2)], versions=[version(1, 1, BASIC, date(2025, 3, 1))])
    bill(con, MAR)
    assert [h["account_id"] for h in headers(con, MAR)] == [1]


def test_price_change_mid_period(con):
    """Basic's fee becomes 35.00 from Mar 15 (new price_id): March was billed in advance at 29.99, so March's
    invoice credits the old price for [Mar 15, Apr 1) = 17/31: 29.99 x 17 / 31 = 16.4461290323 -> -16.45,
    charges the new one for the same days: 35 x 17 / 31 = 19.1935483871 -> 19.19, and April at 35.00."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, date(2025, 2, 1))])
    bill(con, FEB)
    con.execute("UPDATE core.plan_charges SET effective_to = TIMESTAMP '2025-03-15' WHERE price_id = ?", [BASIC * 10])
    _ins(con, "core.plan_charges", price_id=9999, plan_id=BASIC, charge_code="BASE_FEE", charge_type="RECURRING",
         charge_model="FLAT", billing_timing="IN_ADVANCE", prorate=True, unit_price=D("35.00"),
         effective_from=date(2025, 3, 15))
    mar = bill(con, MAR)
    assert [(l["line_type"], l["price_id"], l["service_start"], l["service_end"], l["amount"]) for l in mar] == [
        ("RECURRING", 9999, date(2025, 3, 15), date(2025, 4, 1), D("19.19")),
        ("RECURRING", 9999, date(2025, 4, 1), date(2025, 5, 1), D("35.00")),
        ("RECURRING_CREDIT", BASIC * 10, date(2025, 3, 15), date(2025, 4, 1), D("-16.45"))]


def test_upgrade_bcd_15_credit_spans_only_its_period(con):
    """BCD 15: the March run billed [Mar 15, Apr 15) in advance. Upgrade on Apr 1 known at the April run
    (P = [Mar 15, Apr 15), N = [Apr 15, May 15)): credit Basic [Apr 1, Apr 15) = 14/31:
    29.99 x 14 / 31 = 13.5441935484 -> -13.54; Plus 49.99 x 14 / 31 = 22.5761290323 -> 22.58; N on Plus 49.99."""
    given(con, accounts=[account(1, bcd=15)], versions=[version(1, 1, BASIC, date(2025, 2, 15))])
    bill(con, MAR)
    replace_versions(con, version(1, 1, BASIC, date(2025, 2, 15), date(2025, 4, 1)), version(1, 1, PLUS, date(2025, 4, 1)))
    apr = bill(con, APR)
    assert [(l["line_type"], l["plan_id"], l["service_start"], l["service_end"], l["days"], l["period_days"], l["amount"])
            for l in apr] == [
        ("RECURRING", PLUS, date(2025, 4, 1), date(2025, 4, 15), 14, 31, D("22.58")),
        ("RECURRING", PLUS, date(2025, 4, 15), date(2025, 5, 15), 30, 30, D("49.99")),
        ("RECURRING_CREDIT", BASIC, date(2025, 4, 1), date(2025, 4, 15), 14, 31, D("-13.54"))]


def test_largest_usage_line_is_taxed_exactly(con):
    """A usage line just under the rating's line limit (10^12) is taxed without overflow:
    999,999,999,999.99 x 0.0725 = 72,499,999,999.999275 -> 72,500,000,000.00; total 1,072,499,999,999.99."""
    big = {"rated_line_id": "big", "billing_month": MAR, "account_id": 1, "subscription_id": 1, "plan_id": BASIC,
           "price_id": BASIC * 10 + 1, "charge_code": "DATA", "metric": "data_mb", "service_start": date(2025, 3, 1),
           "service_end": date(2025, 4, 1), "quantity": "99999999999999", "unit_price": "0.01",
           "amount_precise": "999999999999.99", "amount": "999999999999.99"}
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, date(2025, 3, 1))], rated=[big])
    big = next(l for l in run(con, MAR) if l["source_ref"] == "big")
    assert (big["net_amount"], big["tax_amount"], big["total_amount"]) == (
        D("999999999999.99"), D("72500000000.00"), D("1072499999999.99"))


def test_invoicing_inputs_defaults(con):
    """create_invoicing_inputs with only what matters (the docs/billing.md example): account 1 is A0001, monthly on
    day 1, US customer (no US rate here: tax 0); the version takes its plan's product; the charge is a recurring
    fee in advance. February already billed [Mar 20, Apr 1) (a billed row: RECURRING, USD, no discount, no tax), so
    March charges April only (29.99) and the month's rated row (billable = quantity 100, USAGE, 1.00)."""
    kw = create_invoicing_inputs(
        con, "lib", accounts=[{"account_id": 1}], customers=[{"customer_id": 1}],
        products=[{"product_id": 10, "name": "Mobile Basic"}], plans=[{"plan_id": 100, "product_id": 10, "name": "Basic"}],
        charges=[{"price_id": 1000, "plan_id": 100, "unit_price": "29.99"}],
        versions=[{"subscription_id": 1, "account_id": 1, "plan_id": 100, "valid_from": "2025-03-20"}],
        rated=[{"rated_line_id": "r1", "billing_month": MAR, "account_id": 1, "subscription_id": 1, "plan_id": 100,
                "price_id": 1001, "charge_code": "DATA", "service_start": MAR, "service_end": APR, "quantity": "100",
                "amount_precise": "1", "amount": "1.00"}],
        billed=[{"line_id": "L-feb", "invoice_id": "INV-A0001-20250301", "billing_month": FEB, "account_id": 1,
                 "subscription_id": 1, "price_id": 1000, "quantity": 1, "service_start": "2025-03-20",
                 "service_end": "2025-04-01", "amount": "11.61"}])
    assert kw == {arg: name.replace("core.", "lib.") for arg, name in INPUTS.items()}
    lines = [dict(zip(INVOICE_LINE_COLUMNS, r)) for r in build_invoice_lines(con, MAR, **kw).fetchall()]
    assert [(l["invoice_id"], l["line_type"], l["product_id"], l["service_start"], l["quantity"], l["amount"], l["tax_amount"])
            for l in lines] == [
        ("INV-A0001-20250401", "RECURRING", 10, APR, D(1), D("29.99"), D(0)),
        ("INV-A0001-20250401", "USAGE", 10, MAR, D(100), D("1.00"), D(0))]


# settlement: what is owed minus what was issued ------------------------------------------------

JAN = date(2025, 1, 1)


def finalize(con, month):
    """What finalization appends (pipelines/ledger does it in the warehouse): the month's drafts as lines of
    numbered ledger documents (INV-/CN-YYYYMM-NNNNNN here), and the month as finalized."""
    con.execute(f"""
        INSERT INTO core.document_lines BY NAME
        SELECT * EXCLUDE (invoice_id), invoice_id AS document_id,
               CASE WHEN invoice_id LIKE 'CN-%' THEN 'CREDIT_NOTE' ELSE 'INVOICE' END AS document_type,
               CASE WHEN invoice_id LIKE 'CN-%' THEN 'CN-' ELSE 'INV-' END || strftime(billing_month, '%Y%m') || '-'
                 || lpad(CAST(dense_rank() OVER (ORDER BY invoice_id) AS VARCHAR), 6, '0') AS document_number
        FROM {BILLED} WHERE billing_month = ?""", [month])
    con.execute("INSERT INTO core.finalized_months (billing_month, invoices, credit_notes, drafts_hash, finalized_at) "
                "VALUES (?, 0, 0, '', now())", [month])


def doc(con, line_id):
    return con.execute("SELECT document_number FROM core.document_lines WHERE line_id = ?", [line_id]).fetchone()[0]


def settled(con, month, **options):
    rel = build_settlement_lines(con, month, **INPUTS, **options)
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]


def brief(lines):
    """(line_type, service_start, service_end, amount, service_month, adjustment_reason) per line, sorted."""
    return sorted((l["line_type"], l["service_start"], l["service_end"], l["amount"], l["service_month"],
                   l["adjustment_reason"]) for l in lines)


def test_finalize_then_rerun_changes_nothing_issued(con):
    """January drafted and finalized; re-running January drafts nothing (everything owed is issued); February
    settles against the ledger: only March in advance (29.99), the same rows on every re-run."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, JAN)])
    jan = bill(con, JAN)
    assert rec(jan) == [(JAN, FEB, D("29.99")), (FEB, MAR, D("29.99"))]
    finalize(con, JAN)
    assert run(con, JAN) == []
    feb = bill(con, FEB)
    assert rec(feb) == [(MAR, APR, D("29.99"))]
    assert run(con, FEB) == feb and bill(con, FEB) == feb


def test_late_usage_after_finalization_is_an_adjustment_referencing_the_original(con):
    """January billed rated lines r1 10.00 and r2 3.00 and was finalized. January is then re-rated with late
    usage: r1 becomes 12.50, a new line r3 4.00 appears, r2 no longer exists. February's run:
      r1: +2.50 USAGE_ADJUSTMENT (LATE_USAGE) referencing January's r1 line and document; tax at February's
          tax point: 2.50 x 0.0725 = 0.18125 -> 0.18;
      r3: +4.00 (LATE_USAGE, nothing to reference): 4 x 0.0725 = 0.29;
      r2: -3.00 reversed in full (BACKDATED_CHANGE) at January's tax: -3 x 0.0725 = -0.2175 -> -0.22."""
    def rated(rid, amount):
        return {"rated_line_id": rid, "billing_month": JAN, "account_id": 1, "subscription_id": 1, "plan_id": BASIC,
                "price_id": BASIC * 10 + 1, "charge_code": "DATA", "metric": "data_mb", "service_start": JAN,
                "service_end": FEB, "quantity": "100", "unit_price": "0.01", "amount_precise": amount, "amount": amount}
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, JAN)], rated=[rated("r1", "10.00"), rated("r2", "3.00")])
    jan = bill(con, JAN)
    finalize(con, JAN)
    r1 = next(l for l in jan if l["source_ref"] == "r1")
    con.execute("DELETE FROM core.rated_usage")
    for row in (rated("r1", "12.50"), rated("r3", "4.00")):
        _ins(con, "core.rated_usage", **{k: v for k, v in row.items()}, currency="USD", line_type="USAGE",
             charge_model="PER_UNIT", period_start=JAN, period_end=FEB, segment_start=JAN, segment_end=FEB,
             proration_factor=1, included_quantity=0, billable_quantity=100, event_count=1)
    feb = bill(con, FEB)
    adjustments = sorted((l["source_ref"], l["line_type"], l["amount"], l["tax_amount"], l["service_month"],
                          l["adjustment_reason"], l["reference_line_id"], l["reference_document_number"])
                         for l in feb if l["line_type"] == "USAGE_ADJUSTMENT")
    r2 = next(l for l in jan if l["source_ref"] == "r2")
    assert adjustments == [
        ("r1", "USAGE_ADJUSTMENT", D("2.50"), D("0.18"), JAN, "LATE_USAGE", r1["line_id"], doc(con, r1["line_id"])),
        ("r2", "USAGE_ADJUSTMENT", D("-3.00"), D("-0.22"), JAN, "BACKDATED_CHANGE", r2["line_id"], doc(con, r2["line_id"])),
        ("r3", "USAGE_ADJUSTMENT", D("4.00"), D("0.29"), JAN, "LATE_USAGE", None, None)]
    assert {l["invoice_id"] for l in feb} == {"INV-A0001-20250301"}  # an individual: corrections on the invoice


def test_backdated_disconnect_is_credited_on_a_credit_note(con):
    """A business customer (credits of issued documents go on a credit note). January billed January and
    February in advance and was finalized; a disconnect effective Jan 20 becomes known in February:
      [Jan 20, Feb 1) 12/31: 29.99 x 12 / 31 = 11.6090322581 -> -11.61, service month January, BACKDATED_CHANGE;
      [Feb 1, Mar 1) the whole prepaid line reversed: -29.99 (the current period: no reason);
    both reference January's lines and document, on CN-A0001-20250301 (due on its date)."""
    given(con, accounts=[account(1, customer=5)], versions=[version(1, 1, BASIC, JAN)])
    jan = bill(con, JAN)
    finalize(con, JAN)
    replace_versions(con, version(1, 1, BASIC, JAN, date(2025, 1, 20)))
    feb = bill(con, FEB)
    assert brief(feb) == [("RECURRING_CREDIT", date(2025, 1, 20), FEB, D("-11.61"), JAN, "BACKDATED_CHANGE"),
                          ("RECURRING_CREDIT", FEB, MAR, D("-29.99"), FEB, None)]
    by_start = {l["service_start"]: l for l in jan}
    for l in feb:
        credited = by_start[JAN if l["service_start"] < FEB else FEB]
        assert (l["reference_line_id"], l["reference_document_number"]) == (credited["line_id"], doc(con, credited["line_id"]))
        assert (l["invoice_id"], l["tax_point"], l["tax_rate"]) == ("CN-A0001-20250301", FEB, D("0.0725"))  # January's tax
    (h,) = headers(con, FEB)
    # -11.61 - 29.99 = -41.60 net; tax at January's rate: -11.61 x 0.0725 = -0.841725 -> -0.84, -29.99 -> -2.17
    assert (h["document_type"], h["net_total"], h["tax_total"], h["total"], h["due_date"]) == (
        "CREDIT_NOTE", D("-41.60"), D("-3.01"), D("-44.61"), MAR)


def test_backdated_activation_is_billed_on_the_next_invoice(con):
    """Account 2 was billed in January (so Tally went live in January); account 1's service from Jan 10 becomes
    known only in February. February bills [Jan 10, Feb 1) 22/31: 29.99 x 22 / 31 = 21.2832258065 -> 21.28
    (service month January, BACKDATED_CHANGE), February 29.99 (the current period) and March in advance 29.99."""
    given(con, accounts=[account(1), account(2, customer=2)], versions=[version(2, 2, BASIC, JAN)])
    bill(con, JAN)
    finalize(con, JAN)
    _ins(con, "core.subscription_versions", **version(1, 1, BASIC, date(2025, 1, 10)))
    feb = [l for l in bill(con, FEB) if l["account_id"] == 1]
    assert brief(feb) == [("RECURRING", date(2025, 1, 10), FEB, D("21.28"), JAN, "BACKDATED_CHANGE"),
                          ("RECURRING", FEB, MAR, D("29.99"), FEB, None),
                          ("RECURRING", MAR, APR, D("29.99"), FEB, None)]


def test_order_failing_payment_after_billing_is_credited(con):
    """A phone (300.00) of an order confirmed effective Jan 15 is billed in January (tax 300 x 0.0725 = 21.75) and
    finalized; the order then fails payment. February: ONE_TIME_CREDIT -300.00, tax -21.75, ORDER_REVERSED,
    referencing the January line; the only line, negative: the draft is a credit note."""
    orders = [{"order_id": 500, "order_number": "O500", "account_id": 1, "effective_date": date(2025, 1, 15)}]
    items = [{"order_item_id": 1, "order_id": 500, "product_id": 20, "unit_price": "300.00"}]
    given(con, accounts=[account(1)], orders=orders, order_items=items)
    jan = bill(con, JAN)
    assert [(l["line_type"], l["amount"], l["tax_amount"]) for l in jan] == [("ONE_TIME", D("300.00"), D("21.75"))]
    finalize(con, JAN)
    con.execute("UPDATE core.orders SET status = 'PAYMENT_FAILED'")
    (credit,) = bill(con, FEB)
    assert (credit["line_type"], credit["amount"], credit["tax_amount"], credit["adjustment_reason"], credit["service_month"],
            credit["reference_line_id"], credit["reference_document_number"], credit["invoice_id"]) == (
        "ONE_TIME_CREDIT", D("-300.00"), D("-21.75"), "ORDER_REVERSED", JAN, jan[0]["line_id"],
        doc(con, jan[0]["line_id"]), "CN-A0001-20250301")
    assert [h["document_type"] for h in headers(con, FEB)] == ["CREDIT_NOTE"]
    assert run(con, MAR) == []  # reversed once


@pytest.mark.parametrize("cancelled_on, credit", [
    (MAR, D("-29.99")),               # the first day: the whole prepaid line reversed exactly
    (date(2025, 3, 31), D("-0.97")),  # the last day: [Mar 31, Apr 1) 1/31: 29.99 / 31 = 0.9674193548 -> -0.97
])
def test_cancellation_on_the_first_and_last_day_is_a_credit_note(con, cancelled_on, credit):
    """February billed March in advance; a cancellation effective on March's first or last day leaves the March
    run with only a credit: its draft is a credit note (an invoice never has a negative total)."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, date(2025, 2, 1))])
    bill(con, FEB)
    replace_versions(con, version(1, 1, BASIC, date(2025, 2, 1), cancelled_on))
    (line,) = bill(con, MAR)
    assert (line["line_type"], line["amount"], line["invoice_id"]) == ("RECURRING_CREDIT", credit, "CN-A0001-20250401")
    (h,) = headers(con, MAR)
    assert (h["invoice_id"], h["document_type"], h["due_date"], h["subtotal"]) == ("CN-A0001-20250401", "CREDIT_NOTE", APR, credit)


def test_quarterly_account_with_monthly_quarterly_and_annual_charges_in_a_leap_year(con):
    """Quarterly calendar account, March 2028 run (first run): P = [Jan 1, Apr 1) (91 days), N = [Apr 1, Jul 1).
    Monthly 10.00 from Jan 1: each month January to June in advance: 6 x 10.00 (3 monthly fees per quarter).
    Quarterly 30.00 from Jan 1: [Jan 1, Apr 1) and [Apr 1, Jul 1): 2 x 30.00.
    Annual 120.00 from Feb 15: the charge period [Jan 1 2028, Jan 1 2029) has 366 days (leap year) and starts
    before N ends: [Feb 15, Jan 1 2029) = 321 days: 120 x 321 / 366 = 105.2459016393 -> 105.25."""
    y = 2028
    given(con, accounts=[account(1, cycle="QUARTERLY")],
          versions=[version(1, 1, MONTHLY10, date(y, 1, 1)), version(2, 1, QUARTERLY30, date(y, 1, 1)),
                    version(3, 1, ANNUAL120, date(y, 2, 15))])
    lines = run(con, date(y, 3, 1))
    by_sub = {s: sorted((l["service_start"], l["service_end"], l["days"], l["period_days"], l["amount"])
                        for l in lines if l["subscription_id"] == s) for s in (1, 2, 3)}
    months = [date(y, m, 1) for m in range(1, 8)]
    assert by_sub[1] == [(a, b, (b - a).days, (b - a).days, D("10.00")) for a, b in zip(months, months[1:])]
    assert by_sub[2] == [(date(y, 1, 1), date(y, 4, 1), 91, 91, D("30.00")), (date(y, 4, 1), date(y, 7, 1), 91, 91, D("30.00"))]
    assert by_sub[3] == [(date(y, 2, 15), date(y + 1, 1, 1), 321, 366, D("105.25"))]


def test_annual_account_with_monthly_and_annual_charges(con):
    """Annual calendar account, billed in December 2027: P = [Jan 1 2027, Jan 1 2028), N = [Jan 1 2028, Jan 1
    2029). Monthly 10.00 from Jul 1 2027: July 2027 .. December 2028 = 18 x 10.00. Annual 120.00 from Jul 1
    2027: [Jul 1 2027, Jan 1 2028) 184/365: 120 x 184 / 365 = 60.4931506849 -> 60.49, and 2028 whole (366
    days) 120.00."""
    given(con, accounts=[account(1, cycle="ANNUAL")],
          versions=[version(1, 1, MONTHLY10, date(2027, 7, 1)), version(2, 1, ANNUAL120, date(2027, 7, 1))])
    assert run(con, date(2027, 11, 1)) == []  # no period ends in November
    lines = run(con, date(2027, 12, 1))
    monthly = [l for l in lines if l["subscription_id"] == 1]
    assert len(monthly) == 18 and {l["amount"] for l in monthly} == {D("10.00")}
    assert sorted((l["service_start"], l["days"], l["period_days"], l["amount"]) for l in lines if l["subscription_id"] == 2) == [
        (date(2027, 7, 1), 184, 365, D("60.49")), (date(2028, 1, 1), 366, 366, D("120.00"))]


def test_new_annual_subscription_is_billed_on_the_next_run(con):
    """Monthly account, annual charge 120.00 from Mar 20 2025: the March run bills its charge period
    [Jan 1 2025, Jan 1 2026) from Mar 20 (287 of 365 days): 120 x 287 / 365 = 94.3561643836 -> 94.36, not at the
    period's end. April to November bill nothing more; December (N = [Jan 1, Feb 1 2026)) bills 2026: 120.00."""
    given(con, accounts=[account(1)], versions=[version(1, 1, ANNUAL120, date(2025, 3, 20))])
    assert rec(bill(con, MAR)) == [(date(2025, 3, 20), date(2026, 1, 1), D("94.36"))]
    assert bill(con, APR) == []
    assert rec(bill(con, date(2025, 12, 1))) == [(date(2026, 1, 1), date(2027, 1, 1), D("120.00"))]


@pytest.mark.parametrize("month, start, expected", [
    # April: P = [Mar 31, Apr 30) (30 days): [Apr 10, Apr 30) 20/30: 29.99 x 20 / 30 = 19.9933333333 -> 19.99;
    # N = [Apr 30, May 31) 29.99
    (APR, date(2025, 4, 10), [(date(2025, 4, 10), date(2025, 4, 30), D("19.99")), (date(2025, 4, 30), date(2025, 5, 31), D("29.99"))]),
    # February: P = [Jan 31, Feb 28) (28 days): [Feb 14, Feb 28) 14/28: 29.99 x 14 / 28 = 14.995 -> 15.00 (half
    # away from zero); N = [Feb 28, Mar 31) 29.99
    (FEB, date(2025, 2, 14), [(date(2025, 2, 14), date(2025, 2, 28), D("15.00")), (date(2025, 2, 28), date(2025, 3, 31), D("29.99"))]),
])
def test_bill_cycle_day_31_in_short_months(con, month, start, expected):
    given(con, accounts=[account(1, bcd=31)], versions=[version(1, 1, BASIC, start)])
    assert rec(run(con, month)) == expected


def test_missing_tax_rate_is_a_blocking_exception(con):
    """A French customer (no rate for FR): the line has tax_rate NULL and 0 tax, and the run reports a blocking
    NO_TAX_RATE exception for it, never 0 tax silently."""
    given(con, accounts=[account(1, customer=4)], versions=[version(1, 1, BASIC, MAR)])
    rel = build_settlement_lines(con, MAR, **INPUTS)
    rel.to_table("_settled")
    exceptions = billing_exceptions(con, MAR, "_settled").fetchall()
    lines = con.sql("SELECT line_id, tax_rate, tax_amount FROM _settled").fetchall()
    assert {(rate, tax) for _, rate, tax in lines} == {(None, D(0))}
    assert sorted((e[4], e[5], e[6]) for e in exceptions) == sorted((lid, "NO_TAX_RATE", True) for lid, _, _ in lines)
    assert all("no tax rate for FR on 2025-04-01" in e[7] for e in exceptions)


def test_bundle_discount_is_effective_dated_and_for_members_only(con):
    """Bundle 7: 10 % until Mar 5, 20 % from Mar 5; Mobile Basic is a member, Mobile Plus is not.
    February (both from Feb 1 in the bundle): Basic Feb and March (service starts before Mar 5) at 10 %:
    29.99 -> -round(2.999) = -3.00; Plus no discount. March: Basic cancelled Mar 10: the credit
    [Mar 10, Apr 1) -21.28 reverses at the credited line's 10 %: -round(-2.128) = +2.13 (not 20 %: +4.26);
    a new Basic from Mar 20 at 20 %: [Mar 20, Apr 1) 11.61 -> -round(2.322) = -2.32, April 29.99 -> -6.00."""
    given(con, accounts=[account(1)],
          versions=[version(1, 1, BASIC, date(2025, 2, 1), bundle=7), version(2, 1, PLUS, date(2025, 2, 1), bundle=7)],
          bundles=[{"bundle_id": 7, "name": "Family", "discount_pct": "0.100000", "valid_to": date(2025, 3, 5)},
                   {"bundle_id": 7, "name": "Family", "discount_pct": "0.200000", "valid_from": date(2025, 3, 5)}])
    feb = bill(con, FEB)
    assert sorted((l["subscription_id"], l["service_start"], l["discount_pct"], l["discount_amount"]) for l in feb) == [
        (1, FEB, D("0.1"), D("-3.00")), (1, MAR, D("0.1"), D("-3.00")), (2, FEB, None, D(0)), (2, MAR, None, D(0))]
    replace_versions(con, version(1, 1, BASIC, date(2025, 2, 1), date(2025, 3, 10), bundle=7),
                     version(2, 1, PLUS, date(2025, 2, 1), bundle=7), version(3, 1, BASIC, date(2025, 3, 20), bundle=7))
    mar = bill(con, MAR)
    assert sorted((l["subscription_id"], l["line_type"], l["amount"], l["discount_pct"], l["discount_amount"])
                  for l in mar if l["subscription_id"] != 2) == [
        (1, "RECURRING_CREDIT", D("-21.28"), D("0.1"), D("2.13")),
        (3, "RECURRING", D("11.61"), D("0.2"), D("-2.32")), (3, "RECURRING", D("29.99"), D("0.2"), D("-6.00"))]


def test_lookback_bills_recent_differences_and_reports_older_ones(con):
    """Lookback 1 month. January to March were drafted (March billed April in advance); in April a disconnect
    effective Jan 15 becomes known. The April run (bills from March, looks back to February):
      March [Mar 1, Apr 1) -29.99 BACKDATED_CHANGE and April [Apr 1, May 1) -29.99 (current) are drafted;
      February [Feb 1, Mar 1) -29.99 is beyond the lookback: reported (settlement review, a non-blocking
      exception), not drafted; January's days are not looked at."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, JAN)])
    for m in (JAN, FEB, MAR):
        bill(con, m, lookback_months=1)
    replace_versions(con, version(1, 1, BASIC, JAN, date(2025, 1, 15)))
    everything = settled(con, APR, lookback_months=1)
    assert sorted((l["service_start"], l["amount"], l["adjustment_reason"], l["beyond_lookback"]) for l in everything) == [
        (FEB, D("-29.99"), "BACKDATED_CHANGE", True), (MAR, D("-29.99"), "BACKDATED_CHANGE", False),
        (APR, D("-29.99"), None, False)]
    assert brief(bill(con, APR, lookback_months=1)) == [
        ("RECURRING_CREDIT", MAR, APR, D("-29.99"), MAR, "BACKDATED_CHANGE"),
        ("RECURRING_CREDIT", APR, date(2025, 5, 1), D("-29.99"), APR, None)]
    con.sql(f"SELECT * FROM ({build_settlement_lines(con, APR, **INPUTS, lookback_months=1).sql_query()})").to_table("_settled")
    review = settlement_review(con, APR, "_settled").fetchall()
    assert sorted((r[3], r[4], r[5], r[6], r[7], r[10]) for r in review) == [
        ("BEYOND_LOOKBACK", "BACKDATED_CHANGE", FEB, 1, D("-29.99"), None),
        ("CREDIT", "BACKDATED_CHANGE", MAR, 1, D("-29.99"), "CREDIT_NOTE"),
        ("CREDIT", "SERVICE_CHANGE", APR, 1, D("-29.99"), "CREDIT_NOTE")]  # April's prepaid line credited
    assert [(e[5], e[6]) for e in billing_exceptions(con, APR, "_settled").fetchall()] == [("BEYOND_LOOKBACK", False)]


@pytest.mark.parametrize("plan, customer, currency, expected", [
    # 1000 JPY x 12 / 31 = 387.0967741935 -> 387 (no minor unit); tax 10 %: 38.7 -> 39; April 1000, tax 100
    (YEN, 6, "JPY", [(date(2025, 3, 20), D("387"), D("39")), (APR, D("1000"), D("100"))]),
    # 10.000 KWD x 12 / 31 = 3.8709677419 -> 3.871 (3 decimals); no KW rate: tax 0 and NO_TAX_RATE
    (DINAR, 7, "KWD", [(date(2025, 3, 20), D("3.871"), D(0)), (APR, D("10.000"), D(0))]),
])
def test_currencies_with_zero_and_three_decimals(con, plan, customer, currency, expected):
    given(con, accounts=[account(1, customer=customer, currency=currency)], versions=[version(1, 1, plan, date(2025, 3, 20))])
    lines = run(con, MAR)
    assert sorted((l["service_start"], l["amount"], l["tax_amount"]) for l in lines) == expected
    assert {l["currency"] for l in lines} == {currency}


# property: settling batch by batch = billing with everything known ----------------------------

MONTHS = [JAN, FEB, MAR, APR]
PLAN_CHOICES = [BASIC, PLUS, MONTHLY10, ANNUAL120]


def _history(rng):
    """A random small history: per account (1: monthly on a random bill cycle day, an individual; 2: monthly on
    day 1, a business), services with changes and a disconnect, one-time orders, rated usage; each fact known
    from a random month (a start, change or end known late is backdated)."""
    def day():
        return date(2024, 12, 15) + timedelta(days=rng.randrange(0, 130))

    def known(d):
        return rng.choice([m for m in MONTHS if m >= min(d.replace(day=1), APR)] + MONTHS[:1])

    accounts = [account(1, bcd=rng.choice([1, 15, 31])), account(2, customer=5)]
    services, sub = [], 0
    for aid in (1, 2):
        for _ in range(rng.randint(1, 2)):
            sub += 1
            start = day()
            changes = sorted({start + timedelta(days=rng.randrange(1, 90)) for _ in range(rng.randint(0, 2))})
            end = start + timedelta(days=rng.randrange(20, 150)) if rng.random() < 0.5 else None
            services.append({
                "sub": sub, "aid": aid, "start": (start, known(start), rng.choice(PLAN_CHOICES), rng.randint(1, 2)),
                "changes": [(d, known(d), rng.choice(PLAN_CHOICES), rng.randint(1, 2)) for d in changes
                            if end is None or d < end],
                "end": (end, known(end)) if end else None})
    orders = []
    for aid in (1, 2):
        confirmed = rng.choice(MONTHS)
        orders.append({"oid": 500 + aid, "aid": aid, "effective": day(), "confirmed_from": confirmed,
                       "failed_from": rng.choice([m for m in MONTHS if m > confirmed] + [None])})
    usage = [{"rid": f"r{aid}-{m:%m}-{j}", "aid": aid, "month": m,
              "amounts": [None if k < i else D(rng.randrange(0, 2000)) / 100 for k in range(len(MONTHS))]}
             for aid in (1, 2) for i, m in enumerate(MONTHS) for j in range(2)]
    return accounts, services, orders, usage


def _state_as_known_at(con, batch, accounts, services, orders, usage):
    """Replace the inputs with what is known by month ``MONTHS[batch]`` (``batch`` None: everything, final)."""
    month = MONTHS[-1] if batch is None else MONTHS[batch]
    knows = (lambda m: True) if batch is None else (lambda m: m <= month)
    for table in ("subscription_versions", "orders", "order_items", "rated_usage"):
        con.execute(f"DELETE FROM core.{table}")
    for s in services:
        start, start_known, plan, qty = s["start"]
        if not knows(start_known):
            continue
        cuts = [(start, plan, qty)] + [(d, p, q) for d, k, p, q in s["changes"] if knows(k)]
        end = s["end"][0] if s["end"] and knows(s["end"][1]) else OPEN
        bounds = [d for d, _, _ in cuts[1:]] + [end]
        for (d, p, q), until in zip(cuts, bounds):
            if d < until:
                _ins(con, "core.subscription_versions", **version(s["sub"], s["aid"], p, d, until, qty=q))
    for o in orders:
        if knows(o["confirmed_from"]):
            failed = o["failed_from"] is not None and knows(o["failed_from"])
            _ins(con, "core.orders", order_id=o["oid"], order_number=f"O{o['oid']}", account_id=o["aid"],
                 order_type="NEW_SERVICE", status="PAYMENT_FAILED" if failed else "CONFIRMED",
                 effective_date=o["effective"], is_deleted=False)
            _ins(con, "core.order_items", order_item_id=o["oid"], order_id=o["oid"], product_id=20, quantity=1,
                 unit_price=D("99.99"), is_deleted=False)
    column = len(MONTHS) - 1 if batch is None else batch
    for u in usage:
        amount = u["amounts"][column]
        if amount is not None:
            _ins(con, "core.rated_usage", rated_line_id=u["rid"], billing_month=u["month"], account_id=u["aid"],
                 subscription_id=1, plan_id=BASIC, price_id=BASIC * 10 + 1, charge_code="DATA", metric="data_mb",
                 charge_model="PER_UNIT", line_type="USAGE", currency="USD", period_start=u["month"],
                 period_end=u["month"], service_start=u["month"], service_end=u["month"] + timedelta(days=1),
                 segment_start=u["month"], segment_end=u["month"], proration_factor=1, quantity=1,
                 included_quantity=0, billable_quantity=1, event_count=1, amount_precise=amount, amount=amount)


_NET_BILLED = f"""
    SELECT account_id, CASE WHEN line_type LIKE 'RECURRING%' THEN 'RECURRING' ELSE 'OTHER' END AS kind,
           CASE WHEN line_type LIKE 'RECURRING%' THEN CAST(subscription_id AS VARCHAR) || '/' || CAST(price_id AS VARCHAR)
                || ' x ' || CAST(quantity AS VARCHAR) ELSE source_ref END AS line_key,
           sum(amount) AS net, count(*) AS lines
    FROM {BILLED} GROUP BY ALL HAVING sum(amount) <> 0 ORDER BY ALL"""
_NET_COVERAGE = f"""
    SELECT account_id, subscription_id, price_id, quantity, CAST(d AS DATE) AS day,
           sum(CASE WHEN line_type = 'RECURRING' THEN 1 ELSE -1 END) AS net
    FROM {BILLED}, generate_series(service_start, CAST(service_end - 1 AS DATE), INTERVAL 1 DAY) AS t(d)
    WHERE line_type IN ('RECURRING', 'RECURRING_CREDIT')
    GROUP BY ALL HAVING net <> 0 ORDER BY ALL"""


@pytest.mark.parametrize("seed", range(24))
def test_settling_batch_by_batch_equals_billing_the_final_state(seed):
    """For a random history whose facts arrive in random batches (month by month, late and backdated ones
    included, some months finalized), billing each month as its batch lands and treating its drafts (or the
    ledger, once finalized) as issued leaves, after the last month, the same net billed per account and line
    key as billing the same months over the final state: usage and one-time amounts exactly, recurring day
    coverage exactly (every day 0 or 1), and amounts exactly: a charge later partly credited keeps exactly what
    one run bills for the days left (29.99 - credit = round(29.99 x 9 / 31) = 8.71)."""
    rng = random.Random(seed)
    history = _history(rng)
    finalize_through = rng.randrange(-1, len(MONTHS) - 1)  # months 0..k are finalized after being billed
    results = []
    for batches in (True, False):
        c = install_macros(duckdb.connect())
        given(c, accounts=history[0])
        for i, month in enumerate(MONTHS):
            _state_as_known_at(c, i if batches else None, *history)
            bill(c, month)
            if batches and i <= finalize_through:
                finalize(c, month)
        results.append((c.sql(_NET_BILLED).fetchall(), c.sql(_NET_COVERAGE).fetchall()))
        assert {net for *_, net in results[-1][1]} <= {1}
        c.close()
    (by_batch, by_batch_days), (final, final_days) = results
    assert by_batch_days == final_days
    assert [r[:4] for r in by_batch] == [r[:4] for r in final]


def test_coupon_is_applied_before_tax_and_allocated_by_largest_remainder(con):
    """10 % once, redeemed from Mar 1, on an account with Basic and Plus from Mar 1 (the March run bills March and
    April of each: 29.99, 29.99, 49.99, 49.99 = 159.96): 159.96 x 0.10 = 15.996 -> 16.00 = 1600 cents, shared by
    base: 1600 x 2999 / 15996 = 299.975 -> 299, 1600 x 4999 / 15996 = 500.025 -> 500; 1598 cents, the 2 left go to
    the largest remainders (the Basic lines): -3.00, -3.00, -5.00, -5.00. Tax on the net: (29.99 - 3.00) x 0.0725
    = 1.956775 -> 1.96; (49.99 - 5.00) x 0.0725 = 3.261775 -> 3.26. The April run (once: used up) has none."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, MAR), version(2, 1, PLUS, MAR)],
          coupons=[{"coupon_id": 9, "code": "WELCOME10", "name": "Welcome", "discount_type": "PERCENT",
                    "percent_off": "0.10", "duration": "ONCE"}],
          coupon_redemptions=[{"redemption_id": 1, "coupon_id": 9, "account_id": 1, "starts_on": MAR}])
    mar = bill(con, MAR)
    assert sorted((l["amount"], l["coupon_id"], l["coupon_amount"], l["net_amount"], l["tax_amount"]) for l in mar) == [
        (D("29.99"), 9, D("-3.00"), D("26.99"), D("1.96")), (D("29.99"), 9, D("-3.00"), D("26.99"), D("1.96")),
        (D("49.99"), 9, D("-5.00"), D("44.99"), D("3.26")), (D("49.99"), 9, D("-5.00"), D("44.99"), D("3.26"))]
    (h,) = headers(con, MAR)
    assert (h["subtotal"], h["coupon_total"], h["net_total"]) == (D("159.96"), D("-16.00"), D("143.96"))
    assert {(l["coupon_id"], l["coupon_amount"]) for l in bill(con, APR)} == {(None, D(0))}


def test_invoicing_checks_find_what_is_wrong(con):
    """The invoicing asset's blocking checks on warehouse tables: clean drafts pass; then a day billed twice (a
    second charge over [Mar 10, Apr 1) of a key already charged for March, in the ledger), a credit larger than
    the line it credits (-30.00 of 29.99), a line without a tax rate and a header whose total differs from its
    lines are each found."""
    from pipelines.assets.invoicing import (
        credits_beyond_credited, lines_without_tax_rate, service_days_billed_twice, totals_mismatches)
    create_tables(con, ["billing.invoices", "ledger.document_lines", "ledger.voids", "ledger.finalized_months"])
    line = dict(billing_month=MAR, account_id=1, subscription_id=1, price_id=1000, quantity=1, currency="USD",
                discount_amount=0, coupon_amount=0, tax_rate="0.0725", line_type="RECURRING")
    create_invoicing_inputs(con, "billing", billed=[  # billing.invoice_lines (the helper's other tables are not read)
        {**line, "line_id": "L1", "invoice_id": "INV-1", "service_start": MAR, "service_end": APR, "amount": "29.99",
         "tax_amount": "2.17", "total_amount": "32.16"}])
    con.execute("INSERT INTO billing.invoices (invoice_id, invoice_number, account_id, billing_month, period_start, "
                "period_end, invoice_date, due_date, currency, status, line_count, subtotal, discount_total, coupon_total, "
                "net_total, tax_total, total, document_type) VALUES ('INV-1', 'D-1', 1, ?, ?, ?, ?, ?, 'USD', 'DRAFT', 1, "
                "29.99, 0, 0, 29.99, 2.17, 32.16, 'INVOICE')", [MAR, MAR, APR, APR, APR])
    checks = (totals_mismatches, lines_without_tax_rate, service_days_billed_twice, credits_beyond_credited)
    assert [check(con, MAR, MAR) for check in checks] == [[], [], [], []]
    _ins(con, "ledger.document_lines", line_id="L0", document_id="INV-0", document_number="INV-2025-000001",
         document_type="INVOICE", billing_month=FEB, account_id=1, subscription_id=1, line_type="RECURRING",
         price_id=1000, quantity=1, service_start=date(2025, 3, 10), service_end=APR, amount=D("20.00"),
         discount_amount=0, coupon_amount=0, net_amount=D("20.00"), tax_amount=0, total_amount=D("20.00"), currency="USD")
    _ins(con, "billing.invoice_lines", **{**line, "line_id": "C1", "invoice_id": "INV-1", "line_type": "RECURRING_CREDIT",
                                          "service_start": date(2025, 3, 20), "service_end": APR, "amount": D("-30.00"),
                                          "net_amount": D("-30.00"), "tax_rate": None, "tax_amount": 0,
                                          "total_amount": D("-30.00"), "reference_line_id": "L1"})
    assert [check(con, MAR, MAR) for check in checks] == [["INV-1"], ["C1"], ["1/1000 x 1.0000000000"], ["L1"]]


JANUARY_USAGE = {"rated_line_id": "r1", "billing_month": JAN, "account_id": 1, "subscription_id": 1, "plan_id": BASIC,
                 "price_id": BASIC * 10 + 1, "charge_code": "DATA", "service_start": JAN, "service_end": FEB,
                 "quantity": "500", "unit_price": "0.01", "amount_precise": "5", "amount": "5.00"}
"""Usage of account 1 in January: rated line r1, 500 MB at 0.01 = 5.00."""


def test_voided_document_is_billed_again(con):
    """January (January, February in advance, usage r1 5.00) was finalized, then its document voided: ISSUED no
    longer counts it, so February bills January again (service month January, reason VOIDED: 29.99 and the usage
    5.00 as a USAGE_ADJUSTMENT), February (the current period) and March in advance."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, JAN)], rated=[JANUARY_USAGE])
    bill(con, JAN)
    finalize(con, JAN)
    (document_id, number) = con.execute("SELECT DISTINCT document_id, document_number FROM core.document_lines").fetchone()
    _ins(con, "core.voids", document_id=document_id, document_number=number, document_type="INVOICE", account_id=1,
         currency="USD", total=D("0"), reason="issued in error", voided_on=FEB, voided_at=datetime(2025, 2, 3))
    assert brief(bill(con, FEB)) == [
        ("RECURRING", JAN, FEB, D("29.99"), JAN, "VOIDED"), ("RECURRING", FEB, MAR, D("29.99"), FEB, None),
        ("RECURRING", MAR, APR, D("29.99"), FEB, None), ("USAGE_ADJUSTMENT", JAN, FEB, D("5.00"), JAN, "VOIDED")]


def test_backdated_price_change_is_a_catalog_change(con):
    """January billed January and February at 29.99 and was finalized; a new price version 35.00 from Jan 15
    lands in February. February credits the old price for [Jan 15, Feb 1) (17/31: 29.99 x 17 / 31 =
    16.4461290323 -> -16.45) and charges the new one (35 x 17 / 31 = 19.1935483871 -> 19.19), both
    CATALOG_CHANGE of January; February itself is re-priced as the current period (-29.99, +35.00) and March
    is billed at 35.00."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, JAN)])
    bill(con, JAN)
    finalize(con, JAN)
    con.execute("UPDATE core.plan_charges SET effective_to = TIMESTAMP '2025-01-15' WHERE price_id = ?", [BASIC * 10])
    _ins(con, "core.plan_charges", price_id=9999, plan_id=BASIC, charge_code="BASE_FEE", charge_type="RECURRING",
         charge_model="FLAT", billing_timing="IN_ADVANCE", prorate=True, unit_price=D("35.00"),
         effective_from=date(2025, 1, 15), is_deleted=False)
    assert brief(bill(con, FEB)) == [
        ("RECURRING", date(2025, 1, 15), FEB, D("19.19"), JAN, "CATALOG_CHANGE"), ("RECURRING", FEB, MAR, D("35.00"), FEB, None),
        ("RECURRING", MAR, APR, D("35.00"), FEB, None),
        ("RECURRING_CREDIT", date(2025, 1, 15), FEB, D("-16.45"), JAN, "CATALOG_CHANGE"),
        ("RECURRING_CREDIT", FEB, MAR, D("-29.99"), FEB, None)]
