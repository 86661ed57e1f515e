"""Run Tally's real Dagster assets against a temporary warehouse and landing zone (for tests)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg

from pipelines.definitions import defs
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
    """Materialize the bill_cycle group for one month, or a range of months in one run (a backfill)."""
    last = last or first
    tags = {"dagster/asset_partition_range_start": first.isoformat(), "dagster/asset_partition_range_end": last.isoformat()}
    return dg.materialize(
        _assets(), selection=dg.AssetSelection.groups("bill_cycle"), resources=_resources(warehouse, landing),
        instance=instance, tags=tags, raise_on_error=False, run_config=run_config,
    )


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        e.asset_check_evaluation_data.check_name for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    ]
