"""Warehouse DDL: schemas, the raw/core tables derived from the entity contract, and ddl/*.sql.

``raw.<entity>``, ``core.<entity>_history``, ``core.<entity>`` and ``core.usage_events`` are
generated from :mod:`sources.entities`, so adding a column to an entity adds it everywhere.
Every other table is declared, with its comments, in ``warehouse/ddl/*.sql``, run in name order.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from sources.entities import CHANGE_LOG_COLUMNS, ENTITIES, Column, Entity

SCHEMAS = {
    "raw": "Append-only change logs exactly as received from the landing zone (one table per entity).",
    "core": "Current state and SCD2 history of every entity, rebuilt from raw; subscriptions from confirmed orders.",
    "billing": "Bill cycles: rated usage, unrated usage, draft invoices and their lines, per billing month.",
    "revenue": "Revenue recognition (ASC 606 / IFRS 15): recognition per line and month, deferred balances.",
    "audit": "Ingestion ledger: files ingested with their record accounting, and quarantined records.",
}
DDL_DIR = Path(__file__).parent / "ddl"

_HISTORY_COLUMNS = (
    Column("valid_from", "TIMESTAMP", "Version valid from (inclusive): the change's source time.", False),
    Column("valid_to", "TIMESTAMP", "Version valid until (exclusive); 9999-12-31 for the current version.", False),
    Column("is_deleted", "BOOLEAN", "True when this version is a delete (the row image is the last known one).", False),
    Column("_op", "VARCHAR", "Operation that produced this version (c, u, d, r).", False),
    Column("_position", "BIGINT", "Source log position of the change that produced this version."),
    Column("_file", "VARCHAR", "Landing file the change came from.", False),
)
_USAGE_STATE_COLUMNS = (
    Column("is_deleted", "BOOLEAN", "True when the latest change to the event is a delete.", False),
    Column("_position", "BIGINT", "Extract sequence of the latest change to the event."),
    Column("_file", "VARCHAR", "Landing file of the latest change to the event.", False),
)
_INGESTED_AT = Column("_ingested_at", "TIMESTAMP", "When Tally loaded the record (UTC).", False)


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _table_ddl(table: str, comment: str, columns: tuple[Column, ...] | list[Column]) -> str:
    cols = ",\n    ".join(f"{c.name} {c.sql_type}" for c in columns)
    stmts = [f"CREATE TABLE IF NOT EXISTS {table} (\n    {cols}\n);", f"COMMENT ON TABLE {table} IS {_q(comment)};"]
    stmts += [f"COMMENT ON COLUMN {table}.{c.name} IS {_q(c.description)};" for c in columns]
    return "\n".join(stmts)


def _key(entity: Entity) -> str:
    return ", ".join(entity.key)


def entity_ddl(entity: Entity) -> str:
    """DDL for the raw and core tables of one entity."""
    raw = _table_ddl(
        f"raw.{entity.name}",
        f"{entity.description} Append-only change log: one row per change record received "
        f"(grain: file x record). Key in the source: {_key(entity)}.",
        list(entity.columns) + list(CHANGE_LOG_COLUMNS) + [_INGESTED_AT],
    )
    if entity.name == "usage_records":
        core = _table_ddl(
            "core.usage_events",
            "Usage events as of the latest change: one row per event_id (deduplicated, ordered by "
            "extract sequence); deleted events kept with is_deleted = true.",
            list(entity.columns) + list(_USAGE_STATE_COLUMNS),
        )
        return raw + "\n" + core
    history = _table_ddl(
        f"core.{entity.name}_history",
        f"{entity.description} SCD2 history: one row per version of each {_key(entity)}, "
        "half-open [valid_from, valid_to), ordered by source position.",
        list(entity.columns) + list(_HISTORY_COLUMNS),
    )
    current = _table_ddl(
        f"core.{entity.name}",
        f"{entity.description} Current state: one row per {_key(entity)} (its latest version); "
        "deleted rows kept with is_deleted = true.",
        list(entity.columns) + list(_HISTORY_COLUMNS),
    )
    return "\n".join([raw, history, current])


def create_all(con: duckdb.DuckDBPyConnection) -> None:
    """Create every schema and table (idempotent)."""
    for schema in SCHEMAS:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")  # DuckDB has no schema comments: see SCHEMAS
    for entity in ENTITIES.values():
        con.execute(entity_ddl(entity))
    for path in sorted(DDL_DIR.glob("*.sql")):
        con.execute(path.read_text())
