"""Every charge model and aggregation priced through the real Dagster assets (ingest → rating → invoicing).

A hand-built USD catalog (tests/extracts.py) with one plan per charge model, one calendar-monthly
account (bill cycle day 1, whole January 2025 = 31 days, proration factor 1) and one subscription
per plan, usage landed as a CDC extract, materialized with ``run_ingest`` + ``run_bill_cycle`` into a
temporary DuckDB. Expected amounts are worked out by hand from docs/rating.md (not copied from
the engine); tax is a flat 10 % (rounded half away from zero per line).

February carries the blocking check: 10 rated events and 2 events of an unknown subscription
(2 / 12 = 16.7 % > 5 %) stop invoicing unless the run raises ``max_unrated_share``.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal as D

import duckdb
import pytest

from domain import install_macros
from pipelines.partitions import month_key
from pipelines.rating.late import late_usage
from tests.extracts import DebeziumFile, write_usage
from warehouse.fixtures import create_table_with_rows
from tests.pipeline import failed_checks, run_bill_cycle, run_ingest

JAN, FEB = date(2025, 1, 1), date(2025, 2, 1)
T0 = datetime(2024, 12, 1)
TIERS = [{"up_to": "5", "unit_amount": "1.00", "flat_amount": "2"}, {"up_to": "10", "unit_amount": "0.50"},
         {"up_to": None, "unit_amount": "0.25"}]
MATRIX = {"dimensions": ["zone", "time_band"],
          "time_bands": [{"band": "PEAK", "from_hour": 8, "to_hour": 20}, {"band": "OFFPEAK", "from_hour": 20, "to_hour": 8}],
          "prices": [{"zone": "EU", "time_band": "PEAK", "unit_price": "0.10"},
                     {"zone": "EU", "time_band": "OFFPEAK", "unit_price": "0.05"},
                     {"zone": "US", "time_band": "*", "unit_price": "0.20"}],
          "default_unit_price": "0.50"}

# plan → (price_id, charge_code, metric, aggregation, model, unit_price, included, tiers, properties)
CHARGES = {
    10: [(101, "api", "api_calls", "SUM", "PER_UNIT", "0.2", "10", None, None)],
    20: [(201, "data", "data_mb", "SUM", "GRADUATED", None, "4", TIERS, None)],
    30: [(301, "data", "data_mb", "SUM", "VOLUME", None, None, TIERS, {"maximum_amount": "3.00"})],
    40: [(401, "sms", "sms", "SUM", "PACKAGE", "5", None, None, {"package_size": "100", "free_units": "50"})],
    50: [(501, "topup", "wallet_topup", "SUM", "PERCENTAGE", None, None, None,
          {"rate": "0.02", "fixed_fee": "0.10", "per_event_min": "0.50", "per_event_max": "5", "free_events": "1"})],
    60: [(601, "card", "card_payment", "SUM", "GRADUATED_PERCENTAGE", None, None,
          [{"up_to": "1000", "rate": "0.03", "flat_amount": "0.25"}, {"up_to": None, "rate": "0.01"}], None)],
    70: [(701, "voice", "voice_min", "SUM", "MATRIX", None, None, None, MATRIX)],
    80: [(801, "content", "content_purchase", "SUM", "DYNAMIC", None, None, None, None)],
    90: [(901, "data", "data_mb", "SUM", "PER_UNIT", "0.10", None, None, {"minimum_amount": "10"})],
    95: [(951, "logins", "logins", "COUNT", "PER_UNIT", "0.25", None, None, None),
         (952, "sessions", "sessions", "MAX", "PER_UNIT", "2", None, None, None),
         (953, "devices", "device_seen", "UNIQUE_COUNT", "PER_UNIT", "3", None, None, {"unique_attribute": "device_id"}),
         (954, "seats", "seats", "LATEST", "PER_UNIT", "4", None, None, None),
         (955, "storage", "storage_gb", "TIME_WEIGHTED_SUM", "PER_UNIT", "0.5", None, None, None)],
}
FEE = "10.00"  # plan 10 also has a FLAT recurring monthly fee, in advance


def _j(x):
    return None if x is None else json.dumps(x)


def land_catalog(landing, charges):
    """The product, plans ``{plan: charges}`` (plan 10 with its monthly fee) and a 10 % tax rate."""
    DebeziumFile("products").snapshot(1, T0, dict(product_id=1, sku="SVC", name="Service", category="MOBILE",
                                                  product_type="SUBSCRIPTION", base_price=D(FEE), currency="USD",
                                                  status="ACTIVE")).write(landing, "products-2024-12-01.jsonl")
    plans, charge_file = DebeziumFile("price_plans"), DebeziumFile("plan_charges")
    lsn = 10
    for plan, rows in charges.items():
        plans.snapshot(lsn, T0, dict(plan_id=plan, product_id=1, name=f"Plan {plan}", currency="USD", status="ACTIVE"))
        lsn += 1
        if plan == 10:
            rows = [(100, "monthly_fee", None, None, "FLAT", FEE, None, None, None), *rows]
        for pid, code, metric, agg, model, price, incl, tiers, props in rows:
            recurring = model == "FLAT"
            charge_file.snapshot(lsn, T0, dict(
                price_id=pid, plan_id=plan, charge_code=code, charge_type="RECURRING" if recurring else "USAGE",
                metric=metric, aggregation=agg, charge_model=model,
                billing_timing="IN_ADVANCE" if recurring else "IN_ARREARS", prorate=True,
                unit_price=D(price) if price else None, included_quantity=D(incl) if incl else None,
                tiers=_j(tiers), properties=_j(props), proration_days=None,
                effective_from=datetime(2024, 1, 1), effective_to=None))
            lsn += 1
    plans.write(landing, "price_plans-2024-12-01.jsonl")
    charge_file.write(landing, "plan_charges-2024-12-01.jsonl")
    DebeziumFile("tax_rates").snapshot(5, T0, dict(tax_rate_id=1, country="US", state="CA", tax_name="Test tax",
                                                   rate=D("0.10"), effective_from=date(2024, 1, 1))) \
        .write(landing, "tax_rates-2024-12-01.jsonl")


def land_accounts(landing, rows):
    """Per ``(n, plan, bill_cycle_day)``: customer n, account 1000 + n (AC<n>), an order effective Jan 1
    activating subscription 5000 + n on the plan."""
    customers, accounts = DebeziumFile("customers"), DebeziumFile("billing_accounts")
    orders, items = DebeziumFile("orders"), DebeziumFile("order_items")
    for lsn, (n, plan, bcd) in enumerate(rows, 100):
        customers.create(lsn, T0, dict(customer_id=n, name=f"Customer {n}", country="US", state="CA",
                                       customer_type="BUSINESS", status="ACTIVE", created_at=T0))
        accounts.create(lsn, T0, dict(account_id=1000 + n, customer_id=n, account_number=f"AC{n}",
                                      billing_cycle="MONTHLY", bill_cycle_day=bcd, payment_method="INVOICE",
                                      payment_terms_days=30, currency="USD", status="ACTIVE", created_at=T0))
        orders.create(lsn, T0, dict(order_id=n, order_number=f"ORD-{n}", account_id=1000 + n,
                                    order_type="NEW_SERVICE", status="CONFIRMED", effective_date=JAN, created_at=T0))
        items.create(lsn, T0, dict(order_item_id=n, order_id=n, product_id=1, plan_id=plan,
                                   subscription_id=5000 + n, quantity=1))
    customers.write(landing, "customers-2024-12-15.jsonl")
    accounts.write(landing, "billing_accounts-2024-12-15.jsonl")
    orders.write(landing, "orders-2024-12-20.jsonl")
    items.write(landing, "order_items-2024-12-20.jsonl")


def land(landing):
    land_catalog(landing, CHARGES)
    land_accounts(landing, [(plan, plan, 1) for plan in CHARGES])

    ev = []

    def e(plan, metric, qty, when, zone="DOMESTIC", attributes=None, sub=None):
        ev.append(dict(op="I", seq=len(ev) + 1, event_id=f"e-{len(ev) + 1}", subscription_id=sub or 5000 + plan,
                       metric=metric, quantity=qty, unit="U", event_time=when, zone=zone,
                       attributes=_j(attributes)))

    jan = lambda d, h=12, m=0, s=0: datetime(2025, 1, d, h, m, s)  # noqa: E731
    e(10, "api_calls", "12.5", jan(3)); e(10, "api_calls", "12.5", jan(4))  # noqa: E702
    e(20, "data_mb", "9", jan(5)); e(20, "data_mb", "11", jan(6))  # noqa: E702
    e(30, "data_mb", "3", jan(5)); e(30, "data_mb", "4.5", jan(6))  # noqa: E702
    e(40, "sms", "120", jan(5)); e(40, "sms", "131", jan(6))  # noqa: E702
    for d, q in [(2, "10"), (3, "100"), (4, "1000"), (5, "40")]:
        e(50, "wallet_topup", q, jan(d))
    for d, q in [(2, "1200"), (3, "300"), (4, "500")]:
        e(60, "card_payment", q, jan(d))
    e(70, "voice_min", "10", jan(7, 10), zone="EU")
    e(70, "voice_min", "6", jan(7, 21, 30), zone="EU")
    e(70, "voice_min", "4", jan(8, 7, 59, 59), zone="EU")
    e(70, "voice_min", "3", jan(9, 13), zone="US")
    e(70, "voice_min", "2", jan(9, 15), zone="US")
    e(70, "voice_min", "1", jan(9, 12), zone="ASIA")
    e(80, "content_purchase", "2", jan(10), attributes={"unit_price": "1.99"})
    e(80, "content_purchase", "1", jan(11), attributes={"unit_price": "4.99"})
    e(90, "data_mb", "35", jan(12))
    for d in (2, 3, 4):
        e(95, "logins", "1", jan(d))
    for d, q in [(2, "3"), (3, "7"), (4, "5")]:
        e(95, "sessions", q, jan(d))
    for d, dev in [(2, "a"), (3, "b"), (4, "a")]:
        e(95, "device_seen", "1", jan(d), attributes={"device_id": dev})
    for d, q in [(2, "3"), (20, "9"), (10, "5")]:
        e(95, "seats", q, jan(d))
    e(95, "storage_gb", "10", jan(1, 0))
    e(95, "storage_gb", "20", jan(16, 0))
    write_usage(landing, "usage_records-2025-01-31.parquet", ev)
    ev.clear()
    # February: 10 rated events, 2 of an unknown subscription → 2/12 unrated
    for d in range(1, 11):
        e(10, "api_calls", "1", datetime(2025, 2, d, 12))
    e(10, "api_calls", "1", datetime(2025, 2, 11, 12), sub=7777)
    e(10, "api_calls", "1", datetime(2025, 2, 12, 12), sub=7777)
    for r in ev:
        r["seq"] += 100
        r["event_id"] = "feb-" + r["event_id"]
    write_usage(landing, "usage_records-2025-02-28.csv", ev)


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rating_assets")
    landing, warehouse = tmp / "landing", tmp / "warehouse.duckdb"
    land(landing)
    ingest = run_ingest(warehouse, landing)
    assert ingest.success and failed_checks(ingest) == []
    jan = run_bill_cycle(warehouse, landing, JAN)
    assert jan.success and failed_checks(jan) == []
    return warehouse, landing


def q(warehouse, sql, params=None):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params).fetchall()


def rated(warehouse, price_id):
    """(line_type, dimensions, quantity, billable_quantity, amount) of January's lines of a price version."""
    rows = q(warehouse, """SELECT line_type, dimensions, quantity, billable_quantity, amount FROM billing.rated_usage
                           WHERE billing_month = ? AND price_id = ? ORDER BY line_type, amount""", [JAN, price_id])
    return [(t, json.loads(dims) if dims else None, qty, bq, amt) for t, dims, qty, bq, amt in rows]


def invoiced(warehouse, plan):
    """(line_type, price_id, amount, tax_amount, total_amount) of January's invoice lines of a plan's account."""
    return q(warehouse, """SELECT line_type, price_id, amount, tax_amount, total_amount FROM billing.invoice_lines
                           WHERE billing_month = ? AND account_id = ? ORDER BY price_id, line_type, service_start, amount""",
             [JAN, 1000 + plan])


U, MIN, MAX = "USAGE", "MINIMUM_TRUE_UP", "MAXIMUM_CAP"


def test_per_unit_with_allowance_and_flat_recurring(billed):
    w, _ = billed
    # 12.5 + 12.5 = 25 units, 10 included → 15 × 0.2 = 3.00
    assert rated(w, 101) == [(U, None, D("25"), D("15"), D("3.00"))]
    # monthly fee 10.00 for January (catch-up) and February (in advance), tax 1.00 each; usage 3.00 + 0.30
    assert invoiced(w, 10) == [
        ("RECURRING", 100, D("10.00"), D("1.00"), D("11.00")), ("RECURRING", 100, D("10.00"), D("1.00"), D("11.00")),
        (U, 101, D("3.00"), D("0.30"), D("3.30")),
    ]


def test_graduated(billed):
    w, _ = billed
    # 9 + 11 = 20, 4 included → 16: 5 × 1.00 + flat 2 + 5 × 0.50 + 6 × 0.25 = 5 + 2 + 2.5 + 1.5 = 11.00; tax 1.10
    assert rated(w, 201) == [(U, None, D("20"), D("16"), D("11.00"))]
    assert invoiced(w, 20) == [(U, 201, D("11.00"), D("1.10"), D("12.10"))]


def test_volume_with_maximum_cap(billed):
    w, _ = billed
    # 3 + 4.5 = 7.5 → tier 2 (5, 10]: all 7.5 × 0.50 = 3.75 (no flat); cap 3.00 → MAXIMUM_CAP 3.00 − 3.75 = −0.75
    assert [r[0::4] for r in rated(w, 301)] == [(MAX, D("-0.75")), (U, D("3.75"))]
    assert rated(w, 301)[1] == (U, None, D("7.5"), D("7.5"), D("3.75"))
    # tax: 3.75 × 10 % = 0.375 → 0.38; −0.75 × 10 % = −0.075 → −0.08 (half away from zero)
    assert invoiced(w, 30) == [(MAX, 301, D("-0.75"), D("-0.08"), D("-0.83")), (U, 301, D("3.75"), D("0.38"), D("4.13"))]


def test_package(billed):
    w, _ = billed
    # 120 + 131 = 251 units, 50 free → ceil(201 / 100) = 3 packages × 5 = 15.00
    assert rated(w, 401) == [(U, None, D("251"), D("201"), D("15.00"))]
    assert invoiced(w, 40) == [(U, 401, D("15.00"), D("1.50"), D("16.50"))]


def test_percentage(billed):
    w, _ = billed
    # events 10 (Jan 2), 100, 1000, 40 at 2 %, fee 0.10, per event [0.50, 5], first event free:
    # 10 → free; 100 → 2.00; 1000 → 20 → max 5.00; 40 → 0.80; fees 3 × 0.10 = 0.30 → 8.10
    (line,) = rated(w, 501)
    assert (line[0], line[2], line[4]) == (U, D("1150"), D("8.10"))
    assert invoiced(w, 50) == [(U, 501, D("8.10"), D("0.81"), D("8.91"))]


def test_graduated_percentage(billed):
    w, _ = billed
    # 1200 + 300 + 500 = 2000: 1000 × 3 % + 1000 × 1 % + flat 0.25 = 30 + 10 + 0.25 = 40.25; tax 4.025 → 4.03
    assert rated(w, 601) == [(U, None, D("2000"), D("2000"), D("40.25"))]
    assert invoiced(w, 60) == [(U, 601, D("40.25"), D("4.03"), D("44.28"))]


def test_matrix(billed):
    w, _ = billed
    # one line per cell: EU 10:00 → PEAK 10 × 0.10 = 1.00; EU 21:30 + 07:59:59 → OFFPEAK 10 × 0.05 = 0.50;
    # US 13:00 + 15:00 (US/* cell) → 5 × 0.20 = 1.00; ASIA (no cell) → default 1 × 0.50 = 0.50
    lines = {(d["zone"], d["time_band"]): (t, qty, amt) for t, d, qty, _, amt in rated(w, 701)}
    assert lines == {
        ("EU", "PEAK"): (U, D("10"), D("1.00")), ("EU", "OFFPEAK"): (U, D("10"), D("0.50")),
        ("US", "PEAK"): (U, D("5"), D("1.00")), ("ASIA", "PEAK"): (U, D("1"), D("0.50")),
    }
    # taxes 0.10, 0.05, 0.10, 0.05 per line; 3.00 + 0.30 in all
    inv = invoiced(w, 70)
    assert sorted((a, t) for _, _, a, t, _ in inv) == [(D("0.50"), D("0.05"))] * 2 + [(D("1.00"), D("0.10"))] * 2
    assert {r[0] for r in inv} == {U}


def test_dynamic(billed):
    w, _ = billed
    # price on the event: 2 × 1.99 + 1 × 4.99 = 3.98 + 4.99 = 8.97; tax 0.897 → 0.90
    (line,) = rated(w, 801)
    assert (line[0], line[2], line[4]) == (U, D("3"), D("8.97"))
    assert invoiced(w, 80) == [(U, 801, D("8.97"), D("0.90"), D("9.87"))]


def test_minimum_commitment(billed):
    w, _ = billed
    # 35 × 0.10 = 3.50 < minimum 10 → MINIMUM_TRUE_UP 10 − 3.50 = 6.50
    assert [r[0::4] for r in rated(w, 901)] == [(MIN, D("6.50")), (U, D("3.50"))]
    assert rated(w, 901)[1] == (U, None, D("35"), D("35"), D("3.50"))
    # tax 0.65 and 0.35
    assert invoiced(w, 90) == [(MIN, 901, D("6.50"), D("0.65"), D("7.15")), (U, 901, D("3.50"), D("0.35"), D("3.85"))]


def test_aggregations(billed):
    w, _ = billed
    # COUNT 3 events × 0.25 = 0.75; MAX(3, 7, 5) = 7 × 2 = 14; UNIQUE_COUNT {a, b} = 2 × 3 = 6;
    # LATEST by event time: 9 (Jan 20) × 4 = 36; TIME_WEIGHTED_SUM: (10 × 31 + 20 × 16) / 31 = 630 / 31
    # = 20.3225806452 GB-month × 0.5 = 10.1612903226 → 10.16
    got = {pid: (r[0], r[2], r[3], r[4]) for pid in (951, 952, 953, 954, 955) for r in rated(w, pid)}
    assert got == {
        951: (U, D("3"), D("3"), D("0.75")), 952: (U, D("7"), D("7"), D("14.00")), 953: (U, D("2"), D("2"), D("6.00")),
        954: (U, D("9"), D("9"), D("36.00")), 955: (U, D("20.3225806452"), D("20.3225806452"), D("10.16")),
    }
    # taxes: 0.075 → 0.08, 1.40, 0.60, 3.60, 1.016 → 1.02
    assert invoiced(w, 95) == [
        (U, 951, D("0.75"), D("0.08"), D("0.83")), (U, 952, D("14.00"), D("1.40"), D("15.40")),
        (U, 953, D("6.00"), D("0.60"), D("6.60")), (U, 954, D("36.00"), D("3.60"), D("39.60")),
        (U, 955, D("10.16"), D("1.02"), D("11.18")),
    ]


def test_every_january_event_rated(billed):
    w, _ = billed
    assert q(w, "SELECT count(*) FROM billing.unrated_usage WHERE billing_month = ?", [JAN]) == [(0,)]


def _materialized(result):
    return {"/".join(e.asset_key.path) for e in result.get_asset_materialization_events()}


def test_unrated_share_check_blocks_invoicing(billed):
    w, landing = billed
    # February: 2 events of unknown subscription 7777 among 12 → 16.7 % > 5 %: invoicing does not run
    blocked = run_bill_cycle(w, landing, FEB)
    assert "unrated_share_within_limit" in failed_checks(blocked)
    assert "billing/rated_usage" in _materialized(blocked)
    assert "billing/invoice_lines" not in _materialized(blocked)
    assert q(w, "SELECT count(*) FROM billing.invoice_lines WHERE billing_month = ?", [FEB]) == [(0,)]
    assert q(w, "SELECT reason, count(*) FROM billing.unrated_usage WHERE billing_month = ? GROUP BY 1", [FEB]) == \
        [("unknown subscription", 2)]
    # the limit raised for this run: invoicing proceeds (10 units, all within the 10 included; March's fee in advance)
    allowed = run_bill_cycle(w, landing, FEB, run_config={"ops": {"rating": {"config": {"max_unrated_share": 0.5}}}})
    assert allowed.success and failed_checks(allowed) == []
    assert "billing/invoice_lines" in _materialized(allowed)
    assert q(w, "SELECT count(*) FROM billing.invoice_lines WHERE billing_month = ?", [FEB])[0][0] > 0


# Late usage (docs/rating.md "Late usage"): usage of January's periods landing with February's batch
# is re-rated into January by February's run. Plan 10 prices api_calls at 0.20 per unit, 10 included
# (one account, bill cycle day 1: January's period is [Jan 1, Feb 1)); account AC15 (bill cycle day 15,
# subscription 5015 from Jan 1) bills [Dec 15, Jan 15) in January and [Jan 15, Feb 15) in February.
LATE_PLAN, MAR = 10, date(2025, 3, 1)


def usage_batch(landing, name, events):
    """Land a usage file: ``events`` = [(subscription_id, units, event_time)], api_calls."""
    write_usage(landing, name, [dict(op="I", seq=n, event_id=f"{name}-{n}", subscription_id=sub, metric="api_calls",
                                     quantity=qty, unit="U", event_time=when, zone="DOMESTIC", attributes=None)
                                for n, (sub, qty, when) in enumerate(events, 1)])


@pytest.fixture(scope="module")
def late(tmp_path_factory):
    """January billed on batch 1, then batch 2 landed and ingested (nothing re-rated yet)."""
    tmp = tmp_path_factory.mktemp("late_usage")
    landing, warehouse = tmp / "landing", tmp / "warehouse.duckdb"
    land_catalog(landing, {LATE_PLAN: CHARGES[LATE_PLAN]})
    land_accounts(landing, [(LATE_PLAN, LATE_PLAN, 1), (15, LATE_PLAN, 15)])
    usage_batch(landing, "usage_records-2025-01-31.parquet", [
        (5010, "10", datetime(2025, 1, 10)), (5010, "5", datetime(2025, 1, 20)), (5015, "4", datetime(2025, 1, 5))])
    assert run_ingest(warehouse, landing).success
    assert run_bill_cycle(warehouse, landing, JAN).success
    usage_batch(landing, "usage_records-2025-02-28.parquet", [
        (5010, "7", datetime(2025, 1, 25)),   # late: AC10's January period
        (5015, "1", datetime(2025, 1, 10)),   # late: AC15's [Dec 15, Jan 15)
        (5015, "3", datetime(2025, 1, 20)),   # February's: AC15's [Jan 15, Feb 15), not late
        (5010, "12", datetime(2025, 2, 3)), (5015, "1", datetime(2025, 2, 10))])
    assert run_ingest(warehouse, landing).success
    return warehouse, landing


def usage_lines(warehouse, month):
    """{subscription_id: (quantity, amount)} of a month's USAGE lines."""
    return dict((s, (qty, amt)) for s, qty, amt in q(warehouse, """
        SELECT subscription_id, quantity, amount FROM billing.rated_usage
        WHERE billing_month = ? AND line_type = 'USAGE' ORDER BY 1""", [month]))


def runs(warehouse):
    """{billing_month: (rated_at, events_rated, rerated_by)} of billing.rating_runs."""
    return {m: (at, n, by) for m, at, n, by in q(
        warehouse, "SELECT billing_month, rated_at, events_rated, rerated_by FROM billing.rating_runs ORDER BY 1")}


def rerated_metadata(result):
    """{partition: metadata} of the run's billing/rated_usage materializations."""
    return {e.partition: e.materialization.metadata for e in result.get_asset_materialization_events()
            if e.asset_key.path == ["billing", "rated_usage"]}


def stage(warehouse, result):
    """What a run left: its rated_usage metadata per partition, the USAGE lines of January to March and the rating runs."""
    return {"meta": rerated_metadata(result), "lines": {m: usage_lines(warehouse, m) for m in (JAN, FEB, MAR)},
            "runs": runs(warehouse), "success": result.success, "failed": failed_checks(result)}


@pytest.fixture(scope="module")
def narrow(late):
    """February billed with a lookback of 0 months (January out of reach)."""
    w, landing = late
    before = {"lines": usage_lines(w, JAN), "runs": runs(w)}
    return before, stage(w, run_bill_cycle(w, landing, FEB, run_config={"ops": {"rating": {"config": {"lookback_months": 0}}}}))


@pytest.fixture(scope="module")
def rerated(narrow, late):
    """February billed again with the default lookback (12 months)."""
    w, landing = late
    return stage(w, run_bill_cycle(w, landing, FEB))


@pytest.fixture(scope="module")
def rerun(rerated, late):
    """February billed once more, nothing landed since."""
    w, landing = late
    return stage(w, run_bill_cycle(w, landing, FEB))


@pytest.fixture(scope="module")
def march(rerun, late):
    """Batch 3 lands after January and February were rated, with nothing of theirs; March billed."""
    w, landing = late
    # AC15's Feb 20 is in its [Feb 15, Mar 15) (March's), AC10's Mar 5 in March
    usage_batch(landing, "usage_records-2025-03-31.parquet",
                [(5015, "2", datetime(2025, 2, 20)), (5010, "1", datetime(2025, 3, 5))])
    assert run_ingest(w, landing).success
    return stage(w, run_bill_cycle(w, landing, MAR))


def test_a_rating_records_what_it_saw(narrow):
    before, _ = narrow
    # January from batch 1: AC10 10 + 5 = 15 units, 10 included → 5 × 0.20 = 1.00; AC15 4 units on
    # [Jan 1, Jan 15) (14 of 31 days: 10 × 14/31 = 4.5161290323 included) → 0 billable
    assert before["lines"] == {5010: (D("15"), D("1.00")), 5015: (D("4"), D("0.00"))}
    assert before["runs"][JAN][1:] == (3, None)   # 3 events, rated by its own run


def test_late_usage_beyond_the_lookback_is_not_rerated(narrow):
    before, after = narrow
    assert after["success"] and after["failed"] == []
    assert after["lines"][JAN] == before["lines"] and after["runs"][JAN] == before["runs"][JAN]
    assert after["meta"][month_key(FEB)]["rerated_months"].data == {}
    assert month_key(JAN) not in after["meta"]


def test_the_next_run_rerates_the_month_late_usage_landed_in(rerated):
    assert rerated["success"] and rerated["failed"] == []
    # January with its 2 late events: AC10 15 + 7 = 22 units → 12 × 0.20 = 2.40;
    # AC15 4 + 1 = 5 units, 5 − 4.5161290323 = 0.4838709677 × 0.20 = 0.0967741935 → 0.10
    assert rerated["lines"][JAN] == {5010: (D("22"), D("2.40")), 5015: (D("5"), D("0.10"))}
    assert rerated["runs"][JAN][1:] == (5, FEB)   # 3 + 2 events, re-rated by February's run
    # February: AC10 12 units → 2 × 0.20 = 0.40; AC15 [Jan 15, Feb 15) 3 (Jan 20, not late) + 1 = 4 units, 10 included → 0
    assert rerated["lines"][FEB] == {5010: (D("12"), D("0.40")), 5015: (D("4"), D("0.00"))}
    assert rerated["runs"][FEB][1:] == (3, None)
    feb, jan = rerated["meta"][month_key(FEB)], rerated["meta"][month_key(JAN)]
    assert feb["rerated_months"].data == {"2025-01": 2} and feb["late_events"].value == 2
    assert (jan["rerated_by"].value, jan["late_events"].value) == ("2025-02", 2)   # January's partition re-materialized


def test_rerunning_with_nothing_landed_rerates_nothing(rerated, rerun):
    assert rerun["success"]
    assert rerun["lines"] == rerated["lines"] and rerun["runs"][JAN] == rerated["runs"][JAN]
    assert rerun["meta"][month_key(FEB)]["rerated_months"].data == {}
    assert month_key(JAN) not in rerun["meta"]


def test_new_usage_outside_the_rated_periods_rerates_nothing(rerun, march):
    assert march["success"]
    assert march["meta"][month_key(MAR)]["rerated_months"].data == {}
    assert march["runs"][JAN] == rerun["runs"][JAN] and march["runs"][FEB] == rerun["runs"][FEB]
    assert march["lines"][FEB] == rerun["lines"][FEB]
    # March: AC10 1 unit, AC15 2 units, each within 10 included → 0
    assert march["lines"][MAR] == {5010: (D("1"), D("0.00")), 5015: (D("2"), D("0.00"))}


T1, T2 = datetime(2025, 2, 1, 9), datetime(2025, 4, 1, 9)   # batch 1 ingested (all rated after it), batch 2


def late_months(lookback_months):
    """``late_usage`` for a run of April 2025 over given rows (no Dagster): accounts 1 (monthly) and 2
    (quarterly, bill cycle day 1: [Jan 1, Apr 1) billed in March), January to March rated after batch 1."""
    con = install_macros(duckdb.connect())
    create_table_with_rows(con, "core.billing_accounts", [
        {"account_id": 1, "bill_cycle_day": 1, "billing_cycle": "MONTHLY", "currency": "USD"},
        {"account_id": 2, "bill_cycle_day": 1, "billing_cycle": "QUARTERLY", "currency": "USD"}])
    create_table_with_rows(con, "core.subscription_versions", [
        {"subscription_id": 10, "account_id": 1, "valid_from": "2024-06-01"},
        {"subscription_id": 20, "account_id": 2, "valid_from": "2024-06-01"}],
        defaults={"product_id": 1, "plan_id": 1, "quantity": 1, "valid_to": "9999-12-31", "order_id": 1, "change_kind": "NEW"})
    create_table_with_rows(con, "audit.ingested_files", [
        {"file": "usage/batch1.parquet", "ingested_at": T1}, {"file": "usage/batch2.parquet", "ingested_at": T2}],
        defaults={"sha256": "x", "size_bytes": 1, "status": "LOADED", "records_read": 1, "records_loaded": 1,
                  "records_quarantined": 0})
    create_table_with_rows(con, "billing.rating_runs", [
        {"billing_month": m, "rated_at": T1, "ingested_through": T1, "events_rated": 1} for m in (JAN, FEB, MAR)])
    batch2 = "usage/batch2.parquet"
    create_table_with_rows(con, "core.usage_events", [
        {"event_id": "jan", "subscription_id": 10, "event_time": datetime(2025, 1, 20), "_file": batch2},
        {"event_id": "feb-deleted", "subscription_id": 10, "event_time": datetime(2025, 2, 5), "_file": batch2,
         "is_deleted": True},
        {"event_id": "quarter", "subscription_id": 20, "event_time": datetime(2025, 1, 10), "_file": batch2},
        {"event_id": "unknown-subscription", "subscription_id": 99, "event_time": datetime(2025, 2, 10), "_file": batch2},
        {"event_id": "seen", "subscription_id": 10, "event_time": datetime(2025, 1, 15), "_file": "usage/batch1.parquet"},
        {"event_id": "april", "subscription_id": 10, "event_time": datetime(2025, 4, 3), "_file": batch2},
        {"event_id": "never-rated", "subscription_id": 10, "event_time": datetime(2024, 11, 2), "_file": batch2}],
        defaults={"metric": "data_mb", "quantity": 1, "is_deleted": False})
    return late_usage(con, date(2025, 4, 1), lookback_months)


def test_late_usage_finds_each_event_in_the_month_billing_its_period():
    # January: "jan"; February: "feb-deleted" (a late delete) and "unknown-subscription" (its calendar month);
    # March: "quarter" (account 2's [Jan 1, Apr 1)). Not late: "seen" (batch 1, seen by January's rating),
    # "april" (the run's own month), "never-rated" (November 2024 was never rated)
    assert late_months(12) == [(JAN, 1), (FEB, 2), (MAR, 1)]
    # a lookback of 1 month reaches March only
    assert late_months(1) == [(MAR, 1)]
