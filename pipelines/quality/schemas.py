"""The pandera (Polars) schema of every warehouse table, from the contract, validated on a bounded sample.

The schema asserts what a sample can show: each column's Polars dtype (the contract's SQL type as DuckDB hands
it over), nullability, the value sets and the key's uniqueness within the sample. The exact counts over every
row are :mod:`pipelines.quality.invariants`; the sample keeps this part's cost flat however large the table.
"""

from __future__ import annotations

from functools import lru_cache

import duckdb
import pandera.polars as pa
import polars as pl

from pipelines.quality.invariants import Window, sample_sql
from pipelines.quality.rules import TableRules, rules
from sources.schemas import polars_dtype

SAMPLE_ROWS = 10_000
FAILURES_SHOWN = 10


def column_dtype(sql_type: str) -> pl.DataType:
    """The Polars dtype DuckDB gives a contract column: the record contract's mapping, and UBIGINT (file sizes)."""
    return pl.UInt64() if sql_type == "UBIGINT" else polars_dtype(sql_type)


@lru_cache(maxsize=None)
def table_schema(qualified: str) -> pa.DataFrameSchema:
    """The schema of warehouse table ``schema.name``: every contract column, with its dtype, nullability and set."""
    r = rules(qualified)
    columns = {
        c.name: pa.Column(
            column_dtype(c.sql_type), nullable=c.nullable, description=c.description,
            checks=[pa.Check.isin(list(r.value_sets[c.name]))] if c.name in r.value_sets else [],
        )
        for c in r.table.columns
    }
    return pa.DataFrameSchema(columns, unique=list(r.key) or None, strict=True, ordered=False, coerce=False,
                              name=qualified)


def sample(con: duckdb.DuckDBPyConnection, r: TableRules, window: Window | None, rows: int = SAMPLE_ROWS) -> pl.DataFrame:
    """At most ``rows`` rows of the window, as Polars."""
    return con.execute(*sample_sql(r, window, rows)).pl()


def schema_failures(frame: pl.DataFrame, qualified: str) -> list[str]:
    """What the table's schema finds wrong in ``frame``: one line per column and check (with its count and a few
    failing values); an empty list when the frame conforms."""
    try:
        table_schema(qualified).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases.with_columns(pl.col("failure_case").cast(pl.String))
        grouped = (cases.group_by("column", "check", maintain_order=True)
                   .agg(pl.len().alias("n"), pl.col("failure_case").head(3).alias("examples")))
        return [f"{row['column'] or qualified}: {row['check']} ({row['n']}: {', '.join(map(str, row['examples']))})"
                for row in grouped.head(FAILURES_SHOWN).iter_rows(named=True)]
    return []
