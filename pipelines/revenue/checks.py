"""Checks of revenue recognition (docs/revenue.md "Checks"): each returns what is wrong, an empty list when nothing is.

The schedule and allocation checks read the derived tables as the last revenue run wrote them;
:func:`changed_closed_months` recomputes each closed month's hash (:func:`month_hashes`, the one ``close_month``
stores) from its posted rows. The journal's balance and its reconciliations with billing and cash are
:mod:`pipelines.revenue.reports`'s. :data:`CHECKS` names every check once: the
revenue assets run them as blocking asset checks, and ``close_month`` refuses to close while any fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import duckdb

from pipelines.ledger.finalize import canonical_text
from pipelines.revenue.obligations import is_estimate
from pipelines.revenue.reports import (ar_mismatches, cash_mismatches, customer_credit_mismatches, deferred_mismatches,
                                       rollforward_breaks, trial_balance_breaks, unbalanced_entries)
from warehouse.tables import TABLES

POSTED = ("revenue.recognized", "revenue.journal_lines")
"""The posted tables a closed month's hash covers."""


def posted_digests(table: str) -> str:
    """SELECT per accounting month of posted ``table``: its rows, and the sums of the two 64-bit halves of each row's
    sha256 over its canonical text (every contract column; see pipelines/ledger/finalize.py document_hash): streamed
    and independent of row order, and every row's text carries its key."""
    halves = [f"CAST(CAST(('0x' || substr(row_sha, {start}, 16)) AS UBIGINT) AS HUGEINT)" for start in (1, 17)]
    return f"""
    SELECT accounting_month, count(*) AS n, sum({halves[0]}) AS high, sum({halves[1]}) AS low
    FROM (SELECT p.accounting_month, sha256({canonical_text(table, TABLES[table].column_names, 'p')}) AS row_sha FROM {table} p)
    GROUP BY accounting_month"""


def month_hashes(months: str) -> str:
    """SELECT accounting_month, content_hash for each month of ``months`` (a relation with column accounting_month):
    sha256 of the row counts and digest sums (:func:`posted_digests`) of its rows in each of :data:`POSTED`, in
    order; a month without rows hashes '0|0|0|0|0|0'."""
    joins = "\n".join(f"LEFT JOIN ({posted_digests(t)}) t{n} USING (accounting_month)" for n, t in enumerate(POSTED))
    parts = ", ".join(f"coalesce(t{n}.{c}, 0)" for n in range(len(POSTED)) for c in ("n", "high", "low"))
    return f"SELECT m.accounting_month, sha256(concat_ws('|', {parts})) AS content_hash FROM {months} m {joins}"


def changed_closed_months(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Closed months whose posted rows no longer hash to the content hash stored when they closed (a row changed,
    added or removed), and posted rows of months that were never closed."""
    rows = con.execute(f"""
        SELECT strftime(c.accounting_month, '%Y-%m') || ': stored ' || c.content_hash || ', recomputed ' || h.content_hash
        FROM revenue.closed_months c JOIN ({month_hashes('revenue.closed_months')}) h USING (accounting_month)
        WHERE h.content_hash <> c.content_hash
        UNION ALL
        SELECT DISTINCT strftime(p.accounting_month, '%Y-%m') || ': posted rows in ' || p.source || ', month not closed'
        FROM (SELECT accounting_month, 'revenue.recognized' AS source FROM revenue.recognized
              UNION ALL SELECT accounting_month, 'revenue.journal_lines' FROM revenue.journal_lines) p
        ANTI JOIN revenue.closed_months c USING (accounting_month)
        ORDER BY 1""").fetchall()
    return [r[0] for r in rows]


def schedule_sum_mismatches(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Obligations whose schedule does not sum exactly to their allocated amount, and schedule rows of no obligation
    (but an estimate's that is no longer one: nothing scheduled, its posted revenue booked back)."""
    rows = con.execute(f"""
        SELECT o.obligation_id || ': allocated ' || o.allocated_amount || ', scheduled ' || coalesce(s.scheduled, 0)
        FROM revenue.performance_obligations o
        LEFT JOIN (SELECT obligation_id, sum(scheduled_amount) AS scheduled FROM revenue.schedule GROUP BY 1) s USING (obligation_id)
        WHERE coalesce(s.scheduled, 0) <> o.allocated_amount
        UNION ALL
        SELECT DISTINCT s.obligation_id || ': scheduled, not an obligation'
        FROM revenue.schedule s ANTI JOIN revenue.performance_obligations o USING (obligation_id)
        WHERE NOT ({is_estimate("s.obligation_id")} AND s.scheduled_amount = 0)
        ORDER BY 1""").fetchall()
    return [r[0] for r in rows]


def revenue_outside_service_period(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Revenue (scheduled, or posted by a closed month) in a month outside its obligation's window
    [recognition_start, recognition_end): before the month of its first day or after the month of its last day."""
    rows = con.execute("""
        WITH amounts AS (
            SELECT 'scheduled' AS what, obligation_id, service_month AS month, scheduled_amount AS amount FROM revenue.schedule
            UNION ALL
            SELECT 'posted ' || strftime(accounting_month, '%Y-%m'), obligation_id, concerns_month, amount FROM revenue.recognized
        )
        SELECT a.obligation_id || ': ' || a.what || ' ' || a.amount || ' in ' || strftime(a.month, '%Y-%m') || ', window ['
               || o.recognition_start || ', ' || o.recognition_end || ')'
        FROM amounts a JOIN revenue.performance_obligations o USING (obligation_id)
        WHERE a.amount <> 0 AND (a.month < date_trunc('month', o.recognition_start)
                                 OR a.month > date_trunc('month', o.recognition_end - INTERVAL 1 DAY))
        ORDER BY 1""").fetchall()
    return [r[0] for r in rows]


def allocation_sum_mismatches(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Allocation groups whose components' allocations do not sum exactly to the transaction price (goods + the
    committed service's allocation A for a TERM group: its service lines each carry the component's A), or whose
    components' prices do not make it up, or whose rows disagree on it; and obligations allocated another amount
    than their allocation row says."""
    rows = con.execute("""
        WITH components AS (
            SELECT allocation_group, component, min(transaction_price) AS price, max(transaction_price) AS price_max,
                   min(component_allocated) AS allocated, max(component_allocated) AS allocated_max,
                   min(component_price) AS brought, max(component_price) AS brought_max
            FROM revenue.allocations GROUP BY allocation_group, component
        )
        SELECT allocation_group || ': transaction price ' || min(price)
               || CASE WHEN min(price) <> max(price_max) THEN ' to ' || max(price_max) ELSE '' END
               || ', components priced ' || sum(brought) || ', allocated ' || sum(allocated)
               || CASE WHEN bool_or(allocated <> allocated_max OR brought <> brought_max)
                       THEN ' (rows of one component disagree)' ELSE '' END
        FROM components GROUP BY allocation_group
        HAVING sum(allocated) <> min(price) OR sum(brought) <> min(price) OR min(price) <> max(price_max)
            OR bool_or(allocated <> allocated_max OR brought <> brought_max)
        UNION ALL
        SELECT a.obligation_id || ': allocated ' || a.allocated_amount || ' in ' || a.allocation_group
               || ', the obligation ' || o.allocated_amount
        FROM revenue.allocations a JOIN revenue.performance_obligations o USING (obligation_id)
        WHERE a.allocated_amount <> o.allocated_amount
        ORDER BY 1""").fetchall()
    return [r[0] for r in rows]


class Check(NamedTuple):
    """A blocking asset check: the table it is reported on, what it asserts, and the function finding what is wrong."""

    table: str
    description: str
    problems: Callable[[duckdb.DuckDBPyConnection], list]


CHECKS: dict[str, Check] = {
    "schedules_sum_to_obligations": Check(
        "revenue.schedule", "Every obligation's schedule sums exactly to its allocated amount.", schedule_sum_mismatches),
    "allocations_sum_to_transaction_price": Check(
        "revenue.allocations", "Every allocation group's allocated amounts sum exactly to its transaction price.",
        allocation_sum_mismatches),
    "revenue_within_service_period": Check(
        "revenue.schedule", "No revenue, scheduled or posted, in a month outside its obligation's window [start, end).",
        revenue_outside_service_period),
    "entries_balance": Check(
        "revenue.open_journal_lines", "Every journal entry, posted or open, balances: its debits equal its credits.",
        unbalanced_entries),
    "trial_balance_balances": Check(
        "revenue.trial_balance", "Per month and currency the closing balances sum to 0 and debits equal credits; every "
        "account's closing = opening + debits - credits, its opening the month before's closing.", trial_balance_breaks),
    "ar_reconciles": Check(
        "revenue.trial_balance", "AR in the journal = the open amounts of billing.document_status, per currency.",
        ar_mismatches),
    "cash_reconciles": Check(
        "revenue.trial_balance", "CASH in the journal = payments applied less payments refunded, per currency.",
        cash_mismatches),
    "customer_credit_reconciles": Check(
        "revenue.trial_balance", "CUSTOMER_CREDIT in the journal = the account credit of billing.account_balances, per currency.",
        customer_credit_mismatches),
    "rollforward_holds": Check(
        "revenue.deferred_rollforward", "Every month and currency: opening + billings - recognized - corrections = closing, "
        "opening = the month before's closing, closing = deferred revenue - unbilled AR - contract assets.", rollforward_breaks),
    "deferred_reconciles": Check(
        "revenue.contract_balances", "At every month end the journal's deferred revenue, unbilled AR and contract assets "
        "equal the contracts' positions, and net deferred equals what the schedules have not yet booked.",
        deferred_mismatches),
    "closed_months_unchanged": Check(
        "revenue.trial_balance", "Every closed month's posted revenue and journal rows still hash to the content hash "
        "stored when it closed (revenue.closed_months), and no month has posted rows without being closed.",
        changed_closed_months),
}


def revenue_problems(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """What each check of :data:`CHECKS` finds wrong (every check named; empty lists when nothing is)."""
    return {name: [str(p) for p in check.problems(con)] for name, check in CHECKS.items()}
