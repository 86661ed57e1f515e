"""Readers: every Debezium op, encodings, quarantine reasons, table extracts, row hash, landing."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from sources.entities import CHANGE_LOG_COLUMNS, ENTITIES
from sources.landing import discover
from sources.readers import (
    ExtractReadError, _json_loads, _text, change_log_schema, entity_for_path, polars_dtype, read_extract, reject_schema,
)

CUST = ENTITIES["customers"]
ACCT = ENTITIES["billing_accounts"]
USAGE = ENTITIES["usage_records"]


def _cust(cid=1, **over):
    row = dict(customer_id=cid, name="Ann Lee", email="ann@example.com", phone=None, address_line="1 Main St",
               city="Austin", state="TX", postal_code="78701", country="US", customer_type="INDIVIDUAL",
               status="ACTIVE", created_at=1735689600000000)
    row.update(over)
    return row


def _line(op, after=None, before=None, lsn=100, ts_ms=1735689600000, key=None, table="customers"):
    img = after if after is not None else before
    key = key or {"customer_id": img["customer_id"]}
    return json.dumps({"key": key, "value": {"before": before, "after": after, "op": op,
                                             "source": {"lsn": lsn, "ts_ms": ts_ms, "table": table}, "ts_ms": ts_ms}})


def _write(root: Path, entity, name, lines) -> Path:
    p = root / entity.system / entity.name / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(lines) + "\n")
    return p


def _read(root, entity, lines, name=None):
    ext = "jsonl"
    p = _write(root, entity, name or f"{entity.name}-2025-01-31.{ext}", lines)
    r = read_extract(p, entity, root)
    assert r.changes.height + r.rejects.height == r.records_read
    assert r.changes.schema == change_log_schema(entity)
    assert r.rejects.schema == reject_schema()
    return r


def test_polars_dtype_and_schema():
    assert polars_dtype("BIGINT") == pl.Int64
    assert polars_dtype("INTEGER") == pl.Int32
    assert polars_dtype("DECIMAL(38,10)") == pl.Decimal(38, 10)
    assert polars_dtype("TIMESTAMP") == pl.Datetime("us")
    assert polars_dtype("VARCHAR[]") == pl.List(pl.String)
    names = list(change_log_schema(CUST))
    assert names == CUST.column_names + [c.name for c in CHANGE_LOG_COLUMNS]


def test_every_debezium_op(tmp_path):
    lines = [
        _line("r", after=_cust(), lsn=10),
        _line("c", after=_cust(2), lsn=11),
        _line("u", before=_cust(2), after=_cust(2, email="new@example.com", address_line="__debezium_unavailable_value"), lsn=13),
        _line("d", before=_cust(2), lsn=15),
        json.dumps({"key": {"customer_id": 2}, "value": None}),
        _line("u", after={k: v for k, v in _cust(1, city="Dallas").items() if k != "phone"}, lsn=12),  # omitted col
    ]
    r = _read(tmp_path, CUST, lines)
    ch = r.changes
    assert ch["_op"].to_list() == ["r", "c", "u", "d", "t", "u"]  # file order
    assert ch["_position"].to_list() == [10, 11, 13, 15, None, 12]
    assert ch["_record_no"].to_list() == [1, 2, 3, 4, 5, 6]
    assert ch["_file"][0] == "crm/customers/customers-2025-01-31.jsonl"
    assert ch["_unavailable"].to_list() == [[], [], ["address_line"], [], [], ["phone"]]
    upd = ch.row(2, named=True)
    assert upd["address_line"] is None and upd["email"] == "new@example.com"
    dele = ch.row(3, named=True)
    assert dele["name"] == "Ann Lee" and dele["customer_id"] == 2  # before image
    tomb = ch.row(4, named=True)
    assert tomb["customer_id"] == 2 and tomb["name"] is None and tomb["_source_ts"] is None
    assert ch["_source_ts"][0] == datetime(2025, 1, 1)
    assert ch["created_at"][0] == datetime(2025, 1, 1)
    assert r.rejects.height == 0


def test_delete_without_before_uses_key_and_bare_envelope(tmp_path):
    rec = {"key": {"customer_id": 7}, "value": {"before": None, "after": None, "op": "d", "source": {"lsn": 5, "ts_ms": 0}}}
    bare = {"before": None, "after": _cust(8), "op": "c", "source": {"lsn": 6, "ts_ms": 0}}
    wrapped = {"schema": {}, "payload": bare | {"after": _cust(9)}}
    r = _read(tmp_path, CUST, [json.dumps(rec), json.dumps(bare), json.dumps({"key": None, "value": wrapped})])
    assert r.changes["customer_id"].to_list() == [7, 8, 9]
    assert r.changes["_op"].to_list() == ["d", "c", "c"]


def test_date_and_timestamp_encodings(tmp_path):
    base = dict(order_number="O-1", account_id=5, order_type="NEW_SERVICE", status="CREATED")
    rows = [
        dict(order_id=1, effective_date=20089, created_at=1735689600000000),  # integer days / micros
        dict(order_id=2, effective_date="2025-01-01", created_at="2025-01-01T00:00:00Z"),
        dict(order_id=3, effective_date="2025-01-01", created_at="2025-01-01T02:00:00.5+02:00"),
        dict(order_id=4, effective_date="2025-01-01", created_at="2025-01-01 00:00:00"),
    ]
    lines = [_line("c", after=base | r, key={"order_id": r["order_id"]}) for r in rows]
    r = _read(tmp_path, ENTITIES["orders"], lines)
    assert r.rejects.height == 0
    assert r.changes["effective_date"].to_list() == [date(2025, 1, 1)] * 4
    assert r.changes["created_at"].to_list() == [
        datetime(2025, 1, 1), datetime(2025, 1, 1), datetime(2025, 1, 1, 0, 0, 0, 500000), datetime(2025, 1, 1)]


def test_decimal_strings_and_precision(tmp_path):
    base = dict(account_id=1, currency="USD", status="SUCCEEDED", method="CARD", received_at=0)
    rows = [dict(payment_id=1, amount="12.5"), dict(payment_id=2, amount="12.12345"), dict(payment_id=3, amount=7)]
    lines = [_line("c", after=base | r, key={"payment_id": r["payment_id"]}) for r in rows]
    r = _read(tmp_path, ENTITIES["payments"], lines)
    assert r.changes["amount"].to_list() == [Decimal("12.5"), Decimal("7")]
    assert r.rejects["reason"].to_list() == ["amount: '12.12345' has more than 4 decimal places (DECIMAL(18,4))"]


def test_malformed_records_are_quarantined(tmp_path):
    good = _line("c", after=_cust(1), lsn=1)
    lines = [
        good,
        '{"key": {"customer_id": 2} "value": null}',
        _line("c", after={k: v for k, v in _cust(3).items() if k != "name"}, lsn=3),
        _line("c", after=_cust(4, status="ACTVE"), lsn=4),
        _line("c", after=_cust(5, customer_id="abc"), lsn=5, key={"customer_id": 5}),
        _line("x", after=_cust(6), lsn=6),
        _line("c", after=_cust(7, country=None), lsn=7),
        json.dumps({"key": {"customer_id": 8}, "value": {"op": "c", "after": _cust(8), "source": {}}}),
        "[1, 2]",
        "",
    ]
    r = _read(tmp_path, CUST, lines)
    assert r.records_read == 9  # blank lines are not records
    assert r.changes["customer_id"].to_list() == [1]
    reasons = dict(zip(r.rejects["_record_no"].to_list(), r.rejects["reason"].to_list()))
    assert reasons == {
        2: "invalid JSON: Expecting ',' delimiter at char 27",
        3: "missing required column name",
        4: "status: 'ACTVE' not in (ACTIVE, SUSPENDED, CLOSED)",
        5: "customer_id: cannot parse 'abc' as BIGINT",
        6: "unknown op 'x'",
        7: "country: required value is null",
        8: "missing or invalid source.lsn (the change's position)",
        9: "invalid record: not a JSON object",
    }
    assert r.rejects.filter(pl.col("_record_no") == 4)["_position"].item() == 4
    assert r.rejects.filter(pl.col("_record_no") == 2)["raw_payload"].item() == lines[1]


def test_domain_checks(tmp_path):
    acct = dict(account_id=1, customer_id=1, account_number="A-1", billing_cycle="MONTHLY", bill_cycle_day=42,
                payment_method="CARD", payment_terms_days=14, credit_limit="100", currency="usd", status="ACTIVE",
                created_at=0)
    lines = [_line("c", after=acct, key={"account_id": 1}),
             _line("c", after=acct | {"account_id": 2, "bill_cycle_day": 31, "currency": "usd"}, key={"account_id": 2}),
             _line("c", after=acct | {"account_id": 3, "bill_cycle_day": 15, "currency": "EUR"}, key={"account_id": 3})]
    r = _read(tmp_path, ACCT, lines)
    assert r.rejects["reason"].to_list() == [
        "bill_cycle_day: 42 not in 1..31",
        "currency: 'usd' is not an ISO 4217 code (3 upper-case letters)",
    ]
    assert r.changes["account_id"].to_list() == [3]


def test_delete_and_tombstone_validate_only_the_key(tmp_path):
    lines = [_line("d", before={"customer_id": 1, "status": "WHATEVER"}, lsn=1),
             json.dumps({"key": {"customer_id": 1}, "value": None}),
             json.dumps({"key": {}, "value": None})]
    r = _read(tmp_path, CUST, lines)
    assert r.changes["_op"].to_list() == ["d", "t"]
    assert r.rejects["reason"].to_list() == ["tombstone without key"]


def _usage_frame():
    return pl.DataFrame({
        "op": ["I", "U", "D", "X", "I", "I"],
        "seq": [1, 2, 3, 4, 5, 6],
        "event_id": ["e1", "e1", "e1", "e2", "e3", "e4"],
        "subscription_id": [10, 10, 10, 11, 12, 13],
        "metric": ["data_mb", "data_mb", None, "sms", "sms", "voice_min"],
        "quantity": ["1.5", "2.5", None, "1", "-1", "3"],
        "unit": ["MB", "MB", None, "EVENT", "EVENT", "MIN"],
        "event_time": ["2025-01-05T10:00:00Z", "2025-01-05T10:00:00Z", None, "2025-01-05 11:00:00",
                       "2025-01-05 12:00:00", "2025-01-05T13:00:00.250Z"],
        "zone": ["DOMESTIC"] * 6,
        "attributes": [None, '{"time_band":"PEAK"}', None, None, None, None],
    })


def test_usage_csv_and_parquet(tmp_path):
    d = tmp_path / "usage" / "usage_records"
    d.mkdir(parents=True)
    f = _usage_frame()
    f.write_csv(d / "u-1.csv")
    typed = f.with_columns(pl.col("quantity").cast(pl.Decimal(38, 10)),
                           pl.col("event_time").str.replace("Z$", "").str.to_datetime(time_unit="ns", time_zone="UTC"))
    typed.write_parquet(d / "u-2.parquet")
    for name in ("u-1.csv", "u-2.parquet"):
        r = read_extract(d / name, USAGE, tmp_path)
        assert r.records_read == 6 and r.changes.height == 4
        assert r.changes["_op"].to_list() == ["c", "u", "d", "c"]
        assert r.changes["_position"].to_list() == [1, 2, 3, 6]
        assert r.changes["quantity"].to_list()[:2] == [Decimal("1.5"), Decimal("2.5")]
        assert r.changes["_source_ts"][3] == datetime(2025, 1, 5, 13, 0, 0, 250000)
        assert r.changes["_unavailable"].to_list() == [[]] * 4
        reasons = r.rejects["reason"].to_list()
        assert reasons == ["unknown op 'X' (expected I, U or D)", "quantity: -1 is negative (must be >= 0)"]
        assert json.loads(r.rejects["raw_payload"][0])["op"] == "X"
    # the same rows hash the same whatever the file format
    a = read_extract(d / "u-1.csv", USAGE, tmp_path).changes["_row_hash"]
    b = read_extract(d / "u-2.parquet", USAGE, tmp_path).changes["_row_hash"]
    assert a.to_list() == b.to_list()


def test_usage_csv_unparsable_missing_and_ragged(tmp_path):
    d = tmp_path / "usage" / "usage_records"
    d.mkdir(parents=True)
    (d / "u.csv").write_text(
        "op,seq,event_id,subscription_id,metric,quantity,unit,event_time,zone,attributes\n"
        "I,1,e1,5,data_mb,abc,MB,2025-01-03T10:00:00Z,DOMESTIC,\n"
        "I,2,e2,,data_mb,1,MB,2025-01-03T10:00:00Z,DOMESTIC,\n"
        "I,x,e3,5,data_mb,1,MB,2025-01-03T10:00:00Z,DOMESTIC,\n"
        "I,4,e4,5,data_mb,1,MB,2025-01-03T10:00:00Z,DOMESTIC,,extra\n"
        "I,5,e5,5,data_mb,1,MB,2025-01-03T10:00:00Z,DOMESTIC,\n")
    r = read_extract(d / "u.csv", USAGE, tmp_path)
    assert r.records_read == 5 and r.changes["event_id"].to_list() == ["e5"]
    assert r.rejects["reason"].to_list() == [
        "quantity: cannot parse 'abc' as DECIMAL(38,10)",
        "subscription_id: required value is null",
        "seq: cannot parse 'x' as BIGINT",
        "CSV row has 11 fields, header has 10",
    ]
    (d / "v.csv").write_text("op,seq,event_id\nI,1,e1\n")
    r = read_extract(d / "v.csv", USAGE, tmp_path)
    assert r.rejects["reason"].to_list() == ["missing required column subscription_id"]


def test_unreadable_file_raises(tmp_path):
    d = tmp_path / "usage" / "usage_records"
    d.mkdir(parents=True)
    _usage_frame().write_parquet(d / "ok.parquet")
    data = (d / "ok.parquet").read_bytes()
    (d / "bad.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(ExtractReadError, match="cannot read Parquet"):
        read_extract(d / "bad.parquet", USAGE, tmp_path)
    with pytest.raises(ExtractReadError):
        read_extract(d / "ok.parquet", CUST, tmp_path)  # wrong format for the entity


def test_row_hash_stable(tmp_path):
    r1 = _read(tmp_path, CUST, [_line("c", after=_cust(1), lsn=1), _line("c", after=_cust(1), lsn=2),
                                _line("c", after=_cust(1, email="x@y.z"), lsn=3)])
    h = r1.changes["_row_hash"].to_list()
    assert h[0] == h[1] and h[0] != h[2]
    # pinned: the canonical text and MD5 must never change across library versions
    import hashlib
    canon = "\x1f".join(["c", "1", "Ann Lee", "ann@example.com", "\\N", "1 Main St", "Austin", "TX", "78701", "US",
                         "INDIVIDUAL", "ACTIVE", "2025-01-01T00:00:00.000000", ""])
    assert h[0] == hashlib.md5(canon.encode()).hexdigest()
    # ISO vs integer encodings of the same value hash the same
    r2 = _read(tmp_path, CUST, [_line("c", after=_cust(1, created_at="2025-01-01T00:00:00Z"), lsn=9)], name="b.jsonl")
    assert r2.changes["_row_hash"][0] == h[0]


def test_entity_for_path_and_discover(tmp_path):
    p = _write(tmp_path, CUST, "customers-2025-01-31.jsonl", [_line("c", after=_cust(1))])
    _write(tmp_path, ENTITIES["orders"], "orders-2025-01-31.jsonl", [])
    (tmp_path / "crm" / "customers" / "notes.txt").write_text("x")
    (tmp_path / "crm" / "nope").mkdir()
    (tmp_path / "crm" / "nope" / "x.jsonl").write_text("{}")
    (tmp_path / "catalog" / "customers").mkdir(parents=True)
    (tmp_path / "catalog" / "customers" / "x.jsonl").write_text("{}")  # wrong system
    assert entity_for_path(p, tmp_path) is CUST
    assert entity_for_path(tmp_path / "crm" / "nope" / "x.jsonl", tmp_path) is None
    files = {f.relative_path: f for f in discover(tmp_path)}  # order and extensions: tests/test_landing.py
    assert {rel: f.entity_name for rel, f in files.items()} == {
        "crm/customers/customers-2025-01-31.jsonl": "customers",
        "orders/orders/orders-2025-01-31.jsonl": "orders",
        "catalog/customers/x.jsonl": None,
        "crm/customers/notes.txt": "customers",  # an entity folder, an unsupported extension
        "crm/nope/x.jsonl": None,
    }
    import hashlib
    f = files["crm/customers/customers-2025-01-31.jsonl"]
    assert f.sha256 == hashlib.sha256(p.read_bytes()).hexdigest() and f.size == p.stat().st_size


# ---------------------------------------------------------------------------------------------
# Issue 7: nothing lost, nothing changed on load

PAY = ENTITIES["payments"]
HEADER = "op,seq,event_id,subscription_id,metric,quantity,unit,event_time,zone,attributes"


def _usage_line(seq, quantity="1", event_time="2025-01-03T10:00:00Z", attributes=""):
    return f"I,{seq},e{seq},5,data_mb,{quantity},MB,{event_time},DOMESTIC,{attributes}"


def _usage_file(root: Path, name: str, content: bytes | str) -> Path:
    p = root / USAGE.system / USAGE.name / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


def _read_usage(root, name, content):
    r = read_extract(_usage_file(root, name, content), USAGE, root)
    assert r.changes.height + r.rejects.height == r.records_read
    assert r.changes.schema == change_log_schema(USAGE) and r.rejects.schema == reject_schema()
    return r


def _reasons(r) -> dict[int, str]:
    return dict(zip(r.rejects["_record_no"].to_list(), r.rejects["reason"].to_list()))


def _payment_line(pid, amount, lsn=None):
    after = dict(payment_id=pid, account_id=1, invoice_number=None, amount=amount, currency="USD", status="SUCCEEDED",
                 method="CARD", received_at=1735689600000000)
    return _line("c", after=after, key={"payment_id": pid}, lsn=lsn or pid, table="payments")


def test_out_of_range_lsn_or_ts_ms_rejects_only_its_record(tmp_path):
    lines = [_line("c", after=_cust(1), lsn=1),
             _line("c", after=_cust(2), lsn=2**70),            # Int128: not a BIGINT position
             _line("c", after=_cust(3), lsn=3, ts_ms=10**20),  # Int128 milliseconds
             _line("c", after=_cust(4), lsn=4, ts_ms=10**15),  # year 33658
             _line("x", after=_cust(5), lsn=2**70, ts_ms=10**20),  # bad op: its position and time are not stored
             _line("c", after=_cust(6), lsn=6)]
    r = _read(tmp_path, CUST, lines)
    assert r.changes["customer_id"].to_list() == [1, 6]
    assert _reasons(r) == {
        2: "source.lsn: 1180591620717411303424 is out of range for BIGINT",
        3: "source.ts_ms: 100000000000000000000 is outside the plausible time window [1970-01-01, 2100-01-01)",
        4: "source.ts_ms: 1000000000000000 is outside the plausible time window [1970-01-01, 2100-01-01)",
        5: "unknown op 'x'",
    }
    assert r.rejects["_position"].to_list() == [None, 3, 4, None]


def test_utf8_bom_is_not_part_of_the_first_record(tmp_path):
    p = _write(tmp_path, CUST, "customers-2025-01-31.jsonl", [_line("c", after=_cust(1), lsn=1), _line("c", after=_cust(2), lsn=2)])
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    r = read_extract(p, CUST, tmp_path)
    assert r.records_read == 2 and r.changes["customer_id"].to_list() == [1, 2] and r.rejects.height == 0
    r = _read_usage(tmp_path, "bom.csv", "\ufeff" + HEADER + "\n" + _usage_line(1) + "\n")
    assert r.records_read == 1 and r.changes["event_id"].to_list() == ["e1"]


def test_csv_invalid_utf8_rejects_only_its_row(tmp_path):
    content = (HEADER + "\n" + _usage_line(1) + "\n").encode() + b"I,2,e\xff2,5,data_mb,1,MB,2025-01-03T10:00:00Z,DOMESTIC,\n" \
        + (_usage_line(3) + "\n").encode()
    r = _read_usage(tmp_path, "utf8.csv", content)
    assert r.records_read == 3 and r.changes["event_id"].to_list() == ["e1", "e3"]
    assert _reasons(r) == {2: "invalid UTF-8 at byte 5"}
    assert r.rejects["raw_payload"].item() == "I,2,e\ufffd2,5,data_mb,1,MB,2025-01-03T10:00:00Z,DOMESTIC,"


def test_csv_record_is_one_physical_line(tmp_path):
    """An unterminated quote no longer swallows the rows after it: 4 lines are 4 records."""
    lines = [_usage_line(1), 'I,2,"e2,5,data_mb,1,MB,2025-01-03T10:00:00Z,DOMESTIC,', _usage_line(3), _usage_line(4)]
    r = _read_usage(tmp_path, "quote.csv", "\n".join([HEADER, *lines]) + "\n")
    assert r.records_read == 4 and r.changes["event_id"].to_list() == ["e1", "e3", "e4"]
    assert _reasons(r) == {2: "unterminated quote"}
    assert r.rejects["raw_payload"].item() == lines[1]
    # a quoted field spanning two lines is two broken records; other structural faults, each its own record
    lines = [_usage_line(1, attributes='"{""a"":1}"'), 'I,2,e2,5,data_mb,1,MB,2025-01-03T10:00:00Z,DOMESTIC,"{', '}"',
             "I,3,e3,5,data_mb,1,MB,2025-01-03T10:00:00Z", 'I,4,e4,5,data_mb,1,MB,2025-01-03T10:00:00Z,DOMESTIC,a"b"',
             "", "   ", _usage_line(5), "I,6,e6,5,data_mb,1,MB,2025-01-03T10:00:00Z,DOMESTIC,,x"]
    r = _read_usage(tmp_path, "faults.csv", "\r\n".join([HEADER, *lines]))
    assert r.records_read == 7  # blank lines are not records (their line numbers are kept)
    assert r.changes["event_id"].to_list() == ["e1", "e5"] and r.changes["attributes"][0] == '{"a":1}'
    assert r.changes["_record_no"].to_list() == [1, 8]
    assert _reasons(r) == {
        2: "unterminated quote", 3: "unterminated quote",
        4: "CSV row has 8 fields, header has 10",
        5: "malformed quoting (a quote inside an unquoted field)",
        9: "CSV row has 11 fields, header has 10",
    }


def test_table_extract_without_seq_or_with_the_wrong_delimiter(tmp_path):
    no_seq = HEADER.replace("seq,", "") + "\n" + _usage_line(1).replace("1,", "", 1) + "\n"
    r = _read_usage(tmp_path, "noseq.csv", no_seq)
    assert r.records_read == 1 and r.rejects["reason"].to_list() == ["missing required column seq"]
    _usage_frame().drop("seq").write_parquet(_usage_file(tmp_path, "noseq.parquet", b""))
    r = read_extract(tmp_path / "usage/usage_records/noseq.parquet", USAGE, tmp_path)
    assert r.records_read == 6 and set(r.rejects["reason"]) == {"missing required column seq"}
    semi = (HEADER + "\n" + _usage_line(1) + "\n" + _usage_line(2) + "\n").replace(",", ";")
    r = _read_usage(tmp_path, "semi.csv", semi)
    assert r.records_read == 2
    assert r.rejects["reason"].to_list() == ["wrong delimiter: fields are separated by ';', not ','"] * 2


def test_empty_csv_is_an_empty_delivery(tmp_path):
    for name, content in (("zero.csv", b""), ("header.csv", HEADER + "\n"), ("blank.csv", "\n\n")):
        r = _read_usage(tmp_path, name, content)
        assert (r.records_read, r.changes.height, r.rejects.height) == (0, 0, 0), name


def test_exponent_notation_is_exact_or_rejected(tmp_path):
    amounts = ["1.2345678e2", "1e-5", "1.5e2", "12.5E-1", "1e20", 123.45678, 150.0, 1.5e-3, "12345678901234567",
               "-0.5e1", "0.00012e4"]
    r = _read(tmp_path, PAY, [_payment_line(i, a) for i, a in enumerate(amounts, start=1)])
    assert dict(zip(r.changes["payment_id"], r.changes["amount"])) == {
        3: Decimal("150"), 4: Decimal("1.25"), 7: Decimal("150"), 8: Decimal("0.0015"), 11: Decimal("1.2")}
    assert _reasons(r) == {
        1: "amount: '1.2345678e2' has more than 4 decimal places (DECIMAL(18,4))",
        2: "amount: '1e-5' has more than 4 decimal places (DECIMAL(18,4))",
        5: "amount: '1e20' is too large for DECIMAL(18,4)",
        6: "amount: '123.45678' has more than 4 decimal places (DECIMAL(18,4))",
        9: "amount: '12345678901234567' is too large for DECIMAL(18,4)",
        10: "amount: -5 is not positive (must be > 0)",
    }
    lines = [_usage_line(1, "1.5e-11"), _usage_line(2, "1.23456789012e0"), _usage_line(3, "1.2345678901e0"),
             _usage_line(4, "2E+3"), _usage_line(5, "1e28"), _usage_line(6, "1.e1"), _usage_line(7, "e5")]
    r = _read_usage(tmp_path, "exp.csv", "\n".join([HEADER, *lines]) + "\n")
    assert r.changes["quantity"].to_list() == [Decimal("1.2345678901"), Decimal("2000"), Decimal("10")]
    assert _reasons(r) == {
        1: "quantity: '1.5e-11' has more than 10 decimal places (DECIMAL(38,10))",
        2: "quantity: '1.23456789012e0' has more than 10 decimal places (DECIMAL(38,10))",
        5: "quantity: '1e28' is too large for DECIMAL(38,10)",
        7: "quantity: cannot parse 'e5' as DECIMAL(38,10)",
    }


@pytest.mark.parametrize("written, amount, reason", [
    # JSON numbers are typed as written, never through a float (which keeps 17 significant digits)
    ("12345678901234.5678", Decimal("12345678901234.5678"), None),  # a float: 12345678901234.568
    ("0.10000000000000001", None, "amount: '0.10000000000000001' has more than 4 decimal places (DECIMAL(18,4))"),  # 0.1
    ("12.3400", Decimal("12.34"), None),
    ("1.5e-3", Decimal("0.0015"), None),
    ("NaN", None, "amount: cannot parse 'NaN' as DECIMAL(18,4)"),
])
def test_a_json_number_is_typed_as_written(tmp_path, written, amount, reason):
    line = _payment_line(1, "AMOUNT").replace('"AMOUNT"', written)
    r = _read(tmp_path, PAY, [line])
    assert r.changes["amount"].to_list() == ([amount] if amount is not None else [])
    assert _reasons(r) == ({1: reason} if reason else {})


def test_a_nested_value_keeps_its_numbers_as_written():
    # a JSON column (plan_charges.tiers, properties) arrives as canonical JSON text: names sorted, numbers as written
    assert _text(_json_loads('[{"up_to": 100, "unit_amount": 0.0125000000000000001, "b": [1.50, null, true, "x"]}]')) == \
        '[{"b":[1.50,null,true,"x"],"unit_amount":0.0125000000000000001,"up_to":100}]'


def test_parquet_numbers_of_another_type_are_exact_or_rejected(tmp_path):
    frame = pl.concat([_usage_frame().head(1)] * 4).with_columns(pl.Series("seq", [1, 2, 3, 4]))
    wide = frame.with_columns(pl.Series("quantity", [Decimal("1.123456789012"), Decimal("2.500000000000"),
                                                     Decimal("0.000000000100"), Decimal("3")], dtype=pl.Decimal(38, 12)))
    floats = frame.with_columns(pl.Series("quantity", [1.5e-11, 2.5, 0.1, 1e30]))
    for name, f in (("wide.parquet", wide), ("float.parquet", floats)):
        f.write_parquet(_usage_file(tmp_path, name, b""))
    r = read_extract(tmp_path / "usage/usage_records/wide.parquet", USAGE, tmp_path)
    assert r.changes["quantity"].to_list() == [Decimal("2.5"), Decimal("0.0000000001"), Decimal("3")]
    assert _reasons(r) == {1: "quantity: '1.123456789012' has more than 10 decimal places (DECIMAL(38,10))"}
    r = read_extract(tmp_path / "usage/usage_records/float.parquet", USAGE, tmp_path)
    assert r.changes["quantity"].to_list() == [Decimal("2.5"), Decimal("0.1")]
    assert _reasons(r) == {1: "quantity: '1.5e-11' has more than 10 decimal places (DECIMAL(38,10))",
                           4: "quantity: '1e+30' is too large for DECIMAL(38,10)"}


def test_implausible_times_are_rejected(tmp_path):
    base = dict(order_number="O-1", account_id=5, order_type="NEW_SERVICE", status="CREATED")
    rows = [
        dict(order_id=1, effective_date="1970-01-01", created_at=0),                      # the window's first instant
        dict(order_id=2, effective_date="2099-12-31", created_at="2099-12-31T23:59:59Z"),  # its last day
        dict(order_id=3, effective_date=20089, created_at=10**18),                         # micros: year 33658
        dict(order_id=4, effective_date="0000-01-01", created_at=None),
        dict(order_id=5, effective_date="2100-01-01", created_at=None),
        dict(order_id=6, effective_date=-1, created_at=None),                              # 1969-12-31
        dict(order_id=7, effective_date="2025-01-01", created_at="2100-01-01T00:00:00+01:00"),  # 2099-12-31 23:00 UTC
        dict(order_id=8, effective_date="-1199-03-01", created_at="0000-06-01T00:00:00Z"),
    ]
    lines = [_line("c", after=base | r, key={"order_id": r["order_id"]}, lsn=r["order_id"]) for r in rows]
    r = _read(tmp_path, ENTITIES["orders"], lines)
    assert r.changes["order_id"].to_list() == [1, 2, 7]
    window = "is outside the plausible time window [1970-01-01, 2100-01-01)"
    assert _reasons(r) == {
        3: f"created_at: +33658-09-27T01:46:40 {window}",  # ISO 8601 expanded year
        4: f"effective_date: 0000-01-01 {window}",
        5: f"effective_date: 2100-01-01 {window}",
        6: f"effective_date: 1969-12-31 {window}",
        8: f"effective_date: -1199-03-01 {window}",
    }
    r = _read_usage(tmp_path, "t.csv", "\n".join([HEADER, _usage_line(1, event_time="2200-01-01T00:00:00Z"),
                                                  _usage_line(2)]) + "\n")
    assert _reasons(r) == {1: f"event_time: 2200-01-01T00:00:00 {window}"}


def test_time_window_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("TALLY_TIME_WINDOW_FROM", "2020-01-01")
    monkeypatch.setenv("TALLY_TIME_WINDOW_TO", "2030-01-01T00:00:00Z")
    lines = [_line("c", after=_cust(1, created_at="2019-12-31T23:59:59Z"), lsn=1),
             _line("c", after=_cust(2, created_at="2025-01-01T00:00:00Z"), lsn=2, ts_ms=0)]
    r = _read(tmp_path, CUST, lines)
    assert _reasons(r) == {
        1: "created_at: 2019-12-31T23:59:59 is outside the plausible time window [2020-01-01, 2030-01-01)",
        2: "source.ts_ms: 0 is outside the plausible time window [2020-01-01, 2030-01-01)",
    }
    monkeypatch.setenv("TALLY_TIME_WINDOW_TO", "2010-01-01")
    with pytest.raises(ValueError, match="TALLY_TIME_WINDOW"):
        _read(tmp_path, CUST, lines)


def test_gzip_extracts_read_like_their_plain_twins(tmp_path):
    import gzip

    plain = {
        "customers-2025-01-31.jsonl": _write(tmp_path, CUST, "customers-2025-01-31.jsonl", [_line("c", after=_cust(1))]),
        "customers-2025-02-28.json": _write(tmp_path, CUST, "customers-2025-02-28.json", [_line("c", after=_cust(2))]),
        "u.csv": _usage_file(tmp_path, "u.csv", "\n".join([HEADER, _usage_line(1), _usage_line(2, "x")]) + "\n"),
    }
    for name, p in plain.items():
        entity = USAGE if name.endswith(".csv") else CUST
        gz = p.with_name(name + ".gz")
        gz.write_bytes(gzip.compress(p.read_bytes()))
        a, b = read_extract(p, entity, tmp_path), read_extract(gz, entity, tmp_path)
        assert b.records_read == a.records_read and b.changes.height == a.changes.height
        assert b.changes.drop("_file").equals(a.changes.drop("_file")) and b.rejects.drop("_file").equals(a.rejects.drop("_file"))
        assert b.changes["_file"].to_list() == [a.changes["_file"][0] + ".gz"] * b.changes.height
    broken = tmp_path / "crm/customers/customers-2025-03-31.jsonl.gz"
    broken.write_bytes(gzip.compress(b'{"key": 1}\n' * 100)[:40])
    with pytest.raises(ExtractReadError, match="gzip"):
        read_extract(broken, CUST, tmp_path)
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(ExtractReadError, match="gzip"):
        read_extract(broken, CUST, tmp_path)
