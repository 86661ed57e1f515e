"""Tally's Dagster definitions: each domain module's ``defs``, merged, with project-wide policy applied once.

The modules (``pipelines/assets/``) carry their assets and checks, with the op policy each
step runs under (writer pool and retries; bill cycle partitions and single-run backfills). Here
each stage is an asset group (ingest, state, rating, invoicing, ledger, receivables, revenue, marts,
publish), the jobs select groups, each job that writes ends with the marts and the snapshot, the
schedule and sensors are added (pipelines/automation.py, pipelines/recover.py), and :func:`pipelines.assets.policy.apply` puts kinds, owners, the table
contract's column schema and code references on every asset. The graph is snapshot-tested
(tests/test_definitions_snapshot.py).
"""

from __future__ import annotations

import dagster as dg

from pipelines.assets import documents, ingest, invoicing, ledger, marts, policy, publish, rating, receivables, revenue, state
from pipelines.automation import landing_zone_sensor, monthly_bill_cycle
from pipelines.quality.checks import quality_checks
from pipelines.recover import recover_dead_runs_sensor
from pipelines.resources import default_resources

REPUBLISH = dg.AssetSelection.groups("marts", "publish")
"""The last steps of every job that writes the warehouse: the marts (over the ledger, receivables and revenue
tables) and the analysts' snapshot, which depends on every asset and so runs last."""

ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.groups("ingest", "state", "publish"),
    description="Load newly landed CDC extracts, merge them into current state and history (the keys they touch), rebuild services, then republish the snapshot.",
)
bill_cycle_job = dg.define_asset_job(
    "bill_cycle",
    # partitioned by billing_month, as its rating and invoicing assets are; revenue, the marts and the snapshot are not
    selection=dg.AssetSelection.groups("rating", "invoicing") | dg.AssetSelection.assets(revenue.revenue) | REPUBLISH,
    description="Rate usage, build draft invoices and recompute revenue for a billing month (or a range, in one run), "
                "then the marts and the snapshot.",
)
revenue_job = dg.define_asset_job(
    "revenue",
    selection=dg.AssetSelection.assets(revenue.revenue) | REPUBLISH,
    description="Recompute the revenue tables of the open accounting months from the ledger (run it after finalize and "
                "apply_payments) and check them: schedules, allocations, journals, reconciliations, closed months unchanged.",
)
close_month_job = dg.define_asset_job(
    "close_month",
    selection=dg.AssetSelection.groups("revenue") | REPUBLISH,
    description="Close an accounting month (config: month, YYYY-MM, the first open month, its billing month finalized): "
                "post its revenue and journal, never to be changed, then recompute the revenue tables.",
)
finalize_job = dg.define_asset_job(
    "finalize",
    # partitioned by billing_month, as the ledger's documents are
    selection=dg.AssetSelection.groups("ledger") - dg.AssetSelection.assets(ledger.VOIDS) | REPUBLISH,
    description="Finalize a billing month: its drafts become numbered ledger invoices and credit notes, then the customers' documents.",
)
apply_payments_job = dg.define_asset_job(
    "apply_payments",
    selection=dg.AssetSelection.groups("receivables") | REPUBLISH,
    description="Apply payments not yet processed, credit notes and account credit to ledger invoices; rebuild status, balances and aging.",
)
void_document_job = dg.define_asset_job(
    "void_document",
    selection=dg.AssetSelection.assets(ledger.VOIDS) | dg.AssetSelection.groups("receivables") | REPUBLISH,
    description="Void one issued document (config: document_number, reason), then rebuild receivables (reversing what was applied to it).",
)


def by_stage() -> dg.Definitions:
    """Every stage's assets, each stage its own group (the jobs select by group)."""
    return dg.Definitions.merge(
        policy.in_group("ingest", ingest.defs),
        policy.in_group("state", state.defs),
        policy.in_group("rating", rating.defs),
        policy.in_group("invoicing", invoicing.defs),
        policy.in_group("ledger", ledger.defs, documents.defs),
        policy.in_group("receivables", receivables.defs),
        policy.in_group("revenue", revenue.defs),
        policy.in_group("marts", marts.defs),
    )


def with_the_snapshot(stages: dg.Definitions) -> dg.Definitions:
    """``stages`` and, in group publish, the snapshot of everything they write."""
    return dg.Definitions.merge(stages, policy.in_group("publish", publish.publishing(stages)))


def with_quality_gates(graph: dg.Definitions) -> dg.Definitions:
    """``graph`` and the quality gates (pipelines/quality/, docs/quality.md): a contract and expectations check step
    after each of its table assets."""
    return dg.Definitions.merge(graph, dg.Definitions(asset_checks=quality_checks(graph.assets)))


defs = with_quality_gates(policy.apply(
    dg.Definitions.merge(
        with_the_snapshot(by_stage()),
        dg.Definitions(
            jobs=[ingest_job, bill_cycle_job, finalize_job, void_document_job, apply_payments_job, revenue_job, close_month_job],
            schedules=[monthly_bill_cycle],
            sensors=[recover_dead_runs_sensor, landing_zone_sensor],
            resources=default_resources(),
            # Every step writes the warehouse, so the writer pool runs them one at a time anyway: one process per
            # run (no process per step) is faster, and its pid is the run's worker (pipelines/recover.py).
            executor=dg.in_process_executor,
        ),
    )
))
