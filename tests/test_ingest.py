"""Ingestion through the real Dagster assets: each file once, every record accounted for, faults quarantined."""

from __future__ import annotations

import shutil
from datetime import datetime

import duckdb
import pytest

from tests.extracts import DebeziumFile, write_usage
from tests.pipeline import failed_checks, run_ingest

T = datetime(2025, 1, 5, 12)


def customer(cid, email, state="CA", status="ACTIVE"):
    return dict(customer_id=cid, name=f"C{cid}", email=email, phone=None, address_line="1 Main St", city="X", state=state,
                postal_code="1", country="US", customer_type="INDIVIDUAL", status=status, created_at=T)


def query(warehouse, sql, params=None):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params).fetchall()


@pytest.fixture()
def zone(tmp_path):
    return tmp_path / "landing", tmp_path / "w.duckdb"


def test_redelivered_file_loads_nothing_twice(zone):
    landing, warehouse = zone
    f = DebeziumFile("customers").create(10, T, customer(1, "a@x")).write(landing, "customers-2025-01-05.jsonl")
    assert run_ingest(warehouse, landing).success
    shutil.copyfile(f, f.with_name("customers-2025-01-05-redelivery.jsonl"))  # same bytes, new name
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    assert run_ingest(warehouse, landing).success  # and a third run sees nothing new at all
    assert query(warehouse, "SELECT count(*) FROM raw.customers") == [(1,)]
    assert query(warehouse, "SELECT file, status, duplicate_of FROM audit.ingested_files ORDER BY file") == [
        ("crm/customers/customers-2025-01-05-redelivery.jsonl", "DUPLICATE", "crm/customers/customers-2025-01-05.jsonl"),
        ("crm/customers/customers-2025-01-05.jsonl", "LOADED", None),
    ]


def test_duplicates_out_of_order_deletes_and_tombstones(zone):
    landing, warehouse = zone
    v1, v2, v3 = customer(1, "old@x"), customer(1, "new@x"), customer(1, "newest@x")
    (DebeziumFile("customers")
        .update(30, datetime(2025, 1, 3), v2, v3)   # arrives first, happened last (position 30)
        .create(10, datetime(2025, 1, 1), v1)
        .update(20, datetime(2025, 1, 2), v1, v2)
        .update(20, datetime(2025, 1, 2), v1, v2)   # duplicate delivery of the same event
        .create(40, T, customer(2, "two@x"))
        .delete(50, T, customer(2, "two@x"))
        .tombstone({"customer_id": 2})
        .write(landing, "customers-2025-01-05.jsonl"))
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    assert query(warehouse, "SELECT count(*) FROM raw.customers") == [(7,)]  # raw keeps everything as received
    assert query(warehouse, "SELECT customer_id, email, is_deleted FROM core.customers ORDER BY 1") == [
        (1, "newest@x", False), (2, "two@x", True),
    ]
    assert query(warehouse, "SELECT email, valid_from, valid_to FROM core.customers_history WHERE customer_id = 1 ORDER BY _position") == [
        ("old@x", datetime(2025, 1, 1), datetime(2025, 1, 2)),
        ("new@x", datetime(2025, 1, 2), datetime(2025, 1, 3)),
        ("newest@x", datetime(2025, 1, 3), datetime(9999, 12, 31)),
    ]


def test_malformed_records_are_quarantined_with_reasons_and_the_run_succeeds(zone):
    landing, warehouse = zone
    (DebeziumFile("customers")
        .create(10, T, customer(1, "ok@x"))
        .raw('{"key": {"customer_id": 2}, "value": {"op": "c", "after": {"customer_id": 2, ')  # truncated JSON
        .create(12, T, customer(3, "bad@x", status="ACTVE"))                                 # not an allowed value
        .create(13, T, {**customer(4, "x@x"), "name": None})                                  # required column missing
        .write(landing, "customers-2025-01-05.jsonl"))
    write_usage(landing, "usage_records-2025-01-31.csv", [
        dict(op="I", seq=1, event_id="e1", subscription_id=1, metric="data_mb", quantity="12.5", unit="MB", event_time=T),
        dict(op="I", seq=2, event_id="e2", subscription_id=1, metric="data_mb", quantity="abc", unit="MB", event_time=T),
        dict(op="X", seq=3, event_id="e3", subscription_id=1, metric="data_mb", quantity="1", unit="MB", event_time=T),
    ])
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    assert query(warehouse, "SELECT file, records_read, records_loaded, records_quarantined FROM audit.ingested_files ORDER BY 1") == [
        ("crm/customers/customers-2025-01-05.jsonl", 4, 1, 3),
        ("usage/usage_records/usage_records-2025-01-31.csv", 3, 1, 2),
    ]
    reasons = query(warehouse, "SELECT entity, record_no, reason FROM audit.quarantine ORDER BY entity, record_no")
    assert [(e, n) for e, n, _ in reasons] == [("customers", 2), ("customers", 3), ("customers", 4), ("usage_records", 2), ("usage_records", 3)]
    text = " | ".join(r for _, _, r in reasons).lower()
    for expected in ("json", "status", "name", "quantity", "op"):
        assert expected in text, f"no reason mentions {expected!r}: {text}"
    assert query(warehouse, "SELECT event_id, quantity FROM core.usage_events") == [("e1", __import__("decimal").Decimal("12.5"))]


def test_unreadable_and_unknown_files_are_recorded_not_fatal(zone):
    landing, warehouse = zone
    bad = landing / "usage" / "usage_records" / "usage_records-2025-01-31.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PAR1 this is not parquet")
    stray = landing / "crm" / "leads" / "leads-2025-01-01.jsonl"
    stray.parent.mkdir(parents=True)
    stray.write_text("{}\n")
    result = run_ingest(warehouse, landing)
    assert result.success
    assert query(warehouse, "SELECT file, status FROM audit.ingested_files ORDER BY file") == [
        ("crm/leads/leads-2025-01-01.jsonl", "UNKNOWN_ENTITY"),
        ("usage/usage_records/usage_records-2025-01-31.parquet", "UNREADABLE"),
    ]
