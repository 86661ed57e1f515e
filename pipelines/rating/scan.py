"""The single scan of usage: events → (slot, matrix key) aggregates, plus per-event unrated rows.

One pass over the usage relation does everything that needs event values:

* assigns each event to the partition (its subscription's account period, or the calendar
  month when the subscription or account is unknown) with a hash join on subscription_id;
* finds its slot (plan version x price version x segment) with a hash join on
  (subscription_id, metric) and a half-open time condition;
* aggregates, per (slot, matrix key), every quantity the slot's aggregation and model need
  (sum, count, max, latest, unique count, time weight, dynamic amount, clamped percentage),
  as aggregate expressions, so pricing afterwards only touches the few aggregated rows;
* keeps each event that cannot be rated as its own group (key ``u_event_id``) with its values,
  so unrated usage comes out of the same scan.

The join key is one BIGINT (``subscription_id << bits | metric code``, :func:`join_key`).
Large months (more than ``LOOKUP_ROWS_PER_SHARD`` lookup rows) run the scan once per shard of
subscription_id, so each shard's hash tables fit in memory instead of spilling.

The SQL is assembled from the features present among the slots in force (matrix keys,
dynamic prices, unique counts, ...), so a month without matrix charges pays nothing for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipelines.rating.catalog import DEC, columns_of, live_filter


_EV = f"STRUCT(t TIMESTAMP, id VARCHAR, q {DEC})"

# Lookup rows per shard of the scan (build_scan): a 20M-event month (1.1M rows) is one shard.
LOOKUP_ROWS_PER_SHARD = 2_000_000


@dataclass(frozen=True)
class Features:
    """Which per-event aggregates the slots in force need (the scan SQL includes only those)."""

    matrix_dims: int  # 0 = no MATRIX charge, else the largest number of dimensions
    dynamic: bool
    unique: bool
    latest: bool
    tws: bool
    maxq: bool
    pct_clamped: bool
    pct_ordered: bool
    config_error: bool

    @property
    def matrix(self) -> bool:
        return self.matrix_dims > 0

    @property
    def needs_params(self) -> bool:
        return any((self.matrix, self.dynamic, self.unique, self.latest, self.tws, self.pct_clamped,
                    self.pct_ordered, self.config_error))

    @classmethod
    def of(cls, con: duckdb.DuckDBPyConnection, tag: str) -> "Features":
        row = con.execute(f"""
            SELECT coalesce(max(CASE WHEN charge_model = 'MATRIX' AND config_error IS NULL THEN len(dims) END), 0),
                   coalesce(bool_or(is_dynamic), false), coalesce(bool_or(is_unique), false),
                   coalesce(bool_or(is_latest), false), coalesce(bool_or(is_tws), false),
                   coalesce(bool_or(aggregation = 'MAX'), false),
                   coalesce(bool_or(pct_clamped), false), coalesce(bool_or(pct_ordered), false),
                   coalesce(bool_or(config_error IS NOT NULL), false)
            FROM {tag}_prices WHERE price_id IN (SELECT DISTINCT price_id FROM {tag}_slots)""").fetchone()
        return cls(*row)


def _matrix_key(k: int, p: dict[str, str]) -> str:
    # zone column, time band index (decoded after aggregation), or an attribute
    kc = f"{p[f'kc{k}']}[s.pidx]"
    return (f"CASE {kc} WHEN 1 THEN e.zone "
            f"WHEN 2 THEN CAST(CAST(({p['band_mask']}[s.pidx] >> (4 * hour(e.event_time))) & 15 AS TINYINT) AS VARCHAR) "
            f"WHEN 3 THEN json_extract_string(e.attributes, {p[f'path{k}']}[s.pidx]) END")


def usage_source(con: duckdb.DuckDBPyConnection, usage: str) -> str:
    """A SELECT over the usage relation with the columns the engine reads (missing optional
    columns as NULL) and deleted rows removed."""
    cols = columns_of(con, usage)
    opt = {c: (c if c in cols else f"CAST(NULL AS VARCHAR) AS {c}") for c in ("zone", "attributes", "_file")}
    return (f"SELECT event_id, subscription_id, metric, CAST(quantity AS {DEC}) AS quantity, "
            f"CAST(event_time AS TIMESTAMP) AS event_time, {opt['zone']}, {opt['attributes']}, {opt['_file']} "
            f"FROM {usage} WHERE {live_filter(cols)}")


# Price parameters per-event expressions read. The lookup row carries only ``pidx`` (the price's
# dense index); each parameter is a constant SQL list indexed by it, compiled from the (small)
# price table once per run, so the join payload stays three integers wide.
PARAMS = {
    "kc1": "TINYINT", "kc2": "TINYINT", "kc3": "TINYINT", "path1": "VARCHAR", "path2": "VARCHAR",
    "path3": "VARCHAR", "band_mask": "HUGEINT", "is_dynamic": "BOOLEAN", "price_path": "VARCHAR",
    "is_unique": "BOOLEAN", "unique_path": "VARCHAR", "is_latest": "BOOLEAN", "is_tws": "BOOLEAN",
    "pct_clamped": "BOOLEAN", "pct_ordered": "BOOLEAN", "rate": DEC, "per_event_min": DEC,
    "per_event_max": DEC, "misconfigured": "BOOLEAN",
}


def _literal(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return str(v)


def param_lists(con: duckdb.DuckDBPyConnection, tag: str) -> dict[str, str]:
    """``{param: SQL list literal}`` over the prices in force, in pidx order."""
    cols = [c if c != "misconfigured" else "config_error IS NOT NULL AS misconfigured" for c in PARAMS]
    rows = con.execute(f"SELECT {', '.join(cols)} FROM {tag}_prices JOIN {tag}_pidx USING (price_id) "
                       "ORDER BY pidx").fetchall()
    out = {}
    for i, (name, typ) in enumerate(PARAMS.items()):
        values = ", ".join(_literal(r[i]) for r in rows) or "NULL"
        out[name] = f"CAST([{values}] AS {typ}[])"
    return out


def build_lookup(con: duckdb.DuckDBPyConnection, tag: str, window: tuple[str, str]) -> None:
    """``{tag}_lookup``: for every (subscription, metric its plans price), rows that tile the scan
    window ``[lo, hi)`` with half-open time ranges: the slots (kind 0), the gaps inside the
    subscription's partition window with no price in force (kind 1: unrated) and the time outside
    it (kind 2: another month's usage, skipped). One equi-join on (subscription_id, metric) with a
    range condition then places each event; only events of unknown subscriptions or of metrics
    none of the subscription's plans price find no row."""
    lo, hi = window
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_pidx AS
    SELECT price_id, CAST(row_number() OVER (ORDER BY price_id) AS INTEGER) AS pidx
    FROM {tag}_prices WHERE price_id IN (SELECT DISTINCT price_id FROM {tag}_slots)
    """)
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_lookup AS
    WITH sm AS (  -- every (subscription, metric) its plans price, with the partition window
        SELECT DISTINCT s.subscription_id, c.metric, s.win_start, s.win_end
        FROM {tag}_subs s JOIN {tag}_ver v USING (subscription_id) JOIN {tag}_chg c ON c.plan_id = v.plan_id
        WHERE c.metric IS NOT NULL
    ), sl AS (  -- slots with the end of the time covered by the earlier slots of the same key
        SELECT subscription_id, metric, seg_start, seg_end,
               max(seg_end) OVER (PARTITION BY subscription_id, metric ORDER BY seg_start, seg_end
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS covered_to
        FROM {tag}_slots
    ), holes AS (  -- maximal time ranges of [lo, hi) no slot covers
        SELECT subscription_id, metric, coalesce(covered_to, {lo}) AS a, seg_start AS b
        FROM sl WHERE coalesce(covered_to, {lo}) < seg_start
        UNION ALL
        SELECT subscription_id, metric, max(seg_end), {hi} FROM {tag}_slots GROUP BY ALL HAVING max(seg_end) < {hi}
        UNION ALL
        SELECT subscription_id, metric, {lo}, {hi} FROM sm
        WHERE NOT EXISTS (SELECT 1 FROM {tag}_slots x WHERE x.subscription_id = sm.subscription_id AND x.metric = sm.metric)
    ), gaps AS (  -- each hole cut at the partition window: inside it kind 1 (unrated), outside kind 2
        -- (no window: all kind 2; NULLs compare as false, so empty or undefined pieces drop out)
        SELECT h.subscription_id, h.metric, p.a, p.b, p.kind
        FROM holes h JOIN sm USING (subscription_id, metric),
             LATERAL (SELECT unnest([
                 {{'a': h.a, 'b': least(h.b, coalesce(sm.win_start, h.b)), 'kind': 2}},
                 {{'a': CASE WHEN sm.win_start IS NOT NULL THEN greatest(h.a, sm.win_start) END,
                   'b': least(h.b, sm.win_end), 'kind': 1}},
                 {{'a': greatest(h.a, coalesce(sm.win_end, h.b)), 'b': h.b, 'kind': 2}}], recursive := true)) p
        WHERE p.a < p.b
    )
    SELECT l.subscription_id, l.metric, l.a, l.b, l.slot_id, l.kind, p.pidx
    FROM (
        SELECT subscription_id, metric, seg_start AS a, seg_end AS b, slot_id, price_id, CAST(0 AS TINYINT) AS kind
        FROM {tag}_slots
        UNION ALL
        SELECT subscription_id, metric, a, b, NULL, NULL, CAST(kind AS TINYINT) FROM gaps
    ) l LEFT JOIN {tag}_pidx p USING (price_id)
    """)
    key = join_key(con, tag)
    if key is not None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {tag}_lookup AS SELECT *, {key('subscription_id', 'metric')} AS k "
                    f"FROM {tag}_lookup")


def join_key(con: duckdb.DuckDBPyConnection, tag: str):
    """The lookup's (subscription_id, metric) as one BIGINT: ``subscription_id << bits | metric
    code`` (codes 1..n over the metrics in the lookup), NULL for any other metric or an id out of
    the lookup's range. One integer key makes the scan's hash join about a third cheaper than
    hashing and comparing a BIGINT and a VARCHAR. Returns ``key(sub_sql, metric_sql) -> SQL``, or
    None when ids are negative or too large to shift."""
    metrics, lo_id, hi_id = con.execute(
        f"SELECT list(DISTINCT metric ORDER BY metric), min(subscription_id), max(subscription_id) FROM {tag}_lookup"
    ).fetchone()
    if not metrics or lo_id is None or lo_id < 0:
        return None
    bits = len(metrics).bit_length()
    if hi_id >= 1 << (62 - bits):
        return None
    whens = " ".join(f"WHEN {_literal(m)} THEN {i}" for i, m in enumerate(metrics, 1))

    def key(sub: str, metric: str) -> str:
        return (f"CASE WHEN {sub} BETWEEN {lo_id} AND {hi_id} THEN "
                f"(CAST({sub} AS BIGINT) << {bits}) | CASE {metric} {whens} END END")
    return key


def event_columns(f: Features, p: dict[str, str]) -> str:
    """Per-event SELECT list over ``e`` (usage) and ``s`` (lookup row); price parameters by pidx."""
    ks = range(1, f.matrix_dims + 1)
    m = [f"{_matrix_key(k, p)} AS m{k}" for k in ks] + [f"CAST(NULL AS VARCHAR) AS m{k}" for k in range(f.matrix_dims + 1, 4)]
    cols = ["s.slot_id", "e.event_id", "e.subscription_id", "e.metric", "e.quantity", "e.event_time", "e._file", *m]
    if f.needs_params:
        cols += ["e.attributes", "s.b AS seg_end"]
        wanted = {"kc1": f.matrix_dims >= 1, "kc2": f.matrix_dims >= 2, "kc3": f.matrix_dims >= 3,
                  "is_dynamic": f.dynamic, "price_path": f.dynamic, "is_unique": f.unique, "unique_path": f.unique,
                  "is_latest": f.latest, "is_tws": f.tws, "pct_clamped": f.pct_clamped, "pct_ordered": f.pct_ordered,
                  "rate": f.pct_clamped, "per_event_min": f.pct_clamped, "per_event_max": f.pct_clamped,
                  "misconfigured": f.config_error}
        cols += [f"{p[name]}[s.pidx] AS {name}" if on else f"CAST(NULL AS {PARAMS[name]}) AS {name}"
                 for name, on in wanted.items()]
    return ", ".join(cols)


# Per-event problem codes (rendered into reasons after aggregation, engine.BAD_REASONS).
BAD_MISSING_QUANTITY, BAD_MISCONFIGURED, BAD_DYNAMIC_PRICE, BAD_UNIQUE = 1, 2, 3, 7  # 4, 5, 6: matrix dimension 1..3


def decode_dimension(k: int, raw: str, prices: str = "c") -> str:
    """SQL: matrix dimension value from its per-event key (time band index -> band name)."""
    return f"CASE WHEN {prices}.kc{k} = 2 THEN {prices}.band_names[CAST({raw} AS INTEGER)] ELSE {raw} END"


def bad_expression(f: Features) -> str:
    """Why a matched event cannot be rated, as a TINYINT code (NULL if it can), over event_columns."""
    parts = [f"WHEN quantity IS NULL THEN {BAD_MISSING_QUANTITY}"]
    if f.config_error:
        parts.append(f"WHEN misconfigured THEN {BAD_MISCONFIGURED}")
    if f.dynamic:
        parts.append(f"WHEN is_dynamic AND TRY_CAST(json_extract_string(attributes, price_path) AS {DEC}) IS NULL "
                     f"THEN {BAD_DYNAMIC_PRICE}")
    for k in range(1, f.matrix_dims + 1):
        parts.append(f"WHEN kc{k} IS NOT NULL AND (m{k} IS NULL OR (kc{k} = 2 AND m{k} = '0')) THEN {3 + k}")
    if f.unique:
        parts.append(f"WHEN is_unique AND json_extract_string(attributes, unique_path) IS NULL THEN {BAD_UNIQUE}")
    return f"CAST(CASE WHEN slot_id IS NOT NULL THEN CASE {' '.join(parts)} END END AS TINYINT)"


def _shard(i: int, shards: int, col: str) -> str:
    """SQL: ``col`` is in shard ``i`` of ``shards`` (by modulo; NULL and negative ids: shard 0)."""
    return f"coalesce({col} % {shards}, 0) <= 0" if i == 0 else f"{col} % {shards} = {i}"


def build_scan(
    con: duckdb.DuckDBPyConnection,
    tag: str,
    usage: str,
    bm: str,
    window: tuple[str, str],
    f: Features,
) -> None:
    """Create ``{tag}_agg``: one row per (slot, matrix key) of rated usage, one row per unrated event."""
    p = param_lists(con, tag)
    lo, hi = window
    key = join_key(con, tag)
    on = (f"s.k = {key('e.subscription_id', 'e.metric')}" if key is not None
          else "s.subscription_id = e.subscription_id AND s.metric = e.metric")
    aggs = [
        "count(*) AS n",
        "sum(quantity) AS sum_q",
        "min(event_time) AS first_at",
        "max(event_time) AS last_at",
        # the event's own values, built only for unrated events (their group is the event)
        "any_value(CASE WHEN u_event_id IS NOT NULL THEN {'subscription_id': subscription_id, 'metric': metric, "
        "'_file': _file, 'bad': bad} END) AS ev",
    ]
    aggs.append("max(quantity) AS max_q" if f.maxq else f"CAST(NULL AS {DEC}) AS max_q")
    aggs.append("max(CASE WHEN is_latest THEN {'t': event_time, 'id': event_id, 'q': quantity} END) AS latest"
                if f.latest else f"CAST(NULL AS {_EV}) AS latest")
    aggs.append("count(DISTINCT CASE WHEN is_unique THEN json_extract_string(attributes, unique_path) END) AS ucount"
                if f.unique else "CAST(NULL AS BIGINT) AS ucount")
    aggs.append("sum(CASE WHEN is_tws THEN quantity * date_diff('millisecond', event_time, seg_end) END) AS tw"
                if f.tws else f"CAST(NULL AS {DEC}) AS tw")
    aggs.append(f"sum(CASE WHEN is_dynamic THEN quantity * TRY_CAST(json_extract_string(attributes, price_path) AS {DEC}) END) AS dyn"
                if f.dynamic else "CAST(NULL AS DECIMAL(38,20)) AS dyn")
    aggs.append("sum(CASE WHEN NOT pct_clamped THEN NULL WHEN quantity > 0 THEN least(greatest(quantity * rate, "
                "coalesce(per_event_min, quantity * rate)), coalesce(per_event_max, quantity * rate)) ELSE quantity * rate END) AS pct"
                if f.pct_clamped else "CAST(NULL AS DECIMAL(38,20)) AS pct")
    aggs.append("list({'t': event_time, 'id': event_id, 'q': quantity}) FILTER (WHERE pct_ordered) AS evs"
                if f.pct_ordered else f"CAST(NULL AS {_EV}[]) AS evs")
    # Large months run in shards of subscription_id (a slot, and so a group, belongs to one
    # subscription): each shard's join build side and aggregation stay in memory instead of
    # spilling; the union of the shards is the same table.
    # matrix keys beyond the largest matrix's dimensions are constant NULL: not grouped by
    ms = [f"m{k}" if k <= f.matrix_dims else f"CAST(NULL AS VARCHAR) AS m{k}" for k in (1, 2, 3)]
    n_lookup = con.execute(f"SELECT count(*) FROM {tag}_lookup").fetchone()[0]
    shards = max(1, -(-n_lookup // LOOKUP_ROWS_PER_SHARD))
    for i in range(shards):
        if shards == 1:
            lookup, only = f"{tag}_lookup", ""
        else:
            lookup = f"(SELECT * FROM {tag}_lookup WHERE {_shard(i, shards, 'subscription_id')})"
            only = f" AND {_shard(i, shards, 'e.subscription_id')}"
        head = f"CREATE OR REPLACE TEMP TABLE {tag}_agg AS" if i == 0 else f"INSERT INTO {tag}_agg"
        con.execute(f"""
        {head}
        SELECT slot_id, {', '.join(ms)}, u_event_id, {', '.join(aggs)}
        FROM (
          SELECT *, CASE WHEN slot_id IS NULL OR bad IS NOT NULL THEN event_id END AS u_event_id
          FROM (
            SELECT *, {bad_expression(f)} AS bad
            FROM (
              SELECT {event_columns(f, p)}
              FROM ({usage}) e
              LEFT JOIN {lookup} s ON {on} AND e.event_time >= s.a AND e.event_time < s.b
              WHERE e.event_time >= {lo} AND e.event_time < {hi} AND (s.kind IS NULL OR s.kind < 2){only}
            ) z
          ) y
        ) x
        GROUP BY slot_id, {''.join(f'm{k}, ' for k in range(1, f.matrix_dims + 1))}u_event_id
        """)
