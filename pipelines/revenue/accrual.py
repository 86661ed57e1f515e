"""Rendered and not yet invoiced: what the bill runs still to come will invoice for the usage, service and one-time
items rendered by the end of the latest month computed (docs/revenue.md "Estimates: rendered, not yet invoiced").

The estimate is computed by the real engines, never by a second copy of the billing rules. As of the end of L
(:func:`pipelines.revenue.obligations.last_month_sql`), each account is billed next by the first billing month B
from S (the month after the latest finalized billing month, else F) in which one of its periods ends: the month
of its next bill date (monthly accounts S, quarterly up to S+2, annual up to S+11). For each such B, over its
accounts only, :func:`pipelines.rating.engine.rate_usage` rates the usage of the periods billed in B from the
events timed before L's end, and :func:`pipelines.invoicing.engine.build_settlement_lines` settles B against the
ledger with that rating (earlier months: ``billing.rated_usage``) and without drafts (revenue reads the ledger
only), incrementally as a bill run settles (an account unchanged since its previous finalized run from its current
period: docs/billing.md "Incremental settlement"). Of the settlement lines, those rendered by L's end are kept (:func:`rendered_lines`): service_start before
it, within the lookback. :func:`unbilled_estimates` writes them to the temp table
:data:`UNBILLED_LINES`, where the obligations' step ``estimated_lines`` reads them. No Dagster imports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import duckdb

from domain.periods import month_literal
from domain.sql import live
from pipelines.invoicing.engine import (
    INVOICE_LINE_COLUMNS,
    LOOKBACK_MONTHS,
    build_settlement_fingerprints,
    build_settlement_lines,
)
from pipelines.rating.engine import RATED_COLUMNS, drop_rating, rate_usage
from pipelines.revenue.obligations import first_open_literal, last_month_sql

__all__ = ["UNBILLED_LINES", "estimate_bounds", "next_bill_months", "rendered_lines", "unbilled_estimates",
           "build_unbilled_lines"]

UNBILLED_LINES = "_revenue_unbilled_lines"
"""Temp table of the settlement lines rendered and not yet invoiced (``billing.invoice_lines`` columns)."""

_NEXT_BILLS, _ACCOUNTS, _RATED, _FINGERPRINTS, _SETTLED = (
    "_revenue_next_bills", "_revenue_billed_accounts", "_revenue_rated", "_revenue_fingerprints", "_revenue_settled")


def estimate_bounds(con: duckdb.DuckDBPyConnection, first_open: date | None) -> tuple[date, date] | None:
    """(S, cut): S the first billing month still to be invoiced (the month after the latest finalized billing month;
    with none, F), cut the end of L (the first day after it); None when nothing has activity."""
    if first_open is None:
        return None
    start, cut = con.execute(f"""
        SELECT coalesce(CAST(max(billing_month) + INTERVAL 1 MONTH AS DATE), {first_open_literal(first_open)}),
               CAST({last_month_sql(first_open)} + INTERVAL 1 MONTH AS DATE)
        FROM ledger.finalized_months""").fetchone()
    return start, cut


def next_bill_months(con: duckdb.DuckDBPyConnection, start: date) -> str:
    """SELECT per account with service or orders within the lookback before ``start`` (a subscription version in
    force after its beginning, an order effective since) of its next bill run: ``bill_month``, the first billing month
    from ``start`` (over the next 12) in which one of its periods ends."""
    s = month_literal(start)
    since = f"CAST({s} - INTERVAL {LOOKBACK_MONTHS} MONTH AS DATE)"
    return f"""
    SELECT a.account_id, min(m.bill_month) AS bill_month
    FROM {live(con, "core.billing_accounts")} a,
         (SELECT CAST(unnest(generate_series({s}, CAST({s} + INTERVAL 11 MONTH AS DATE), INTERVAL 1 MONTH)) AS DATE)
                 AS bill_month) m
    WHERE period_end_in(m.bill_month, a.bill_cycle_day, a.billing_cycle) IS NOT NULL
      AND (a.account_id IN (SELECT account_id FROM core.subscription_versions WHERE valid_to > {since})
           OR a.account_id IN (SELECT account_id FROM {live(con, "core.orders")} WHERE effective_date >= {since}))
    GROUP BY a.account_id"""


def rendered_lines(settled: str, cut: date) -> str:
    """SELECT of the settlement lines of ``settled`` rendered by ``cut`` and not invoiced: service started before it
    (usage of a period in progress, its events all before ``cut`` by construction; days of recurring periods
    already started; one-time items delivered: a free handset too, its committed contract allocates to it),
    within the lookback."""
    return f"""
    SELECT {', '.join(INVOICE_LINE_COLUMNS)} FROM {settled}
    WHERE service_start < {month_literal(cut)} AND NOT beyond_lookback"""


def _settle_bill_month(con: duckdb.DuckDBPyConnection, month: date, cut: date) -> None:
    """Rate and settle the bill run of ``month`` over the accounts billed next in it (:data:`_NEXT_BILLS`), the usage
    timed before ``cut``; append its rendered lines to :data:`UNBILLED_LINES`; drop what it created."""
    m = month_literal(month)
    con.execute(f"""CREATE OR REPLACE TEMP VIEW {_ACCOUNTS} AS SELECT * FROM core.billing_accounts
                    WHERE account_id IN (SELECT account_id FROM {_NEXT_BILLS} WHERE bill_month = {m})""")
    rating = rate_usage(con, month, accounts=_ACCOUNTS,
                        usage=f"(SELECT * FROM core.usage_events WHERE event_time < CAST({month_literal(cut)} AS TIMESTAMP))")
    try:
        columns = ", ".join(RATED_COLUMNS)
        con.execute(f"""CREATE OR REPLACE TEMP TABLE {_RATED} AS
                        SELECT {columns} FROM billing.rated_usage
                        WHERE billing_month < {m} AND billing_month >= CAST({m} - INTERVAL {2 * LOOKBACK_MONTHS} MONTH AS DATE)
                          AND account_id IN (SELECT account_id FROM {_ACCOUNTS})
                        UNION ALL SELECT {columns} FROM {rating.tag}_rated""")
        inputs = {"accounts": _ACCOUNTS, "rated": _RATED, "billed": "(SELECT * FROM billing.invoice_lines WHERE false)"}
        fingerprints = build_settlement_fingerprints(con, month, **inputs)  # unchanged accounts: from their period
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_FINGERPRINTS} AS {fingerprints.sql_query()}")
        settled = build_settlement_lines(con, month, resettled=_FINGERPRINTS, **inputs)
        settled.create_view(_SETTLED, replace=True)
        con.execute(f"INSERT INTO {UNBILLED_LINES} {rendered_lines(_SETTLED, cut)}")
    finally:
        con.execute(f"DROP VIEW IF EXISTS {_SETTLED}")
        con.execute(f"DROP TABLE IF EXISTS {_FINGERPRINTS}")
        con.execute(f"DROP TABLE IF EXISTS {_RATED}")
        con.execute(f"DROP VIEW IF EXISTS {_ACCOUNTS}")
        drop_rating(con, rating)


def build_unbilled_lines(con: duckdb.DuckDBPyConnection, first_open: date | None) -> str:
    """(Re)create the temp table :data:`UNBILLED_LINES`: the lines rendered by the end of L and not yet invoiced,
    from each account's next bill run (module docstring); return its name."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {UNBILLED_LINES} AS SELECT {', '.join(INVOICE_LINE_COLUMNS)} "
                "FROM billing.invoice_lines WHERE false")
    bounds = estimate_bounds(con, first_open)
    if bounds is None:
        return UNBILLED_LINES
    start, cut = bounds
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_NEXT_BILLS} AS {next_bill_months(con, start)}")
    try:
        months = [m for (m,) in con.execute(f"SELECT DISTINCT bill_month FROM {_NEXT_BILLS} ORDER BY 1").fetchall()]
        for month in months:
            _settle_bill_month(con, month, cut)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {_NEXT_BILLS}")
    return UNBILLED_LINES


@contextmanager
def unbilled_estimates(con: duckdb.DuckDBPyConnection, first_open: date | None) -> Iterator[str]:
    """:func:`build_unbilled_lines` for the duration of the block (its temp table's name), dropped after."""
    try:
        yield build_unbilled_lines(con, first_open)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {UNBILLED_LINES}")
