"""Issue 7 through the real Dagster ingest: a bad record is quarantined with its reason, its file's
good records load, and every record is accounted for (the ``records_accounted_for`` check)."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tests.extracts import DebeziumFile
from tests.pipeline import failed_checks, run_ingest

T = datetime(2025, 1, 5, 12)
T_MS = 1736078400000  # T in epoch milliseconds
USAGE_HEADER = "op,seq,event_id,subscription_id,metric,quantity,unit,event_time,zone,attributes"


def query(warehouse, sql, params=None):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params).fetchall()


def customer(cid):
    return dict(customer_id=cid, name=f"C{cid}", email=None, phone=None, address_line=None, city=None, state=None,
                postal_code=None, country="US", customer_type="INDIVIDUAL", status="ACTIVE", created_at=T)


def account(aid, terms=14):
    return dict(account_id=aid, customer_id=1, account_number=f"A-{aid}", billing_cycle="MONTHLY", bill_cycle_day=1,
                payment_method="CARD", payment_terms_days=terms, credit_limit=None, currency="USD", status="ACTIVE",
                created_at=T)


def debezium_line(entity_key: dict, after: dict, lsn: int, ts_ms: int, op: str = "c") -> str:
    """A Kafka record with a raw ``source`` (positions and times a helper would not write)."""
    value = {"before": None, "after": after, "op": op, "source": {"lsn": lsn, "ts_ms": ts_ms}}
    return json.dumps({"key": entity_key, "value": value}, default=str)


def usage_line(seq, quantity="1", attributes=""):
    return f"I,{seq},e{seq},5,data_mb,{quantity},MB,2025-01-05T12:00:00Z,DOMESTIC,{attributes}"


def land(landing: Path, rel: str, content: bytes | str) -> Path:
    p = landing / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


def ingest(landing: Path, warehouse: Path) -> tuple[dict, dict]:
    """Run the ingest job; return the ledger {file: (status, read, loaded, quarantined)} and {(file, record_no): reason}."""
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []  # records_accounted_for passes
    ledger = query(warehouse, "SELECT file, status, records_read, records_loaded, records_quarantined FROM audit.ingested_files")
    reasons = query(warehouse, "SELECT file, record_no, reason FROM audit.quarantine")
    return {f: tuple(rest) for f, *rest in ledger}, {(f, n): r for f, n, r in reasons}


@pytest.fixture()
def zone(tmp_path):
    return tmp_path / "landing", tmp_path / "w.duckdb"


def test_bad_position_time_or_bom_loses_no_good_record(zone):
    landing, warehouse = zone
    lines = [debezium_line({"customer_id": 1}, customer(1), 10, T_MS),
             debezium_line({"customer_id": 2}, customer(2), 2**70, T_MS),   # Int128 position
             debezium_line({"customer_id": 3}, customer(3), 12, 10**20),    # Int128 milliseconds
             debezium_line({"customer_id": 4}, customer(4), 13, T_MS)]
    land(landing, "crm/customers/customers-2025-01-05.jsonl", b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    land(landing, "crm/customers/customers-2025-01-06.jsonl.gz",
         gzip.compress((debezium_line({"customer_id": 5}, customer(5), 14, T_MS) + "\n").encode()))
    # an account update dated in the year 33658 would end the account's first version after its start
    accounts = [debezium_line({"account_id": 7}, account(7), 20, T_MS),
                debezium_line({"account_id": 7}, account(7, terms=30), 21, 10**15, op="u")]
    land(landing, "crm/billing_accounts/billing_accounts-2025-01-05.jsonl", "\n".join(accounts) + "\n")
    ledger, reasons = ingest(landing, warehouse)
    assert ledger == {
        "crm/customers/customers-2025-01-05.jsonl": ("LOADED", 4, 2, 2),
        "crm/customers/customers-2025-01-06.jsonl.gz": ("LOADED", 1, 1, 0),
        "crm/billing_accounts/billing_accounts-2025-01-05.jsonl": ("LOADED", 2, 1, 1),
    }
    window = "is outside the plausible time window [1970-01-01, 2100-01-01)"
    assert reasons == {
        ("crm/customers/customers-2025-01-05.jsonl", 2): "source.lsn: 1180591620717411303424 is out of range for BIGINT",
        ("crm/customers/customers-2025-01-05.jsonl", 3): f"source.ts_ms: 100000000000000000000 {window}",
        ("crm/billing_accounts/billing_accounts-2025-01-05.jsonl", 2): f"source.ts_ms: 1000000000000000 {window}",
    }
    assert query(warehouse, "SELECT customer_id FROM core.customers ORDER BY 1") == [(1,), (4,), (5,)]
    assert query(warehouse, "SELECT payment_terms_days, valid_from, valid_to FROM core.billing_accounts_history") == [
        (14, T, datetime(9999, 12, 31))]


def test_malformed_csv_lines_are_records_of_their_own(zone):
    landing, warehouse = zone
    usage = "usage/usage_records/"
    land(landing, usage + "utf8.csv", (USAGE_HEADER + "\n" + usage_line(1) + "\n").encode()
         + b"I,2,e\xff2,5,data_mb,1,MB,2025-01-05T12:00:00Z,DOMESTIC,\n" + (usage_line(3) + "\n").encode())
    land(landing, usage + "quote.csv", "\n".join([USAGE_HEADER, usage_line(4), usage_line(5).replace(",e5,", ',"e5,'),
                                                  usage_line(6), usage_line(7)]) + "\n")
    land(landing, usage + "noseq.csv", USAGE_HEADER.replace("seq,", "") + "\n" + usage_line(8).replace("8,", "", 1) + "\n")
    land(landing, usage + "semicolon.csv", "\n".join([USAGE_HEADER, usage_line(9), usage_line(10)]).replace(",", ";") + "\n")
    land(landing, usage + "zero.csv", b"")
    land(landing, usage + "packed.csv.gz", gzip.compress(("\ufeff" + USAGE_HEADER + "\n" + usage_line(11) + "\n").encode()))
    ledger, reasons = ingest(landing, warehouse)
    assert ledger == {
        usage + "utf8.csv": ("LOADED", 3, 2, 1),
        usage + "quote.csv": ("LOADED", 4, 3, 1),
        usage + "noseq.csv": ("LOADED", 1, 0, 1),
        usage + "semicolon.csv": ("LOADED", 2, 0, 2),
        usage + "zero.csv": ("LOADED", 0, 0, 0),
        usage + "packed.csv.gz": ("LOADED", 1, 1, 0),
    }
    assert reasons == {
        (usage + "utf8.csv", 2): "invalid UTF-8 at byte 5",
        (usage + "quote.csv", 2): "unterminated quote",
        (usage + "noseq.csv", 1): "missing required column seq",
        (usage + "semicolon.csv", 1): "wrong delimiter: fields are separated by ';', not ','",
        (usage + "semicolon.csv", 2): "wrong delimiter: fields are separated by ';', not ','",
    }
    assert query(warehouse, "SELECT event_id FROM core.usage_events ORDER BY 1") == [
        ("e1",), ("e11",), ("e3",), ("e4",), ("e6",), ("e7",)]


def test_values_are_loaded_exactly_or_quarantined(zone):
    landing, warehouse = zone
    payments = DebeziumFile("payments")
    for pid, amount in ((1, "1.2345678e2"), (2, "1e-5"), (3, "1.5e2")):
        payments.create(pid, T, dict(payment_id=pid, account_id=7, amount=amount, currency="USD", status="SUCCEEDED",
                                     received_at=T))
    payments.write(landing, "payments-2025-01-05.jsonl")
    charge = dict(plan_id=1, charge_code="data", charge_type="USAGE", metric="data_mb", aggregation="SUM",
                  charge_model="PER_UNIT", billing_timing="IN_ARREARS", prorate=False, unit_price="0.01",
                  effective_from=datetime(2025, 1, 1))
    (DebeziumFile("plan_charges").snapshot(1, T, charge | {"price_id": 1})
        .snapshot(2, T, charge | {"price_id": 2, "metric": "sms", "properties": "{oops"})
        .write(landing, "plan_charges-2025-01-01.jsonl"))
    land(landing, "usage/usage_records/usage-2025-01-05.csv", "\n".join([
        USAGE_HEADER, usage_line(1, "12.5"), usage_line(2, "100000000000000000000"), usage_line(3, "1.5e-11"),
        usage_line(4, attributes='"{unit_price: 2.99"'), usage_line(5, attributes="not-json")]) + "\n")
    frame = pl.DataFrame({"op": ["I", "I"], "seq": [6, 7], "event_id": ["e6", "e7"], "subscription_id": [5, 5],
                          "metric": ["data_mb"] * 2, "unit": ["MB"] * 2, "event_time": [T, T], "zone": [None, None],
                          "attributes": [None, None],
                          "quantity": pl.Series([Decimal("1.123456789012"), Decimal("2.5")], dtype=pl.Decimal(38, 12))})
    frame.write_parquet(landing / "usage/usage_records/usage-2025-01-05.parquet")
    ledger, reasons = ingest(landing, warehouse)
    assert ledger == {
        "payments/payments/payments-2025-01-05.jsonl": ("LOADED", 3, 1, 2),
        "catalog/plan_charges/plan_charges-2025-01-01.jsonl": ("LOADED", 2, 1, 1),
        "usage/usage_records/usage-2025-01-05.csv": ("LOADED", 5, 1, 4),
        "usage/usage_records/usage-2025-01-05.parquet": ("LOADED", 2, 1, 1),
    }
    assert reasons == {
        ("payments/payments/payments-2025-01-05.jsonl", 1): "amount: '1.2345678e2' has more than 4 decimal places (DECIMAL(18,4))",
        ("payments/payments/payments-2025-01-05.jsonl", 2): "amount: '1e-5' has more than 4 decimal places (DECIMAL(18,4))",
        ("catalog/plan_charges/plan_charges-2025-01-01.jsonl", 2): "properties: '{oops' is not a JSON object",
        ("usage/usage_records/usage-2025-01-05.csv", 2):
            "quantity: 100000000000000000000 is too large (must be < 1000000000000 per event)",
        ("usage/usage_records/usage-2025-01-05.csv", 3): "quantity: '1.5e-11' has more than 10 decimal places (DECIMAL(38,10))",
        ("usage/usage_records/usage-2025-01-05.csv", 4): "attributes: '{unit_price: 2.99' is not a JSON object",
        ("usage/usage_records/usage-2025-01-05.csv", 5): "attributes: 'not-json' is not a JSON object",
        ("usage/usage_records/usage-2025-01-05.parquet", 1):
            "quantity: '1.123456789012' has more than 10 decimal places (DECIMAL(38,10))",
    }
    assert query(warehouse, "SELECT payment_id, amount FROM core.payments") == [(3, Decimal("150"))]
    assert query(warehouse, "SELECT event_id, quantity FROM core.usage_events ORDER BY 1") == [
        ("e1", Decimal("12.5")), ("e7", Decimal("2.5"))]
