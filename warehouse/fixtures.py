"""Contract tables filled from plain Python rows: for library users' examples, tests and benchmarks.

``create_table_with_rows(con, "core.billing_accounts", [{"account_id": 1, ...}], defaults={...})``
creates the table exactly as the contract declares it (optionally under another schema) and
inserts the rows: every value goes in as text and is cast by the column's type, so decimals are
exact (``"29.99"``, ``Decimal("29.99")`` or ``29.99`` all give DECIMAL 29.99, never a float's
binary expansion). A key of a row that is not a column is an error; a column no row or default
gives is NULL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal

import duckdb

from warehouse.ddl import create_table_sql
from warehouse.tables import table


def _text(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    if isinstance(v, float):
        return str(Decimal(str(v)))
    return str(v)


def create_table_with_rows(con: duckdb.DuckDBPyConnection, qualified: str, rows: Sequence[Mapping] = (),
                           defaults: Mapping | None = None, schema: str | None = None) -> str:
    """Create contract table ``qualified`` (in ``schema`` instead of its own, if given) holding ``rows``; return its name."""
    t = table(qualified)
    name = f"{schema or t.schema}.{t.name}"
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema or t.schema}")
    con.execute(create_table_sql(t, name))
    names = t.column_names
    values = []
    for row in rows:
        if unknown := set(row) - set(names):
            raise KeyError(f"{qualified}: unknown columns {sorted(unknown)}")
        merged = {**(defaults or {}), **row}
        values.append([_text(merged.get(c)) for c in names])
    if values:
        casts = ", ".join(f"CAST(? AS {c.sql_type})" if c.sql_type != "VARCHAR" else "?" for c in t.columns)
        con.executemany(f"INSERT INTO {name} VALUES ({casts})", values)
    return name
