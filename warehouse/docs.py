"""Generate docs/warehouse.md from the DDL comments: ``python -m warehouse.docs > docs/warehouse.md``.

The table and column comments in the warehouse are the documentation; this renders them, and a
test keeps docs/warehouse.md equal to the rendering.
"""

from __future__ import annotations

import duckdb

from warehouse.schema import SCHEMAS, create_all

HEADER = """# Warehouse tables

Generated from the table and column comments (`python -m warehouse.docs > docs/warehouse.md`);
do not edit by hand. Every table lives in the DuckDB warehouse (`$TALLY_WAREHOUSE_PATH`, default
`data/warehouse.duckdb`); analysts query the read-only snapshot next to it
(`data/warehouse.snapshot.duckdb`), which is republished after every bill cycle run.

Conventions: money is DECIMAL (precise amounts `DECIMAL(38,10)`, rounded amounts `DECIMAL(18,4)`
holding values already rounded to the currency's minor unit); timestamps are UTC; periods are
half-open `[start, end)` and an open end is `9999-12-31`. Partitioned tables carry
`billing_month` (first day of the month); a re-run replaces exactly that month.
"""


def render(con: duckdb.DuckDBPyConnection) -> str:
    out = [HEADER]
    tables = con.execute(
        "SELECT schema_name, table_name, comment FROM duckdb_tables() "
        "WHERE database_name = current_database() ORDER BY schema_name, table_name"
    ).fetchall()
    for schema in SCHEMAS:
        out.append(f"\n## `{schema}`\n\n{SCHEMAS[schema]}\n")
        for sch, table, comment in tables:
            if sch != schema:
                continue
            out.append(f"\n### `{sch}.{table}`\n\n{comment or ''}\n\n| column | type | meaning |\n|---|---|---|")
            cols = con.execute(
                "SELECT column_name, data_type, comment FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = ? AND table_name = ? ORDER BY column_index",
                [sch, table],
            ).fetchall()
            out += [f"| `{c}` | {t} | {(m or '').replace('|', '/')} |" for c, t, m in cols]
    return "\n".join(out) + "\n"


def main() -> None:
    con = duckdb.connect()
    create_all(con)
    print(render(con), end="")


if __name__ == "__main__":
    main()
