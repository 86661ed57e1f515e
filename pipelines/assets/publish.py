"""Publishing: the analysts' read-only snapshot, republished after each bill cycle."""

import dagster as dg

from pipelines.assets.policy import BILL_CYCLE_STEP, table_key
from pipelines.resources import Warehouse


@dg.asset(key=["warehouse_snapshot"], deps=[table_key("revenue.trial_balance")], **BILL_CYCLE_STEP)
def warehouse_snapshot(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """Checkpoint the warehouse and atomically publish the read-only copy analysts query (never a locked file)."""
    path = warehouse.publish_snapshot()
    return dg.MaterializeResult(metadata={"snapshot": dg.MetadataValue.path(str(path)), "bytes": path.stat().st_size})


defs = dg.Definitions(assets=[warehouse_snapshot])
