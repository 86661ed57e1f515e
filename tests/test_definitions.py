"""The Dagster definitions load, and every asset says what it is."""

import dagster as dg

from pipelines.definitions import defs


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_every_asset_has_a_description_and_writers_share_one_pool():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, f"{key} has no description"
    for assets_def in defs.assets:
        for spec in assets_def.specs:
            assert assets_def.op.pool == "duckdb_writer", f"{spec.key} writes the warehouse outside the writer pool"


def test_bill_cycle_assets_share_the_billing_month_partitions():
    job = defs.resolve_job_def("bill_cycle")
    assert job.partitions_def is not None
    assert job.partitions_def.get_partition_keys()[0] == "2025-01-01"
