"""The single scan of usage: events → (slot, matrix key) aggregates, plus per-event unrated rows.

One pass over the usage relation does everything that needs event values:

* places each event with two hash joins, each with a half-open time condition
  (:func:`build_lookup`): on ``subscription_id`` against a few rows per subscription, its
  *timeline* (the plan islands inside its billing period, the rest of the period: unrated, and
  the time outside it: another month's usage, skipped), then on one integer (plan, metric) key
  against the handful of price versions; the pair is the event's slot (plan island x price
  version);
* aggregates, per (slot, matrix key), every quantity the slot's aggregation and model need
  (sum, count, max, latest, unique count, time weight, dynamic amount, clamped percentage),
  as aggregate expressions, so pricing afterwards only touches the few aggregated rows;
* keeps each event that cannot be rated as its own group (key ``unrated_event_id``) with its
  values, so unrated usage comes out of the same scan.

Large months (more than ``SLOTS_PER_SHARD`` slots) run the scan once per shard of
subscription_id, so each shard's aggregation fits in memory instead of spilling.

The SQL is assembled from the features present among the slots in force (matrix keys,
dynamic prices, unique counts, ...), so a month without matrix charges pays nothing for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from domain.money import MONEY
from domain.sql import columns_of, live_filter, quote_literal
from pipelines.rating.catalog import EVENT_ATTRIBUTE, TIME_BAND_BY_HOUR, ZONE_COLUMN
from pipelines.rating.limits import PRICE, PRODUCT, QUANTITY, QUANTITY_OUT_OF_RANGE, event_price_ok, within

EVENT_STRUCT = f"STRUCT(event_time TIMESTAMP, event_id VARCHAR, quantity {MONEY})"

# Slots per shard of the scan (build_scan): a 20M-event month (565k slots) is one shard, 100M
# events (2.8M slots) two (measured at 100M: 1 shard spills, 51 s; 2 shards 41 s).
SLOTS_PER_SHARD = 1_500_000

# Kinds of timeline piece: a plan island inside the partition window (rated), the rest of the
# window (no plan in force: unrated), the time outside the window (another month's usage: skipped).
IN_PLAN, NO_PLAN, OTHER_MONTH = 0, 1, 2


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
    models: frozenset[str] | None = None  # charge models of the valid price versions in force (None: any)

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
                   coalesce(bool_or({EVENT_ATTRIBUTE} IN (dim1_source, dim2_source, dim3_source)), false)
            FROM {tag}_prices WHERE price_id IN (SELECT DISTINCT price_id FROM {tag}_slots)""").fetchone()
        models = con.execute(f"""SELECT DISTINCT charge_model FROM {tag}_prices
            WHERE config_error IS NULL AND price_id IN (SELECT DISTINCT price_id FROM {tag}_slots)""").fetchall()
        return cls(*row, models=frozenset(m for (m,) in models))


def scan_window(con: duckdb.DuckDBPyConnection, tag: str, bm: str) -> tuple[str, str]:
    """The time range ``[lo, hi)`` (SQL timestamps) the scan reads: every partition window, and
    the calendar month (events of unknown subscriptions)."""
    lo, hi = con.execute(f"""
        SELECT least(min(window_start), CAST({bm} AS TIMESTAMP)),
               greatest(max(window_end), CAST({bm} + INTERVAL 1 MONTH AS TIMESTAMP))
        FROM {tag}_subscriptions""").fetchone()
    return f"TIMESTAMP '{lo}'", f"TIMESTAMP '{hi}'"


def read_attribute(path: str) -> str:
    """SQL: an event attribute (``e.attributes`` at the JSON path ``path``); NULL when the attributes
    are not valid JSON (such an event is unrated, ``problem_expression``), so reading never fails."""
    return f"CASE WHEN json_valid(e.attributes) THEN json_extract_string(e.attributes, {path}) END"


def _dimension_key(k: int, p: dict[str, str]) -> str:
    """SQL: the event's key for MATRIX dimension ``k``: the zone column, the time band index
    (decoded after aggregation, :func:`decode_dimension`) or an attribute."""
    source, path = f"{p[f'dim{k}_source']}[price.price_index]", f"{p[f'dim{k}_path']}[price.price_index]"
    band = f"CAST(CAST(({p['band_mask']}[price.price_index] >> (4 * hour(e.event_time))) & 15 AS TINYINT) AS VARCHAR)"
    return (f"CASE {source} WHEN {ZONE_COLUMN} THEN e.zone WHEN {TIME_BAND_BY_HOUR} THEN {band} "
            f"WHEN {EVENT_ATTRIBUTE} THEN {read_attribute(path)} END")


def usage_source(con: duckdb.DuckDBPyConnection, usage: str) -> str:
    """A SELECT over the usage relation with the columns the engine reads (missing optional
    columns as NULL) and deleted rows removed."""
    cols = columns_of(con, usage)
    opt = {c: (c if c in cols else f"CAST(NULL AS VARCHAR) AS {c}") for c in ("zone", "attributes", "_file")}
    return (f"SELECT event_id, subscription_id, metric, CAST(quantity AS {MONEY}) AS quantity, "
            f"CAST(event_time AS TIMESTAMP) AS event_time, {opt['zone']}, {opt['attributes']}, {opt['_file']} "
            f"FROM {usage} WHERE {live_filter(cols)}")


# Price parameters per-event expressions read. The placement carries only ``price_index`` (the
# price's dense index); each parameter is a constant SQL list indexed by it, compiled from the
# (small) price table once per run, so the join payload stays three integers wide.
PARAMS = {
    "dim1_source": "TINYINT", "dim2_source": "TINYINT", "dim3_source": "TINYINT", "dim1_path": "VARCHAR",
    "dim2_path": "VARCHAR", "dim3_path": "VARCHAR", "band_mask": "HUGEINT", "is_dynamic": "BOOLEAN",
    "price_path": "VARCHAR", "is_unique": "BOOLEAN", "unique_path": "VARCHAR", "is_latest": "BOOLEAN",
    "is_tws": "BOOLEAN", "pct_clamped": "BOOLEAN", "pct_ordered": "BOOLEAN", "rate": MONEY, "per_event_min": MONEY,
    "per_event_max": MONEY, "misconfigured": "BOOLEAN",
}


def _literal(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return quote_literal(v)
    return str(v)


def param_lists(con: duckdb.DuckDBPyConnection, tag: str) -> dict[str, str]:
    """``{param: SQL list literal}`` over the prices in force, in ``price_index`` order."""
    cols = [c if c != "misconfigured" else "config_error IS NOT NULL AS misconfigured" for c in PARAMS]
    rows = con.execute(f"SELECT {', '.join(cols)} FROM {tag}_prices JOIN {tag}_price_index USING (price_id) "
                       "ORDER BY price_index").fetchall()
    out = {}
    for i, (name, typ) in enumerate(PARAMS.items()):
        values = ", ".join(_literal(r[i]) for r in rows) or "NULL"
        out[name] = f"CAST([{values}] AS {typ}[])"
    return out


def build_lookup(con: duckdb.DuckDBPyConnection, tag: str, window: tuple[str, str]) -> None:
    """The small tables that place each event (``window``: the scan's ``[lo, hi)``).

    The scan joins events to ``{tag}_timeline`` on ``subscription_id`` and to
    ``{tag}_price_lookup`` on ``plan_metric_key``, each with the range condition: the large join's
    build side has a few rows per subscription (not per subscription and metric), and the second
    is a handful of rows; ``{tag}_slot_keys`` maps the pair to its slot."""
    build_indexes(con, tag)
    build_timeline(con, tag, window)
    build_price_lookup(con, tag)
    build_slot_keys(con, tag)


def build_indexes(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    """Dense integer codes of the price versions in force (``{tag}_price_index``), of their
    plans (``{tag}_plan_index``) and of the metrics priced (``{tag}_metric_codes``)."""
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_price_index AS
    SELECT price_id, CAST(row_number() OVER (ORDER BY price_id) AS INTEGER) AS price_index
    FROM {tag}_prices WHERE price_id IN (SELECT DISTINCT price_id FROM {tag}_slots)
    """)
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_plan_index AS
    SELECT plan_id, CAST(row_number() OVER (ORDER BY plan_id) AS INTEGER) AS plan_index
    FROM (SELECT DISTINCT plan_id FROM {tag}_prices JOIN {tag}_price_index USING (price_id))
    """)
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_metric_codes AS
    SELECT metric, CAST(row_number() OVER (ORDER BY metric) AS INTEGER) AS metric_code
    FROM (SELECT DISTINCT metric FROM {tag}_slots)
    """)


def build_timeline(con: duckdb.DuckDBPyConnection, tag: str, window: tuple[str, str]) -> None:
    """``{tag}_timeline``: per known subscription, pieces tiling the scan window ``[lo, hi)`` with
    half-open ranges ``[starts_at, ends_at)`` (numbered by ``piece_id``): its plan islands inside
    its partition window (kind :data:`IN_PLAN`, with the plan's ``plan_index``), the rest of the
    window (:data:`NO_PLAN`) and the time outside it (:data:`OTHER_MONTH`). Subscriptions whose
    account is unknown have no island piece."""
    lo, hi = window
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_timeline AS
    WITH windows AS (
        SELECT subscription_id, window_start, window_end, problem IS NULL AND period_start IS NOT NULL AS billable
        FROM {tag}_subscriptions
    ), islands AS (  -- plan islands inside the partition window
        SELECT w.subscription_id, greatest(CAST(i.valid_from AS TIMESTAMP), w.window_start) AS starts_at,
               least(CAST(i.valid_to AS TIMESTAMP), w.window_end) AS ends_at, i.plan_id
        FROM windows w JOIN {tag}_islands i USING (subscription_id)
        WHERE w.billable AND CAST(i.valid_from AS TIMESTAMP) < w.window_end AND CAST(i.valid_to AS TIMESTAMP) > w.window_start
    ), covered AS (  -- islands with the end of the time covered by the earlier islands
        SELECT *, max(ends_at) OVER (PARTITION BY subscription_id ORDER BY starts_at, ends_at
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS covered_to
        FROM islands
    ), holes AS (  -- maximal time ranges of [lo, hi) no island covers
        SELECT subscription_id, coalesce(covered_to, {lo}) AS starts_at, c.starts_at AS ends_at
        FROM covered c WHERE coalesce(covered_to, {lo}) < c.starts_at
        UNION ALL
        SELECT subscription_id, max(ends_at), {hi} FROM islands GROUP BY ALL HAVING max(ends_at) < {hi}
        UNION ALL
        SELECT subscription_id, {lo}, {hi} FROM windows w
        WHERE NOT EXISTS (SELECT 1 FROM islands i WHERE i.subscription_id = w.subscription_id)
    ), gaps AS (  -- each hole cut at the partition window: inside it NO_PLAN, outside OTHER_MONTH
        -- (no window: all OTHER_MONTH; NULLs compare as false, so empty or undefined pieces drop out)
        SELECT h.subscription_id, p.starts_at, p.ends_at, p.kind
        FROM holes h JOIN windows w USING (subscription_id),
             LATERAL (SELECT unnest([
                 {{'starts_at': h.starts_at, 'ends_at': least(h.ends_at, coalesce(w.window_start, h.ends_at)),
                   'kind': {OTHER_MONTH}}},
                 {{'starts_at': CASE WHEN w.window_start IS NOT NULL THEN greatest(h.starts_at, w.window_start) END,
                   'ends_at': least(h.ends_at, w.window_end), 'kind': {NO_PLAN}}},
                 {{'starts_at': greatest(h.starts_at, coalesce(w.window_end, h.ends_at)), 'ends_at': h.ends_at,
                   'kind': {OTHER_MONTH}}}], recursive := true)) p
        WHERE p.starts_at < p.ends_at
    )
    SELECT CAST(row_number() OVER (ORDER BY t.subscription_id, t.starts_at) AS BIGINT) AS piece_id, t.subscription_id,
           t.starts_at, t.ends_at, t.kind, p.plan_index
    FROM (
        SELECT subscription_id, starts_at, ends_at, plan_id, CAST({IN_PLAN} AS TINYINT) AS kind FROM islands
        UNION ALL
        SELECT subscription_id, starts_at, ends_at, NULL, CAST(kind AS TINYINT) FROM gaps
    ) t LEFT JOIN {tag}_plan_index p USING (plan_id)
    """)


def _counts(con: duckdb.DuckDBPyConnection, tag: str) -> tuple[int, int]:
    """(metrics priced, price versions in force)."""
    return con.execute(
        f"SELECT (SELECT count(*) FROM {tag}_metric_codes), (SELECT count(*) FROM {tag}_price_index)").fetchone()


def build_price_lookup(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    """``{tag}_price_lookup``: per (plan, metric) the USAGE price versions in force, keyed by one
    integer ``plan_metric_key = plan_index * (metrics + 1) + metric_code``, with the price's
    validity ``[starts_at, ends_at)`` and its ``price_index``."""
    n_metrics, _ = _counts(con, tag)
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_price_lookup AS
    SELECT p.plan_index * {n_metrics + 1} + m.metric_code AS plan_metric_key, c.effective_from AS starts_at,
           c.effective_to AS ends_at, x.price_index, c.price_id
    FROM {tag}_prices c JOIN {tag}_price_index x USING (price_id) JOIN {tag}_plan_index p USING (plan_id)
    JOIN {tag}_metric_codes m USING (metric)
    """)


def build_slot_keys(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    """``{tag}_slot_keys``: ``slot_key = piece_id * (prices + 1) + price_index`` -> ``slot_id``
    (a slot is the island piece inside the window, cut by the price version)."""
    _, n_prices = _counts(con, tag)
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_slot_keys AS
    SELECT t.piece_id * {n_prices + 1} + x.price_index AS slot_key, s.slot_id
    FROM {tag}_slots s JOIN {tag}_price_index x USING (price_id)
    JOIN {tag}_timeline t ON t.subscription_id = s.subscription_id AND t.kind = {IN_PLAN}
         AND s.segment_start >= t.starts_at AND s.segment_end <= t.ends_at
    """)


@dataclass(frozen=True)
class Placement:
    """SQL that places each usage event ``e``: ``piece`` (its subscription's timeline piece) and
    ``price`` (the price version in force for the plan and metric), and the slot key of the pair."""

    tag: str
    metric_code: str  # SQL over e.metric: its code among the priced metrics, NULL for any other
    metric_factor: int  # metrics + 1
    price_factor: int  # prices + 1

    @classmethod
    def of(cls, con: duckdb.DuckDBPyConnection, tag: str) -> "Placement":
        codes = con.execute(f"SELECT metric, metric_code FROM {tag}_metric_codes ORDER BY metric_code").fetchall()
        _, n_prices = _counts(con, tag)
        whens = " ".join(f"WHEN {_literal(m)} THEN {c}" for m, c in codes)
        code = f"CASE e.metric {whens} END" if codes else "CAST(NULL AS INTEGER)"
        return cls(tag, code, len(codes) + 1, n_prices + 1)

    def joins(self, timeline: str | None = None) -> str:
        """The two LEFT JOINs (``timeline``: a shard of ``{tag}_timeline``, default all of it)."""
        return (f"LEFT JOIN {timeline or self.tag + '_timeline'} piece ON piece.subscription_id = e.subscription_id "
                f"AND e.event_time >= piece.starts_at AND e.event_time < piece.ends_at "
                f"LEFT JOIN {self.tag}_price_lookup price "
                f"ON price.plan_metric_key = piece.plan_index * {self.metric_factor} + {self.metric_code} "
                f"AND e.event_time >= price.starts_at AND e.event_time < price.ends_at")

    def slot_key(self) -> str:
        return f"piece.piece_id * {self.price_factor} + price.price_index"


def event_columns(f: Features, p: dict[str, str], place: Placement) -> str:
    """Per-event SELECT list over ``e`` (usage), ``piece`` and ``price`` (:class:`Placement`);
    price parameters by ``price_index``."""
    keys = [f"{_dimension_key(k, p)} AS dim{k}_key" for k in range(1, f.matrix_dims + 1)]
    keys += [f"CAST(NULL AS VARCHAR) AS dim{k}_key" for k in range(f.matrix_dims + 1, 4)]
    cols = [f"{place.slot_key()} AS slot_key", "e.event_id", "e.subscription_id", "e.metric", "e.quantity", "e.event_time",
            "e._file", *keys]
    if f.needs_params:
        cols += ["e.attributes", "least(piece.ends_at, price.ends_at) AS segment_end"]
        wanted = {"dim1_source": f.matrix_dims >= 1, "dim2_source": f.matrix_dims >= 2, "dim3_source": f.matrix_dims >= 3,
                  "is_dynamic": f.dynamic, "price_path": f.dynamic, "is_unique": f.unique, "unique_path": f.unique,
                  "is_latest": f.latest, "is_tws": f.tws, "pct_clamped": f.pct_clamped, "pct_ordered": f.pct_ordered,
                  "rate": f.pct_clamped, "per_event_min": f.pct_clamped, "per_event_max": f.pct_clamped,
                  "misconfigured": f.config_error}
        cols += [f"{p[name]}[price.price_index] AS {name}" if on else f"CAST(NULL AS {PARAMS[name]}) AS {name}"
                 for name, on in wanted.items()]
    if f.dynamic:  # the event's price as written, read once (checked in problem_expression, summed in the scan)
        cols.append(f"CASE WHEN {p['is_dynamic']}[price.price_index] "
                    f"THEN {read_attribute(p['price_path'] + '[price.price_index]')} END AS price_text")
    return ", ".join(cols)


# Per-event problem codes (the scan's ``problem``), rendered into reasons by :func:`problem_reason`.
MISSING_QUANTITY, MISCONFIGURED, INVALID_DYNAMIC_PRICE, MISSING_UNIQUE_ATTRIBUTE = 1, 2, 3, 7
QUANTITY_RANGE, ATTRIBUTES_NOT_JSON, DYNAMIC_PRICE_RANGE = 8, 9, 10


def missing_dimension(k: int) -> int:
    """The problem code of an event without a value for MATRIX dimension ``k`` (1..3): 4, 5, 6."""
    return 3 + k


_DYNAMIC_PRICE = f"TRY_CAST(price_text AS {MONEY})"


def decode_dimension(k: int, key: str, prices: str = "c") -> str:
    """SQL: matrix dimension value from its per-event key (time band index -> band name)."""
    return (f"CASE WHEN {prices}.dim{k}_source = {TIME_BAND_BY_HOUR} THEN {prices}.band_names[CAST({key} AS INTEGER)] "
            f"ELSE {key} END")


def problem_expression(f: Features) -> str:
    """Why a placed event cannot be rated, as a TINYINT code (NULL if it can), over event_columns."""
    parts = [f"WHEN quantity IS NULL THEN {MISSING_QUANTITY}",
             f"WHEN NOT {within('quantity', QUANTITY)} THEN {QUANTITY_RANGE}"]
    if f.config_error:
        parts.append(f"WHEN misconfigured THEN {MISCONFIGURED}")
    if f.attributes:
        reads = (["is_dynamic"] if f.dynamic else []) + (["is_unique"] if f.unique else []) + \
                ([f"dim{k}_source = {EVENT_ATTRIBUTE}" for k in range(1, f.matrix_dims + 1)] if f.matrix_attribute else [])
        parts.append(f"WHEN ({' OR '.join(reads)}) AND NOT json_valid(attributes) THEN {ATTRIBUTES_NOT_JSON}")
    if f.dynamic:
        parts += [f"WHEN is_dynamic AND {_DYNAMIC_PRICE} IS NULL THEN {INVALID_DYNAMIC_PRICE}",
                  f"WHEN is_dynamic AND NOT {within(_DYNAMIC_PRICE, PRICE)} THEN {DYNAMIC_PRICE_RANGE}",
                  f"WHEN is_dynamic AND NOT {event_price_ok(_DYNAMIC_PRICE, 'price_text')} THEN {INVALID_DYNAMIC_PRICE}"]
    for k in range(1, f.matrix_dims + 1):
        parts.append(f"WHEN dim{k}_source IS NOT NULL AND (dim{k}_key IS NULL OR (dim{k}_source = {TIME_BAND_BY_HOUR} "
                     f"AND dim{k}_key = '0')) THEN {missing_dimension(k)}")
    if f.unique:
        parts.append(f"WHEN is_unique AND json_extract_string(attributes, unique_path) IS NULL THEN {MISSING_UNIQUE_ATTRIBUTE}")
    return f"CAST(CASE WHEN slot_key IS NOT NULL THEN CASE {' '.join(parts)} END END AS TINYINT)"


def problem_reason(code: str, price: str) -> str:
    """SQL: the unrated reason of the problem code ``code`` (docs/rating.md), ``price`` the alias
    of the event's row of ``{tag}_prices``."""
    dims = " ".join(f"WHEN {missing_dimension(k)} THEN 'bad attributes: missing ' || {price}.dims[{k}]" for k in (1, 2, 3))
    return f"""CASE {code}
                 WHEN {MISSING_QUANTITY} THEN 'missing quantity'
                 WHEN {QUANTITY_RANGE} THEN '{QUANTITY_OUT_OF_RANGE}'
                 WHEN {MISCONFIGURED} THEN 'charge misconfigured: ' || {price}.config_error
                 WHEN {ATTRIBUTES_NOT_JSON} THEN 'bad attributes: not valid JSON'
                 WHEN {INVALID_DYNAMIC_PRICE} THEN 'bad attributes: missing or invalid ' || {price}.price_attribute
                 WHEN {DYNAMIC_PRICE_RANGE} THEN 'bad attributes: ' || {price}.price_attribute || ' out of range'
                 {dims}
                 WHEN {MISSING_UNIQUE_ATTRIBUTE} THEN 'bad attributes: missing ' || {price}.unique_attribute END"""


def event_percentage(units: str) -> str:
    """SQL: the PERCENTAGE amount of one event's chargeable ``units``: ``units * rate``, raised to
    ``per_event_min`` or lowered to ``per_event_max`` (either may be absent) when the units are
    positive."""
    x = f"{units} * rate"
    return (f"CASE WHEN {units} > 0 AND {x} < per_event_min THEN per_event_min "
            f"WHEN {units} > 0 AND {x} > per_event_max THEN per_event_max ELSE {x} END")


def exact_sum(x: str, name: str) -> list[str]:
    """Two aggregates adding up to ``sum(x)`` exactly, neither of which can overflow: the whole parts
    (``{name}_whole``, DECIMAL(38,0)) and the fractions (``{name}_fraction``); :func:`joined_sum` adds them."""
    return [f"sum(trunc({x})) AS {name}_whole", f"sum({x} - trunc({x})) AS {name}_fraction"]


def joined_sum(name: str, typ: str, prefix: str = "") -> str:
    """SQL: the sum split by :func:`exact_sum`, as ``typ``; fails (inside the line's ``try``) when
    it does not fit."""
    return f"(CAST({prefix}{name}_whole AS {typ}) + {prefix}{name}_fraction)"


def _shard(i: int, shards: int, col: str) -> str:
    """SQL: ``col`` is in shard ``i`` of ``shards`` (by modulo; NULL and negative ids: shard 0)."""
    return f"coalesce({col} % {shards}, 0) <= 0" if i == 0 else f"{col} % {shards} = {i}"


def _per_event_amounts(f: Features) -> dict[str, tuple[str, str | None]]:
    """``{name: (type, SQL)}``: a rateable event's own amount (DYNAMIC price, or clamped
    PERCENTAGE; never both for one price) and TIME_WEIGHTED_SUM weight (SQL None: not needed)."""
    amount = (["WHEN is_dynamic THEN quantity * " + _DYNAMIC_PRICE] if f.dynamic else []) + \
             ([f"WHEN pct_clamped THEN {event_percentage('quantity')}"] if f.pct_clamped else [])
    return {
        "event_amount": (PRODUCT, f"CASE WHEN problem IS NULL THEN CASE {' '.join(amount)} END END" if amount else None),
        "time_weight": (MONEY, "CASE WHEN is_tws AND problem IS NULL "
                               "THEN quantity * date_diff('millisecond', event_time, segment_end) END" if f.tws else None),
    }


def _aggregates(f: Features) -> list[str]:
    """The aggregate expressions of a (slot, matrix key) group: only those the prices in force
    need, the others constant NULLs of the same type. The per-event amounts are summed exactly
    (:func:`exact_sum`): no sum of many events can overflow (the line's arithmetic checks the
    total's range)."""
    aggs = [
        "count(*) AS event_count",
        "sum(quantity) AS quantity_sum",
        "min(event_time) AS first_event_at",
        "max(event_time) AS last_event_at",
        # the event's own values, built only for unrated events (their group is the event)
        "any_value(CASE WHEN unrated_event_id IS NOT NULL THEN {'subscription_id': subscription_id, 'metric': metric, "
        "'_file': _file, 'problem': problem} END) AS unrated_event",
        "max(quantity) AS quantity_max" if f.maxq else f"CAST(NULL AS {MONEY}) AS quantity_max",
        "max(CASE WHEN is_latest THEN {'event_time': event_time, 'event_id': event_id, 'quantity': quantity} END) AS latest"
        if f.latest else f"CAST(NULL AS {EVENT_STRUCT}) AS latest",
        "count(DISTINCT CASE WHEN is_unique AND problem IS NULL THEN json_extract_string(attributes, unique_path) END) "
        "AS unique_count" if f.unique else "CAST(NULL AS BIGINT) AS unique_count",
    ]
    for name, (typ, x) in _per_event_amounts(f).items():
        aggs += exact_sum(f"{name}_per_event", name) if x else [f"CAST(NULL AS DECIMAL(38,0)) AS {name}_whole",
                                                               f"CAST(NULL AS {typ}) AS {name}_fraction"]
    aggs.append("list({'event_time': event_time, 'event_id': event_id, 'quantity': quantity}) FILTER (WHERE pct_ordered) "
                "AS ordered_events" if f.pct_ordered else f"CAST(NULL AS {EVENT_STRUCT}[]) AS ordered_events")
    return aggs


def build_scan(
    con: duckdb.DuckDBPyConnection,
    tag: str,
    usage: str,
    window: tuple[str, str],
    f: Features,
) -> None:
    """Create ``{tag}_aggregates``: one row per (slot, matrix key) of rated usage, one row per
    unrated event (``unrated_event_id``); in shards of subscription_id for large months (a slot,
    and so a group, belongs to one subscription: the union of the shards is the same table)."""
    place, params = Placement.of(con, tag), param_lists(con, tag)
    n_slots = con.execute(f"SELECT count(*) FROM {tag}_slots").fetchone()[0]
    shards = max(1, -(-n_slots // SLOTS_PER_SHARD))
    for i in range(shards):
        if shards == 1:
            timeline, only = f"{tag}_timeline", ""
        else:
            timeline = f"(SELECT * FROM {tag}_timeline WHERE {_shard(i, shards, 'subscription_id')})"
            only = f" AND {_shard(i, shards, 'e.subscription_id')}"
        head = f"CREATE OR REPLACE TEMP TABLE {tag}_aggregates AS" if i == 0 else f"INSERT INTO {tag}_aggregates"
        con.execute(f"{head}\n{_scan_select(tag, usage, window, f, place, params, timeline, only)}")


def _scan_select(tag: str, usage: str, window: tuple[str, str], f: Features, place: Placement, params: dict[str, str],
                 timeline: str, only: str) -> str:
    """The scan's SELECT over one shard (``timeline``: its timeline, ``only``: its event filter):
    events placed, their problem found, keyed and grouped, then mapped to their slot."""
    lo, hi = window
    x_columns = "".join(f", {x} AS {name}_per_event" for name, (_, x) in _per_event_amounts(f).items() if x)
    # matrix keys beyond the largest matrix's dimensions are constant NULL: not grouped by
    keys = [f"dim{k}_key" if k <= f.matrix_dims else f"CAST(NULL AS VARCHAR) AS dim{k}_key" for k in (1, 2, 3)]
    group_keys = "".join(f"dim{k}_key, " for k in range(1, f.matrix_dims + 1))
    return f"""
        SELECT m.slot_id, g.* EXCLUDE (slot_key)
        FROM (
          SELECT slot_key, {', '.join(keys)}, unrated_event_id, {', '.join(_aggregates(f))}
          FROM (
            SELECT *, CASE WHEN slot_key IS NULL OR problem IS NOT NULL THEN event_id END AS unrated_event_id{x_columns}
            FROM (
              SELECT *, {problem_expression(f)} AS problem
              FROM (
                SELECT {event_columns(f, params, place)}
                FROM ({usage}) e
                {place.joins(timeline)}
                WHERE e.event_time >= {lo} AND e.event_time < {hi} AND (piece.kind IS NULL OR piece.kind < {OTHER_MONTH}){only}
              ) placed
            ) checked
          ) keyed
          GROUP BY slot_key, {group_keys}unrated_event_id
        ) g LEFT JOIN {tag}_slot_keys m USING (slot_key)
        """
