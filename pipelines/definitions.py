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
from pipelines.assets import documents
from pipelines.assets import ledger
from pipelines.assets import receivables
from pipelines.recover import recover_dead_runs_sensor
from pipelines.resources import default_resources

ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.groups("ingest", "state"),
    description="Load newly landed CDC extracts and rebuild current state, history and services.",
)
bill_cycle_job = dg.define_asset_job(
    "bill_cycle",
    # partitioned by billing_month, as its assets are; the revenue step is not partitioned (pipelines/assets/revenue.py)
    selection=dg.AssetSelection.groups("bill_cycle") | dg.AssetSelection.assets(revenue.revenue),
    description="Rate usage, build draft invoices and recompute revenue for a billing month (or a range, in one run).",
)
revenue_job = dg.define_asset_job(
    "revenue",
    selection=dg.AssetSelection.assets(revenue.revenue),
    description="Recompute the revenue tables of the open accounting months from the ledger (run it after finalize and "
                "apply_payments) and check them: schedules, allocations, journals, reconciliations, closed months unchanged.",
)
close_month_job = dg.define_asset_job(
    "close_month",
    selection=dg.AssetSelection.groups("revenue"),
    description="Close an accounting month (config: month, YYYY-MM, the first open month, its billing month finalized): "
                "post its revenue and journal, never to be changed, then recompute the revenue tables.",
)
finalize_job = dg.define_asset_job(
    "finalize",
    selection=dg.AssetSelection.groups("ledger") - dg.AssetSelection.assets(ledger.VOIDS),  # partitioned by billing_month
    description="Finalize a billing month: its drafts become numbered ledger invoices and credit notes, then the customers' documents.",
)
apply_payments_job = dg.define_asset_job(
    "apply_payments",
    selection=dg.AssetSelection.groups("receivables"),
    description="Apply payments not yet processed, credit notes and account credit to ledger invoices; rebuild status, balances and aging.",
)
void_document_job = dg.define_asset_job(
    "void_document",
    selection=dg.AssetSelection.assets(ledger.VOIDS) | dg.AssetSelection.groups("receivables"),
    description="Void one issued document (config: document_number, reason), then rebuild receivables (reversing what was applied to it).",
)

defs = policy.apply(
    dg.Definitions.merge(
        policy.in_group("ingest", ingest.defs),
        policy.in_group("state", state.defs),
        policy.in_group("bill_cycle", rating.defs, invoicing.defs, publish.defs),
        policy.in_group("revenue", revenue.defs),
        policy.in_group("ledger", documents.defs),
        policy.in_group("ledger", ledger.defs),
        policy.in_group("receivables", receivables.defs),
        dg.Definitions(
            jobs=[ingest_job, bill_cycle_job, finalize_job, void_document_job, apply_payments_job, revenue_job, close_month_job],
            sensors=[recover_dead_runs_sensor],
            resources=default_resources(),
            # Every step writes the warehouse, so the writer pool runs them one at a time anyway: one process per
            # run (no process per step) is faster, and its pid is the run's worker (pipelines/recover.py).
            executor=dg.in_process_executor,
        ),
    )
)
