"""Run Tally's real Dagster assets against a temporary warehouse and landing zone (for tests)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg

from pipelines.definitions import bill_cycle_job, close_month_job, defs, finalize_job, revenue_job, void_document_job
from pipelines.partitions import month_key
from pipelines.resources import LandingZone, Warehouse


def _resources(warehouse: Path, landing: Path) -> dict:
    return {"warehouse": Warehouse(path=str(warehouse)), "landing": LandingZone(path=str(landing))}


def _assets():
    return list(defs.assets)


def run_ingest(warehouse: Path, landing: Path, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """Materialize the ingest and state groups (what the `ingest` job runs)."""
    return dg.materialize(
        _assets(), selection=dg.AssetSelection.groups("ingest", "state"), resources=_resources(warehouse, landing),
        instance=instance, raise_on_error=False,
    )


def run_bill_cycle(warehouse: Path, landing: Path, first: date, last: date | None = None,
                   instance: dg.DagsterInstance | None = None, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    """Materialize what the `bill_cycle` job runs for one month (its partition, as the UI launches it), or a range
    of months in one run (a backfill, as ``dagster asset materialize --partition-range`` tags it)."""
    one_month = last is None or last == first
    tags = {} if one_month else {"dagster/asset_partition_range_start": month_key(first),
                                 "dagster/asset_partition_range_end": month_key(last)}
    return dg.materialize(
        _assets(), selection=bill_cycle_job.selection, resources=_resources(warehouse, landing),
        partition_key=month_key(first) if one_month else None,
        instance=instance, tags=tags, raise_on_error=False, run_config=run_config,
    )


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        e.asset_check_evaluation_data.check_name for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    ]


def run_finalize(warehouse: Path, landing: Path, month: date,
                 instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """Materialize what the `finalize` job runs, for one billing month."""
    return dg.materialize(
        _assets(), selection=finalize_job.selection, partition_key=month_key(month), resources=_resources(warehouse, landing),
        instance=instance, raise_on_error=False,
    )


def run_void(warehouse: Path, landing: Path, number: str, reason: str,
             instance: dg.DagsterInstance | None = None, voided_on: date | None = None) -> dg.ExecuteInProcessResult:
    """Materialize what the `void_document` job runs, voiding document ``number`` for ``reason`` (dated ``voided_on``,
    default today)."""
    config = {"document_number": number, "reason": reason} | ({"voided_on": voided_on.isoformat()} if voided_on else {})
    return dg.materialize(
        _assets(), selection=void_document_job.selection, resources=_resources(warehouse, landing), instance=instance,
        raise_on_error=False, run_config={"ops": {"ledger__voids": {"config": config}}},
    )


def run_apply_payments(warehouse: Path, landing: Path, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """Materialize the receivables group (what the `apply_payments` job runs)."""
    return dg.materialize(
        _assets(), selection=dg.AssetSelection.groups("receivables"), resources=_resources(warehouse, landing),
        instance=instance, raise_on_error=False,
    )


def run_revenue(warehouse: Path, landing: Path, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """Materialize what the `revenue` job runs: the derived revenue tables and their checks."""
    return dg.materialize(
        _assets(), selection=revenue_job.selection, resources=_resources(warehouse, landing), instance=instance,
        raise_on_error=False,
    )


def run_close_month(warehouse: Path, landing: Path, month: date | str,
                    instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """Materialize what the `close_month` job runs, closing accounting ``month`` (a date, or the config text YYYY-MM)."""
    text = month if isinstance(month, str) else f"{month:%Y-%m}"
    return dg.materialize(
        _assets(), selection=close_month_job.selection, resources=_resources(warehouse, landing), instance=instance,
        raise_on_error=False, run_config={"ops": {"revenue_close": {"config": {"month": text}}}},
    )


def step_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    """The error messages of the run's failed steps."""
    return [e.event_specific_data.error.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
