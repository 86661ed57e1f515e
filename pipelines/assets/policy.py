"""Tally's project-wide Dagster policy, stated once.

Two halves, because Dagster keeps them in two places:

* **Op policy**, given to the asset decorators: the writer pool and, for a bill cycle step, the
  ``billing_month`` partitions and the single-run backfill policy. They belong to the op, not to
  an asset spec: Dagster has no public way to put an existing op in a pool, and a step's body is
  written for its partitions (it reads the run's months, ``months_in_run``), so a module's
  ``defs`` must carry them to run at all. Each asset names its policy with one argument:
  ``@dg.multi_asset(..., **WAREHOUSE_STEP)`` or ``**BILL_CYCLE_STEP``.
* **Spec policy**, applied at the root (``pipelines/definitions.py``) by :func:`in_group` and
  :func:`apply`: each module's group, kinds (``duckdb`` on every asset; ``polars`` is declared by
  the asset that computes with Polars), owners, the table contract's column schema, table name
  and kind (derived or ledger), and code references.

Asset keys come from the table contract (:func:`table_key`), never from another asset module.
"""

from __future__ import annotations

import warnings

import dagster as dg

from pipelines.partitions import billing_month
from pipelines.recover import POOL
from warehouse.contract import Table
from warehouse.tables import TABLES, table

# Single-run backfills of a month range are a deliberate choice (DESIGN.md "Architecture");
# Dagster flags the parameter as beta on every import, which only clutters run output.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

WAREHOUSE_STEP = {"pool": POOL}
"""Every step writes the warehouse: one at a time, in the ``duckdb_writer`` pool (dagster.yaml). A step that meets
the warehouse file locked by another process asks to be retried later (pipelines/resources.py, ``LOCKED_RETRIES``)."""

BILL_CYCLE_STEP = {**WAREHOUSE_STEP, "partitions_def": billing_month, "backfill_policy": dg.BackfillPolicy.single_run()}
"""A bill cycle step: one billing month, or a range of months in one run (a backfill)."""

OWNERS = ["team:tally"]
KINDS = {"duckdb"}
TABLE_KIND_TAG = "tally/table_kind"


def table_key(qualified: str) -> dg.AssetKey:
    """The asset key of warehouse table ``schema.name`` (a KeyError when it is not in the contract)."""
    t = table(qualified)
    return dg.AssetKey([t.schema, t.name])


def month_before(key: dg.AssetKey) -> dg.AssetDep:
    """Month M of ``key`` depends on month M-1 (so, step by step, on every month before M).

    Declare it on the LAST asset a step yields: Dagster records a step's input versions per asset
    key, so a self-dependency on an earlier output of the same step would make the later outputs
    look stale after every run. (Dagster also records one input version per asset for a whole
    range run, so after a range run the range's later months may show as stale until re-run:
    dagster-io/dagster#16287.)
    """
    return dg.AssetDep(key, partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1))


def column_schema(t: Table) -> dg.TableSchema:
    """The contract's columns (type, meaning, nullability) and key, as Dagster shows them."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, c.sql_type, c.description, constraints=dg.TableColumnConstraints(nullable=c.nullable))
            for c in t.columns
        ],
        constraints=dg.TableConstraints(other=[f"key: {', '.join(t.key)}"] if t.key else []),
    )


def with_spec_policy(spec: dg.AssetSpec) -> dg.AssetSpec:
    """``spec`` with the project's kinds and owners and, when its key names a warehouse table, the table's contract."""
    t = TABLES.get(".".join(spec.key.path))
    contract = {"dagster/column_schema": column_schema(t), "dagster/table_name": t.qualified} if t else {}
    return spec.merge_attributes(kinds=KINDS, owners=OWNERS, metadata=contract, tags={TABLE_KIND_TAG: t.kind} if t else {})


def _with_assets(defs: dg.Definitions, assets: list) -> dg.Definitions:
    """``defs`` with its assets replaced (everything else kept)."""
    return dg.Definitions(
        assets=assets, asset_checks=defs.asset_checks, jobs=defs.jobs, schedules=defs.schedules, sensors=defs.sensors,
        resources=defs.resources, executor=defs.executor, loggers=defs.loggers, metadata=defs.metadata,
    )


def in_group(group: str, *module_defs: dg.Definitions) -> dg.Definitions:
    """The modules' definitions merged, every asset in ``group`` (jobs select assets by group)."""
    merged = dg.Definitions.merge(*module_defs)
    return _with_assets(merged, dg.map_asset_specs(lambda spec: spec.replace_attributes(group_name=group), merged.assets or []))


def apply(defs: dg.Definitions) -> dg.Definitions:
    """``defs`` with the spec policy on every asset, and code references to the function that computes it."""
    assets = dg.map_asset_specs(with_spec_policy, defs.assets or [])
    with warnings.catch_warnings():  # code references are a deliberate choice; Dagster flags them as beta
        warnings.simplefilter("ignore", dg.BetaWarning)
        assets = dg.with_source_code_references(assets)
    return _with_assets(defs, list(assets))
