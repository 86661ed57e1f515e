"""Money and billing-period rules (DESIGN.md "Money" and "Time"), SQL macros against their Python twins."""

from datetime import date
from decimal import Decimal

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import install_macros
from domain.money import div_round, minor_unit, prorated, round_money
from domain.periods import Period, month_literal, next_period, period_billed_in, period_containing
from domain.allocation import largest_remainder, largest_remainder_sql
from domain.recognition import recognized_share, recognized_through
from domain.tax import TaxRate, select_tax_rate, tax_jurisdiction


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


# ------------------------------------------------------------------ every rule: Python twin = SQL macro, row by row

BCDS = (1, 2, 15, 28, 29, 30, 31)
CYCLES = ("MONTHLY", "QUARTERLY", "ANNUAL")


def test_period_rules_twin_equals_sql_on_every_day_of_two_years(con):
    """period_containing (Python) = period_end_containing / period_start_for (SQL), and next_period =
    period_after, for every day of 2024-2025 (a leap year), every bill cycle day class and cycle."""
    days = [date(2024, 1, 1) + __import__("datetime").timedelta(days=i) for i in range(731)]
    expected = []
    for cycle in CYCLES:
        for bcd in BCDS:
            for d in days:
                p = period_containing(d, bcd, cycle)
                expected.append((d, bcd, cycle, p.start, p.end, next_period(p, bcd, cycle).end))
    con.execute("CREATE OR REPLACE TEMP TABLE cases (d DATE, bcd INTEGER, cycle VARCHAR)")
    con.executemany("INSERT INTO cases VALUES (?, ?, ?)", [r[:3] for r in expected])
    got = con.execute("""
        SELECT d, bcd, cycle, period_start_for(e, bcd, cycle), e, period_after(e, bcd, cycle)
        FROM (SELECT *, period_end_containing(d, bcd, cycle) AS e FROM cases) ORDER BY cycle, bcd, d""").fetchall()
    assert sorted(got, key=lambda r: (r[2], r[1], r[0])) == sorted(expected, key=lambda r: (r[2], r[1], r[0]))


@pytest.mark.parametrize(
    "amount, days, period_days, whole, expected",
    [
        ("29.99", 12, 31, False, "11.6090322581"),  # 359.88 / 31
        ("29.99", 31, 31, True, "29.99"),            # the whole period is exactly the price
        ("30.00", 31, 30, False, "30.0000000000"),   # a fixed 30-day denominator never charges more than the price
        ("30.00", 12, 30, False, "12.0000000000"),
        ("10.00", 3, 31, True, "10.00"),             # not prorated: the whole amount
        ("89.97", 45, 90, False, "44.9850000000"),
        ("0.0000000001", 1, 3, False, "0.0000000000"),
    ],
)
def test_prorated_twin_equals_sql(con, amount, days, period_days, whole, expected):
    assert prorated(Decimal(amount), days, period_days, whole) == Decimal(expected)
    assert con.execute("SELECT prorated(CAST(? AS DECIMAL(38,10)), ?, ?, ?)",
                       [amount, days, period_days, whole]).fetchone()[0] == Decimal(expected)


@pytest.mark.parametrize(
    "obligation, elapsed, total, currency, expected",
    [
        ("100.00", 10, 31, "USD", "32.26"),   # 1000 / 31 = 32.258 -> 32.26
        ("100.00", 31, 31, "USD", "100.00"),
        ("100.00", 40, 31, "USD", "100.00"),  # clamped to the whole term
        ("100.00", -3, 31, "USD", "0.00"),    # before the term starts
        ("-21.28", 5, 22, "USD", "-4.84"),    # a credit: -106.4 / 22 = -4.836 -> -4.84
        ("1000", 1, 3, "JPY", "333"),
        ("10.000", 1, 3, "KWD", "3.333"),
        ("0.05", 1, 2, "USD", "0.03"),        # 0.025 -> 0.03, half away from zero
    ],
)
def test_recognized_through_twin_equals_sql(con, obligation, elapsed, total, currency, expected):
    assert recognized_through(Decimal(obligation), elapsed, total, currency) == Decimal(expected)
    assert con.execute("SELECT recognized_through(CAST(? AS DECIMAL(18,4)), ?, ?, ?)",
                       [obligation, elapsed, total, currency]).fetchone()[0] == Decimal(expected)


TAX_RATES = [
    TaxRate(1, "US", "CA", date(2020, 1, 1), None),
    TaxRate(2, "US", None, date(2020, 1, 1), None),
    TaxRate(3, "DE", None, date(2020, 1, 1), date(2025, 4, 1)),
    TaxRate(4, "DE", None, date(2025, 4, 1), None),
    TaxRate(5, "US", "WA", date(2020, 1, 1), date(2025, 2, 1)),
    TaxRate(6, "US", " WA ", date(2025, 2, 1), None),    # padded state: the same jurisdiction
    TaxRate(7, "GB", "", date(2020, 1, 1), None),        # empty state = country level
    TaxRate(8, "GB", None, date(2024, 1, 1), None),      # a later country rate wins over an earlier one
    TaxRate(9, "FR", None, date(2026, 1, 1), None),      # not in force yet
]


@pytest.mark.parametrize(
    "country, state, tax_point, expected",
    [
        ("US", "CA", date(2025, 3, 31), 1),   # state level beats country level
        ("US", "OR", date(2025, 3, 31), 2),   # no state rate: the country's
        ("US", None, date(2025, 3, 31), 2),
        ("DE", None, date(2025, 3, 31), 3),   # the day before the change
        ("DE", None, date(2025, 4, 1), 4),    # the day of the change: the new rate
        ("US", "WA", date(2025, 1, 31), 5),
        ("US", "WA", date(2025, 2, 1), 6),
        ("US", " WA", date(2025, 2, 1), 6),
        ("GB", None, date(2025, 3, 31), 8),
        ("FR", None, date(2025, 3, 31), None),
        ("KW", None, date(2025, 3, 31), None),
    ],
)
def test_tax_rate_selection_twin_equals_sql(con, country, state, tax_point, expected):
    chosen = select_tax_rate(TAX_RATES, country, state, tax_point)
    assert (chosen.tax_rate_id if chosen else None) == expected
    con.execute("CREATE OR REPLACE TEMP TABLE rates (tax_rate_id BIGINT, country VARCHAR, state VARCHAR, "
                "effective_from DATE, effective_to DATE)")
    con.executemany("INSERT INTO rates VALUES (?, ?, ?, ?, ?)",
                    [(r.tax_rate_id, r.country, r.state, r.effective_from, r.effective_to) for r in TAX_RATES])
    got = con.execute("""
        SELECT tax_rate_id FROM rates
        WHERE tax_rate_applies(country, state, effective_from, effective_to, $country, $state, $tax_point)
        ORDER BY tax_rate_precedence(state, effective_from, tax_rate_id) DESC LIMIT 1""",
                      {"country": country, "state": state, "tax_point": tax_point}).fetchall()
    assert (got[0][0] if got else None) == expected
    assert con.execute("SELECT tax_jurisdiction(?, ?)", [country, state]).fetchone()[0] == tax_jurisdiction(country, state)


def test_month_literal_refuses_a_day_that_is_not_the_first():
    assert month_literal(date(2025, 3, 1)) == "DATE '2025-03-01'"
    with pytest.raises(ValueError, match="first day"):
        month_literal(date(2025, 3, 2))


@pytest.mark.parametrize(
    "obligation, part, whole, currency, expected",
    [
        ("10.00", "300", "400", "USD", "7.50"),  # 10 x 300/400
        ("447.07", "30", "720", "USD", "18.63"),  # 447.07 x 30/720 = 18.6279...
        ("-10.00", "2.5", "7", "USD", "-3.57"),  # -3.5714... half away from zero
        ("10.00", "9", "4", "USD", "10.00"),  # part clamped to the whole
        ("100", "1", "3", "JPY", "33"),
        ("1.000", "1", "3", "KWD", "0.333"),
    ],
)
def test_recognized_share_twin_equals_sql(con, obligation, part, whole, currency, expected):
    assert recognized_share(Decimal(obligation), Decimal(part), Decimal(whole), currency) == Decimal(expected)
    assert con.execute("SELECT recognized_share(CAST(? AS DECIMAL(18,4)), CAST(? AS DECIMAL(38,10)), "
                       "CAST(? AS DECIMAL(38,10)), ?)", [obligation, part, whole, currency]).fetchone()[0] == Decimal(expected)


@pytest.mark.parametrize(
    "total, weights, currency, expected",
    [
        ("819.00", ["599", "720"], "USD", ["371.93", "447.07"]),  # 371.9302..., 447.0697...: the cent to .0697
        ("62.98", ["25", "45"], "USD", ["22.49", "40.49"]),  # floors 22.49 + 40.48, remainders .28 < .71
        ("10.00", ["1", "1", "1"], "USD", ["3.34", "3.33", "3.33"]),  # ties: the first member
        ("-7", ["0", "0"], "JPY", ["-4", "-3"]),  # no weights: equal shares; a negative total negated
    ],
)
def test_largest_remainder_twin_equals_sql(con, total, weights, currency, expected):
    assert largest_remainder(Decimal(total), [Decimal(w) for w in weights], currency) == [Decimal(x) for x in expected]
    assert _largest_remainder_in_sql(con, total, weights, currency) == [Decimal(x) for x in expected]


def _largest_remainder_in_sql(con, total, weights, currency):
    rows = ", ".join(f"({i}, CAST('{w}' AS DECIMAL(38,10)))" for i, w in enumerate(weights))
    members = f"(SELECT 1 AS g, i, w, CAST('{total}' AS DECIMAL(18,4)) AS total, '{currency}' AS cur FROM (VALUES {rows}) v(i, w))"
    return [r[0] for r in con.execute(f"SELECT allocated FROM ({largest_remainder_sql(members, 'g', 'w', 'total', 'cur', 'i')}) "
                                      "ORDER BY i").fetchall()]


@settings(max_examples=60, deadline=None)
@given(st.decimals(min_value=Decimal("-99999.99"), max_value=Decimal("99999.99"), places=2),
       st.lists(st.decimals(min_value=Decimal("0"), max_value=Decimal("5000"), places=4), min_size=1, max_size=6))
def test_largest_remainder_sums_exactly_to_the_total(total, weights):
    con = install_macros(duckdb.connect())
    shares = _largest_remainder_in_sql(con, str(total), [str(w) for w in weights], "USD")
    assert shares == largest_remainder(total, weights, "USD")
    assert sum(shares) == total
