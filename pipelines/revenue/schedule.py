"""The recognition schedule: obligation x month (x day on request), docs/revenue.md "Recognition".

Every pattern is a cumulative amount at the end of each period, rounded to the minor unit, and a period
recognizes the cumulative at its end minus the cumulative at the previous period's end, so a schedule sums
exactly to its allocated amount and a month is the sum of its days:

* RATABLE: ``recognized_through(allocated, elapsed days, spread_days)`` (domain/recognition.py), all of it
  once the window's end is reached (a fee cut at its service's end recognizes the rest on its last day);
* CONSUMPTION: ``recognized_share(allocated, quantity consumed so far, quantity consumed in the window)``
  by event time (core.usage_events of the line's service and metric; SUM charges by quantity, COUNT and
  UNIQUE_COUNT by events). Only windows that cross a period boundary read events; without events (or
  for MAX, LATEST and TIME_WEIGHTED_SUM charges, levels held over the window) by day, as RATABLE;
* POINT_IN_TIME: everything in the period of recognition_start.

The monthly schedule carries what closed months posted (revenue.recognized): open = scheduled - posted,
booked in the later of the service month and the first open month F.
"""

from __future__ import annotations

from datetime import date

import duckdb

from domain.money import AMOUNT
from domain.periods import add_months
from domain.sql import live
from pipelines.invoicing.engine import with_steps
from pipelines.revenue.obligations import first_open_literal
from warehouse.tables import TABLES

__all__ = ["first_open_month", "schedule_rows", "daily_schedule", "SCHEDULE_COLUMNS", "DAILY_COLUMNS"]

SCHEDULE_COLUMNS = list(TABLES["revenue.schedule"].column_names)
DAILY_COLUMNS = ["obligation_id", "contract_id", "account_id", "currency", "obligation_kind", "product_line",
                 "service_day", "service_month", "scheduled_amount", "cumulative_amount"]

_GRAINS = {"month": "INTERVAL 1 MONTH", "day": "INTERVAL 1 DAY"}
# Charge aggregations whose quantity accrues with events (a share by event time), and how an event weighs.
_EVENT_WEIGHT = "CASE pc.aggregation WHEN 'SUM' THEN e.quantity WHEN 'COUNT' THEN 1 WHEN 'UNIQUE_COUNT' THEN 1 END"


def first_open_month(con: duckdb.DuckDBPyConnection) -> date | None:
    """The month after the latest closed month; with none closed, the earliest month with activity (a
    document issued, a service day, a void, a payment application); None when there is none."""
    closed = con.execute("SELECT max(accounting_month) FROM revenue.closed_months").fetchone()[0]
    if closed is not None:
        return add_months(closed, 1)
    earliest = con.execute("""
        SELECT CAST(date_trunc('month', min(day)) AS DATE) FROM (
            SELECT min(issue_date) AS day FROM ledger.documents
            UNION ALL SELECT min(service_start) FROM ledger.document_lines
            UNION ALL SELECT min(voided_on) FROM ledger.voids
            UNION ALL SELECT min(applied_on) FROM ledger.payment_applications)""").fetchone()[0]
    return earliest


def obligation_periods(obligations: str, grain: str) -> str:
    """Step: each obligation x period (month or day) of its window, with the period's end cut at the window's
    end (``cut``), the days elapsed by then and whether the window crosses a period boundary."""
    step = _GRAINS[grain]
    return f"""
    SELECT o.obligation_id, o.contract_id, o.account_id, o.currency, o.obligation_kind, o.product_line, o.pattern,
           o.subscription_id, o.price_id, o.recognition_start, o.recognition_end, o.spread_days,
           CAST(o.allocated_amount AS {AMOUNT}) AS allocated_amount, p.period,
           least(CAST(p.period + {step} AS DATE), o.recognition_end) AS cut,
           CAST(least(CAST(p.period + {step} AS DATE), o.recognition_end) - o.recognition_start AS BIGINT) AS elapsed,
           CAST(o.recognition_end - o.recognition_start AS BIGINT) AS window_days,
           CAST(date_trunc('{grain}', o.recognition_start) AS DATE)
             <> CAST(date_trunc('{grain}', CAST(o.recognition_end - 1 AS DATE)) AS DATE) AS crosses
    FROM {obligations} o,
    LATERAL (SELECT CAST(unnest(generate_series(CAST(date_trunc('{grain}', o.recognition_start) AS DATE),
                                                CAST(date_trunc('{grain}', CAST(o.recognition_end - 1 AS DATE)) AS DATE),
                                                {step})) AS DATE) AS period) p"""


def consumption_weights(con: duckdb.DuckDBPyConnection, grain: str) -> str:
    """Step: per CONSUMPTION obligation whose window crosses a period boundary, the weight of the usage of its
    line's service (subscription_id) and charge's metric (price_id) consumed in each period of the window (event
    time in [start, end)) and in all."""
    return f"""
    SELECT obligation_id, period, weight, sum(weight) OVER (PARTITION BY obligation_id) AS total_weight
    FROM (
        SELECT w.obligation_id, CAST(date_trunc('{grain}', e.event_time) AS DATE) AS period, sum({_EVENT_WEIGHT}) AS weight
        FROM (SELECT DISTINCT obligation_id, subscription_id, price_id, recognition_start, recognition_end
              FROM obligation_periods WHERE pattern = 'CONSUMPTION' AND crosses) w
        JOIN {live(con, "core.plan_charges")} pc ON pc.price_id = w.price_id
        JOIN {live(con, "core.usage_events")} e
          ON e.subscription_id = w.subscription_id AND e.metric = pc.metric
         AND e.event_time >= CAST(w.recognition_start AS TIMESTAMP) AND e.event_time < CAST(w.recognition_end AS TIMESTAMP)
        WHERE {_EVENT_WEIGHT} IS NOT NULL
        GROUP BY ALL
    )"""


def cumulative_amounts() -> str:
    """Step: the cumulative amount recognized at each period's cut, by pattern (cumulative rounding)."""
    return """
    SELECT p.*,
           CASE WHEN p.pattern = 'POINT_IN_TIME' OR p.elapsed >= p.window_days THEN p.allocated_amount
                WHEN p.pattern = 'CONSUMPTION' AND c.total_weight > 0
                THEN recognized_share(p.allocated_amount, c.weight_through, c.total_weight, p.currency)
                ELSE recognized_through(p.allocated_amount, p.elapsed, p.spread_days, p.currency) END AS cumulative_amount
    FROM obligation_periods p
    LEFT JOIN (SELECT DISTINCT p.obligation_id, p.period, w.total_weight,
                      coalesce(sum(w.weight) FILTER (WHERE w.period <= p.period)
                               OVER (PARTITION BY p.obligation_id, p.period), 0) AS weight_through
               FROM obligation_periods p JOIN consumption_weights w USING (obligation_id)) c
      ON c.obligation_id = p.obligation_id AND c.period = p.period"""


def period_amounts() -> str:
    """Step: each period's share: its cumulative minus the previous period's."""
    return f"""
    SELECT *, CAST(cumulative_amount - coalesce(lag(cumulative_amount) OVER
                   (PARTITION BY obligation_id ORDER BY period), 0) AS {AMOUNT}) AS scheduled_amount
    FROM cumulative_amounts"""


def posted_revenue() -> str:
    """Step: what closed months booked per obligation and month concerned (revenue.recognized)."""
    return f"""
    SELECT obligation_id, concerns_month AS service_month, any_value(contract_id) AS contract_id,
           any_value(account_id) AS account_id, any_value(currency) AS currency,
           any_value(obligation_kind) AS obligation_kind, any_value(product_line) AS product_line,
           CAST(sum(amount) AS {AMOUNT}) AS posted_amount
    FROM revenue.recognized GROUP BY obligation_id, concerns_month"""


def schedule_table(first_open: date | None) -> str:
    """Step: rows of revenue.schedule: the months scheduled and the months posted, open = scheduled - posted
    booked in greatest(service_month, F); months with nothing scheduled nor posted left out."""
    return f"""
    SELECT coalesce(s.obligation_id, p.obligation_id) AS obligation_id,
           coalesce(s.contract_id, p.contract_id) AS contract_id, coalesce(s.account_id, p.account_id) AS account_id,
           coalesce(s.currency, p.currency) AS currency, coalesce(s.obligation_kind, p.obligation_kind) AS obligation_kind,
           coalesce(s.product_line, p.product_line) AS product_line,
           coalesce(s.period, p.service_month) AS service_month,
           CAST(coalesce(s.scheduled_amount, 0) AS {AMOUNT}) AS scheduled_amount,
           CAST(coalesce(s.cumulative_amount,
                         (SELECT last(x.cumulative_amount ORDER BY x.period) FROM period_amounts x
                          WHERE x.obligation_id = p.obligation_id AND x.period < p.service_month), 0) AS {AMOUNT})
             AS cumulative_amount,
           CAST(coalesce(p.posted_amount, 0) AS {AMOUNT}) AS posted_amount,
           CAST(coalesce(s.scheduled_amount, 0) - coalesce(p.posted_amount, 0) AS {AMOUNT}) AS open_amount,
           greatest(coalesce(s.period, p.service_month), {first_open_literal(first_open)}) AS booked_month
    FROM period_amounts s
    FULL JOIN posted_revenue p ON p.obligation_id = s.obligation_id AND p.service_month = s.period
    WHERE coalesce(s.scheduled_amount, 0) <> 0 OR coalesce(p.posted_amount, 0) <> 0"""


def _periods_steps(con: duckdb.DuckDBPyConnection, obligations: str, grain: str) -> dict[str, str]:
    return {
        "obligation_periods": obligation_periods(obligations, grain),
        "consumption_weights": consumption_weights(con, grain),
        "cumulative_amounts": cumulative_amounts(),
        "period_amounts": period_amounts(),
    }


def schedule_rows(con: duckdb.DuckDBPyConnection, obligations: str, first_open: date | None) -> str:
    """SELECT of revenue.schedule over ``obligations`` (a table name or a parenthesised SELECT of
    revenue.performance_obligations rows), ``first_open`` the first open month."""
    steps = {**_periods_steps(con, obligations, "month"), "posted_revenue": posted_revenue(),
             "schedule": schedule_table(first_open)}
    return with_steps(steps, f"SELECT {', '.join(SCHEDULE_COLUMNS)} FROM schedule ORDER BY obligation_id, service_month")


def daily_schedule(con: duckdb.DuckDBPyConnection, obligations: str) -> str:
    """SELECT of the schedule by day (columns DAILY_COLUMNS): the same cumulative rule at each day's end, so
    the days of a month sum to the month's scheduled_amount."""
    return with_steps(_periods_steps(con, obligations, "day"), f"""
    SELECT obligation_id, contract_id, account_id, currency, obligation_kind, product_line, period AS service_day,
           CAST(date_trunc('month', period) AS DATE) AS service_month, scheduled_amount, cumulative_amount
    FROM period_amounts ORDER BY obligation_id, service_day""")
