"""Tally's Dagster definitions: each domain module's ``defs``, merged, with project-wide policy applied once.

The modules (``pipelines/assets/``) carry their assets and checks, with the op policy each
step runs under (writer pool; bill cycle partitions and single-run backfills). Here they are
grouped for the jobs, and :func:`pipelines.assets.policy.apply` puts kinds, owners, the table
contract's column schema and code references on every asset. The graph is snapshot-tested
(tests/test_definitions_snapshot.py).
"""

from __future__ import annotations

import dagster as dg

from pipelines.assets import ingest, invoicing, policy, publish, rating, revenue, state
from pipelines.recover import recover_dead_runs_sensor
from pipelines.resources import default_resources

ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.groups("ingest", "state"),
    description="Load newly landed CDC extracts and rebuild current state, history and services.",
)
bill_cycle_job = dg.define_asset_job(
    "bill_cycle",
    selection=dg.AssetSelection.groups("bill_cycle"),  # partitioned by billing_month, as its assets are
    description="Rate usage, build draft invoices and recognize revenue for a billing month (or a range, in one run).",
)

defs = policy.apply(
    dg.Definitions.merge(
        policy.in_group("ingest", ingest.defs),
        policy.in_group("state", state.defs),
        policy.in_group("bill_cycle", rating.defs, invoicing.defs, revenue.defs, publish.defs),
        dg.Definitions(
            jobs=[ingest_job, bill_cycle_job],
            sensors=[recover_dead_runs_sensor],
            resources=default_resources(),
            # Every step writes the warehouse, so the writer pool runs them one at a time anyway: one process per
            # run (no process per step) is faster, and its pid is the run's worker (pipelines/recover.py).
            executor=dg.in_process_executor,
        ),
    )
)
