"""Billing periods (DESIGN.md, "Time").

Periods are half-open ``[start, end)`` dates (UTC midnight). An account's periods end on its
bill cycle day (1..31, clamped to the month's last day). Monthly cycles end every month;
quarterly cycles end in January, April, July and October; annual cycles end in January.
A period belongs to the billing month that contains the instant just before its end, so a
calendar account's ``[Mar 1, Apr 1)`` is billed in March and a bill-cycle-day-15 account's
``[Feb 15, Mar 15)`` is billed in March too.

SQL macros (installed by :func:`install_period_macros`), vectorised twins of the Python functions:

* ``cycle_months(cycle)``: 1, 3 or 12.
* ``anchor_date(month_start, bcd)``: the bill cycle day of that month, clamped.
* ``period_end_in(billing_month, bcd, cycle)``: end of the period billed in that month, or NULL.
* ``period_start_for(end, bcd, cycle)``: start of the period ending at ``end``.
* ``period_after(end, bcd, cycle)``: end of the period following the one ending at ``end``.
* ``period_end_containing(day, bcd, cycle)``: end of the account's period that contains ``day``.

Conventions: a billing month is its first day (:func:`month_literal` refuses any other day); an
open end is :data:`OPEN_END_DATE` / :data:`OPEN_END_TIMESTAMP` (9999-12-31), never NULL, so
point-in-time joins are ``t >= valid_from AND t < valid_to``.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date

import duckdb

OPEN_END = date(9999, 12, 31)
OPEN_END_DATE = "DATE '9999-12-31'"  # the open end of a DATE period, in SQL
OPEN_END_TIMESTAMP = "TIMESTAMP '9999-12-31'"  # the open end of a TIMESTAMP interval, in SQL

CYCLE_MONTHS = {"MONTHLY": 1, "QUARTERLY": 3, "ANNUAL": 12}
# Months (1..12) in which an anchor date may be a period end.
_END_MONTHS = {1: set(range(1, 13)), 3: {1, 4, 7, 10}, 12: {1}}


def month_literal(billing_month: date) -> str:
    """``DATE 'YYYY-MM-01'`` for a billing month; any day but the first is an error."""
    if billing_month.day != 1:
        raise ValueError(f"billing_month must be the first day of a month, got {billing_month}")
    return f"DATE '{billing_month.isoformat()}'"


def add_months(d: date, months: int) -> date:
    """First day of the month ``months`` after ``d``'s month."""
    idx = d.year * 12 + d.month - 1 + months
    return date(idx // 12, idx % 12 + 1, 1)


def anchor_date(month_start: date, bill_cycle_day: int) -> date:
    """The bill cycle day within ``month_start``'s month, clamped to its last day."""
    last = calendar.monthrange(month_start.year, month_start.month)[1]
    return date(month_start.year, month_start.month, min(bill_cycle_day, last))


@dataclass(frozen=True)
class Period:
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def period_billed_in(billing_month: date, bill_cycle_day: int, cycle: str = "MONTHLY") -> Period | None:
    """The period billed in ``billing_month`` (its first day), or None if none ends in it."""
    step = CYCLE_MONTHS[cycle]
    end_month = add_months(billing_month, 1) if bill_cycle_day == 1 else billing_month
    if end_month.month not in _END_MONTHS[step]:
        return None
    end = anchor_date(end_month, bill_cycle_day)
    return Period(anchor_date(add_months(end_month, -step), bill_cycle_day), end)


def next_period(period: Period, bill_cycle_day: int, cycle: str = "MONTHLY") -> Period:
    """The period following ``period``."""
    step = CYCLE_MONTHS[cycle]
    return Period(period.end, anchor_date(add_months(period.end.replace(day=1), step), bill_cycle_day))


def period_containing(day: date, bill_cycle_day: int, cycle: str = "MONTHLY") -> Period:
    """The account's period that contains ``day``."""
    month = day.replace(day=1)
    for offset in range(0, 13):
        p = period_billed_in(add_months(month, offset), bill_cycle_day, cycle)
        if p is not None and p.start <= day < p.end:
            return p
    raise ValueError(f"no period contains {day}")  # unreachable for valid cycles


_MACROS = """
CREATE OR REPLACE TEMP MACRO cycle_months(cycle) AS (CASE cycle WHEN 'QUARTERLY' THEN 3 WHEN 'ANNUAL' THEN 12 ELSE 1 END);
CREATE OR REPLACE TEMP MACRO anchor_date(month_start, bcd) AS
    CAST(date_trunc('month', month_start) AS DATE)
    + CAST(least(bcd, day(last_day(month_start))) - 1 AS INTEGER);
CREATE OR REPLACE TEMP MACRO _end_month(billing_month, bcd) AS
    CAST(CASE WHEN bcd = 1 THEN date_trunc('month', billing_month) + INTERVAL 1 MONTH
              ELSE date_trunc('month', billing_month) END AS DATE);
CREATE OR REPLACE TEMP MACRO period_end_in(billing_month, bcd, cycle) AS (
    CASE WHEN (month(_end_month(billing_month, bcd)) - 1) % cycle_months(cycle) = 0
         THEN anchor_date(_end_month(billing_month, bcd), bcd) END);
CREATE OR REPLACE TEMP MACRO period_start_for(period_end, bcd, cycle) AS
    anchor_date(CAST(date_trunc('month', period_end) - to_months(cycle_months(cycle)) AS DATE), bcd);
CREATE OR REPLACE TEMP MACRO period_after(period_end, bcd, cycle) AS
    anchor_date(CAST(date_trunc('month', period_end) + to_months(cycle_months(cycle)) AS DATE), bcd);
CREATE OR REPLACE TEMP MACRO period_end_containing(day, bcd, cycle) AS
    list_min(list_filter(
        list_transform(range(-1, 14), k -> period_end_in(
            CAST(date_trunc('month', day) + to_months(k) AS DATE), bcd, cycle)),
        e -> e > day));
"""


def install_period_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the billing-period macros on ``con`` (idempotent)."""
    con.execute(_MACROS)
