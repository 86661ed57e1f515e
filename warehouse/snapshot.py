"""The analysts' copy: a read-only snapshot of the warehouse, published atomically.

DuckDB lets one process write a file; while Dagster writes, nobody else can open it. After a
run, the warehouse is checkpointed and copied next to itself (``warehouse.snapshot.duckdb``)
with an atomic rename, so analysts always open a complete, consistent, unlocked file::

    duckdb -readonly data/warehouse.snapshot.duckdb
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from warehouse.connection import connect, snapshot_path


def publish_snapshot(warehouse: Path) -> Path:
    """Checkpoint ``warehouse`` and atomically replace its snapshot; return the snapshot path.

    The copy is taken while this connection holds the file's lock, so no other process (another
    Dagster instance's run) writes the file while it is copied."""
    target = snapshot_path(warehouse)
    tmp = target.with_name(target.name + ".tmp")
    with connect(warehouse) as con:
        con.execute("CHECKPOINT")
        shutil.copyfile(warehouse, tmp)
    os.replace(tmp, target)
    return target
