"""Publishing: the analysts' read-only snapshot, republished as the last step of every job that writes the warehouse."""

from collections.abc import Iterable

import dagster as dg

from pipelines.assets.policy import WAREHOUSE_STEP
from pipelines.resources import Warehouse

SNAPSHOT = dg.AssetKey(["warehouse_snapshot"])


def snapshot_asset(copies: Iterable[dg.AssetKey]) -> dg.AssetsDefinition:
    """The snapshot asset, depending on every asset it ``copies`` (so it runs after them in any job).

    Not partitioned: it copies the whole file, whatever months a run wrote.
    """

    @dg.asset(key=SNAPSHOT, deps=sorted(copies, key=lambda k: k.path), **WAREHOUSE_STEP)
    def warehouse_snapshot(warehouse: Warehouse) -> dg.MaterializeResult:
        """Checkpoint the warehouse and atomically publish the read-only copy analysts query (never a locked file)."""
        path = warehouse.publish_snapshot()
        return dg.MaterializeResult(metadata={"snapshot": dg.MetadataValue.path(str(path)), "bytes": path.stat().st_size})

    return warehouse_snapshot


def publishing(upstream: dg.Definitions) -> dg.Definitions:
    """The snapshot of the warehouse that ``upstream``'s assets write: it depends on each of them."""
    return dg.Definitions(assets=[snapshot_asset(key for assets_def in upstream.assets or [] for key in assets_def.keys)])


defs = publishing(dg.Definitions())
