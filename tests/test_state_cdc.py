"""CDC apply: raw change logs -> core history / current / usage events (pipelines/state/cdc.py).

In-memory DuckDB; raw tables are built from hand-written rows; expected rows are hand-written.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import duckdb
import polars as pl
import pytest

from domain import install_macros
from pipelines.state import cdc
from sources.entities import CHANGE_LOG_COLUMNS, ENTITIES

BUNDLES = ENTITIES["bundles"]
CUSTOMERS = ENTITIES["customers"]
USAGE = ENTITIES["usage_records"]
OPEN = datetime(9999, 12, 31)
DELIVERED = datetime(2025, 2, 1, 6)  # default _ingested_at of make_raw rows


def ts(day: int, hour: int = 0) -> datetime:
    return datetime(2025, 1, day, hour)


@pytest.fixture
def con():
    c = duckdb.connect()
    install_macros(c)
    yield c
    c.close()


def make_raw(con, name, entity, rows):
    """Create raw.<name>-shaped table ``name`` and insert ``rows`` (dicts; missing columns NULL).

    Defaults: _file 'f1', _record_no = 1-based row index, _row_hash = hash of the image,
    _ingested_at = DELIVERED (one delivery).
    """
    cols = [*entity.columns, *CHANGE_LOG_COLUMNS]
    ddl = ", ".join(f"{c.name} {c.sql_type}" for c in cols)
    con.execute(f"CREATE TABLE {name} ({ddl}, _ingested_at TIMESTAMP)")
    names = [c.name for c in cols] + ["_ingested_at"]
    for i, r in enumerate(rows, 1):
        r = dict(r)
        r.setdefault("_file", "f1")
        r.setdefault("_record_no", i)
        r.setdefault("_row_hash", "h" + str(hash(tuple(r.get(n) for n in entity.column_names)) & 0xFFFFFF))
        r.setdefault("_ingested_at", DELIVERED)
        con.execute(
            f"INSERT INTO {name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [r.get(n) for n in names],
        )


def bundle(bid, name, pct, op, pos, t, **kw):
    return dict(bundle_id=bid, name=name, discount_pct=Decimal(pct) if pct is not None else None,
                status="ACTIVE", _op=op, _position=pos, _source_ts=t, **kw)


def hist(con, entity=BUNDLES, raw="raw_b", cols=("bundle_id", "name", "discount_pct", "valid_from", "valid_to", "is_deleted", "_op", "_position")):
    rel = cdc.history(con, entity, raw).order("bundle_id, _position")
    return [tuple(r) for r in rel.select(", ".join(cols)).fetchall()]


def test_output_columns_match_contract(con):
    make_raw(con, "raw_b", BUNDLES, [bundle(1, "A", "0.1", "c", 1, ts(1))])
    rel = cdc.history(con, BUNDLES, "raw_b")
    assert rel.columns == [*BUNDLES.column_names, "valid_from", "valid_to", "is_deleted", "_op", "_position", "_file"]
    assert [str(t) for t in rel.types][:4] == ["BIGINT", "VARCHAR", "DECIMAL(9,6)", "VARCHAR"]
    con.execute(f"CREATE TABLE h AS {cdc.history_sql(BUNDLES, 'raw_b')}")
    assert cdc.current(con, BUNDLES, "h").columns == rel.columns
    make_raw(con, "raw_u", USAGE, [])
    assert cdc.usage_events(con, "raw_u").columns == [*USAGE.column_names, "is_deleted", "_position", "_file"]


def test_duplicates_collapse_to_first_delivery(con):
    make_raw(con, "raw_b", BUNDLES, [
        bundle(1, "A", "0.1", "c", 10, ts(1), _file="f2", _record_no=7, _row_hash="x"),
        bundle(1, "A", "0.1", "c", 10, ts(1), _file="f1", _record_no=3, _row_hash="x"),  # first delivery
        bundle(1, "A", "0.1", "c", 10, ts(1), _file="f3", _record_no=1, _row_hash="x"),
    ])
    rows = cdc.history(con, BUNDLES, "raw_b").select("bundle_id, _position, _file, valid_to").fetchall()
    assert rows == [(1, 10, "f1", OPEN)]


def test_out_of_order_rows_ordered_by_position_not_timestamp(con):
    # file order: pos 30, 10, 20. Position 20 has an *earlier* timestamp than 10 (clock skew).
    make_raw(con, "raw_b", BUNDLES, [
        bundle(1, "C", "0.3", "u", 30, ts(3)),
        bundle(1, "A", "0.1", "c", 10, ts(2)),
        bundle(1, "B", "0.2", "u", 20, ts(1)),
    ])
    assert hist(con) == [
        (1, "A", Decimal("0.1"), ts(2), ts(2), False, "c", 10),  # zero-length: superseded at the same instant
        (1, "B", Decimal("0.2"), ts(2), ts(3), False, "u", 20),  # valid_from clamped to ts(2)
        (1, "C", Decimal("0.3"), ts(3), OPEN, False, "u", 30),
    ]
    con.execute(f"CREATE TABLE h AS {cdc.history_sql(BUNDLES, 'raw_b')}")
    assert con.sql("SELECT count(*) FROM h WHERE valid_from <= valid_to").fetchone()[0] == 3
    assert cdc.current(con, BUNDLES, "h").select("name").fetchall() == [("C",)]


def test_delete_then_recreate_and_tombstone_after_delete(con):
    make_raw(con, "raw_b", BUNDLES, [
        bundle(1, "A", "0.1", "c", 10, ts(1)),
        bundle(1, "A", "0.1", "d", 20, ts(2)),  # before image
        dict(bundle_id=1, _op="t", _position=None, _source_ts=None),  # tombstone after the delete
        bundle(1, "A2", "0.2", "c", 30, ts(4)),
        bundle(2, "X", "0.5", "c", 11, ts(1)),
        bundle(2, "X", "0.5", "d", 21, ts(3)),
        dict(bundle_id=2, _op="t", _position=None, _source_ts=None),
    ])
    assert hist(con) == [
        (1, "A", Decimal("0.1"), ts(1), ts(2), False, "c", 10),
        (1, "A", Decimal("0.1"), ts(2), ts(4), True, "d", 20),
        (1, "A2", Decimal("0.2"), ts(4), OPEN, False, "c", 30),  # re-opened
        (2, "X", Decimal("0.5"), ts(1), ts(3), False, "c", 11),
        (2, "X", Decimal("0.5"), ts(3), OPEN, True, "d", 21),
    ]
    con.execute(f"CREATE TABLE h AS {cdc.history_sql(BUNDLES, 'raw_b')}")
    cur = cdc.current(con, BUNDLES, "h").select("bundle_id, name, is_deleted, valid_to").order("bundle_id").fetchall()
    assert cur == [(1, "A2", False, OPEN), (2, "X", True, OPEN)]  # deleted key kept, flagged
    assert cdc.anomalies(con, BUNDLES, "raw_b").fetchall() == []


def test_orphan_tombstone_is_ignored_and_reported(con):
    make_raw(con, "raw_b", BUNDLES, [
        bundle(1, "A", "0.1", "c", 10, ts(1)),
        dict(bundle_id=1, _op="t", _position=None, _source_ts=None, _record_no=2),
    ])
    assert hist(con) == [(1, "A", Decimal("0.1"), ts(1), OPEN, False, "c", 10)]
    assert cdc.anomalies(con, BUNDLES, "raw_b").select("key, kind, _record_no").fetchall() == [
        ('{"bundle_id":1}', "ORPHAN_TOMBSTONE", 2)
    ]


def test_same_position_different_hash_in_one_delivery_tiebreak_is_by_hash(con):
    rows = [
        bundle(1, "A", "0.1", "c", 10, ts(1)),
        bundle(1, "Z", "0.2", "u", 20, ts(2), _row_hash="b", _file="f1"),
        bundle(1, "Y", "0.3", "u", 20, ts(2), _row_hash="a", _file="f2"),
    ]
    make_raw(con, "raw_b", BUNDLES, rows)
    make_raw(con, "raw_b2", BUNDLES, list(reversed(rows)))  # delivery order must not matter
    for raw in ("raw_b", "raw_b2"):
        names = [r[0] for r in cdc.history(con, BUNDLES, raw).order("_position, valid_to").select("name").fetchall()]
        assert names == ["A", "Y", "Z"]  # hash 'a' before 'b': Z is current
    assert {r[0] for r in cdc.anomalies(con, BUNDLES, "raw_b").select("kind").fetchall()} == {"POSITION_CONFLICT"}


def test_same_position_later_delivery_wins_whatever_its_hash(con):
    # a corrected re-extract: the same file name delivered again, one record's image changed at its position
    first, second = datetime(2025, 2, 1, 6), datetime(2025, 2, 1, 7)
    rows = [
        bundle(1, "A", "0.1", "c", 10, ts(1), _row_hash="a1", _ingested_at=first),
        bundle(1, "Z", "0.2", "u", 20, ts(2), _row_hash="b", _ingested_at=first, _record_no=2),
        bundle(1, "A", "0.1", "c", 10, ts(1), _row_hash="a1", _ingested_at=second),  # unchanged: one version
        bundle(1, "Y", "0.3", "u", 20, ts(2), _row_hash="a", _ingested_at=second, _record_no=2),  # the correction
    ]
    make_raw(con, "raw_b", BUNDLES, rows)
    make_raw(con, "raw_b2", BUNDLES, list(reversed(rows)))  # row order in the log must not matter
    for raw in ("raw_b", "raw_b2"):
        got = cdc.history(con, BUNDLES, raw).order("_position, valid_to").select("name, _position, valid_to").fetchall()
        assert got == [("A", 10, ts(2)), ("Z", 20, ts(2)), ("Y", 20, OPEN)]  # Y, the later delivery, is current


def test_image_redelivered_last_wins_over_one_delivered_between(con):
    # delivery 1 says A at position 10, delivery 2 corrects it to B, delivery 3 (another extract) restates A
    d1, d2, d3 = (datetime(2025, 2, 1, h) for h in (6, 7, 8))
    make_raw(con, "raw_b", BUNDLES, [
        bundle(1, "A", "0.1", "c", 10, ts(1), _row_hash="a", _ingested_at=d1, _file="f1"),
        bundle(1, "B", "0.1", "c", 10, ts(1), _row_hash="b", _ingested_at=d2, _file="f1"),
        bundle(1, "A", "0.1", "c", 10, ts(1), _row_hash="a", _ingested_at=d3, _file="f0", _record_no=5),
    ])
    got = cdc.history(con, BUNDLES, "raw_b").order("valid_to, name").select("name, valid_to, _file").fetchall()
    assert got == [("B", ts(1), "f1"), ("A", OPEN, "f0")]  # A's latest delivery decides, and is reported


def test_usage_events_later_delivery_wins_and_agrees_with_generic_current(con):
    first, second, third = datetime(2025, 2, 1, 6), datetime(2025, 2, 1, 7), datetime(2025, 2, 1, 8)
    rows = [
        _usage("e1", "10", "I", 1, _row_hash="z", _ingested_at=first),
        _usage("e1", "12", "I", 1, _row_hash="a", _ingested_at=second),  # corrected quantity, lower hash
        _usage("e2", "5", "I", 2, _row_hash="p", _ingested_at=first),
        _usage("e2", "6", "I", 2, _row_hash="q", _ingested_at=second),
        _usage("e2", "5", "I", 2, _row_hash="p", _ingested_at=third, _file="u0.parquet"),  # restated last
        _usage("e3", "7", "I", 3, _row_hash="k", _ingested_at=first),
        _usage("e3", "7", "I", 3, _row_hash="k", _ingested_at=second),  # unchanged redelivery
    ]
    make_raw(con, "raw_u", USAGE, rows)
    con.execute(f"CREATE TABLE h AS {cdc.history_sql(USAGE, 'raw_u')}")
    cols = "event_id, quantity, _position, _file"
    fast = cdc.usage_events(con, "raw_u").select(cols).order("event_id").fetchall()
    assert fast == cdc.current(con, USAGE, "h").select(cols).order("event_id").fetchall()
    assert fast == [("e1", Decimal("12"), 1, "u1.parquet"), ("e2", Decimal("5"), 2, "u0.parquet"), ("e3", Decimal("7"), 3, "u1.parquet")]
    assert con.sql("SELECT count(*) FROM h WHERE event_id = 'e3'").fetchone() == (1,)


def test_unavailable_carried_through_consecutive_updates_real_null_stays_null(con):
    base = dict(name="Ann", phone="555", country="US", customer_type="INDIVIDUAL", status="ACTIVE")
    make_raw(con, "raw_c", CUSTOMERS, [
        dict(customer_id=7, email="ann@x", **base, _op="c", _position=1, _source_ts=ts(1)),
        # email omitted as unchanged twice in a row (Debezium unavailable value / wal2json omission)
        dict(customer_id=7, email=None, **{**base, "phone": "556"}, _op="u", _position=2, _source_ts=ts(2), _unavailable=["email"]),
        dict(customer_id=7, email=None, **{**base, "phone": "557"}, _op="u", _position=3, _source_ts=ts(3), _unavailable=["email"]),
        # a real NULL: email cleared
        dict(customer_id=7, email=None, **{**base, "phone": "558"}, _op="u", _position=4, _source_ts=ts(4), _unavailable=[]),
        # omitted again after a real NULL: stays NULL
        dict(customer_id=7, email=None, **{**base, "phone": None}, _op="u", _position=5, _source_ts=ts(5), _unavailable=["email", "phone"]),
    ])
    rows = cdc.history(con, CUSTOMERS, "raw_c").select("_position, email, phone").order("_position").fetchall()
    assert rows == [(1, "ann@x", "555"), (2, "ann@x", "556"), (3, "ann@x", "557"), (4, None, "558"), (5, None, "558")]


def test_scd2_intervals_half_open_contiguous_and_point_in_time(con):
    make_raw(con, "raw_b", BUNDLES, [
        bundle(1, "A", "0.1", "c", 10, ts(1)),
        bundle(1, "B", "0.2", "u", 20, ts(5)),
        bundle(1, "C", "0.3", "u", 30, ts(9)),
        bundle(1, "C", "0.3", "d", 40, ts(12)),
    ])
    con.execute(f"CREATE TABLE h AS {cdc.history_sql(BUNDLES, 'raw_b')}")
    gaps = con.sql("""
        SELECT count(*) FROM (SELECT valid_to, lead(valid_from) OVER (PARTITION BY bundle_id ORDER BY _position) nxt FROM h)
        WHERE nxt IS NOT NULL AND nxt <> valid_to""").fetchone()[0]
    assert gaps == 0
    assert con.sql("SELECT count(*) FROM h WHERE valid_to = TIMESTAMP '9999-12-31'").fetchone()[0] == 1

    def at(t):
        return con.sql("SELECT name, is_deleted FROM h WHERE ? >= valid_from AND ? < valid_to", params=[t, t]).fetchall()

    assert at(datetime(2024, 12, 31)) == []
    assert at(ts(1)) == [("A", False)]
    assert at(ts(4, 23)) == [("A", False)]
    assert at(ts(5)) == [("B", False)]  # half-open: the boundary belongs to the new version
    assert at(ts(11)) == [("C", False)]
    assert at(ts(20)) == [("C", True)]  # deleted: the lookup sees the delete, callers filter


def test_op_codes_normalised(con):
    make_raw(con, "raw_b", BUNDLES, [
        bundle(1, "A", "0.1", "r", 1, ts(1)),
        bundle(1, "B", "0.1", "U", 2, ts(2)),
        bundle(2, "X", "0.1", "I", 1, ts(1)),
        bundle(2, "X", "0.1", "D", 2, ts(2)),
    ])
    assert [r[-2:] for r in hist(con, cols=("bundle_id", "_op", "is_deleted"))] == [
        ("r", False), ("u", False), ("c", False), ("d", True)
    ]


def _usage(eid, qty, op, pos, **kw):
    return dict(event_id=eid, subscription_id=100, metric="data_mb", quantity=Decimal(qty), unit="MB",
                event_time=ts(3), zone=None, attributes=None, _op=op, _position=pos, _source_ts=ts(3),
                _file=kw.pop("_file", "u1.parquet"), _record_no=kw.pop("_record_no", pos),
                _row_hash=kw.pop("_row_hash", f"{eid}-{qty}-{op}"), _unavailable=None,
                _ingested_at=kw.pop("_ingested_at", ts(4)))


def test_usage_events_latest_version_and_deletes(con):
    rows = [
        _usage("e1", "10", "I", 1),
        _usage("e1", "12", "U", 5),            # correction: latest by position
        _usage("e1", "12", "U", 5, _file="u2.parquet", _record_no=1),  # duplicate delivery
        _usage("e2", "7", "I", 2),
        _usage("e2", "7", "D", 6),             # deleted: kept, flagged
        _usage("e3", "3", "U", 9, _file="u0.parquet"),  # out of file order: position wins
        _usage("e3", "1", "I", 3, _file="u9.parquet"),
        _usage("e4", "4", "I", 4),
    ]
    schema = {c.name: c for c in [*USAGE.columns, *CHANGE_LOG_COLUMNS]}
    df = pl.DataFrame(rows, schema_overrides={"quantity": pl.Decimal(38, 10), "_unavailable": pl.List(pl.String),
                                              "zone": pl.String, "attributes": pl.String})
    assert set(schema) <= set(df.columns)
    con.register("raw_usage", df)
    got = cdc.usage_events(con, "raw_usage").select("event_id, quantity, is_deleted, _position, _file").order("event_id").fetchall()
    assert got == [
        ("e1", Decimal("12"), False, 5, "u1.parquet"),
        ("e2", Decimal("7"), True, 6, "u1.parquet"),
        ("e3", Decimal("3"), False, 9, "u0.parquet"),
        ("e4", Decimal("4"), False, 4, "u1.parquet"),
    ]


def test_usage_events_agree_with_generic_current(con):
    rows = [
        _usage("e1", "1", "I", 1), _usage("e1", "2", "U", 2, _row_hash="b"), _usage("e1", "3", "U", 2, _row_hash="a"),
        _usage("e1", "2", "U", 2, _row_hash="b", _file="u0.parquet"),
        _usage("e2", "5", "I", 1), _usage("e2", "5", "D", 2),
    ]
    make_raw(con, "raw_u", USAGE, rows)
    con.execute(f"CREATE TABLE h AS {cdc.history_sql(USAGE, 'raw_u')}")
    generic = cdc.current(con, USAGE, "h").select("event_id, quantity, is_deleted, _position, _file").order("event_id").fetchall()
    fast = cdc.usage_events(con, "raw_u").select("event_id, quantity, is_deleted, _position, _file").order("event_id").fetchall()
    assert fast == generic
    assert fast[0][:2] == ("e1", Decimal("2"))  # hash 'b' > 'a'
    assert fast[0][4] == "u0.parquet"  # first delivery of the winning image


def test_leading_version_without_source_ts_starts_at_epoch(con):
    make_raw(con, "raw_b", BUNDLES, [
        bundle(1, "A", "0.1", "r", 1, None),
        bundle(1, "B", "0.2", "u", 2, ts(5)),
    ])
    assert hist(con, cols=("name", "valid_from", "valid_to")) == [
        ("A", datetime(1970, 1, 1), ts(5)), ("B", ts(5), OPEN)
    ]


def test_outputs_insert_into_the_generated_core_tables_for_every_entity(con):
    from warehouse.ddl import create_tables
    from warehouse.tables import TABLES

    create_tables(con, [name for name in TABLES if name.split(".")[0] in ("raw", "core")
                        and name not in ("core.subscriptions", "core.subscription_versions", "core.order_exceptions")])
    for entity in ENTITIES.values():
        if entity.name == "usage_records":
            con.execute(f"INSERT INTO core.usage_events BY NAME {cdc.usage_events(con).sql_query()}")
            continue
        con.execute(f"INSERT INTO core.{entity.name}_history BY NAME {cdc.history_sql(entity, f'raw.{entity.name}')}")
        assert cdc.history(con, entity, f"raw.{entity.name}").columns == con.sql(f"FROM core.{entity.name}_history").columns
        cur = cdc.current(con, entity, f"core.{entity.name}_history")
        assert cur.columns == con.sql(f"FROM core.{entity.name}").columns
        con.execute(f"INSERT INTO core.{entity.name} BY NAME {cur.sql_query()}")
    assert cdc.usage_events(con).columns == con.sql("FROM core.usage_events").columns
