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
from pipelines.invoicing.inputs import create_invoicing_inputs

MARCH = "DATE '2025-03-01'"  # the billing month every step runs for


def jan(d): return date(2025, 1, d)
def feb(d): return date(2025, 2, d)
def mar(d): return date(2025, 3, d)
def apr(d): return date(2025, 4, d)
def may(d): return date(2025, 5, d)




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
    next Jul 1; quarterly on day 15 has no period ending in March: not billed. Tax point = issue date = the
    period end; jurisdiction country or country-state (state trimmed, empty = none); a BUSINESS customer takes
    credit notes (the configured types)."""
    given(con,
          accounts=("account_id BIGINT, account_number VARCHAR, customer_id BIGINT, currency VARCHAR, "
                    "payment_terms_days INTEGER, billing_cycle VARCHAR, bill_cycle_day INTEGER",
                    [(1, "A1", 1, "USD", 14, "MONTHLY", 1), (2, "A2", 2, "EUR", 30, "MONTHLY", 15),
                     (3, "A3", 3, "USD", 30, "MONTHLY", 31), (4, "A4", 1, "USD", 30, "QUARTERLY", 1),
                     (5, "A5", 1, "USD", 30, "QUARTERLY", 15)]),
          customers=("customer_id BIGINT, country VARCHAR, state VARCHAR, customer_type VARCHAR",
                     [(1, "US", "CA", "INDIVIDUAL"), (2, "DE", "", "BUSINESS"), (3, "US", " OR ", None)]))
    assert rows(con, accounts.billed_accounts(MARCH, "accounts", "customers", ("BUSINESS",)),
                "account_id, period_start, period_end, next_period_end, invoice_id, credit_note_id, takes_credit_notes, "
                "tax_jurisdiction, tax_point") == Counter([
        (1, mar(1), apr(1), may(1), "INV-A1-20250401", "CN-A1-20250401", False, "US-CA", apr(1)),
        (2, feb(15), mar(15), apr(15), "INV-A2-20250315", "CN-A2-20250315", True, "DE", mar(15)),
        (3, feb(28), mar(31), apr(30), "INV-A3-20250331", "CN-A3-20250331", False, "US-OR", mar(31)),
        (4, jan(1), apr(1), date(2025, 7, 1), "INV-A4-20250401", "CN-A4-20250401", False, "US-CA", apr(1)),
    ])


ISSUED = "core.invoice_lines"


def test_issued_and_voided_lines(con):
    """ISSUED = lines of ledger documents not voided (with their number) + drafts of months before March that
    are not finalized (no number). January's drafts are finalized (their ledger lines count, not them); March's
    own drafts are not issued; the voided document's line is a voided line. Only the settled accounts' lines are
    read (a run over a shard of accounts): account 3's line is not. Of those, only the lines the run looks at
    (``looked_at``): account 1 looks at everything; account 2, settled from its current period, looks at recurring
    lines ending after Feb 1, one-time lines from Feb 1 and usage of March on."""
    given(con, billed_accounts=("account_id BIGINT", [(1,), (2,)]),
          looked_at=("account_id BIGINT, items_from DATE, usage_from_month DATE, recurring_from DATE",
                     [(1, date(2024, 1, 1), date(2024, 1, 1), date(2024, 1, 1)), (2, feb(1), mar(1), feb(1))]))

    def line(line_id, month, account, line_type="USAGE", start=None, end=None, **more):
        return {"line_id": line_id, "document_id": f"INV-{line_id}", "document_number": f"N-{line_id}",
                "billing_month": month, "account_id": account, "amount": "1.00", "line_type": line_type,
                "service_start": start or month, "service_end": end or month, **more}

    kw = create_invoicing_inputs(
        con, "core",
        document_lines=[{"line_id": "L-jan", "document_id": "INV-A-20250201", "document_number": "INV-2025-000001",
                         "billing_month": jan(1), "account_id": 1, "amount": "29.99", "line_type": "USAGE"},
                        {"line_id": "L-void", "document_id": "INV-B-20250201", "document_number": "INV-2025-000002",
                         "billing_month": jan(1), "account_id": 2, "amount": "10.00"},
                        {"line_id": "L-other", "document_id": "INV-C-20250201", "document_number": "INV-2025-000003",
                         "billing_month": jan(1), "account_id": 3, "amount": "5.00"},
                        line("R-ends-feb1", jan(1), 2, "RECURRING", jan(1), feb(1)),      # ends on recurring_from: out
                        line("R-ends-mar1", feb(1), 2, "RECURRING", feb(1), mar(1)),      # ends after it: in
                        line("C-ends-feb2", feb(1), 2, "RECURRING_CREDIT", jan(20), feb(2)),  # in
                        line("O-jan31", feb(1), 2, "ONE_TIME", jan(31), feb(1)),          # before items_from: out
                        line("O-feb1", feb(1), 2, "ONE_TIME_CREDIT", feb(1), feb(2)),     # from items_from: in
                        line("U-feb", feb(1), 2),                                         # usage of Feb: out
                        line("U-late-mar", feb(1), 2, service_month=mar(1))],             # service month March: in
        voids=[{"document_id": "INV-B-20250201", "document_number": "INV-2025-000002", "account_id": 2, "voided_on": feb(3),
                "voided_at": "2025-02-03 10:00:00"}],
        finalized_months=[{"billing_month": jan(1), "finalized_at": "2025-02-02 10:00:00"}],
        billed=[{"line_id": lid, "invoice_id": "INV-A-x", "billing_month": m, "account_id": a, "amount": "1.00",
                 "line_type": "USAGE"}
                for lid, m, a in [("L-jan", jan(1), 1), ("D-feb", feb(1), 1), ("D-mar", mar(1), 1), ("D-other", feb(1), 3)]])
    step = accounts.issued_lines(MARCH, kw["document_lines"], kw["voids"], kw["finalized_months"], kw["billed"])
    assert rows(con, step, "line_id, voided") == Counter(
        [("L-jan", False), ("D-feb", False), ("R-ends-mar1", False), ("C-ends-feb2", False), ("O-feb1", False),
         ("U-late-mar", False)])
    assert rows(con, step, "line_id, document_number") >= Counter([("L-jan", "INV-2025-000001"), ("D-feb", None)])
    assert rows(con, accounts.voided_lines(kw["document_lines"], kw["voids"]), "line_id, voided") == Counter([("L-void", True)])


def test_looked_at(con):
    """Per settled account, where each kind of issued line is looked at from. Account 1 is settled in full: report_from
    for recurring lines. Account 2 is settled from its current period: the earliest settle_from of its bill cycle day
    and cycle over the charge intervals (annual: Jan 1 2025), not before report_from (Mar 1 2024)."""
    given(con,
          settled_accounts=("account_id BIGINT, bill_cycle_day INTEGER, billing_cycle VARCHAR, resettle BOOLEAN, "
                            "report_from DATE, items_from DATE, usage_from_month DATE",
                            [(1, 1, "MONTHLY", True, date(2024, 3, 1), date(2024, 3, 1), date(2024, 3, 1)),
                             (2, 1, "MONTHLY", False, date(2024, 3, 1), feb(1), mar(1))]),
          due_horizons=("bill_cycle_day INTEGER, billing_cycle VARCHAR, billing_interval VARCHAR, settle_from DATE",
                        [(1, "MONTHLY", "MONTHLY", feb(1)), (1, "MONTHLY", "QUARTERLY", jan(1)),
                         (1, "MONTHLY", "ANNUAL", jan(1))]))
    assert rows(con, accounts.looked_at(), "account_id, items_from, usage_from_month, recurring_from") == Counter(
        [(1, date(2024, 3, 1), date(2024, 3, 1), date(2024, 3, 1)), (2, feb(1), mar(1), jan(1))])


@pytest.mark.parametrize("ledger_months, draft_months, expected", [
    # first issued January 2024: bill from March 2024 (12 months back), look from January 2024 (go-live)
    ([date(2024, 1, 1), feb(1)], [], (date(2024, 1, 1), date(2024, 3, 1), date(2024, 1, 1))),
    # first issued 2020: bill from March 2024, look from March 2023 (one more lookback)
    ([date(2020, 1, 1)], [], (date(2020, 1, 1), date(2024, 3, 1), date(2023, 3, 1))),
    # only pending drafts (February, not finalized): go-live February; March's own drafts do not count
    ([], [feb(1), mar(1)], (feb(1), feb(1), feb(1))),
    # nothing issued: the run's month is the go-live
    ([], [], (mar(1), mar(1), mar(1))),
])
def test_settlement_months(con, ledger_months, draft_months, expected):
    """go_live is taken over every account (the ledger's lines, voided or not, and pending drafts), so a shard of
    accounts settles from the same month as the whole run."""
    given(con, ledger_lines=("billing_month DATE", [(m,) for m in ledger_months]),
          drafts=("billing_month DATE", [(m,) for m in draft_months]), finalized=("billing_month DATE", []))
    step = accounts.settlement_months(MARCH, 12, "ledger_lines", "finalized", "drafts")
    assert con.sql(f"SELECT go_live, bill_from_month, report_from_month FROM ({step})").fetchall() == [expected]


def test_settled_accounts(con):
    """bill_from / report_from: the start of the account period billed in bill_from_month (February) /
    report_from_month (January): calendar [Feb 1, Mar 1) / [Jan 1, Feb 1); day 15 [Jan 15, Feb 15) / [Dec 15, Jan 15);
    quarterly calendar [Jan 1, Apr 1) (billed in March) for both."""
    given(con, billed_accounts=("account_id BIGINT, bill_cycle_day INTEGER, billing_cycle VARCHAR, period_start DATE",
                                [(1, 1, "MONTHLY", mar(1)), (2, 15, "MONTHLY", feb(15)), (3, 1, "QUARTERLY", jan(1))]),
          settlement_months=("go_live DATE, bill_from_month DATE, report_from_month DATE", [(jan(1), feb(1), jan(1))]))
    assert rows(con, accounts.settled_accounts(MARCH, None), "account_id, bill_from, report_from") == Counter([
        (1, feb(1), jan(1)), (2, jan(15), date(2024, 12, 15)), (3, jan(1), jan(1))])


def test_settled_accounts_of_an_incremental_run(con):
    """Without ``resettled`` every account is settled in full: one-time items from report_from, usage from
    report_from_month (January). With it, account 1 (resettle false: unchanged) from its period: items from P's
    start (Mar 1), usage of March only; account 2 (true) and account 3 (not in the relation) in full."""
    given(con, billed_accounts=("account_id BIGINT, bill_cycle_day INTEGER, billing_cycle VARCHAR, period_start DATE",
                                [(1, 1, "MONTHLY", mar(1)), (2, 15, "MONTHLY", feb(15)), (3, 1, "QUARTERLY", jan(1))]),
          settlement_months=("go_live DATE, bill_from_month DATE, report_from_month DATE", [(jan(1), feb(1), jan(1))]),
          fingerprints=("account_id BIGINT, resettle BOOLEAN", [(1, False), (2, True)]))
    columns = "account_id, resettle, items_from, usage_from_month"
    assert rows(con, accounts.settled_accounts(MARCH, None), columns) == Counter([
        (1, True, jan(1), jan(1)), (2, True, date(2024, 12, 15), jan(1)), (3, True, jan(1), jan(1))])
    assert rows(con, accounts.settled_accounts(MARCH, "fingerprints"), columns) == Counter([
        (1, False, mar(1), mar(1)), (2, True, date(2024, 12, 15), jan(1)), (3, True, jan(1), jan(1))])


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


# recurring due, recurring billed, charge periods -----------------------------------------------

def test_service_versions(con):
    """Quantity as money; an open end is 9999-12-31."""
    given(con, versions=("subscription_id BIGINT, account_id BIGINT, product_id BIGINT, plan_id BIGINT, "
                         "bundle_id BIGINT, quantity INTEGER, valid_from DATE, valid_to DATE",
                         [(1, 1, 10, 100, None, 2, feb(1), mar(10)), (2, 1, 10, 100, 7, 1, mar(10), None)]))
    assert rows(con, recurring.service_versions("versions"), "subscription_id, quantity, valid_from, valid_to") == Counter([
        (1, D(2), feb(1), mar(10)), (2, D(1), mar(10), OPEN_END)])


def test_recurring_prices(con):
    """RECURRING charges only; a price version ending Mar 10 12:00 ends on Mar 10 (days), the next starts then;
    billing_interval NULL is MONTHLY."""
    given(con, charges=("price_id BIGINT, plan_id BIGINT, charge_code VARCHAR, charge_type VARCHAR, "
                        "billing_timing VARCHAR, prorate BOOLEAN, unit_price DECIMAL(38,10), proration_days INTEGER, "
                        "billing_interval VARCHAR, effective_from TIMESTAMP, effective_to TIMESTAMP",
                        [(1000, 100, "BASE_FEE", "RECURRING", "IN_ADVANCE", True, "29.99", None, None,
                          "2020-01-01 00:00:00", "2025-03-10 12:00:00"),
                         (1001, 100, "BASE_FEE", "RECURRING", "IN_ADVANCE", True, "35.00", None, "ANNUAL",
                          "2025-03-10 12:00:00", None),
                         (1002, 100, "DATA", "USAGE", "IN_ARREARS", False, "0.01", None, None, "2020-01-01 00:00:00", None)]))
    assert rows(con, recurring.recurring_prices("charges"), "price_id, unit_price, billing_interval, price_from, price_to") == Counter([
        (1000, D("29.99"), "MONTHLY", date(2020, 1, 1), mar(10)), (1001, D("35.00"), "ANNUAL", mar(10), OPEN_END)])


def test_due_horizons(con):
    """The March run. Calendar monthly (P = [Mar 1, Apr 1), N = [Apr 1, May 1)): in advance the monthly period
    containing Apr 30 ends May 1, the quarter Jul 1, the year Jan 1 2026; in arrears the last monthly period
    ending by Apr 1 ends Apr 1, the last quarter Apr 1, the last year Jan 1 2025. Day 15 (P = [Feb 15, Mar 15),
    N = [Mar 15, Apr 15)): advance Apr 15 (monthly); arrears Mar 15 (monthly), Jan 15 (quarterly: quarters end
    Jan 15, Apr 15, ...)."""
    given(con, billed_accounts=("account_id BIGINT, bill_cycle_day INTEGER, billing_cycle VARCHAR, period_start DATE, "
                                "period_end DATE, next_period_end DATE",
                                [(1, 1, "MONTHLY", mar(1), apr(1), may(1)), (2, 1, "MONTHLY", mar(1), apr(1), may(1)),
                                 (3, 15, "MONTHLY", feb(15), mar(15), apr(15))]))
    # settle_from: the charge period of each interval containing P's first day (Mar 1: the month, the quarter
    # [Jan 1, Apr 1), the year [Jan 1, Jan 1 2026); Feb 15: [Feb 15, Mar 15), [Jan 15, Apr 15), [Jan 15, Jan 15 2026)).
    assert rows(con, accounts.due_horizons(),
                "bill_cycle_day, billing_interval, advance_to, arrears_to, settle_from") == Counter([
        (1, "MONTHLY", may(1), apr(1), mar(1)), (1, "QUARTERLY", date(2025, 7, 1), apr(1), jan(1)),
        (1, "ANNUAL", date(2026, 1, 1), jan(1), jan(1)),
        (15, "MONTHLY", apr(15), mar(15), feb(15)), (15, "QUARTERLY", apr(15), jan(15), jan(15)),
        (15, "ANNUAL", date(2026, 1, 15), jan(15), jan(15))])


# the March run of a calendar account: P = [Mar 1, Apr 1), N = [Apr 1, May 1), looked at from Feb 1, billed from Mar 1
SETTLED = ("account_id BIGINT, bill_cycle_day INTEGER, billing_cycle VARCHAR, report_from DATE, bill_from DATE, "
           "resettle BOOLEAN", [(1, 1, "MONTHLY", feb(1), mar(1), True)])
HORIZONS = ("bill_cycle_day INTEGER, billing_cycle VARCHAR, billing_interval VARCHAR, advance_to DATE, arrears_to DATE, "
            "settle_from DATE",
            [(1, "MONTHLY", "MONTHLY", may(1), apr(1), mar(1)),
             (1, "MONTHLY", "QUARTERLY", date(2025, 7, 1), apr(1), jan(1)),
             (1, "MONTHLY", "ANNUAL", date(2026, 1, 1), jan(1), jan(1))])


@pytest.mark.parametrize("resettle, monthly_from", [(True, feb(1)), (False, mar(1))])
def test_recurring_due(con, resettle, monthly_from):
    """Due spans from report_from (Feb 1) to the horizon of the charge's interval and timing:
    sub 1 monthly in advance since Jan 1, price 1000 until Mar 15 then 1001: [Feb 1, Mar 15) and [Mar 15, May 1)
    (the monthly period containing Apr 30 ends May 1); sub 2 monthly in arrears from Mar 20: up to P's end
    [Mar 20, Apr 1); sub 3 annual in advance from Mar 20: the annual period containing Apr 30 ends Jan 1 2026;
    sub 4 quarterly in arrears: the last quarter ending by Apr 1: [Feb 1, Apr 1); sub 5 ended Feb 1: nothing.
    An account settled from its current period (resettle false) starts each interval at its settle_from: the
    monthly sub 1 at Mar 1 ([Mar 1, Mar 15)); the quarter [Jan 1, Apr 1) and the year start before report_from:
    Feb 1 and Mar 20 as before."""
    given(con,
          service_versions=("subscription_id BIGINT, account_id BIGINT, product_id BIGINT, plan_id BIGINT, "
                            "bundle_id BIGINT, quantity DECIMAL(38,10), valid_from DATE, valid_to DATE",
                            [(1, 1, 10, 100, None, 1, jan(1), OPEN_END), (2, 1, 10, 200, None, 1, mar(20), OPEN_END),
                             (3, 1, 10, 300, None, 1, mar(20), OPEN_END), (4, 1, 10, 400, None, 1, jan(1), OPEN_END),
                             (5, 1, 10, 100, None, 1, jan(1), feb(1))]),
          recurring_prices=("price_id BIGINT, plan_id BIGINT, billing_timing VARCHAR, billing_interval VARCHAR, "
                            "prorate BOOLEAN, price_from DATE, price_to DATE",
                            [(1000, 100, "IN_ADVANCE", "MONTHLY", True, "2020-01-01", mar(15)),
                             (1001, 100, "IN_ADVANCE", "MONTHLY", True, mar(15), OPEN_END),
                             (2000, 200, "IN_ARREARS", "MONTHLY", True, "2020-01-01", OPEN_END),
                             (3000, 300, "IN_ADVANCE", "ANNUAL", True, "2020-01-01", OPEN_END),
                             (4000, 400, "IN_ARREARS", "QUARTERLY", True, "2020-01-01", OPEN_END)]),
          settled_accounts=(SETTLED[0], [SETTLED[1][0][:-1] + (resettle,)]),
          due_horizons=HORIZONS)
    assert rows(con, recurring.recurring_due(), "subscription_id, price_id, billing_interval, span_from, span_to") == Counter([
        (1, 1000, "MONTHLY", monthly_from, mar(15)), (1, 1001, "MONTHLY", mar(15), may(1)),
        (2, 2000, "MONTHLY", mar(20), apr(1)), (3, 3000, "ANNUAL", mar(20), date(2026, 1, 1)),
        (4, 4000, "QUARTERLY", feb(1), apr(1))])


def test_recurring_billed(con):
    """Issued recurring lines of the account from report_from (Feb 1) up to their price's horizon: charge L1
    +1, credit C1 -1; L0 (January) before report_from: gone; L2 [Apr 1, Jun 1) clipped at May 1; the voided
    document's V1: coverage 0, voided; a usage line is not recurring."""
    line = ("line_id VARCHAR, billing_month DATE, line_type VARCHAR, account_id BIGINT, subscription_id BIGINT, "
            "price_id BIGINT, quantity DECIMAL(38,10), service_start DATE, service_end DATE, document_number VARCHAR, "
            "voided BOOLEAN")
    given(con,
          issued_lines=(line, [("L1", feb(1), "RECURRING", 1, 1, 1000, 1, mar(1), apr(1), "INV-2025-000001", False),
                               ("C1", feb(1), "RECURRING_CREDIT", 1, 1, 1000, 1, mar(10), apr(1), None, False),
                               ("L0", jan(1), "RECURRING", 1, 1, 1000, 1, jan(1), feb(1), None, False),
                               ("L2", feb(1), "RECURRING", 1, 2, 1000, 1, apr(1), date(2025, 6, 1), None, False),
                               ("U1", feb(1), "USAGE", 1, 1, 1001, 1, feb(1), mar(1), None, False)]),
          voided_lines=(line, [("V1", jan(1), "RECURRING", 1, 1, 1000, 1, feb(1), mar(1), "INV-2025-000009", True)]),
          recurring_prices=("price_id BIGINT, billing_timing VARCHAR, billing_interval VARCHAR",
                            [(1000, "IN_ADVANCE", "MONTHLY")]),
          settled_accounts=SETTLED, due_horizons=HORIZONS)
    assert rows(con, recurring.recurring_billed(), "line_id, coverage, voided, document_number, span_from, span_to") == Counter([
        ("L1", 1, False, "INV-2025-000001", mar(1), apr(1)), ("C1", -1, False, None, mar(10), apr(1)),
        ("L2", 1, False, None, apr(1), may(1)), ("V1", 0, True, "INV-2025-000009", feb(1), mar(1))])


def test_charge_period_pieces(con):
    """Spans cut by the charge periods of their interval on the bill cycle day:
    sub 1 monthly day 1 [Feb 10, May 1): [Feb 10, Mar 1), [Mar 1, Apr 1), [Apr 1, May 1);
    sub 2 annual [Mar 20, Jan 1 2026): one piece of the period [Jan 1 2025, Jan 1 2026);
    sub 3 not prorated [Mar 20, Apr 10): due over the whole periods [Mar 1, Apr 1) and [Apr 1, May 1);
    billed L1 monthly on day 15 [Mar 1, Apr 1): [Mar 1, Mar 15) of [Feb 15, Mar 15), [Mar 15, Apr 1) of [Mar 15, Apr 15)."""
    span = "account_id BIGINT, subscription_id BIGINT, price_id BIGINT, quantity DECIMAL(38,10), billing_interval VARCHAR, " \
           "bill_cycle_day INTEGER, span_from DATE, span_to DATE"
    given(con,
          recurring_due=(f"{span}, product_id BIGINT, plan_id BIGINT, bundle_id BIGINT, prorate BOOLEAN",
                         [(1, 1, 1000, 1, "MONTHLY", 1, feb(10), may(1), 10, 100, None, True),
                          (1, 2, 2000, 1, "ANNUAL", 1, mar(20), date(2026, 1, 1), 10, 200, None, True),
                          (1, 3, 3000, 1, "MONTHLY", 1, mar(20), apr(10), 10, 300, None, False)]),
          recurring_billed=(f"{span}, line_id VARCHAR, billing_month DATE, document_number VARCHAR, voided BOOLEAN, "
                            "coverage INTEGER",
                            [(2, 9, 9000, 1, "MONTHLY", 15, mar(1), apr(1), "L1", feb(1), None, False, 1)]))
    assert rows(con, recurring.charge_period_pieces(), "kind, subscription_id, charge_start, charge_end, piece_from, piece_to") == Counter([
        ("DUE", 1, feb(1), mar(1), feb(10), mar(1)), ("DUE", 1, mar(1), apr(1), mar(1), apr(1)),
        ("DUE", 1, apr(1), may(1), apr(1), may(1)),
        ("DUE", 2, jan(1), date(2026, 1, 1), mar(20), date(2026, 1, 1)),
        ("DUE", 3, mar(1), apr(1), mar(1), apr(1)), ("DUE", 3, apr(1), may(1), apr(1), may(1)),
        ("BILLED", 9, feb(15), mar(15), mar(1), mar(15)), ("BILLED", 9, mar(15), apr(15), mar(15), apr(1))])


# intervals, their state, segments --------------------------------------------------------------

KEY = "account_id BIGINT, subscription_id BIGINT, price_id BIGINT, quantity DECIMAL(38,10), charge_start DATE"
MARCH_PERIOD = (mar(1), apr(1))  # charge_start, charge_end of March's monthly charge period


def test_elementary_intervals(con):
    """Sub 1 due [Mar 10, Apr 1), billed [Mar 1, Apr 1): boundaries Mar 1, Mar 10, Apr 1 -> two intervals; sub 2
    (quantity 3) due [Mar 16, Apr 1) -> one; account 2, billed from Mar 20 (its lookback), due [Mar 1, Apr 1):
    cut at Mar 20."""
    piece = f"kind VARCHAR, {KEY}, charge_end DATE, piece_from DATE, piece_to DATE"
    given(con,
          charge_period_pieces=(piece, [("DUE", 1, 1, 1000, 1, *MARCH_PERIOD, mar(10), apr(1)),
                                        ("BILLED", 1, 1, 1000, 1, *MARCH_PERIOD, mar(1), apr(1)),
                                        ("DUE", 1, 2, 1000, 3, *MARCH_PERIOD, mar(16), apr(1)),
                                        ("DUE", 2, 5, 1000, 1, *MARCH_PERIOD, mar(1), apr(1))]),
          settled_accounts=("account_id BIGINT, bill_from DATE", [(1, mar(1)), (2, mar(20))]))
    assert rows(con, recurring.elementary_intervals(), "account_id, subscription_id, quantity, interval_start, interval_end") == Counter([
        (1, 1, D(1), mar(1), mar(10)), (1, 1, D(1), mar(10), apr(1)), (1, 2, D(3), mar(16), apr(1)),
        (2, 5, D(1), mar(1), mar(20)), (2, 5, D(1), mar(20), apr(1))])


INTERVALS = (f"{KEY}, charge_end DATE, interval_start DATE, interval_end DATE",
             [(1, 1, 1000, 1, *MARCH_PERIOD, mar(1), mar(10)), (1, 1, 1000, 1, *MARCH_PERIOD, mar(10), apr(1))])
PIECES = (f"kind VARCHAR, {KEY}, piece_from DATE, piece_to DATE, product_id BIGINT, plan_id BIGINT, bundle_id BIGINT, "
          "line_id VARCHAR, billing_month DATE, document_number VARCHAR, voided BOOLEAN, coverage INTEGER")


def test_intervals_due(con):
    """Due [Mar 10, Apr 1) covers only the second interval, which takes its product, plan and bundle."""
    given(con, elementary_intervals=INTERVALS,
          charge_period_pieces=(PIECES, [("DUE", 1, 1, 1000, 1, mar(1), mar(10), apr(1), 10, 100, 7, None, None, None, None, None),
                                         ("BILLED", 1, 1, 1000, 1, mar(1), mar(1), apr(1), None, None, None, "L1", jan(1),
                                          None, False, 1)]))
    assert rows(con, recurring.intervals_due(), "interval_start, product_id, plan_id, bundle_id") == Counter([(mar(10), 10, 100, 7)])


def test_intervals_billed(con):
    """L1 (January, document INV-1) +1 over both intervals; C1 -1 and L2 +1 (February, pending) over the second;
    a voided line V1 (0) over the first: [Mar 1, Mar 10): net 1, latest charge L1 (INV-1), voided;
    [Mar 10, Apr 1): net 1 - 1 + 1 = 1, latest charge L2 (no document yet)."""
    billed = [("L1", mar(1), jan(1), "INV-1", False, 1), ("C1", mar(10), feb(1), None, False, -1),
              ("L2", mar(10), feb(1), None, False, 1), ("V1", mar(1), date(2024, 12, 1), "INV-0", True, 0)]
    given(con, elementary_intervals=INTERVALS,
          charge_period_pieces=(PIECES, [("BILLED", 1, 1, 1000, 1, mar(1), start, mar(10) if lid == "V1" else apr(1),
                                          None, None, None, lid, month, number, voided, coverage)
                                         for lid, start, month, number, voided, coverage in billed]))
    assert rows(con, recurring.intervals_billed(), "interval_start, net_billed, latest_charge_line_id, latest_charge_document, voided") == Counter([
        (mar(1), 1, "L1", "INV-1", True), (mar(10), 1, "L2", None, False)])


def test_interval_states(con):
    """Due and not billed: charge; due and billed once: settled; billed, no longer due: credit of L1 (with its
    document); billed then credited (net 0), not due: settled; due, billed then credited: charged again.
    Intervals before bill_from (Mar 5) are beyond the lookback; a charge over a voided line's days re-bills it."""
    starts = [mar(1), mar(5), mar(10), mar(20), mar(25), apr(1)]
    given(con,
          elementary_intervals=(f"{KEY}, charge_end DATE, interval_start DATE, interval_end DATE",
                                [(1, 1, 1000, 1, *MARCH_PERIOD, s, t) for s, t in zip(starts, starts[1:])]),
          intervals_due=(f"{KEY}, interval_start DATE, product_id BIGINT, plan_id BIGINT, bundle_id BIGINT",
                         [(1, 1, 1000, 1, mar(1), s, 10, 100, None) for s in (mar(1), mar(5), mar(25))]),
          intervals_billed=(f"{KEY}, interval_start DATE, net_billed INTEGER, latest_charge_line_id VARCHAR, "
                            "latest_charge_document VARCHAR, voided BOOLEAN",
                            [(1, 1, 1000, 1, mar(1), mar(5), 1, "L1", "INV-1", False),
                             (1, 1, 1000, 1, mar(1), mar(10), 1, "L1", "INV-1", False),
                             (1, 1, 1000, 1, mar(1), mar(20), 0, "L1", "INV-1", False),
                             (1, 1, 1000, 1, mar(1), mar(25), 0, "L1", "INV-1", True)]),
          settled_accounts=("account_id BIGINT, bill_from DATE", [(1, mar(5))]))
    assert rows(con, recurring.interval_states(),
                "interval_start, line_type, credited_line_id, credited_document_number, product_id, rebills_voided, "
                "beyond_lookback") == Counter([
        (mar(1), "RECURRING", None, None, 10, False, True), (mar(5), None, None, None, 10, False, False),
        (mar(10), "RECURRING_CREDIT", "L1", "INV-1", None, False, False), (mar(20), None, "L1", "INV-1", None, False, False),
        (mar(25), "RECURRING", None, None, 10, True, False)])


def test_recurring_segments(con):
    """Adjacent charge intervals with the same bundle merge ([Mar 1, Mar 10)); a settled gap, a bundle change,
    the lookback's first day and a re-bill of voided days start new segments; credits of different lines stay
    apart."""
    given(con, interval_states=(
        f"{KEY}, charge_end DATE, interval_start DATE, interval_end DATE, product_id BIGINT, plan_id BIGINT, "
        "bundle_id BIGINT, line_type VARCHAR, credited_line_id VARCHAR, credited_document_number VARCHAR, "
        "rebills_voided BOOLEAN, beyond_lookback BOOLEAN",
        [(1, 1, 1000, 1, *MARCH_PERIOD, s, t, 10, 100, bundle, line_type, credited, None, voided, beyond)
         for s, t, bundle, line_type, credited, voided, beyond in [
             (mar(1), mar(3), 7, "RECURRING", None, False, True), (mar(3), mar(5), 7, "RECURRING", None, False, False),
             (mar(5), mar(10), 7, "RECURRING", None, False, False),
             (mar(10), mar(12), 7, None, None, False, False), (mar(12), mar(15), 7, "RECURRING", None, False, False),
             (mar(15), mar(18), None, "RECURRING", None, False, False),
             (mar(18), mar(20), None, "RECURRING", None, True, False),
             (mar(20), mar(25), None, "RECURRING_CREDIT", "L1", False, False),
             (mar(25), apr(1), None, "RECURRING_CREDIT", "L2", False, False)]]))
    assert rows(con, recurring.recurring_segments(),
                "line_type, credited_line_id, bundle_id, rebills_voided, beyond_lookback, segment_start, segment_end") == Counter([
        ("RECURRING", None, 7, False, True, mar(1), mar(3)), ("RECURRING", None, 7, False, False, mar(3), mar(10)),
        ("RECURRING", None, 7, False, False, mar(12), mar(15)), ("RECURRING", None, None, False, False, mar(15), mar(18)),
        ("RECURRING", None, None, True, False, mar(18), mar(20)),
        ("RECURRING_CREDIT", "L1", None, False, False, mar(20), mar(25)),
        ("RECURRING_CREDIT", "L2", None, False, False, mar(25), apr(1))])


# recurring lines priced and described ----------------------------------------------------------

def test_credited_lines(con):
    """What a credited line still bills before (held) and after (kept) this run, per contiguous piece; others
    are not read. March [Mar 1, Apr 1) 31 days, Basic 29.99, discount 10 %.
    L1 [Mar 1, Apr 1) 29.99, credited earlier from Mar 22 (net billed [Mar 1, Mar 22)); now credited from Mar 10:
      held = round(29.99 x 21 / 31 = 20.3158064516) = 20.32, discount -round(20.32 x 0.10) = -2.03;
      kept [Mar 1, Mar 10) = round(29.99 x 9 / 31 = 8.7067741935) = 8.71, discount -0.87.
    L2 [Mar 1, Apr 1) 29.99 (discount -3.00), credited now on [Mar 11, Mar 21): held the whole line 29.99, -3.00;
      kept two pieces: [Mar 1, Mar 11) round(29.99 x 10 / 31 = 9.6741935484) = 9.67, discount -0.97, and
      [Mar 21, Apr 1) round(29.99 x 11 / 31 = 10.6416129032) = 10.64, discount -1.06: 20.31, -2.03."""
    line = "line_id VARCHAR, service_start DATE, service_end DATE, unit_price DECIMAL(38,10), quantity DECIMAL(38,10), " \
           "period_days INTEGER, amount DECIMAL(18,4), discount_pct DECIMAL(9,6), discount_amount DECIMAL(18,4), currency VARCHAR"
    key = "account_id BIGINT, subscription_id BIGINT, price_id BIGINT, quantity DECIMAL(38,10), charge_start DATE"
    # intervals: (sub, start, end, net billed, latest charge, still due)
    intervals = [(1, mar(1), mar(10), 1, "L1", True), (1, mar(10), mar(22), 1, "L1", False),
                 (1, mar(22), apr(1), 0, "L1", False),
                 (2, mar(1), mar(11), 1, "L2", True), (2, mar(11), mar(21), 1, "L2", False),
                 (2, mar(21), apr(1), 1, "L2", True), (3, mar(1), apr(1), 1, "L3", True)]
    given(con,
          issued_lines=(line, [("L1", mar(1), apr(1), "29.99", 1, 31, "29.99", "0.10", "-3.00", "USD"),
                               ("L2", mar(1), apr(1), "29.99", 1, 31, "29.99", "0.10", "-3.00", "USD"),
                               ("L3", mar(1), apr(1), "29.99", 1, 31, "29.99", None, "0", "USD")]),
          recurring_segments=("line_type VARCHAR, credited_line_id VARCHAR, charge_start DATE, charge_end DATE",
                              [("RECURRING_CREDIT", "L1", mar(1), apr(1)), ("RECURRING_CREDIT", "L2", mar(1), apr(1)),
                               ("RECURRING", None, mar(1), apr(1))]),
          intervals_billed=(f"{key}, interval_start DATE, net_billed INTEGER, latest_charge_line_id VARCHAR",
                            [(1, sub, 1000, 1, mar(1), s, net, latest) for sub, s, _, net, latest, _ in intervals]),
          interval_states=(f"{key}, charge_end DATE, interval_start DATE, interval_end DATE, line_type VARCHAR",
                           [(1, sub, 1000, 1, mar(1), apr(1), s, e, None if due else "RECURRING_CREDIT")
                            for sub, s, e, _, _, due in intervals]))
    assert rows(con, lines.credited_lines(), "line_id, held_amount, kept_amount, held_discount, kept_discount") == Counter([
        ("L1", D("20.32"), D("8.71"), D("-2.03"), D("-0.87")),
        ("L2", D("29.99"), D("20.31"), D("-3.00"), D("-2.03"))])


def test_recurring_lines_priced(con):
    """Charge periods: March [Mar 1, Apr 1) 31 days, April 30 days, 2025 (annual) 365 days.
    sub 1 [Mar 20, Apr 1): 29.99 x 12 / 31 = 359.88 / 31 = 11.6090322581; sub 1 all of April: exactly 29.99;
    sub 2 fixed 30-day denominator: 30.00 x 12 / 30 = 12.00; sub 3 not prorated, 22 days: the whole 10.00;
    sub 4 quantity 3 [Mar 16, Apr 1): 89.97 x 16 / 31 = 1439.52 / 31 = 46.4361290323;
    sub 6 annual 120.00 [Mar 20, Jan 1 2026): 120 x 287 / 365 = 94.3561643836;
    credit of L1 [Mar 10, Apr 1) at L1's price and 31 days, the complement of what L1 keeps (held 29.99, kept
    [Mar 1, Mar 10) = round(29.99 x 9 / 31 = 8.7067741935) = 8.71): 8.71 - 29.99 = -21.28, discount
    -0.87 - (-3.00) = +2.13, with L1's tax rate (19 %) and discount rate; credit of the whole of L2 (kept 0):
    exactly -11.61 (not a recomputed 29.99 x 12 / 31 = 11.6090322581), its discount 0."""
    year = (jan(1), date(2026, 1, 1))
    april = (apr(1), may(1))
    segments = [(1, 1000, 1, "RECURRING", None, MARCH_PERIOD, mar(20), apr(1)),
                (1, 1000, 1, "RECURRING", None, april, apr(1), may(1)),
                (2, 1030, 1, "RECURRING", None, MARCH_PERIOD, mar(20), apr(1)),
                (3, 1040, 1, "RECURRING", None, MARCH_PERIOD, mar(10), apr(1)),
                (4, 1000, 3, "RECURRING", None, MARCH_PERIOD, mar(16), apr(1)),
                (6, 1060, 1, "RECURRING", None, year, mar(20), year[1]),
                (1, 1000, 1, "RECURRING_CREDIT", "L1", MARCH_PERIOD, mar(10), apr(1)),
                (5, 1000, 1, "RECURRING_CREDIT", "L2", MARCH_PERIOD, mar(20), apr(1))]
    given(con,
          recurring_segments=(f"{KEY}, charge_end DATE, line_type VARCHAR, credited_line_id VARCHAR, "
                              "credited_document_number VARCHAR, product_id BIGINT, plan_id BIGINT, bundle_id BIGINT, "
                              "rebills_voided BOOLEAN, beyond_lookback BOOLEAN, segment_start DATE, segment_end DATE",
                              [(1, sub, price, qty, period[0], period[1], line_type, credited, None, 10, 100, None,
                                False, False, s, t) for sub, price, qty, line_type, credited, period, s, t in segments]),
          recurring_prices=("price_id BIGINT, plan_id BIGINT, charge_code VARCHAR, prorate BOOLEAN, "
                            "unit_price DECIMAL(38,10), proration_days INTEGER",
                            [(1000, 100, "BASE_FEE", True, "29.99", None), (1030, 103, "BASE_FEE", True, "30.00", 30),
                             (1040, 104, "BASE_FEE", False, "10.00", None), (1060, 106, "BASE_FEE", True, "120.00", None)]),
          credited_lines=(
              "line_id VARCHAR, product_id BIGINT, plan_id BIGINT, charge_code VARCHAR, unit_price DECIMAL(38,10), "
              "period_days INTEGER, service_start DATE, service_end DATE, amount_precise DECIMAL(38,10), "
              "amount DECIMAL(18,4), discount_pct DECIMAL(9,6), discount_amount DECIMAL(18,4), coupon_id BIGINT, "
              "coupon_amount DECIMAL(18,4), tax_jurisdiction VARCHAR, tax_name VARCHAR, tax_rate DECIMAL(9,6), tax_point DATE, "
              "currency VARCHAR, held_amount DECIMAL(18,4), kept_amount DECIMAL(18,4), held_discount DECIMAL(18,4), "
              "kept_discount DECIMAL(18,4)",
              [("L1", 10, 100, "BASE_FEE", "29.99", 31, mar(1), apr(1), "29.99", "29.99", "0.10", "-3.00", None, "0",
                "DE", "VAT", "0.19", mar(1), "EUR", "29.99", "8.71", "-3.00", "-0.87"),
               ("L2", 10, 100, "BASE_FEE", "29.99", 31, mar(20), apr(1), "11.61", "11.61", None, "0", None, "0",
                "US-CA", "CA sales tax", "0.0725", mar(1), "USD", "11.61", "0", "0", "0")]))
    assert rows(con, lines.recurring_lines_priced(),
                "subscription_id, line_type, service_start, days, period_days, unit_price, credited_discount_pct, "
                "credited_tax_rate, reversed_discount, amount_precise") == Counter([
        (1, "RECURRING", mar(20), 12, 31, D("29.99"), None, None, None, D("11.6090322581")),
        (1, "RECURRING", apr(1), 30, 30, D("29.99"), None, None, None, D("29.99")),
        (2, "RECURRING", mar(20), 12, 30, D("30.00"), None, None, None, D("12.00")),
        (3, "RECURRING", mar(10), 22, 31, D("10.00"), None, None, None, D("10.00")),
        (4, "RECURRING", mar(16), 16, 31, D("29.99"), None, None, None, D("46.4361290323")),
        (6, "RECURRING", mar(20), 287, 365, D("120.00"), None, None, None, D("94.3561643836")),
        (1, "RECURRING_CREDIT", mar(10), 22, 31, D("29.99"), D("0.10"), D("0.19"), D("2.13"), D("-21.28")),
        (5, "RECURRING_CREDIT", mar(20), 12, 31, D("29.99"), None, D("0.0725"), D(0), D("-11.61")),
    ])


def test_recurring_lines(con):
    """A charge takes the account's tax (CA 7.25 %, tax point Apr 1) and its bundle's rate in force on its start
    for a member product (10 %; product 11 is no member: none); a credit says "Credit:", reverses the credited
    line's tax (DE VAT 19 %, tax point Mar 1) and discount rate, references its document and, being of February
    (an earlier period) with a charge of the same days under another price of the plan, is a CATALOG_CHANGE;
    a product unknown to the catalog shows the charge code."""
    priced = ("account_id BIGINT, subscription_id BIGINT, price_id BIGINT, quantity DECIMAL(38,10), line_type VARCHAR, "
              "service_start DATE, service_end DATE, credited_line_id VARCHAR, credited_document_number VARCHAR, "
              "rebills_voided BOOLEAN, beyond_lookback BOOLEAN, product_id BIGINT, plan_id BIGINT, charge_code VARCHAR, "
              "bundle_id BIGINT, reversed_discount DECIMAL(18,4), credited_discount_pct DECIMAL(9,6), "
              "credited_coupon_id BIGINT, credited_coupon_amount DECIMAL(18,4), "
              "credited_amount DECIMAL(18,4), credited_tax_jurisdiction VARCHAR, credited_tax_name VARCHAR, "
              "credited_tax_rate DECIMAL(9,6), credited_tax_point DATE, unit_price DECIMAL(38,10), days INTEGER, "
              "period_days INTEGER, amount_precise DECIMAL(38,10)")
    charge = dict(account_id=1, quantity=1, line_type="RECURRING", rebills_voided=False, beyond_lookback=False,
                  plan_id=100, charge_code="BASE_FEE", unit_price="29.99")
    given(con,
          recurring_lines_priced=(priced, [
              {**charge, "subscription_id": 1, "price_id": 1000, "service_start": mar(20), "service_end": apr(1),
               "product_id": 10, "bundle_id": 7, "days": 12, "period_days": 31, "amount_precise": "11.6090322581"},
              {**charge, "subscription_id": 3, "price_id": 1000, "service_start": mar(20), "service_end": apr(1),
               "product_id": 11, "bundle_id": 7, "days": 12, "period_days": 31, "amount_precise": "11.6090322581"},
              {**charge, "subscription_id": 1, "price_id": 1001, "service_start": feb(10), "service_end": mar(1),
               "product_id": 10, "bundle_id": 7, "days": 19, "period_days": 28, "amount_precise": "20.3503571429"},
              {**charge, "subscription_id": 1, "price_id": 1000, "line_type": "RECURRING_CREDIT", "service_start": feb(10),
               "service_end": mar(1), "credited_line_id": "L1", "credited_document_number": "INV-2025-000007",
               "product_id": 10, "credited_discount_pct": "0.10", "credited_tax_jurisdiction": "DE",
               "credited_tax_name": "VAT", "credited_tax_rate": "0.19", "credited_tax_point": mar(1), "days": 19,
               "period_days": 28, "amount_precise": "-20.3503571429"},
              {**charge, "subscription_id": 2, "price_id": 2000, "service_start": apr(1), "service_end": may(1),
               "product_id": 99, "plan_id": 999, "charge_code": "LEGACY_FEE", "unit_price": "5.00", "days": 30,
               "period_days": 30, "amount_precise": "5.00"}]),
          recurring_segments=("subscription_id BIGINT, price_id BIGINT, line_type VARCHAR, segment_start DATE, "
                              "segment_end DATE",
                              [(1, 1001, "RECURRING", feb(10), mar(1)), (1, 1000, "RECURRING_CREDIT", feb(10), mar(1))]),
          recurring_prices=("price_id BIGINT, plan_id BIGINT", [(1000, 100), (1001, 100)]),
          billed_accounts=("account_id BIGINT, invoice_id VARCHAR, tax_jurisdiction VARCHAR, currency VARCHAR, "
                           "tax_point DATE, bill_cycle_day INTEGER, billing_cycle VARCHAR",
                           [(1, "INV-A0001-20250401", "US-CA", "USD", apr(1), 1, "MONTHLY")]),
          account_tax_rates=("account_id BIGINT, tax_name VARCHAR, tax_rate DECIMAL(9,6)", [(1, "CA sales tax", "0.0725")]),
          products=("product_id BIGINT, name VARCHAR", [(10, "Mobile Basic"), (11, "Mobile Plus")]),
          plans=("plan_id BIGINT, name VARCHAR", [(100, "Basic")]),
          bundle_history=("bundle_id BIGINT, discount_pct DECIMAL(9,6), valid_from TIMESTAMP, valid_to TIMESTAMP",
                          [(7, "0.10", "2020-01-01 00:00:00", "2025-04-01 00:00:00"), (7, "0.20", "2025-04-01 00:00:00", None)]),
          bundle_members=("bundle_id BIGINT, product_id BIGINT", [(7, 10)]))
    assert rows(con, lines.recurring_lines(MARCH, "products", "plans", "bundle_history", "bundle_members"),
                "subscription_id, description, service_month, discount_pct, tax_jurisdiction, tax_rate, tax_point, "
                "reference_document_number, adjustment_reason, lineage") == Counter([
        (1, "Mobile Basic - Basic 2025-03-20 to 2025-03-31", mar(1), D("0.10"), "US-CA", D("0.0725"), apr(1), None, None,
         "RECURRING|1|1000|1.0000000000|2025-03-20|2025-04-01|"),
        (3, "Mobile Plus - Basic 2025-03-20 to 2025-03-31", mar(1), None, "US-CA", D("0.0725"), apr(1), None, None,
         "RECURRING|3|1000|1.0000000000|2025-03-20|2025-04-01|"),
        (1, "Mobile Basic - Basic 2025-02-10 to 2025-02-28", feb(1), D("0.10"), "US-CA", D("0.0725"), apr(1), None,
         "CATALOG_CHANGE", "RECURRING|1|1001|1.0000000000|2025-02-10|2025-03-01|"),
        (1, "Credit: Mobile Basic - Basic 2025-02-10 to 2025-02-28", feb(1), D("0.10"), "DE", D("0.19"), mar(1),
         "INV-2025-000007", "CATALOG_CHANGE", "RECURRING_CREDIT|1|1000|1.0000000000|2025-02-10|2025-03-01|L1"),
        (2, "LEGACY_FEE 2025-04-01 to 2025-04-30", mar(1), None, "US-CA", D("0.0725"), apr(1), None, None,
         "RECURRING|2|2000|1.0000000000|2025-04-01|2025-05-01|"),
    ])


# usage and one-time lines ----------------------------------------------------------------------

def _billed_account_1(con, report_from_month=feb(1), bill_from_month=feb(1), resettle=True):
    """Account 1, calendar monthly, billed by the March run (P = [Mar 1, Apr 1)); ``resettle`` false: settled from
    its current period (one-time items from Mar 1, usage of March)."""
    given(con,
          billed_accounts=("account_id BIGINT, invoice_id VARCHAR, tax_jurisdiction VARCHAR, currency VARCHAR, "
                           "period_start DATE, period_end DATE, tax_point DATE, bill_cycle_day INTEGER, "
                           "billing_cycle VARCHAR",
                           [(1, "INV-A0001-20250401", "US-CA", "USD", mar(1), apr(1), apr(1), 1, "MONTHLY")]),
          settled_accounts=("account_id BIGINT, period_end DATE, report_from DATE, resettle BOOLEAN, items_from DATE, "
                            "usage_from_month DATE",
                            [(1, apr(1), report_from_month, resettle, report_from_month if resettle else mar(1),
                              report_from_month if resettle else mar(1))]),
          settlement_months=("report_from_month DATE, bill_from_month DATE", [(report_from_month, bill_from_month)]),
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
        dict(rated_line_id="r1", line_type="USAGE", quantity="1234.56", billable_quantity="1234.56", unit_price="0.01",
             event_count=10, amount_precise="12.3456", amount="12.35"),
        dict(rated_line_id="r2", line_type="MINIMUM_TRUE_UP", quantity="0", billable_quantity="1", event_count=0,
             amount_precise="5", amount="5.00"),
        dict(rated_line_id="r0", billing_month=feb(1), line_type="USAGE", quantity="100", billable_quantity="100",
             event_count=1, amount_precise="1", amount="1.00"),                       # February: in the settlement range
        dict(rated_line_id="rj", billing_month=jan(1), line_type="USAGE", quantity="100", billable_quantity="100",
             event_count=1, amount_precise="1", amount="1.00"),                       # January: before report_from_month
        dict(rated_line_id="rz", line_type="USAGE", quantity="0", billable_quantity="0", unit_price="0.01",
             event_count=0, amount_precise="0", amount="0"),                          # no usage at all
        dict(rated_line_id="ra", line_type="USAGE", quantity="400", billable_quantity="0", unit_price="0.01",
             event_count=3, amount_precise="0", amount="0"),                          # within the allowance
        dict(rated_line_id="rx", account_id=2, line_type="USAGE", quantity="5", billable_quantity="5", event_count=1,
             amount_precise="1", amount="1.00"),                                      # account not billed
    ], [("r1", mar(1), "USAGE", D("1234.56"), D("0.01"), D("12.35")), ("r2", mar(1), "MINIMUM_TRUE_UP", D(1), None, D("5.00")),
        ("r0", feb(1), "USAGE", D(100), None, D("1.00")), ("ra", mar(1), "USAGE", D(0), D("0.01"), D(0))],
        id="rated_usage"),
    pytest.param(RATED_WITHOUT_PRICE_OR_EVENTS, [
        dict(rated_line_id="q0", line_type="USAGE", quantity="0", billable_quantity="0", amount_precise="0", amount="0"),
        dict(rated_line_id="q1", line_type="USAGE", quantity="400", billable_quantity="0", amount_precise="0", amount="0"),
    ], [("q1", mar(1), "USAGE", D(0), None, D(0))],
        id="a relation without unit_price or event_count: no unit price, usage seen = quantity"),
])
def test_usage_owed(con, columns, given_rows, expected):
    """Rated lines of billed accounts, months report_from_month (February) .. March; a charge with no usage at all
    and a zero amount is left out, usage within an allowance stays (0.00)."""
    _billed_account_1(con)
    defaults = dict(billing_month=mar(1), account_id=1, subscription_id=1, plan_id=100, price_id=1001,
                    charge_code="DATA", service_start=mar(1), service_end=apr(1))
    given(con, rated=(columns, [{**defaults, **r} for r in given_rows]))
    step = lines.usage_owed(MARCH, "rated", columns_of(con, "rated"))
    assert rows(con, step, "rated_line_id, rated_month, rated_line_type, quantity, unit_price, amount") == Counter(expected)


ISSUED_LINE = ("line_id VARCHAR, billing_month DATE, service_month DATE, account_id BIGINT, subscription_id BIGINT, "
               "line_type VARCHAR, product_id BIGINT, plan_id BIGINT, price_id BIGINT, charge_code VARCHAR, "
               "service_start DATE, service_end DATE, quantity DECIMAL(38,10), unit_price DECIMAL(38,10), days INTEGER, "
               "period_days INTEGER, amount_precise DECIMAL(38,10), amount DECIMAL(18,4), discount_pct DECIMAL(9,6), "
               "discount_amount DECIMAL(18,4), coupon_id BIGINT, coupon_amount DECIMAL(18,4), tax_jurisdiction VARCHAR, "
               "tax_name VARCHAR, tax_rate DECIMAL(9,6), tax_point DATE, source_ref VARCHAR, document_number VARCHAR, "
               "description VARCHAR")


def test_usage_issued(con):
    """Per rated line issued (issued_lines holds those looked at): r1 issued 10.00 in February (document INV-1)
    then +2.50 in March's pending draft: 12.50, latest line A1; recurring and one-time lines are not usage."""
    usage = dict(account_id=1, line_type="USAGE", tax_jurisdiction="US-CA", tax_name="CA sales tax", tax_rate="0.0725")
    given(con, issued_lines=(ISSUED_LINE, [
        {**usage, "line_id": "U1", "billing_month": feb(1), "service_month": feb(1), "source_ref": "r1", "amount": "10.00",
         "amount_precise": "10", "quantity": "1000", "tax_point": mar(1), "document_number": "INV-1"},
        {**usage, "line_id": "A1", "billing_month": mar(1), "service_month": feb(1), "line_type": "USAGE_ADJUSTMENT",
         "source_ref": "r1", "amount": "2.50", "amount_precise": "2.5", "quantity": "250", "tax_point": apr(1)},
        {**usage, "line_id": "R1", "billing_month": feb(1), "line_type": "RECURRING", "source_ref": "1/1000", "amount": "29.99"},
        {**usage, "line_id": "O1", "billing_month": feb(1), "line_type": "ONE_TIME", "source_ref": "7", "amount": "9.00"}]))
    assert rows(con, lines.usage_issued(), "source_ref, rated_month, amount, quantity, latest_line_id, latest_document_number, tax_point") == Counter([
        ("r1", feb(1), D("12.50"), D(1250), "A1", None, apr(1))])


def test_usage_lines(con):
    """Owed minus issued per rated line (March run, tax CA 7.25 % on charges):
    r1 (March) not issued: USAGE 12.35; r2 (February) owed 12.50, issued 10.00 (document INV-1): +2.50
    USAGE_ADJUSTMENT, LATE_USAGE, referencing U2; r3 (February) issued 4.00, no longer rated: -4.00 reversed in
    full (BACKDATED_CHANGE) at the issued line's rate (19 %, tax point Mar 1); r4 (February) settled: nothing;
    r5 (February) not issued, held by a voided document: VOIDED; r6 (January) below bill_from_month (February):
    beyond the lookback; r7 (March) a negative cap never issued: at the current tax like any line of the month."""
    _billed_account_1(con, report_from_month=jan(1), bill_from_month=feb(1))
    owed = ("rated_line_id VARCHAR, rated_month DATE, account_id BIGINT, subscription_id BIGINT, plan_id BIGINT, "
            "price_id BIGINT, charge_code VARCHAR, metric VARCHAR, rated_line_type VARCHAR, service_start DATE, "
            "service_end DATE, quantity DECIMAL(38,10), unit_price DECIMAL(38,10), amount_precise DECIMAL(38,10), "
            "amount DECIMAL(18,4)")
    issued = ("source_ref VARCHAR, account_id BIGINT, rated_month DATE, amount_precise DECIMAL(38,10), amount DECIMAL(18,4), "
              "quantity DECIMAL(38,10), latest_line_id VARCHAR, latest_document_number VARCHAR, tax_jurisdiction VARCHAR, "
              "tax_name VARCHAR, tax_rate DECIMAL(9,6), tax_point DATE, subscription_id BIGINT, plan_id BIGINT, "
              "price_id BIGINT, charge_code VARCHAR, product_id BIGINT, service_start DATE, service_end DATE")
    o = dict(account_id=1, subscription_id=1, plan_id=100, price_id=1001, charge_code="DATA", metric="data_mb",
             rated_line_type="USAGE", service_start=feb(1), service_end=mar(1), quantity="100")
    i = dict(account_id=1, rated_month=feb(1), quantity="100", tax_jurisdiction="DE", tax_name="VAT", tax_rate="0.19",
             tax_point=mar(1), subscription_id=1, plan_id=100, price_id=1001, charge_code="DATA", product_id=10,
             service_start=feb(1), service_end=mar(1))
    given(con,
          usage_owed=(owed, [{**o, "rated_line_id": "r1", "rated_month": mar(1), "service_start": mar(1), "service_end": apr(1),
                              "amount_precise": "12.35", "amount": "12.35"},
                             {**o, "rated_line_id": "r2", "rated_month": feb(1), "amount_precise": "12.5", "amount": "12.50"},
                             {**o, "rated_line_id": "r4", "rated_month": feb(1), "amount_precise": "3", "amount": "3.00"},
                             {**o, "rated_line_id": "r5", "rated_month": feb(1), "amount_precise": "2", "amount": "2.00"},
                             {**o, "rated_line_id": "r6", "rated_month": jan(1), "amount_precise": "1", "amount": "1.00"},
                             {**o, "rated_line_id": "r7", "rated_month": mar(1), "rated_line_type": "MAXIMUM_CAP",
                              "amount_precise": "-3.5", "amount": "-3.50"}]),
          usage_issued=(issued, [{**i, "source_ref": "r2", "amount_precise": "10", "amount": "10.00", "latest_line_id": "U2",
                                  "latest_document_number": "INV-1"},
                                 {**i, "source_ref": "r3", "amount_precise": "4", "amount": "4.00", "latest_line_id": "U3"},
                                 {**i, "source_ref": "r4", "amount_precise": "3", "amount": "3.00", "latest_line_id": "U4"}]),
          voided_lines=("source_ref VARCHAR", [("r5",)]),
          products=("product_id BIGINT, name VARCHAR", [(10, "Mobile Basic")]),
          plans=("plan_id BIGINT, product_id BIGINT", [(100, 10)]))
    assert rows(con, lines.usage_lines(MARCH, "products", "plans"),
                "source_ref, line_type, service_month, amount, tax_rate, tax_point, reference_line_id, "
                "reference_document_number, adjustment_reason, beyond_lookback") == Counter([
        ("r1", "USAGE", mar(1), D("12.35"), D("0.0725"), apr(1), None, None, None, False),
        ("r2", "USAGE_ADJUSTMENT", feb(1), D("2.50"), D("0.0725"), apr(1), "U2", "INV-1", "LATE_USAGE", False),
        ("r3", "USAGE_ADJUSTMENT", feb(1), D("-4.00"), D("0.19"), mar(1), "U3", None, "BACKDATED_CHANGE", False),
        ("r5", "USAGE_ADJUSTMENT", feb(1), D("2.00"), D("0.0725"), apr(1), None, None, "VOIDED", False),
        ("r6", "USAGE_ADJUSTMENT", jan(1), D("1.00"), D("0.0725"), apr(1), None, None, "LATE_USAGE", True),
        ("r7", "MAXIMUM_CAP", mar(1), D("-3.50"), D("0.0725"), apr(1), None, None, None, False)])


@pytest.mark.parametrize("resettle", [True, False])
def test_one_time_owed(con, resettle):
    """Items of CONFIRMED orders effective from report_from (Feb 1) up to P's end (Apr 1): 1 x 499.00 agreed; no
    agreed price: the base price 25.00; a February item (a backdated order) too. Not owed: a subscription
    product, a cancelled order, an order effective in N, an order effective in January. An account settled from
    its current period (resettle false) looks from P's start (Mar 1): not the February item."""
    _billed_account_1(con, resettle=resettle)
    given(con,
          orders=("order_id BIGINT, order_number VARCHAR, account_id BIGINT, status VARCHAR, effective_date DATE",
                  [(500, "O500", 1, "CONFIRMED", mar(20)), (501, "O501", 1, "CANCELLED", mar(21)),
                   (502, "O502", 1, "CONFIRMED", apr(2)), (503, "O503", 1, "CONFIRMED", feb(3)),
                   (504, "O504", 1, "CONFIRMED", jan(20))]),
          order_items=("order_item_id BIGINT, order_id BIGINT, product_id BIGINT, plan_id BIGINT, subscription_id BIGINT, "
                       "quantity INTEGER, unit_price DECIMAL(38,10)",
                       [(1, 500, 20, None, 1, 1, "499.00"), (2, 500, 21, None, 1, 1, None), (3, 500, 10, 100, 1, 1, None),
                        (4, 501, 20, None, None, 1, "499.00"), (5, 502, 21, None, None, 2, "20.00"),
                        (6, 503, 22, None, None, 2, "333.333"), (7, 504, 20, None, None, 1, "499.00")]),
          products=("product_id BIGINT, sku VARCHAR, name VARCHAR, product_type VARCHAR, base_price DECIMAL(38,10)",
                    [(10, "SKU10", "Mobile Basic", "SUBSCRIPTION", "29.99"), (20, "SKU20", "Phone X", "ONE_TIME", "499.00"),
                     (21, "SKU21", "Activation fee", "ONE_TIME", "25.00"), (22, "SKU22", "Router", "ONE_TIME", "300.00")]))
    assert rows(con, lines.one_time_owed("orders", "order_items", "products"),
                "order_item_id, charge_code, description, effective_date, quantity, unit_price") == Counter([
        (1, "SKU20", "Phone X (order O500)", mar(20), D(1), D("499.00")),
        (2, "SKU21", "Activation fee (order O500)", mar(20), D(1), D("25.00")),
        (6, "SKU22", "Router (order O503)", feb(3), D(2), D("333.333"))][:3 if resettle else 2])


def test_one_time_issued(con):
    """Net issued per item (issued_lines holds those looked at): item 7 charged once (line O7); item 8 charged
    then credited: 0; a usage line with the same source_ref is not an item."""
    given(con, issued_lines=("line_id VARCHAR, billing_month DATE, account_id BIGINT, line_type VARCHAR, source_ref VARCHAR, "
                             "service_start DATE",
                             [("O7", feb(1), 1, "ONE_TIME", "7", feb(3)), ("O8", feb(1), 1, "ONE_TIME", "8", feb(5)),
                              ("C8", mar(1), 1, "ONE_TIME_CREDIT", "8", feb(5)), ("U1", feb(1), 1, "USAGE", "7", feb(1))]))
    assert rows(con, lines.one_time_issued(), "source_ref, net_issued, latest_line_id") == Counter([("7", 1, "O7"), ("8", 0, "O8")])


def test_one_time_lines(con):
    """Item 1 (March) owed, not issued: ONE_TIME 499.00 at the current tax; item 6 (February, a backdated order)
    owed, not issued: ONE_TIME of February, BACKDATED_CHANGE; item 2 owed and issued: nothing; item 7 issued
    (document INV-1, line O7: 300.00 with its tax at 19 %) and no longer owed (its order failed payment):
    ONE_TIME_CREDIT, the line negated, ORDER_REVERSED."""
    _billed_account_1(con)
    owed = ("order_item_id BIGINT, account_id BIGINT, subscription_id BIGINT, product_id BIGINT, plan_id BIGINT, "
            "charge_code VARCHAR, description VARCHAR, effective_date DATE, quantity DECIMAL(38,10), unit_price DECIMAL(38,10)")
    given(con,
          one_time_owed=(owed, [(1, 1, 1, 20, None, "SKU20", "Phone X (order O500)", mar(20), 1, "499.00"),
                                (2, 1, 1, 21, None, "SKU21", "Activation fee (order O500)", mar(20), 1, "25.00"),
                                (6, 1, None, 22, None, "SKU22", "Router (order O503)", feb(3), 2, "333.333")]),
          one_time_issued=("source_ref VARCHAR, net_issued INTEGER, latest_line_id VARCHAR", [("2", 1, "O2"), ("7", 1, "O7")]),
          issued_lines=(ISSUED_LINE, [
              dict(line_id="O7", billing_month=feb(1), account_id=1, line_type="ONE_TIME", product_id=20, charge_code="SKU20",
                   service_start=feb(5), service_end=feb(6), quantity="1", unit_price="300.00", amount_precise="300",
                   amount="300.00", discount_amount="0", coupon_amount="0", tax_jurisdiction="DE", tax_name="VAT",
                   tax_rate="0.19", tax_point=mar(1), source_ref="7", document_number="INV-1",
                   description="Phone X (order O7)")]),
          voided_lines=("line_type VARCHAR, source_ref VARCHAR", []))
    assert rows(con, lines.one_time_lines(MARCH),
                "source_ref, line_type, description, service_month, amount_precise, tax_rate, tax_point, reference_line_id, "
                "reference_document_number, adjustment_reason") == Counter([
        ("1", "ONE_TIME", "Phone X (order O500)", mar(1), D("499.00"), D("0.0725"), apr(1), None, None, None),
        ("6", "ONE_TIME", "Router (order O503)", feb(1), D("666.666"), D("0.0725"), apr(1), None, None, "BACKDATED_CHANGE"),
        ("7", "ONE_TIME_CREDIT", "Credit: Phone X (order O7)", feb(1), D("-300"), D("0.19"), mar(1), "O7", "INV-1",
         "ORDER_REVERSED")])


# rounding, discounts, tax, documents, the rows -------------------------------------------------

def test_rounded_lines(con):
    """Half away from zero to the minor unit: 11.6090322581 -> 11.61; 44.985 -> 44.99; -21.2832258065 -> -21.28;
    -0.005 -> -0.01; JPY 1234.5 -> 1235; KWD 1.2345 -> 1.235; 666.666 -> 666.67. A usage line keeps the rated
    amount (1.01, not round(1.004) = 1.00). Every line takes its account's invoice draft id."""
    columns = "account_id BIGINT, source_ref VARCHAR, amount_precise DECIMAL(38,10), currency VARCHAR"
    given(con,
          recurring_lines=(columns, [(1, "a", "11.6090322581", "USD"), (1, "b", "44.985", "USD"),
                                     (1, "c", "-21.2832258065", "USD"), (1, "d", "-0.005", "USD"), (1, "e", "1234.5", "JPY")]),
          usage_lines=(f"{columns}, amount DECIMAL(18,4), d_amount DECIMAL(18,4), d_amount_precise DECIMAL(38,10), "
                       "was_issued BOOLEAN", [(1, "u", "1.004", "USD", "1.01", "1.01", "1.004", False)]),
          one_time_lines=(columns, [(1, "o", "666.666", "USD"), (1, "k", "1.2345", "KWD")]),
          billed_accounts=("account_id BIGINT, invoice_id VARCHAR", [(1, "INV-A0001-20250401")]))
    assert rows(con, lines.rounded_lines(), "source_ref, amount, invoice_id") == Counter([
        (ref, D(a), "INV-A0001-20250401") for ref, a in [("a", "11.61"), ("b", "44.99"), ("c", "-21.28"), ("d", "-0.01"),
                                                         ("e", "1235"), ("u", "1.01"), ("o", "666.67"), ("k", "1.235")]])


def test_discounted_lines(con):
    """Bundle 10 %: 29.99 -> -round(2.999) = -3.00; a credit -21.28 -> -round(-2.128) = +2.13; 0.05 -> -round(0.005)
    = -0.01; no bundle: 0; a credit of a whole line reverses its discount exactly (+3.00, not -round(-2.999) = 3.00
    by chance: +2.99 given as the reversed discount stays +2.99)."""
    given(con, rounded_lines=("source_ref VARCHAR, amount DECIMAL(18,4), discount_pct DECIMAL(9,6), "
                              "reversed_discount DECIMAL(18,4), currency VARCHAR",
                              [("a", "29.99", "0.10", None, "USD"), ("c", "-21.28", "0.10", None, "USD"),
                               ("s", "0.05", "0.10", None, "USD"), ("u", "12.35", None, None, "USD"),
                               ("w", "-29.99", "0.10", "2.99", "USD")]))
    assert rows(con, lines.discounted_lines(), "source_ref, discount_amount") == Counter([
        ("a", D("-3.00")), ("c", D("2.13")), ("s", D("-0.01")), ("u", D(0)), ("w", D("2.99"))])


def test_taxed_lines(con):
    """net = amount + discount + coupon; tax = round(net x rate); total = net + tax:
    29.99 - 3.00 - 2.70 = 24.29, x 0.0725 = 1.761025 -> 1.76, 26.05; -21.28 + 2.13 = -19.15, x 0.0725 = -1.388375
    -> -1.39, -20.54; 29.99 x 0.19 = 5.6981 -> 5.70, 35.69; no rate: rate stays NULL, tax 0;
    999,999,999,999.99 x 0.0725 = 72,499,999,999.999275 -> 72,500,000,000.00 (no overflow)."""
    given(con, coupon_allocations=(
        "source_ref VARCHAR, amount DECIMAL(18,4), discount_amount DECIMAL(18,4), coupon_amount DECIMAL(18,4), "
        "tax_rate DECIMAL(9,6), currency VARCHAR",
        [("a", "29.99", "-3.00", "-2.70", "0.0725", "USD"), ("c", "-21.28", "2.13", "0", "0.0725", "USD"),
         ("de", "29.99", "0", "0", "0.19", "USD"), ("fr", "29.99", "0", "0", None, "USD"),
         ("big", "999999999999.99", "0", "0", "0.0725", "USD")]))
    assert rows(con, lines.taxed_lines(), "source_ref, net_amount, tax_rate, tax_amount, total_amount") == Counter([
        ("a", D("24.29"), D("0.0725"), D("1.76"), D("26.05")), ("c", D("-19.15"), D("0.0725"), D("-1.39"), D("-20.54")),
        ("de", D("29.99"), D("0.19"), D("5.70"), D("35.69")), ("fr", D("29.99"), None, D(0), D("29.99")),
        ("big", D("999999999999.99"), D("0.0725"), D("72500000000.00"), D("1072499999999.99"))])


def test_routed_lines(con):
    """Account 1 (a business: takes credit notes): the credit of an issued line goes to CN-1, the charge stays on
    INV-1. Account 2 (an individual): its credit stays on the invoice, which would total 5.00 - 20.00 = -15.00 <
    0: the whole draft goes to CN-2. Account 3: a line beyond the lookback has no document."""
    given(con,
          taxed_lines=("account_id BIGINT, invoice_id VARCHAR, line_type VARCHAR, amount DECIMAL(18,4), "
                       "total_amount DECIMAL(18,4), reference_line_id VARCHAR, beyond_lookback BOOLEAN, lineage VARCHAR",
                       [(1, "INV-1", "RECURRING", "29.99", "29.99", None, False, "a"),
                        (1, "INV-1", "RECURRING_CREDIT", "-10.00", "-10.00", "L1", False, "b"),
                        (2, "INV-2", "RECURRING", "5.00", "5.00", None, False, "c"),
                        (2, "INV-2", "ONE_TIME_CREDIT", "-20.00", "-20.00", "L2", False, "d"),
                        (3, "INV-3", "RECURRING_CREDIT", "-5.00", "-5.00", "L3", True, "e")]),
          billed_accounts=("account_id BIGINT, credit_note_id VARCHAR, takes_credit_notes BOOLEAN",
                           [(1, "CN-1", True), (2, "CN-2", False), (3, "CN-3", False)]))
    assert rows(con, lines.routed_lines(), "lineage, invoice_id") == Counter([
        ("a", "INV-1"), ("b", "CN-1"), ("c", "CN-2"), ("d", "CN-2"), ("e", None)])


ROUTED_LINES = ("invoice_id VARCHAR, lineage VARCHAR, account_id BIGINT, subscription_id BIGINT, line_type VARCHAR, "
                "product_id BIGINT, plan_id BIGINT, price_id BIGINT, charge_code VARCHAR, description VARCHAR, "
                "service_start DATE, service_end DATE, service_month DATE, quantity DECIMAL(38,10), unit_price DECIMAL(38,10), "
                "days INTEGER, period_days INTEGER, amount_precise DECIMAL(38,10), amount DECIMAL(18,4), "
                "discount_pct DECIMAL(9,6), discount_amount DECIMAL(18,4), coupon_id BIGINT, coupon_amount DECIMAL(18,4), "
                "net_amount DECIMAL(18,4), tax_jurisdiction VARCHAR, tax_name VARCHAR, tax_rate DECIMAL(9,6), "
                "tax_point DATE, tax_amount DECIMAL(18,4), total_amount DECIMAL(18,4), currency VARCHAR, "
                "source_ref VARCHAR, reference_line_id VARCHAR, reference_document_number VARCHAR, "
                "adjustment_reason VARCHAR, beyond_lookback BOOLEAN")


def test_invoice_line_rows(con):
    """The contract's columns; line_id = md5(invoice_id | lineage); ordered by account, line type, subscription
    (none last), service start; a line beyond the lookback is not a draft line (settled_line_rows keeps it)."""
    a1, a2 = "INV-A0001-20250401", "INV-A0002-20250401"
    given_lines = [(a2, "USAGE|r9", 2, 5, "USAGE", mar(1), False), (a1, "RECURRING|apr", 1, 1, "RECURRING", apr(1), False),
                   (a1, "RECURRING|mar", 1, 1, "RECURRING", mar(20), False), (a1, "ONE_TIME|6", 1, None, "ONE_TIME", mar(20), False),
                   (a1, "ONE_TIME|7", 1, 3, "ONE_TIME", mar(20), False), (None, "RECURRING|old", 1, 1, "RECURRING", jan(1), True)]
    given(con, routed_lines=(ROUTED_LINES, [
        dict(invoice_id=i, lineage=lineage, account_id=a, subscription_id=s, line_type=t, service_start=start,
             amount="1.00", discount_amount="0", coupon_amount="0", net_amount="1.00", tax_amount="0", total_amount="1.00",
             currency="USD", beyond_lookback=beyond)
        for i, lineage, a, s, t, start, beyond in given_lines]))
    rel = con.sql(lines.invoice_line_rows(MARCH))
    assert rel.columns == INVOICE_LINE_COLUMNS
    got = [(r[0], r[2], r[3], r[5], r[4]) for r in rel.fetchall()]  # line_id, billing_month, account, line type, sub

    def line_id(invoice, lineage):
        return hashlib.md5(f"{invoice}|{lineage}".encode()).hexdigest()
    assert got == [(line_id(a1, "ONE_TIME|7"), mar(1), 1, "ONE_TIME", 3), (line_id(a1, "ONE_TIME|6"), mar(1), 1, "ONE_TIME", None),
                   (line_id(a1, "RECURRING|mar"), mar(1), 1, "RECURRING", 1),
                   (line_id(a1, "RECURRING|apr"), mar(1), 1, "RECURRING", 1),
                   (line_id(a2, "USAGE|r9"), mar(1), 2, "USAGE", 5)]
    settled = con.sql(lines.settled_line_rows(MARCH))
    assert settled.columns == INVOICE_LINE_COLUMNS + ["beyond_lookback"]
    assert [(r[1], r[-1]) for r in settled.fetchall() if r[-1]] == [(None, True)]


# headers ---------------------------------------------------------------------------------------

def test_invoice_totals(con):
    """INV-1: 29.99 - 21.28 = 8.71; discounts -3.00 + 2.13 = -0.87; coupon -1.00; net 25.99 - 19.15 = 6.84;
    tax 1.88 - 1.39 = 0.49. February's line is another month."""
    given(con, lines=("invoice_id VARCHAR, account_id BIGINT, billing_month DATE, amount DECIMAL(18,4), "
                      "discount_amount DECIMAL(18,4), coupon_amount DECIMAL(18,4), net_amount DECIMAL(18,4), "
                      "tax_amount DECIMAL(18,4)",
                      [("INV-1", 1, mar(1), "29.99", "-3.00", "-1.00", "25.99", "1.88"),
                       ("INV-1", 1, mar(1), "-21.28", "2.13", "0", "-19.15", "-1.39"),
                       ("INV-2", 2, mar(1), "10.00", "0", "0", "10.00", "0.50"),
                       ("INV-0", 1, feb(1), "5.00", "0", "0", "5.00", "0")]))
    assert rows(con, headers.invoice_totals(MARCH, "lines"), "*") == Counter([
        ("INV-1", 1, 2, D("8.71"), D("-0.87"), D("-1.00"), D("6.84"), D("0.49")),
        ("INV-2", 2, 1, D("10.00"), D(0), D(0), D("10.00"), D("0.50"))])


def test_invoice_header_rows(con):
    """Draft numbers by account and id; invoice date = tax point = period end; due = period end + terms (none:
    0 days; a credit note: its date); total = 6.84 + 0.49 = 7.33, 10.00 + 0.50 = 10.50, -5.00."""
    given(con,
          invoice_totals=("invoice_id VARCHAR, account_id BIGINT, line_count BIGINT, subtotal DECIMAL(38,4), "
                          "discount_total DECIMAL(38,4), coupon_total DECIMAL(38,4), net_total DECIMAL(38,4), "
                          "tax_total DECIMAL(38,4)",
                          [("INV-A0002-20250315", 2, 1, "10.00", "0", "0", "10.00", "0.50"),
                           ("INV-A0001-20250401", 1, 2, "8.71", "-0.87", "-1.00", "6.84", "0.49"),
                           ("CN-A0001-20250401", 1, 1, "-5.00", "0", "0", "-5.00", "0")]),
          billed_accounts=("account_id BIGINT, customer_id BIGINT, period_start DATE, period_end DATE, "
                           "payment_terms_days INTEGER, currency VARCHAR, credit_note_id VARCHAR, tax_point DATE",
                           [(1, 11, mar(1), apr(1), 14, "USD", "CN-A0001-20250401", apr(1)),
                            (2, 12, feb(15), mar(15), None, "EUR", "CN-A0002-20250315", mar(15))]))
    assert con.sql(headers.invoice_header_rows(MARCH)).fetchall() == [
        ("CN-A0001-20250401", "D-202503-000001", 1, 11, mar(1), mar(1), apr(1), apr(1), apr(1), "USD", "DRAFT", 1,
         D("-5.00"), D(0), D("-5.00"), D(0), D("-5.00"), "CREDIT_NOTE", D(0), apr(1)),
        ("INV-A0001-20250401", "D-202503-000002", 1, 11, mar(1), mar(1), apr(1), apr(1), apr(15), "USD", "DRAFT", 2,
         D("8.71"), D("-0.87"), D("6.84"), D("0.49"), D("7.33"), "INVOICE", D("-1.00"), apr(1)),
        ("INV-A0002-20250315", "D-202503-000003", 2, 12, mar(1), feb(15), mar(15), mar(15), mar(15), "EUR", "DRAFT", 1,
         D("10.00"), D(0), D("10.00"), D("0.50"), D("10.50"), "INVOICE", D(0), mar(15)),
    ]
