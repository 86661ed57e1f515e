"""Rating engine: usage priced under the plan and price version in force at event time.

``rate_usage`` is a plain function over a DuckDB connection (``domain.install_macros``
installed) and relation names; it returns DuckDB relations shaped like ``billing.rated_usage``
and ``billing.unrated_usage``. Steps (docs/rating.md):

1. catalog: periods, subscription islands, slots (segment x USAGE price version), tiers;
2. one scan of usage (in shards of subscription_id for large months): two hash joins with a
   time range place each event (its subscription's plan island in the period, then the price
   version in force for the plan and metric), aggregation per (slot, matrix key), unrated
   events kept one per group (``scan.py``);
3. one pass over the aggregated rows: quantities per aggregation (TIME_WEIGHTED_SUM carried
   across segments), allowance, billable, every pricer as a CASE branch over the price's tier
   columns (``pricers.py``), tier slices rendered to JSON text, ids and rounding; then the
   commitment lines (MINIMUM_TRUE_UP, MAXIMUM_CAP) from the slots' totals; a slot with a line
   out of range (its arithmetic overflows, or the amount reaches ``limits.LINE_AMOUNT_LIMIT``) loses its
   lines, and its events become unrated;
4. unrated reasons (a targeted rescan finds the events of slots and matrix cells found unpriceable
   after aggregation).

The heavy step is materialised once into a temp table; the returned relations read the small
temp tables, so they can be inserted, counted or re-read without rescanning usage.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from decimal import Decimal

import duckdb

from domain.money import AMOUNT
from pipelines.rating.catalog import DEC, build_catalog, month_literal
from pipelines.rating.limits import AMOUNT_OUT_OF_RANGE, LINE_AMOUNT_LIMIT, QUANTITY_OUT_OF_RANGE
from pipelines.rating.pricers import (
    install_rating_macros,
    matrix_cells,
    model_code,
    percentage_ordered,
    priced_columns,
    tier_columns,
    tier_slices,
    volume_tier,
)
from pipelines.rating.scan import (
    BAD_DYNAMIC_PRICE,
    BAD_JSON,
    BAD_MISCONFIGURED,
    BAD_MISSING_QUANTITY,
    BAD_PRICE_RANGE,
    BAD_QUANTITY_RANGE,
    BAD_UNIQUE,
    Features,
    Placement,
    bad_expression,
    build_lookup,
    build_scan,
    decode_dimension,
    event_columns,
    joined_sum,
    param_lists,
    usage_source,
)
from warehouse.tables import TABLES

LINE_TYPES = ("USAGE", "MINIMUM_TRUE_UP", "MAXIMUM_CAP")

RATED_COLUMNS = TABLES["billing.rated_usage"].column_names
UNRATED_COLUMNS = TABLES["billing.unrated_usage"].column_names

_counter = itertools.count(1)


@dataclass
class RatingResult:
    """Relations shaped like ``billing.rated_usage`` and ``billing.unrated_usage``."""

    rated: duckdb.DuckDBPyRelation
    unrated: duckdb.DuckDBPyRelation
    billing_month: dt.date
    tag: str
    unrated_share: Decimal | None = None
    unrated_share_limit: Decimal | None = None
    stats: dict = field(default_factory=dict)
    catalog_errors: dict[int, str] = field(default_factory=dict)  # USAGE price versions misconfigured: price_id -> why

    @property
    def within_limit(self) -> bool:
        """False when a limit was given and the unrated share exceeds it (the blocking check)."""
        if self.unrated_share_limit is None or self.unrated_share is None:
            return True
        return self.unrated_share <= self.unrated_share_limit


def _window(con: duckdb.DuckDBPyConnection, tag: str, bm: str) -> tuple[str, str]:
    lo, hi = con.execute(f"""
        SELECT least(min(win_start), CAST({bm} AS TIMESTAMP)),
               greatest(max(win_end), CAST({bm} + INTERVAL 1 MONTH AS TIMESTAMP))
        FROM {tag}_subs""").fetchone()
    return f"TIMESTAMP '{lo}'", f"TIMESTAMP '{hi}'"


def rate_usage(
    con: duckdb.DuckDBPyConnection,
    billing_month: dt.date,
    *,
    usage: str = "core.usage_events",
    subscriptions: str = "core.subscription_versions",
    accounts: str = "core.billing_accounts",
    charges: str = "core.plan_charges",
    unrated_share_limit: float | Decimal | None = None,
) -> RatingResult:
    """Rate the usage of the billing periods billed in ``billing_month`` (first of month).

    Returns relations over temp tables of ``con``: ``.rated`` (columns ``RATED_COLUMNS``) and
    ``.unrated`` (``UNRATED_COLUMNS``). With ``unrated_share_limit``, ``.unrated_share`` is the
    share of events unrated and ``.within_limit`` tells whether invoicing may proceed.
    ``.catalog_errors`` names the misconfigured USAGE price versions (their events are unrated
    with the reason; a version without events in the month is listed there only)."""
    install_rating_macros(con)
    tag = f"_rating_{billing_month:%Y%m}_{next(_counter)}"
    bm = month_literal(billing_month)
    build_catalog(con, billing_month, tag, subscriptions=subscriptions, accounts=accounts, charges=charges)
    f = Features.of(con, tag)
    src = usage_source(con, usage)
    window = _window(con, tag, bm)
    build_lookup(con, tag, window)
    build_scan(con, tag, src, bm, window, f)
    _build_cells(con, tag)
    _build_rated(con, tag, bm, f.tws)
    _build_unrated(con, tag, bm, src, f)
    rated = con.sql(f"SELECT {', '.join(RATED_COLUMNS)} FROM {tag}_rated")
    unrated = con.sql(f"SELECT {', '.join(UNRATED_COLUMNS)} FROM {tag}_unrated")
    errors = con.execute(f"SELECT price_id, config_error FROM {tag}_prices WHERE config_error IS NOT NULL ORDER BY 1").fetchall()
    result = RatingResult(rated, unrated, billing_month, tag, catalog_errors=dict(errors))
    if unrated_share_limit is not None:
        result.unrated_share_limit = Decimal(str(unrated_share_limit))
        result.unrated_share = unrated_share(con, billing_month, rated=f"{tag}_rated", unrated=f"{tag}_unrated")
    return result


def _build_cells(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    """Rated aggregates per (slot, matrix cell): the matrix key values are the cell's dimension values."""
    v = ", ".join(f"{decode_dimension(k, f'a.m{k}')} AS v{k}" for k in (1, 2, 3))
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_cells AS
    SELECT a.slot_id, {v}, n, sum_q, first_at, last_at, max_q, latest, ucount, tw_i, tw_f, amt_i, amt_f, evs
    FROM {tag}_agg a JOIN {tag}_slots s USING (slot_id) JOIN {tag}_prices c USING (price_id)
    WHERE a.u_event_id IS NULL
    """)
    # the unrated events' rows; the scan table is then dropped (at 100M events it is the
    # largest temp table, and the steps after it would otherwise spill)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {tag}_uagg AS SELECT * FROM {tag}_agg WHERE u_event_id IS NOT NULL")
    con.execute(f"DROP TABLE {tag}_agg")


def _line_id(bm: str, line_type: str, dimensions: str = "dimensions") -> str:
    return (f"md5(concat_ws('|', CAST({bm} AS VARCHAR), CAST(subscription_id AS VARCHAR), charge_code, "
            f"CAST(price_id AS VARCHAR), CAST(seg_start AS VARCHAR), CAST(seg_end AS VARCHAR), {line_type}, "
            f"coalesce({dimensions}, '')))")


def _round_money(x: str, mu: str = "mu") -> str:
    """``round_money(x, currency)`` with the currency's minor unit ``mu`` resolved once per
    currency (``{tag}_cur``) instead of per line: the same constant-scale DECIMAL ``round`` (half
    away from zero) per minor unit, as DECIMAL(18,4); NULL (out of range) unless
    ``|x| < LINE_AMOUNT_LIMIT``."""
    rounded = (f"CASE {mu} WHEN 2 THEN TRY_CAST(round({x}, 2) AS {AMOUNT}) WHEN 0 THEN TRY_CAST(round({x}, 0) AS {AMOUNT}) "
               f"WHEN 3 THEN TRY_CAST(round({x}, 3) AS {AMOUNT}) ELSE TRY_CAST(round({x}, 4) AS {AMOUNT}) END")
    return f"CASE WHEN abs({x}) < {LINE_AMOUNT_LIMIT} THEN {rounded} END"


def _build_rated(con: duckdb.DuckDBPyConnection, tag: str, bm: str, tws: bool = True) -> None:
    """``{tag}_rated`` in one pass: one row per (slot, cell), zero-usage slots included, with the
    quantity per aggregation, billable, every pricer as a CASE branch, ids and rounding; then the
    commitment lines (MINIMUM_TRUE_UP, MAXIMUM_CAP) from the slots' USAGE totals; then the slots
    with a line out of range are moved out (:func:`_drop_out_of_range`)."""
    n_tiers = con.execute(f"""SELECT coalesce(max(n_tiers), 0) FROM {tag}_prices
        WHERE config_error IS NULL AND price_id IN (SELECT DISTINCT price_id FROM {tag}_slots)""").fetchone()[0]
    con.execute(f"CREATE OR REPLACE TEMP TABLE {tag}_tierw AS {tier_columns(f'{tag}_tiers', n_tiers)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {tag}_cur AS SELECT DISTINCT currency, minor_unit(currency) AS mu "
                f"FROM {tag}_slots")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {tag}_mcell AS {matrix_cells(f'{tag}_cells', f'{tag}_slots', f'{tag}_prices')}")
    sp = f"""
        SELECT s.slot_id, s.subscription_id, s.account_id, s.currency, s.period_start, s.period_end, s.plan_id,
               s.price_id, s.metric, s.seg_start, s.seg_end, s.period_days, s.proration_factor, s.allowance,
               c.charge_code, c.aggregation, c.charge_model, c.billing_timing, c.unit_price, c.rate, c.fixed_fee,
               c.per_event_min, c.per_event_max, c.free_events, c.package_size, c.default_unit_price,
               c.pct_ordered, c.pct_clamped, c.is_tws, u.mu, {model_code('c.charge_model')} AS mc
        FROM {tag}_slots s JOIN {tag}_prices c USING (price_id) JOIN {tag}_cur u ON u.currency IS NOT DISTINCT FROM s.currency
        WHERE c.config_error IS NULL"""
    has_ordered = con.execute(f"SELECT count(*) FROM {tag}_prices WHERE pct_ordered AND config_error IS NULL "
                              f"AND price_id IN (SELECT DISTINCT price_id FROM {tag}_slots)").fetchone()[0] > 0
    if has_ordered:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE {tag}_ordered AS
            {percentage_ordered(f'(SELECT sp.*, c.evs FROM ({sp}) sp JOIN {tag}_cells c USING (slot_id))')}""")
    ordered = (f"LEFT JOIN {tag}_ordered o USING (slot_id)" if has_ordered
               else f"LEFT JOIN (SELECT NULL::INTEGER AS slot_id, NULL::{DEC} AS o_billable, NULL::DECIMAL(38,0) AS o_rate_i, "
                    f"NULL::DECIMAL(38,20) AS o_rate_f) o USING (slot_id)")
    # without TIME_WEIGHTED_SUM slots, no carry (and ``sp`` is read once, not materialised)
    carry = (f""", tws AS (
        SELECT slot_id, subscription_id, metric, seg_start, seg_end FROM sp WHERE is_tws
    ), carry AS (  -- TIME_WEIGHTED_SUM: the gauge value carried into a segment from earlier ones
        SELECT s.slot_id, coalesce(sum(c.sum_q), 0) AS carry
        FROM tws s
        JOIN tws p ON p.subscription_id = s.subscription_id AND p.metric = s.metric AND p.seg_end <= s.seg_start
        LEFT JOIN {tag}_cells c ON c.slot_id = p.slot_id
        GROUP BY s.slot_id""" if tws
             else f", carry AS (SELECT CAST(NULL AS INTEGER) AS slot_id, CAST(NULL AS {DEC}) AS carry WHERE false")
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_rated AS
    WITH sp AS ({sp}
    ){carry}
    ), q AS (
        SELECT s.*, coalesce(c.n, 0) AS n, c.first_at, c.last_at, c.amt_i, c.amt_f,
               CASE WHEN s.mc = 1 AND c.n > 0 THEN m.dimensions END AS dimensions,
               m.cell_price, o.o_billable, o.o_rate_i, o.o_rate_f, t.* EXCLUDE (price_id),
               CASE s.aggregation
                 WHEN 'SUM' THEN coalesce(c.sum_q, 0)
                 WHEN 'COUNT' THEN CAST(coalesce(c.n, 0) AS {DEC})
                 WHEN 'MAX' THEN coalesce(c.max_q, 0)
                 WHEN 'UNIQUE_COUNT' THEN CAST(coalesce(c.ucount, 0) AS {DEC})
                 WHEN 'LATEST' THEN coalesce(c.latest.q, 0)
                 WHEN 'TIME_WEIGHTED_SUM' THEN try(div_round(  -- NULL: out of range
                      coalesce(k.carry, 0) * date_diff('millisecond', s.seg_start, s.seg_end)
                        + coalesce({joined_sum('tw', DEC, 'c.')}, 0),
                      CAST(s.period_days AS BIGINT) * 86400000, 10))
               END AS quantity
        FROM sp s LEFT JOIN {tag}_cells c USING (slot_id) LEFT JOIN carry k USING (slot_id)
        LEFT JOIN {tag}_mcell m ON m.price_id = s.price_id
             AND m.v1 IS NOT DISTINCT FROM c.v1 AND m.v2 IS NOT DISTINCT FROM c.v2 AND m.v3 IS NOT DISTINCT FROM c.v3
        LEFT JOIN {tag}_tierw t ON t.price_id = s.price_id
        {ordered}
    ), b AS (
        SELECT *, CASE WHEN quantity IS NOT NULL THEN CAST(greatest(quantity - allowance, 0) AS {DEC}) END AS billable FROM q
        WHERE NOT (mc = 1 AND n > 0 AND coalesce(cell_price, default_unit_price) IS NULL)
    ), v AS (
        SELECT *, {volume_tier(n_tiers)} FROM b
    ), l AS (
        SELECT *, 'USAGE' AS line_type, {priced_columns(n_tiers)} FROM v
    )
    SELECT {_line_id(bm, 'line_type')} AS rated_line_id, {bm} AS billing_month,
           account_id, subscription_id, plan_id, price_id, charge_code, metric, aggregation, charge_model,
           billing_timing, line_type, dimensions, currency, period_start, period_end,
           CAST(seg_start AS DATE) AS service_start, CAST(seg_end AS DATE) AS service_end,
           seg_start AS segment_start, seg_end AS segment_end,
           CAST(proration_factor AS {DEC}) AS proration_factor, CAST(quantity AS {DEC}) AS quantity,
           CAST(allowance AS {DEC}) AS included_quantity, CAST(billable_quantity AS {DEC}) AS billable_quantity,
           CAST(applied_unit_price AS {DEC}) AS unit_price, {tier_slices(n_tiers)} AS tier_slices, CAST(n AS BIGINT) AS event_count,
           first_at AS first_event_at, last_at AS last_event_at, CAST(amount_precise AS {DEC}) AS amount_precise,
           {_round_money('amount_precise')} AS amount
    FROM l
    """)
    # Commitments: per slot with a minimum or maximum, the total of its USAGE lines (a slot is
    # (subscription, price version, segment), as in the line id).
    con.execute(f"""
    INSERT INTO {tag}_rated
    WITH s AS (
        SELECT s.*, c.charge_code, c.aggregation, c.charge_model, c.billing_timing, u.mu
        FROM {tag}_slots s JOIN {tag}_prices c USING (price_id) JOIN {tag}_cur u ON u.currency IS NOT DISTINCT FROM s.currency
        WHERE (s.minimum_prorated IS NOT NULL OR s.maximum_prorated IS NOT NULL) AND c.config_error IS NULL
    ), tot AS (
        SELECT r.subscription_id, r.price_id, r.segment_start AS seg_start, r.segment_end AS seg_end,
               sum(r.amount_precise) AS total
        FROM {tag}_rated r
        WHERE r.line_type = 'USAGE' AND r.price_id IN (SELECT DISTINCT price_id FROM s)
        GROUP BY ALL
        HAVING bool_and(r.amount IS NOT NULL)  -- a slot out of range has no commitment lines
    ), t AS (
        SELECT s.*, t.total FROM s JOIN tot t USING (subscription_id, price_id, seg_start, seg_end)
    ), l AS (
        SELECT *, 'MINIMUM_TRUE_UP' AS line_type, minimum_prorated AS unit_price, minimum_prorated - total AS amount_precise
        FROM t WHERE minimum_prorated IS NOT NULL AND total < minimum_prorated
        UNION ALL
        SELECT *, 'MAXIMUM_CAP', maximum_prorated, maximum_prorated - total
        FROM t WHERE maximum_prorated IS NOT NULL AND total > maximum_prorated
    )
    SELECT {_line_id(bm, 'line_type', 'NULL')}, {bm}, account_id, subscription_id, plan_id, price_id, charge_code,
           metric, aggregation, charge_model, billing_timing, line_type, NULL, currency, period_start, period_end,
           CAST(seg_start AS DATE), CAST(seg_end AS DATE), seg_start, seg_end,
           CAST(proration_factor AS {DEC}), CAST(total AS {DEC}), CAST(0 AS {DEC}), CAST(1 AS {DEC}),
           CAST(unit_price AS {DEC}), NULL, CAST(0 AS BIGINT), NULL, NULL, CAST(amount_precise AS {DEC}),
           {_round_money('amount_precise')}
    FROM l
    """)
    _drop_out_of_range(con, tag)


def _drop_out_of_range(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    """``{tag}_oor``: the slots with a line out of range (NULL amount: its arithmetic overflowed or
    the amount reaches the line limit; NULL quantity: the aggregated quantity does not fit),
    with the reason; their lines are deleted (the events are unrated by :func:`_unrated_by_rescan`)."""
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_oor AS
    SELECT s.slot_id, CASE WHEN bool_or(r.quantity IS NULL) THEN '{QUANTITY_OUT_OF_RANGE}'
                           ELSE '{AMOUNT_OUT_OF_RANGE}' END AS reason
    FROM {tag}_rated r JOIN {tag}_slots s ON s.subscription_id = r.subscription_id AND s.price_id = r.price_id
         AND s.seg_start = r.segment_start AND s.seg_end = r.segment_end
    WHERE r.amount IS NULL
    GROUP BY s.slot_id
    """)
    if con.execute(f"SELECT count(*) FROM {tag}_oor").fetchone()[0]:
        con.execute(f"""
        DELETE FROM {tag}_rated r WHERE EXISTS (
            SELECT 1 FROM {tag}_oor o JOIN {tag}_slots s USING (slot_id)
            WHERE s.subscription_id = r.subscription_id AND s.price_id = r.price_id
              AND s.seg_start = r.segment_start AND s.seg_end = r.segment_end)""")


def _build_unrated(con: duckdb.DuckDBPyConnection, tag: str, bm: str, src: str, f: Features) -> None:
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_unrated AS
    SELECT {bm} AS billing_month, a.u_event_id AS event_id, a.ev.subscription_id, sp.account_id, a.ev.metric,
           a.sum_q AS quantity, a.first_at AS event_time,
           CASE
             WHEN a.ev.bad IS NOT NULL THEN CASE a.ev.bad
                 WHEN {BAD_MISSING_QUANTITY} THEN 'missing quantity'
                 WHEN {BAD_QUANTITY_RANGE} THEN '{QUANTITY_OUT_OF_RANGE}'
                 WHEN {BAD_MISCONFIGURED} THEN 'charge misconfigured: ' || c.config_error
                 WHEN {BAD_JSON} THEN 'bad attributes: not valid JSON'
                 WHEN {BAD_DYNAMIC_PRICE} THEN 'bad attributes: missing or invalid ' || c.price_attribute
                 WHEN {BAD_PRICE_RANGE} THEN 'bad attributes: ' || c.price_attribute || ' out of range'
                 WHEN 4 THEN 'bad attributes: missing ' || c.dims[1]
                 WHEN 5 THEN 'bad attributes: missing ' || c.dims[2]
                 WHEN 6 THEN 'bad attributes: missing ' || c.dims[3]
                 WHEN {BAD_UNIQUE} THEN 'bad attributes: missing ' || c.unique_attribute END
             WHEN sp.subscription_id IS NULL THEN 'unknown subscription'
             WHEN sp.problem IS NOT NULL THEN sp.problem
             WHEN v.plan_id IS NULL THEN 'no active subscription at event time'
             WHEN a.ev.metric IS NULL OR a.ev.metric NOT IN (SELECT metric FROM {tag}_chg WHERE metric IS NOT NULL)
               THEN 'unknown metric'
             WHEN NOT EXISTS (SELECT 1 FROM {tag}_chg x WHERE x.plan_id = v.plan_id AND x.metric = a.ev.metric)
               THEN 'metric not priced by plan'
             ELSE 'no price in effect at event time'
           END AS reason,
           a.ev._file AS _file
    FROM {tag}_uagg a
    LEFT JOIN {tag}_subs sp ON sp.subscription_id = a.ev.subscription_id
    LEFT JOIN {tag}_ver v ON v.subscription_id = a.ev.subscription_id
         AND a.first_at >= CAST(v.valid_from AS TIMESTAMP) AND a.first_at < CAST(v.valid_to AS TIMESTAMP)
    LEFT JOIN {tag}_slots sl ON sl.slot_id = a.slot_id
    LEFT JOIN {tag}_prices c ON c.price_id = sl.price_id
    WHERE a.u_event_id IS NOT NULL
      AND ((sp.subscription_id IS NULL AND a.first_at >= {bm} AND a.first_at < {bm} + INTERVAL 1 MONTH)
           OR (a.first_at >= sp.win_start AND a.first_at < sp.win_end))
    QUALIFY row_number() OVER (PARTITION BY a.u_event_id ORDER BY reason) = 1
    """)
    _unrated_by_rescan(con, tag, bm, src, f)


def _unrated_by_rescan(con: duckdb.DuckDBPyConnection, tag: str, bm: str, src: str, f: Features) -> None:
    """Rare path: events found unpriceable only after aggregation -- every event of a slot out of
    range (``{tag}_oor``) and those of matrix cells without a price (and no default) -- become
    unrated, found by a targeted rescan restricted to those slots (their events with a per-event
    problem are unrated already)."""
    unpriced = f"""
        UNION ALL
        SELECT c.slot_id, false, c.v1, c.v2, c.v3, 'bad attributes: no matrix price for ' || m.dimensions
        FROM {tag}_cells c JOIN {tag}_slots s USING (slot_id) JOIN {tag}_prices p USING (price_id)
        JOIN {tag}_mcell m ON m.price_id = s.price_id AND m.v1 IS NOT DISTINCT FROM c.v1
             AND m.v2 IS NOT DISTINCT FROM c.v2 AND m.v3 IS NOT DISTINCT FROM c.v3
        WHERE p.charge_model = 'MATRIX' AND p.config_error IS NULL AND c.n > 0
          AND coalesce(m.cell_price, p.default_unit_price) IS NULL""" if f.matrix else ""
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_rescan AS
    SELECT slot_id, true AS whole, NULL::VARCHAR AS v1, NULL::VARCHAR AS v2, NULL::VARCHAR AS v3, reason
    FROM {tag}_oor{unpriced}""")
    if not con.execute(f"SELECT count(*) FROM {tag}_rescan").fetchone()[0]:
        return
    place = Placement.of(con, tag)
    con.execute(f"""
    INSERT INTO {tag}_unrated
    WITH x AS (
        SELECT {event_columns(f, param_lists(con, tag), place)}, sl.slot_id, sl.account_id
        FROM ({src}) e
        {place.joins()}
        JOIN {tag}_slotmap sm ON sm.slot_key = {place.slot_key()}
        JOIN {tag}_slots sl ON sl.slot_id = sm.slot_id
        WHERE sl.slot_id IN (SELECT slot_id FROM {tag}_rescan)
    ), xb AS (
        SELECT * FROM x WHERE ({bad_expression(f)}) IS NULL
    ), y AS (
        SELECT xb.*, {', '.join(f"{decode_dimension(k, f'xb.m{k}')} AS v{k}" for k in (1, 2, 3))}
        FROM xb JOIN {tag}_slots sl USING (slot_id) JOIN {tag}_prices c USING (price_id)
    )
    SELECT {bm}, y.event_id, y.subscription_id, y.account_id, y.metric, y.quantity, y.event_time, r.reason, y._file
    FROM y JOIN {tag}_rescan r ON r.slot_id = y.slot_id AND (r.whole OR (r.v1 IS NOT DISTINCT FROM y.v1
                  AND r.v2 IS NOT DISTINCT FROM y.v2 AND r.v3 IS NOT DISTINCT FROM y.v3))
    QUALIFY row_number() OVER (PARTITION BY y.event_id ORDER BY r.whole) = 1  -- a cell's own reason first
    """)


def unrated_share(
    con: duckdb.DuckDBPyConnection,
    billing_month: dt.date,
    *,
    rated: str = "billing.rated_usage",
    unrated: str = "billing.unrated_usage",
) -> Decimal:
    """Share of the month's usage events that are unrated: unrated / (rated + unrated), exact.

    Rated events are counted once per (subscription, metric): the largest count over the charges
    pricing that metric (a metric priced by two charges is not counted twice)."""
    bm = month_literal(billing_month)
    u, r = con.execute(f"""
        SELECT (SELECT count(*) FROM {unrated} WHERE billing_month = {bm}),
               (SELECT coalesce(sum(m), 0) FROM (
                    SELECT max(n) AS m FROM (
                        SELECT subscription_id, metric, charge_code, sum(event_count) AS n FROM {rated}
                        WHERE billing_month = {bm} AND line_type = 'USAGE' GROUP BY ALL)
                    GROUP BY subscription_id, metric))""").fetchone()
    total = int(u) + int(r)
    return Decimal(0) if total == 0 else Decimal(int(u)) / Decimal(total)
