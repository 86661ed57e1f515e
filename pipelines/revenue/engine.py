"""Revenue recognition (ASC 606 / IFRS 15) over invoice lines (docs/revenue.md).

Plain functions over DuckDB SQL, no Dagster imports; the connection must have
``domain.install_macros(con)`` installed. Each invoice line is a performance
obligation of ``net_amount`` (tax is not revenue):

* RECURRING and RECURRING_CREDIT lines with ``service_start < service_end`` are RATABLE by
  day over ``[service_start, service_end)`` with cumulative rounding in minor units: the
  amount recognized through a date ``d`` is
  ``C(d) = div_round(net_amount * clamp(d - service_start, 0, total_days), total_days, minor_unit)``;
  a month recognizes ``C(month end) - C(previous month end)``, so schedules sum exactly.
* Every other line (USAGE and rated line types, ONE_TIME) is POINT_IN_TIME: recognized in full
  in its billing month.
* A line is first recognized in its own billing month (the accounting month of its invoice):
  service days before that month are caught up there, a closed month is never restated.

Month ``M`` is a pure function of the lines with ``billing_month <= M``, so re-running a month
on the same lines gives the same rows.
"""

from __future__ import annotations

from datetime import date

import duckdb

from warehouse.tables import TABLES

__all__ = ["recognize", "deferred_balances", "RECOGNITION_COLUMNS", "DEFERRED_BALANCE_COLUMNS"]

AMOUNT = "DECIMAL(18,4)"

RECOGNITION_COLUMNS = list(TABLES["revenue.recognition"].column_names)
DEFERRED_BALANCE_COLUMNS = list(TABLES["revenue.deferred_balances"].column_names)

RATABLE_LINE_TYPES = ("RECURRING", "RECURRING_CREDIT")


def _month(billing_month: date) -> str:
    if billing_month.day != 1:
        raise ValueError(f"billing_month must be the first day of a month, got {billing_month}")
    return f"DATE '{billing_month.isoformat()}'"


def recognize(con: duckdb.DuckDBPyConnection, billing_month: date, *, lines: str = "billing.invoice_lines") -> duckdb.DuckDBPyRelation:
    """Rows of ``revenue.recognition`` for accounting month ``billing_month``.

    One row per line with ``billing_month <= month`` that recognizes something this month or
    still carries a deferred balance at month end; lines fully recognized before the month
    are skipped.
    """
    bm = _month(billing_month)
    ratable = ", ".join(f"'{t}'" for t in RATABLE_LINE_TYPES)
    sql = f"""
    WITH l AS (
        SELECT line_id, invoice_id, account_id, line_type, currency, billing_month AS line_month,
               CAST(net_amount AS {AMOUNT}) AS obligation,
               service_start, service_end,
               CASE WHEN line_type IN ({ratable}) AND service_start IS NOT NULL AND service_end > service_start
                    THEN 'RATABLE' ELSE 'POINT_IN_TIME' END AS obligation_type,
               CAST(service_end - service_start AS BIGINT) AS total_days
        FROM {lines}
        WHERE billing_month <= {bm}
    ),
    c AS (
        SELECT *,
               -- cumulative through the end of this month
               CASE WHEN obligation_type = 'POINT_IN_TIME' THEN obligation
                    ELSE CAST(div_round(obligation * least(greatest(
                            CAST(CAST({bm} + INTERVAL 1 MONTH AS DATE) - service_start AS BIGINT), 0), total_days),
                         total_days, minor_unit(currency)) AS {AMOUNT}) END AS cum,
               -- cumulative through the end of the previous month (0 before the line's own month)
               CASE WHEN line_month >= {bm} THEN CAST(0 AS {AMOUNT})
                    WHEN obligation_type = 'POINT_IN_TIME' THEN obligation
                    ELSE CAST(div_round(obligation * least(greatest(
                            CAST({bm} - service_start AS BIGINT), 0), total_days),
                         total_days, minor_unit(currency)) AS {AMOUNT}) END AS cum_prev
        FROM l
    )
    SELECT {bm} AS billing_month, line_id, invoice_id, CAST(account_id AS BIGINT) AS account_id, line_type,
           obligation_type, currency,
           obligation AS obligation_amount,
           CAST(cum - cum_prev AS {AMOUNT}) AS recognized_amount,
           cum AS cumulative_recognized,
           CAST(obligation - cum AS {AMOUNT}) AS deferred_amount
    FROM c
    WHERE NOT (line_month < {bm} AND cum_prev = obligation)
    ORDER BY account_id, invoice_id, line_id
    """
    return con.sql(sql)


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
    bm = _month(billing_month)
    sql = f"""
    WITH l AS (SELECT line_id, currency, billing_month, net_amount FROM {lines} WHERE billing_month <= {bm}),
    r AS (SELECT line_id, currency, recognized_amount, cumulative_recognized, deferred_amount FROM {recognition}
          WHERE billing_month = {bm}),
    cur AS (SELECT DISTINCT currency FROM l UNION SELECT DISTINCT currency FROM r),
    b AS (SELECT currency,
                 sum(net_amount) FILTER (WHERE billing_month = {bm}) AS billed_in_month,
                 sum(net_amount) AS billed_to_date,
                 sum(net_amount) FILTER (WHERE line_id NOT IN (SELECT line_id FROM r)) AS recognized_before
          FROM l GROUP BY currency),
    g AS (SELECT currency,
                 sum(recognized_amount) AS recognized_in_month,
                 sum(cumulative_recognized) AS recognized_open,
                 sum(deferred_amount) AS deferred_revenue
          FROM r GROUP BY currency)
    SELECT {bm} AS billing_month, cur.currency,
           CAST(coalesce(b.billed_in_month, 0) AS {AMOUNT}) AS billed_in_month,
           CAST(coalesce(g.recognized_in_month, 0) AS {AMOUNT}) AS recognized_in_month,
           CAST(coalesce(b.billed_to_date, 0) AS {AMOUNT}) AS billed_to_date,
           CAST(coalesce(b.recognized_before, 0) + coalesce(g.recognized_open, 0) AS {AMOUNT}) AS recognized_to_date,
           CAST(coalesce(g.deferred_revenue, 0) AS {AMOUNT}) AS deferred_revenue
    FROM cur
    LEFT JOIN b USING (currency)
    LEFT JOIN g USING (currency)
    ORDER BY cur.currency
    """
    return con.sql(sql)
