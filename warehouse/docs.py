"""Generate docs/warehouse.md from the table contract: ``python -m warehouse.docs > docs/warehouse.md``.

The contract (warehouse/tables/) is the documentation; this renders it, as the warehouse shows it
(types as DuckDB prints them), and a test keeps docs/warehouse.md equal to the rendering.
"""

from __future__ import annotations

import duckdb

from warehouse.migrations import migrate
from warehouse.tables import SCHEMAS, TABLES

HEADER = """# Warehouse tables

Generated from the table contract, `warehouse/tables/` (`python -m warehouse.docs > docs/warehouse.md`);
do not edit by hand. Every table lives in the DuckDB warehouse (`$TALLY_WAREHOUSE_PATH`, default
`data/warehouse.duckdb`); analysts query the read-only snapshot next to it
(`data/warehouse.snapshot.duckdb`), which is republished after every bill cycle run.

Conventions: money is DECIMAL (precise amounts `DECIMAL(38,10)`, rounded amounts `DECIMAL(18,4)`
holding values already rounded to the currency's minor unit); timestamps are UTC; periods are
half-open `[start, end)` and an open end is `9999-12-31`. Partitioned tables carry
`billing_month` (first day of the month); a re-run replaces exactly that month.

Each table is *derived* (recomputed from its inputs and replaced, by partition window when it
has one: re-running gives identical rows) or a *ledger* (rows are appended, never updated or
deleted, never rebuilt by a migration).
"""


def _facts(qualified: str) -> str:
    t = TABLES[qualified]
    key = ", ".join(f"`{k}`" for k in t.key) or "none (a change log: every row is kept)"
    partition = f" · partitioned by `{t.partition}`" if t.partition else ""
    return f"*{t.kind}* · grain: {t.grain} · key: {key}{partition}"


def render(con: duckdb.DuckDBPyConnection) -> str:
    out = [HEADER]
    for schema in SCHEMAS:
        out.append(f"\n## `{schema}`\n\n{SCHEMAS[schema]}\n")
        for qualified in sorted(q for q in TABLES if TABLES[q].schema == schema):
            t = TABLES[qualified]
            out.append(f"\n### `{qualified}`\n\n{_facts(qualified)}\n\n{t.description}\n\n| column | type | meaning |\n|---|---|---|")
            cols = con.execute(
                "SELECT column_name, data_type, comment FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = ? AND table_name = ? ORDER BY column_index",
                [t.schema, t.name],
            ).fetchall()
            out += [f"| `{c}` | {typ} | {(m or '').replace('|', '/')} |" for c, typ, m in cols]
    return "\n".join(out) + "\n"


def main() -> None:
    con = duckdb.connect()
    migrate(con)
    print(render(con), end="")


if __name__ == "__main__":
    main()
