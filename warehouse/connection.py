"""Opening the warehouse: where it lives, and a connection with Tally's macros installed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from pipelines.domain import install_macros

WAREHOUSE_ENV = "TALLY_WAREHOUSE_PATH"
LANDING_ENV = "TALLY_LANDING_DIR"
MEMORY_ENV = "TALLY_DUCKDB_MEMORY_LIMIT"


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
    """Where the read-only analyst snapshot of ``warehouse`` is published."""
    return warehouse.with_name(warehouse.stem + ".snapshot" + warehouse.suffix)


@contextmanager
def connect(path: Path | str, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse file with the domain macros installed; always closed."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only, config=duckdb_config())
    try:
        if not read_only:
            install_macros(con)
        yield con
    finally:
        con.close()
