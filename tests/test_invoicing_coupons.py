"""The coupon steps (pipelines/invoicing/coupons.py) alone, on given/expected rows; the arithmetic is in the comments
(docs/billing.md "Coupons and promotions" has the rules)."""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal as D

import duckdb
import pytest
from hypothesis import given as for_all, settings, strategies as st

from domain import install_macros
from domain.money import round_money
from pipelines.invoicing import coupons
from pipelines.invoicing.engine import with_steps
from tests.test_invoicing_steps import given, rows
from warehouse.fixtures import create_table_with_rows

MARCH = "DATE '2025-03-01'"  # the billing month the line steps run for

ACCOUNTS = "account_id BIGINT, currency VARCHAR, billing_cycle VARCHAR, bill_cycle_day INTEGER, period_end DATE"
LINES = ("invoice_id VARCHAR, account_id BIGINT, subscription_id BIGINT, product_id BIGINT, line_type VARCHAR, "
         "amount DECIMAL(18,4), discount_amount DECIMAL(18,4), currency VARCHAR, service_month DATE, lineage VARCHAR, "
         "tax_rate DECIMAL(9,6), credited_coupon_id BIGINT, credited_coupon_amount DECIMAL(18,4), "
         "credited_amount DECIMAL(18,4)")
IN_FORCE = ("account_id BIGINT, redemption_id BIGINT, coupon_id BIGINT, subscription_id BIGINT, product_id BIGINT, "
            "discount_type VARCHAR, percent_off DECIMAL(9,6), amount_off DECIMAL(18,4)")
COVERED = ("invoice_id VARCHAR, lineage VARCHAR, currency VARCHAR, redemption_id BIGINT, coupon_id BIGINT, "
           "discount_type VARCHAR, percent_off DECIMAL(9,6), amount_off DECIMAL(18,4), base DECIMAL(18,4)")


@pytest.fixture
def con():
    c = install_macros(duckdb.connect())
    yield c
    c.close()


def line(lineage, amount, *, account_id=1, subscription_id=1, product_id=10, line_type="RECURRING", discount="0",
         currency="USD", service_month=date(2025, 3, 1), tax_rate=None, credited=(None, None, None)):
    """A row of ``discounted_lines``; ``credited`` = (credited_coupon_id, credited_coupon_amount, credited_amount)."""
    return dict(invoice_id=f"INV-{account_id}", account_id=account_id, subscription_id=subscription_id,
                product_id=product_id, line_type=line_type, amount=amount, discount_amount=discount, currency=currency,
                service_month=service_month, lineage=lineage, tax_rate=tax_rate, credited_coupon_id=credited[0],
                credited_coupon_amount=credited[1], credited_amount=credited[2])


def catalog(con, redemptions):
    """Coupons 1..6 (5 soft-deleted), coupon 2 limited to products 10 and 20, and ``redemptions``, as contract
    tables in schema ``t``; returns the coupon steps' keyword arguments."""
    create_table_with_rows(con, "core.coupons", [
        dict(coupon_id=1, code="ONCE20", discount_type="PERCENT", percent_off="0.20", duration="ONCE"),
        dict(coupon_id=2, code="R3", discount_type="PERCENT", percent_off="0.10", duration="REPEATING",
             duration_periods=3),
        dict(coupon_id=3, code="USD5", discount_type="FIXED", amount_off="5.00", currency="USD", duration="FOREVER"),
        dict(coupon_id=4, code="EUR5", discount_type="FIXED", amount_off="5.00", currency="EUR", duration="FOREVER"),
        dict(coupon_id=5, code="GONE", discount_type="PERCENT", percent_off="0.50", duration="FOREVER",
             is_deleted=True),
        dict(coupon_id=6, code="R2", discount_type="PERCENT", percent_off="0.15", duration="REPEATING",
             duration_periods=2),
    ], defaults=dict(name="Promo", status="ACTIVE", is_deleted=False), schema="t")
    create_table_with_rows(con, "core.coupon_products", [
        dict(coupon_product_id=1, coupon_id=2, product_id=10), dict(coupon_product_id=2, coupon_id=2, product_id=20),
    ], defaults=dict(is_deleted=False), schema="t")
    create_table_with_rows(con, "core.coupon_redemptions", redemptions,
                           defaults=dict(status="ACTIVE", is_deleted=False), schema="t")
    return dict(coupons="t.coupons", coupon_products="t.coupon_products", redemptions="t.coupon_redemptions")


# which redemptions apply to the period billed -----------------------------------------------------------------

REDEMPTIONS = [
    dict(redemption_id=11, coupon_id=1, account_id=1, starts_on="2025-01-15"),  # ONCE: period 1 = [Jan 1, Feb 1)
    dict(redemption_id=12, coupon_id=2, account_id=1, starts_on="2025-01-15"),  # REPEATING 3: [Jan 1, Apr 1)
    dict(redemption_id=13, coupon_id=3, account_id=1, starts_on="2025-02-01"),  # FOREVER from [Feb 1, Mar 1)
    dict(redemption_id=14, coupon_id=4, account_id=1, starts_on="2025-01-01"),  # FIXED EUR, USD account: never
    dict(redemption_id=15, coupon_id=1, account_id=1, starts_on="2025-01-01", status="REVOKED"),  # never
    dict(redemption_id=16, coupon_id=5, account_id=1, starts_on="2025-01-01"),  # coupon deleted: never
    dict(redemption_id=17, coupon_id=1, account_id=1, starts_on="2025-04-01"),  # ONCE: [Apr 1, May 1) only
    dict(redemption_id=21, coupon_id=6, account_id=2, starts_on="2025-02-10"),  # quarterly: [Jan 1, Apr 1), [Apr 1, Jul 1)
    dict(redemption_id=31, coupon_id=6, account_id=3, starts_on="2025-02-28"),  # day 31: [Feb 28, Mar 31), [Mar 31, Apr 30)
]
MONTHLY, QUARTERLY, DAY31 = (1, "USD", "MONTHLY", 1), (2, "USD", "QUARTERLY", 1), (3, "USD", "MONTHLY", 31)


@pytest.mark.parametrize("billed, expected", [
    # January: account 1 bills [Jan 1, Feb 1); account 3 [Dec 31, Jan 31) ends before its starts_on Feb 28.
    ([(*MONTHLY, date(2025, 2, 1)), (*DAY31, date(2025, 1, 31))],
     {(1, 11, None, 1), (1, 12, 10, 1), (1, 12, 20, 1)}),  # coupon 2 is limited to products 10 and 20
    # February: [Feb 1, Mar 1) is R3's 2nd period, USD5's 1st; [Jan 31, Feb 28) still ends on starts_on.
    ([(*MONTHLY, date(2025, 3, 1)), (*DAY31, date(2025, 2, 28))],
     {(1, 12, 10, 2), (1, 12, 20, 2), (1, 13, None, 1)}),
    # March: R3's 3rd and last; quarterly [Jan 1, Apr 1) contains Feb 10: R2's 1st; [Feb 28, Mar 31) R2's 1st.
    ([(*MONTHLY, date(2025, 4, 1)), (*QUARTERLY, date(2025, 4, 1)), (*DAY31, date(2025, 3, 31))],
     {(1, 12, 10, 3), (1, 12, 20, 3), (1, 13, None, 2), (2, 21, None, 1), (3, 31, None, 1)}),
    # April: R3 would be its 4th: over; ONCE from Apr 1: its 1st; day 31 [Mar 31, Apr 30): R2's 2nd.
    ([(*MONTHLY, date(2025, 5, 1)), (*DAY31, date(2025, 4, 30))],
     {(1, 13, None, 3), (1, 17, None, 1), (3, 31, None, 2)}),
    # June: quarterly [Apr 1, Jul 1): R2's 2nd (months Apr 1 -> Jul 1 = 3, / 3 + 1); day 31 (4th period): over.
    ([(*MONTHLY, date(2025, 7, 1)), (*QUARTERLY, date(2025, 7, 1)), (*DAY31, date(2025, 6, 30))],
     {(1, 13, None, 5), (2, 21, None, 2)}),
    # September: quarterly [Jul 1, Oct 1) would be R2's 3rd: over; FOREVER goes on (Mar 1 -> Oct 1: 7 months + 1).
    ([(*MONTHLY, date(2025, 10, 1)), (*QUARTERLY, date(2025, 10, 1))],
     {(1, 13, None, 8)}),
], ids=["january", "february", "march", "april", "june", "september"])
def test_coupons_in_force_over_successive_periods(con, billed, expected):
    given(con, billed_accounts=(ACCOUNTS, billed))
    steps = coupons.coupon_steps(con, MARCH, **catalog(con, REDEMPTIONS))
    assert set(rows(con, steps["coupons_in_force"], "account_id, redemption_id, product_id, period_number")) == expected


def test_coupons_in_force_fixed_needs_the_account_currency(con):
    """EUR5 applies to the EUR account only; a PERCENT coupon to any currency."""
    given(con, billed_accounts=(ACCOUNTS, [(1, "USD", "MONTHLY", 1, date(2025, 4, 1)),
                                           (2, "EUR", "MONTHLY", 1, date(2025, 4, 1))]))
    kw = catalog(con, [dict(redemption_id=r, coupon_id=c, account_id=a, starts_on="2025-03-01")
                       for r, c, a in [(1, 4, 1), (2, 4, 2), (3, 6, 1), (4, 6, 2)]])
    steps = coupons.coupon_steps(con, MARCH, **kw)
    assert rows(con, steps["coupons_in_force"], "account_id, redemption_id, coupon_code") == Counter(
        [(2, 2, "EUR5"), (1, 3, "R2"), (2, 4, "R2")])


# which lines a coupon covers --------------------------------------------------------------------------------

def test_coupon_covered_lines(con):
    """Account 1: coupon 5 limited to product 20, coupon 7 to subscription 3; account 2: coupons 2 (product 10)
    and 3 (every line) both cover its product-10 line: the lowest coupon_id, 2, takes it. Not covered: a credit,
    a line of an earlier month, a line whose bundle discount leaves no base, a line of an account without
    coupons."""
    given(con,
          coupons_in_force=(IN_FORCE, [(1, 105, 5, None, 20, "PERCENT", "0.10", None),
                                       (1, 107, 7, 3, None, "FIXED", None, "5.00"),
                                       (2, 103, 3, None, None, "PERCENT", "0.20", None),
                                       (2, 102, 2, None, 10, "PERCENT", "0.50", None)]),
          discounted_lines=(LINES, [
              line("a", "10.00", subscription_id=1, product_id=10),  # neither product 20 nor subscription 3
              line("b", "20.00", subscription_id=1, product_id=20, discount="-2.00"),  # coupon 5, base 18.00
              line("c", "30.00", subscription_id=3, product_id=10),  # coupon 7
              line("d", "-5.00", subscription_id=1, product_id=20, line_type="RECURRING_CREDIT"),
              line("e", "8.00", subscription_id=1, product_id=20, service_month=date(2025, 2, 1)),
              line("f", "4.00", subscription_id=1, product_id=20, discount="-4.00"),
              line("g", "40.00", account_id=2, subscription_id=4, product_id=10),  # coupons 2 and 3: 2
              line("h", "50.00", account_id=2, subscription_id=4, product_id=20),  # coupon 3
              line("i", "60.00", account_id=3)]))
    assert rows(con, coupons.coupon_covered_lines(MARCH), "lineage, coupon_id, redemption_id, base") == Counter([
        ("b", 5, 105, D("18.00")), ("c", 7, 107, D("30.00")), ("g", 2, 102, D("40.00")), ("h", 3, 103, D("50.00"))])


# how much, and how it is shared ------------------------------------------------------------------------------

@pytest.mark.parametrize("currency, discount_type, percent_off, amount_off, bases, total, shares", [
    # FIXED 50.00 over 10.00 + 5.00: capped at 15.00, every line down to 0.
    ("USD", "FIXED", None, "50.00", {"a": "10.00", "b": "5.00"}, "15.00", {"a": "-10.00", "b": "-5.00"}),
    # FIXED 10.00 over three lines of 5.00: 1000 x 500 / 1500 = 333 rem 500 each; 1 unit left, ties by lineage: a.
    ("USD", "FIXED", None, "10.00", {"a": "5.00", "b": "5.00", "c": "5.00"}, "10.00",
     {"a": "-3.34", "b": "-3.33", "c": "-3.33"}),
    # JPY 15 % of 1000 + 333 = 199.95 -> 200; 200 x 1000 / 1333 = 150 rem 50, 200 x 333 / 1333 = 49 rem 1283:
    # the 1 yen left goes to b.
    ("JPY", "PERCENT", "0.15", None, {"a": "1000", "b": "333"}, "200", {"a": "-150", "b": "-50"}),
    # KWD 10 % of 1.234 + 2.345 + 0.500 = 0.4079 -> 0.408 (3 decimals); floors 408 x 1234 / 4079 = 123 rem 1755,
    # 408 x 2345 / 4079 = 234 rem 2274, 408 x 500 / 4079 = 50 rem 50: 407, the unit left to b.
    ("KWD", "PERCENT", "0.10", None, {"a": "1.234", "b": "2.345", "c": "0.500"}, "0.408",
     {"a": "-0.123", "b": "-0.235", "c": "-0.050"}),
    # FIXED in JPY with a fraction: least(500.5, 1200) = 500.5 -> 501; 501 x 700 / 1200 = 292 rem 300,
    # 501 x 500 / 1200 = 208 rem 900: b takes the yen left.
    ("JPY", "FIXED", None, "500.5", {"a": "700", "b": "500"}, "501", {"a": "-292", "b": "-209"}),
], ids=["fixed-capped", "largest-remainder-thirds", "jpy-percent", "kwd-percent", "jpy-fixed-rounded"])
def test_coupon_totals_and_shares(con, currency, discount_type, percent_off, amount_off, bases, total, shares):
    given(con, coupon_covered_lines=(COVERED, [("INV-1", lineage, currency, 1, 1, discount_type, percent_off,
                                                amount_off, base) for lineage, base in bases.items()]))
    con.sql(coupons.coupon_totals()).to_table("coupon_totals")
    assert rows(con, "SELECT * FROM coupon_totals", "coupon_total") == Counter([(D(total),)])
    assert rows(con, coupons.coupon_shares(), "lineage, coupon_amount") == Counter(
        (lineage, D(share)) for lineage, share in shares.items())


@settings(max_examples=15, deadline=None)
@for_all(bases=st.lists(st.integers(1, 10**9), min_size=1, max_size=6), total_share=st.fractions(0, 1),
         currency=st.sampled_from(["USD", "JPY", "KWD"]))
def test_shares_sum_exactly_and_stay_within_a_unit_of_the_exact_share(bases, total_share, currency):
    """Any bases (in minor units) and total <= Σ base: Σ shares = total, each share <= its base and within one
    minor unit of total x base / Σ base."""
    unit = D(1).scaleb(-{"USD": 2, "JPY": 0, "KWD": 3}[currency])
    total_units = int(sum(bases) * total_share)
    con = install_macros(duckdb.connect())
    given(con, coupon_covered_lines=(COVERED, [("INV-1", f"l{i:02d}", currency, 1, 1, "FIXED", None,
                                                total_units * unit, b * unit) for i, b in enumerate(bases)]))
    con.sql(coupons.coupon_totals()).to_table("coupon_totals")
    shares = {lineage: -amount / unit for lineage, amount in
              con.sql(f"SELECT lineage, coupon_amount FROM ({coupons.coupon_shares()})").fetchall()}
    con.close()
    assert sum(shares.values()) == total_units
    for i, b in enumerate(bases):
        exact = D(total_units * b) / D(sum(bases))
        assert 0 <= shares[f"l{i:02d}"] <= b and abs(shares[f"l{i:02d}"] - exact) < 1


def test_coupon_allocations(con):
    """A covered line takes its share; a credit of a line that had a coupon reverses it pro rata:
    -10.00 x -26.67 / 50.00 = 5.334 -> +5.33; the whole line -50.00: +10.00 exactly; JPY -150 x -333 / 1000 =
    49.95 -> 50. A line without a coupon, and a credit of a line without one: NULL and 0. Account 2 has no coupon in
    force (its lines are not looked up in the shares): its credit of a line that had one still reverses it."""
    given(con,
          coupon_shares=("invoice_id VARCHAR, lineage VARCHAR, coupon_id BIGINT, coupon_amount DECIMAL(18,4)",
                         [("INV-1", "x", 1, "-6.00")]),
          coupons_in_force=(IN_FORCE, [(1, 7, 1, None, None, "PERCENT", "0.2", None)]),
          discounted_lines=(LINES, [
              line("x", "30.00"),
              line("y", "-26.67", line_type="RECURRING_CREDIT", credited=(1, "-10.00", "50.00")),
              line("z", "-50.00", line_type="RECURRING_CREDIT", credited=(1, "-10.00", "50.00")),
              line("j", "-333", line_type="RECURRING_CREDIT", currency="JPY", credited=(2, "-150", "1000")),
              line("w", "12.00"),
              line("v", "-4.00", line_type="RECURRING_CREDIT"),
              line("k", "-26.67", account_id=2, line_type="RECURRING_CREDIT", credited=(1, "-10.00", "50.00")),
              line("m", "8.00", account_id=2)]))
    assert rows(con, coupons.coupon_allocations(), "lineage, amount, coupon_id, coupon_amount") == Counter([
        ("x", D("30.00"), 1, D("-6.00")), ("y", D("-26.67"), 1, D("5.33")), ("z", D("-50.00"), 1, D("10.00")),
        ("j", D("-333"), 2, D("50")), ("w", D("12.00"), None, D("0")), ("v", D("-4.00"), None, D("0")),
        ("k", D("-26.67"), 1, D("5.33")), ("m", D("8.00"), None, D("0"))])


# the steps together ---------------------------------------------------------------------------------------------

def test_percent_coupon_across_lines_of_two_tax_rates(con):
    """March, [Mar 1, Apr 1): ONCE20 (20 %) redeemed Mar 5 covers the three charge lines; EUR5 is for EUR
    accounts. Bases 29.99 - 3.00 (bundle) = 26.99, 49.99 and 12.34: Σ 89.32, x 0.20 = 17.864 -> 17.86 = 1786 cents.
    Floors: 1786 x 2699 / 8932 = 539 rem 6066; 1786 x 4999 / 8932 = 999 rem 5146; 1786 x 1234 / 8932 = 246 rem
    6652: Σ 1784, the 2 cents left to the largest remainders (c, then a): -5.40, -9.99, -2.47 (Σ -17.86).
    Nets 21.59, 40.00, 9.87; tax per line on the net: 21.59 x 7.25 % = 1.565275 -> 1.57, 40.00 x 10 % = 4.00,
    9.87 x 7.25 % = 0.715575 -> 0.72. The credit of an earlier line without a coupon keeps none."""
    given(con,
          billed_accounts=(ACCOUNTS, [(1, "USD", "MONTHLY", 1, date(2025, 4, 1))]),
          discounted_lines=(LINES, [
              line("a", "29.99", discount="-3.00", tax_rate="0.0725"),
              line("b", "49.99", subscription_id=2, product_id=20, tax_rate="0.10"),
              line("c", "12.34", product_id=30, line_type="USAGE", tax_rate="0.0725"),
              line("d", "-10.00", line_type="RECURRING_CREDIT", tax_rate="0.0725")]))
    kw = catalog(con, [dict(redemption_id=1, coupon_id=1, account_id=1, starts_on="2025-03-05"),
                       dict(redemption_id=2, coupon_id=4, account_id=1, starts_on="2025-03-05")])
    allocated = with_steps(coupons.coupon_steps(con, MARCH, **kw), "SELECT * FROM coupon_allocations")
    got = {lineage: (coupon_id, coupon_amount, round_money((amount + discount + coupon_amount) * tax_rate, "USD"))
           for lineage, coupon_id, coupon_amount, amount, discount, tax_rate in con.sql(
               f"SELECT lineage, coupon_id, coupon_amount, amount, discount_amount, tax_rate FROM ({allocated})"
           ).fetchall()}
    assert got == {"a": (1, D("-5.40"), D("1.57")), "b": (1, D("-9.99"), D("4.00")),
                   "c": (1, D("-2.47"), D("0.72")), "d": (None, D("0"), D("-0.73"))}  # -10.00 x 7.25 % = -0.725
