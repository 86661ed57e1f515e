"""Incremental state (docs/state.md, "Incremental apply"): a change log applied in batches gives the full rebuild.

A real DuckDB file; each batch is appended to raw.* with its own ``_ingested_at`` and applied by the
``core_state`` asset; after every batch core.* equals (EXCEPT ALL both ways) the rebuild from all raw rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import dagster as dg
import pytest

from pipelines.assets import state
from pipelines.resources import Warehouse
from pipelines.state import cdc
from sources.entities import CHANGE_LOG_COLUMNS, ENTITIES
from warehouse.connection import connect
from warehouse.migrations import migrate

BUNDLES, USAGE = ENTITIES["bundles"], ENTITIES["usage_records"]
T0 = datetime(2025, 2, 1, 6)


def ts(day: int) -> datetime:
    return datetime(2025, 1, day)


def b(bid, pos, op="u", name=None, pct=None, t=None, **kw):
    return {**dict(bundle_id=bid, name=name, discount_pct=None if pct is None else Decimal(pct), status="ACTIVE",
                   _op=op, _position=pos, _source_ts=t or (ts(pos % 28 + 1) if pos else None)), **kw}


def u(eid, pos, op="U", qty="1", **kw):
    return dict(event_id=eid, subscription_id=7, metric="data_mb", quantity=Decimal(qty), unit="MB",
                event_time=ts(3), _op=op, _position=pos, _source_ts=ts(3), **kw)


TOMB = dict(status=None)

# Each batch: (bundles rows, usage rows), one delivery each.
BATCHES = [
    (   # 1: the first run (no watermark): full rebuild; an orphan tombstone
        [b(1, 10, "c", "A", "0.1"), b(1, 20, "u", "B", "0.1"), b(2, 11, "c", "X", "0.2"), b(3, 12, "c", "K", "0.3"),
         b(4, None, "t", **TOMB), b(6, 30, "c", "U1", "0.3")],
        [u("e1", 1, "I", "10"), u("e2", 2, "I", "7"), u("e3", 3, "I", "3"), u("e4", 4, "I", "4")],
    ),
    (   # 2: updates, delete + tombstone, an omitted column, a duplicate delivery of an applied image; usage corrected
        [b(1, 30, "u", "C", "0.1"), b(2, 40, "d", "X", "0.2"), b(2, None, "t", **TOMB),
         b(6, 31, "u", None, "0.35", _unavailable=["name"]), b(1, 10, "c", "A", "0.1")],
        [u("e1", 5, "U", "12"), u("e2", 6, "D", "7"), u("e5", 7, "I", "5"), u("e3", 3, "I", "3"), u("e4", None, "t")],
    ),
    (   # 3: re-create, a position conflict with an applied image, a late row below applied positions, omission again
        [b(2, 50, "c", "X2", "0.2"), b(3, 12, "c", "K2", "0.3"), b(1, 15, "u", "late", "0.1"),
         b(6, 32, "u", None, None, _unavailable=["name", "discount_pct"])],
        [u("e1", 4, "U", "99"), u("e3", 3, "U", "33"), u("e6", None, "I", "6"), u("e2", 8, "I", "8")],
    ),
    (   # 4: nothing for bundles (skipped); usage: same NULL position again, a lone tombstone, a new event
        [],
        [u("e6", None, "U", "66"), u("e7", None, "t"), u("e8", 9, "I", "8")],
    ),
    (   # 5: nothing for usage; a real NULL after omissions, a late delete below the re-create, the orphan's delete
        [b(6, 33, "u", "U2", None), b(2, 45, "u", "X1", "0.2"), b(4, 3, "c", "D", "0.1"), b(4, 4, "d", "D", "0.1")],
        [],
    ),
]


def insert(con, entity, rows, at: datetime, file: str) -> None:
    names = [*entity.column_names, *(c.name for c in CHANGE_LOG_COLUMNS), "_ingested_at"]
    for i, r in enumerate(rows, 1):
        r = {"_file": file, "_record_no": i, "_ingested_at": at, **r}
        r.setdefault("_row_hash", "h" + str(abs(hash(tuple(str(r.get(n)) for n in entity.column_names))) % 10**8))
        con.execute(f"INSERT INTO raw.{entity.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                    [r.get(n) for n in names])


def differences(con, table: str, rebuilt: str) -> tuple[int, int]:
    return con.execute(f"SELECT (SELECT count(*) FROM (FROM {table} EXCEPT ALL FROM {rebuilt})), "
                       f"(SELECT count(*) FROM (FROM {rebuilt} EXCEPT ALL FROM {table}))").fetchone()


def assert_equals_full_rebuild(con) -> None:
    for entity in state.CDC_ENTITIES:
        con.execute(f"CREATE OR REPLACE TEMP TABLE full_h AS {cdc.history_sql(entity, f'raw.{entity.name}')}")
        assert differences(con, f"core.{entity.name}_history", "full_h") == (0, 0), entity.name
        assert differences(con, f"core.{entity.name}", f"({cdc.current(con, entity, 'full_h').sql_query()})") == (0, 0), entity.name
    assert differences(con, "core.usage_events", f"({cdc.usage_events(con).sql_query()})") == (0, 0)


def run_state(path) -> dg.ExecuteInProcessResult:
    return dg.materialize([state.core_state], resources={"warehouse": Warehouse(path=str(path))}, raise_on_error=False)


def metadata(result, name: str) -> dict:
    key = state.USAGE_EVENTS if name == "usage_records" else state.STATE_KEYS[name]
    [m] = [m for m in result.asset_materializations_for_node("core_state") if m.asset_key == key]
    return {k: v.value for k, v in m.metadata.items()}


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with connect(path) as con:
        migrate(con)
        # core filled before incremental state existed (no audit.state_applied rows): the first run rebuilds it
        con.execute("INSERT INTO core.bundles BY NAME SELECT 99 AS bundle_id, 'stale' AS name, 0.5 AS discount_pct, "
                    "'ACTIVE' AS status, TIMESTAMP '2025-01-01' AS valid_from, TIMESTAMP '9999-12-31' AS valid_to, "
                    "false AS is_deleted")
    return path


def test_batches_applied_incrementally_equal_the_full_rebuild(warehouse):
    for n, (bundles, usage) in enumerate(BATCHES, 1):
        at = T0 + timedelta(hours=n)
        with connect(warehouse) as con:
            insert(con, BUNDLES, bundles, at, f"bundles-{n}.jsonl")
            insert(con, USAGE, usage, at, f"usage-{n}.csv")
        result = run_state(warehouse)
        assert result.success, n
        with connect(warehouse) as con:
            assert_equals_full_rebuild(con)
            ledger = con.execute("SELECT entity, applied_through, rows_applied, keys_touched FROM audit.state_applied "
                                 "WHERE applied_through = ? ORDER BY entity", [at]).fetchall()
        touched = {"bundles": len({r["bundle_id"] for r in bundles}), "usage_records": len({r["event_id"] for r in usage})}
        expected = [(e, at, len(rows), touched[e]) for e, rows in (("bundles", bundles), ("usage_records", usage)) if rows]
        assert ledger == expected, n
        for name, rows in (("bundles", bundles), ("usage_records", usage)):
            assert (metadata(result, name)["rows_applied"], metadata(result, name)["keys_touched"]) == (len(rows), touched[name])
    with connect(warehouse) as con:
        assert con.execute("SELECT bundle_id, name, discount_pct, is_deleted FROM core.bundles ORDER BY 1").fetchall() == [
            (1, "C", Decimal("0.1"), False), (2, "X2", Decimal("0.2"), False), (3, "K2", Decimal("0.3"), False),
            (4, "D", Decimal("0.1"), True), (6, "U2", None, False)]
        assert con.execute("SELECT event_id, quantity, is_deleted FROM core.usage_events ORDER BY 1").fetchall() == [
            ("e1", Decimal("12"), False), ("e2", Decimal("8"), False), ("e3", Decimal("33"), False),
            ("e4", Decimal("4"), False), ("e5", Decimal("5"), False), ("e6", Decimal("66"), False),
            ("e8", Decimal("8"), False)]


def test_a_run_that_dies_leaves_each_entity_consistent_and_its_rerun_applies_the_rest(warehouse, monkeypatch):
    for n, (bundles, usage) in enumerate(BATCHES[:2], 1):
        with connect(warehouse) as con:
            insert(con, BUNDLES, bundles, T0 + timedelta(hours=n), f"bundles-{n}.jsonl")
            insert(con, USAGE, usage, T0 + timedelta(hours=n), f"usage-{n}.csv")
        if n == 1:
            assert run_state(warehouse).success
    real = state.write

    def dies_on_usage(con, writes, *args):
        if any(t == "core.usage_events" for t, _, _ in writes):
            raise RuntimeError("killed")
        return real(con, writes, *args)

    monkeypatch.setattr(state, "write", dies_on_usage)
    assert not run_state(warehouse).success
    with connect(warehouse) as con:
        assert con.execute("SELECT entity FROM audit.state_applied WHERE applied_through = ?",
                           [T0 + timedelta(hours=2)]).fetchall() == [("bundles",)]
        assert con.execute("SELECT quantity FROM core.usage_events WHERE event_id = 'e1'").fetchall() == [(Decimal("10"),)]
    monkeypatch.setattr(state, "write", real)
    assert run_state(warehouse).success
    with connect(warehouse) as con:
        assert_equals_full_rebuild(con)
        assert con.execute("SELECT entity, rows_applied FROM audit.state_applied WHERE applied_through = ? ORDER BY 1",
                           [T0 + timedelta(hours=2)]).fetchall() == [("bundles", 5), ("usage_records", 5)]
