"""Period close (docs/revenue.md "Period close"): the derived revenue tables, and closing an accounting month.

:func:`refresh` recomputes every derived revenue table from the ledger, the catalog and the closed months, in ONE
transaction (each table's rows from the engine: obligations, allocations, schedule, the open journal, contract
balances, roll-forward, waterfall, trial balance). :func:`close_month` refreshes them, refuses a month that cannot
be closed (:func:`close_refusal`), then appends in ONE transaction the month's revenue (:func:`recognized_rows`), its
journal (:func:`journal_line_rows`) and the closed month (:func:`closed_month_row`: counts, totals, the content hash
of the rows just appended, computed as :func:`pipelines.revenue.checks.month_hashes` recomputes it). A closed month is
never rewritten: what changes later is booked in the first open month as a correction. Plain functions over DuckDB,
no Dagster.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import duckdb

from domain.periods import add_months, month_literal
from domain.sql import quote_literal
from pipelines.revenue.accrual import unbilled_estimates
from pipelines.revenue.allocation import allocation_rows
from pipelines.revenue.checks import month_hashes, revenue_problems
from pipelines.revenue.journals import journal_rows
from pipelines.revenue.obligations import obligation_rows
from pipelines.revenue.reports import contract_balance_rows, rollforward_rows, trial_balance_rows, waterfall_rows
from pipelines.revenue.schedule import first_open_month, schedule_rows
from warehouse.tables import TABLES
from warehouse.writer import append, write

DERIVED_TABLES = ("revenue.performance_obligations", "revenue.allocations", "revenue.schedule", "revenue.open_journal_lines",
                  "revenue.contract_balances", "revenue.deferred_rollforward", "revenue.waterfall", "revenue.trial_balance")
"""The derived revenue tables, in the order they are written (each reads the ones before it)."""


class CloseRefused(Exception):
    """The month cannot be closed (the message says why and what to do); nothing was posted."""


def derived_rows(con: duckdb.DuckDBPyConnection, first_open: date | None, run_id: str | None,
                 unbilled: str) -> dict[str, str]:
    """The SELECT of each derived revenue table's rows for the open months from ``first_open`` (None: nothing has
    activity and nothing is closed), in write order; ``unbilled`` the lines rendered and not yet invoiced
    (pipelines/revenue/accrual.py)."""
    return dict(zip(DERIVED_TABLES, (
        obligation_rows(con, first_open, unbilled),
        allocation_rows(con, first_open, unbilled),
        schedule_rows(con, "revenue.performance_obligations", first_open),
        journal_rows(con, first_open, run_id),
        contract_balance_rows(con, first_open),
        rollforward_rows(con, first_open),
        waterfall_rows(con, first_open),
        trial_balance_rows(con, first_open),
    )))


def refresh(con: duckdb.DuckDBPyConnection, run_id: str | None = None) -> dict:
    """Recompute every derived revenue table (whole tables, ONE transaction; the estimates of what is rendered and not
    yet invoiced computed first, their temp table dropped after); return the first open month and the rows written
    per table."""
    first_open = first_open_month(con)
    with unbilled_estimates(con, first_open) as unbilled:
        counts = write(con, [(t, con.sql(rows), "true") for t, rows in derived_rows(con, first_open, run_id, unbilled).items()])
    return {"first_open_month": first_open, "rows": counts}


def recognized_rows(month: str, run: str) -> str:
    """The rows of revenue.recognized posted by closing ``month``: the schedule's open amounts booked in it, each for
    the month it concerns (a correction when that month is earlier)."""
    return f"""
    SELECT {month} AS accounting_month, obligation_id, contract_id, account_id, currency, obligation_kind, product_line,
           service_month AS concerns_month, open_amount AS amount, service_month < {month} AS is_correction, {run} AS run_id
    FROM revenue.schedule WHERE booked_month = {month} AND open_amount <> 0"""


def journal_line_rows(month: str, run: str) -> str:
    """The rows of revenue.journal_lines posted by closing ``month``: its open journal, with the closing run."""
    cols = ", ".join(f"{run} AS run_id" if c == "run_id" else c for c in TABLES["revenue.journal_lines"].column_names)
    return f"SELECT {cols} FROM revenue.open_journal_lines WHERE accounting_month = {month}"


BALANCE_TOTALS = {"deferred_revenue": ("DEFERRED_REVENUE", -1), "unbilled_ar": ("UNBILLED_AR", 1),
                  "contract_assets": ("CONTRACT_ASSET", 1), "ar": ("AR", 1)}
"""Month-end balances a closed month records per currency: (account, sign) with sign -1 for a credit balance."""


def closed_month_row(month: str, closed_at: str, run: str) -> str:
    """The revenue.closed_months row of ``month``, read from the posted tables (in the closing transaction, after its
    rows are appended): counts; totals per currency (revenue booked for the month and later, corrections of earlier
    months, the month-end balances of :data:`BALANCE_TOTALS` over every posted month through it) as JSON of exact
    decimal texts; the content hash of its posted rows."""
    balances = ", ".join(f"{sign} * sum(debit - credit) FILTER (WHERE account = '{account}') AS {name}"
                         for name, (account, sign) in BALANCE_TOTALS.items())
    fields = ", ".join(f"'{name}', CAST(coalesce({name}, 0) AS VARCHAR)" for name in ("revenue", "corrections", *BALANCE_TOTALS))
    return f"""
    WITH revenue AS (
        SELECT currency, sum(amount) FILTER (WHERE NOT is_correction) AS revenue, sum(amount) FILTER (WHERE is_correction) AS corrections
        FROM revenue.recognized WHERE accounting_month = {month} GROUP BY 1
    ), balances AS (
        SELECT currency, {balances} FROM revenue.journal_lines WHERE accounting_month <= {month} GROUP BY 1
    ), totals AS (
        SELECT '{{' || string_agg(to_json(currency) || ':' || json_object({fields}), ',' ORDER BY currency) || '}}' AS totals
        FROM revenue FULL JOIN balances USING (currency)
    )
    SELECT {month} AS accounting_month,
           (SELECT count(*) FROM revenue.recognized WHERE accounting_month = {month}) AS recognized_rows,
           (SELECT count(*) FROM revenue.journal_lines WHERE accounting_month = {month}) AS journal_lines,
           coalesce((SELECT totals FROM totals), '{{}}') AS totals,
           h.content_hash, {closed_at} AS closed_at, {run} AS run_id
    FROM ({month_hashes(f"(SELECT {month} AS accounting_month)")}) h"""


def close_refusal(con: duckdb.DuckDBPyConnection, month: date) -> str | None:
    """Why accounting ``month`` cannot be closed now, or None: closed already; not the first open month (the month
    before is not closed, or nothing before it has activity); billing month not finalized; a revenue check fails.
    The checks read the derived tables: refresh them first (:func:`close_month` does)."""
    done = con.execute("SELECT closed_at, run_id FROM revenue.closed_months WHERE accounting_month = ?", [month]).fetchone()
    if done:
        return f"{month:%Y-%m} is already closed (at {done[0]:%Y-%m-%d %H:%M} UTC, run {done[1]})"
    first_open = first_open_month(con)
    if first_open is None:
        return f"{month:%Y-%m} has nothing to close: no revenue activity yet"
    if month > first_open:
        previous = add_months(month, -1)
        return f"{month:%Y-%m} cannot be closed before {previous:%Y-%m}: close {first_open:%Y-%m} first (the first open month)"
    if month < first_open:
        return f"{month:%Y-%m} is before the first open month {first_open:%Y-%m}: nothing to close (no revenue activity before it)"
    if not con.execute("SELECT count(*) FROM ledger.finalized_months WHERE billing_month = ?", [month]).fetchone()[0]:
        return f"{month:%Y-%m} cannot be closed before its billing month is finalized: run the finalize job for {month:%Y-%m} first"
    failing = {name: found for name, found in revenue_problems(con).items() if found}
    if failing:
        return f"{month:%Y-%m} cannot be closed while revenue checks fail: " + "; ".join(
            f"{name} ({len(found)}, e.g. {found[0]})" for name, found in failing.items()) + ": fix the cause and run revenue again"
    return None


def close_month(con: duckdb.DuckDBPyConnection, month: date, run_id: str | None = None) -> dict:
    """Close accounting ``month``: refresh the derived tables; refuse (:class:`CloseRefused`) when :func:`close_refusal`
    says why; else append its revenue.recognized and revenue.journal_lines rows and its revenue.closed_months row in
    ONE transaction. Returns what was posted (counts, totals per currency, content hash). The derived tables show the
    month CLOSED after the next :func:`refresh` (the close_month job's revenue step)."""
    refresh(con, run_id)
    if why := close_refusal(con, month):
        raise CloseRefused(why)
    m = month_literal(month)
    at = f"TIMESTAMP '{datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=' ')}'"
    run = quote_literal(run_id) if run_id else "CAST(NULL AS VARCHAR)"
    append(con, [
        ("revenue.recognized", con.sql(recognized_rows(m, run))),
        ("revenue.journal_lines", con.sql(journal_line_rows(m, run))),
        ("revenue.closed_months", con.sql(closed_month_row(m, at, run))),
    ])
    recognized, journal, totals, content_hash = con.execute(
        "SELECT recognized_rows, journal_lines, totals, content_hash FROM revenue.closed_months WHERE accounting_month = ?",
        [month]).fetchone()
    return {"accounting_month": month.isoformat(), "recognized_rows": recognized, "journal_lines": journal,
            "totals": json.loads(totals), "content_hash": content_hash}
