"""Late usage: which earlier billing months a bill run re-rates, and the record of each rating
(docs/rating.md, "Late usage").

A month's rating saw the usage ingested up to its ``ingested_through``
(``billing.rating_runs``). An event is *late* for month m when its landing file was ingested
after m's ``ingested_through`` and it belongs to m: its ``event_time`` is in the period m bills
for the subscription's account (the catalog's own rule, ``catalog.build_subscriptions``; an
unknown subscription's event belongs to its calendar month). Deleted events count: a late delete
changes the month too. Only the new files' events are read, and of each file only those timed
before the end of the latest month rated before it landed.
"""

from __future__ import annotations

import datetime as dt
import itertools

import duckdb

from domain.periods import add_months, month_literal
from domain.sql import live
from pipelines.rating.catalog import build_accounts, build_subscriptions
from pipelines.rating.engine import RatingResult, rated_event_count

_counter = itertools.count(1)


def late_usage(
    con: duckdb.DuckDBPyConnection,
    first_month: dt.date,
    lookback_months: int,
    *,
    usage: str = "core.usage_events",
    subscriptions: str = "core.subscription_versions",
    accounts: str = "core.billing_accounts",
    files: str = "audit.ingested_files",
    runs: str = "billing.rating_runs",
) -> list[tuple[dt.date, int]]:
    """``[(billing_month, late events)]``, in month order: the months rated before (in ``runs``),
    in ``[first_month - lookback_months, first_month)``, with usage events that landed after
    their rating. Months never rated are not listed."""
    tag = f"_late_{first_month:%Y%m}_{next(_counter)}"
    try:
        months = build_rated_months(con, tag, first_month, lookback_months, runs)
        if not months:
            return []
        build_new_events(con, tag, usage, files)
        found = []
        for month, ingested_through in months:
            if count := late_events_of_month(con, tag, month, ingested_through, subscriptions, accounts):
                found.append((month, count))
        return found
    finally:
        for name in ("months", "new_events", "accounts", "subscriptions"):
            con.execute(f"DROP TABLE IF EXISTS {tag}_{name}")


def build_rated_months(con: duckdb.DuckDBPyConnection, tag: str, first_month: dt.date, lookback_months: int,
                       runs: str) -> list[tuple[dt.date, dt.datetime | None]]:
    """``{tag}_months``: the months of the lookback already rated, with what their rating saw
    (``ingested_through``); returned in month order."""
    lo, hi = month_literal(add_months(first_month, -lookback_months)), month_literal(first_month)
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_months AS
    SELECT billing_month, ingested_through FROM {runs} WHERE billing_month >= {lo} AND billing_month < {hi}
    """)
    return con.execute(f"SELECT billing_month, ingested_through FROM {tag}_months ORDER BY 1").fetchall()


def build_new_events(con: duckdb.DuckDBPyConnection, tag: str, usage: str, files: str) -> None:
    """``{tag}_new_events``: the usage events (deleted ones too) of each file ingested after a
    rating of ``{tag}_months`` (a file delivered again: its latest delivery) timed before the end of
    the latest such month (a period billed in a month ends by the next month's first day), each
    with when its file was ingested. A month's usage file is thereby read for its late events only."""
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_new_events AS
    WITH deliveries AS (
        SELECT file, max(ingested_at) AS ingested_at FROM {files} WHERE status = 'LOADED' GROUP BY file
    ), new_files AS (
        SELECT d.file, d.ingested_at, CAST(max(m.billing_month) + INTERVAL 1 MONTH AS TIMESTAMP) AS late_before
        FROM deliveries d JOIN {tag}_months m ON d.ingested_at > coalesce(m.ingested_through, TIMESTAMP '-infinity')
        GROUP BY d.file, d.ingested_at
    )
    SELECT e.event_id, e.subscription_id, CAST(e.event_time AS TIMESTAMP) AS event_time, f.ingested_at
    FROM {usage} e JOIN new_files f ON f.file = e._file
    WHERE e.event_time < f.late_before
    """)


def late_events_of_month(con: duckdb.DuckDBPyConnection, tag: str, month: dt.date, ingested_through: dt.datetime | None,
                         subscriptions: str, accounts: str) -> int:
    """How many of ``{tag}_new_events`` are late for ``month``: ingested after ``ingested_through``
    and in the event window of the month for their subscription (the catalog's
    ``{tag}_subscriptions``, built for the new events' subscriptions only), or, for an unknown
    subscription, in the calendar month."""
    bm = month_literal(month)
    theirs = live(con, subscriptions)
    theirs = f"(SELECT * FROM {theirs} WHERE subscription_id IN (SELECT subscription_id FROM {tag}_new_events))"
    build_accounts(con, tag, bm, f"(SELECT * FROM {live(con, accounts)} WHERE account_id IN (SELECT account_id FROM {theirs}))")
    build_subscriptions(con, tag, bm, theirs)
    seen = "TIMESTAMP '-infinity'" if ingested_through is None else f"TIMESTAMP '{ingested_through}'"
    return con.execute(f"""
    SELECT count(*) FROM {tag}_new_events e LEFT JOIN {tag}_subscriptions s USING (subscription_id)
    WHERE e.ingested_at > {seen}
      AND CASE WHEN s.subscription_id IS NULL
               THEN e.event_time >= CAST({bm} AS TIMESTAMP) AND e.event_time < CAST({bm} + INTERVAL 1 MONTH AS TIMESTAMP)
               ELSE e.event_time >= s.window_start AND e.event_time < s.window_end END
    """).fetchone()[0]


def rating_run(con: duckdb.DuckDBPyConnection, result: RatingResult, rated_at: dt.datetime,
               rerated_by: dt.date | None = None, *, files: str = "audit.ingested_files") -> duckdb.DuckDBPyRelation:
    """The ``billing.rating_runs`` row of a rating: when, the latest ingestion it saw, the events
    it rated, and the bill run that re-rated the month (NULL: its own run)."""
    events = rated_event_count(con, result.billing_month, rated=f"{result.tag}_rated")
    by = "NULL::DATE" if rerated_by is None else month_literal(rerated_by)
    return con.sql(f"""
    SELECT {month_literal(result.billing_month)} AS billing_month, TIMESTAMP '{rated_at:%Y-%m-%d %H:%M:%S.%f}' AS rated_at,
           (SELECT max(ingested_at) FROM {files}) AS ingested_through,
           CAST({events} AS BIGINT) AS events_rated, {by} AS rerated_by
    """)
