"""The warehouse writer: every write is one transaction, columns are matched by name.

A partition is re-runnable because its window is deleted and re-inserted inside the same
transaction: a failed insert rolls the delete back and leaves the previous rows in place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import polars as pl

Source = duckdb.DuckDBPyRelation | pl.DataFrame

_VIEW = "_tally_write_source"


def _expose(con: duckdb.DuckDBPyConnection, source: Source) -> None:
    if isinstance(source, pl.DataFrame):
        con.register(_VIEW, source)
    else:
        source.create_view(_VIEW, replace=True)


def _insert(con: duckdb.DuckDBPyConnection, table: str) -> int:
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {_VIEW}")
    return con.execute(f"SELECT count(*) FROM {_VIEW}").fetchone()[0]


def _cleanup(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"DROP VIEW IF EXISTS {_VIEW}")
    try:
        con.unregister(_VIEW)
    except Exception:  # noqa: BLE001 - nothing registered under that name
        pass


def write(
    con: duckdb.DuckDBPyConnection,
    writes: list[tuple[str, Source, str | None]],
    params: list | None = None,
) -> dict[str, int]:
    """Apply several table writes in ONE transaction; return rows inserted per table.

    Each write is ``(table, source, where)``: rows matching ``where`` are deleted first
    (``where=None`` appends; ``where="true"`` replaces the whole table). ``params`` bind the
    ``?`` placeholders of each ``where``. A relation source must be built on ``con``; it is
    evaluated inside the transaction, after the deletes of earlier writes in the list.
    """
    counts: dict[str, int] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        for table, source, where in writes:
            if where is not None:
                con.execute(f"DELETE FROM {table} WHERE {where}", params if "?" in where else None)
            _expose(con, source)
            counts[table] = counts.get(table, 0) + _insert(con, table)
            _cleanup(con)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        _cleanup(con)
        raise
    return counts


def replace_window(con, table: str, source: Source, where: str, params: list | None = None) -> int:
    """Replace the rows of ``table`` matching ``where`` by ``source`` in one transaction."""
    return write(con, [(table, source, where)], params)[table]


def replace_table(con, table: str, source: Source) -> int:
    """Replace the whole content of ``table`` by ``source`` in one transaction."""
    return write(con, [(table, source, "true")])[table]


def append(con, table: str, source: Source) -> int:
    """Append ``source`` to ``table`` in one transaction."""
    return write(con, [(table, source, None)])[table]


@contextmanager
def staged(con: duckdb.DuckDBPyConnection, source: duckdb.DuckDBPyRelation, name: str) -> Iterator[str]:
    """Evaluate ``source`` once into temp table ``name`` (for writes that need it twice); dropped afterwards."""
    source.create_view(f"{name}_v", replace=True)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_v")
    con.execute(f"DROP VIEW {name}_v")
    try:
        yield name
    finally:
        con.execute(f"DROP TABLE IF EXISTS {name}")
