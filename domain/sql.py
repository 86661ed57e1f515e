"""SQL conventions every engine follows: live rows, quoting, relation columns.

A soft-deleted row (``is_deleted = true``, DESIGN.md "CDC") is never an input: :func:`live` wraps
a relation so only live rows are read. Relations without ``is_deleted`` (a library user's own
tables) are read whole.
"""

from __future__ import annotations

import duckdb


def columns_of(con: duckdb.DuckDBPyConnection, relation: str) -> set[str]:
    """Lower-cased column names of a relation (table, view or subquery)."""
    return {c.lower() for c in con.sql(f"SELECT * FROM {relation} LIMIT 0").columns}


def live_filter(cols: set[str]) -> str:
    """Predicate keeping non-deleted rows when the relation has ``is_deleted``."""
    return "NOT coalesce(is_deleted, false)" if "is_deleted" in cols else "true"


def live(con: duckdb.DuckDBPyConnection, relation: str) -> str:
    """A subquery over ``relation`` without its soft-deleted rows."""
    return f"(SELECT * FROM {relation} WHERE {live_filter(columns_of(con, relation))})"


def quote_ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"
