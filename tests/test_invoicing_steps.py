"""Each step of the invoicing engine alone, on given/expected rows (jaffle-shop unit-test style).

A test creates the step's input relations (named like the steps it reads, holding only the columns
it reads), runs the step's SELECT and compares the rows it returns with the expected ones. The
arithmetic behind every expected amount is in the comments (docs/billing.md has the rules).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import date
from decimal import Decimal as D

import duckdb
import pytest

from domain import install_macros
from domain.periods import OPEN_END
from domain.sql import columns_of
from pipelines.invoicing import accounts, headers, lines, recurring
from pipelines.invoicing.engine import INVOICE_LINE_COLUMNS

MARCH = "DATE '2025-03-01'"  # the billing month every step runs for


def jan(d): return date(2025, 1, d)
def feb(d): return date(2025, 2, d)
def mar(d): return date(2025, 3, d)
def apr(d): return date(2025, 4, d)
def may(d): return date(2025, 5, d)


KEY = "account_id BIGINT, subscription_id BIGINT, price_id BIGINT, quantity DECIMAL(38,10), billing_window VARCHAR"
WINDOWS = ("account_id BIGINT, billing_window VARCHAR, window_start DATE, window_end DATE",
           [(1, "P", mar(1), apr(1)), (1, "N", apr(1), may(1))])  # P: 31 days, N: 30 days


@pytest.fixture
def con():
    c = install_macros(duckdb.connect())
    yield c
    c.close()


def given(con, **relations):
    """Create each relation ``name=(columns, rows)``; a row is a tuple in column order or a dict (missing
    columns NULL). Values go in as text cast by the column type, so decimals are exact."""
    for name, (columns, rows) in relations.items():
        con.execute(f"CREATE TABLE {name} ({columns})")
        cols = con.execute(f"SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = '{name}' "
                           "ORDER BY column_index").fetchall()
        values = [[row.get(c) for c, _ in cols] if isinstance(row, dict) else list(row) for row in rows]
        if values:
            marks = ", ".join(f"CAST(? AS {t})" for _, t in cols)
            con.executemany(f"INSERT INTO {name} VALUES ({marks})",
                            [[None if v is None else str(v) for v in row] for row in values])


def rows(con, step: str, columns: str) -> Counter:
    """The rows of ``step`` (its columns ``columns``), as a multiset."""
    return Counter(con.sql(f"SELECT {columns} FROM ({step})").fetchall())


# who is billed, when, at what rate --------------------------------------------------------------

def test_billed_accounts(con):
    """March 2025: calendar monthly [Mar 1, Apr 1) (next period ends May 1); bill cycle day 15
    [Feb 15, Mar 15); day 31 clamped [Feb 28, Mar 31), next Apr 30; quarterly calendar [Jan 1, Apr 1),
    next Jul 1; quarterly on day 15 has no period ending in March: not billed. Tax point = end - 1 day;
    jurisdiction country or country-state (state trimmed, empty = none)."""
    given(con,
          accounts=("account_id BIGINT, account_number VARCHAR, customer_id BIGINT, currency VARCHAR, "
                    "payment_terms_days INTEGER, billing_cycle VARCHAR, bill_cycle_day INTEGER",
                    [(1, "A1", 1, "USD", 14, "MONTHLY", 1), (2, "A2", 2, "EUR", 30, "MONTHLY", 15),
                     (3, "A3", 3, "USD", 30, "MONTHLY", 31), (4, "A4", 1, "USD", 30, "QUARTERLY", 1),
                     (5, "A5", 1, "USD", 30, "QUARTERLY", 15)]),
          customers=("customer_id BIGINT, country VARCHAR, state VARCHAR",
                     [(1, "US", "CA"), (2, "DE", ""), (3, "US", " OR ")]))
    assert rows(con, accounts.billed_accounts(MARCH, "accounts", "customers"),
                "account_id, period_start, period_end, next_period_end, invoice_id, tax_jurisdiction, tax_point") == Counter([
        (1, mar(1), apr(1), may(1), "INV-A1-20250401", "US-CA", mar(31)),
        (2, feb(15), mar(15), apr(15), "INV-A2-20250315", "DE", mar(14)),
        (3, feb(28), mar(31), apr(30), "INV-A3-20250331", "US-OR", mar(30)),
        (4, jan(1), apr(1), date(2025, 7, 1), "INV-A4-20250401", "US-CA", mar(31)),
    ])


def test_billing_windows(con):
    """P = [period_start, period_end), N = [period_end, next_period_end)."""
    given(con, billed_accounts=("account_id BIGINT, period_start DATE, period_end DATE, next_period_end DATE",
                                [(1, mar(1), apr(1), may(1)), (2, feb(15), mar(15), apr(15))]))
    assert rows(con, accounts.billing_windows(), "*") == Counter([
        (1, "P", mar(1), apr(1)), (1, "N", apr(1), may(1)), (2, "P", feb(15), mar(15)), (2, "N", mar(15), apr(15))])


def test_account_tax_rates(con):
    """CA beats the US country rate; OR has no state rate: US; DE 19 % until Apr 1 then 16 %, by tax point
    (Mar 31 -> 19 %, Apr 30 -> 16 %); NL: latest effective_from wins, then the highest id (7 over 6, both
    2024, over 5 from 2020); FR has no rate: no row."""
    given(con,
          billed_accounts=("account_id BIGINT, customer_country VARCHAR, customer_state VARCHAR, tax_point DATE",
                           [(1, "US", "CA", mar(31)), (2, "US", "OR", mar(31)), (3, "DE", None, mar(31)),
                            (4, "DE", None, apr(30)), (5, "FR", None, mar(31)), (6, "NL", None, mar(31))]),
          tax_rates=("tax_rate_id BIGINT, country VARCHAR, state VARCHAR, tax_name VARCHAR, rate DECIMAL(9,6), "
                     "effective_from DATE, effective_to DATE",
                     [(1, "US", "CA", "CA sales tax", "0.0725", "2020-01-01", None),
                      (2, "US", None, "US sales tax", "0.05", "2020-01-01", None),
                      (3, "DE", None, "VAT", "0.19", "2020-01-01", apr(1)),
                      (4, "DE", None, "VAT", "0.16", apr(1), None),
                      (5, "NL", None, "BTW 2020", "0.21", "2020-01-01", None),
                      (6, "NL", None, "BTW 2024a", "0.21", "2024-01-01", None),
                      (7, "NL", "", "BTW 2024b", "0.21", "2024-01-01", None)]))
    assert rows(con, accounts.account_tax_rates("tax_rates"), "*") == Counter([
        (1, "CA sales tax", D("0.0725")), (2, "US sales tax", D("0.05")), (3, "VAT", D("0.19")),
        (4, "VAT", D("0.16")), (6, "BTW 2024b", D("0.21"))])


# recurring due, recurring billed ----------------------------------------------------------------

def test_service_versions(con):
    """Quantity as money; an open end is 9999-12-31."""
    given(con, versions=("subscription_id BIGINT, account_id BIGINT, product_id BIGINT, plan_id BIGINT, "
                         "bundle_id BIGINT, quantity INTEGER, valid_from DATE, valid_to DATE",
                         [(1, 1, 10, 100, None, 2, feb(1), mar(10)), (2, 1, 10, 100, 7, 1, mar(10), None)]))
    assert rows(con, recurring.service_versions("versions"), "subscription_id, quantity, valid_from, valid_to") == Counter([
        (1, D(2), feb(1), mar(10)), (2, D(1), mar(10), OPEN_END)])


def test_recurring_prices(con):
    """RECURRING charges only; a price version ending Mar 10 12:00 ends on Mar 10 (days), the next starts then."""
    given(con, charges=("price_id BIGINT, plan_id BIGINT, charge_code VARCHAR, charge_type VARCHAR, "
                        "billing_timing VARCHAR, prorate BOOLEAN, unit_price DECIMAL(38,10), proration_days INTEGER, "
                        "effective_from TIMESTAMP, effective_to TIMESTAMP",
                        [(1000, 100, "BASE_FEE", "RECURRING", "IN_ADVANCE", True, "29.99", None,
                          "2020-01-01 00:00:00", "2025-03-10 12:00:00"),
                         (1001, 100, "BASE_FEE", "RECURRING", "IN_ADVANCE", True, "35.00", None,
                          "2025-03-10 12:00:00", None),
                         (1002, 100, "DATA", "USAGE", "IN_ARREARS", False, "0.01", None, "2020-01-01 00:00:00", None)]))
    assert rows(con, recurring.recurring_prices("charges"), "price_id, unit_price, price_from, price_to") == Counter([
        (1000, D("29.99"), date(2020, 1, 1), mar(10)), (1001, D("35.00"), mar(10), OPEN_END)])


def test_recurring_due(con):
    """P = [Mar 1, Apr 1), N = [Apr 1, May 1).
    sub 1 (since Feb 1), price 1000 until Mar 15 then 1001: 1000 due [Mar 1, Mar 15) in P only, 1001
    [Mar 15, Apr 1) and all of N; sub 2 in arrears from Mar 20: P only; sub 3 not prorated, Mar 20 to Apr 10:
    whole P and whole N; sub 4 ended Mar 1: nothing."""
    given(con,
          service_versions=("subscription_id BIGINT, account_id BIGINT, product_id BIGINT, plan_id BIGINT, "
                            "bundle_id BIGINT, quantity DECIMAL(38,10), valid_from DATE, valid_to DATE",
                            [(1, 1, 10, 100, None, 1, feb(1), OPEN_END), (2, 1, 10, 200, None, 1, mar(20), OPEN_END),
                             (3, 1, 10, 300, None, 1, mar(20), apr(10)), (4, 1, 10, 100, None, 1, jan(1), mar(1))]),
          recurring_prices=("price_id BIGINT, plan_id BIGINT, billing_timing VARCHAR, prorate BOOLEAN, "
                            "price_from DATE, price_to DATE",
                            [(1000, 100, "IN_ADVANCE", True, "2020-01-01", mar(15)),
                             (1001, 100, "IN_ADVANCE", True, mar(15), OPEN_END),
                             (2000, 200, "IN_ARREARS", True, "2020-01-01", OPEN_END),
                             (3000, 300, "IN_ADVANCE", False, "2020-01-01", OPEN_END)]),
          billing_windows=WINDOWS)
    assert rows(con, recurring.recurring_due(), "subscription_id, price_id, billing_window, due_from, due_to") == Counter([
        (1, 1000, "P", mar(1), mar(15)), (1, 1001, "P", mar(15), apr(1)), (1, 1001, "N", apr(1), may(1)),
        (2, 2000, "P", mar(20), apr(1)), (3, 3000, "P", mar(1), apr(1)), (3, 3000, "N", apr(1), may(1))])


def test_earlier_recurring_lines(con):
    """Recurring charges and credits of months before March; one-time and usage lines, and March's own, are not."""
    given(con, billed=("line_id VARCHAR, billing_month DATE, line_type VARCHAR",
                       [("L-jan", jan(1), "RECURRING"), ("C-feb", feb(1), "RECURRING_CREDIT"),
                        ("O-feb", feb(1), "ONE_TIME"), ("U-feb", feb(1), "USAGE"), ("L-mar", mar(1), "RECURRING")]))
    assert rows(con, recurring.earlier_recurring_lines(MARCH, "billed"), "line_id") == Counter([("L-jan",), ("C-feb",)])


def test_recurring_billed(con):
    """Clipped to P = [Mar 1, Apr 1) and N = [Apr 1, May 1): charge L1 +1 over P; credit C1 -1 over
    [Mar 10, Apr 1); L0 (February's days) outside both: gone; L2 [Mar 15, Apr 15) splits into P and N."""
    given(con,
          earlier_recurring_lines=(
              "line_id VARCHAR, billing_month DATE, line_type VARCHAR, account_id BIGINT, subscription_id BIGINT, "
              "price_id BIGINT, quantity DECIMAL(38,10), service_start DATE, service_end DATE",
              [("L1", feb(1), "RECURRING", 1, 1, 1000, 1, mar(1), apr(1)),
               ("C1", feb(1), "RECURRING_CREDIT", 1, 1, 1000, 1, mar(10), apr(1)),
               ("L0", jan(1), "RECURRING", 1, 1, 1000, 1, feb(1), mar(1)),
               ("L2", feb(1), "RECURRING", 1, 2, 1000, 1, mar(15), apr(15))]),
          billing_windows=WINDOWS)
    assert rows(con, recurring.recurring_billed(), "line_id, billing_window, coverage, billed_from, billed_to") == Counter([
        ("L1", "P", 1, mar(1), apr(1)), ("C1", "P", -1, mar(10), apr(1)),
        ("L2", "P", 1, mar(15), apr(1)), ("L2", "N", 1, apr(1), apr(15))])


# intervals, their state, segments --------------------------------------------------------------

def test_elementary_intervals(con):
    """Sub 1 due [Mar 10, Apr 1), billed [Mar 1, Apr 1): boundaries Mar 1, Mar 10, Apr 1 -> two intervals;
    sub 2 (quantity 3) due [Mar 16, Apr 1) -> one; sub 1 in N due [Apr 1, May 1), nothing billed -> one."""
    given(con,
          recurring_due=(f"{KEY}, due_from DATE, due_to DATE",
                         [(1, 1, 1000, 1, "P", mar(10), apr(1)), (1, 2, 1000, 3, "P", mar(16), apr(1)),
                          (1, 1, 1000, 1, "N", apr(1), may(1))]),
          recurring_billed=(f"{KEY}, billed_from DATE, billed_to DATE", [(1, 1, 1000, 1, "P", mar(1), apr(1))]))
    assert rows(con, recurring.elementary_intervals(), "subscription_id, quantity, billing_window, interval_start, interval_end") == Counter([
        (1, D(1), "P", mar(1), mar(10)), (1, D(1), "P", mar(10), apr(1)),
        (2, D(3), "P", mar(16), apr(1)), (1, D(1), "N", apr(1), may(1))])


INTERVALS = (f"{KEY}, interval_start DATE, interval_end DATE",
             [(1, 1, 1000, 1, "P", mar(1), mar(10)), (1, 1, 1000, 1, "P", mar(10), apr(1))])


def test_intervals_due(con):
    """Due [Mar 10, Apr 1) covers only the second interval, which takes its product, plan and bundle."""
    given(con, elementary_intervals=INTERVALS,
          recurring_due=(f"{KEY}, due_from DATE, due_to DATE, product_id BIGINT, plan_id BIGINT, bundle_id BIGINT",
                         [(1, 1, 1000, 1, "P", mar(10), apr(1), 10, 100, 7)]))
    assert rows(con, recurring.intervals_due(), "interval_start, product_id, plan_id, bundle_id") == Counter([(mar(10), 10, 100, 7)])


def test_intervals_billed(con):
    """L1 (January) +1 over both intervals; C1 -1 and L2 +1 (February) over the second:
    [Mar 1, Mar 10): net 1, latest charge L1; [Mar 10, Apr 1): net 1 - 1 + 1 = 1, latest charge L2 (February)."""
    given(con, elementary_intervals=INTERVALS,
          recurring_billed=(f"{KEY}, line_id VARCHAR, billing_month DATE, coverage INTEGER, billed_from DATE, billed_to DATE",
                            [(1, 1, 1000, 1, "P", "L1", jan(1), 1, mar(1), apr(1)),
                             (1, 1, 1000, 1, "P", "C1", feb(1), -1, mar(10), apr(1)),
                             (1, 1, 1000, 1, "P", "L2", feb(1), 1, mar(10), apr(1))]))
    assert rows(con, recurring.intervals_billed(), "interval_start, net_billed, latest_charge_line_id") == Counter([
        (mar(1), 1, "L1"), (mar(10), 1, "L2")])


def test_interval_states(con):
    """Due and not billed: charge; due and billed once: settled; billed, no longer due: credit of L1;
    billed then credited (net 0), not due: settled (the credited line is only read for credits); due, billed then
    credited: charged again."""
    starts = [mar(1), mar(5), mar(10), mar(20), mar(25), apr(1)]
    given(con,
          elementary_intervals=(f"{KEY}, interval_start DATE, interval_end DATE",
                                [(1, 1, 1000, 1, "P", s, t) for s, t in zip(starts, starts[1:])]),
          intervals_due=(f"{KEY}, interval_start DATE, product_id BIGINT, plan_id BIGINT, bundle_id BIGINT",
                         [(1, 1, 1000, 1, "P", s, 10, 100, None) for s in (mar(1), mar(5), mar(25))]),
          intervals_billed=(f"{KEY}, interval_start DATE, net_billed INTEGER, latest_charge_line_id VARCHAR",
                            [(1, 1, 1000, 1, "P", mar(5), 1, "L1"), (1, 1, 1000, 1, "P", mar(10), 1, "L1"),
                             (1, 1, 1000, 1, "P", mar(20), 0, "L1"), (1, 1, 1000, 1, "P", mar(25), 0, "L1")]))
    assert rows(con, recurring.interval_states(), "interval_start, line_type, credited_line_id, product_id") == Counter([
        (mar(1), "RECURRING", None, 10), (mar(5), None, None, 10), (mar(10), "RECURRING_CREDIT", "L1", None),
        (mar(20), None, "L1", None), (mar(25), "RECURRING", None, 10)])


def test_recurring_segments(con):
    """Adjacent charge intervals with the same bundle merge ([Mar 1, Mar 10)); a settled gap and a bundle
    change start new segments; credits of different lines stay apart."""
    given(con, interval_states=(
        f"{KEY}, interval_start DATE, interval_end DATE, product_id BIGINT, plan_id BIGINT, bundle_id BIGINT, "
        "line_type VARCHAR, credited_line_id VARCHAR",
        [(1, 1, 1000, 1, "P", s, t, 10, 100, bundle, line_type, credited)
         for s, t, bundle, line_type, credited in [
             (mar(1), mar(5), 7, "RECURRING", None), (mar(5), mar(10), 7, "RECURRING", None),
             (mar(10), mar(12), 7, None, None), (mar(12), mar(15), 7, "RECURRING", None),
             (mar(15), mar(20), None, "RECURRING", None), (mar(20), mar(25), None, "RECURRING_CREDIT", "L1"),
             (mar(25), apr(1), None, "RECURRING_CREDIT", "L2")]]))
    assert rows(con, recurring.recurring_segments(), "line_type, credited_line_id, bundle_id, segment_start, segment_end") == Counter([
        ("RECURRING", None, 7, mar(1), mar(10)), ("RECURRING", None, 7, mar(12), mar(15)),
        ("RECURRING", None, None, mar(15), mar(20)), ("RECURRING_CREDIT", "L1", None, mar(20), mar(25)),
        ("RECURRING_CREDIT", "L2", None, mar(25), apr(1))])


# recurring lines priced and described ----------------------------------------------------------

def test_credited_line_bundles(con):
    """L1 starts Mar 1 in the bundle-7 version [Feb 1, Mar 10); L2 starts Mar 10 in the version without
    bundle; credits are not credited lines; L3's subscription has no version: no row."""
    given(con,
          earlier_recurring_lines=("line_id VARCHAR, line_type VARCHAR, subscription_id BIGINT, service_start DATE",
                                   [("L1", "RECURRING", 1, mar(1)), ("L2", "RECURRING", 1, mar(10)),
                                    ("C1", "RECURRING_CREDIT", 1, mar(1)), ("L3", "RECURRING", 2, mar(1))]),
          service_versions=("subscription_id BIGINT, bundle_id BIGINT, valid_from DATE, valid_to DATE",
                            [(1, 7, feb(1), mar(10)), (1, None, mar(10), OPEN_END)]))
    assert rows(con, lines.credited_line_bundles(), "*") == Counter([("L1", 7), ("L2", None)])


def test_recurring_lines_priced(con):
    """P = [Mar 1, Apr 1) 31 days, N = [Apr 1, May 1) 30 days.
    sub 1 [Mar 20, Apr 1): 29.99 x 12 / 31 = 359.88 / 31 = 11.6090322581; sub 1 all of N: exactly 29.99;
    sub 2 fixed 30-day denominator: 30.00 x 12 / 30 = 12.00; sub 3 not prorated, 22 days: the whole 10.00;
    sub 4 quantity 3 [Mar 16, Apr 1): 89.97 x 16 / 31 = 1439.52 / 31 = 46.4361290323;
    credit of L1 [Mar 10, Apr 1) at L1's price and 31 days: -(29.99 x 22 / 31) = -659.78 / 31 = -21.2832258065,
    with L1's bundle (7) and tax rate (19 %); credit of the whole of L2: exactly -L2's amount_precise
    (-11.61, not a recomputed 29.99 x 12 / 31)."""
    segments = [(1, 1000, "P", "RECURRING", None, mar(20), apr(1)), (1, 1000, "N", "RECURRING", None, apr(1), may(1)),
                (2, 1030, "P", "RECURRING", None, mar(20), apr(1)), (3, 1040, "P", "RECURRING", None, mar(10), apr(1)),
                (1, 1000, "P", "RECURRING_CREDIT", "L1", mar(10), apr(1)),
                (5, 1000, "P", "RECURRING_CREDIT", "L2", mar(20), apr(1))]
    given(con,
          recurring_segments=(f"{KEY}, line_type VARCHAR, credited_line_id VARCHAR, product_id BIGINT, plan_id BIGINT, "
                              "bundle_id BIGINT, segment_start DATE, segment_end DATE",
                              [(1, sub, price, 1, window, line_type, credited, 10, 100, None, s, t)
                               for sub, price, window, line_type, credited, s, t in segments]
                              + [(1, 4, 1000, 3, "P", "RECURRING", None, 10, 100, None, mar(16), apr(1))]),
          billing_windows=WINDOWS,
          recurring_prices=("price_id BIGINT, plan_id BIGINT, charge_code VARCHAR, prorate BOOLEAN, "
                            "unit_price DECIMAL(38,10), proration_days INTEGER",
                            [(1000, 100, "BASE_FEE", True, "29.99", None), (1030, 103, "BASE_FEE", True, "30.00", 30),
                             (1040, 104, "BASE_FEE", False, "10.00", None)]),
          earlier_recurring_lines=(
              "line_id VARCHAR, product_id BIGINT, plan_id BIGINT, charge_code VARCHAR, unit_price DECIMAL(38,10), "
              "period_days INTEGER, service_start DATE, service_end DATE, amount_precise DECIMAL(38,10), "
              "tax_jurisdiction VARCHAR, tax_name VARCHAR, tax_rate DECIMAL(9,6)",
              [("L1", 10, 100, "BASE_FEE", "29.99", 31, mar(1), apr(1), "29.99", "DE", "VAT", "0.19"),
               ("L2", 10, 100, "BASE_FEE", "29.99", 31, mar(20), apr(1), "11.61", "US-CA", "CA sales tax", "0.0725")]),
          credited_line_bundles=("line_id VARCHAR, bundle_id BIGINT", [("L1", 7)]))
    assert rows(con, lines.recurring_lines_priced(),
                "subscription_id, line_type, service_start, days, period_days, unit_price, bundle_id, "
                "credited_tax_rate, amount_precise") == Counter([
        (1, "RECURRING", mar(20), 12, 31, D("29.99"), None, None, D("11.6090322581")),
        (1, "RECURRING", apr(1), 30, 30, D("29.99"), None, None, D("29.99")),
        (2, "RECURRING", mar(20), 12, 30, D("30.00"), None, None, D("12.00")),
        (3, "RECURRING", mar(10), 22, 31, D("10.00"), None, None, D("10.00")),
        (4, "RECURRING", mar(16), 16, 31, D("29.99"), None, None, D("46.4361290323")),
        (1, "RECURRING_CREDIT", mar(10), 22, 31, D("29.99"), 7, D("0.19"), D("-21.2832258065")),
        (5, "RECURRING_CREDIT", mar(20), 12, 31, D("29.99"), None, D("0.0725"), D("-11.61")),
    ])


def test_recurring_lines(con):
    """A charge takes the account's tax (CA 7.25 %) and its bundle's 10 %; a credit says "Credit:" and
    reverses the credited line's tax (DE VAT 19 %); a product unknown to the catalog shows the charge code."""
    priced = ("account_id BIGINT, subscription_id BIGINT, price_id BIGINT, quantity DECIMAL(38,10), line_type VARCHAR, "
              "service_start DATE, service_end DATE, credited_line_id VARCHAR, product_id BIGINT, plan_id BIGINT, "
              "charge_code VARCHAR, bundle_id BIGINT, credited_tax_jurisdiction VARCHAR, credited_tax_name VARCHAR, "
              "credited_tax_rate DECIMAL(9,6), unit_price DECIMAL(38,10), days INTEGER, period_days INTEGER, "
              "amount_precise DECIMAL(38,10)")
    given(con,
          recurring_lines_priced=(priced, [
              (1, 1, 1000, 1, "RECURRING", mar(20), apr(1), None, 10, 100, "BASE_FEE", 7, None, None, None,
               "29.99", 12, 31, "11.6090322581"),
              (1, 1, 1000, 1, "RECURRING_CREDIT", mar(10), apr(1), "L1", 10, 100, "BASE_FEE", None, "DE", "VAT", "0.19",
               "29.99", 22, 31, "-21.2832258065"),
              (1, 2, 2000, 1, "RECURRING", apr(1), may(1), None, 99, 999, "LEGACY_FEE", None, None, None, None,
               "5.00", 30, 30, "5.00")]),
          billed_accounts=("account_id BIGINT, invoice_id VARCHAR, tax_jurisdiction VARCHAR, currency VARCHAR",
                           [(1, "INV-A0001-20250401", "US-CA", "USD")]),
          account_tax_rates=("account_id BIGINT, tax_name VARCHAR, tax_rate DECIMAL(9,6)", [(1, "CA sales tax", "0.0725")]),
          products=("product_id BIGINT, name VARCHAR", [(10, "Mobile Basic")]),
          plans=("plan_id BIGINT, name VARCHAR", [(100, "Basic")]),
          bundles=("bundle_id BIGINT, discount_pct DECIMAL(9,6)", [(7, "0.10")]))
    assert rows(con, lines.recurring_lines("products", "plans", "bundles"),
                "description, discount_pct, tax_jurisdiction, tax_name, tax_rate, source_ref, reference_line_id, "
                "lineage") == Counter([
        ("Mobile Basic - Basic 2025-03-20 to 2025-03-31", D("0.10"), "US-CA", "CA sales tax", D("0.0725"), "1/1000",
         None, "RECURRING|1|1000|1.0000000000|2025-03-20|2025-04-01|"),
        ("Credit: Mobile Basic - Basic 2025-03-10 to 2025-03-31", None, "DE", "VAT", D("0.19"), "1/1000", "L1",
         "RECURRING_CREDIT|1|1000|1.0000000000|2025-03-10|2025-04-01|L1"),
        ("LEGACY_FEE 2025-04-01 to 2025-04-30", None, "US-CA", "CA sales tax", D("0.0725"), "2/2000", None,
         "RECURRING|2|2000|1.0000000000|2025-04-01|2025-05-01|"),
    ])


# usage and one-time lines ----------------------------------------------------------------------

def _billed_account_1(con):
    given(con,
          billed_accounts=("account_id BIGINT, invoice_id VARCHAR, tax_jurisdiction VARCHAR, currency VARCHAR, "
                           "period_start DATE, period_end DATE",
                           [(1, "INV-A0001-20250401", "US-CA", "USD", mar(1), apr(1))]),
          account_tax_rates=("account_id BIGINT, tax_name VARCHAR, tax_rate DECIMAL(9,6)", [(1, "CA sales tax", "0.0725")]))


RATED = ("rated_line_id VARCHAR, billing_month DATE, account_id BIGINT, subscription_id BIGINT, plan_id BIGINT, "
         "price_id BIGINT, charge_code VARCHAR, metric VARCHAR, line_type VARCHAR, service_start DATE, service_end DATE, "
         "quantity DECIMAL(38,10), billable_quantity DECIMAL(38,10), unit_price DECIMAL(38,10), event_count BIGINT, "
         "amount_precise DECIMAL(38,10), amount DECIMAL(18,4)")
RATED_WITHOUT_PRICE_OR_EVENTS = ("rated_line_id VARCHAR, billing_month DATE, account_id BIGINT, subscription_id BIGINT, "
                                 "plan_id BIGINT, price_id BIGINT, charge_code VARCHAR, metric VARCHAR, line_type VARCHAR, "
                                 "service_start DATE, service_end DATE, quantity DECIMAL(38,10), "
                                 "billable_quantity DECIMAL(38,10), amount_precise DECIMAL(38,10), amount DECIMAL(18,4)")


@pytest.mark.parametrize("columns, given_rows, expected", [
    pytest.param(RATED, [
        dict(rated_line_id="r1", metric="data_mb", line_type="USAGE", quantity="1234.56", billable_quantity="1234.56",
             unit_price="0.01", event_count=10, amount_precise="12.3456", amount="12.35"),
        dict(rated_line_id="r2", line_type="MINIMUM_TRUE_UP", quantity="0", billable_quantity="1", event_count=0,
             amount_precise="5", amount="5.00"),
        dict(rated_line_id="r0", billing_month=feb(1), line_type="USAGE", quantity="100", billable_quantity="100",
             event_count=1, amount_precise="1", amount="1.00"),                       # another month
        dict(rated_line_id="rz", line_type="USAGE", quantity="0", billable_quantity="0", unit_price="0.01",
             event_count=0, amount_precise="0", amount="0"),                          # no usage at all
        dict(rated_line_id="ra", metric="data_mb", line_type="USAGE", quantity="400", billable_quantity="0",
             unit_price="0.01", event_count=3, amount_precise="0", amount="0"),       # within the allowance
        dict(rated_line_id="rx", account_id=2, line_type="USAGE", quantity="5", billable_quantity="5", event_count=1,
             amount_precise="1", amount="1.00"),                                      # account not billed
    ], [
        ("r1", "USAGE", "Mobile Basic - data_mb 2025-03-01 to 2025-03-31", D("1234.56"), D("0.01"), D("12.35"), D("0.0725")),
        ("r2", "MINIMUM_TRUE_UP", "Mobile Basic - DATA (MINIMUM_TRUE_UP) 2025-03-01 to 2025-03-31", D(1), None,
         D("5.00"), D("0.0725")),
        ("ra", "USAGE", "Mobile Basic - data_mb 2025-03-01 to 2025-03-31", D(0), D("0.01"), D(0), D("0.0725")),
    ], id="rated_usage"),
    pytest.param(RATED_WITHOUT_PRICE_OR_EVENTS, [
        dict(rated_line_id="q0", line_type="USAGE", quantity="0", billable_quantity="0", amount_precise="0", amount="0"),
        dict(rated_line_id="q1", line_type="USAGE", quantity="400", billable_quantity="0", amount_precise="0", amount="0"),
    ], [("q1", "USAGE", "Mobile Basic - DATA 2025-03-01 to 2025-03-31", D(0), None, D(0), D("0.0725"))],
        id="a relation without unit_price or event_count: no unit price, usage seen = quantity"),
])
def test_usage_lines(con, columns, given_rows, expected):
    """The month's rated rows of billed accounts, amounts as rated; a charge with no usage at all and a zero
    amount is left out, usage within an allowance stays (0.00)."""
    _billed_account_1(con)
    defaults = dict(billing_month=mar(1), account_id=1, subscription_id=1, plan_id=100, price_id=1001,
                    charge_code="DATA", service_start=mar(1), service_end=apr(1))
    given(con, rated=(columns, [{**defaults, **r} for r in given_rows]),
          products=("product_id BIGINT, name VARCHAR", [(10, "Mobile Basic")]),
          plans=("plan_id BIGINT, product_id BIGINT", [(100, 10)]))
    step = lines.usage_lines(MARCH, "rated", "products", "plans", columns_of(con, "rated"))
    assert rows(con, step, "source_ref, line_type, description, quantity, unit_price, amount, tax_rate") == Counter(expected)


def test_one_time_lines(con):
    """Items of CONFIRMED orders effective in P = [Mar 1, Apr 1): 1 x 499.00 agreed; no agreed price: the base
    price 25.00; 2 x 333.333 = 666.666. Not billed: a subscription product, a cancelled order, an order
    effective in N, an item already on an earlier invoice (February, source_ref 7); March's own lines and
    usage lines do not count as billed."""
    _billed_account_1(con)
    given(con,
          orders=("order_id BIGINT, order_number VARCHAR, account_id BIGINT, status VARCHAR, effective_date DATE",
                  [(500, "O500", 1, "CONFIRMED", mar(20)), (501, "O501", 1, "CANCELLED", mar(21)),
                   (502, "O502", 1, "CONFIRMED", apr(2))]),
          order_items=("order_item_id BIGINT, order_id BIGINT, product_id BIGINT, plan_id BIGINT, subscription_id BIGINT, "
                       "quantity INTEGER, unit_price DECIMAL(38,10)",
                       [(1, 500, 20, None, 1, 1, "499.00"), (2, 500, 21, None, 1, 1, None), (3, 500, 10, 100, 1, 1, None),
                        (4, 501, 20, None, None, 1, "499.00"), (5, 502, 21, None, None, 2, "20.00"),
                        (6, 500, 22, None, None, 2, "333.333"), (7, 500, 20, None, None, 1, "499.00")]),
          products=("product_id BIGINT, sku VARCHAR, name VARCHAR, product_type VARCHAR, base_price DECIMAL(38,10)",
                    [(10, "SKU10", "Mobile Basic", "SUBSCRIPTION", "29.99"), (20, "SKU20", "Phone X", "ONE_TIME", "499.00"),
                     (21, "SKU21", "Activation fee", "ONE_TIME", "25.00"), (22, "SKU22", "Router", "ONE_TIME", "300.00")]),
          billed=("billing_month DATE, line_type VARCHAR, source_ref VARCHAR",
                  [(feb(1), "ONE_TIME", "7"), (mar(1), "ONE_TIME", "1"), (feb(1), "USAGE", "2")]))
    step = lines.one_time_lines(MARCH, "orders", "order_items", "products", "billed")
    assert rows(con, step, "source_ref, charge_code, description, service_start, service_end, quantity, unit_price, "
                           "amount_precise, tax_rate") == Counter([
        ("1", "SKU20", "Phone X (order O500)", mar(20), mar(21), D(1), D("499.00"), D("499.00"), D("0.0725")),
        ("2", "SKU21", "Activation fee (order O500)", mar(20), mar(21), D(1), D("25.00"), D("25.00"), D("0.0725")),
        ("6", "SKU22", "Router (order O500)", mar(20), mar(21), D(2), D("333.333"), D("666.666"), D("0.0725")),
    ])


# rounding, discounts, tax, the rows ------------------------------------------------------------

def test_rounded_lines(con):
    """Half away from zero to the minor unit: 11.6090322581 -> 11.61; 44.985 -> 44.99; -21.2832258065 -> -21.28;
    -0.005 -> -0.01; JPY 1234.5 -> 1235; KWD 1.2345 -> 1.235; 666.666 -> 666.67. A usage line keeps the rated
    amount (1.01, not round(1.004) = 1.00)."""
    columns = "source_ref VARCHAR, amount_precise DECIMAL(38,10), currency VARCHAR"
    given(con,
          recurring_lines=(columns, [("a", "11.6090322581", "USD"), ("b", "44.985", "USD"), ("c", "-21.2832258065", "USD"),
                                   ("d", "-0.005", "USD"), ("e", "1234.5", "JPY")]),
          usage_lines=(f"{columns}, amount DECIMAL(18,4)", [("u", "1.004", "USD", "1.01")]),
          one_time_lines=(columns, [("o", "666.666", "USD"), ("k", "1.2345", "KWD")]))
    assert rows(con, lines.rounded_lines(), "source_ref, amount") == Counter([
        ("a", D("11.61")), ("b", D("44.99")), ("c", D("-21.28")), ("d", D("-0.01")), ("e", D(1235)),
        ("u", D("1.01")), ("o", D("666.67")), ("k", D("1.235"))])


def test_discounted_lines(con):
    """Bundle 10 %: 29.99 -> -round(2.999) = -3.00; a credit -21.28 -> -round(-2.128) = +2.13; 0.05 -> -round(0.005)
    = -0.01; no bundle: 0."""
    given(con, rounded_lines=("source_ref VARCHAR, amount DECIMAL(18,4), discount_pct DECIMAL(9,6), currency VARCHAR",
                              [("a", "29.99", "0.10", "USD"), ("c", "-21.28", "0.10", "USD"),
                               ("s", "0.05", "0.10", "USD"), ("u", "12.35", None, "USD")]))
    assert rows(con, lines.discounted_lines(), "source_ref, discount_amount") == Counter([
        ("a", D("-3.00")), ("c", D("2.13")), ("s", D("-0.01")), ("u", D(0))])


def test_taxed_lines(con):
    """net = amount + discount; tax = round(net x rate); total = net + tax:
    29.99 - 3.00 = 26.99, x 0.0725 = 1.956775 -> 1.96, 28.95; -21.28 + 2.13 = -19.15, x 0.0725 = -1.388375 -> -1.39,
    -20.54; 29.99 x 0.19 = 5.6981 -> 5.70, 35.69; no rate: rate 0, tax 0;
    999,999,999,999.99 x 0.0725 = 72,499,999,999.999275 -> 72,500,000,000.00 (no overflow)."""
    given(con, discounted_lines=(
        "source_ref VARCHAR, amount DECIMAL(18,4), discount_amount DECIMAL(18,4), tax_rate DECIMAL(9,6), currency VARCHAR",
        [("a", "29.99", "-3.00", "0.0725", "USD"), ("c", "-21.28", "2.13", "0.0725", "USD"),
         ("de", "29.99", "0", "0.19", "USD"), ("fr", "29.99", "0", None, "USD"),
         ("big", "999999999999.99", "0", "0.0725", "USD")]))
    assert rows(con, lines.taxed_lines(), "source_ref, net_amount, tax_rate, tax_amount, total_amount") == Counter([
        ("a", D("26.99"), D("0.0725"), D("1.96"), D("28.95")), ("c", D("-19.15"), D("0.0725"), D("-1.39"), D("-20.54")),
        ("de", D("29.99"), D("0.19"), D("5.70"), D("35.69")), ("fr", D("29.99"), D(0), D(0), D("29.99")),
        ("big", D("999999999999.99"), D("0.0725"), D("72500000000.00"), D("1072499999999.99"))])


TAXED_LINES = ("invoice_id VARCHAR, lineage VARCHAR, account_id BIGINT, subscription_id BIGINT, line_type VARCHAR, "
               "product_id BIGINT, plan_id BIGINT, price_id BIGINT, charge_code VARCHAR, description VARCHAR, "
               "service_start DATE, service_end DATE, quantity DECIMAL(38,10), unit_price DECIMAL(38,10), days INTEGER, "
               "period_days INTEGER, amount_precise DECIMAL(38,10), amount DECIMAL(18,4), "
               "discount_amount DECIMAL(18,4), net_amount DECIMAL(18,4), tax_jurisdiction VARCHAR, tax_name VARCHAR, "
               "tax_rate DECIMAL(9,6), tax_amount DECIMAL(18,4), total_amount DECIMAL(18,4), currency VARCHAR, "
               "source_ref VARCHAR, reference_line_id VARCHAR")


def test_invoice_line_rows(con):
    """The contract's columns; line_id = md5(invoice_id | lineage); ordered by account, line type, subscription
    (none last), service start."""
    a1, a2 = "INV-A0001-20250401", "INV-A0002-20250401"
    given_lines = [(a2, "USAGE|r9", 2, 5, "USAGE", mar(1)), (a1, "RECURRING|apr", 1, 1, "RECURRING", apr(1)),
             (a1, "RECURRING|mar", 1, 1, "RECURRING", mar(20)), (a1, "ONE_TIME|6", 1, None, "ONE_TIME", mar(20)),
             (a1, "ONE_TIME|7", 1, 3, "ONE_TIME", mar(20))]
    given(con, taxed_lines=(TAXED_LINES, [
        dict(invoice_id=i, lineage=lineage, account_id=a, subscription_id=s, line_type=t, service_start=start,
             amount="1.00", discount_amount="0", net_amount="1.00", tax_amount="0", total_amount="1.00", currency="USD")
        for i, lineage, a, s, t, start in given_lines]))
    rel = con.sql(lines.invoice_line_rows(MARCH))
    assert rel.columns == INVOICE_LINE_COLUMNS
    got = [(r[0], r[2], r[3], r[5], r[4]) for r in rel.fetchall()]  # line_id, billing_month, account, line type, sub

    def line_id(invoice, lineage):
        return hashlib.md5(f"{invoice}|{lineage}".encode()).hexdigest()
    assert got == [(line_id(a1, "ONE_TIME|7"), mar(1), 1, "ONE_TIME", 3), (line_id(a1, "ONE_TIME|6"), mar(1), 1, "ONE_TIME", None),
                   (line_id(a1, "RECURRING|mar"), mar(1), 1, "RECURRING", 1),
                   (line_id(a1, "RECURRING|apr"), mar(1), 1, "RECURRING", 1),
                   (line_id(a2, "USAGE|r9"), mar(1), 2, "USAGE", 5)]


# headers ---------------------------------------------------------------------------------------

def test_invoice_totals(con):
    """INV-1: 29.99 - 21.28 = 8.71; discounts -3.00 + 2.13 = -0.87; net 26.99 - 19.15 = 7.84; tax 1.96 - 1.39 = 0.57.
    February's line is another month."""
    given(con, lines=("invoice_id VARCHAR, account_id BIGINT, billing_month DATE, amount DECIMAL(18,4), "
                      "discount_amount DECIMAL(18,4), net_amount DECIMAL(18,4), tax_amount DECIMAL(18,4)",
                      [("INV-1", 1, mar(1), "29.99", "-3.00", "26.99", "1.96"),
                       ("INV-1", 1, mar(1), "-21.28", "2.13", "-19.15", "-1.39"),
                       ("INV-2", 2, mar(1), "10.00", "0", "10.00", "0.50"), ("INV-0", 1, feb(1), "5.00", "0", "5.00", "0")]))
    assert rows(con, headers.invoice_totals(MARCH, "lines"), "*") == Counter([
        ("INV-1", 1, 2, D("8.71"), D("-0.87"), D("7.84"), D("0.57")), ("INV-2", 2, 1, D("10.00"), D(0), D("10.00"), D("0.50"))])


def test_invoice_header_rows(con):
    """Draft numbers by account; invoice date = period end; due = period end + terms (none: 0 days);
    total = 7.84 + 0.57 = 8.41 and 10.00 + 0.50 = 10.50."""
    given(con,
          invoice_totals=("invoice_id VARCHAR, account_id BIGINT, line_count BIGINT, subtotal DECIMAL(38,4), "
                          "discount_total DECIMAL(38,4), net_total DECIMAL(38,4), tax_total DECIMAL(38,4)",
                          [("INV-A0002-20250315", 2, 1, "10.00", "0", "10.00", "0.50"),
                           ("INV-A0001-20250401", 1, 2, "8.71", "-0.87", "7.84", "0.57")]),
          billed_accounts=("account_id BIGINT, customer_id BIGINT, period_start DATE, period_end DATE, "
                           "payment_terms_days INTEGER, currency VARCHAR",
                           [(1, 11, mar(1), apr(1), 14, "USD"), (2, 12, feb(15), mar(15), None, "EUR")]))
    assert con.sql(headers.invoice_header_rows(MARCH)).fetchall() == [
        ("INV-A0001-20250401", "D-202503-000001", 1, 11, mar(1), mar(1), apr(1), apr(1), apr(15), "USD", "DRAFT", 2,
         D("8.71"), D("-0.87"), D("7.84"), D("0.57"), D("8.41")),
        ("INV-A0002-20250315", "D-202503-000002", 2, 12, mar(1), feb(15), mar(15), mar(15), mar(15), "EUR", "DRAFT", 1,
         D("10.00"), D(0), D("10.00"), D("0.50"), D("10.50")),
    ]
