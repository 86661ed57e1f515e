"""The one partitions definition of a bill cycle run: ``billing_month`` (UTC calendar months).

Partition ``YYYY-MM-01`` runs the bill cycles whose billing period ends in that month
(DESIGN.md, "Time"; :mod:`domain.periods`). The first month is configuration:
``TALLY_FIRST_BILLING_MONTH`` (default 2025-01).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date

import dagster as dg

from pipelines.resources import Warehouse

FIRST_MONTH_ENV = "TALLY_FIRST_BILLING_MONTH"

billing_month = dg.MonthlyPartitionsDefinition(
    start_date=os.environ.get(FIRST_MONTH_ENV, "2025-01") + "-01", timezone="UTC", fmt="%Y-%m-%d"
)


def months_in_run(context: dg.AssetExecutionContext) -> list[date]:
    """The billing months (first days) this run covers, in order: one, or a backfill range."""
    return [date.fromisoformat(k) for k in context.partition_keys]


def each_month_then_check(context: dg.AssetExecutionContext, warehouse: Warehouse, month_step: Callable, check: Callable) -> list:
    """Run ``month_step(context, con, month)`` for each month of the run, in order; return what
    ``check(con, first, last)`` finds wrong over the run's months (an empty list when nothing is)."""
    months = months_in_run(context)
    with warehouse.connection() as con:
        for month in months:
            month_step(context, con, month)
        return check(con, months[0], months[-1])
