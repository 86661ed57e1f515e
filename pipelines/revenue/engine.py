"""Revenue recognition (ASC 606 / IFRS 15) over invoice lines (docs/revenue.md).

Plain functions over DuckDB SQL, no Dagster imports; the connection must have
``domain.install_macros(con)`` installed. Each invoice line is a performance
obligation of ``net_amount`` (tax is not revenue):

* RECURRING and RECURRING_CREDIT lines with ``service_start < service_end`` are RATABLE by
  day over ``[service_start, service_end)`` with cumulative rounding (the domain macro
  ``recognized_through``): a month recognizes the cumulative through its end minus the
  cumulative through the previous month's end, so schedules sum exactly.
* Every other line (USAGE and rated line types, ONE_TIME) is POINT_IN_TIME: recognized in full
  in its billing month.
* A line is first recognized in its own billing month (the accounting month of its invoice):
  service days before that month are caught up there, a closed month is never restated.

Month ``M`` is a pure function of the lines with ``billing_month <= M``, so re-running a month
on the same lines gives the same rows.

Named steps, each the SQL of one relation over its inputs, testable alone on given rows
(tests/test_revenue.py): :func:`recognize` is :func:`obligations` → :func:`cumulative_recognized`
→ :func:`recognition_rows`; :func:`deferred_balances` is :func:`billed_by_currency` and
:func:`recognized_by_currency` → :func:`balance_rows`.
"""

from __future__ import annotations

from datetime import date

import duckdb

from domain.money import AMOUNT
from domain.periods import month_literal
from warehouse.tables import TABLES

__all__ = ["recognize", "deferred_balances", "RECOGNITION_COLUMNS", "DEFERRED_BALANCE_COLUMNS"]

RECOGNITION_COLUMNS = list(TABLES["revenue.recognition"].column_names)
DEFERRED_BALANCE_COLUMNS = list(TABLES["revenue.deferred_balances"].column_names)

RATABLE_LINE_TYPES = ("RECURRING", "RECURRING_CREDIT")


def _with(*steps: tuple[str, str]) -> str:
    """``WITH name AS (sql), ...`` over the named steps, in order."""
    return "WITH " + ",\n".join(f"{name} AS ({sql})" for name, sql in steps) + "\n"


def recognize(con: duckdb.DuckDBPyConnection, billing_month: date, *, lines: str = "billing.invoice_lines") -> duckdb.DuckDBPyRelation:
    """Rows of ``revenue.recognition`` for accounting month ``billing_month``.

    One row per line with ``billing_month <= month`` that recognizes something this month or
    still carries a deferred balance at month end; lines fully recognized before the month
    are skipped.
    """
    return con.sql(_with(
        ("obligations", obligations(billing_month, lines)),
        ("cumulative", cumulative_recognized(billing_month, "obligations")),
    ) + recognition_rows(billing_month, "cumulative"))


def obligations(billing_month: date, lines: str) -> str:
    """Step: the lines billed up to the month as obligations of ``net_amount``, RATABLE or
    POINT_IN_TIME, with ``line_month`` (the line's billing month) and ``total_days``."""
    ratable = ", ".join(f"'{t}'" for t in RATABLE_LINE_TYPES)
    return f"""
    SELECT line_id, invoice_id, account_id, line_type, currency, billing_month AS line_month,
           CAST(net_amount AS {AMOUNT}) AS obligation_amount,
           service_start, service_end,
           CASE WHEN line_type IN ({ratable}) AND service_start IS NOT NULL AND service_end > service_start
                THEN 'RATABLE' ELSE 'POINT_IN_TIME' END AS obligation_type,
           CAST(service_end - service_start AS BIGINT) AS total_days
    FROM {lines}
    WHERE billing_month <= {month_literal(billing_month)}"""


def cumulative_recognized(billing_month: date, obligations: str) -> str:
    """Step: ``cumulative_recognized`` through the month's end and ``cumulative_before_month``
    through the previous month's end (0 before the line's own month: catch-up), by the domain
    rule ``recognized_through`` for RATABLE obligations, the whole amount for POINT_IN_TIME."""
    month = month_literal(billing_month)
    return f"""
    SELECT *,
           CASE WHEN obligation_type = 'POINT_IN_TIME' THEN obligation_amount
                ELSE recognized_through(obligation_amount,
                        CAST(CAST({month} + INTERVAL 1 MONTH AS DATE) - service_start AS BIGINT), total_days, currency)
           END AS cumulative_recognized,
           CASE WHEN line_month >= {month} THEN CAST(0 AS {AMOUNT})
                WHEN obligation_type = 'POINT_IN_TIME' THEN obligation_amount
                ELSE recognized_through(obligation_amount, CAST({month} - service_start AS BIGINT), total_days, currency)
           END AS cumulative_before_month
    FROM {obligations}"""


def recognition_rows(billing_month: date, cumulative: str) -> str:
    """Step: rows of ``revenue.recognition``: the month's share (cumulative now minus before)
    and what stays deferred; lines fully recognized before the month are omitted."""
    month = month_literal(billing_month)
    return f"""
    SELECT {month} AS billing_month, line_id, invoice_id, CAST(account_id AS BIGINT) AS account_id, line_type,
           obligation_type, currency,
           obligation_amount,
           CAST(cumulative_recognized - cumulative_before_month AS {AMOUNT}) AS recognized_amount,
           cumulative_recognized,
           CAST(obligation_amount - cumulative_recognized AS {AMOUNT}) AS deferred_amount
    FROM {cumulative}
    WHERE NOT (line_month < {month} AND cumulative_before_month = obligation_amount)
    ORDER BY account_id, invoice_id, line_id"""


def deferred_balances(
    con: duckdb.DuckDBPyConnection,
    billing_month: date,
    *,
    lines: str = "billing.invoice_lines",
    recognition: str,
) -> duckdb.DuckDBPyRelation:
    """Rows of ``revenue.deferred_balances`` for month ``billing_month`` (one per currency).

    ``recognition`` holds the recognition rows of the month (the output of :func:`recognize`,
    or the ``revenue.recognition`` table: only rows of ``billing_month`` are read). Per line
    with ``billing_month <= month``: recognized to date = its ``cumulative_recognized`` when it
    has a row this month, else its whole ``net_amount`` (a line without a row was fully
    recognized before). ``billed_to_date`` comes from the lines and ``deferred_revenue`` from
    the rows, so ``billed_to_date = recognized_to_date + deferred_revenue`` checks that every
    row's obligation is its line's net amount and that cumulative + deferred = obligation.
    """
    month = month_literal(billing_month)
    return con.sql(_with(
        ("lines_to_date", f"SELECT line_id, currency, billing_month, net_amount FROM {lines} WHERE billing_month <= {month}"),
        ("month_rows", f"""SELECT line_id, currency, recognized_amount, cumulative_recognized, deferred_amount
                           FROM {recognition} WHERE billing_month = {month}"""),
        ("billed", billed_by_currency(billing_month, "lines_to_date", "month_rows")),
        ("recognized", recognized_by_currency("month_rows")),
    ) + balance_rows(billing_month, "lines_to_date", "month_rows", "billed", "recognized"))


def billed_by_currency(billing_month: date, lines_to_date: str, month_rows: str) -> str:
    """Step: per currency, Σ net_amount of the month's lines and of every line to date, and
    ``recognized_before``: Σ net_amount of the lines without a row this month (fully recognized)."""
    return f"""
    SELECT currency,
           sum(net_amount) FILTER (WHERE billing_month = {month_literal(billing_month)}) AS billed_in_month,
           sum(net_amount) AS billed_to_date,
           sum(net_amount) FILTER (WHERE line_id NOT IN (SELECT line_id FROM {month_rows})) AS recognized_before
    FROM {lines_to_date} GROUP BY currency"""


def recognized_by_currency(month_rows: str) -> str:
    """Step: per currency, Σ of the month's recognition rows: recognized in the month,
    ``recognized_open`` (cumulative of the lines still open) and deferred."""
    return f"""
    SELECT currency,
           sum(recognized_amount) AS recognized_in_month,
           sum(cumulative_recognized) AS recognized_open,
           sum(deferred_amount) AS deferred_revenue
    FROM {month_rows} GROUP BY currency"""


def balance_rows(billing_month: date, lines_to_date: str, month_rows: str, billed: str, recognized: str) -> str:
    """Step: rows of ``revenue.deferred_balances``, one per currency of the lines or the rows;
    recognized to date = recognized before + the open lines' cumulative."""
    return f"""
    SELECT {month_literal(billing_month)} AS billing_month, currencies.currency,
           CAST(coalesce(billed.billed_in_month, 0) AS {AMOUNT}) AS billed_in_month,
           CAST(coalesce(recognized.recognized_in_month, 0) AS {AMOUNT}) AS recognized_in_month,
           CAST(coalesce(billed.billed_to_date, 0) AS {AMOUNT}) AS billed_to_date,
           CAST(coalesce(billed.recognized_before, 0) + coalesce(recognized.recognized_open, 0) AS {AMOUNT})
               AS recognized_to_date,
           CAST(coalesce(recognized.deferred_revenue, 0) AS {AMOUNT}) AS deferred_revenue
    FROM (SELECT DISTINCT currency FROM {lines_to_date} UNION SELECT DISTINCT currency FROM {month_rows}) AS currencies
    LEFT JOIN {billed} AS billed USING (currency)
    LEFT JOIN {recognized} AS recognized USING (currency)
    ORDER BY currencies.currency"""
