"""The bill cycle end to end: hand-built customers as CDC extracts, materialized through Dagster
into a temporary DuckDB, every invoice line, tax, total and the revenue recognized from the ledger asserted
to the cent.

Catalog (USD): Mobile S (plan 11): 20.00/month in advance + data GRADUATED (first 1000 MB at 0.01,
beyond at 0.005); Mobile L (plan 21): 50.00/month + data PER_UNIT 0.002 beyond an included
5000 MB; Broadband (plan 31): 40.00; Broadband Lite (plan 41): 29.99; Phone (one-time 300.00);
Activation fee (one-time 25.00). Bundle 1 = Mobile S + Broadband at 10 % off. Tax: CA 7.25 %,
NY 4 %. Accounts are calendar-monthly (bill cycle day 1) except G (day 15).

Batch 1 lands before the January bill run, batch 2 (an upgrade, a disconnect, February usage)
before February's, as in production: January's invoices billed February in advance without
knowing about February's changes, so February's invoices carry the credits. January is finalized
(and its payments applied, the month end's order) before batch 2: revenue reads only the ledger.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal as D

import dagster as dg
import duckdb
import pytest
from dagster._utils.test.data_versions import get_stale_status_resolver  # Dagster's own helper: the UI's stale status

from pipelines.assets.policy import table_key
from pipelines.definitions import defs
from pipelines.partitions import month_key
from pipelines.revenue import DERIVED_TABLES
from tests.extracts import DebeziumFile, write_usage
from tests.pipeline import failed_checks, run_apply_payments, run_bill_cycle, run_finalize, run_ingest

JAN, FEB = date(2025, 1, 1), date(2025, 2, 1)
T0 = datetime(2024, 12, 1)


def _customer(cid, state):
    return dict(customer_id=cid, name=f"Customer {cid}", email=f"c{cid}@example.com", phone="555-0100",
                address_line="1 Main St", city="Springfield", state=state, postal_code="90001", country="US",
                customer_type="INDIVIDUAL", status="ACTIVE", created_at=T0)


def _account(aid, cid, bcd=1):
    return dict(account_id=aid, customer_id=cid, account_number=f"AC{aid}", billing_cycle="MONTHLY", bill_cycle_day=bcd,
                payment_method="CARD", payment_terms_days=30, credit_limit=D("1000"), currency="USD", status="ACTIVE", created_at=T0)


def _charge(price_id, plan_id, code, ctype, model, unit_price=None, metric=None, included=None, tiers=None):
    return dict(price_id=price_id, plan_id=plan_id, charge_code=code, charge_type=ctype, metric=metric,
                aggregation="SUM" if ctype == "USAGE" else None, charge_model=model,
                billing_timing="IN_ADVANCE" if ctype == "RECURRING" else "IN_ARREARS", prorate=True,
                unit_price=unit_price, included_quantity=included, tiers=tiers, properties=None, proration_days=None,
                effective_from=datetime(2024, 1, 1), effective_to=None)


def _order(oid, aid, otype, eff, status="CONFIRMED"):
    return dict(order_id=oid, order_number=f"ORD-{oid}", account_id=aid, order_type=otype, status=status,
                effective_date=eff, created_at=datetime.combine(eff, datetime.min.time()))


def _item(iid, oid, product, plan=None, sub=None, bundle=None, unit_price=None):
    return dict(order_item_id=iid, order_id=oid, product_id=product, plan_id=plan, bundle_id=bundle,
                subscription_id=sub, quantity=1, unit_price=unit_price)


def _usage(seq, event_id, sub, qty, when):
    return dict(op="I", seq=seq, event_id=event_id, subscription_id=sub, metric="data_mb", quantity=qty, unit="MB",
                event_time=when, zone="DOMESTIC", attributes=None)


def land_batch_1(landing):
    f = DebeziumFile("products")
    for pid, sku, name, cat, ptype, price in [
        (1, "MOB-S", "Mobile S", "MOBILE", "SUBSCRIPTION", "20"), (2, "MOB-L", "Mobile L", "MOBILE", "SUBSCRIPTION", "50"),
        (3, "BB", "Broadband", "BROADBAND", "SUBSCRIPTION", "40"), (4, "PHONE", "Phone", "DEVICE", "ONE_TIME", "300"),
        (5, "ACT", "Activation fee", "FEE", "ONE_TIME", "25"), (6, "BB-LITE", "Broadband Lite", "BROADBAND", "SUBSCRIPTION", "29.99"),
    ]:
        f.snapshot(pid, T0, dict(product_id=pid, sku=sku, name=name, category=cat, product_type=ptype,
                                 base_price=D(price), currency="USD", status="ACTIVE"))
    f.write(landing, "products-2024-12-01.jsonl")
    f = DebeziumFile("price_plans")
    for plan, product in [(11, 1), (21, 2), (31, 3), (41, 6)]:
        f.snapshot(100 + plan, T0, dict(plan_id=plan, product_id=product, name=f"Plan {plan}", currency="USD", status="ACTIVE"))
    f.write(landing, "price_plans-2024-12-01.jsonl")
    graduated = '[{"up_to": "1000", "unit_amount": "0.01", "flat_amount": "0"}, {"up_to": null, "unit_amount": "0.005", "flat_amount": "0"}]'
    f = DebeziumFile("plan_charges")
    for i, ch in enumerate([
        _charge(101, 11, "monthly_fee", "RECURRING", "FLAT", D("20.00")),
        _charge(102, 11, "data", "USAGE", "GRADUATED", metric="data_mb", tiers=graduated),
        _charge(201, 21, "monthly_fee", "RECURRING", "FLAT", D("50.00")),
        _charge(202, 21, "data", "USAGE", "PER_UNIT", D("0.002"), metric="data_mb", included=D("5000")),
        _charge(301, 31, "monthly_fee", "RECURRING", "FLAT", D("40.00")),
        _charge(401, 41, "monthly_fee", "RECURRING", "FLAT", D("29.99")),
    ]):
        f.snapshot(200 + i, T0, ch)
    f.write(landing, "plan_charges-2024-12-01.jsonl")
    DebeziumFile("bundles").snapshot(300, T0, dict(bundle_id=1, name="Mobile + Broadband", discount_pct=D("0.10"), status="ACTIVE")) \
        .write(landing, "bundles-2024-12-01.jsonl")
    DebeziumFile("bundle_members").snapshot(301, T0, dict(bundle_member_id=1, bundle_id=1, product_id=1)) \
        .snapshot(302, T0, dict(bundle_member_id=2, bundle_id=1, product_id=3)).write(landing, "bundle_members-2024-12-01.jsonl")
    f = DebeziumFile("tax_rates")
    f.snapshot(310, T0, dict(tax_rate_id=1, country="US", state="CA", tax_name="CA sales tax", rate=D("0.0725"), effective_from=date(2024, 1, 1)))
    f.snapshot(311, T0, dict(tax_rate_id=2, country="US", state="NY", tax_name="NY sales tax", rate=D("0.04"), effective_from=date(2024, 1, 1)))
    f.write(landing, "tax_rates-2024-12-01.jsonl")

    customers, accounts = DebeziumFile("customers"), DebeziumFile("billing_accounts")
    for n, (letter, state, bcd) in enumerate([("A", "CA", 1), ("B", "CA", 1), ("C", "CA", 1), ("D", "CA", 1),
                                              ("E", "CA", 1), ("F", "NY", 1), ("G", "CA", 15)]):
        customers.create(1000 + n, T0, _customer(1 + n, state))
        accounts.create(1000 + n, T0, _account(1001 + n, 1 + n, bcd))
    customers.write(landing, "customers-2024-12-15.jsonl")
    accounts.write(landing, "billing_accounts-2024-12-15.jsonl")

    orders, items = DebeziumFile("orders"), DebeziumFile("order_items")
    created = _order(1, 1001, "NEW_SERVICE", JAN, status="CREATED")
    orders.create(2000, T0, created).update(2001, T0, created, _order(1, 1001, "NEW_SERVICE", JAN))  # CREATED -> CONFIRMED
    orders.create(2002, T0, _order(2, 1002, "NEW_SERVICE", date(2025, 1, 10)))
    for oid, aid, eff in [(3, 1003, JAN), (4, 1004, JAN), (5, 1005, JAN), (6, 1006, JAN), (7, 1007, date(2025, 1, 15))]:
        orders.create(2000 + oid, T0, _order(oid, aid, "NEW_SERVICE", eff))
    orders.create(2008, T0, _order(8, 1001, "NEW_SERVICE", date(2025, 1, 20), status="PAYMENT_FAILED"))  # never bills
    orders.write(landing, "orders-2024-12-20.jsonl")
    for i, it in enumerate([
        _item(1, 1, 1, 11, 5001), _item(2, 2, 1, 11, 5002), _item(3, 2, 4, unit_price=D("300.00")),
        _item(4, 2, 5, unit_price=D("25.00")), _item(5, 3, 1, 11, 5003), _item(6, 4, 1, 11, 5004),
        _item(7, 5, 1, 11, 5005, bundle=1), _item(8, 5, 3, 31, 5006, bundle=1), _item(9, 6, 2, 21, 5007),
        _item(10, 7, 6, 41, 5008), _item(11, 8, 2, 21, 5009),
    ]):
        items.create(3000 + i, T0, it)
    items.write(landing, "order_items-2024-12-20.jsonl")

    write_usage(landing, "usage_records-2025-01-31.parquet", [
        _usage(1, "a-1", 5001, "1000", datetime(2025, 1, 5, 10)),
        _usage(2, "a-2", 5001, "501", datetime(2025, 1, 20, 23, 59)),
        _usage(3, "f-1", 5007, "4000", datetime(2025, 1, 12)),
    ])


def land_batch_2(landing):
    orders, items = DebeziumFile("orders"), DebeziumFile("order_items")
    orders.create(2100, datetime(2025, 2, 10), _order(9, 1003, "CHANGE", date(2025, 2, 10)))  # upgrade S -> L
    orders.create(2101, datetime(2025, 2, 15), _order(10, 1004, "DISCONNECT", date(2025, 2, 15)))
    items.create(3100, datetime(2025, 2, 10), _item(12, 9, 2, 21, 5003))
    items.create(3101, datetime(2025, 2, 15), _item(13, 10, 1, None, 5004))
    orders.write(landing, "orders-2025-02-15.jsonl")
    items.write(landing, "order_items-2025-02-15.jsonl")
    write_usage(landing, "usage_records-2025-02-28.csv", [
        _usage(10, "c-1", 5003, "200", datetime(2025, 2, 5)),
        _usage(11, "c-2", 5003, "6000", datetime(2025, 2, 20)),
    ])


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scenario")
    landing, warehouse = tmp / "landing", tmp / "warehouse.duckdb"
    land_batch_1(landing)
    results = [run_ingest(warehouse, landing), run_bill_cycle(warehouse, landing, JAN), run_finalize(warehouse, landing, JAN),
               run_apply_payments(warehouse, landing)]
    land_batch_2(landing)
    results += [run_ingest(warehouse, landing), run_bill_cycle(warehouse, landing, FEB)]
    for r in results:
        assert r.success and failed_checks(r) == []
    return Billed(warehouse, landing)


class Billed:
    """The scenario's warehouse; each query opens and closes its own connection (DuckDB has one writer)."""

    def __init__(self, warehouse, landing):
        self.warehouse, self.landing = warehouse, landing

    def execute(self, sql, params=None):
        return _Result(self.warehouse, sql, params)


class _Result:
    def __init__(self, path, sql, params):
        with duckdb.connect(str(path), read_only=True) as con:
            self.rows = con.execute(sql, params).fetchall()

    def fetchall(self):
        return self.rows

    def fetchone(self):
        return self.rows[0] if self.rows else None


def lines(con, month, account):
    return con.execute(
        """SELECT line_type, service_start, service_end, amount, discount_amount, net_amount, tax_amount
           FROM billing.invoice_lines WHERE billing_month = ? AND account_id = ?
           ORDER BY line_type, service_start, amount""",
        [month, account],
    ).fetchall()


def invoice(con, month, account):
    return con.execute(
        "SELECT net_total, tax_total, total FROM billing.invoices WHERE billing_month = ? AND account_id = ?", [month, account]
    ).fetchone()


R, RC, U, OT = "RECURRING", "RECURRING_CREDIT", "USAGE", "ONE_TIME"
d = date


def test_full_month_with_usage_across_a_tier_boundary(billed):
    # Jan in arrears/catch-up + Feb in advance, 20.00 each; tax 20.00 * 7.25 % = 1.45.
    # Data 1000 + 501 = 1501 MB: 1000 * 0.01 + 501 * 0.005 = 10.00 + 2.505 = 12.505 -> 12.51 (half away
    # from zero); tax 12.51 * 0.0725 = 0.906975 -> 0.91.
    assert lines(billed, JAN, 1001) == [
        (R, d(2025, 1, 1), d(2025, 2, 1), D("20.00"), D("0"), D("20.00"), D("1.45")),
        (R, d(2025, 2, 1), d(2025, 3, 1), D("20.00"), D("0"), D("20.00"), D("1.45")),
        (U, d(2025, 1, 1), d(2025, 2, 1), D("12.51"), D("0"), D("12.51"), D("0.91")),
    ]
    assert invoice(billed, JAN, 1001) == (D("52.51"), D("3.81"), D("56.32"))
    # February: March in advance only (no usage, nothing changed).
    assert lines(billed, FEB, 1001) == [(R, d(2025, 3, 1), d(2025, 4, 1), D("20.00"), D("0"), D("20.00"), D("1.45"))]


def test_mid_month_start_with_one_time_items(billed):
    # Started Jan 10: 20.00 * 22/31 = 14.1935... -> 14.19, tax 1.028775 -> 1.03.
    # Phone 300.00 (tax 21.75), activation 25.00 (tax 1.8125 -> 1.81), Feb in advance 20.00 (1.45).
    assert lines(billed, JAN, 1002) == [
        (OT, d(2025, 1, 10), d(2025, 1, 11), D("25.00"), D("0"), D("25.00"), D("1.81")),
        (OT, d(2025, 1, 10), d(2025, 1, 11), D("300.00"), D("0"), D("300.00"), D("21.75")),
        (R, d(2025, 1, 10), d(2025, 2, 1), D("14.19"), D("0"), D("14.19"), D("1.03")),
        (R, d(2025, 2, 1), d(2025, 3, 1), D("20.00"), D("0"), D("20.00"), D("1.45")),
    ]
    assert invoice(billed, JAN, 1002) == (D("359.19"), D("26.04"), D("385.23"))


def test_upgrade_mid_month_credits_unused_time_and_charges_the_new_plan(billed):
    assert invoice(billed, JAN, 1003) == (D("40.00"), D("2.90"), D("42.90"))
    # Upgrade S -> L on Feb 10 (28-day February, 19 days left):
    #   credit S: -(20.00 * 19/28) = -13.5714... -> -13.57, tax -0.983825 -> -0.98
    #   charge L: 50.00 * 19/28 = 33.9285... -> 33.93, tax 2.459925 -> 2.46
    #   March L in advance 50.00, tax 3.625 -> 3.63
    #   usage under S (Feb 5): 200 MB in tier 1 = 2.00, tax 0.145 -> 0.15
    #   usage under L (Feb 20): allowance 5000 * 19/28 = 3392.8571428571 MB; 6000 - 3392.8571428571
    #   = 2607.1428571429 MB * 0.002 = 5.2142857143 -> 5.21, tax 0.377725 -> 0.38
    assert lines(billed, FEB, 1003) == [
        (R, d(2025, 2, 10), d(2025, 3, 1), D("33.93"), D("0"), D("33.93"), D("2.46")),
        (R, d(2025, 3, 1), d(2025, 4, 1), D("50.00"), D("0"), D("50.00"), D("3.63")),
        (RC, d(2025, 2, 10), d(2025, 3, 1), D("-13.57"), D("0"), D("-13.57"), D("-0.98")),
        (U, d(2025, 2, 1), d(2025, 2, 10), D("2.00"), D("0"), D("2.00"), D("0.15")),
        (U, d(2025, 2, 10), d(2025, 3, 1), D("5.21"), D("0"), D("5.21"), D("0.38")),
    ]
    # net -13.57 + 33.93 + 50 + 2 + 5.21 = 77.57; tax -0.98 + 2.46 + 3.63 + 0.15 + 0.38 = 5.64
    assert invoice(billed, FEB, 1003) == (D("77.57"), D("5.64"), D("83.21"))


def test_cancellation_credits_prepaid_time(billed):
    # Disconnected Feb 15: credit -(20.00 * 14/28) = -10.00, tax -0.725 -> -0.73; no March fee.
    assert lines(billed, FEB, 1004) == [(RC, d(2025, 2, 15), d(2025, 3, 1), D("-10.00"), D("0"), D("-10.00"), D("-0.73"))]
    assert invoice(billed, FEB, 1004) == (D("-10.00"), D("-0.73"), D("-10.73"))
    # Only a credit: the draft is a credit note (an invoice never has a negative total), due on its date.
    assert billed.execute("SELECT invoice_id, document_type, due_date FROM billing.invoices WHERE billing_month = ? "
                          "AND account_id = 1004", [FEB]).fetchall() == [("CN-AC1004-20250301", "CREDIT_NOTE", d(2025, 3, 1))]


def test_bundle_discount_is_on_the_line_and_tax_is_on_the_discounted_amount(billed):
    # Mobile S 20.00 - 10 % = 18.00, tax 1.305 -> 1.31; Broadband 40.00 - 4.00 = 36.00, tax 2.61.
    assert lines(billed, JAN, 1005) == [
        (R, d(2025, 1, 1), d(2025, 2, 1), D("20.00"), D("-2.00"), D("18.00"), D("1.31")),
        (R, d(2025, 1, 1), d(2025, 2, 1), D("40.00"), D("-4.00"), D("36.00"), D("2.61")),
        (R, d(2025, 2, 1), d(2025, 3, 1), D("20.00"), D("-2.00"), D("18.00"), D("1.31")),
        (R, d(2025, 2, 1), d(2025, 3, 1), D("40.00"), D("-4.00"), D("36.00"), D("2.61")),
    ]
    assert invoice(billed, JAN, 1005) == (D("108.00"), D("7.84"), D("115.84"))


def test_other_jurisdiction_and_usage_within_the_allowance(billed):
    # NY 4 %: 50.00 -> 2.00. 4000 MB within the 5000 MB allowance: a 0.00 usage line.
    assert lines(billed, JAN, 1006) == [
        (R, d(2025, 1, 1), d(2025, 2, 1), D("50.00"), D("0"), D("50.00"), D("2.00")),
        (R, d(2025, 2, 1), d(2025, 3, 1), D("50.00"), D("0"), D("50.00"), D("2.00")),
        (U, d(2025, 1, 1), d(2025, 2, 1), D("0.00"), D("0"), D("0.00"), D("0.00")),
    ]
    assert billed.execute("SELECT DISTINCT tax_jurisdiction FROM billing.invoice_lines WHERE account_id = 1006").fetchall() == [("US-NY",)]


def test_bill_cycle_day_15_and_failed_payment_order(billed):
    # G bills on the 15th. January's invoice closes [Dec 15, Jan 15) (no service yet) and bills the
    # next period [Jan 15, Feb 15) in advance: 29.99, tax 29.99 * 7.25 % = 2.174275 -> 2.17.
    # February's closes [Jan 15, Feb 15) (already billed: nothing) and bills [Feb 15, Mar 15) in advance.
    assert lines(billed, JAN, 1007) == [(R, d(2025, 1, 15), d(2025, 2, 15), D("29.99"), D("0"), D("29.99"), D("2.17"))]
    assert billed.execute("SELECT period_start, period_end, invoice_date FROM billing.invoices WHERE account_id = 1007 ORDER BY 1").fetchall() == [
        (d(2024, 12, 15), d(2025, 1, 15), d(2025, 1, 15)), (d(2025, 1, 15), d(2025, 2, 15), d(2025, 2, 15)),
    ]
    assert lines(billed, FEB, 1007) == [(R, d(2025, 2, 15), d(2025, 3, 15), D("29.99"), D("0"), D("29.99"), D("2.17"))]
    # Order 8 failed payment: subscription 5009 never exists and never bills.
    assert billed.execute("SELECT count(*) FROM billing.invoice_lines WHERE subscription_id = 5009").fetchone()[0] == 0


def test_revenue_from_the_ledger_billing_by_issue_date_revenue_by_service_month(billed):
    # Revenue reads the ledger: January's 7 issued documents (net 729.69, tax is not revenue). February's drafts
    # (C's upgrade, D's credit, March in advance) are not issued, so not revenue.
    assert billed.execute("SELECT count(*) FROM revenue.performance_obligations o JOIN billing.invoice_lines l "
                          "USING (line_id) WHERE l.billing_month = ?", [FEB]).fetchone() == (0,)
    # Estimates of what February's run will invoice (rendered, not issued: billed 0) are obligations too.
    assert billed.execute("SELECT count(*), sum(billed_amount) FROM revenue.performance_obligations "
                          "WHERE NOT starts_with(obligation_id, 'ACCRUED-')").fetchone() == \
        (billed.execute("SELECT count(*) FROM ledger.document_lines").fetchone()[0], D("729.69"))
    # B: the phone at delivery (Jan 10); the activation fee over the expected service term, 24 months (no
    # commitment): [2025-01-10, 2027-01-10) = 730 days; the service by day. Issued Feb 1: billed in February.
    assert billed.execute(
        "SELECT obligation_kind, pattern, recognition_start, recognition_end, spread_days, billed_month, billed_amount "
        "FROM revenue.performance_obligations WHERE account_id = 1002 ORDER BY recognition_start, billed_amount").fetchall() == [
        ("SERVICE", "RATABLE", d(2025, 1, 10), FEB, 22, FEB, D("14.19")),
        ("FEE", "RATABLE", d(2025, 1, 10), d(2027, 1, 10), 730, FEB, D("25.00")),
        ("GOOD", "POINT_IN_TIME", d(2025, 1, 10), d(2025, 1, 11), 1, FEB, D("300.00")),
        ("SERVICE", "RATABLE", FEB, d(2025, 3, 1), 28, FEB, D("20.00")),
    ]
    # The fee, cumulative: 25 * 22/730 = 0.7534 -> 0.75 (January); 25 * 50/730 = 1.7123 -> 1.71, 1.71 - 0.75 = 0.96
    # (February); 25 * 81/730 = 2.7740 -> 2.77, 1.06 (March); ...; the 25.00 in full by 2027-01-10 (January 2027).
    fee = billed.execute("SELECT s.service_month, s.scheduled_amount, s.cumulative_amount FROM revenue.schedule s "
                         "JOIN revenue.performance_obligations o USING (obligation_id) "
                         "WHERE o.account_id = 1002 AND o.obligation_kind = 'FEE' ORDER BY 1").fetchall()
    assert fee[:3] == [(JAN, D("0.75"), D("0.75")), (FEB, D("0.96"), D("1.71")), (d(2025, 3, 1), D("1.06"), D("2.77"))]
    assert (len(fee), fee[-1][0], sum(r[1] for r in fee)) == (25, d(2027, 1, 1), D("25.00"))
    # G's [Jan 15, Feb 15), issued Jan 15 (billed in January), by service month: 29.99 * 17/31 = 16.4461 -> 16.45
    # in January, 13.54 in February. A's data (consumed Jan 5 and Jan 20, a window inside January): 12.51 in January.
    assert billed.execute("SELECT o.account_id, o.obligation_kind, o.billed_month, s.service_month, s.scheduled_amount "
                          "FROM revenue.schedule s JOIN revenue.performance_obligations o USING (obligation_id) "
                          "WHERE (o.account_id = 1001 AND o.obligation_kind = 'USAGE') OR o.account_id = 1007 "
                          "ORDER BY 1, 4, 3").fetchall() == [
        (1001, "USAGE", FEB, JAN, D("12.51")), (1007, "SERVICE", JAN, JAN, D("16.45")),
        (1007, "SERVICE", JAN, FEB, D("13.54")), (1007, "SERVICE", FEB, FEB, D("15.00")),
        (1007, "SERVICE", FEB, d(2025, 3, 1), D("14.99"))]
    # ... and G's next period [Feb 15, Mar 15), which February's run (not finalized) will invoice, is an estimate
    # (pipelines/revenue/accrual.py): 29.99 * 14/28 = 14.995 -> 15.00 in February, 14.99 in March.
    # January recognizes (by service month, whenever billed): A 20 + 12.51; B 14.19 + 300 + 0.75; C 20; D 20;
    # E's bundle 18 + 36 (no SSP in the catalog: list prices, the 10 % already spread proportionally); F 50 + 0;
    # G 16.45: 507.90 = MOBILE 154.70 (32.51 + 14.19 + 20 + 20 + 18 + 50) + BROADBAND 52.45 (36 + 16.45)
    # + DEVICE 300.00 + FEE 0.75.
    assert billed.execute("SELECT account, closing_balance FROM revenue.trial_balance WHERE accounting_month = ? "
                          "AND account LIKE 'REVENUE:%' ORDER BY 1", [JAN]).fetchall() == [
        ("REVENUE:BROADBAND", D("-52.45")), ("REVENUE:DEVICE", D("-300.00")), ("REVENUE:FEE", D("-0.75")),
        ("REVENUE:MOBILE", D("-154.70"))]
    # Billed in January: G's 29.99 only (the other invoices are dated Feb 1). At Jan 31 G's contract holds
    # 29.99 - 16.45 = 13.54 deferred; the others recognized before they billed: unbilled AR
    # 32.51 + 314.94 + 20 + 20 + 54 + 50 = 491.45; net 13.54 - 491.45 = -477.91 = 0 + 29.99 - 507.90.
    # February bills 729.69 - 29.99 = 699.70 and recognizes January's documents' February service:
    # 20 (A) + 20 (B) + 20 (C) + 20 (D) + 54 (E) + 50 (F) + 13.54 (G) + 0.96 (fee) = 198.50;
    # -477.91 + 699.70 - 198.50 = 23.29 = the fee not yet recognized, 25 - 1.71 (B's contract liability).
    # February's run (drafted, not finalized) will invoice what February rendered: estimates recognized in February
    # (pipelines/revenue/accrual.py): C's usage 2.00 + 5.21, upgrade 33.93 and credit -13.57; D's credit -10.00;
    # G's 15.00 (above): 32.57, so 198.50 + 32.57 = 231.07 recognized; -477.91 + 699.70 - 231.07 = -9.28 =
    # deferred 23.29 + 10.00 (D's credit, recognized and not yet credited) - unbilled AR 42.57 (C 2.00 + 33.93
    # + 5.21 - 13.57 = 27.57; G 15.00).
    assert billed.execute(
        "SELECT accounting_month, opening_net_deferred, billings, recognized, corrections, closing_net_deferred, "
        "deferred_revenue, unbilled_ar, contract_assets, month_status FROM revenue.deferred_rollforward ORDER BY 1").fetchall() == [
        (JAN, D("0"), D("29.99"), D("507.90"), D("0"), D("-477.91"), D("13.54"), D("491.45"), D("0"), "OPEN"),
        (FEB, D("-477.91"), D("699.70"), D("231.07"), D("0"), D("-9.28"), D("33.29"), D("42.57"), D("0"), "OPEN"),
    ]


REVENUE_TABLES = [f"SELECT * EXCLUDE (run_id) FROM {t}" if t == "revenue.open_journal_lines" else f"SELECT * FROM {t}"
                  for t in DERIVED_TABLES]  # the open journal records the run that computed it
SNAPSHOT_SQL = [
    "SELECT * FROM billing.invoice_lines ORDER BY line_id",
    "SELECT * FROM billing.invoices ORDER BY invoice_id",
    "SELECT * FROM billing.rated_usage ORDER BY rated_line_id",
    *(f"{q} ORDER BY ALL" for q in REVENUE_TABLES),
]


def test_rerunning_ingest_and_a_month_changes_nothing(billed):
    before = [billed.execute(q).fetchall() for q in SNAPSHOT_SQL]
    assert len(before[0]) == len({r[0] for r in before[0]})  # line ids unique
    numbers = [r[1] for r in before[1]]
    assert len(numbers) == len(set(numbers))  # invoice numbers unique
    files = billed.execute("SELECT count(*) FROM audit.ingested_files").fetchone()
    assert run_ingest(billed.warehouse, billed.landing).success  # nothing new: every file already in the ledger
    assert run_bill_cycle(billed.warehouse, billed.landing, FEB).success
    assert [billed.execute(q).fetchall() for q in SNAPSHOT_SQL] == before
    assert billed.execute("SELECT count(*) FROM audit.ingested_files").fetchone() == files


BILL_CYCLE = [["billing", "rated_usage"], ["billing", "unrated_usage"], ["billing", "invoice_lines"], ["billing", "invoices"],
              ["warehouse_snapshot"]]  # partitioned by billing_month
REVENUE = [table_key(t).path for t in DERIVED_TABLES]  # the revenue step of the bill cycle: one unpartitioned asset


@pytest.fixture(scope="module")
def rerun(tmp_path_factory):
    """Both batches landed; January and February billed one month at a time, then January again, then both
    as one range run (kept: its result); one Dagster instance throughout (it records what is stale)."""
    tmp = tmp_path_factory.mktemp("rerun")
    landing, warehouse = tmp / "landing", tmp / "warehouse.duckdb"
    land_batch_1(landing)
    land_batch_2(landing)
    with dg.instance_for_test() as instance:
        runs = [run_ingest(warehouse, landing, instance=instance), run_bill_cycle(warehouse, landing, JAN, instance=instance),
                run_bill_cycle(warehouse, landing, FEB, instance=instance)]
        before = _stale(instance)
        runs.append(run_bill_cycle(warehouse, landing, JAN, instance=instance))
        after = _stale(instance)
        runs.append(ranged := run_bill_cycle(warehouse, landing, JAN, FEB, instance=instance))
    for r in runs:
        assert r.success and failed_checks(r) == []
    return Billed(warehouse, landing), ranged, before, after


def _stale(instance) -> set[tuple[str, str | None]]:
    """The (asset, month) of the bill cycle that Dagster shows as stale; (asset, None) for an unpartitioned one."""
    resolver = get_stale_status_resolver(instance, list(defs.assets))
    return {("/".join(key), f"{month:%Y-%m}") for key in BILL_CYCLE for month in (JAN, FEB)
            if resolver.get_status(dg.AssetKey(key), month_key(month)).value == "STALE"} | \
        {("/".join(key), None) for key in REVENUE if resolver.get_status(dg.AssetKey(key)).value == "STALE"}


def test_rerunning_a_month_marks_the_next_month_stale(rerun):
    _, _, before, after = rerun
    # The revenue tables are one unpartitioned asset, recomputed whole by every bill_cycle run (pipelines/assets/
    # revenue.py): Dagster never shows them stale after a bill run, and shows no "February's revenue". The
    # analysts' snapshot is not partitioned and is the last step of every run: it is never stale either.
    assert before == set()
    # January was billed again: February's invoicing (which credits and settles what January billed) is stale;
    # nothing of January is (its steps ran together).
    assert after == {("billing/invoices", "2025-02")}


def _metadata(result, key, name):
    return {e.partition: e.materialization.metadata[name].value for e in result.get_asset_materialization_events()
            if e.asset_key.path == key}


def test_each_partition_of_a_range_run_reports_its_own_month(rerun):
    billed, ranged, _, _ = rerun
    lines, invoices, rated = ({month_key(m): n for m, n in billed.execute(
        f"SELECT billing_month, count(*) FROM billing.{table} GROUP BY 1").fetchall()}
        for table in ("invoice_lines", "invoices", "rated_usage"))
    assert lines[month_key(JAN)] != lines[month_key(FEB)]  # else a range total reported on both would pass too
    assert _metadata(ranged, ["billing", "invoice_lines"], "lines") == lines
    assert _metadata(ranged, ["billing", "invoices"], "invoices") == invoices
    assert _metadata(ranged, ["billing", "rated_usage"], "rated_lines") == rated
    # The revenue step is not partitioned: the range run recomputes it once, each table reporting its whole count
    # (nothing is finalized in this fixture: no ledger documents, no revenue rows).
    for table, key in zip(DERIVED_TABLES, REVENUE):
        assert [e.partition for e in ranged.get_asset_materialization_events() if e.asset_key.path == key] == [None]
        assert _metadata(ranged, key, "rows") == {None: billed.execute(f"SELECT count(*) FROM {table}").fetchone()[0]}


# the lifecycle: January finalized, then late and backdated changes settle against the ledger ------------------

def land_late_changes(landing):
    """Landed in February, about January: 400 MB of A's January usage (Jan 25) and E's broadband disconnected
    effective Jan 20 (order created Feb 12, backdated)."""
    orders, items = DebeziumFile("orders"), DebeziumFile("order_items")
    orders.create(2102, datetime(2025, 2, 12), _order(11, 1005, "DISCONNECT", date(2025, 1, 20)))
    items.create(3102, datetime(2025, 2, 12), _item(14, 11, 3, None, 5006))
    orders.write(landing, "orders-2025-02-16.jsonl")
    items.write(landing, "order_items-2025-02-16.jsonl")
    write_usage(landing, "usage_records-2025-02-27.csv", [_usage(12, "a-3", 5001, "400", datetime(2025, 1, 25))])


LEDGER_SQL = ["SELECT * FROM ledger.documents ORDER BY document_id", "SELECT * FROM ledger.document_lines ORDER BY line_id"]


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    """Batch 1, January billed and finalized (no apply_payments after it: the revenue checks reconcile AR with the
    ledger itself, not with the receivables tables of the last apply_payments run); batch 2 and the late changes
    land; February billed; then January and February billed again."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    landing, warehouse = tmp / "landing", tmp / "warehouse.duckdb"
    land_batch_1(landing)
    runs = [run_ingest(warehouse, landing), run_bill_cycle(warehouse, landing, JAN), run_finalize(warehouse, landing, JAN)]
    state = Billed(warehouse, landing)
    issued = [state.execute(q).fetchall() for q in LEDGER_SQL]
    land_batch_2(landing)
    land_late_changes(landing)
    runs += [run_ingest(warehouse, landing), run_bill_cycle(warehouse, landing, FEB)]
    february = state.execute("SELECT * FROM billing.invoice_lines WHERE billing_month = ? ORDER BY line_id", [FEB]).fetchall()
    runs += [rerun_jan := run_bill_cycle(warehouse, landing, JAN), run_bill_cycle(warehouse, landing, FEB)]
    for r in runs:
        assert r.success and failed_checks(r) == []
    return state, issued, february, rerun_jan


def number(con, account):
    return con.execute("SELECT document_number FROM ledger.documents WHERE account_id = ? AND billing_month = ?",
                       [account, JAN]).fetchone()[0]


def corrections(con, account):
    return con.execute(
        """SELECT line_type, service_start, service_end, service_month, amount, discount_amount, net_amount, tax_amount,
                  adjustment_reason, reference_document_number, invoice_id
           FROM billing.invoice_lines WHERE billing_month = ? AND account_id = ? AND reference_line_id IS NOT NULL
           ORDER BY service_start, line_type""", [FEB, account]).fetchall()


def test_late_usage_after_finalization_is_an_adjustment_on_the_next_invoice(lifecycle):
    con, *_ = lifecycle
    # A's January data re-rated with the late 400 MB: 1901 MB = 1000 * 0.01 + 901 * 0.005 = 14.505 -> 14.51;
    # issued 12.51 -> +2.00 (LATE_USAGE, service month January) on February's invoice, taxed at its tax point:
    # 2.00 * 0.0725 = 0.145 -> 0.15; referencing January's usage line and document.
    assert corrections(con, 1001) == [
        ("USAGE_ADJUSTMENT", d(2025, 1, 1), d(2025, 2, 1), JAN, D("2.00"), D(0), D("2.00"), D("0.15"), "LATE_USAGE",
         number(con, 1001), "INV-AC1001-20250301")]


def test_backdated_disconnect_after_finalization_is_credited(lifecycle):
    con, *_ = lifecycle
    # E's broadband (40.00, bundle 10 %) disconnected effective Jan 20, known in February:
    #   [Jan 20, Feb 1) 12/31: 40 * 12 / 31 = 15.4838709677 -> -15.48; discount at the credited line's 10 %:
    #   -round(-1.548) = +1.55; net -13.93; tax -13.93 * 0.0725 = -1.009925 -> -1.01 (BACKDATED_CHANGE, January);
    #   February, prepaid in January, reversed whole: -40.00 + 4.00 = -36.00, tax -2.61 (the current period).
    # E's February: March's Mobile S 18.00 + 1.31 tax, the credits -49.93 net: below zero -> a credit note.
    cn = "CN-AC1005-20250301"
    assert corrections(con, 1005) == [
        (RC, d(2025, 1, 20), d(2025, 2, 1), JAN, D("-15.48"), D("1.55"), D("-13.93"), D("-1.01"), "BACKDATED_CHANGE",
         number(con, 1005), cn),
        (RC, d(2025, 2, 1), d(2025, 3, 1), FEB, D("-40.00"), D("4.00"), D("-36.00"), D("-2.61"), None, number(con, 1005), cn)]
    assert con.execute("SELECT document_type, net_total, tax_total, total FROM billing.invoices WHERE billing_month = ? "
                       "AND account_id = 1005", [FEB]).fetchall() == [("CREDIT_NOTE", D("-31.93"), D("-2.31"), D("-34.24"))]


def test_settlement_review_shows_what_february_would_issue(lifecycle):
    con, *_ = lifecycle
    assert con.execute(
        "SELECT account_id, category, reason, service_month, lines, net_amount, document_type FROM billing.settlement_review "
        "WHERE billing_month = ? AND service_month < ? ORDER BY account_id", [FEB, FEB]).fetchall() == [
        (1001, "ADJUSTMENT", "LATE_USAGE", JAN, 1, D("2.00"), "INVOICE"),
        (1005, "CREDIT", "BACKDATED_CHANGE", JAN, 1, D("-13.93"), "CREDIT_NOTE")]


def test_finalized_month_is_never_rewritten(lifecycle):
    con, issued, february, rerun_jan = lifecycle
    assert [con.execute(q).fetchall() for q in LEDGER_SQL] == issued  # nothing issued changed
    # re-running February gives the same drafts; re-running January leaves its drafts and says why
    assert con.execute("SELECT * FROM billing.invoice_lines WHERE billing_month = ? ORDER BY line_id", [FEB]).fetchall() == february
    assert _metadata(rerun_jan, ["billing", "invoice_lines"], "finalized") == {month_key(JAN): True}
    assert con.execute("SELECT count(*) FROM billing.invoice_lines l JOIN ledger.document_lines d USING (line_id) "
                       "WHERE l.billing_month = ? AND l.total_amount = d.total_amount", [JAN]).fetchone()[0] == \
        con.execute("SELECT count(*) FROM ledger.document_lines").fetchone()[0] > 0
