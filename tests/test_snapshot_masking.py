"""The analysts' snapshot of a pipeline-built warehouse (tests/test_marts.py's) masks every personal column and holds
no unmasked value in any published file: not in a view, not in a Parquet file's pages or statistics."""

from __future__ import annotations

import duckdb
import pytest

from tests.test_marts import MALFORMED_CUSTOMER, built_once
from warehouse.connection import snapshot_dir
from warehouse.snapshot import MASKS, publish
from warehouse.tables import TABLES

PERSONAL = {q: [c.name for c in t.columns if c.personal] for q, t in TABLES.items() if any(c.personal for c in t.columns)}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    warehouse, _ = built_once(tmp_path_factory)
    return warehouse, publish(warehouse).path


def personal_values(con) -> set[str]:
    """Every distinct personal value the live warehouse holds (names, e-mails, phones, addresses, raw payloads)."""
    values = set()
    for table, columns in PERSONAL.items():
        for column in columns:
            values |= {v for (v,) in con.execute(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL").fetchall()}
    return values


def test_the_contract_marks_customers_personal_columns_and_quarantined_payloads():
    assert {q: cols for q, cols in PERSONAL.items() if q.startswith(("raw.", "core."))} == {
        t: ["name", "email", "phone", "address_line"] for t in ("raw.customers", "core.customers_history", "core.customers")}
    assert PERSONAL["audit.quarantine"] == ["raw_payload"]
    assert PERSONAL["marts.customer_360"] == ["customer_name", "email"]
    assert {c.personal for cols in TABLES.values() for c in cols.columns if c.personal} == set(MASKS)


def test_personal_columns_are_masked_deterministically(published):
    _, snapshot = published
    with duckdb.connect(str(snapshot), read_only=True) as con:
        got = con.execute("SELECT customer_id, name, email, phone, address_line, city FROM core.customers ORDER BY 1").fetchall()
        assert got[0] == (1, "customer-1", "customer-1@masked.invalid", "masked", "masked", "Springfield")
        assert len(got) == 5 and all(name == f"customer-{cid}" for cid, name, *_ in got)
        assert con.execute("SELECT customer_name, email FROM marts.customer_360 WHERE customer_id = 3").fetchall() == [
            ("customer-3", "customer-3@masked.invalid")]
        payloads = con.execute("SELECT entity, raw_payload FROM audit.quarantine").fetchall()
        assert ("customers", "(masked: personal data)") in payloads


def test_the_snapshot_has_every_table_with_its_rows_and_comments(published):
    warehouse, snapshot = published
    with duckdb.connect(str(warehouse), read_only=True) as live, duckdb.connect(str(snapshot), read_only=True) as snap:
        tables = "SELECT schema_name || '.' || table_name, comment FROM duckdb_tables() ORDER BY 1"
        views = "SELECT schema_name || '.' || view_name, comment FROM duckdb_views() WHERE NOT internal ORDER BY 1"
        live_tables = [(t, live.execute(f"SELECT count(*) FROM {t}").fetchone()[0], c) for t, c in live.execute(tables).fetchall()]
        snap_tables = [(t, snap.execute(f"SELECT count(*) FROM {t}").fetchone()[0], c) for t, c in snap.execute(views).fetchall()]
        assert snap_tables == live_tables and sorted(t for t, *_ in snap_tables) == sorted(TABLES)
        columns = "SELECT schema_name, table_name, column_name, data_type, comment FROM duckdb_columns() WHERE NOT internal ORDER BY ALL"
        assert snap.execute(columns).fetchall() == live.execute(columns).fetchall()
        unmasked = "SELECT * EXCLUDE (name, email, phone, address_line) FROM core.customers ORDER BY customer_id"
        assert snap.execute(unmasked).fetchall() == live.execute(unmasked).fetchall()


def test_no_personal_value_is_left_anywhere_in_the_snapshot_file(published):
    warehouse, snapshot = published
    with duckdb.connect(str(warehouse), read_only=True) as live:
        values = personal_values(live)
    assert {"Customer 1", "c1@example.com", "555-0100", "1 Main St", MALFORMED_CUSTOMER} <= values
    files = [snapshot, *(f for f in snapshot_dir(warehouse).rglob("*") if f.is_file())]
    live_bytes, snap_bytes = warehouse.read_bytes(), b"".join(f.read_bytes() for f in files)
    probes = [v.encode() for v in ("c1@example.com", "quarantined@example.org", "Quarantined Person")]
    assert all(p in live_bytes for p in probes)  # the live file stores them as written: the probe can find them
    assert [p for p in probes if p in snap_bytes] == []
    with duckdb.connect(str(snapshot), read_only=True) as snap:
        text_columns = snap.execute("""SELECT schema_name, table_name, column_name FROM duckdb_columns()
                                       WHERE data_type = 'VARCHAR' AND NOT internal""").fetchall()
        found = [(s, t, c) for s, t, c in text_columns for v in values if snap.execute(
            f'SELECT count(*) FROM {s}.{t} WHERE contains("{c}", ?)', [v]).fetchone()[0]]
    assert found == []


def test_republishing_replaces_the_file_atomically(published):
    warehouse, snapshot = published
    before = snapshot.stat().st_ino
    assert publish(warehouse).path == snapshot
    assert snapshot.stat().st_ino != before  # a new file renamed into place, not the old one rewritten
    assert not list(snapshot.parent.glob("*.tmp*")) and not list(snapshot_dir(warehouse).glob("*.tmp"))
