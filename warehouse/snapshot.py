"""The analysts' copy: a read-only, masked snapshot of the warehouse, published atomically.

DuckDB lets one process write a file; while Dagster writes, nobody else can open it. After a run, the snapshot
(``warehouse.snapshot.duckdb``, next to the warehouse) is built as a fresh DuckDB file and renamed into place, so
analysts always open a complete, consistent, unlocked file::

    duckdb -readonly data/warehouse.snapshot.duckdb

Personal data is masked: every contract column declaring ``personal`` (warehouse/tables/, from the record
contract's customers) is written through its kind's mask in :data:`MASKS`, and the unmasked values are never
written to the file. The snapshot is a new database filled by ``INSERT ... SELECT`` of the masked columns (not a
copy updated in place, whose free blocks would keep the old bytes), holding exactly the contract's tables with
their comments.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from sources.entities import ENTITIES
from warehouse.connection import connect, snapshot_path
from warehouse.contract import Table
from warehouse.ddl import comment_sql, create_schemas, create_table_sql
from warehouse.tables import TABLES

PERSONAL_ENTITIES = tuple(sorted(e.name for e in ENTITIES.values() if any(c.personal for c in e.columns)))
"""Entities with personal columns: their quarantined raw payloads are masked whole."""

MASKS: dict[str, str] = {
    "name": "'customer-' || customer_id",
    "email": "'customer-' || customer_id || '@masked.invalid'",
    "phone": "'masked'",
    "address": "'masked'",
    "payload": "CASE WHEN entity IN ({entities}) THEN '(masked: personal data)' ELSE {column} END",
}
"""How each kind of personal data reads in the snapshot (NULL stays NULL): a name becomes ``customer-<customer_id>``,
an e-mail ``customer-<customer_id>@masked.invalid``, a phone number and a street address ``masked``; a quarantined
raw payload of an entity with personal columns is replaced whole (it may be malformed, so it is not parsed)."""

SNAPSHOT_DB = "tally_snapshot"


def masked(t: Table, column: str) -> str:
    """SQL: the value of ``t``'s ``column`` as the snapshot holds it (its mask, or the column itself)."""
    kind = t.column(column).personal
    if kind is None:
        return column
    entities = ", ".join(f"'{e}'" for e in PERSONAL_ENTITIES)
    mask = MASKS[kind].format(entities=entities, column=column)
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE {mask} END AS {column}"


def copy_sql(t: Table, source: str) -> str:
    """``INSERT`` of table ``t`` of database ``source`` into the snapshot's, personal columns masked."""
    return f"INSERT INTO {t.qualified} SELECT {', '.join(masked(t, c) for c in t.column_names)} FROM {source}.{t.qualified}"


def fill_snapshot(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Create every contract table (with its comments) in the current database and copy it, masked, from ``source``."""
    create_schemas(con)
    for t in TABLES.values():
        con.execute(create_table_sql(t))
        con.execute(comment_sql(t))
        con.execute(copy_sql(t, source))


def publish_snapshot(warehouse: Path) -> Path:
    """Build the masked snapshot of ``warehouse`` as a new file and atomically replace the published one; return its path.

    It is built while this connection holds the warehouse's lock, so no other process (another Dagster instance's run)
    writes the warehouse meanwhile."""
    target = snapshot_path(warehouse)
    tmp = target.with_name(target.name + ".tmp")
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)
    with connect(warehouse) as con:
        source = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f"ATTACH '{tmp}' AS {SNAPSHOT_DB}")
        con.execute(f"USE {SNAPSHOT_DB}")
        con.execute("BEGIN TRANSACTION")
        fill_snapshot(con, source)
        con.execute("COMMIT")
        con.execute(f"USE {source}")
        con.execute(f"DETACH {SNAPSHOT_DB}")  # checkpointed: the file is complete (a failed build leaves a .tmp, replaced next time)
    os.replace(tmp, target)
    return target
