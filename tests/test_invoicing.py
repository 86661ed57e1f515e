"""Bill cycle engine: recurring (advance, catch-up, credits), proration, one-time, usage,
bundle discounts, tax and draft headers. In-memory DuckDB; every expected amount is worked
out by hand in the comments (docs/billing.md has the same examples)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import duckdb
import pytest

from domain import install_macros
from pipelines.invoicing import INVOICE_COLUMNS, INVOICE_LINE_COLUMNS, build_invoice_lines, build_invoices
from pipelines.invoicing.inputs import create_invoicing_inputs
from warehouse.ddl import create_tables

FEB, MAR, APR = date(2025, 2, 1), date(2025, 3, 1), date(2025, 4, 1)
OPEN = date(9999, 12, 31)

# catalog ---------------------------------------------------------------------------------
BASIC, PLUS, FIXED30, NOPRORATE, QUARTER, ARREARS = 100, 101, 103, 104, 105, 106

# customers / tax jurisdictions
CUSTOMERS = [{"customer_id": cid, "name": f"C{cid}", "country": country, "state": state}
             for cid, country, state in [(1, "US", "CA"), (2, "US", "OR"), (3, "DE", None), (4, "FR", None)]]
TAX_RATES = [{"tax_rate_id": rid, "country": country, "state": state, "tax_name": name, "rate": rate,
              "effective_from": f, "effective_to": t}
             for rid, country, state, name, rate, f, t in [
                 (1, "US", "CA", "CA sales tax", "0.072500", date(2020, 1, 1), None),
                 (2, "US", None, "US sales tax", "0.050000", date(2020, 1, 1), None),
                 (3, "DE", None, "VAT", "0.190000", date(2020, 1, 1), date(2025, 4, 1)),
                 (4, "DE", None, "VAT", "0.160000", date(2025, 4, 1), None)]]
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
]
PLANS = [{"plan_id": plan, "product_id": product, "name": name} for plan, product, name, *_ in _PLANS]
PLAN_PRODUCT = {p["plan_id"]: p["product_id"] for p in PLANS}
CHARGES = [row for plan, _, _, price, pdays, prorate, timing in _PLANS for row in (
    {"price_id": plan * 10, "plan_id": plan, "billing_timing": timing, "prorate": prorate, "unit_price": price,
     "proration_days": pdays, "effective_from": date(2020, 1, 1)},
    # a usage charge of the same plan must never produce a recurring line
    {"price_id": plan * 10 + 1, "plan_id": plan, "charge_code": "DATA", "charge_type": "USAGE", "metric": "data_mb",
     "charge_model": "PER_UNIT", "billing_timing": "IN_ARREARS", "prorate": False, "unit_price": "0.01",
     "effective_from": date(2020, 1, 1)})]
BUNDLES = [{"bundle_id": 7, "name": "Family", "discount_pct": "0.100000"}]

# where create_invoicing_inputs(con, "core") puts the twelve inputs
INPUTS = {"accounts": "core.billing_accounts", "customers": "core.customers",
          "versions": "core.subscription_versions", "charges": "core.plan_charges", "products": "core.products",
          "plans": "core.price_plans", "bundles": "core.bundles", "orders": "core.orders",
          "order_items": "core.order_items", "tax_rates": "core.tax_rates", "rated": "core.rated_usage",
          "billed": "core.invoice_lines"}
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
               "charges": CHARGES, "bundles": BUNDLES}
    assert create_invoicing_inputs(con, "core", **{**catalog, **rows}) == INPUTS


def account(aid, *, customer=1, bcd=1, cycle="MONTHLY", terms=14):
    """Account ``aid`` (number A0001 for 1: the helper's default), USD."""
    return {"account_id": aid, "customer_id": customer, "billing_cycle": cycle, "bill_cycle_day": bcd,
            "payment_terms_days": terms}


def version(sub, aid, plan, start, end=OPEN, *, qty=1, bundle=None):
    return {"subscription_id": sub, "account_id": aid, "product_id": PLAN_PRODUCT[plan], "plan_id": plan,
            "bundle_id": bundle, "quantity": qty, "valid_from": start, "valid_to": end, "order_id": 1,
            "change_kind": "ACTIVATE"}


def replace_versions(con, *versions):
    """What the state layer says after a change: the services' versions, all of them."""
    con.execute("DELETE FROM core.subscription_versions")
    for v in versions:
        _ins(con, "core.subscription_versions", **v)


def run(con, month):
    rel = build_invoice_lines(con, month, **INPUTS)
    cols = rel.columns
    return [dict(zip(cols, r)) for r in rel.fetchall()]


def bill(con, month):
    """Run the month and store its lines as billed (what the writer does)."""
    con.execute(f"DELETE FROM {BILLED} WHERE billing_month = ?", [month])
    rel = build_invoice_lines(con, month, **INPUTS)
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
    create_tables(con, ["billing.rated_usage", "billing.invoice_lines", "billing.invoices"])
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
        date(2025, 3, 10), date(2025, 4, 1), 22, 31, D("-21.2832258065"), D("-21.28"))
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
    DE: VAT 19 % until Apr 1, 16 % from Apr 1: tax point = period end - 1 day (Mar 31 -> 19 %, Apr 30 -> 16 %).
    FR: no rate -> tax 0, jurisdiction recorded."""
    given(con, accounts=[account(aid, customer=aid) for aid in (1, 2, 3, 4)],
          versions=[version(aid, aid, BASIC, date(2025, 3, 1)) for aid in (1, 2, 3, 4)])
    mar = bill(con, MAR)
    got = {(l["account_id"], l["service_start"]): (l["tax_jurisdiction"], l["tax_name"], l["tax_rate"], l["tax_amount"]) for l in mar}
    # 29.99 x 0.0725 = 2.174275 -> 2.17; x 0.05 = 1.4995 -> 1.50; x 0.19 = 5.6981 -> 5.70
    assert got[(1, date(2025, 3, 1))] == ("US-CA", "CA sales tax", D("0.072500"), D("2.17"))
    assert got[(2, date(2025, 3, 1))] == ("US-OR", "US sales tax", D("0.050000"), D("1.50"))
    assert got[(3, date(2025, 3, 1))] == ("DE", "VAT", D("0.190000"), D("5.70"))
    assert got[(4, date(2025, 3, 1))] == ("FR", None, D("0"), D("0"))
    apr = bill(con, APR)
    de = [l for l in apr if l["account_id"] == 3]
    # April invoice, tax point Apr 30: 16 % -> 29.99 x 0.16 = 4.7984 -> 4.80
    assert [(l["service_start"], l["tax_rate"], l["tax_amount"]) for l in de] == [(date(2025, 5, 1), D("0.160000"), D("4.80"))]


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
    """Quarterly, calendar: February has no period end (no invoice); March bills [Jan 1, Apr 1) (90 days) in
    arrears and [Apr 1, Jul 1) in advance. Service from Feb 15: 45 days: 89.97 x 45 / 90 = 44.985 -> 44.99
    (half away from zero)."""
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
