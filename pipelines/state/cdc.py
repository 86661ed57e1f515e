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
"""

from __future__ import annotations

import duckdb

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
