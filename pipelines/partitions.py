"""The one partitions definition of a bill cycle run, ``billing_month`` (UTC calendar months), its keys, and the
check results tied to a month's partition (what a step reports as metadata: pipelines/assets/reporting.py).

Partition ``YYYY-MM`` runs the bill cycles whose billing period ends in that month (DESIGN.md, "Time";
:mod:`domain.periods`). The first month is configuration: ``TALLY_FIRST_BILLING_MONTH`` (default 2025-01).
Every key is built by :func:`month_key` and read by :func:`month_of_key`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from datetime import date

import dagster as dg

# Check results tied to their month need a partitioned check spec, a deliberate choice; Dagster flags it as preview.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)

from pipelines.resources import Warehouse

FIRST_MONTH_ENV = "TALLY_FIRST_BILLING_MONTH"

billing_month = dg.MonthlyPartitionsDefinition(
    start_date=os.environ.get(FIRST_MONTH_ENV, "2025-01"), fmt="%Y-%m", timezone="UTC"
)


def month_key(month: date) -> str:
    """The partition key of billing month ``month`` (its first day): ``YYYY-MM``."""
    return f"{month:%Y-%m}"


def month_of_key(key: str) -> date:
    """The billing month (first day) of partition key ``YYYY-MM``."""
    return date.fromisoformat(key + "-01")


def first_billing_month() -> date:
    """The first ``billing_month`` partition: a bill cycle of it has no previous month to wait for."""
    return month_of_key(billing_month.get_first_partition_key())


def months_in_run(context: dg.AssetExecutionContext) -> list[date]:
    """The billing months (first days) this run covers, in order: one, or a backfill range."""
    return [month_of_key(k) for k in context.partition_keys]


def each_month_then_check(context: dg.AssetExecutionContext, warehouse: Warehouse, month_step: Callable, check: Callable) -> list:
    """Run ``month_step(context, con, month)`` for each month of the run, in order; return what
    ``check(con, first, last)`` finds wrong over the run's months (an empty list when nothing is)."""
    months = months_in_run(context)
    with warehouse.connection() as con:
        for month in months:
            month_step(context, con, month)
        return check(con, months[0], months[-1])


def run_months(months: list[date]) -> str:
    """The months a run judged, as partition keys (``2025-01, 2025-02``)."""
    return ", ".join(month_key(m) for m in months)


def month_check_result(context: dg.AssetExecutionContext, asset_key: dg.AssetKey, check_name: str,
                       problems: dict[date, list[str]]) -> dg.AssetCheckResult:
    """The check's result over the run's months, each month's verdict tied to its partition: a one-month run's
    result is tied by Dagster (the check spec is partitioned); a range run logs one evaluation per month, then
    returns the run's verdict (Dagster ties no partition to a range run's result), naming the months."""
    failed = {m: found for m, found in problems.items() if found}
    if not context.has_partition_key:
        for month, found in problems.items():
            context.log_event(dg.AssetCheckEvaluation(
                asset_key=asset_key, check_name=check_name, passed=not found, partition=month_key(month), blocking=True,
                description="; ".join(found) or "passed", metadata={"problems": len(found)}))
    description = "; ".join(f"{month_key(m)}: {p}" for m, found in failed.items() for p in found)
    return dg.AssetCheckResult(
        check_name=check_name, asset_key=asset_key, passed=not failed,
        description=description or f"passed: {run_months(list(problems))}",
        metadata={"months": run_months(list(problems)), "problems": sum(map(len, failed.values())),
                  "failed_months": run_months(list(failed)) or "none"})
