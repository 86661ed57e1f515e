"""The Dagster definitions load, every asset says what it is, and the project policy is on every asset."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pipelines.assets import documents, ingest, invoicing, ledger, marts, policy, publish, rating, receivables, revenue, state
from pipelines.definitions import defs
from pipelines.partitions import first_billing_month, month_key
from pipelines.resources import default_resources
from warehouse.tables import TABLES

MODULES = [ingest, state, rating, invoicing, revenue, marts, publish, ledger, receivables, documents]
NOT_A_TABLE = {dg.AssetKey(["warehouse_snapshot"]), dg.AssetKey(["customer_documents"]),  # the analysts' copy; the customers' HTML files
               dg.AssetKey(["bill_cycle_inputs"])}  # what a bill cycle finds before it starts (its blocking check)


def _specs():
    return [(assets_def, spec) for assets_def in defs.assets for spec in assets_def.specs]


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_each_domain_module_exposes_definitions_that_load_alone(module):
    dg.Definitions.validate_loadable(dg.Definitions.merge(module.defs, dg.Definitions(resources=default_resources())))


def test_every_asset_has_a_description_and_writers_share_one_pool():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert graph.get(key).description, f"{key} has no description"
    for assets_def, spec in _specs():
        assert assets_def.op.pool == "duckdb_writer", f"{spec.key} writes the warehouse outside the writer pool"


def test_bill_cycle_assets_share_the_billing_month_partitions_and_run_a_range_in_one_run():
    job = defs.resolve_job_def("bill_cycle")
    assert job.partitions_def is not None
    assert job.partitions_def.get_partition_keys()[0] == month_key(first_billing_month()) == "2025-01"
    bill_cycle = [a for a, spec in _specs() if spec.group_name in {"rating", "invoicing"}]
    assert bill_cycle and all(a.partitions_def == job.partitions_def for a in bill_cycle)
    assert all(a.backfill_policy == dg.BackfillPolicy.single_run() for a in bill_cycle)


def test_asset_keys_are_the_contract_tables():
    keys = {spec.key for _, spec in _specs()}
    assert keys - NOT_A_TABLE <= {policy.table_key(name) for name in TABLES}
    assert NOT_A_TABLE <= keys


def test_every_table_asset_shows_its_contract_columns():
    for assets_def, spec in _specs():
        if spec.key in NOT_A_TABLE:
            continue
        table = TABLES[".".join(spec.key.path)]
        schema = assets_def.metadata_by_key[spec.key]["dagster/column_schema"]
        assert [(c.name, c.type, c.description, c.constraints.nullable) for c in schema.columns] == \
            [(c.name, c.sql_type, c.description, c.nullable) for c in table.columns], spec.key
        assert spec.tags[policy.TABLE_KIND_TAG] == table.kind


def test_kinds_owners_and_code_references_on_every_asset():
    for assets_def, spec in _specs():
        assert "duckdb" in spec.kinds and spec.owners == policy.OWNERS, spec.key
        assert ("polars" in spec.kinds) == (assets_def.op.name == "ingest_landing_zone"), spec.key  # reads with Polars
        (reference,) = assets_def.metadata_by_key[spec.key]["dagster/code_references"].code_references
        assert reference.file_path.endswith(f"pipelines/assets/{_module_of(assets_def)}.py"), (spec.key, reference)


def _module_of(assets_def: dg.AssetsDefinition) -> str:
    return next(m.__name__.rsplit(".", 1)[-1] for m in MODULES if assets_def.op.name in {a.op.name for a in m.defs.assets})


ENGINES = ["domain", "sources", "warehouse", "pipelines.ingest", "pipelines.state", "pipelines.rating", "pipelines.invoicing",
           "pipelines.revenue"]


def test_the_engines_do_not_import_dagster():
    """Engines are plain Python over DuckDB and Polars: importing every module of them loads no Dagster."""
    code = (
        "import importlib, pkgutil, sys\n"
        f"for name in {ENGINES!r}:\n"
        "    package = importlib.import_module(name)\n"
        "    for info in pkgutil.walk_packages(package.__path__, name + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"
