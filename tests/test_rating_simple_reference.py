"""The simple-workload benchmark's hand-written statement (benchmarks/rating_simple.py) and the engine
rate the same lines, to the tenth decimal: the benchmark's check, on a small workload."""

import duckdb

from benchmarks import rating_simple as bench
from domain import install_macros
from pipelines.rating import rate_usage


def test_reference_statement_equals_engine(tmp_path):
    events, subs = 20_000, 100
    files = tmp_path / "usage"
    files.mkdir()
    con = install_macros(duckdb.connect())
    con.execute(f"COPY ({bench.event_select(0, events, subs)}) TO '{files}/part-0000.parquet' (FORMAT parquet)")
    names = bench.build_catalog(con, events)
    assert bench.n_subscriptions(events) == 1000  # the catalog has 1000 subscriptions, the events use 100
    con.execute(f"CREATE VIEW src.usage_parquet AS SELECT *, false AS is_deleted FROM read_parquet('{files}/*.parquet')")
    names["usage"] = "src.usage_parquet"
    r = rate_usage(con, bench.MONTH, **names)
    con.execute(f"CREATE TABLE engine AS SELECT * FROM {r.tag}_rated")
    con.execute(bench.REFERENCE_SQL.format(files=f"{files}/*.parquet"))
    cols = ", ".join(bench.COMPARED)
    for a, b in (("engine", "rated"), ("rated", "engine")):
        assert con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM {a} EXCEPT ALL SELECT {cols} FROM {b})").fetchone()[0] == 0
    assert con.execute(f"SELECT count(*) FROM {r.tag}_unrated").fetchone()[0] == 0
    lines, prorated, tier3, idle = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE proration_factor < 1), count(*) FILTER (WHERE billable_quantity > 10000), "
        "count(*) FILTER (WHERE event_count = 0) FROM rated").fetchone()
    assert lines == 1000 and prorated == 100 and tier3 > 0 and idle == 900  # zero-usage lines too
