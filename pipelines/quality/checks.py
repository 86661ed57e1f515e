"""The quality gates as Dagster asset checks, built from the table contract for the table assets given.

``quality_checks(assets)`` gives, per assets definition that writes warehouse tables, ONE check op (after the
asset's step, in the writer pool) with, per table:

* ``contract_holds``: the exact invariants over the written window in DuckDB (no NULL in a NOT NULL column or a
  derived table's key, every value in its set, the key unique) and the table's pandera schema on a bounded sample
  (dtypes, nullability, sets, the key unique within the sample);
* ``expectations_met`` (invoices, lines, payments, revenue: ``expectations.SUITE_TABLES``): the Great
  Expectations suite on a sample and the exact SQL sums (a document's totals = its lines).

A partitioned asset's checks read the window of the run's months (one month, or a backfill range). The checks
are non-blocking (a failure is a warning in the UI and the run goes on) except on what becomes or is the
invoice a customer receives (``BLOCKING``): a failed gate there stops the steps after it in the run.
"""


import time
import warnings
from collections.abc import Iterable, Iterator

import dagster as dg

from pipelines.assets.policy import WAREHOUSE_STEP
from pipelines.quality import expectations
from pipelines.quality.invariants import Window, describe, violations
from pipelines.quality.rules import rules
from pipelines.quality.schemas import sample, schema_failures
from pipelines.resources import Warehouse
from warehouse.tables import TABLES

CONTRACT_CHECK = "contract_holds"
EXPECTATIONS_CHECK = "expectations_met"

BLOCKING = ("billing.invoice_lines", "billing.invoices", "ledger.documents", "ledger.document_lines")
"""Drafts (finance reviews them in the snapshot the bill cycle publishes after them, and finalize issues them as
they are) and issued documents (the finalize run renders the customers' documents after them)."""


def table_of(key: dg.AssetKey) -> str | None:
    """The warehouse table an asset key names, or None (an asset that is not a table)."""
    qualified = ".".join(key.path)
    return qualified if qualified in TABLES else None


def run_window(context: dg.AssetCheckExecutionContext) -> Window:
    """The run's billing months as [first day, end day) (one month, or a backfill range)."""
    w = context.partition_time_window
    return w.start.date(), w.end.date()


def _specs(assets_def: dg.AssetsDefinition) -> list[dg.AssetCheckSpec]:
    specs = []
    with warnings.catch_warnings():  # partitioned checks (results tied to the run's months) are Dagster preview
        warnings.simplefilter("ignore")
        for key in sorted(assets_def.keys, key=lambda k: k.to_user_string()):
            qualified = table_of(key)
            if qualified is None:
                continue
            common = dict(asset=key, blocking=qualified in BLOCKING, partitions_def=assets_def.partitions_def)
            specs.append(dg.AssetCheckSpec(
                CONTRACT_CHECK, **common,
                description=f"{qualified} holds its contract: no NULL where it is required, values in their sets, "
                            "the key unique (exact, in SQL, over the written window); dtypes on a sample (pandera)."))
            if qualified in expectations.SUITE_TABLES:
                specs.append(dg.AssetCheckSpec(
                    EXPECTATIONS_CHECK, **common,
                    description=f"{qualified} meets its Great Expectations suite on a sample (keys, sets, sums), and "
                                "its sums hold exactly over the written window."))
    return specs


def contract_result(con, key: dg.AssetKey, window: Window | None, blocking: bool) -> dg.AssetCheckResult:
    """``contract_holds`` of one table: the exact SQL invariants, then pandera on a sample."""
    qualified = table_of(key)
    started = time.perf_counter()
    r = rules(qualified)
    found = violations(con, r, window)
    sampled = sample(con, r, window)
    schema = schema_failures(sampled, qualified)
    return dg.AssetCheckResult(
        asset_key=key, check_name=CONTRACT_CHECK, passed=found.passed and not schema,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        metadata={
            "rows_checked": found.rows, "sample_rows": sampled.height,
            "violations": dg.MetadataValue.json(found.found), "schema_failures": dg.MetadataValue.json(schema),
            "window": describe(window), "seconds": round(time.perf_counter() - started, 3),
        })


def expectations_result(con, key: dg.AssetKey, window: Window | None, blocking: bool) -> dg.AssetCheckResult:
    """``expectations_met`` of one table: its GX suite on a sample, then the exact sums."""
    started = time.perf_counter()
    outcome = expectations.validate(con, table_of(key), window)
    return dg.AssetCheckResult(
        asset_key=key, check_name=EXPECTATIONS_CHECK, passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        metadata={
            "sample_rows": outcome.sample_rows, "failed_expectations": dg.MetadataValue.json(outcome.failed),
            "exact_mismatches": dg.MetadataValue.json(outcome.exact),
            "window": describe(window), "seconds": round(time.perf_counter() - started, 3),
        })


RESULTS = {CONTRACT_CHECK: contract_result, EXPECTATIONS_CHECK: expectations_result}


def checks_of(assets_def: dg.AssetsDefinition) -> dg.AssetChecksDefinition | None:
    """The check op of the tables ``assets_def`` writes (None when it writes none)."""
    specs = _specs(assets_def)
    if not specs:
        return None
    partitioned = assets_def.partitions_def is not None

    @dg.multi_asset_check(name=f"quality__{assets_def.node_def.name}", specs=specs, can_subset=True,
                          description="Quality gates on the tables the step wrote (docs/quality.md).", **WAREHOUSE_STEP)
    def quality(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> Iterator[dg.AssetCheckResult]:
        """Check each selected table of the step: contract invariants and schema, and its GX suite."""
        window = run_window(context) if partitioned else None
        selected = [s for s in specs if s.key in context.selected_asset_check_keys]
        with warehouse.connection() as con:
            for spec in selected:
                yield RESULTS[spec.name](con, spec.asset_key, window, spec.blocking)

    return quality


def quality_checks(assets: Iterable) -> list[dg.AssetChecksDefinition]:
    """One check op per assets definition in ``assets`` that writes warehouse tables (other entries are skipped)."""
    return [c for a in assets if isinstance(a, dg.AssetsDefinition) and (c := checks_of(a)) is not None]
