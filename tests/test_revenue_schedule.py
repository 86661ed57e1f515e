"""The recognition schedule (docs/revenue.md "Recognition"): ratable by day with cumulative rounding, usage by
event time, goods at delivery, fees over the expected term, what closed months posted, the day grain, the
first open month; property tests. Every number is worked out in the comments and matches docs/revenue.md."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.periods import add_months
from pipelines.revenue.obligations import obligation_rows
from pipelines.revenue.schedule import (
    DAILY_COLUMNS,
    SCHEDULE_COLUMNS,
    daily_schedule,
    first_open_month,
    schedule_rows,
)
from tests.test_revenue_allocation import handset_books
from tests.test_revenue_obligations import books, documents_of, line
from warehouse.fixtures import create_table_with_rows

JAN, FEB = date(2025, 1, 1), date(2025, 2, 1)


def schedule(con, first_open: date | None = JAN) -> dict[str, dict[date, dict]]:
    """{obligation_id: {service_month: row}} of the schedule over the obligations of ``con``'s ledger."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE obligations AS {obligation_rows(con, first_open)}")
    rel = con.sql(schedule_rows(con, "obligations", first_open))
    assert rel.columns == SCHEDULE_COLUMNS
    out: dict[str, dict[date, dict]] = defaultdict(dict)
    for r in rel.fetchall():
        row = dict(zip(rel.columns, r))
        out[row["obligation_id"]][row["service_month"]] = row
    return out


def amounts(rows: dict[date, dict]) -> dict[date, D]:
    return {m: r["scheduled_amount"] for m, r in rows.items()}


def test_31_day_period_across_two_months():
    """31.00 over [Jan 20, Feb 20) = 31 days: through Feb 1, 12 days: 31 x 12/31 = 12.00; Feb: 31.00 - 12.00 = 19.00."""
    rec = line("RECURRING", "31.00", date(2025, 1, 20), date(2025, 2, 20), subscription_id=10)
    s = schedule(books(ledger__document_lines=[rec]))[rec["line_id"]]
    assert amounts(s) == {JAN: D("12.00"), FEB: D("19.00")}
    assert [s[m]["cumulative_amount"] for m in (JAN, FEB)] == [D("12.00"), D("31.00")]


def test_annual_plan_over_months_of_unequal_length_and_a_leap_year():
    """120.00 over [2024-02-15, 2025-02-15) = 366 days (February 2024 has 29). Cumulative at each month end
    = round(120 x elapsed/366): Feb 15 days 4.918 -> 4.92; Mar 46 15.082 -> 15.08 (month 10.16); Apr 76
    24.918 -> 24.92 (9.84); May 107 -> 35.08 (10.16); Jun 137 -> 44.92 (9.84); Jul 168 -> 55.08 (10.16);
    Aug 199 65.246 -> 65.25 (10.17); Sep 229 -> 75.08 (9.83); Oct 260 -> 85.25 (10.17); Nov 290 -> 95.08
    (9.83); Dec 321 -> 105.25 (10.17); Jan 2025 352 115.410 -> 115.41 (10.16); Feb 2025 366 -> 120.00 (4.59)."""
    rec = line("RECURRING", "120.00", date(2024, 2, 15), date(2025, 2, 15), subscription_id=10)
    s = schedule(books(ledger__document_lines=[rec]), first_open=date(2024, 2, 1))[rec["line_id"]]
    expected = ["4.92", "10.16", "9.84", "10.16", "9.84", "10.16", "10.17", "9.83", "10.17", "9.83", "10.17",
                "10.16", "4.59"]
    assert amounts(s) == {add_months(date(2024, 2, 1), k): D(x) for k, x in enumerate(expected)}
    assert sum(amounts(s).values()) == D("120.00")


def test_handset_contract_asset_at_delivery_runs_off_over_the_term():
    """The handset contract (tests/test_revenue_allocation.py): January recognizes the device's 371.93 at
    delivery and the first service month's 18.63, while 99.00 + 30.00 = 129.00 is billed: a contract asset of
    390.56 - 129.00 = 261.56. Month k's end: 371.93 + round(447.07 x k/24) - (99.00 + 30.00 k): February
    371.93 + 37.26 - 159.00 = 250.19, ... December 2026 371.93 + 447.07 - 819.00 = 0."""
    con, device, services = handset_books()
    s = schedule(con)
    assert amounts(s[device]) == {JAN: D("371.93")}
    billed = recognized = D(0)
    asset = {}
    for k, sid in enumerate(services, start=1):
        month = add_months(JAN, k - 1)
        billed += (D("99.00") if k == 1 else 0) + D("30.00")
        recognized += sum(r["scheduled_amount"] for o in s.values() for m, r in o.items() if m == month)
        asset[month] = recognized - billed
    assert (asset[JAN], asset[FEB], asset[date(2026, 12, 1)]) == (D("261.56"), D("250.19"), D("0.00"))
    assert all(a > 0 for m, a in asset.items() if m < date(2026, 12, 1))
    assert all(later < earlier for earlier, later in zip(asset.values(), list(asset.values())[1:]))


def test_mid_term_upgrade_restates_nothing_earlier():
    """With the upgrade on Jul 1, January-June schedule exactly what they did without it; July recognizes
    END-ORD-50's -204.70 and the 40.00 of plan 101."""
    con, device, services = handset_books(upgrade_on=date(2025, 7, 1))
    base, base_device, base_services = handset_books()
    s, before = schedule(con), schedule(base)
    for new, old in zip([device, *services[:6]], [base_device, *base_services[:6]]):
        assert s[new] == {m: {**r, "obligation_id": new} for m, r in before[old].items()}
    assert amounts(s["END-ORD-50"]) == {date(2025, 7, 1): D("-204.70")}
    assert amounts(s[services[6]]) == {date(2025, 7, 1): D("40.00")}


def test_credit_note_after_partial_service_and_late_usage_after_close():
    """The credit of -26.00 over [Jan 20, Feb 15) (tests/test_revenue_obligations.py) recognizes by day:
    through Feb 1, 12 of 26 days: -26 x 12/26 = -12.00; February -14.00. January is closed (posted 17.00
    of the 31.00 line: 31 x 17/31) so F = February: the credit's January -12.00 is booked in February, a
    correction concerning January. Late usage for January invoiced in February (5.00 over [Jan 1, Feb 1)):
    January's 5.00 is booked in February too."""
    rec = line("RECURRING", "31.00", date(2025, 1, 15), date(2025, 2, 15), subscription_id=10, document_id="INV-C")
    credit = line("RECURRING_CREDIT", "-26.00", date(2025, 1, 20), date(2025, 2, 15), subscription_id=10,
                  document_id="CN-C", reference_line_id=rec["line_id"])
    late = line("USAGE_ADJUSTMENT", "5.00", JAN, FEB, subscription_id=10, document_id="INV-L")
    lines = [rec, credit, late]
    posted = {"accounting_month": JAN, "obligation_id": rec["line_id"], "contract_id": "ACC-1", "account_id": 1,
              "currency": "USD", "obligation_kind": "SERVICE", "product_line": "MOBILE", "concerns_month": JAN,
              "amount": "17.00", "is_correction": False}
    con = books(ledger__document_lines=lines, ledger__documents=documents_of(lines, {"CN-C": FEB, "INV-L": FEB}),
                revenue__recognized=[posted],
                revenue__closed_months=[{"accounting_month": JAN, "recognized_rows": 1, "journal_lines": 0,
                                         "totals": "{}", "content_hash": "h", "closed_at": "2025-02-01"}])
    f = first_open_month(con)
    assert f == FEB
    s = schedule(con, f)
    assert {m: (r["scheduled_amount"], r["posted_amount"], r["open_amount"], r["booked_month"])
            for m, r in s[rec["line_id"]].items()} == {
        JAN: (D("17.00"), D("17.00"), D("0.00"), FEB), FEB: (D("14.00"), D("0.00"), D("14.00"), FEB)}
    assert {m: (r["open_amount"], r["booked_month"]) for m, r in s[credit["line_id"]].items()} == {
        JAN: (D("-12.00"), FEB), FEB: (D("-14.00"), FEB)}
    assert {m: (r["open_amount"], r["booked_month"]) for m, r in s[late["line_id"]].items()} == {JAN: (D("5.00"), FEB)}


def _usage_books(events: list[tuple[str, str]]):
    use = line("USAGE", "10.00", date(2025, 1, 15), date(2025, 2, 15), subscription_id=10, price_id=1020)
    con = books(ledger__document_lines=[use],
                core__plan_charges=[{"price_id": 1020, "plan_id": 100, "charge_code": "data", "charge_type": "USAGE",
                                     "metric": "data_mb", "aggregation": "SUM", "billing_timing": "IN_ARREARS"}],
                core__usage_events=[{"event_id": f"e{i}", "subscription_id": 10, "metric": "data_mb", "quantity": q,
                                     "event_time": t} for i, (q, t) in enumerate(events)])
    return con, use["line_id"]


def test_usage_is_recognized_when_consumed():
    """10.00 of data over [Jan 15, Feb 15): 300 MB used on Jan 20, 100 MB on Feb 3 (and 50 MB on Feb 20,
    outside the window, ignored): January 10 x 300/400 = 7.50, February 2.50. Without events, by day:
    January 17 of 31 days 5.4839 -> 5.48, February 4.52."""
    con, use = _usage_books([("300", "2025-01-20 10:00"), ("100", "2025-02-03 08:00"), ("50", "2025-02-20")])
    assert amounts(schedule(con)[use]) == {JAN: D("7.50"), FEB: D("2.50")}
    con, use = _usage_books([])
    assert amounts(schedule(con)[use]) == {JAN: D("5.48"), FEB: D("4.52")}


def test_activation_fee_cut_at_the_service_end_recognizes_the_rest_on_its_last_day():
    """25.00 from Jan 7 spread over 730 days, the service ending Mar 7: January 25 days 25 x 25/730 = 0.856 ->
    0.86; February 53 days 1.815 -> 1.82 (0.96); March: the window ends, the rest 25.00 - 1.82 = 23.18."""
    fee = line("ONE_TIME", "25.00", date(2025, 1, 7), date(2025, 1, 8), product_id=8, source_ref="601")
    con = books(ledger__document_lines=[fee],
                core__orders=[{"order_id": 42, "order_number": "O-42", "effective_date": "2025-01-07"}],
                core__order_items=[{"order_item_id": 601, "order_id": 42, "product_id": 8}],
                core__subscriptions=[{"subscription_id": 12, "product_id": 1, "start_date": "2025-01-07",
                                      "end_date": "2025-03-07", "status": "ENDED", "created_order_id": 42}])
    assert amounts(schedule(con)[fee["line_id"]]) == {JAN: D("0.86"), FEB: D("0.96"), date(2025, 3, 1): D("23.18")}


def test_first_open_month():
    """Nothing: None. Activity from a line serving January (issued Feb 1): January. Closed through
    February: March."""
    assert first_open_month(books()) is None
    rec = line("RECURRING", "30.00", JAN, FEB, subscription_id=10, document_id="INV-F")
    lines = [rec]
    docs = documents_of(lines, {"INV-F": FEB})
    assert first_open_month(books(ledger__document_lines=lines, ledger__documents=docs)) == JAN
    closed = [{"accounting_month": m, "recognized_rows": 0, "journal_lines": 0, "totals": "{}", "content_hash": "h",
               "closed_at": "2025-03-01"} for m in (JAN, FEB)]
    assert first_open_month(books(ledger__document_lines=lines, ledger__documents=docs,
                                  revenue__closed_months=closed)) == date(2025, 3, 1)


# --- properties ---------------------------------------------------------------------------------------

_obligation = st.fixed_dictionaries({
    "pattern": st.sampled_from(["RATABLE", "RATABLE", "POINT_IN_TIME"]),
    "start": st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 12, 31)),
    "days": st.integers(min_value=1, max_value=800),
    "extra_spread": st.integers(min_value=0, max_value=400),  # a fee whose term outlives its service
    "amount": st.decimals(min_value=D("0.00"), max_value=D("99999.99"), places=2),
    "currency": st.sampled_from(["USD", "JPY", "KWD"]),
})


def _obligations_table(con, obligations: list[dict]) -> str:
    rows = []
    for i, o in enumerate(obligations):
        days = 1 if o["pattern"] == "POINT_IN_TIME" else o["days"]
        amount = o["amount"].quantize(D(1)) if o["currency"] == "JPY" else o["amount"]
        rows.append({"obligation_id": f"O{i}", "contract_id": "ACC-1", "account_id": 1, "currency": o["currency"],
                     "obligation_kind": "SERVICE", "pattern": o["pattern"], "product_line": "MOBILE",
                     "recognition_start": o["start"], "recognition_end": o["start"] + timedelta(days=days),
                     "spread_days": days + o["extra_spread"], "billed_month": o["start"].replace(day=1),
                     "billed_amount": amount, "allocated_amount": amount})
    return create_table_with_rows(con, "revenue.performance_obligations", rows, schema="given")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_obligation, min_size=1, max_size=6))
def test_schedules_sum_exactly_never_go_negative_and_days_sum_to_months(obligations):
    con = books()
    table = _obligations_table(con, obligations)
    monthly = con.sql(schedule_rows(con, table, None))
    daily = con.sql(daily_schedule(con, table))
    assert daily.columns == DAILY_COLUMNS
    by_month = {(r[0], r[1]): r[2] for r in con.sql(
        f"SELECT obligation_id, service_month, scheduled_amount FROM ({monthly.sql_query()})").fetchall()}
    days_by_month: dict = defaultdict(D)
    for oid, month, amount in con.sql(f"SELECT obligation_id, service_month, scheduled_amount FROM ({daily.sql_query()})").fetchall():
        days_by_month[(oid, month)] += amount
    assert {k: v for k, v in days_by_month.items() if v != 0} == by_month
    allocated = dict(con.execute(f"SELECT obligation_id, allocated_amount FROM {table}").fetchall())
    total: dict = defaultdict(D)
    for (oid, _), amount in by_month.items():
        assert amount >= 0
        total[oid] += amount
    assert {k: v for k, v in allocated.items() if v != 0} == dict(total)
    start_end = {r[0]: (r[1], r[2]) for r in con.execute(
        f"SELECT obligation_id, recognition_start, recognition_end FROM {table}").fetchall()}
    for oid, day, amount in con.sql(f"SELECT obligation_id, service_day, scheduled_amount FROM ({daily.sql_query()})").fetchall():
        assert amount == 0 or start_end[oid][0] <= day < start_end[oid][1]  # never outside the window


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=30 * 24 * 60 - 1),
                          st.decimals(min_value=D("0"), max_value=D("5000"), places=3)), max_size=12),
       st.decimals(min_value=D("0.01"), max_value=D("999.99"), places=2))
def test_consumption_schedules_sum_exactly_and_days_sum_to_months(events, amount):
    """Random usage over [Jan 15, Feb 15) (minutes from Jan 15): monthly = daily summed, Σ = the amount, >= 0."""
    con, use = _usage_books([(str(q), (datetime(2025, 1, 15) + timedelta(minutes=m)).isoformat(sep=" "))
                             for m, q in events])
    con.execute("UPDATE ledger.document_lines SET net_amount = ?", [amount])
    monthly = schedule(con)[use]
    assert all(r["scheduled_amount"] >= 0 for r in monthly.values())
    assert sum(r["scheduled_amount"] for r in monthly.values()) == amount
    con.execute(f"CREATE OR REPLACE TEMP TABLE obligations AS {obligation_rows(con, JAN)}")
    days: dict = defaultdict(D)
    for month, value in con.sql(f"SELECT service_month, scheduled_amount FROM ({daily_schedule(con, 'obligations')})").fetchall():
        days[month] += value
    assert {m: v for m, v in days.items() if v != 0} == {m: r["scheduled_amount"] for m, r in monthly.items()}


def test_the_code_block_of_docs_revenue_md_runs_as_written():
    """docs/revenue.md's first code block, run as written on the 31-day example: 31.00 over [Jan 20, Feb 20)
    recognizes 31 x 12/31 = 12.00 in January and 19.00 in February, and its 31 days sum to the same months."""
    import re
    from pathlib import Path

    block = re.search(r"```python\n(.*?)```", (Path(__file__).parents[1] / "docs" / "revenue.md").read_text(), re.S)[1]
    ln = line("RECURRING", "31.00", date(2025, 1, 20), date(2025, 2, 20), subscription_id=10)
    scope = {"con": books(ledger__document_lines=[ln])}
    exec(block, scope)
    assert scope["f"] == date(2025, 1, 1)
    months = scope["schedule"].filter(f"obligation_id = '{ln['line_id']}'").project("service_month, scheduled_amount")
    assert sorted(months.fetchall()) == [(date(2025, 1, 1), D("12.00")), (date(2025, 2, 1), D("19.00"))]
    by_day = scope["by_day"].filter(f"obligation_id = '{ln['line_id']}'")
    assert by_day.aggregate("service_month, count(*), sum(scheduled_amount)", "service_month").order("service_month").fetchall() == [
        (date(2025, 1, 1), 12, D("12.00")), (date(2025, 2, 1), 19, D("19.00"))]  # 12 and 19 days of 1.00
    assert scope["allocations"].fetchall() == []  # a line alone is allocated what it bills: no allocation row
