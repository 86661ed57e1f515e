"""The warehouse: every table declared once, commented, documented; the transactional, type-checking writer."""

from calendar import monthrange
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from warehouse.connection import connect
from warehouse.docs import render
from warehouse.migrations import migrate
from warehouse.tables import TABLES
from warehouse.writer import WriteRefused, narrowing, write

DOCS = Path(__file__).resolve().parents[1] / "docs" / "warehouse.md"
AGING = "billing.ar_aging"  # derived, partitioned by billing_month, money columns
MAR, APR = date(2025, 3, 1), date(2025, 4, 1)


@pytest.fixture()
def con(tmp_path):
    with connect(tmp_path / "w.duckdb") as c:
        migrate(c)
        yield c


def aging(month: date, *currencies: str, open_ar: str = "1.00") -> pl.DataFrame:
    """Rows of billing.ar_aging (account 1, one per currency) with the contract's types (Polars decimals of the column's scale)."""
    amount = pl.Decimal(18, 4)
    n = len(currencies)
    return pl.DataFrame({
        "billing_month": [month] * n, "as_of": [month.replace(day=monthrange(month.year, month.month)[1])] * n, "account_id": [1] * n, "currency": list(currencies),
        **{c: pl.Series([Decimal(open_ar)] * n, dtype=amount) for c in
           ("current_amount", "days_1_30", "days_31_60", "days_61_90", "days_over_90", "open_ar", "account_credit")},
    })


def rows(con, table=AGING):
    return con.execute(f"SELECT billing_month, currency, open_ar FROM {table} ORDER BY 1, 2").fetchall()


def test_the_warehouse_has_exactly_the_contract_tables_all_commented(con):
    tables = con.execute("SELECT schema_name || '.' || table_name, comment FROM duckdb_tables() "
                         "WHERE database_name = current_database()").fetchall()
    assert sorted(t for t, _ in tables) == sorted(TABLES)
    assert [t for t, comment in tables if not comment] == []
    assert con.execute("SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() "
                       "AND coalesce(comment, '') = ''").fetchone()[0] == 0


def test_docs_are_generated_from_the_contract(con):
    assert DOCS.read_text() == render(con), "docs/warehouse.md is stale: python -m warehouse.docs > docs/warehouse.md"


def test_every_key_and_partition_is_a_column_and_every_partitioned_table_is_derived():
    for t in TABLES.values():
        assert set(t.key) <= set(t.column_names), t.qualified
        assert t.partition is None or t.kind == "derived", t.qualified


# ------------------------------------------------------------------ the writer

@pytest.mark.parametrize("source, target, refused", [
    ("DECIMAL(18,4)", "DECIMAL(18,4)", False),
    ("DECIMAL(18,4)", "DECIMAL(38,10)", False),   # wider both ways
    ("DECIMAL(38,10)", "DECIMAL(18,4)", True),    # unrounded money into a rounded column
    ("DECIMAL(16,2)", "DECIMAL(18,4)", False),
    ("DECIMAL(18,2)", "DECIMAL(18,4)", True),     # 16 integer digits into 14
    ("DECIMAL(38,4)", "DECIMAL(18,4)", True),     # 34 integer digits into 14
    ("INTEGER", "BIGINT", False),
    ("BIGINT", "INTEGER", True),
    ("HUGEINT", "BIGINT", True),
    ("INTEGER", "DECIMAL(18,4)", False),          # 9 digits fit 14
    ("BIGINT", "DECIMAL(18,4)", True),            # 18 digits do not
    ("DECIMAL(18,0)", "BIGINT", False),
    ("DECIMAL(18,2)", "BIGINT", True),
    ("DOUBLE", "DECIMAL(38,10)", True),           # a float never becomes money
    ("FLOAT", "BIGINT", True),
    ("DATE", "TIMESTAMP", False),
    ("TIMESTAMP", "DATE", True),                  # the time would be lost
    ("VARCHAR", "BIGINT", True),
    ("BIGINT", "VARCHAR", True),
    ('"NULL"', "DECIMAL(18,4)", False),           # an untyped NULL
    ("VARCHAR[]", "VARCHAR[]", False),
])
def test_narrowing_rules(source, target, refused):
    assert (narrowing(source, target) is not None) == refused


def test_write_replaces_only_the_window(con):
    write(con, [(AGING, aging(MAR, "EUR", "USD"), None), (AGING, aging(APR, "USD"), None)])
    n = write(con, [(AGING, aging(MAR, "GBP", open_ar="2.00"), "billing_month = ?")], [MAR])
    assert n == {AGING: 1}
    assert rows(con) == [(MAR, "GBP", Decimal("2.00")), (APR, "USD", Decimal("1.00"))]


def test_write_refuses_a_narrowing_cast_naming_table_and_column(con):
    precise = con.sql("SELECT DATE '2025-03-01' AS billing_month, DATE '2025-03-31' AS as_of, 1::BIGINT AS account_id, "
                      "'USD' AS currency, CAST(1.23456 AS DECIMAL(38,10)) AS open_ar, "
                      + ", ".join(f"0::DECIMAL(18,4) AS {c}" for c in
                                  ("current_amount", "days_1_30", "days_31_60", "days_61_90", "days_over_90", "account_credit")))
    with pytest.raises(WriteRefused, match=r"billing.ar_aging: open_ar: DECIMAL\(38,10\) has 10 decimal places"):
        write(con, [(AGING, precise, None)])
    assert rows(con) == []


def test_write_refuses_unknown_and_missing_columns_and_tables_outside_the_contract(con):
    with pytest.raises(WriteRefused, match="surprise: not a column"):
        write(con, [(AGING, aging(MAR, "USD").with_columns(pl.lit(1).alias("surprise")), None)])
    with pytest.raises(WriteRefused, match="currency: required"):
        write(con, [(AGING, aging(MAR, "USD").drop("currency"), None)])
    con.execute("CREATE TABLE scratch (x INTEGER)")
    with pytest.raises(KeyError, match="not a table of the warehouse contract"):
        write(con, [("scratch", pl.DataFrame({"x": [1]}), None)])


def test_failed_insert_rolls_back_the_delete(con):
    """The stock DuckDB IO manager deletes then inserts outside a transaction; ours keeps the old rows."""
    write(con, [(AGING, aging(MAR, "USD"), None)])
    bad = aging(MAR, "EUR").with_columns(pl.lit(None, dtype=pl.String).alias("currency"))  # NOT NULL violated
    with pytest.raises(duckdb.ConstraintException):
        write(con, [(AGING, bad, "billing_month = ?")], [MAR])
    assert rows(con) == [(MAR, "USD", Decimal("1.00"))]


def test_writes_in_one_call_are_atomic(con):
    write(con, [(AGING, aging(MAR, "USD"), None)])
    refused = aging(APR, "USD").with_columns(pl.col("open_ar").cast(pl.Float64))
    with pytest.raises(WriteRefused):
        write(con, [(AGING, aging(MAR, "EUR"), "true"), (AGING, refused, None)])
    assert rows(con) == [(MAR, "USD", Decimal("1.00"))]
