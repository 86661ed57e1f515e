"""Rating engine: usage priced under the plan and price version in force at event time.

``rate_usage`` is a plain function over a DuckDB connection (``domain.install_macros``
installed) and relation names; it returns DuckDB relations shaped like ``billing.rated_usage``
and ``billing.unrated_usage``. Its steps (docs/rating.md), each a function creating temp tables
``{tag}_<name>`` of the connection from the ones before it, testable alone on given rows
(tests/test_rating_steps.py):

1. catalog (``catalog.py``): accounts and their periods, subscription islands, price versions
   with their parameters and errors, tiers, slots (segment x USAGE price version) with proration;
2. placement tables and one scan of usage (``scan.py``; in shards of subscription_id for large
   months): two hash joins with a time range place each event (its subscription's plan island in
   the period, then the price version in force for the plan and metric), aggregation per (slot,
   matrix key), unrated events kept one per group;
3. :func:`split_aggregates`: the rated cells apart from the unrated events;
4. :func:`build_rated`: the pricing tables, then one pass over the cells (quantity per
   aggregation, TIME_WEIGHTED_SUM carried across segments, allowance, billable, every pricer as a
   CASE branch, ``pricers.py``), the commitment lines (MINIMUM_TRUE_UP, MAXIMUM_CAP), and the
   slots with a line out of range taken out (their events become unrated);
5. :func:`build_unrated`: unrated reasons (a targeted rescan finds the events of slots and
   matrix cells found unpriceable after aggregation).

The heavy step is materialised once into a temp table; the returned relations read the small
temp tables, so they can be inserted, counted or re-read without rescanning usage.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from decimal import Decimal

import duckdb

from domain.money import MONEY
from domain.periods import month_literal
from pipelines.rating.catalog import build_catalog
from pipelines.rating.limits import AMOUNT_OUT_OF_RANGE, PRODUCT, QUANTITY_OUT_OF_RANGE, rounded_line_amount
from pipelines.rating.pricers import (
    MODEL_CODES,
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
    Features,
    Placement,
    build_lookup,
    build_scan,
    decode_dimension,
    event_columns,
    joined_sum,
    param_lists,
    problem_expression,
    problem_reason,
    scan_window,
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
    catalog_errors: dict[int, str] = field(default_factory=dict)  # USAGE price versions misconfigured: price_id -> why

    @property
    def within_limit(self) -> bool:
        """False when a limit was given and the unrated share exceeds it (the blocking check)."""
        if self.unrated_share_limit is None or self.unrated_share is None:
            return True
        return self.unrated_share <= self.unrated_share_limit


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
    features = Features.of(con, tag)
    events = usage_source(con, usage)
    window = scan_window(con, tag, bm)
    build_lookup(con, tag, window)
    build_scan(con, tag, events, window, features)
    split_aggregates(con, tag)
    build_rated(con, tag, bm, features)
    build_unrated(con, tag, bm, events, features)
    rated = con.sql(f"SELECT {', '.join(RATED_COLUMNS)} FROM {tag}_rated")
    unrated = con.sql(f"SELECT {', '.join(UNRATED_COLUMNS)} FROM {tag}_unrated")
    errors = con.execute(f"SELECT price_id, config_error FROM {tag}_prices WHERE config_error IS NOT NULL ORDER BY 1").fetchall()
    result = RatingResult(rated, unrated, billing_month, tag, catalog_errors=dict(errors))
    if unrated_share_limit is not None:
        result.unrated_share_limit = Decimal(str(unrated_share_limit))
        result.unrated_share = unrated_share(con, billing_month, rated=f"{tag}_rated", unrated=f"{tag}_unrated")
    return result


def drop_rating(con: duckdb.DuckDBPyConnection, result: RatingResult) -> None:
    """Drop the temp tables :func:`rate_usage` created for ``result`` (its ``.rated`` and ``.unrated`` with them),
    for a caller that rates on a long-lived connection."""
    for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary AND starts_with(table_name, ?)",
                               [result.tag + "_"]).fetchall():
        con.execute(f'DROP TABLE IF EXISTS "{name}"')


def _dimension_values(alias: str, prices: str = "c") -> str:
    """SQL: ``dim{k}_value`` (k = 1..3), the matrix dimension values decoded from the keys of ``alias``."""
    return ", ".join(f"{decode_dimension(k, f'{alias}.dim{k}_key', prices)} AS dim{k}_value" for k in (1, 2, 3))


def _same_cell(a: str, b: str) -> str:
    """SQL: rows ``a`` and ``b`` have the same matrix dimension values (NULLs equal)."""
    return " AND ".join(f"{a}.dim{k}_value IS NOT DISTINCT FROM {b}.dim{k}_value" for k in (1, 2, 3))


def split_aggregates(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    """``{tag}_cells``: the rated aggregates per (slot, matrix cell), the matrix keys decoded into
    the cell's dimension values; ``{tag}_unrated_groups``: the unrated events' rows. The scan table
    is then dropped (at 100M events it is the largest temp table, and the steps after it would
    otherwise spill)."""
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_cells AS
    SELECT a.slot_id, {_dimension_values('a')}, event_count, quantity_sum, first_event_at, last_event_at, quantity_max,
           latest, unique_count, time_weight_whole, time_weight_fraction, event_amount_whole, event_amount_fraction,
           ordered_events
    FROM {tag}_aggregates a JOIN {tag}_slots s USING (slot_id) JOIN {tag}_prices c USING (price_id)
    WHERE a.unrated_event_id IS NULL
    """)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {tag}_unrated_groups AS "
                f"SELECT * FROM {tag}_aggregates WHERE unrated_event_id IS NOT NULL")
    con.execute(f"DROP TABLE {tag}_aggregates")


def build_rated(con: duckdb.DuckDBPyConnection, tag: str, bm: str, features: Features) -> None:
    """``{tag}_rated``: the USAGE lines (one per slot and matrix cell, zero-usage slots
    included), then the commitment lines, then the slots with a line out of range moved out."""
    n_tiers = con.execute(f"""SELECT coalesce(max(n_tiers), 0) FROM {tag}_prices
        WHERE config_error IS NULL AND price_id IN (SELECT DISTINCT price_id FROM {tag}_slots)""").fetchone()[0]
    build_pricing_tables(con, tag, n_tiers)
    if features.pct_ordered:
        build_ordered_percentages(con, tag)
    build_usage_lines(con, tag, bm, n_tiers, features)
    add_commitment_lines(con, tag, bm)
    drop_out_of_range(con, tag)


def build_pricing_tables(con: duckdb.DuckDBPyConnection, tag: str, n_tiers: int) -> None:
    """The small tables pricing reads: ``{tag}_tier_columns`` (each price's tiers as columns,
    ``pricers.tier_columns``), ``{tag}_currencies`` (each currency's minor unit, resolved once per
    currency instead of per line) and ``{tag}_matrix_prices`` (each matrix cell's price)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {tag}_tier_columns AS {tier_columns(f'{tag}_tiers', n_tiers)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {tag}_currencies AS "
                f"SELECT DISTINCT currency, minor_unit(currency) AS minor_unit FROM {tag}_slots")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {tag}_matrix_prices AS "
                f"{matrix_cells(f'{tag}_cells', f'{tag}_slots', f'{tag}_prices')}")


def _slot_prices(tag: str) -> str:
    """SQL: the slots of valid price versions with their charge's parameters, the charge model's
    code and the currency's minor unit."""
    return f"""
        SELECT s.slot_id, s.subscription_id, s.account_id, s.currency, s.period_start, s.period_end, s.plan_id,
               s.price_id, s.metric, s.segment_start, s.segment_end, s.period_days, s.proration_factor, s.allowance,
               s.minimum_prorated, s.maximum_prorated,
               c.charge_code, c.aggregation, c.charge_model, c.billing_timing, c.unit_price, c.rate, c.fixed_fee,
               c.per_event_min, c.per_event_max, c.free_events, c.package_size, c.default_unit_price,
               c.pct_ordered, c.pct_clamped, c.is_tws, u.minor_unit, {model_code('c.charge_model')} AS model_code
        FROM {tag}_slots s JOIN {tag}_prices c USING (price_id)
        JOIN {tag}_currencies u ON u.currency IS NOT DISTINCT FROM s.currency
        WHERE c.config_error IS NULL"""


def build_ordered_percentages(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    """``{tag}_ordered_percentages``: per PERCENTAGE slot whose events count in order (free events,
    or free units meeting per-event bounds), its billable units and rate amount
    (``pricers.percentage_ordered``)."""
    base = f"(SELECT p.*, c.ordered_events FROM ({_slot_prices(tag)}) p JOIN {tag}_cells c USING (slot_id))"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {tag}_ordered_percentages AS {percentage_ordered(base)}")


def _gauge_carry(tag: str, tws: bool) -> str:
    """CTEs ending in ``gauge_carry``: per TIME_WEIGHTED_SUM slot, the gauge value carried into
    its segment from the subscription's earlier segments (none without such slots: then
    ``slot_prices`` is read once, not materialised)."""
    if not tws:
        return f"gauge_carry AS (SELECT CAST(NULL AS INTEGER) AS slot_id, CAST(NULL AS {MONEY}) AS carry WHERE false)"
    return f"""tws_slots AS (
        SELECT slot_id, subscription_id, metric, segment_start, segment_end FROM slot_prices WHERE is_tws
    ), gauge_carry AS (
        SELECT s.slot_id, coalesce(sum(c.quantity_sum), 0) AS carry
        FROM tws_slots s
        JOIN tws_slots earlier ON earlier.subscription_id = s.subscription_id AND earlier.metric = s.metric
             AND earlier.segment_end <= s.segment_start
        LEFT JOIN {tag}_cells c ON c.slot_id = earlier.slot_id
        GROUP BY s.slot_id
    )"""


def _aggregated_quantity() -> str:
    """SQL: a line's quantity by the charge's aggregation, over slot ``s``, cell ``c`` and carry
    ``k``. TIME_WEIGHTED_SUM: the gauge's average over the period, exact (NULL: out of range)."""
    return f"""CASE s.aggregation
                 WHEN 'SUM' THEN coalesce(c.quantity_sum, 0)
                 WHEN 'COUNT' THEN CAST(coalesce(c.event_count, 0) AS {MONEY})
                 WHEN 'MAX' THEN coalesce(c.quantity_max, 0)
                 WHEN 'UNIQUE_COUNT' THEN CAST(coalesce(c.unique_count, 0) AS {MONEY})
                 WHEN 'LATEST' THEN coalesce(c.latest.quantity, 0)
                 WHEN 'TIME_WEIGHTED_SUM' THEN try(div_round(
                      coalesce(k.carry, 0) * date_diff('millisecond', s.segment_start, s.segment_end)
                        + coalesce({joined_sum('time_weight', MONEY, 'c.')}, 0),
                      CAST(s.period_days AS BIGINT) * 86400000, 10))
               END"""


def _line_id(bm: str, dimensions: str) -> str:
    """SQL: ``rated_line_id``, the md5 of the line's lineage (same inputs, same id)."""
    return (f"md5(concat_ws('|', CAST({bm} AS VARCHAR), CAST(subscription_id AS VARCHAR), charge_code, "
            f"CAST(price_id AS VARCHAR), CAST(segment_start AS VARCHAR), CAST(segment_end AS VARCHAR), line_type, "
            f"coalesce({dimensions}, '')))")


def _line_columns(bm: str, **values: str) -> str:
    """The SELECT list of a rated line (``RATED_COLUMNS`` in order) over rows carrying the slot's
    lineage (``_slot_prices``), ``line_type`` and ``amount_precise``; ``values`` give the columns
    that differ by kind of line."""
    exprs = {"billing_month": bm, "service_start": "CAST(segment_start AS DATE)",
             "service_end": "CAST(segment_end AS DATE)", "proration_factor": f"CAST(proration_factor AS {MONEY})",
             "amount_precise": f"CAST(amount_precise AS {MONEY})", "amount": rounded_line_amount("amount_precise"),
             **values}
    exprs["rated_line_id"] = _line_id(bm, exprs.get("dimensions", "dimensions"))
    return ", ".join(f"{exprs.get(c, c)} AS {c}" for c in RATED_COLUMNS)


def build_usage_lines(con: duckdb.DuckDBPyConnection, tag: str, bm: str, n_tiers: int, features: Features) -> None:
    """``{tag}_rated``: one USAGE line per (slot, cell) in one pass: quantity per aggregation,
    allowance and billable, every pricer as a CASE branch (``pricers.priced_columns``), tier
    slices, id and rounding. Matrix cells without a price (and no default) are left out (their
    events are unrated by :func:`unrated_by_rescan`)."""
    matrix = MODEL_CODES["MATRIX"]
    ordered = (f"LEFT JOIN {tag}_ordered_percentages o USING (slot_id)" if features.pct_ordered
               else f"LEFT JOIN (SELECT NULL::INTEGER AS slot_id, NULL::{MONEY} AS ordered_billable, "
                    f"NULL::DECIMAL(38,0) AS ordered_rate_amount_whole, NULL::{PRODUCT} AS ordered_rate_amount_fraction) o "
                    "USING (slot_id)")
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_rated AS
    WITH slot_prices AS ({_slot_prices(tag)}
    ), {_gauge_carry(tag, features.tws)}, quantities AS (
        SELECT s.*, coalesce(c.event_count, 0) AS event_count, c.first_event_at, c.last_event_at,
               c.event_amount_whole, c.event_amount_fraction,
               CASE WHEN s.model_code = {matrix} AND c.event_count > 0 THEN m.dimensions END AS dimensions,
               m.cell_price, o.ordered_billable, o.ordered_rate_amount_whole, o.ordered_rate_amount_fraction,
               t.* EXCLUDE (price_id), {_aggregated_quantity()} AS quantity
        FROM slot_prices s LEFT JOIN {tag}_cells c USING (slot_id) LEFT JOIN gauge_carry k USING (slot_id)
        LEFT JOIN {tag}_matrix_prices m ON m.price_id = s.price_id AND {_same_cell('m', 'c')}
        LEFT JOIN {tag}_tier_columns t ON t.price_id = s.price_id
        {ordered}
    ), billables AS (
        SELECT *, CASE WHEN quantity IS NOT NULL THEN CAST(greatest(quantity - allowance, 0) AS {MONEY}) END AS billable
        FROM quantities
        WHERE NOT (model_code = {matrix} AND event_count > 0 AND coalesce(cell_price, default_unit_price) IS NULL)
    ), volume_tiers AS (
        SELECT *, {volume_tier(n_tiers, features.models)} FROM billables
    ), priced AS (
        SELECT *, 'USAGE' AS line_type, {priced_columns(n_tiers, features.models)} FROM volume_tiers
    )
    SELECT {_line_columns(bm, quantity=f"CAST(quantity AS {MONEY})", included_quantity=f"CAST(allowance AS {MONEY})",
                          billable_quantity=f"CAST(billable_quantity AS {MONEY})",
                          unit_price=f"CAST(applied_unit_price AS {MONEY})", tier_slices=tier_slices(n_tiers, features.models),
                          event_count="CAST(event_count AS BIGINT)")}
    FROM priced
    """)


def add_commitment_lines(con: duckdb.DuckDBPyConnection, tag: str, bm: str) -> None:
    """Add to ``{tag}_rated``, per slot with a minimum or maximum, its MINIMUM_TRUE_UP (the
    prorated minimum minus the slot's USAGE total, when positive) or MAXIMUM_CAP line (the
    prorated maximum minus the total, when negative). A slot is (subscription, price version,
    segment), as in the line id; a slot out of range has no commitment lines."""
    con.execute(f"""
    INSERT INTO {tag}_rated
    WITH committed_slots AS (
        SELECT * FROM ({_slot_prices(tag)}) WHERE minimum_prorated IS NOT NULL OR maximum_prorated IS NOT NULL
    ), usage_totals AS (
        SELECT subscription_id, price_id, segment_start, segment_end, sum(amount_precise) AS total
        FROM {tag}_rated
        WHERE line_type = 'USAGE' AND price_id IN (SELECT DISTINCT price_id FROM committed_slots)
        GROUP BY ALL
        HAVING bool_and(amount IS NOT NULL)
    ), totals AS (
        SELECT s.*, t.total FROM committed_slots s JOIN usage_totals t USING (subscription_id, price_id, segment_start, segment_end)
    ), commitments AS (
        SELECT *, 'MINIMUM_TRUE_UP' AS line_type, minimum_prorated AS commitment_price, minimum_prorated - total AS amount_precise
        FROM totals WHERE minimum_prorated IS NOT NULL AND total < minimum_prorated
        UNION ALL
        SELECT *, 'MAXIMUM_CAP', maximum_prorated, maximum_prorated - total
        FROM totals WHERE maximum_prorated IS NOT NULL AND total > maximum_prorated
    )
    SELECT {_line_columns(bm, dimensions="NULL", quantity=f"CAST(total AS {MONEY})", included_quantity=f"CAST(0 AS {MONEY})",
                          billable_quantity=f"CAST(1 AS {MONEY})", unit_price=f"CAST(commitment_price AS {MONEY})",
                          tier_slices="NULL", event_count="CAST(0 AS BIGINT)", first_event_at="NULL", last_event_at="NULL")}
    FROM commitments
    """)


def drop_out_of_range(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    """``{tag}_out_of_range``: the slots with a line out of range (NULL amount: its arithmetic
    overflowed or the amount reaches the line limit; NULL quantity: the aggregated quantity does
    not fit), with the reason; their lines are deleted (the events are unrated by
    :func:`unrated_by_rescan`)."""
    same_slot = ("s.subscription_id = r.subscription_id AND s.price_id = r.price_id "
                 "AND s.segment_start = r.segment_start AND s.segment_end = r.segment_end")
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_out_of_range AS
    SELECT s.slot_id, CASE WHEN bool_or(r.quantity IS NULL) THEN '{QUANTITY_OUT_OF_RANGE}'
                           ELSE '{AMOUNT_OUT_OF_RANGE}' END AS reason
    FROM {tag}_rated r JOIN {tag}_slots s ON {same_slot}
    WHERE r.amount IS NULL
    GROUP BY s.slot_id
    """)
    if con.execute(f"SELECT count(*) FROM {tag}_out_of_range").fetchone()[0]:
        con.execute(f"""
        DELETE FROM {tag}_rated r WHERE EXISTS (
            SELECT 1 FROM {tag}_out_of_range o JOIN {tag}_slots s USING (slot_id) WHERE {same_slot})""")


def build_unrated(con: duckdb.DuckDBPyConnection, tag: str, bm: str, events: str, features: Features) -> None:
    """``{tag}_unrated``: one row per unrated event of the partition with its reason (the event's
    own problem first, then why it could not be placed), then the events found unpriceable after
    aggregation (:func:`unrated_by_rescan`)."""
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_unrated AS
    SELECT {bm} AS billing_month, a.unrated_event_id AS event_id, a.unrated_event.subscription_id AS subscription_id,
           s.account_id, a.unrated_event.metric AS metric, a.quantity_sum AS quantity, a.first_event_at AS event_time,
           CASE
             WHEN a.unrated_event.problem IS NOT NULL THEN {problem_reason('a.unrated_event.problem', 'c')}
             WHEN s.subscription_id IS NULL THEN 'unknown subscription'
             WHEN s.problem IS NOT NULL THEN s.problem
             WHEN i.plan_id IS NULL THEN 'no active subscription at event time'
             WHEN a.unrated_event.metric IS NULL
                  OR a.unrated_event.metric NOT IN (SELECT metric FROM {tag}_charges WHERE metric IS NOT NULL)
               THEN 'unknown metric'
             WHEN NOT EXISTS (SELECT 1 FROM {tag}_charges x WHERE x.plan_id = i.plan_id AND x.metric = a.unrated_event.metric)
               THEN 'metric not priced by plan'
             ELSE 'no price in effect at event time'
           END AS reason,
           a.unrated_event._file AS _file
    FROM {tag}_unrated_groups a
    LEFT JOIN {tag}_subscriptions s ON s.subscription_id = a.unrated_event.subscription_id
    LEFT JOIN {tag}_islands i ON i.subscription_id = a.unrated_event.subscription_id
         AND a.first_event_at >= CAST(i.valid_from AS TIMESTAMP) AND a.first_event_at < CAST(i.valid_to AS TIMESTAMP)
    LEFT JOIN {tag}_slots sl ON sl.slot_id = a.slot_id
    LEFT JOIN {tag}_prices c ON c.price_id = sl.price_id
    WHERE a.unrated_event_id IS NOT NULL
      AND ((s.subscription_id IS NULL AND a.first_event_at >= {bm} AND a.first_event_at < {bm} + INTERVAL 1 MONTH)
           OR (a.first_event_at >= s.window_start AND a.first_event_at < s.window_end))
    QUALIFY row_number() OVER (PARTITION BY a.unrated_event_id ORDER BY reason) = 1
    """)
    unrated_by_rescan(con, tag, bm, events, features)


def unrated_by_rescan(con: duckdb.DuckDBPyConnection, tag: str, bm: str, events: str, features: Features) -> None:
    """Rare path: events found unpriceable only after aggregation -- every event of a slot out of
    range (``{tag}_out_of_range``) and those of matrix cells without a price (and no default) --
    become unrated, found by a targeted rescan restricted to those slots (their events with a
    per-event problem are unrated already)."""
    unpriced_cells = f"""
        UNION ALL
        SELECT c.slot_id, false, c.dim1_value, c.dim2_value, c.dim3_value, 'bad attributes: no matrix price for ' || m.dimensions
        FROM {tag}_cells c JOIN {tag}_slots s USING (slot_id) JOIN {tag}_prices p USING (price_id)
        JOIN {tag}_matrix_prices m ON m.price_id = s.price_id AND {_same_cell('m', 'c')}
        WHERE p.charge_model = 'MATRIX' AND p.config_error IS NULL AND c.event_count > 0
          AND coalesce(m.cell_price, p.default_unit_price) IS NULL""" if features.matrix else ""
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_rescan AS
    SELECT slot_id, true AS whole_slot, NULL::VARCHAR AS dim1_value, NULL::VARCHAR AS dim2_value,
           NULL::VARCHAR AS dim3_value, reason
    FROM {tag}_out_of_range{unpriced_cells}""")
    if not con.execute(f"SELECT count(*) FROM {tag}_rescan").fetchone()[0]:
        return
    place = Placement.of(con, tag)
    con.execute(f"""
    INSERT INTO {tag}_unrated
    WITH placed AS (
        SELECT {event_columns(features, param_lists(con, tag), place)}, sl.slot_id, sl.account_id
        FROM ({events}) e
        {place.joins()}
        JOIN {tag}_slot_keys k ON k.slot_key = {place.slot_key()}
        JOIN {tag}_slots sl ON sl.slot_id = k.slot_id
        WHERE sl.slot_id IN (SELECT slot_id FROM {tag}_rescan)
    ), without_problem AS (
        SELECT * FROM placed WHERE ({problem_expression(features)}) IS NULL
    ), in_cells AS (
        SELECT e.*, {_dimension_values('e')}
        FROM without_problem e JOIN {tag}_slots sl USING (slot_id) JOIN {tag}_prices c USING (price_id)
    )
    SELECT {bm}, e.event_id, e.subscription_id, e.account_id, e.metric, e.quantity, e.event_time, r.reason, e._file
    FROM in_cells e JOIN {tag}_rescan r ON r.slot_id = e.slot_id AND (r.whole_slot OR ({_same_cell('r', 'e')}))
    QUALIFY row_number() OVER (PARTITION BY e.event_id ORDER BY r.whole_slot) = 1  -- a cell's own reason first
    """)


def unrated_share(
    con: duckdb.DuckDBPyConnection,
    billing_month: dt.date,
    *,
    rated: str = "billing.rated_usage",
    unrated: str = "billing.unrated_usage",
) -> Decimal:
    """Share of the month's usage events that are unrated: unrated / (rated + unrated), exact
    (rated events counted by :func:`rated_event_count`)."""
    bm = month_literal(billing_month)
    u = con.execute(f"SELECT count(*) FROM {unrated} WHERE billing_month = {bm}").fetchone()[0]
    total = int(u) + rated_event_count(con, billing_month, rated=rated)
    return Decimal(0) if total == 0 else Decimal(int(u)) / Decimal(total)


def rated_event_count(con: duckdb.DuckDBPyConnection, billing_month: dt.date, *, rated: str = "billing.rated_usage") -> int:
    """Usage events rated into the month, each counted once per (subscription, metric): the largest
    count over the charges pricing that metric (a metric priced by two charges is not counted twice)."""
    return int(con.execute(f"""
        SELECT coalesce(sum(m), 0) FROM (
            SELECT max(n) AS m FROM (
                SELECT subscription_id, metric, charge_code, sum(event_count) AS n FROM {rated}
                WHERE billing_month = {month_literal(billing_month)} AND line_type = 'USAGE' GROUP BY ALL)
            GROUP BY subscription_id, metric)""").fetchone()[0])
