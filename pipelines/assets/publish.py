"""Publishing: the analysts' read-only snapshot, republished as the last step of every job that writes the warehouse."""

from collections.abc import Iterable

import dagster as dg

from pipelines.assets.policy import WAREHOUSE_STEP
from pipelines.resources import Warehouse

SNAPSHOT = dg.AssetKey(["warehouse_snapshot"])


def snapshot_asset(copies: Iterable[dg.AssetKey]) -> dg.AssetsDefinition:
    """The snapshot asset, depending on every asset it ``copies`` (so it runs after them in any job).

    Not partitioned: whatever months a run wrote, it republishes what changed (warehouse/snapshot.py).
    """

    @dg.asset(key=SNAPSHOT, deps=sorted(copies, key=lambda k: k.path), **WAREHOUSE_STEP)
    def warehouse_snapshot(warehouse: Warehouse) -> dg.MaterializeResult:
        """Publish the partitions that changed as masked Parquet and atomically replace the views file analysts open
        read-only (never a locked file)."""
        done = warehouse.publish_snapshot()
        return dg.MaterializeResult(metadata={
            "snapshot": dg.MetadataValue.path(str(done.path)),
            "tables rewritten": done.tables_rewritten,
            "partitions rewritten": done.partitions_rewritten,
            "bytes written": done.bytes_written,
            "published bytes": done.bytes_total,
            "seconds": dg.MetadataValue.float(round(done.seconds, 3)),
        })

    return warehouse_snapshot


def publishing(upstream: dg.Definitions) -> dg.Definitions:
    """The snapshot of the warehouse that ``upstream``'s assets write: it depends on each of them."""
    return dg.Definitions(assets=[snapshot_asset(key for assets_def in upstream.assets or [] for key in assets_def.keys)])


defs = publishing(dg.Definitions())
