"""DDL and comments rendered from the table contract (warehouse/tables/)."""

from __future__ import annotations

import duckdb

from domain.sql import quote_literal
from warehouse.contract import Table
from warehouse.tables import SCHEMAS, TABLES


def create_table_sql(t: Table, name: str | None = None) -> str:
    """``CREATE TABLE`` for ``t`` (as ``name``, default its own): its columns in order, ``NOT NULL``
    where the contract says so."""
    cols = ",\n    ".join(f"{c.name} {c.sql_type}{'' if c.nullable else ' NOT NULL'}" for c in t.columns)
    return f"CREATE TABLE {name or t.qualified} (\n    {cols}\n);"


def comment_sql(t: Table) -> str:
    """The table's and its columns' comments (the documentation analysts read in any SQL client)."""
    stmts = [f"COMMENT ON TABLE {t.qualified} IS {quote_literal(t.description)};"]
    stmts += [f"COMMENT ON COLUMN {t.qualified}.{c.name} IS {quote_literal(c.description)};" for c in t.columns]
    return "\n".join(stmts)


def create_schemas(con: duckdb.DuckDBPyConnection) -> None:
    for schema in SCHEMAS:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")


def create_tables(con: duckdb.DuckDBPyConnection, names=None) -> None:
    """Create the contract tables ``names`` (default: all) with their comments, on an empty database
    (a new warehouse, a test fixture or a library user's scratch connection)."""
    create_schemas(con)
    for name in names or TABLES:
        t = TABLES[name]
        con.execute(create_table_sql(t))
        con.execute(comment_sql(t))
