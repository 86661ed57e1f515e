"""The warehouse: DDL with comments on everything, the transactional writer, the generated docs."""

from pathlib import Path

import duckdb
import polars as pl
import pytest

from warehouse.connection import connect
from warehouse.docs import render
from warehouse.schema import create_all
from warehouse.writer import replace_window, write

DOCS = Path(__file__).resolve().parents[1] / "docs" / "warehouse.md"


@pytest.fixture()
def con(tmp_path):
    with connect(tmp_path / "w.duckdb") as c:
        create_all(c)
        yield c


def test_every_table_and_column_is_commented(con):
    missing_tables = con.execute(
        "SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE comment IS NULL OR comment = ''"
    ).fetchall()
    missing_cols = con.execute(
        "SELECT schema_name || '.' || table_name || '.' || column_name FROM duckdb_columns() "
        "WHERE schema_name IN ('raw', 'core', 'billing', 'revenue', 'audit') AND (comment IS NULL OR comment = '')"
    ).fetchall()
    assert missing_tables == [] and missing_cols == []


def test_create_all_is_idempotent(con):
    create_all(con)
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'billing'").fetchone()[0] >= 4


def test_docs_are_generated_from_the_comments(con):
    assert DOCS.read_text() == render(con), "docs/warehouse.md is stale: python -m warehouse.docs > docs/warehouse.md"


def test_replace_window_replaces_only_the_window(con):
    con.execute("CREATE TABLE t (m INTEGER, v VARCHAR)")
    con.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    n = replace_window(con, "t", pl.DataFrame({"v": ["c", "d"], "m": [2, 2]}), "m = ?", [2])  # columns by name
    assert n == 2
    assert con.execute("SELECT m, v FROM t ORDER BY m, v").fetchall() == [(1, "a"), (2, "c"), (2, "d")]


def test_failed_insert_rolls_back_the_delete(con):
    """The stock DuckDB IO manager deletes then inserts outside a transaction; ours keeps the old rows."""
    con.execute("CREATE TABLE t (m INTEGER NOT NULL, v VARCHAR)")
    con.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    bad = pl.DataFrame({"m": [2, None], "v": ["c", "d"]})
    with pytest.raises(duckdb.ConstraintException):
        write(con, [("t", bad, "m = ?")], [2])
    assert con.execute("SELECT m, v FROM t ORDER BY m").fetchall() == [(1, "a"), (2, "b")]


def test_writes_in_one_call_are_atomic(con):
    con.execute("CREATE TABLE a (x INTEGER); CREATE TABLE b (x INTEGER NOT NULL); INSERT INTO a VALUES (1)")
    with pytest.raises(duckdb.ConstraintException):
        write(con, [("a", pl.DataFrame({"x": [2]}), "true"), ("b", pl.DataFrame({"x": [None]}, schema={"x": pl.Int32}), None)])
    assert con.execute("SELECT x FROM a").fetchall() == [(1,)]
