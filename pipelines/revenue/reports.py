"""Revenue reports over the books, and their reconciliations with billing and cash (docs/journals.md).

Plain DuckDB SQL, no Dagster. Each ``*_rows`` function returns the SELECT of its table's rows in contract column
order: ``revenue.contract_balances`` (from the obligations, the schedule and the posted revenue),
``revenue.trial_balance`` and ``revenue.deferred_rollforward`` (from the posted ``revenue.journal_lines`` and the
written ``revenue.open_journal_lines``; the roll-forward also reads the written ``revenue.contract_balances``),
``revenue.waterfall`` (obligations by billed month, revenue by the month it is booked in). The reconciliations
return the offending rows (an empty list when the books agree) for the revenue asset checks.
"""

from __future__ import annotations

from datetime import date

import duckdb

from pipelines.invoicing.engine import with_steps
from pipelines.receivables.balances import DOCUMENT_STATUS_ROWS, STATE_STEPS
from pipelines.revenue.journals import (
    JOURNAL_COLUMNS,
    REVENUE_ACCOUNT,
    calendar_steps,
    contract_position_steps,
)
from pipelines.revenue.obligations import is_estimate

OPEN_JOURNAL = "revenue.open_journal_lines"
BOOK_COLUMNS = ", ".join(c for c in JOURNAL_COLUMNS if c != "run_id")


def books(open_journal: str = OPEN_JOURNAL) -> str:
    """Every journal line: the posted (closed months) and the provisional (open months)."""
    return f"SELECT {BOOK_COLUMNS} FROM revenue.journal_lines UNION ALL SELECT {BOOK_COLUMNS} FROM {open_journal}"


BILLED_MONTHS = f"""
    SELECT obligation_id, currency, billed_month, billed_amount, allocated_amount FROM revenue.performance_obligations
    UNION ALL
    SELECT obligation_id, any_value(currency), min(concerns_month), 0, 0 FROM revenue.recognized
    WHERE {is_estimate()} AND obligation_id NOT IN (SELECT obligation_id FROM revenue.performance_obligations)
    GROUP BY obligation_id"""
"""Every obligation with revenue, its billed month, billed and allocated amounts: the obligations, and the
estimates no longer obligations (invoiced, or no longer owed) that closed months posted revenue for (booked
back by the schedule, or already posted back): billed and allocated 0, billed in the first month they recognized in
(where their recognition starts)."""

CLOSED_BALANCES = """
    SELECT c.accounting_month, t.currency,
           CAST(json_extract_string(c.totals, '$."' || t.currency || '".deferred_revenue') AS DECIMAL(18,4)) AS deferred,
           CAST(json_extract_string(c.totals, '$."' || t.currency || '".unbilled_ar') AS DECIMAL(18,4)) AS unbilled,
           CAST(json_extract_string(c.totals, '$."' || t.currency || '".contract_assets') AS DECIMAL(18,4)) AS asset
    FROM revenue.closed_months c, LATERAL (SELECT unnest(json_keys(c.totals)) AS currency) t"""
"""Per closed month and currency, the contracts' balances as posted: deferred revenue, unbilled AR and contract
assets at its month end as revenue.closed_months recorded them when it closed (pipelines/revenue/close.py
BALANCE_TOTALS), exact decimals."""

MONTH_STATUS = "CASE WHEN accounting_month < (SELECT first_open FROM bounds) THEN 'CLOSED' ELSE 'OPEN' END AS month_status"
"""CLOSED before the first open month (posted in revenue.closed_months), else OPEN."""


def contract_balance_rows(con: duckdb.DuckDBPyConnection, first_open: date | None) -> str:
    """SELECT of ``revenue.contract_balances``: each contract's position at every month end of the books, omitting
    zero positions of contracts that did not move in the month."""
    return with_steps(contract_position_steps(con, first_open), """
        SELECT accounting_month, contract_id, account_id, currency, billed_to_date::DECIMAL(18,4) AS billed_to_date,
               recognized_to_date::DECIMAL(18,4) AS recognized_to_date,
               contract_liability::DECIMAL(18,4) AS contract_liability, unbilled_ar::DECIMAL(18,4) AS unbilled_ar,
               contract_asset::DECIMAL(18,4) AS contract_asset
        FROM contract_positions WHERE moved OR billed_to_date <> recognized_to_date
        ORDER BY accounting_month, contract_id""")


def _account_months(open_journal: str) -> dict[str, str]:
    """``book_lines`` and ``account_movements``: per month of the journal, currency and account seen by then, the
    month's debits and credits (0 when it did not move) and the balance through its end (debit positive)."""
    return {
        "book_lines": books(open_journal),
        "journal_months": """
            SELECT unnest(generate_series(min(accounting_month), max(accounting_month), INTERVAL 1 MONTH))::DATE
                   AS accounting_month
            FROM book_lines""",
        "account_movements": """
            SELECT m.accounting_month, a.currency, a.account, a.account_type,
                   coalesce(sum(l.debit), 0) AS debits, coalesce(sum(l.credit), 0) AS credits
            FROM (SELECT currency, account, any_value(account_type) AS account_type, min(accounting_month) AS first_month
                  FROM book_lines GROUP BY ALL) a
            JOIN journal_months m ON m.accounting_month >= a.first_month
            LEFT JOIN book_lines l USING (accounting_month, currency, account)
            GROUP BY ALL""",
    }


def trial_balance_rows(con: duckdb.DuckDBPyConnection, first_open: date | None, open_journal: str = OPEN_JOURNAL) -> str:
    """SELECT of ``revenue.trial_balance``: per month, currency and account, opening, debits, credits, closing."""
    steps = {**calendar_steps(first_open), **_account_months(open_journal)}
    return with_steps(steps, f"""
        SELECT accounting_month, currency, account, account_type,
               (sum(debits - credits) OVER w - (debits - credits))::DECIMAL(18,4) AS opening_balance,
               debits::DECIMAL(18,4) AS debits, credits::DECIMAL(18,4) AS credits,
               sum(debits - credits) OVER w::DECIMAL(18,4) AS closing_balance, {MONTH_STATUS}
        FROM account_movements
        WINDOW w AS (PARTITION BY currency, account ORDER BY accounting_month ROWS UNBOUNDED PRECEDING)
        ORDER BY accounting_month, currency, account""")


def rollforward_rows(con: duckdb.DuckDBPyConnection, first_open: date | None, open_journal: str = OPEN_JOURNAL,
                     contract_balances: str = "revenue.contract_balances") -> str:
    """SELECT of ``revenue.deferred_rollforward``: per month and currency, the journal's flows through net deferred
    revenue (DEFERRED_REVENUE - UNBILLED_AR - CONTRACT_ASSET) beside the contracts' month-end balances."""
    steps = {
        **calendar_steps(first_open),
        **_account_months(open_journal),
        "flows": f"""
            SELECT m.accounting_month, m.currency,
                   coalesce(sum(l.credit - l.debit) FILTER (WHERE l.account = 'DEFERRED_REVENUE'
                                                             AND l.entry_type IN ('BILLING', 'VOID')), 0) AS billings,
                   coalesce(sum(l.credit - l.debit) FILTER (WHERE {REVENUE_ACCOUNT}
                                                             AND l.concerns_month >= l.accounting_month), 0) AS recognized,
                   coalesce(sum(l.credit - l.debit) FILTER (WHERE {REVENUE_ACCOUNT}
                                                             AND l.concerns_month < l.accounting_month), 0) AS corrections
            FROM (SELECT DISTINCT accounting_month, currency FROM account_movements) m
            LEFT JOIN book_lines l USING (accounting_month, currency)
            GROUP BY ALL""",
        "balances": f"""
            SELECT accounting_month, currency, sum(contract_liability) AS deferred_revenue, sum(unbilled_ar) AS unbilled_ar,
                   sum(contract_asset) AS contract_assets
            FROM {contract_balances} GROUP BY ALL""",
    }
    return with_steps(steps, f"""
        SELECT accounting_month, currency,
               (sum(billings - recognized - corrections) OVER w - (billings - recognized - corrections))::DECIMAL(18,4)
                   AS opening_net_deferred,
               billings::DECIMAL(18,4) AS billings, recognized::DECIMAL(18,4) AS recognized,
               corrections::DECIMAL(18,4) AS corrections,
               sum(billings - recognized - corrections) OVER w::DECIMAL(18,4) AS closing_net_deferred,
               coalesce(b.deferred_revenue, 0)::DECIMAL(18,4) AS deferred_revenue,
               coalesce(b.unbilled_ar, 0)::DECIMAL(18,4) AS unbilled_ar,
               coalesce(b.contract_assets, 0)::DECIMAL(18,4) AS contract_assets, {MONTH_STATUS}
        FROM flows f LEFT JOIN balances b USING (accounting_month, currency)
        WINDOW w AS (PARTITION BY currency ORDER BY accounting_month ROWS UNBOUNDED PRECEDING)
        ORDER BY accounting_month, currency""")


def waterfall_rows(con: duckdb.DuckDBPyConnection, first_open: date | None) -> str:
    """SELECT of ``revenue.waterfall``: revenue of the obligations billed in each month by the month it is booked in
    (posted, open, or scheduled after the latest month with activity)."""
    steps = {
        **calendar_steps(first_open),
        "booked": """
            SELECT obligation_id, accounting_month AS recognition_month, currency, amount FROM revenue.recognized
            UNION ALL
            SELECT obligation_id, booked_month, currency, open_amount FROM revenue.schedule WHERE open_amount <> 0""",
    }
    return with_steps(steps, f"""
        SELECT o.billed_month, r.recognition_month, r.currency, sum(r.amount)::DECIMAL(18,4) AS amount,
               r.recognition_month > coalesce((SELECT last_month FROM bounds), DATE '0001-01-01') AS is_scheduled
        FROM booked r JOIN ({BILLED_MONTHS}) o USING (obligation_id)
        GROUP BY ALL HAVING sum(r.amount) <> 0
        ORDER BY 1, 2, 3""")


# Reconciliations: each returns the offending rows; an empty list is a pass.


def unbalanced_entries(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Entries (posted or open) whose debits differ from their credits within a month and currency:
    (entry_id, accounting_month, currency, debits, credits). So every month and currency balances too."""
    return con.execute(f"""
        SELECT entry_id, accounting_month, currency, sum(debit) AS debits, sum(credit) AS credits
        FROM ({books()}) GROUP BY ALL HAVING sum(debit) <> sum(credit) ORDER BY 2, 3, 1""").fetchall()


def trial_balance_breaks(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Months and currencies of revenue.trial_balance whose closing balances do not sum to 0, whose debits differ from
    their credits, or with an account whose closing is not opening + debits - credits or whose opening is not the
    previous month's closing: (accounting_month, currency, Σ closing, Σ debits - Σ credits, accounts broken)."""
    return con.execute("""
        SELECT accounting_month, currency, sum(closing_balance), sum(debits) - sum(credits),
               count(*) FILTER (WHERE closing_balance <> opening_balance + debits - credits
                                   OR opening_balance <> coalesce(previous_closing, 0)) AS accounts_broken
        FROM (SELECT *, lag(closing_balance) OVER (PARTITION BY currency, account ORDER BY accounting_month) AS previous_closing
              FROM revenue.trial_balance)
        GROUP BY ALL
        HAVING sum(closing_balance) <> 0 OR sum(debits) <> sum(credits) OR accounts_broken > 0
        ORDER BY 1, 2""").fetchall()


def _journal_balance(account: str, sign: int) -> str:
    """Per currency, ``sign`` x (debits - credits) of ``account`` over every journal line (posted and open)."""
    return f"""SELECT currency, {sign} * sum(debit - credit) AS journal FROM ({books()})
               WHERE account = '{account}' GROUP BY currency"""


def _mismatches(con: duckdb.DuckDBPyConnection, journal: str, expected: str) -> list[tuple]:
    return con.execute(f"""
        SELECT currency, coalesce(j.journal, 0) AS journal, coalesce(e.expected, 0) AS expected
        FROM ({journal}) j FULL JOIN ({expected}) e USING (currency)
        WHERE coalesce(j.journal, 0) <> coalesce(e.expected, 0) ORDER BY 1""").fetchall()


def ar_mismatches(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Currencies whose AR balance in the journal differs from Σ open_amount of billing.document_status's rule over every
    document (invoices' open amounts plus credit notes' unapplied, negative, amounts; account credit is
    CUSTOMER_CREDIT's), computed from the ledger now (the written table is only as fresh as the last
    apply_payments run): (currency, journal, billing)."""
    status = with_steps(STATE_STEPS, DOCUMENT_STATUS_ROWS)
    return _mismatches(con, _journal_balance("AR", 1),
                       f"SELECT currency, sum(open_amount) AS expected FROM ({status}) GROUP BY currency")


def cash_mismatches(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Currencies whose CASH balance differs from the payments applied less those reversed (ledger.payment_events:
    APPLIED - REFUNDED amounts): (currency, journal, payments)."""
    return _mismatches(con, _journal_balance("CASH", 1), """
        SELECT currency, coalesce(sum(amount) FILTER (WHERE outcome = 'APPLIED'), 0)
                         - coalesce(sum(amount) FILTER (WHERE outcome = 'REFUNDED'), 0) AS expected
        FROM ledger.payment_events GROUP BY currency""")


def customer_credit_mismatches(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Currencies whose CUSTOMER_CREDIT balance (a credit) differs from the account credit of billing.account_balances's
    rule (Σ to_account_credit of ledger.payment_applications): (currency, journal, billing)."""
    return _mismatches(con, _journal_balance("CUSTOMER_CREDIT", -1), """
        SELECT currency, sum(to_account_credit) AS expected FROM ledger.payment_applications GROUP BY currency""")


def rollforward_breaks(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Months and currencies of revenue.deferred_rollforward where opening + billings - recognized - corrections is
    not the closing, the opening is not the previous month's closing, or the closing net deferred is not
    deferred revenue - unbilled AR - contract assets of the contracts: the offending rows."""
    return con.execute("""
        SELECT accounting_month, currency, opening_net_deferred, billings, recognized, corrections, closing_net_deferred,
               deferred_revenue, unbilled_ar, contract_assets
        FROM (SELECT *, lag(closing_net_deferred, 1, 0) OVER (PARTITION BY currency ORDER BY accounting_month) AS previous
              FROM revenue.deferred_rollforward)
        WHERE closing_net_deferred <> opening_net_deferred + billings - recognized - corrections
           OR opening_net_deferred <> previous
           OR closing_net_deferred <> deferred_revenue - unbilled_ar - contract_assets
        ORDER BY 1, 2""").fetchall()


def deferred_mismatches(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Month ends where the books disagree with the contracts and the schedule: (accounting_month, currency, measure,
    journal, expected).

    * DEFERRED_REVENUE (a credit), UNBILLED_AR, CONTRACT_ASSET closing balances of revenue.trial_balance =
      Σ contract_liability, Σ unbilled_ar, Σ contract_asset of revenue.contract_balances for an open month; for a
      closed month, the contracts' balances as posted (:data:`CLOSED_BALANCES`: what it recorded when it closed, after
      this check compared them with the contracts then). A closed month is immutable: when later facts re-derive its
      contracts' positions (an order failing payment after the close takes its issued lines to the account's
      contract, a commitment's term changed), the recomputed revenue.contract_balances of that month differ from the
      posted books and the difference is booked in the first open month by its CONTRACT_BALANCE entry (the change
      since the posted balances), never compared back into the closed month;
    * NET_DEFERRED = DEFERRED_REVENUE - UNBILLED_AR - CONTRACT_ASSET = Σ over the obligations billed by the month
      end of (billed - allocated + what their schedule has not booked by then: open amounts booked later and
      posted revenue of later months) - revenue booked by then on obligations billed later; an estimate
      replaced by its invoice (or no longer owed) counts as billed and allocated 0 from its first month
      (:data:`BILLED_MONTHS`), its posted revenue and the schedule's reversal of it netting to 0.
    """
    return con.execute(f"""
        WITH journal AS (
            SELECT accounting_month, currency,
                   -coalesce(sum(closing_balance) FILTER (WHERE account = 'DEFERRED_REVENUE'), 0) AS deferred,
                   coalesce(sum(closing_balance) FILTER (WHERE account = 'UNBILLED_AR'), 0) AS unbilled,
                   coalesce(sum(closing_balance) FILTER (WHERE account = 'CONTRACT_ASSET'), 0) AS asset
            FROM revenue.trial_balance GROUP BY ALL
        ), contracts AS (
            SELECT accounting_month, currency, sum(contract_liability) AS deferred, sum(unbilled_ar) AS unbilled,
                   sum(contract_asset) AS asset
            FROM revenue.contract_balances
            WHERE accounting_month NOT IN (SELECT accounting_month FROM revenue.closed_months)
            GROUP BY ALL
            UNION ALL
            SELECT accounting_month, currency, deferred, unbilled, asset FROM ({CLOSED_BALANCES})
        ), booked AS (
            SELECT obligation_id, accounting_month AS month, amount FROM revenue.recognized
            UNION ALL SELECT obligation_id, booked_month, open_amount FROM revenue.schedule
        ), allocation_part AS (
            SELECT j.accounting_month, j.currency, sum(o.billed_amount - o.allocated_amount) AS amount
            FROM journal j JOIN ({BILLED_MONTHS}) o
              ON o.currency = j.currency AND o.billed_month <= j.accounting_month
            GROUP BY ALL
        ), booked_part AS (
            SELECT j.accounting_month, j.currency,
                   sum(CASE WHEN o.billed_month <= j.accounting_month AND b.month > j.accounting_month THEN b.amount
                            WHEN o.billed_month > j.accounting_month AND b.month <= j.accounting_month THEN -b.amount
                            ELSE 0 END) AS amount
            FROM booked b JOIN ({BILLED_MONTHS}) o USING (obligation_id)
            JOIN journal j ON j.currency = o.currency
            GROUP BY ALL
        ), compared AS (
            SELECT accounting_month, currency, x.measure, x.journal, x.expected
            FROM journal j FULL JOIN contracts c USING (accounting_month, currency)
            LEFT JOIN allocation_part a USING (accounting_month, currency)
            LEFT JOIN booked_part b USING (accounting_month, currency)
            CROSS JOIN LATERAL (VALUES
                ('DEFERRED_REVENUE', j.deferred, c.deferred), ('UNBILLED_AR', j.unbilled, c.unbilled),
                ('CONTRACT_ASSET', j.asset, c.asset),
                ('NET_DEFERRED', j.deferred - j.unbilled - j.asset, coalesce(a.amount, 0) + coalesce(b.amount, 0))
            ) x(measure, journal, expected)
        )
        SELECT accounting_month, currency, measure, coalesce(journal, 0) AS journal, coalesce(expected, 0) AS expected
        FROM compared WHERE coalesce(journal, 0) <> coalesce(expected, 0) ORDER BY 1, 2, 3""").fetchall()
