"""The warehouse writer: every write is one transaction, columns are matched by name and type.

A partition is re-runnable because its window is deleted and re-inserted inside the same
transaction: a failed insert rolls the delete back and leaves the previous rows in place.
LEDGER tables are only ever appended to (:func:`append`): never a delete, never an update.

Every write is checked against the table contract (warehouse/tables/) before anything is
written: the target must be a contract table; the source may not carry a column the table
lacks, nor lack a NOT NULL one; and no column may be narrowed (:func:`narrowing`): a value of
``DECIMAL(38,10)`` is never rounded into ``DECIMAL(18,4)``, a float never becomes money, a
timestamp never loses its time. The engine must cast (or round) explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import polars as pl

from warehouse.contract import LEDGER
from warehouse.tables import table as contract_table

Source = duckdb.DuckDBPyRelation | pl.DataFrame

_VIEW = "_tally_write_source"

# Integer types by the decimal digits every value of theirs fits in (for DECIMAL targets) and width.
_INTEGERS = {"TINYINT": (2, 8), "SMALLINT": (4, 16), "INTEGER": (9, 32), "BIGINT": (18, 64), "HUGEINT": (38, 128),
             "UTINYINT": (2, 9), "USMALLINT": (4, 17), "UINTEGER": (9, 33), "UBIGINT": (19, 65)}
_DECIMAL = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")


class WriteRefused(Exception):
    """A write that would lose, narrow or invent data; nothing was written."""


def _decimal(t: str) -> tuple[int, int] | None:
    m = _DECIMAL.match(t)
    return (int(m[1]), int(m[2])) if m else None


def narrowing(source: str, target: str) -> str | None:
    """Why writing a ``source``-typed value into a ``target`` column would change or lose it; None if it never does."""
    if source == target or source == '"NULL"':
        return None
    sd, td = _decimal(source), _decimal(target)
    if td and (sd or source in _INTEGERS):
        p, s = sd or (_INTEGERS[source][0], 0)
        if s > td[1]:
            return f"{source} has {s} decimal places, {target} keeps {td[1]}: values would be rounded"
        if p - s > td[0] - td[1]:
            return f"{source} holds {p - s} integer digits, {target} only {td[0] - td[1]}"
        return None
    if target in _INTEGERS and source in _INTEGERS:
        return None if _INTEGERS[source][1] <= _INTEGERS[target][1] else f"{source} is wider than {target}"
    if target in _INTEGERS and sd:
        return None if sd[1] == 0 and sd[0] <= _INTEGERS[target][0] else f"{source} does not fit {target}"
    if source == "DATE" and target == "TIMESTAMP":
        return None
    return f"{source} is not {target}"


def _expose(con: duckdb.DuckDBPyConnection, source: Source) -> None:
    if isinstance(source, pl.DataFrame):
        con.register(_VIEW, source)
    else:
        source.create_view(_VIEW, replace=True)


def check_source(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Refuse the exposed source for ``table`` unless every column fits the contract (see module doc)."""
    t = contract_table(table)
    declared = {c.name: c for c in t.columns}
    given = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {_VIEW})").fetchall())
    problems = [f"{name}: not a column of {table}" for name in given if name not in declared]
    problems += [f"{c.name}: required (NOT NULL) but not given" for c in t.columns if not c.nullable and c.name not in given]
    problems += [f"{name}: {why}" for name, typ in given.items() if name in declared
                 and (why := narrowing(typ, declared[name].sql_type))]
    if problems:
        raise WriteRefused(f"refused to write {table}: " + "; ".join(problems))


def _insert(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {_VIEW}").fetchone()[0]  # rows inserted: the source is read once


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
    evaluated inside the transaction, after the deletes of earlier writes in the list. A source
    that does not fit its table's contract is refused (:class:`WriteRefused`) and nothing is written.
    A LEDGER table is only ever appended to: a write with a ``where`` on one is refused, before anything is written.
    """
    rewritten = [t for t, _, where in writes if where is not None and contract_table(t).kind == LEDGER]
    if rewritten:
        raise WriteRefused(f"refused to replace rows of {', '.join(rewritten)}: LEDGER tables are append only")
    counts: dict[str, int] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        for table, source, where in writes:
            _expose(con, source)
            check_source(con, table)
            if where is not None:
                con.execute(f"DELETE FROM {table} WHERE {where}", params if "?" in where else None)
            counts[table] = counts.get(table, 0) + _insert(con, table)
            _cleanup(con)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        _cleanup(con)
        raise
    return counts


def append(con: duckdb.DuckDBPyConnection, appends: list[tuple[str, Source]]) -> dict[str, int]:
    """Append rows to LEDGER tables in ONE transaction; return rows inserted per table.

    Each append is ``(table, source)``, inserted by name with the same contract checks as
    :func:`write`. Ledger tables are never rewritten: a table that is not LEDGER is refused
    (:class:`WriteRefused`), as is any source that does not fit, and then nothing is written.
    """
    derived = [t for t, _ in appends if contract_table(t).kind != LEDGER]
    if derived:
        raise WriteRefused(f"refused to append to {', '.join(derived)}: not a LEDGER table (use write())")
    return write(con, [(t, source, None) for t, source in appends])


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
