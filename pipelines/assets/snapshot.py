"""The analysts' read-only snapshot, republished after each bill cycle."""


import dagster as dg

from pipelines.partitions import billing_month
from pipelines.resources import Warehouse
from pipelines.revenue.assets import BALANCES


@dg.asset(
    key=["warehouse_snapshot"], deps=[BALANCES], group_name="bill_cycle", partitions_def=billing_month,
    backfill_policy=dg.BackfillPolicy.single_run(), pool="duckdb_writer",
)
def warehouse_snapshot(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """Checkpoint the warehouse and atomically publish the read-only copy analysts query (never a locked file)."""
    path = warehouse.publish_snapshot()
    return dg.MaterializeResult(metadata={"snapshot": dg.MetadataValue.path(str(path)), "bytes": path.stat().st_size})
