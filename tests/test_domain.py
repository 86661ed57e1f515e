"""Money and billing-period rules (DESIGN.md "Money" and "Time"), SQL macros against their Python twins."""

from datetime import date
from decimal import Decimal

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.domain import install_macros
from pipelines.domain.money import div_round, minor_unit, round_money
from pipelines.domain.periods import Period, next_period, period_billed_in, period_containing


@pytest.fixture(scope="module")
def con():
    return install_macros(duckdb.connect())


@pytest.mark.parametrize(
    "amount, currency, expected",
    [
        ("1.005", "USD", "1.01"),  # half away from zero, not half-even (Polars' round would give 1.00)
        ("-1.005", "USD", "-1.01"),
        ("2.5", "JPY", "3"),  # JPY has no minor unit
        ("1.0005", "KWD", "1.001"),  # KWD has three decimals
        ("12.344999", "EUR", "12.34"),
    ],
)
def test_round_money_half_away_from_zero(con, amount, currency, expected):
    assert round_money(Decimal(amount), currency) == Decimal(expected)
    sql = con.execute("SELECT round_money(CAST(? AS DECIMAL(38,10)), ?)", [amount, currency]).fetchone()[0]
    assert sql == Decimal(expected)


def test_minor_units():
    assert (minor_unit("usd"), minor_unit("JPY"), minor_unit("BHD")) == (2, 0, 3)


def test_prorate_is_exact(con):
    # 29.99 * 12 / 31 = 11.609032258064516... -> 11.6090322581 (10 dp) -> 11.61
    precise, rounded = con.execute("SELECT prorate(29.99, 12, 31), round_money(prorate(29.99, 12, 31), 'USD')").fetchone()
    assert precise == Decimal("11.6090322581")
    assert rounded == Decimal("11.61")
    assert con.execute("SELECT typeof(prorate(29.99, 12, 31))").fetchone()[0] == "DECIMAL(38,10)"


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(min_value=Decimal("-100000"), max_value=Decimal("100000"), places=10, allow_nan=False),
    st.integers(min_value=1, max_value=400),
    st.integers(min_value=0, max_value=10),
)
def test_div_round_sql_matches_python(n, d, s):
    con = install_macros(duckdb.connect())
    sql = con.execute("SELECT div_round(CAST(? AS DECIMAL(38,10)), ?, ?)", [str(n), d, s]).fetchone()[0]
    assert sql == div_round(n, d, s)


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(min_value=Decimal("-10000000"), max_value=Decimal("10000000"), places=10, allow_nan=False),
    st.sampled_from(["USD", "JPY", "KWD", "CLF"]),
)
def test_round_money_sql_matches_python(x, currency):
    con = install_macros(duckdb.connect())
    sql = con.execute("SELECT round_money(CAST(? AS DECIMAL(38,10)), ?)", [str(x), currency]).fetchone()[0]
    assert sql == round_money(x, currency)


def test_round_money_does_not_round_twice(con):
    # 20 decimals: 0.00499999999999999999 must round to 0.00, not via 0.0050000000 to 0.01
    assert con.execute("SELECT round_money(CAST('0.00499999999999999999' AS DECIMAL(38,20)), 'USD')").fetchone()[0] == Decimal("0.00")


@pytest.mark.parametrize(
    "month, bcd, cycle, expected",
    [
        (date(2025, 3, 1), 1, "MONTHLY", Period(date(2025, 3, 1), date(2025, 4, 1))),  # ends at midnight Apr 1: March
        (date(2025, 3, 1), 15, "MONTHLY", Period(date(2025, 2, 15), date(2025, 3, 15))),
        (date(2025, 2, 1), 31, "MONTHLY", Period(date(2025, 1, 31), date(2025, 2, 28))),  # clamped to Feb 28
        (date(2025, 3, 1), 31, "MONTHLY", Period(date(2025, 2, 28), date(2025, 3, 31))),
        (date(2025, 3, 1), 1, "QUARTERLY", Period(date(2025, 1, 1), date(2025, 4, 1))),
        (date(2025, 2, 1), 1, "QUARTERLY", None),  # quarterly cycles end only in their months
        (date(2025, 4, 1), 10, "QUARTERLY", Period(date(2025, 1, 10), date(2025, 4, 10))),
        (date(2024, 12, 1), 1, "ANNUAL", Period(date(2024, 1, 1), date(2025, 1, 1))),
        (date(2025, 6, 1), 1, "ANNUAL", None),
    ],
)
def test_period_billed_in(con, month, bcd, cycle, expected):
    assert period_billed_in(month, bcd, cycle) == expected
    end, start = con.execute(
        "SELECT period_end_in(?::DATE, ?, ?), period_start_for(period_end_in(?::DATE, ?, ?), ?, ?)",
        [month, bcd, cycle, month, bcd, cycle, bcd, cycle],
    ).fetchone()
    assert (None if end is None else Period(start, end)) == expected


def test_periods_tile_time():
    """Consecutive periods are contiguous, and every day lies in exactly one."""
    for bcd in (1, 15, 28, 29, 30, 31):
        p = period_billed_in(date(2024, 1, 1), bcd)
        for _ in range(30):
            n = next_period(p, bcd)
            assert n.start == p.end and n.days > 0
            assert period_containing(n.start, bcd) == n
            p = n
