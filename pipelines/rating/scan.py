"""The single scan of usage: events → (slot, matrix key) aggregates, plus per-event unrated rows.

One pass over the usage relation does everything that needs event values:

* places each event with two hash joins, each with a half-open time condition
  (:func:`build_lookup`): on ``subscription_id`` against a few rows per subscription (the plan
  islands inside its billing period, the rest of the period: unrated, and the time outside it:
  another month's usage, skipped), then on one integer (plan, metric) key against the handful
  of price versions; the pair is the event's slot (plan island x price version);
* aggregates, per (slot, matrix key), every quantity the slot's aggregation and model need
  (sum, count, max, latest, unique count, time weight, dynamic amount, clamped percentage),
  as aggregate expressions, so pricing afterwards only touches the few aggregated rows;
* keeps each event that cannot be rated as its own group (key ``u_event_id``) with its values,
  so unrated usage comes out of the same scan.

Large months (more than ``SLOTS_PER_SHARD`` slots) run the scan once per shard of
subscription_id, so each shard's aggregation fits in memory instead of spilling.

The SQL is assembled from the features present among the slots in force (matrix keys,
dynamic prices, unique counts, ...), so a month without matrix charges pays nothing for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipelines.rating.catalog import DEC, columns_of, live_filter
from pipelines.rating.limits import PRICE, QUANTITY, event_price_ok, within


_EV = f"STRUCT(t TIMESTAMP, id VARCHAR, q {DEC})"

# Slots per shard of the scan (build_scan): a 20M-event month (565k slots) is one shard, 100M
# events (2.8M slots) two (measured at 100M: 1 shard spills, 51 s; 2 shards 41 s).
SLOTS_PER_SHARD = 1_500_000


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
    matrix_attribute: bool  # some MATRIX dimension is an event attribute

    @property
    def matrix(self) -> bool:
        return self.matrix_dims > 0

    @property
    def attributes(self) -> bool:
        """Some price reads event attributes (dynamic price, unique count, matrix attribute)."""
        return self.dynamic or self.unique or self.matrix_attribute

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
                   coalesce(bool_or(config_error IS NOT NULL), false),
                   coalesce(bool_or(3 IN (kc1, kc2, kc3)), false)
            FROM {tag}_prices WHERE price_id IN (SELECT DISTINCT price_id FROM {tag}_slots)""").fetchone()
        return cls(*row)


def read_attribute(path: str) -> str:
    """SQL: an event attribute (``e.attributes`` at the JSON path ``path``); NULL when the attributes
    are not valid JSON (such an event is unrated, ``bad_expression``), so reading never fails."""
    return f"CASE WHEN json_valid(e.attributes) THEN json_extract_string(e.attributes, {path}) END"


def _matrix_key(k: int, p: dict[str, str]) -> str:
    # zone column, time band index (decoded after aggregation), or an attribute
    kc, path = f"{p[f'kc{k}']}[s.pidx]", f"{p[f'path{k}']}[s.pidx]"
    return (f"CASE {kc} WHEN 1 THEN e.zone "
            f"WHEN 2 THEN CAST(CAST(({p['band_mask']}[s.pidx] >> (4 * hour(e.event_time))) & 15 AS TINYINT) AS VARCHAR) "
            f"WHEN 3 THEN {read_attribute(path)} END")


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
    """The two small tables that place each event, and the map from placements to slots.

    * ``{tag}_lookup``: per known subscription, rows tiling the scan window ``[lo, hi)`` with
      half-open time ranges (``r`` numbers them): the plan islands inside the subscription's
      partition window (kind 0, with the plan's dense index ``pl``), the rest of the window
      (kind 1: no plan in force, unrated) and the time outside it (kind 2: another month's usage,
      skipped). Subscriptions whose account is unknown have no kind 0 row.
    * ``{tag}_plookup``: per (plan, metric) the USAGE price versions in force
      (``k = pl * (metrics + 1) + code``, codes in ``{tag}_metrics``; ``[a, b)`` the price's
      validity, ``pidx``).
    * ``{tag}_slotmap``: ``slot_key = r * (prices + 1) + pidx`` -> ``slot_id`` (a slot is the
      island inside the window, cut by the price version).

    The scan joins events to the first on ``subscription_id`` and to the second on ``k``, each
    with the range condition: the large join's build side has a few rows per subscription (not
    per subscription and metric), and the second is a handful of rows."""
    lo, hi = window
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_pidx AS
    SELECT price_id, CAST(row_number() OVER (ORDER BY price_id) AS INTEGER) AS pidx
    FROM {tag}_prices WHERE price_id IN (SELECT DISTINCT price_id FROM {tag}_slots)
    """)
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_plans AS
    SELECT plan_id, CAST(row_number() OVER (ORDER BY plan_id) AS INTEGER) AS pl
    FROM (SELECT DISTINCT plan_id FROM {tag}_prices JOIN {tag}_pidx USING (price_id))
    """)
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_lookup AS
    WITH w AS (
        SELECT subscription_id, win_start, win_end, problem IS NULL AND period_start IS NOT NULL AS billable
        FROM {tag}_subs
    ), isl AS (  -- plan islands inside the partition window
        SELECT w.subscription_id, greatest(CAST(v.valid_from AS TIMESTAMP), w.win_start) AS a,
               least(CAST(v.valid_to AS TIMESTAMP), w.win_end) AS b, v.plan_id
        FROM w JOIN {tag}_ver v USING (subscription_id)
        WHERE w.billable AND CAST(v.valid_from AS TIMESTAMP) < w.win_end AND CAST(v.valid_to AS TIMESTAMP) > w.win_start
    ), il AS (  -- islands with the end of the time covered by the earlier islands
        SELECT *, max(b) OVER (PARTITION BY subscription_id ORDER BY a, b
                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS covered_to
        FROM isl
    ), holes AS (  -- maximal time ranges of [lo, hi) no island covers
        SELECT subscription_id, coalesce(covered_to, {lo}) AS a, a AS b FROM il WHERE coalesce(covered_to, {lo}) < a
        UNION ALL
        SELECT subscription_id, max(b), {hi} FROM isl GROUP BY ALL HAVING max(b) < {hi}
        UNION ALL
        SELECT subscription_id, {lo}, {hi} FROM w
        WHERE NOT EXISTS (SELECT 1 FROM isl WHERE isl.subscription_id = w.subscription_id)
    ), gaps AS (  -- each hole cut at the partition window: inside it kind 1 (unrated), outside kind 2
        -- (no window: all kind 2; NULLs compare as false, so empty or undefined pieces drop out)
        SELECT h.subscription_id, p.a, p.b, p.kind
        FROM holes h JOIN w USING (subscription_id),
             LATERAL (SELECT unnest([
                 {{'a': h.a, 'b': least(h.b, coalesce(w.win_start, h.b)), 'kind': 2}},
                 {{'a': CASE WHEN w.win_start IS NOT NULL THEN greatest(h.a, w.win_start) END,
                   'b': least(h.b, w.win_end), 'kind': 1}},
                 {{'a': greatest(h.a, coalesce(w.win_end, h.b)), 'b': h.b, 'kind': 2}}], recursive := true)) p
        WHERE p.a < p.b
    )
    SELECT CAST(row_number() OVER (ORDER BY l.subscription_id, l.a) AS BIGINT) AS r, l.subscription_id, l.a, l.b,
           l.kind, pl.pl
    FROM (
        SELECT subscription_id, a, b, plan_id, CAST(0 AS TINYINT) AS kind FROM isl
        UNION ALL
        SELECT subscription_id, a, b, NULL, CAST(kind AS TINYINT) FROM gaps
    ) l LEFT JOIN {tag}_plans pl USING (plan_id)
    """)
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_metrics AS
    SELECT metric, CAST(row_number() OVER (ORDER BY metric) AS INTEGER) AS code
    FROM (SELECT DISTINCT metric FROM {tag}_slots)
    """)
    n_metrics, n_prices = con.execute(
        f"SELECT (SELECT count(*) FROM {tag}_metrics), (SELECT count(*) FROM {tag}_pidx)").fetchone()
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_plookup AS
    SELECT pl.pl * {n_metrics + 1} + m.code AS k, c.effective_from AS a, c.effective_to AS b, x.pidx, c.price_id
    FROM {tag}_prices c JOIN {tag}_pidx x USING (price_id) JOIN {tag}_plans pl USING (plan_id)
    JOIN {tag}_metrics m USING (metric)
    """)
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_slotmap AS
    SELECT l.r * {n_prices + 1} + x.pidx AS slot_key, s.slot_id
    FROM {tag}_slots s JOIN {tag}_pidx x USING (price_id)
    JOIN {tag}_lookup l ON l.subscription_id = s.subscription_id AND l.kind = 0
         AND s.seg_start >= l.a AND s.seg_end <= l.b
    """)


@dataclass(frozen=True)
class Placement:
    """SQL that places each usage event ``e``: ``l`` (its subscription's lookup row) and ``s`` (the
    price version in force for the plan and metric), and the slot key of the pair."""

    tag: str
    metric_code: str  # SQL over e.metric: its code among the priced metrics, NULL for any other
    k_factor: int  # metrics + 1
    key_factor: int  # prices + 1

    @classmethod
    def of(cls, con: duckdb.DuckDBPyConnection, tag: str) -> "Placement":
        codes = con.execute(f"SELECT metric, code FROM {tag}_metrics ORDER BY code").fetchall()
        n_prices = con.execute(f"SELECT count(*) FROM {tag}_pidx").fetchone()[0]
        whens = " ".join(f"WHEN {_literal(m)} THEN {c}" for m, c in codes)
        code = f"CASE e.metric {whens} END" if codes else "CAST(NULL AS INTEGER)"
        return cls(tag, code, len(codes) + 1, n_prices + 1)

    def joins(self, lookup: str | None = None) -> str:
        """The two LEFT JOINs (``lookup``: a shard of ``{tag}_lookup``, default all of it)."""
        return (f"LEFT JOIN {lookup or self.tag + '_lookup'} l ON l.subscription_id = e.subscription_id "
                f"AND e.event_time >= l.a AND e.event_time < l.b "
                f"LEFT JOIN {self.tag}_plookup s ON s.k = l.pl * {self.k_factor} + {self.metric_code} "
                f"AND e.event_time >= s.a AND e.event_time < s.b")

    def slot_key(self) -> str:
        return f"l.r * {self.key_factor} + s.pidx"


def event_columns(f: Features, p: dict[str, str], place: Placement) -> str:
    """Per-event SELECT list over ``e`` (usage), ``l`` and ``s`` (:class:`Placement`); price
    parameters by pidx."""
    ks = range(1, f.matrix_dims + 1)
    m = [f"{_matrix_key(k, p)} AS m{k}" for k in ks] + [f"CAST(NULL AS VARCHAR) AS m{k}" for k in range(f.matrix_dims + 1, 4)]
    cols = [f"{place.slot_key()} AS slot_key", "e.event_id", "e.subscription_id", "e.metric", "e.quantity", "e.event_time", "e._file", *m]
    if f.needs_params:
        cols += ["e.attributes", "least(l.b, s.b) AS seg_end"]
        wanted = {"kc1": f.matrix_dims >= 1, "kc2": f.matrix_dims >= 2, "kc3": f.matrix_dims >= 3,
                  "is_dynamic": f.dynamic, "price_path": f.dynamic, "is_unique": f.unique, "unique_path": f.unique,
                  "is_latest": f.latest, "is_tws": f.tws, "pct_clamped": f.pct_clamped, "pct_ordered": f.pct_ordered,
                  "rate": f.pct_clamped, "per_event_min": f.pct_clamped, "per_event_max": f.pct_clamped,
                  "misconfigured": f.config_error}
        cols += [f"{p[name]}[s.pidx] AS {name}" if on else f"CAST(NULL AS {PARAMS[name]}) AS {name}"
                 for name, on in wanted.items()]
    if f.dynamic:  # the event's price as written, read once (checked in bad_expression, used in amt_x)
        cols.append(f"CASE WHEN {p['is_dynamic']}[s.pidx] THEN {read_attribute(p['price_path'] + '[s.pidx]')} END AS price_text")
    return ", ".join(cols)


# Per-event problem codes (rendered into reasons after aggregation, engine._build_unrated).
BAD_MISSING_QUANTITY, BAD_MISCONFIGURED, BAD_DYNAMIC_PRICE, BAD_UNIQUE = 1, 2, 3, 7  # 4, 5, 6: matrix dimension 1..3
BAD_QUANTITY_RANGE, BAD_JSON, BAD_PRICE_RANGE = 8, 9, 10

_PRICE = f"TRY_CAST(price_text AS {DEC})"


def decode_dimension(k: int, raw: str, prices: str = "c") -> str:
    """SQL: matrix dimension value from its per-event key (time band index -> band name)."""
    return f"CASE WHEN {prices}.kc{k} = 2 THEN {prices}.band_names[CAST({raw} AS INTEGER)] ELSE {raw} END"


def bad_expression(f: Features) -> str:
    """Why a matched event cannot be rated, as a TINYINT code (NULL if it can), over event_columns."""
    parts = [f"WHEN quantity IS NULL THEN {BAD_MISSING_QUANTITY}",
             f"WHEN NOT {within('quantity', QUANTITY)} THEN {BAD_QUANTITY_RANGE}"]
    if f.config_error:
        parts.append(f"WHEN misconfigured THEN {BAD_MISCONFIGURED}")
    if f.attributes:
        reads = (["is_dynamic"] if f.dynamic else []) + (["is_unique"] if f.unique else []) + \
                ([f"kc{k} = 3" for k in range(1, f.matrix_dims + 1)] if f.matrix_attribute else [])
        parts.append(f"WHEN ({' OR '.join(reads)}) AND NOT json_valid(attributes) THEN {BAD_JSON}")
    if f.dynamic:
        parts += [f"WHEN is_dynamic AND {_PRICE} IS NULL THEN {BAD_DYNAMIC_PRICE}",
                  f"WHEN is_dynamic AND NOT {within(_PRICE, PRICE)} THEN {BAD_PRICE_RANGE}",
                  f"WHEN is_dynamic AND NOT {event_price_ok(_PRICE, 'price_text')} THEN {BAD_DYNAMIC_PRICE}"]
    for k in range(1, f.matrix_dims + 1):
        parts.append(f"WHEN kc{k} IS NOT NULL AND (m{k} IS NULL OR (kc{k} = 2 AND m{k} = '0')) THEN {3 + k}")
    if f.unique:
        parts.append(f"WHEN is_unique AND json_extract_string(attributes, unique_path) IS NULL THEN {BAD_UNIQUE}")
    return f"CAST(CASE WHEN slot_key IS NOT NULL THEN CASE {' '.join(parts)} END END AS TINYINT)"


def event_percentage(units: str) -> str:
    """SQL: the PERCENTAGE amount of one event's chargeable ``units``: ``units * rate``, raised to
    ``per_event_min`` or lowered to ``per_event_max`` (either may be absent) when the units are
    positive."""
    x = f"{units} * rate"
    return (f"CASE WHEN {units} > 0 AND {x} < per_event_min THEN per_event_min "
            f"WHEN {units} > 0 AND {x} > per_event_max THEN per_event_max ELSE {x} END")


def exact_sum(x: str, name: str) -> list[str]:
    """Two aggregates adding up to ``sum(x)`` exactly, neither of which can overflow: the whole parts
    (``{name}_i``, DECIMAL(38,0)) and the fractions (``{name}_f``); :func:`joined_sum` adds them."""
    return [f"sum(trunc({x})) AS {name}_i", f"sum({x} - trunc({x})) AS {name}_f"]


def joined_sum(name: str, typ: str, prefix: str = "") -> str:
    """SQL: the sum split by :func:`exact_sum`, as ``typ``; fails (inside the line's ``try``) when
    it does not fit."""
    return f"(CAST({prefix}{name}_i AS {typ}) + {prefix}{name}_f)"


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
    place = Placement.of(con, tag)
    lo, hi = window
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
    aggs.append("count(DISTINCT CASE WHEN is_unique AND bad IS NULL THEN json_extract_string(attributes, unique_path) END) AS ucount"
                if f.unique else "CAST(NULL AS BIGINT) AS ucount")
    # a rateable event's own amount (DYNAMIC price, or clamped PERCENTAGE; never both for one
    # price) and TIME_WEIGHTED_SUM weight, summed exactly: no sum of many events can overflow (the
    # line's arithmetic, engine.py, checks the total's range)
    amount = (["WHEN is_dynamic THEN quantity * " + _PRICE] if f.dynamic else []) + \
             ([f"WHEN pct_clamped THEN {event_percentage('quantity')}"] if f.pct_clamped else [])
    per_event = {
        "amt": ("DECIMAL(38,20)", f"CASE WHEN bad IS NULL THEN CASE {' '.join(amount)} END END" if amount else None),
        "tw": (DEC, "CASE WHEN is_tws AND bad IS NULL THEN quantity * date_diff('millisecond', event_time, seg_end) END"
               if f.tws else None),
    }
    x_columns = "".join(f", {x} AS {name}_x" for name, (_, x) in per_event.items() if x)
    for name, (typ, x) in per_event.items():
        aggs += exact_sum(f"{name}_x", name) if x else [f"CAST(NULL AS DECIMAL(38,0)) AS {name}_i", f"CAST(NULL AS {typ}) AS {name}_f"]
    aggs.append("list({'t': event_time, 'id': event_id, 'q': quantity}) FILTER (WHERE pct_ordered) AS evs"
                if f.pct_ordered else f"CAST(NULL AS {_EV}[]) AS evs")
    # Large months run in shards of subscription_id (a slot, and so a group, belongs to one
    # subscription): each shard's join build side and aggregation stay in memory instead of
    # spilling; the union of the shards is the same table.
    # matrix keys beyond the largest matrix's dimensions are constant NULL: not grouped by
    ms = [f"m{k}" if k <= f.matrix_dims else f"CAST(NULL AS VARCHAR) AS m{k}" for k in (1, 2, 3)]
    n_slots = con.execute(f"SELECT count(*) FROM {tag}_slots").fetchone()[0]
    shards = max(1, -(-n_slots // SLOTS_PER_SHARD))
    for i in range(shards):
        if shards == 1:
            lookup, only = f"{tag}_lookup", ""
        else:
            lookup = f"(SELECT * FROM {tag}_lookup WHERE {_shard(i, shards, 'subscription_id')})"
            only = f" AND {_shard(i, shards, 'e.subscription_id')}"
        head = f"CREATE OR REPLACE TEMP TABLE {tag}_agg AS" if i == 0 else f"INSERT INTO {tag}_agg"
        con.execute(f"""
        {head}
        SELECT m.slot_id, g.* EXCLUDE (slot_key)
        FROM (
          SELECT slot_key, {', '.join(ms)}, u_event_id, {', '.join(aggs)}
          FROM (
            SELECT *, CASE WHEN slot_key IS NULL OR bad IS NOT NULL THEN event_id END AS u_event_id{x_columns}
            FROM (
              SELECT *, {bad_expression(f)} AS bad
              FROM (
                SELECT {event_columns(f, p, place)}
                FROM ({usage}) e
                {place.joins(lookup)}
                WHERE e.event_time >= {lo} AND e.event_time < {hi} AND (l.kind IS NULL OR l.kind < 2){only}
              ) z
            ) y
          ) x
          GROUP BY slot_key, {''.join(f'm{k}, ' for k in range(1, f.matrix_dims + 1))}u_event_id
        ) g LEFT JOIN {tag}_slotmap m USING (slot_key)
        """)
