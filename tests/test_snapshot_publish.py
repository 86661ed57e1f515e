"""Incremental publishing of the analysts' snapshot (warehouse/snapshot.py) on real DuckDB files: a publish rewrites
only the partitions that changed, appends a ledger's new rows, deletes the files no publication reads, keeps the
previous publication readable, never writes a personal value, and shows every contract table with its comments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from warehouse.connection import connect, snapshot_dir, snapshot_path
from warehouse.migrations import migrate
from warehouse.snapshot import MANIFEST, MAX_FILES, publish
from warehouse.tables import TABLES

MONTHS = ("2025-01-01", "2025-02-01", "2025-03-01")


def fill(con, qualified: str, rows: int, month: str, start: int = 0) -> None:
    """Insert ``rows`` synthetic rows of every column's type into ``qualified``, dated ``month``."""
    exprs = []
    for c in TABLES[qualified].columns:
        typ = c.sql_type
        exprs.append({"DATE": f"DATE '{month}'", "TIMESTAMP": f"TIMESTAMP '{month}' + i * INTERVAL 1 SECOND",
                      "BOOLEAN": "i % 2 = 0", "VARCHAR": f"'{c.name}-' || i", "VARCHAR[]": f"['{c.name}']"}.get(
            typ, f"CAST(i AS {typ})" if not typ.startswith("DECIMAL") else f"CAST(i / 100 AS {typ})"))
    con.execute(f"INSERT INTO {qualified} SELECT {', '.join(exprs)} FROM range({start}, {start + rows}) r(i)")


@pytest.fixture
def warehouse(tmp_path) -> Path:
    """A migrated warehouse: three months of rated usage, document lines and usage records; five customers."""
    path = tmp_path / "warehouse.duckdb"
    with connect(path) as con:
        migrate(con)
        for n, month in enumerate(MONTHS):
            for q in ("billing.rated_usage", "ledger.document_lines", "raw.usage_records"):
                fill(con, q, 100, month, start=n * 100)
        fill(con, "core.customers", 5, MONTHS[0])
        con.execute("UPDATE core.customers SET name = 'Secret Person ' || customer_id, email = 'secret' || customer_id "
                    "|| '@example.com', phone = '555-01' || customer_id, address_line = customer_id || ' Hidden Lane'")
    return path


def manifest(warehouse: Path) -> dict:
    return json.loads((snapshot_dir(warehouse) / MANIFEST).read_text())


def files(warehouse: Path) -> dict[tuple[str, str], list[str]]:
    """The published files by (table, partition key)."""
    return {(q, k): p["files"] for q, e in manifest(warehouse)["tables"].items() for k, p in e["partitions"].items()}


def on_disk(warehouse: Path) -> set[str]:
    folder = snapshot_dir(warehouse)
    return {str(f.relative_to(folder)) for f in folder.glob("*/*.parquet")}


def query(warehouse: Path, sql: str) -> list[tuple]:
    """``sql`` on the published snapshot, in a fresh process (as an analyst opens it)."""
    code = ("import duckdb, json, sys; print(json.dumps(duckdb.connect(sys.argv[1], read_only=True).execute(sys.argv[2])"
            ".fetchall(), default=str))")
    done = subprocess.run([sys.executable, "-c", code, str(snapshot_path(warehouse)), sql], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [tuple(row) for row in json.loads(done.stdout)]  # dates as text


def test_nothing_changed_rewrites_nothing(warehouse):
    first = publish(warehouse)
    assert (first.tables_rewritten, first.partitions_rewritten) == (5, 11)  # 3 tables x 3 months, customers, audit.schema_version
    before, inode = files(warehouse), snapshot_path(warehouse).stat().st_ino
    again = publish(warehouse)
    assert (again.tables_rewritten, again.partitions_rewritten) == (0, 0)
    assert files(warehouse) == before and on_disk(warehouse) == {f for fs in before.values() for f in fs}
    assert again.bytes_written == snapshot_path(warehouse).stat().st_size + (snapshot_dir(warehouse) / MANIFEST).stat().st_size
    assert snapshot_path(warehouse).stat().st_ino != inode  # the views file is a new file, renamed into place
    assert not list(warehouse.parent.glob("*.tmp*")) and not list(snapshot_dir(warehouse).glob(".*"))
    assert query(warehouse, "SELECT count(*) FROM billing.rated_usage") == [(300,)]


FEB = "DATE '2025-02-01'"
CHANGES = {  # a change in the warehouse -> (the partitions it rewrites, a query on the snapshot, what it returns)
    "a derived month replaced": (
        f"UPDATE billing.rated_usage SET charge_code = 'CHANGED' WHERE billing_month = {FEB} AND rated_line_id LIKE '%5'",
        {("billing.rated_usage", "2025-02-01")},
        "SELECT billing_month, count(*) FROM billing.rated_usage WHERE charge_code = 'CHANGED' GROUP BY ALL", [("2025-02-01", 10)]),
    "a derived month deleted": (
        f"DELETE FROM billing.rated_usage WHERE billing_month = {FEB}", set(),
        "SELECT count(DISTINCT billing_month), count(*) FROM billing.rated_usage", [(2, 200)]),
    "a new month": (
        "INSERT INTO billing.rated_usage SELECT * REPLACE (DATE '2025-04-01' AS billing_month) FROM billing.rated_usage "
        f"WHERE billing_month = {FEB}", {("billing.rated_usage", "2025-04-01")},
        "SELECT count(*) FROM billing.rated_usage WHERE billing_month = '2025-04-01'", [(100,)]),
    "an unpartitioned table's row": (
        "UPDATE core.customers SET city = 'Elsewhere' WHERE customer_id = 3", {("core.customers", "all")},
        "SELECT customer_id, city, name FROM core.customers WHERE city = 'Elsewhere'", [(3, "Elsewhere", "customer-3")]),
    "a row in a ledger's month": (
        "INSERT INTO ledger.document_lines SELECT * REPLACE ('new-' || line_id AS line_id) FROM ledger.document_lines "
        f"WHERE billing_month = {FEB} LIMIT 7", {("ledger.document_lines", "2025-02-01")},
        f"SELECT count(*) FROM ledger.document_lines WHERE billing_month = {FEB}", [(107,)]),
    "usage records of a new month": (
        "INSERT INTO raw.usage_records SELECT * REPLACE (event_time + INTERVAL 3 MONTH AS event_time) FROM raw.usage_records "
        "WHERE event_time < '2025-01-01 00:00:50'", {("raw.usage_records", "2025-04")},
        "SELECT strftime(event_time, '%Y-%m'), count(*) FROM raw.usage_records GROUP BY ALL ORDER BY 1",
        [("2025-01", 100), ("2025-02", 100), ("2025-03", 100), ("2025-04", 50)]),
}


def changed(before: dict, after: dict) -> set[tuple[str, str]]:
    return {k for k, fs in after.items() if before.get(k) != fs}


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_a_change_rewrites_only_its_partitions_and_the_view_shows_it(warehouse, change):
    sql, rewritten, check, expected = CHANGES[change]
    publish(warehouse)
    before = files(warehouse)
    with connect(warehouse) as con:
        con.execute(sql)
    done = publish(warehouse)
    after = files(warehouse)
    assert changed(before, after) == rewritten
    assert (done.tables_rewritten, done.partitions_rewritten) == (len({q for q, _ in rewritten}), len(rewritten))
    assert query(warehouse, check) == expected
    with connect(warehouse, read_only=True) as live:  # and the snapshot holds what the warehouse holds, table by table
        counts = {q: live.execute(f"SELECT count(*) FROM {q}").fetchone()[0] for q in TABLES}
    union = " UNION ALL ".join(f"SELECT '{q}', count(*) FROM {q}" for q in TABLES)
    assert dict(query(warehouse, union)) == counts


def test_a_ledger_append_adds_a_file_of_its_new_rows_and_many_are_compacted(warehouse):
    publish(warehouse)
    key = ("ledger.document_lines", "2025-02-01")
    (first,) = files(warehouse)[key]
    for n in range(MAX_FILES):
        with connect(warehouse) as con:
            fill(con, "ledger.document_lines", 3, "2025-02-01", start=1000 + 3 * n)
        publish(warehouse)
        if n < MAX_FILES - 1:
            assert files(warehouse)[key][0] == first and len(files(warehouse)[key]) == n + 2
    assert len(files(warehouse)[key]) == 1 and files(warehouse)[key][0] != first  # compacted: one file again
    assert query(warehouse, "SELECT count(*) FROM ledger.document_lines WHERE billing_month = '2025-02-01'") == [(100 + 3 * MAX_FILES,)]


def test_files_no_publication_reads_are_deleted(warehouse):
    publish(warehouse)
    key = ("billing.rated_usage", "2025-02-01")
    (first,) = files(warehouse)[key]
    stray = snapshot_dir(warehouse) / "billing.rated_usage" / "000000-leftover-0.parquet"
    stray.write_bytes(b"left by a publish that failed")
    for n in (1, 2):
        with connect(warehouse) as con:
            con.execute(f"UPDATE billing.rated_usage SET charge_code = 'v{n}' WHERE billing_month = {FEB}")
        publish(warehouse)
        current, previous = set().union(*files(warehouse).values()), set(manifest(warehouse)["previous_files"])
        assert on_disk(warehouse) == current | previous
        assert (first in on_disk(warehouse)) == (n == 1)  # kept while the previous publication reads it
    assert not stray.exists()


def test_a_reader_holding_the_previous_views_file_keeps_reading(warehouse):
    publish(warehouse)
    sql = "SELECT count(*), min(charge_code) FROM billing.rated_usage"
    code = (f"import duckdb, sys\ncon = duckdb.connect({str(snapshot_path(warehouse))!r}, read_only=True)\n"
            f"for line in sys.stdin:\n    print(con.execute({sql!r}).fetchall(), flush=True)\n")
    reader = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "[(300, 'charge_code-0')]"
        with connect(warehouse) as con:
            con.execute("UPDATE billing.rated_usage SET charge_code = 'A-new' WHERE true")
        publish(warehouse)  # every partition rewritten, while the reader has the previous views file open
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "[(300, 'charge_code-0')]"  # it reads the publication it opened
    finally:
        reader.stdin.close()
        reader.wait(30)
    assert query(warehouse, sql) == [(300, "A-new")]  # a new connection reads the new one


def test_no_personal_value_is_written_to_any_published_file(warehouse):
    publish(warehouse)
    with connect(warehouse, read_only=True) as live:
        secrets = [v for row in live.execute("SELECT name, email, phone, address_line FROM core.customers").fetchall() for v in row]
    assert len(secrets) == 20
    folder = snapshot_dir(warehouse)
    published = [snapshot_path(warehouse), *folder.rglob("*")]
    raw = b"".join(p.read_bytes() for p in published if p.is_file())
    assert b"customer-0@masked.invalid" in raw  # the bytes hold values as written (the Parquet statistics): a probe sees them
    assert [s for s in secrets if s.encode() in raw] == []
    for file in folder.rglob("*.parquet"):  # and no file's content holds one, read back
        texts = duckdb.execute(f"SELECT string_agg(columns(*)::VARCHAR, '|') FROM read_parquet('{file}')").fetchone()
        assert not [s for s in secrets if any(s in (t or "") for t in texts)], file
    assert query(warehouse, "SELECT name, email, phone, address_line FROM core.customers WHERE customer_id = 2") == [
        ("customer-2", "customer-2@masked.invalid", "masked", "masked")]


def test_every_contract_table_is_a_view_with_its_columns_types_and_comments(warehouse):
    publish(warehouse)
    columns = ("SELECT schema_name || '.' || table_name, column_name, data_type, comment FROM duckdb_columns() "
               "WHERE NOT internal AND database_name = current_database() ORDER BY ALL")
    with connect(warehouse, read_only=True) as live:
        expected = live.execute(columns).fetchall()
    assert query(warehouse, columns) == expected  # the warehouse's names, types and column comments, empty tables too
    views = query(warehouse, "SELECT schema_name || '.' || view_name, comment FROM duckdb_views() WHERE NOT internal")
    assert dict(views) == {q: t.description for q, t in TABLES.items()}
    assert query(warehouse, "SELECT count(*) FROM core.products") == [(0,)]
