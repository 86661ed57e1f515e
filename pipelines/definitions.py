"""Tally's Dagster definitions: each domain's assets, assembled with project-wide policy in one place."""

from __future__ import annotations

import dagster as dg

from pipelines.assets import ingest, snapshot, state
from pipelines.invoicing import assets as invoicing
from pipelines.partitions import billing_month
from pipelines.recover import recover_dead_runs_sensor
from pipelines.rating import assets as rating
from pipelines.resources import default_resources
from pipelines.revenue import assets as revenue

INGEST_GROUPS = ["ingest", "state"]

ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.groups(*INGEST_GROUPS),
    description="Load newly landed CDC extracts and rebuild current state, history and services.",
)
bill_cycle_job = dg.define_asset_job(
    "bill_cycle",
    selection=dg.AssetSelection.groups("bill_cycle"),
    partitions_def=billing_month,
    description="Rate usage, build draft invoices and recognize revenue for a billing month (or a range, in one run).",
)

defs = dg.Definitions(
    assets=[
        ingest.ingest_landing_zone_asset,
        state.core_state,
        state.services,
        rating.rating,
        invoicing.invoicing,
        revenue.revenue,
        snapshot.warehouse_snapshot,
    ],
    jobs=[ingest_job, bill_cycle_job],
    sensors=[recover_dead_runs_sensor],
    resources=default_resources(),
    # Every step writes the warehouse, so the writer pool runs them one at a time anyway: one process per
    # run (no process per step) is faster, and its pid is the run's worker (pipelines/recover.py).
    executor=dg.in_process_executor,
)
