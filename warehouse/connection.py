"""Opening the warehouse: where it lives, and a connection with Tally's macros installed.

DuckDB locks a database file per process: while one process has it open for writing no other can
open it, not even read-only, and while readers have it open no process can write. :func:`connect` is
the one place Tally opens the warehouse: when another process holds the file's lock (an analyst with
the live file open, another Dagster instance's run), it retries with backoff, logging the holder
DuckDB names (program and PID) on the ``tally.warehouse`` logger (shown in the Dagster run logs, see
dagster.yaml), and after ``$TALLY_LOCK_WAIT_SECONDS`` (default 300) raises :class:`WarehouseLocked`
(a Dagster step then retries, pipelines/assets/policy.py). Analysts query the snapshot, which nothing locks.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from domain import install_macros

WAREHOUSE_ENV = "TALLY_WAREHOUSE_PATH"
LANDING_ENV = "TALLY_LANDING_DIR"
MEMORY_ENV = "TALLY_DUCKDB_MEMORY_LIMIT"
LOCK_WAIT_ENV = "TALLY_LOCK_WAIT_SECONDS"

log = logging.getLogger("tally.warehouse")


class WarehouseLocked(Exception):
    """Another process held the warehouse file's lock for longer than ``$TALLY_LOCK_WAIT_SECONDS``."""

    def __init__(self, path: Path, holder: str, waited: float):
        self.path, self.holder, self.waited = path, holder, waited
        super().__init__(
            f"The warehouse {path} is locked by another process, {holder}: gave up after {waited:.0f}s "
            f"(${LOCK_WAIT_ENV}). DuckDB allows one process at a time on the file: close that process, or let it "
            f"finish. {ANALYSTS_USE_THE_SNAPSHOT.format(snapshot=snapshot_path(path))}"
        )


ANALYSTS_USE_THE_SNAPSHOT = "Analysts query the snapshot ({snapshot}), never the live file."


def duckdb_config() -> dict:
    """DuckDB settings for every warehouse connection.

    A memory limit (``$TALLY_DUCKDB_MEMORY_LIMIT``, default 4GB) makes large aggregations spill
    to disk instead of exhausting memory; no engine relies on insertion order (every output is
    keyed and ordered explicitly), which lets DuckDB stream and parallelise freely.
    """
    return {"memory_limit": os.environ.get(MEMORY_ENV, "4GB"), "preserve_insertion_order": False}


def default_warehouse_path() -> Path:
    """``$TALLY_WAREHOUSE_PATH``, or ``data/warehouse.duckdb`` under the working directory."""
    return Path(os.environ.get(WAREHOUSE_ENV, "data/warehouse.duckdb")).resolve()


def default_landing_dir() -> Path:
    """``$TALLY_LANDING_DIR``, or ``data/landing`` under the working directory."""
    return Path(os.environ.get(LANDING_ENV, "data/landing")).resolve()


def snapshot_path(warehouse: Path) -> Path:
    """Where the read-only analyst snapshot of ``warehouse`` is published: its views file, the file analysts open."""
    return warehouse.with_name(warehouse.stem + ".snapshot" + warehouse.suffix)


def snapshot_dir(warehouse: Path) -> Path:
    """The folder holding the snapshot's Parquet files and manifest, next to its views file (warehouse/snapshot.py)."""
    return warehouse.with_name(warehouse.stem + ".snapshot")


def lock_wait_seconds() -> float:
    """``$TALLY_LOCK_WAIT_SECONDS`` (default 300): how long to wait for another process's lock on the file."""
    return float(os.environ.get(LOCK_WAIT_ENV, "300"))  # float ok: seconds


def lock_holder(error: duckdb.IOException) -> str | None:
    """Who holds the file lock DuckDB could not take ("PID 123 (/usr/bin/python3)"); None for another IO error."""
    message = str(error)
    if "Could not set lock on file" not in message:
        return None
    held = re.search(r"Conflicting lock is held in (.*?) \(PID (\d+)\)", message)
    return f"PID {held[2]} ({held[1]})" if held else "another process"


def _open(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open ``path``; while another process holds its lock, retry with backoff up to ``lock_wait_seconds()``."""
    timeout = lock_wait_seconds()
    start, delay, said_at = time.monotonic(), 0.1, None
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=duckdb_config())
        except duckdb.IOException as error:
            holder = lock_holder(error)
            waited = time.monotonic() - start
            if holder is None:
                raise
            if waited >= timeout:
                raise WarehouseLocked(path, holder, waited) from error
            if said_at is None or waited - said_at >= 30:
                log.warning("The warehouse %s is locked by another process, %s; retrying with backoff for up to %.0fs "
                            "(waited %.0fs). %s", path, holder, timeout, waited,
                            ANALYSTS_USE_THE_SNAPSHOT.format(snapshot=snapshot_path(path)))
                said_at = waited
            time.sleep(min(delay, timeout - waited))
            delay = min(delay * 2, 2.0)


@contextmanager
def connect(path: Path | str, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse file with the domain macros installed; always closed.

    Waits (bounded) while another process holds the file's lock; see the module docstring.
    """
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only)
    try:
        if not read_only:
            install_macros(con)
        yield con
    finally:
        con.close()
