"""Revenue recognition: ratable schedules with cumulative rounding, credits, point-in-time
lines, catch-up, deferred balances. Every expected number is worked out in the comments
(docs/revenue.md has the same examples)."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from decimal import Decimal as D
from fractions import Fraction
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import install_macros
from domain.periods import add_months
from pipelines.revenue import deferred_balances, engine, recognize
from pipelines.revenue.engine import DEFERRED_BALANCE_COLUMNS, RECOGNITION_COLUMNS
from warehouse.ddl import create_tables

_ids = itertools.count(1)


def _con():
    c = duckdb.connect()
    install_macros(c)
    create_tables(c, ["billing.invoice_lines", "revenue.recognition", "revenue.deferred_balances"])
    return c


@pytest.fixture
def con():
    c = _con()
    yield c
    c.close()


def line(con, month, line_type, net, start=None, end=None, currency="USD", account=1):
    lid = f"L{next(_ids)}"
    con.execute(
        """INSERT INTO billing.invoice_lines (line_id, invoice_id, billing_month, account_id, line_type, service_start,
           service_end, amount, discount_amount, net_amount, tax_amount, total_amount, currency)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, 0, ?, ?)""",
        [lid, f"INV-{account}-{month}", month, account, line_type, start, end, D(net), D(net), D(net), currency])
    return lid


def schedule(con, lid, months):
    """{month: (recognized, cumulative, deferred)} for the line over ``months`` (absent = no row)."""
    out = {}
    for m in months:
        for r in recognize(con, m).fetchall():
            row = dict(zip(RECOGNITION_COLUMNS, r))
            if row["line_id"] == lid:
                out[m] = (row["recognized_amount"], row["cumulative_recognized"], row["deferred_amount"])
    return out


def months(first, n):
    return [add_months(first, i) for i in range(n)]


def test_columns_match_ddl(con):
    def cols(t):
        return [r[0] for r in con.execute(
            f"SELECT column_name FROM duckdb_columns() WHERE schema_name='revenue' AND table_name='{t}' ORDER BY column_index").fetchall()]
    assert recognize(con, date(2025, 3, 1)).columns == cols("recognition") == RECOGNITION_COLUMNS
    assert deferred_balances(con, date(2025, 3, 1), recognition="revenue.recognition").columns == cols("deferred_balances") \
        == DEFERRED_BALANCE_COLUMNS
    assert con.execute("SELECT count(*) FROM duckdb_columns() WHERE schema_name='revenue' AND (comment IS NULL OR comment='')").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name='revenue' AND comment IS NOT NULL").fetchone()[0] == 2


def test_31_day_schedule(con):
    """100.00 over [Jan 20, Feb 20) = 31 days: Jan 12 days -> 100 x 12/31 = 38.709677 -> 38.71; Feb -> 100.00 - 38.71 = 61.29."""
    lid = line(con, date(2025, 1, 1), "RECURRING", "100.00", date(2025, 1, 20), date(2025, 2, 20))
    assert schedule(con, lid, months(date(2025, 1, 1), 3)) == {
        date(2025, 1, 1): (D("38.71"), D("38.71"), D("61.29")),
        date(2025, 2, 1): (D("61.29"), D("100.00"), D("0")),
    }


def test_cumulative_rounding_sums_exactly(con):
    """100.00 over [Jan 20, Apr 20) = 90 days (Jan 12, Feb 28, Mar 31, Apr 19).
    Cumulative: 100 x 12/90 = 13.333 -> 13.33; x 40/90 = 44.444 -> 44.44; x 71/90 = 78.888 -> 78.89; 100.00.
    Months: 13.33, 31.11, 34.45, 21.11 = 100.00 (rounding each month alone would give
    13.33 + 31.11 + 34.44 + 21.11 = 99.99)."""
    lid = line(con, date(2025, 1, 1), "RECURRING", "100.00", date(2025, 1, 20), date(2025, 4, 20))
    s = schedule(con, lid, months(date(2025, 1, 1), 6))
    assert [v[0] for v in s.values()] == [D("13.33"), D("31.11"), D("34.45"), D("21.11")]
    assert [v[1] for v in s.values()] == [D("13.33"), D("44.44"), D("78.89"), D("100.00")]
    assert sum(v[0] for v in s.values()) == D("100.00")


def test_negative_credit_line(con):
    """Credit -15.00 over [Mar 20, Apr 15) = 26 days: March 12 days -> -15 x 12/26 = -6.923 -> -6.92
    (half away from zero); April -8.08."""
    lid = line(con, date(2025, 3, 1), "RECURRING_CREDIT", "-15.00", date(2025, 3, 20), date(2025, 4, 15))
    s = schedule(con, lid, months(date(2025, 3, 1), 3))
    assert s == {date(2025, 3, 1): (D("-6.92"), D("-6.92"), D("-8.08")), date(2025, 4, 1): (D("-8.08"), D("-15.00"), D("0"))}
    (row,) = [r for r in recognize(con, date(2025, 3, 1)).fetchall() if r[1] == lid]
    assert dict(zip(RECOGNITION_COLUMNS, row))["obligation_type"] == "RATABLE"


def test_point_in_time_lines(con):
    usage = line(con, date(2025, 3, 1), "USAGE", "12.35", date(2025, 3, 1), date(2025, 4, 1))
    trueup = line(con, date(2025, 3, 1), "MINIMUM_TRUE_UP", "5.00", date(2025, 3, 1), date(2025, 4, 1))
    device = line(con, date(2025, 3, 1), "ONE_TIME", "499.00", date(2025, 3, 20), date(2025, 3, 21))
    rows = {r[1]: dict(zip(RECOGNITION_COLUMNS, r)) for r in recognize(con, date(2025, 3, 1)).fetchall()}
    for lid, amt in [(usage, "12.35"), (trueup, "5.00"), (device, "499.00")]:
        assert rows[lid]["obligation_type"] == "POINT_IN_TIME"
        assert (rows[lid]["recognized_amount"], rows[lid]["cumulative_recognized"], rows[lid]["deferred_amount"]) == (D(amt), D(amt), D(0))
    assert recognize(con, date(2025, 4, 1)).fetchall() == []  # fully recognized before April: skipped
    assert recognize(con, date(2025, 2, 1)).fetchall() == []  # not billed yet


def test_billed_in_advance_is_deferred_then_recognized(con):
    """Billed in February for March: February shows it fully deferred (nothing recognized), March recognizes it."""
    lid = line(con, date(2025, 2, 1), "RECURRING", "29.99", date(2025, 3, 1), date(2025, 4, 1))
    assert schedule(con, lid, months(date(2025, 1, 1), 4)) == {
        date(2025, 2, 1): (D(0), D(0), D("29.99")), date(2025, 3, 1): (D("29.99"), D("29.99"), D(0))}


def test_catch_up_when_billed_after_service_started(con):
    """Billed in March for [Feb 15, Apr 16) = 60 days, net 60.00: nothing in February (not billed yet, the closed
    month is not restated); March catches up Feb 15..Mar 31 = 45 days -> 45.00; April 15.00."""
    lid = line(con, date(2025, 3, 1), "RECURRING", "60.00", date(2025, 2, 15), date(2025, 4, 16))
    assert schedule(con, lid, months(date(2025, 1, 1), 5)) == {
        date(2025, 3, 1): (D("45.00"), D("45.00"), D("15.00")), date(2025, 4, 1): (D("15.00"), D("60.00"), D(0))}


def test_minor_units_jpy(con):
    """1000 JPY over 3 days [Jan 31, Feb 3): Jan 1000/3 = 333.33 -> 333; Feb 667."""
    lid = line(con, date(2025, 1, 1), "RECURRING", "1000", date(2025, 1, 31), date(2025, 2, 3), currency="JPY")
    assert schedule(con, lid, months(date(2025, 1, 1), 2)) == {
        date(2025, 1, 1): (D(333), D(333), D(667)), date(2025, 2, 1): (D(667), D(1000), D(0))}


def test_deferred_balance_invariant(con):
    line(con, date(2025, 1, 1), "RECURRING", "100.00", date(2025, 1, 20), date(2025, 4, 20))
    line(con, date(2025, 2, 1), "RECURRING", "29.99", date(2025, 3, 1), date(2025, 4, 1))
    line(con, date(2025, 3, 1), "RECURRING_CREDIT", "-21.28", date(2025, 3, 10), date(2025, 4, 1))
    line(con, date(2025, 3, 1), "RECURRING", "60.00", date(2025, 2, 15), date(2025, 4, 16))
    line(con, date(2025, 3, 1), "USAGE", "12.35", date(2025, 3, 1), date(2025, 4, 1))
    line(con, date(2025, 2, 1), "RECURRING", "119.00", date(2025, 2, 1), date(2026, 2, 1), currency="EUR", account=2)
    line(con, date(2025, 2, 1), "ONE_TIME", "1000", date(2025, 2, 3), date(2025, 2, 4), currency="JPY", account=3)
    expected_billed = {"USD": [D("100.00"), D("29.99"), D("51.07"), D(0), D(0), D(0)],
                       "EUR": [D(0), D("119.00"), D(0), D(0), D(0), D(0)], "JPY": [D(0), D(1000), D(0), D(0), D(0), D(0)]}
    for i, m in enumerate(months(date(2025, 1, 1), 6)):
        rec = recognize(con, m)
        rec.create_view("_rec", replace=True)
        con.execute("INSERT INTO revenue.recognition BY NAME SELECT * FROM _rec")
        bal = [dict(zip(DEFERRED_BALANCE_COLUMNS, r)) for r in deferred_balances(con, m, recognition="revenue.recognition").fetchall()]
        for b in bal:
            assert b["billed_to_date"] == b["recognized_to_date"] + b["deferred_revenue"]
            assert b["billed_in_month"] == expected_billed[b["currency"]][i]
            # recognized to date = the sum of every month's recognized amounts
            assert b["recognized_to_date"] == con.execute(
                "SELECT coalesce(sum(recognized_amount), 0) FROM revenue.recognition WHERE currency = ? AND billing_month <= ?",
                [b["currency"], m]).fetchone()[0]
        # the month's recognize output alone gives the same balances as the whole table
        assert deferred_balances(con, m, recognition="_rec").fetchall() == \
            deferred_balances(con, m, recognition="revenue.recognition").fetchall()
        assert deferred_balances(con, m, recognition="revenue.recognition").fetchall() == \
            deferred_balances(con, m, recognition="revenue.recognition").fetchall()
    # June: USD fully recognized; EUR 119.00 over 365 days, through Jul 1 = 150 days -> 119 x 150/365 = 48.904 -> 48.90
    june = {r[1]: dict(zip(DEFERRED_BALANCE_COLUMNS, r))
            for r in deferred_balances(con, date(2025, 6, 1), recognition="revenue.recognition").fetchall()}
    assert june["USD"]["deferred_revenue"] == 0 and june["USD"]["recognized_to_date"] == D("181.06")
    assert june["EUR"]["recognized_to_date"] == D("48.90") and june["EUR"]["deferred_revenue"] == D("70.10")
    assert june["JPY"]["deferred_revenue"] == 0 and june["JPY"]["recognized_in_month"] == 0


_HCON = None


def _hcon():
    global _HCON
    if _HCON is None:
        _HCON = _con()
    return _HCON


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cents=st.integers(min_value=-10**9, max_value=10**9),
    start=st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 12, 31)),
    length=st.integers(min_value=1, max_value=500),
    delay=st.integers(min_value=0, max_value=3),
    currency=st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_schedule_property(cents, start, length, delay, currency):
    """Any amount over any [start, end): the monthly amounts sum exactly to the amount and each is within one
    minor unit of the exact pro-rata amount of the days it covers (including caught-up days)."""
    exp = {"USD": 2, "JPY": 0, "KWD": 3}[currency]
    amount = D(cents).scaleb(-exp)
    con = _hcon()
    con.execute("DELETE FROM billing.invoice_lines")
    end = start + timedelta(days=length)
    first = add_months(start.replace(day=1), delay)
    lid = line(con, first, "RECURRING", str(amount), start, end, currency=currency)
    unit = Fraction(1, 10**exp)
    total, prev_exact, m = D(0), Fraction(0), first
    last = max(first, add_months(end.replace(day=1), 1))
    while m <= last:
        rows = [dict(zip(RECOGNITION_COLUMNS, r)) for r in recognize(con, m).fetchall()]
        got = next((r["recognized_amount"] for r in rows if r["line_id"] == lid), D(0))
        elapsed = min(max((add_months(m, 1) - start).days, 0), length)
        exact = Fraction(amount) * elapsed / length
        assert abs(Fraction(got) - (exact - prev_exact)) <= unit
        prev_exact = exact
        total += got
        m = add_months(m, 1)
    assert total == amount


def test_deferred_balance_detects_inconsistent_rows(con):
    """A recognition row whose obligation is not its line's net amount breaks the invariant."""
    line(con, date(2025, 3, 1), "RECURRING", "30.00", date(2025, 3, 16), date(2025, 4, 16))
    recognize(con, date(2025, 3, 1)).create_view("_rec", replace=True)
    con.execute("CREATE TABLE bad AS SELECT * REPLACE (obligation_amount + 1 AS obligation_amount, "
                "deferred_amount + 1 AS deferred_amount) FROM _rec")
    (good,) = deferred_balances(con, date(2025, 3, 1), recognition="_rec").fetchall()
    (bad,) = deferred_balances(con, date(2025, 3, 1), recognition="bad").fetchall()
    g, b = dict(zip(DEFERRED_BALANCE_COLUMNS, good)), dict(zip(DEFERRED_BALANCE_COLUMNS, bad))
    # 30.00 over 31 days, 16 in March: 30 x 16 / 31 = 15.4838... -> 15.48 recognized, 14.52 deferred
    assert (g["recognized_in_month"], g["deferred_revenue"], g["billed_to_date"]) == (D("15.48"), D("14.52"), D("30.00"))
    assert g["billed_to_date"] == g["recognized_to_date"] + g["deferred_revenue"]
    assert b["billed_to_date"] != b["recognized_to_date"] + b["deferred_revenue"]


# ---------------------------------------------------------------------------------------------
# The steps alone, on given rows (pipelines/revenue/engine.py)

MARCH = date(2025, 3, 1)


def given(con, name: str, columns: str, *rows: tuple) -> str:
    """Table ``name`` with ``columns`` (SQL column definitions) holding ``rows``."""
    con.execute(f"CREATE TABLE {name} ({columns})")
    con.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(rows[0]))})", list(rows))
    return name


def test_step_obligations(con):
    """Lines billed up to March; RATABLE only for recurring lines with a non-empty service period."""
    a = line(con, date(2025, 1, 1), "RECURRING", "100.00", date(2025, 1, 20), date(2025, 4, 20))
    b = line(con, MARCH, "RECURRING_CREDIT", "-15.00", date(2025, 3, 20), date(2025, 4, 15))
    c = line(con, MARCH, "RECURRING", "5.00", date(2025, 3, 20), date(2025, 3, 20))   # empty period
    d = line(con, MARCH, "USAGE", "12.35", date(2025, 3, 1), date(2025, 4, 1))
    line(con, date(2025, 4, 1), "RECURRING", "9.00", date(2025, 4, 1), date(2025, 5, 1))  # billed after March: not yet
    got = con.sql(engine.obligations(MARCH, "billing.invoice_lines")).select(
        "line_id, line_month, obligation_amount, obligation_type, total_days").fetchall()
    assert sorted(got) == sorted([
        (a, date(2025, 1, 1), D("100.00"), "RATABLE", 90),     # Jan 20 .. Apr 20 = 12 + 28 + 31 + 19 days
        (b, MARCH, D("-15.00"), "RATABLE", 26),
        (c, MARCH, D("5.00"), "POINT_IN_TIME", 0),
        (d, MARCH, D("12.35"), "POINT_IN_TIME", 31),
    ])


OBLIGATIONS = ("line_id VARCHAR, currency VARCHAR, line_month DATE, obligation_amount DECIMAL(18,4), service_start DATE, "
               "obligation_type VARCHAR, total_days BIGINT")


def test_step_cumulative_recognized(con):
    obligations = given(con, "obligations", OBLIGATIONS,
                        ("jan", "USD", date(2025, 1, 1), D("100.00"), date(2025, 1, 20), "RATABLE", 90),
                        ("mar", "USD", MARCH, D("100.00"), date(2025, 1, 20), "RATABLE", 90),
                        ("feb_usage", "USD", date(2025, 2, 1), D("12.35"), date(2025, 2, 1), "POINT_IN_TIME", 28),
                        ("mar_usage", "USD", MARCH, D("12.35"), MARCH, "POINT_IN_TIME", 31),
                        ("jpy", "JPY", MARCH, D("1000"), date(2025, 3, 31), "RATABLE", 3),
                        ("future", "USD", MARCH, D("30.00"), date(2025, 5, 1), "RATABLE", 31))
    got = con.sql(engine.cumulative_recognized(MARCH, obligations)).select(
        "line_id, cumulative_recognized, cumulative_before_month").fetchall()
    assert sorted(got) == sorted([
        ("jan", D("78.89"), D("44.44")),      # through Apr 1: 100 x 71/90 = 78.888 -> 78.89; Mar 1: x 40/90 = 44.444 -> 44.44
        ("mar", D("78.89"), D("0")),          # billed in March: nothing before its own month, Jan 20 .. Mar 31 caught up
        ("feb_usage", D("12.35"), D("12.35")),  # point in time: all of it, already in February
        ("mar_usage", D("12.35"), D("0")),
        ("jpy", D("333"), D("0")),            # 1 of 3 days: 1000 / 3 = 333.33 -> 333 (no minor unit)
        ("future", D("0"), D("0")),           # service starts in May: elapsed clamped to 0
    ])


def test_step_recognition_rows(con):
    cumulative = given(con, "cumulative", "line_id VARCHAR, invoice_id VARCHAR, account_id BIGINT, line_type VARCHAR, "
                       "obligation_type VARCHAR, currency VARCHAR, line_month DATE, obligation_amount DECIMAL(18,4), "
                       "cumulative_recognized DECIMAL(18,4), cumulative_before_month DECIMAL(18,4)",
                       ("L1", "I1", 1, "RECURRING", "RATABLE", "USD", date(2025, 1, 1), D("100.00"), D("78.89"), D("44.44")),
                       ("L2", "I2", 1, "USAGE", "POINT_IN_TIME", "USD", date(2025, 2, 1), D("12.35"), D("12.35"), D("12.35")),
                       ("L3", "I3", 2, "RECURRING", "RATABLE", "USD", MARCH, D("30.00"), D("0"), D("0")))
    rel = con.sql(engine.recognition_rows(MARCH, cumulative))
    assert rel.columns == RECOGNITION_COLUMNS
    assert rel.fetchall() == [
        # recognized = 78.89 - 44.44 = 34.45; deferred = 100.00 - 78.89 = 21.11
        (MARCH, "L1", "I1", 1, "RECURRING", "RATABLE", "USD", D("100.00"), D("34.45"), D("78.89"), D("21.11")),
        # L2 was fully recognized in February: omitted; L3 billed in March, nothing yet: shown, all deferred
        (MARCH, "L3", "I3", 2, "RECURRING", "RATABLE", "USD", D("30.00"), D("0"), D("0"), D("30.00")),
    ]


def test_step_billed_and_recognized_by_currency(con):
    lines_to_date = given(con, "lines_to_date", "line_id VARCHAR, currency VARCHAR, billing_month DATE, net_amount DECIMAL(18,4)",
                          ("L1", "USD", date(2025, 1, 1), D("100.00")),
                          ("L2", "USD", date(2025, 2, 1), D("12.35")),   # fully recognized in February: no March row
                          ("L3", "USD", MARCH, D("30.00")),
                          ("L4", "EUR", MARCH, D("9.00")))
    month_rows = given(con, "month_rows", "line_id VARCHAR, currency VARCHAR, recognized_amount DECIMAL(18,4), "
                       "cumulative_recognized DECIMAL(18,4), deferred_amount DECIMAL(18,4)",
                       ("L1", "USD", D("34.45"), D("78.89"), D("21.11")),
                       ("L3", "USD", D("0"), D("0"), D("30.00")),
                       ("L4", "EUR", D("9.00"), D("9.00"), D("0")))
    billed = con.sql(engine.billed_by_currency(MARCH, lines_to_date, month_rows)).order("currency").fetchall()
    assert billed == [("EUR", D("9.00"), D("9.00"), None),
                      # in March 30.00; to date 100 + 12.35 + 30 = 142.35; recognized before: L2's 12.35
                      ("USD", D("30.00"), D("142.35"), D("12.35"))]
    recognized = con.sql(engine.recognized_by_currency(month_rows)).order("currency").fetchall()
    assert recognized == [("EUR", D("9.00"), D("9.00"), D("0")), ("USD", D("34.45"), D("78.89"), D("51.11"))]


def test_step_balance_rows(con):
    lines_to_date = given(con, "lines_to_date", "line_id VARCHAR, currency VARCHAR", ("L1", "USD"), ("L4", "EUR"))
    month_rows = given(con, "month_rows", "line_id VARCHAR, currency VARCHAR", ("L9", "JPY"))
    billed = given(con, "billed", "currency VARCHAR, billed_in_month DECIMAL(38,4), billed_to_date DECIMAL(38,4), "
                   "recognized_before DECIMAL(38,4)",
                   ("USD", D("30.00"), D("142.35"), D("12.35")), ("EUR", D("9.00"), D("9.00"), None))
    recognized = given(con, "recognized", "currency VARCHAR, recognized_in_month DECIMAL(38,4), recognized_open DECIMAL(38,4), "
                       "deferred_revenue DECIMAL(38,4)",
                       ("USD", D("34.45"), D("78.89"), D("51.11")), ("JPY", D("5"), D("5"), D("0")))
    rel = con.sql(engine.balance_rows(MARCH, lines_to_date, month_rows, billed, recognized))
    assert rel.columns == DEFERRED_BALANCE_COLUMNS
    assert rel.fetchall() == [
        (MARCH, "EUR", D("9.00"), D("0"), D("9.00"), D("0"), D("0")),      # no row this month: nothing recognized
        (MARCH, "JPY", D("0"), D("5"), D("0"), D("5"), D("0")),            # a row without a line: still listed
        # recognized to date = 12.35 before + 78.89 open = 91.24; 142.35 = 91.24 + 51.11
        (MARCH, "USD", D("30.00"), D("34.45"), D("142.35"), D("91.24"), D("51.11")),
    ]
