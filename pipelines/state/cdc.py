"""CDC apply: raw change logs -> SCD2 history, current state, latest usage events.

Engine convention (docs/architecture.md): plain functions over a DuckDB connection and the
names of their input relations, returning ``DuckDBPyRelation`` s whose columns match the target
``core.*`` tables by name. No Dagster imports, no per-row Python. The rules are written down,
with examples, in ``docs/state.md``; in short:

* tombstones (``_op = 't'``) are dropped (a lone tombstone is reported by :func:`anomalies`);
* duplicate deliveries — same (key, ``_position``, ``_row_hash``) — collapse to the latest
  delivery (``_ingested_at``), then the first by (``_file``, ``_record_no``);
* each key's changes are ordered by ``_position`` (NULL first, like a snapshot), never by
  timestamp; two different images at one position are ordered by delivery (``_ingested_at``:
  a corrected re-extract wins over the earlier delivery), then ``_row_hash`` (then ``_file``,
  ``_record_no``) — deterministic, as the ingest layer gives every delivery its own time;
* a column named in ``_unavailable`` keeps the previous version's value, through any number
  of consecutive omissions, while a real NULL stays NULL;
* ``valid_from`` is ``_source_ts`` raised to the running maximum over the key's earlier
  versions (clock skew; 1970-01-01 when no earlier version has a timestamp), ``valid_to`` is the next version's ``valid_from`` or
  ``TIMESTAMP '9999-12-31'``: intervals are half-open, contiguous and never overlap;
* a delete is a version of its own (before image, ``is_deleted = true``); a later create
  re-opens the key.

Each output is computed in a single sort per relation (one window specification), so the cost
is one partitioned sort of the change log: ``O(n log n)``, nothing quadratic.

Incremental apply (docs/state.md, "Incremental apply"): :func:`entity_batch` and
:func:`usage_batch` stage what one run applies of a change log — the rows ingested after the
entity's watermark in ``audit.state_applied`` — as a merge of the keys those rows touch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb
import polars as pl

from domain.periods import OPEN_END_TIMESTAMP
from domain.sql import quote_ident, quote_literal
from sources.entities import ENTITIES, Entity

NO_TS = "TIMESTAMP '1970-01-01'"  # valid_from of leading versions without a source timestamp

HISTORY_META = ("valid_from", "valid_to", "is_deleted", "_op", "_position", "_file")

# Tie-breaks (docs/state.md 1.3, 1.4). Of the deliveries of one image (key, position, row hash)
# the latest is kept; different images at one position are ordered by delivery, the latest last.
KEPT_DELIVERY = "_ingested_at DESC NULLS LAST, _file, _record_no"
SAME_POSITION_ORDER = "_ingested_at ASC NULLS FIRST, _row_hash, _file, _record_no"


# Source op codes normalised to Debezium's: table extracts may say I/U/D.
_OP = "CASE lower(_op) WHEN 'i' THEN 'c' ELSE lower(_op) END"


def history_columns(entity: Entity) -> list[str]:
    """Column names of ``core.<entity>_history`` and ``core.<entity>`` in order."""
    return [*entity.column_names, *HISTORY_META]


def history_sql(entity: Entity, raw: str) -> str:
    """SQL of :func:`history` (exposed for EXPLAIN and docs)."""
    key = ", ".join(quote_ident(k) for k in entity.key)
    order = f"_position ASC NULLS FIRST, {SAME_POSITION_ORDER}"
    cols = []
    for c in entity.columns:
        if c.name in entity.key:
            expr = quote_ident(c.name)
        else:
            # struct {'v': col} is NULL only when the column was omitted as unchanged, so
            # IGNORE NULLS skips omissions but keeps a legitimately NULL value.
            expr = (
                f"(last_value(CASE WHEN list_contains(_unavailable, {quote_literal(c.name)}) THEN NULL "
                f"ELSE {{'v': {quote_ident(c.name)}}} END IGNORE NULLS) OVER upto).v"
            )
        cols.append(f"CAST({expr} AS {c.sql_type}) AS {quote_ident(c.name)}")
    return f"""
WITH changes AS (
    SELECT * REPLACE ({_OP} AS _op)
    FROM {raw}
    WHERE lower(_op) <> 't'
    QUALIFY row_number() OVER (PARTITION BY {key}, _position, _row_hash ORDER BY {KEPT_DELIVERY}) = 1
)
SELECT
    {", ".join(cols)},
    CAST(coalesce(max(_source_ts) OVER upto, {NO_TS}) AS TIMESTAMP) AS valid_from,
    CAST(CASE WHEN lead(1) OVER seq IS NULL THEN {OPEN_END_TIMESTAMP}
              ELSE coalesce(max(_source_ts) OVER upto_next, {NO_TS}) END AS TIMESTAMP) AS valid_to,
    _op = 'd' AS is_deleted,
    CAST(_op AS VARCHAR) AS _op,
    CAST(_position AS BIGINT) AS _position,
    CAST(_file AS VARCHAR) AS _file
FROM changes
WINDOW
    seq AS (PARTITION BY {key} ORDER BY {order}),
    upto AS (seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
    upto_next AS (seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 FOLLOWING)
"""


def history(con: duckdb.DuckDBPyConnection, entity: Entity, raw: str) -> duckdb.DuckDBPyRelation:
    """SCD2 history of ``entity`` from its raw change log ``raw`` (-> ``core.<entity>_history``).

    Columns: the entity's columns (entities.py order, contract types), then
    ``valid_from, valid_to`` (TIMESTAMP, half-open, open end 9999-12-31), ``is_deleted``,
    ``_op`` (c/u/d/r), ``_position``, ``_file`` (the delivery kept for the version).
    """
    return con.sql(history_sql(entity, raw))


def current(con: duckdb.DuckDBPyConnection, entity: Entity, history: str) -> duckdb.DuckDBPyRelation:
    """Current state (-> ``core.<entity>``): the open version of every key, deleted keys kept.

    Same columns as :func:`history`; exactly one row per key (the last version by position is
    the only one whose ``valid_to`` is open).
    """
    cols = ", ".join(quote_ident(c) for c in history_columns(entity))
    return con.sql(f"SELECT {cols} FROM {history} WHERE valid_to = {OPEN_END_TIMESTAMP}")


def usage_events(con: duckdb.DuckDBPyConnection, raw: str = "raw.usage_records") -> duckdb.DuckDBPyRelation:
    """Latest version of every usage event (-> ``core.usage_events``), deletes flagged.

    One partitioned pass (``QUALIFY row_number() = 1``). The winner is the version with the
    highest ``_position`` — ties broken exactly as :func:`history` does (latest delivery,
    highest ``_row_hash``, then the first row by ``_file``, ``_record_no``) — so it equals the
    current version the generic history would give. ``_unavailable`` is not applied: usage
    arrives as table extracts that always carry the full row image. Columns: usage_records columns, then
    ``is_deleted, _position, _file``.
    """
    entity = ENTITIES["usage_records"]
    cols = ", ".join(f"CAST({quote_ident(c.name)} AS {c.sql_type}) AS {quote_ident(c.name)}" for c in entity.columns)
    return con.sql(f"""
SELECT {cols},
       {_OP} = 'd' AS is_deleted,
       CAST(_position AS BIGINT) AS _position,
       CAST(_file AS VARCHAR) AS _file
FROM {raw}
WHERE lower(_op) <> 't'
QUALIFY row_number() OVER (
    PARTITION BY event_id
    ORDER BY _position DESC NULLS LAST, _ingested_at DESC NULLS LAST, _row_hash DESC, _file, _record_no) = 1
""")


def anomalies(con: duckdb.DuckDBPyConnection, entity: Entity, raw: str) -> duckdb.DuckDBPyRelation:
    """CDC anomalies worth an asset check; nothing here changes the state.

    Columns: ``entity, key`` (JSON of the key columns), ``kind``, ``_position, _file,
    _record_no``. Kinds:

    * ``ORPHAN_TOMBSTONE``: a tombstone for a key with no delete in the change log (the
      delete never reached the landing zone); the tombstone is ignored by :func:`history`.
    * ``POSITION_CONFLICT``: two different row images (hashes) at one (key, position); the
      later delivery wins (a corrected re-extract), within one delivery the higher ``_row_hash``
      (arbitrary).
    * ``MISSING_POSITION``: a non-tombstone change without a position (ordered first).
    """
    key = ", ".join(quote_ident(k) for k in entity.key)
    key_json = "CAST(to_json(struct_pack(" + ", ".join(f"{quote_ident(k)} := {quote_ident(k)}" for k in entity.key) + ")) AS VARCHAR)"
    ent = quote_literal(entity.name)
    return con.sql(f"""
WITH log AS (SELECT {key}, lower(_op) AS op, _position, _row_hash, _file, _record_no FROM {raw}),
deleted AS (SELECT DISTINCT {key} FROM log WHERE op = 'd')
SELECT {ent} AS entity, {key_json} AS key, 'ORPHAN_TOMBSTONE' AS kind, _position, _file, _record_no
FROM log t WHERE op = 't' AND NOT EXISTS (
    SELECT 1 FROM deleted d WHERE {" AND ".join(f"d.{quote_ident(k)} IS NOT DISTINCT FROM t.{quote_ident(k)}" for k in entity.key)})
UNION ALL
SELECT {ent}, {key_json}, 'POSITION_CONFLICT', _position, _file, _record_no
FROM log WHERE op <> 't'
QUALIFY count(DISTINCT _row_hash) OVER (PARTITION BY {key}, _position) > 1
UNION ALL
SELECT {ent}, {key_json}, 'MISSING_POSITION', _position, _file, _record_no
FROM log WHERE op <> 't' AND _position IS NULL
""")


# --- Incremental apply (docs/state.md, "Incremental apply") --------------------------------

STATE_APPLIED = "audit.state_applied"
_KEYS = "_state_touched_keys"  # temp tables of one batch, dropped when it is done
_HISTORY = "_state_history"
_KNOWN = "_state_known_events"
_KNOWN_WINNERS = "_state_known_winners"


def applied_through(con: duckdb.DuckDBPyConnection, entity: str, ledger: str = STATE_APPLIED) -> datetime | None:
    """The watermark of ``entity``: the latest ``applied_through`` in ``ledger``, None when nothing was applied yet."""
    return con.execute(f"SELECT max(applied_through) FROM {ledger} WHERE entity = ?", [entity]).fetchone()[0]


def _since(raw: str, watermark: datetime | None) -> str:
    """The rows of ``raw`` ingested after ``watermark`` (all of them when None)."""
    if watermark is None:
        return raw
    return f"(SELECT * FROM {raw} WHERE _ingested_at > TIMESTAMP {quote_literal(watermark.isoformat(sep=' '))})"


@dataclass
class Batch:
    """What one run applies of one change log.

    ``replace`` is the predicate of the ``core`` rows the batch replaces (``"true"``: all, the
    full rebuild; None: nothing new, write nothing). ``history`` / ``current`` (entities) or
    ``events`` (usage) are the rows to insert after that delete; ``appended`` (usage) are
    further rows to append. ``anomalies`` are those of the touched keys (all keys on a full
    rebuild). Relations read temp tables that live until the batch's context exits.
    """

    entity: str
    rows_applied: int
    keys_touched: int
    applied_through: datetime | None
    replace: str | None
    history: duckdb.DuckDBPyRelation | None = None
    current: duckdb.DuckDBPyRelation | None = None
    events: duckdb.DuckDBPyRelation | None = None
    appended: duckdb.DuckDBPyRelation | None = None
    anomalies: duckdb.DuckDBPyRelation | None = None

    def ledger_row(self) -> pl.DataFrame | None:
        """The ``audit.state_applied`` row recording the batch; None when it applied no row."""
        if self.applied_through is None or self.rows_applied == 0:
            return None
        return pl.DataFrame(
            {"entity": [self.entity], "applied_through": [self.applied_through], "rows_applied": [self.rows_applied],
             "keys_touched": [self.keys_touched], "applied_at": [datetime.now(timezone.utc).replace(tzinfo=None)]},
            schema={"entity": pl.String, "applied_through": pl.Datetime("us"), "rows_applied": pl.Int64,
                    "keys_touched": pl.Int64, "applied_at": pl.Datetime("us")},
        )


def _drop(con: duckdb.DuckDBPyConnection, *tables: str) -> None:
    for t in tables:
        con.execute(f"DROP TABLE IF EXISTS {t}")


@contextmanager
def entity_batch(con: duckdb.DuckDBPyConnection, entity: Entity, raw: str,
                 watermark: datetime | None) -> Iterator[Batch]:
    """Stage the merge of ``raw`` rows ingested after ``watermark`` into ``core.<entity>[_history]``.

    The touched keys (distinct keys of the new rows) get their whole history recomputed by
    :func:`history` over ``raw`` restricted to those keys (a hash semi-join on a temp table of
    the keys), staged once; ``current`` is its open versions. Write ``history`` and ``current``
    with ``replace`` as delete predicate. No watermark: the full rebuild from all of ``raw``.
    """
    key = ", ".join(quote_ident(k) for k in entity.key)
    new = _since(raw, watermark)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_KEYS} AS SELECT DISTINCT {key} FROM {new}")
        rows, through = con.execute(f"SELECT count(*), max(_ingested_at) FROM {new}").fetchone()
        keys = con.execute(f"SELECT count(*) FROM {_KEYS}").fetchone()[0]
        if watermark is not None and rows == 0:
            yield Batch(entity.name, 0, 0, None, None)
            return
        scope = raw if watermark is None else f"(SELECT * FROM {raw} WHERE ({key}) IN (SELECT {key} FROM {_KEYS}))"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_HISTORY} AS {history_sql(entity, scope)}")
        yield Batch(
            entity.name, rows, keys, through,
            replace="true" if watermark is None else f"({key}) IN (SELECT {key} FROM {_KEYS})",
            history=con.table(_HISTORY), current=current(con, entity, _HISTORY), anomalies=anomalies(con, entity, scope),
        )
    finally:
        _drop(con, _KEYS, _HISTORY)


@contextmanager
def usage_batch(con: duckdb.DuckDBPyConnection, watermark: datetime | None, raw: str = "raw.usage_records",
                events: str = "core.usage_events") -> Iterator[Batch]:
    """Stage the merge of ``raw`` rows ingested after ``watermark`` into ``events`` (core.usage_events).

    Only the new rows are read, never the rest of ``raw``: every new row was ingested after
    every applied one, so an event's new winner is the best of its new rows and its current
    row in ``events`` (compared by ``_position``, the new row winning a tie: it is the later
    delivery) — the winner :func:`usage_events` would pick from all rows. Events already in
    ``events`` (few: corrections) are staged and replaced (``replace``, ``events``); brand-new
    events are appended straight from the new rows (``appended``, an anti-join on the known
    ids). No watermark: ``events`` is the full rebuild (``replace = "true"``).
    """
    new = _since(raw, watermark)
    try:
        rows, through, keys = con.execute(f"SELECT count(*), max(_ingested_at), count(DISTINCT event_id) FROM {new}").fetchone()
        if watermark is None:
            yield Batch("usage_records", rows, keys, through, "true", events=usage_events(con, raw))
            return
        if rows == 0:
            yield Batch("usage_records", 0, 0, None, None)
            return
        entity = ENTITIES["usage_records"]
        cols = ", ".join(quote_ident(c) for c in [*entity.column_names, "is_deleted", "_position", "_file"])
        fresh = f"(SELECT * FROM {new} WHERE lower(_op) <> 't')"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_KNOWN} AS "
                    f"SELECT event_id FROM {events} WHERE event_id IN (SELECT event_id FROM {fresh})")
        known = f"(SELECT * FROM {fresh} WHERE event_id IN (SELECT event_id FROM {_KNOWN}))"
        unknown = f"(SELECT * FROM {fresh} WHERE event_id NOT IN (SELECT event_id FROM {_KNOWN}))"
        con.execute(f"""CREATE OR REPLACE TEMP TABLE {_KNOWN_WINNERS} AS
SELECT {cols} FROM (
    SELECT {cols}, true AS _new FROM ({usage_events(con, known).sql_query()})
    UNION ALL
    SELECT {cols}, false AS _new FROM {events} WHERE event_id IN (SELECT event_id FROM {_KNOWN})
)
QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY _position DESC NULLS LAST, _new DESC) = 1""")
        yield Batch(
            "usage_records", rows, keys, through,
            replace=f"event_id IN (SELECT event_id FROM {_KNOWN})", events=con.table(_KNOWN_WINNERS),
            appended=usage_events(con, unknown),
        )
    finally:
        _drop(con, _KNOWN, _KNOWN_WINNERS)
