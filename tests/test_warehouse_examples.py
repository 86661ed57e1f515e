"""Every example query of docs/warehouse.md runs on a real snapshot of a pipeline-built warehouse (tests/test_marts.py's)
and returns rows; the doc is what warehouse.docs renders, so the examples survive its regeneration."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from tests.test_marts import built_once
from warehouse.docs import EXAMPLES, guide
from warehouse.snapshot import publish

DOC = Path(__file__).resolve().parent.parent / "docs" / "warehouse.md"
SQL_BLOCK = re.compile(r"```sql\n(.*?)```", re.S)
QUERIES = SQL_BLOCK.findall(DOC.read_text())


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    warehouse, _ = built_once(tmp_path_factory)
    with duckdb.connect(str(publish(warehouse).path), read_only=True) as con:
        yield con


def test_the_doc_holds_the_examples_rendered_by_warehouse_docs():
    assert guide() in DOC.read_text()
    assert len(QUERIES) == len(EXAMPLES) >= 10
    topics = " ".join(question for question, _ in EXAMPLES).lower()
    for topic in ("billing by product", "top accounts by balance", "mrr movement", "deferred revenue roll-forward",
                  "unrated usage by reason"):
        assert topic in topics


@pytest.mark.parametrize("sql", QUERIES, ids=[q for q, _ in EXAMPLES])
def test_every_example_query_returns_rows_on_the_snapshot(snapshot, sql):
    assert snapshot.execute(sql).fetchall(), sql


def test_every_mart_has_an_example():
    marts = {m for sql in QUERIES for m in re.findall(r"marts\.(\w+)", sql)}
    assert marts == {"customer_mrr", "mrr_movements", "customer_churn", "revenue_by_product", "deferred_revenue_rollforward",
                     "revenue_waterfall", "ar_aging", "customer_360"}
