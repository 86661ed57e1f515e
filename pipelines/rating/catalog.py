"""Catalog side of rating: billing periods, service segments and the price versions in force.

Everything here works on the small tables (accounts, subscription versions, plan charges),
never on events. The output is the *slots* table: one row per (subscription, service
segment, USAGE price version) over the account's billing period billed in the month, with
the charge's parameters parsed once from ``properties`` and ``tiers`` (docs/rating.md).

A service segment is the intersection of the billing period, a subscription version island
(consecutive versions on the same plan are merged) and a price version's
``[effective_from, effective_to)``. A plan change or a price change therefore splits the
period; each part carries its own proration factor (segment days / period days, or
/ ``proration_days``) for allowances, free units and commitments (``prorated``, domain/money.py).

:func:`build_catalog` runs the steps in order; each creates one temp table ``{tag}_<name>``
from the tables before it and can be run alone on given rows (tests/test_rating_steps.py):

1. :func:`build_accounts`: ``accounts``, each with the period it bills in the month;
2. :func:`build_islands`: ``islands``, the subscription version islands;
3. :func:`build_subscriptions`: ``subscriptions``, each known subscription's account, period and
   event window;
4. :func:`build_charges`: ``charges``, the USAGE price versions, normalised;
5. :func:`build_tiers`: ``tiers``, parsed once per price version, each tier's first problem;
6. :func:`build_prices`: ``prices``, the parameters parsed once, the first problem in
   ``config_error``, the codes the per-event expressions read; :func:`add_band_masks` adds the
   time bands as a mask;
7. :func:`build_slots`: ``slots``, with proration.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from domain.money import MONEY
from domain.periods import OPEN_END_DATE, OPEN_END_TIMESTAMP, month_literal
from domain.sql import live
from pipelines.rating.limits import (
    AMOUNT,
    DECIMAL_PROPERTIES,
    PLAN_QUANTITY,
    PRICE,
    PRORATION_DAYS,
    PROPERTIES,
    RATE,
    TIER_KEYS,
    decimal_error,
    name_error,
    unknown_key_error,
    value_error,
)

USAGE_MODELS = ("PER_UNIT", "GRADUATED", "VOLUME", "PACKAGE", "PERCENTAGE", "GRADUATED_PERCENTAGE", "MATRIX", "DYNAMIC")
AGGREGATIONS = ("SUM", "COUNT", "MAX", "UNIQUE_COUNT", "LATEST", "TIME_WEIGHTED_SUM")
TIERED_MODELS = ("GRADUATED", "VOLUME", "GRADUATED_PERCENTAGE")

# Where a MATRIX dimension's value comes from, per event (``prices.dim{k}_source``).
ZONE_COLUMN, TIME_BAND_BY_HOUR, EVENT_ATTRIBUTE = 1, 2, 3

_BANDS_TYPE = '[{"band":"VARCHAR","from_hour":"INTEGER","to_hour":"INTEGER"}]'
_JSON_LIST = '["JSON"]'
_VALID = "config_error IS NULL"


def build_catalog(
    con: duckdb.DuckDBPyConnection,
    billing_month: dt.date,
    tag: str,
    *,
    subscriptions: str,
    accounts: str,
    charges: str,
) -> None:
    """Create the catalog temp tables ``{tag}_accounts`` ... ``{tag}_slots`` (module docstring) on
    ``con`` from the live rows of the three relations."""
    bm = month_literal(billing_month)
    subscriptions = live(con, subscriptions)
    build_accounts(con, tag, bm, live(con, accounts))
    build_islands(con, tag, subscriptions)
    build_subscriptions(con, tag, bm, subscriptions)
    build_charges(con, tag, live(con, charges))
    build_tiers(con, tag)
    build_prices(con, tag)
    add_band_masks(con, tag)
    build_slots(con, tag)


def build_accounts(con: duckdb.DuckDBPyConnection, tag: str, bm: str, accounts: str) -> None:
    """``{tag}_accounts``: each account and the period it bills in the month ``bm`` (a SQL date);
    NULL period: none ends this month (e.g. a quarterly account off-quarter)."""
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_accounts AS
    SELECT account_id, currency, bill_cycle_day, billing_cycle, period_end,
           CASE WHEN period_end IS NOT NULL THEN period_start_for(period_end, bill_cycle_day, billing_cycle) END AS period_start
    FROM (SELECT account_id, upper(currency) AS currency, bill_cycle_day, upper(billing_cycle) AS billing_cycle,
                 period_end_in({bm}, bill_cycle_day, upper(billing_cycle)) AS period_end
          FROM {accounts})
    """)


def build_islands(con: duckdb.DuckDBPyConnection, tag: str, subscriptions: str) -> None:
    """``{tag}_islands``: subscription versions merged into islands (consecutive versions on the
    same plan are one island), ``[valid_from, valid_to)`` dates."""
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_islands AS
    WITH versions AS (
        SELECT subscription_id, plan_id, CAST(valid_from AS DATE) AS starts_on,
               CAST(coalesce(valid_to, {OPEN_END_DATE}) AS DATE) AS ends_on
        FROM {subscriptions} WHERE valid_from < coalesce(valid_to, {OPEN_END_DATE})
    ), island_starts AS (
        SELECT *, CASE WHEN lag(plan_id) OVER w IS NOT DISTINCT FROM plan_id AND lag(ends_on) OVER w = starts_on
                       THEN 0 ELSE 1 END AS starts_island
        FROM versions WINDOW w AS (PARTITION BY subscription_id ORDER BY starts_on, ends_on)
    ), numbered AS (
        SELECT *, sum(starts_island) OVER (PARTITION BY subscription_id ORDER BY starts_on, ends_on
                                           ROWS UNBOUNDED PRECEDING) AS island
        FROM island_starts
    )
    SELECT subscription_id, plan_id, min(starts_on) AS valid_from, max(ends_on) AS valid_to
    FROM numbered GROUP BY subscription_id, island, plan_id
    """)


def build_subscriptions(con: duckdb.DuckDBPyConnection, tag: str, bm: str, subscriptions: str) -> None:
    """``{tag}_subscriptions``: every known subscription, its account (that of its latest version),
    the account's period and the event window that belongs to this partition (unknown account:
    the calendar month, all unrated)."""
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_subscriptions AS
    SELECT s.subscription_id, s.account_id, a.currency, a.period_start, a.period_end,
           CASE WHEN a.account_id IS NULL THEN 'unknown billing account' END AS problem,
           CAST(CASE WHEN a.account_id IS NULL THEN {bm} ELSE a.period_start END AS TIMESTAMP) AS window_start,
           CAST(CASE WHEN a.account_id IS NULL THEN {bm} + INTERVAL 1 MONTH ELSE a.period_end END AS TIMESTAMP) AS window_end
    FROM (SELECT subscription_id, arg_max(account_id, valid_from) AS account_id
          FROM {subscriptions} GROUP BY subscription_id) s
    LEFT JOIN {tag}_accounts a USING (account_id)
    """)


def build_charges(con: duckdb.DuckDBPyConnection, tag: str, charges: str) -> None:
    """``{tag}_charges``: the USAGE price versions, normalised (codes upper-cased, defaults filled,
    ``properties`` kept only when a JSON object, else its problem in ``properties_error``)."""
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_charges AS
    SELECT price_id, plan_id, charge_code, metric,
           upper(coalesce(aggregation, 'SUM')) AS aggregation, upper(charge_model) AS charge_model,
           upper(coalesce(billing_timing, 'IN_ARREARS')) AS billing_timing, coalesce(prorate, true) AS prorate,
           CAST(unit_price AS {MONEY}) AS unit_price, CAST(coalesce(included_quantity, 0) AS {MONEY}) AS included_quantity,
           tiers, proration_days,
           -- properties only when a JSON object (else a catalog error), so reading a key never fails
           CASE WHEN json_valid(properties) AND json_type(properties) = 'OBJECT' THEN properties END AS properties,
           CASE WHEN properties IS NULL THEN NULL WHEN NOT json_valid(properties) THEN 'properties is not valid JSON'
                WHEN json_type(properties) <> 'OBJECT' THEN 'properties is not a JSON object' END AS properties_error,
           CAST(effective_from AS TIMESTAMP) AS effective_from,
           CAST(coalesce(effective_to, {OPEN_END_TIMESTAMP}) AS TIMESTAMP) AS effective_to
    FROM {charges}
    WHERE upper(charge_type) = 'USAGE'
    """)


def build_tiers(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    """``{tag}_tiers``: the tiers of the tiered price versions, parsed once: tier k covers
    ``(lower, upper]``, ``upper`` NULL = open; each tier's first problem (not an object, unknown
    key, a number outside the contract) in ``tier_error``."""
    label = "'tiers: tier ' || tier"
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_tiers AS
    WITH tier_lists AS (
        SELECT price_id, charge_model, from_json(tiers, '{_JSON_LIST}') AS tier_list
        FROM {tag}_charges
        WHERE charge_model IN {TIERED_MODELS} AND json_valid(tiers) AND json_type(tiers) = 'ARRAY'
    ), tier_items AS (
        SELECT price_id, charge_model, unnest(tier_list) AS item, unnest(range(1, len(tier_list) + 1)) AS tier
        FROM tier_lists
    ), tier_texts AS (
        SELECT price_id, CAST(tier AS INTEGER) AS tier, coalesce(json_type(item), '') = 'OBJECT' AS is_object,
               json_extract_string(item, '$.up_to') AS up_to,
               CASE WHEN json_extract_string(item, '$.unit_amount') IS NOT NULL THEN 'unit_amount' ELSE 'rate' END AS unit_key,
               coalesce(json_extract_string(item, '$.unit_amount'), json_extract_string(item, '$.rate')) AS unit,
               json_extract_string(item, '$.flat_amount') AS flat,
               charge_model = 'GRADUATED_PERCENTAGE' AS is_rate, item
        FROM tier_items
    )
    SELECT price_id, tier, up_to IS NULL AS is_open,
           TRY_CAST(up_to AS {MONEY}) AS upper,
           TRY_CAST(coalesce(unit, '0') AS {MONEY}) AS unit_amount,
           TRY_CAST(coalesce(flat, '0') AS {MONEY}) AS flat_amount,
           CASE WHEN NOT is_object THEN {label} || ' is not a JSON object'
                ELSE coalesce({unknown_key_error(label, 'item', TIER_KEYS)},
                              {decimal_error(label + " || ' up_to'", 'up_to', PLAN_QUANTITY)},
                              CASE WHEN is_rate THEN {decimal_error(label + " || ' ' || unit_key", 'unit', RATE)}
                                   ELSE {decimal_error(label + " || ' ' || unit_key", 'unit', PRICE)} END,
                              {decimal_error(label + " || ' flat_amount'", 'flat', AMOUNT)}) END AS tier_error,
           coalesce(lag(TRY_CAST(up_to AS {MONEY})) OVER (PARTITION BY price_id ORDER BY tier), CAST(0 AS {MONEY})) AS lower,
           count(*) OVER (PARTITION BY price_id) AS n_tiers
    FROM tier_texts
    """)


def build_prices(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    """``{tag}_prices``: each price version with its parameters parsed once (properties, tiers
    check, matrix bands), the first problem in ``config_error``, and what the per-event
    expressions read (:func:`_per_event_columns`). The per-event parameters of a misconfigured
    version are NULL/false, so its events read nothing of it (they are unrated with the error)."""
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_prices AS
    WITH tier_checks AS ({_tier_checks(tag)}
    ), parameters AS (
        SELECT c.*, {_parameter_columns()},
               CASE WHEN charge_model IN {TIERED_MODELS} AND tiers IS NOT NULL AND NOT json_valid(tiers) THEN 'tiers is not valid JSON'
                    WHEN charge_model IN {TIERED_MODELS} AND tiers IS NOT NULL AND json_type(tiers) <> 'ARRAY'
                      THEN 'tiers is not a JSON array'
                    ELSE t.tier_error END AS tier_error,
               coalesce(t.n_tiers, 0) AS n_tiers
        FROM {tag}_charges c LEFT JOIN tier_checks t USING (price_id)
    ), with_bands AS (
        SELECT *, coalesce(json_array_length(time_bands), 0) > 0 AS has_bands FROM parameters
    ), checked AS (
        SELECT *, {_config_error()} AS config_error FROM with_bands
    )
    SELECT *, {_per_event_columns()}
    FROM checked
    """)


def _tier_checks(tag: str) -> str:
    """SQL: per tiered price version, its number of tiers and the first problem of its tiers."""
    return f"""
        SELECT price_id, count(*) AS n_tiers,
               CASE WHEN bool_or(tier_error IS NOT NULL) THEN arg_min(tier_error, tier) FILTER (WHERE tier_error IS NOT NULL)
                    WHEN bool_or(is_open AND tier < n_tiers) THEN 'tiers: only the last tier may be open'
                    WHEN bool_or(tier = n_tiers AND NOT is_open) THEN 'tiers: the last tier must be open (up_to null)'
                    WHEN bool_or(tier > 1 AND upper <= lower) OR bool_or(tier = 1 AND upper <= 0)
                         THEN 'tiers: up_to must increase' END AS tier_error
        FROM {tag}_tiers GROUP BY price_id"""


def _property_text(name: str) -> str:
    return f"json_extract_string(properties, '$.{name}')"


def _property_decimal(name: str) -> str:
    return f"TRY_CAST({_property_text(name)} AS {MONEY})"


def _parameter_columns() -> str:
    """SQL: the ``properties`` parameters as columns, and the first value outside the contract."""
    decimals = ("rate", "fixed_fee", "per_event_min", "per_event_max", "package_size", "minimum_amount",
                "maximum_amount", "default_unit_price")
    cols = [f"{_property_decimal(k)} AS {k}" for k in decimals] + [
        f"coalesce({_property_decimal('free_units')}, 0) AS free_units",
        f"coalesce(TRY_CAST({_property_text('free_events')} AS BIGINT), 0) AS free_events",
        f"{_property_text('unique_attribute')} AS unique_attribute",
        f"coalesce({_property_text('price_attribute')}, 'unit_price') AS price_attribute",
        "from_json(json_extract(properties, '$.dimensions'), '[\"VARCHAR\"]') AS dims",
        "json_extract(properties, '$.time_bands') AS time_bands",
        "json_extract(properties, '$.prices') AS matrix_prices",
        f"{_value_errors()} AS value_error",
    ]
    return ", ".join(cols)


def _first_error(errors: str) -> str:
    """SQL: the first non-NULL message of a SQL list of messages."""
    return f"list_filter({errors}, x -> x IS NOT NULL)[1]"


def _value_errors() -> str:
    """SQL: the first value of a price version outside the contract (pipelines/rating/limits.py)."""
    checks = [
        unknown_key_error("'properties'", "properties", PROPERTIES),
        value_error("'unit_price'", "unit_price", PRICE),
        value_error("'included_quantity'", "included_quantity", PLAN_QUANTITY),
        value_error("'proration_days'", "proration_days", PRORATION_DAYS),
        *(decimal_error(f"'properties.{k}'", _property_text(k), b) for k, b in DECIMAL_PROPERTIES.items()),
        *(name_error(f"'properties.{k}'", _property_text(k)) for k in ("price_attribute", "unique_attribute")),
    ]
    return f"coalesce({', '.join(checks)})"


def _config_error() -> str:
    """SQL: the first problem of a price version (NULL: it can rate), over the parsed parameters."""
    return f"""CASE
             WHEN properties_error IS NOT NULL THEN properties_error
             WHEN charge_model = 'FLAT' THEN 'FLAT is a RECURRING charge model (billed by invoicing)'
             WHEN charge_model IS NULL OR charge_model NOT IN {USAGE_MODELS} THEN 'unknown charge model ' || coalesce(charge_model, 'NULL')
             WHEN aggregation NOT IN {AGGREGATIONS} THEN 'unknown aggregation ' || aggregation
             WHEN value_error IS NOT NULL THEN value_error
             WHEN per_event_min > per_event_max THEN 'properties.per_event_min must not exceed properties.per_event_max'
             WHEN minimum_amount > maximum_amount THEN 'properties.minimum_amount must not exceed properties.maximum_amount'
             WHEN charge_model IN ('PER_UNIT', 'PACKAGE') AND unit_price IS NULL THEN charge_model || ' needs unit_price'
             WHEN charge_model = 'PACKAGE' AND coalesce(package_size, 0) <= 0 THEN 'PACKAGE needs package_size > 0'
             WHEN charge_model IN {TIERED_MODELS} AND tier_error IS NOT NULL THEN tier_error
             WHEN charge_model IN {TIERED_MODELS} AND n_tiers = 0 THEN charge_model || ' needs tiers'
             WHEN charge_model = 'PERCENTAGE' AND rate IS NULL THEN 'PERCENTAGE needs properties.rate'
             WHEN charge_model = 'MATRIX' AND (dims IS NULL OR len(dims) = 0 OR len(dims) > 3)
               THEN 'MATRIX needs 1 to 3 properties.dimensions'
             WHEN charge_model = 'MATRIX' AND aggregation IN ('UNIQUE_COUNT', 'TIME_WEIGHTED_SUM')
               THEN 'MATRIX supports SUM, COUNT, MAX and LATEST aggregations'
             WHEN charge_model = 'MATRIX' THEN {_matrix_errors()}
             WHEN aggregation = 'UNIQUE_COUNT' AND unique_attribute IS NULL THEN 'UNIQUE_COUNT needs properties.unique_attribute'
             WHEN aggregation = 'TIME_WEIGHTED_SUM' AND charge_model IN ('PERCENTAGE', 'DYNAMIC')
               THEN charge_model || ' cannot use TIME_WEIGHTED_SUM'
           END"""


def _matrix_errors() -> str:
    """SQL: the first problem of a MATRIX price version's dimensions, time bands or cells."""
    dims = _first_error("list_transform(dims, d -> coalesce(" + name_error("'properties.dimensions'", "d")
                        + ", CASE WHEN d IS NULL THEN 'properties.dimensions must be names' END))")
    hour = ("regexp_full_match(coalesce(json_extract_string(b, '$.{k}'), ''), '[0-9]{{1,2}}') "
            "AND TRY_CAST(json_extract_string(b, '$.{k}') AS INTEGER) <= {top}")
    band_ok = (f"json_type(b) = 'OBJECT' AND json_type(b, '$.band') = 'VARCHAR' AND json_extract_string(b, '$.band') <> '' "
               f"AND {hour.format(k='from_hour', top=23)} AND {hour.format(k='to_hour', top=24)}")
    bands = f"""CASE WHEN coalesce(json_type(time_bands), 'NULL') = 'NULL' THEN NULL
             WHEN json_type(time_bands) <> 'ARRAY' THEN 'properties.time_bands must be a JSON array'
             WHEN json_array_length(time_bands) > 15 THEN 'MATRIX supports at most 15 time bands'
             WHEN NOT list_bool_and(list_transform(from_json(time_bands, '{_JSON_LIST}'), b -> coalesce({band_ok}, false)))
               THEN 'properties.time_bands: each band needs a name, a whole from_hour 0..23 and a whole to_hour 0..24' END"""
    cell_label = "'properties.prices: cell ' || i"
    cell = f"""CASE WHEN coalesce(json_type(cell), '') <> 'OBJECT' THEN {cell_label} || ' is not a JSON object'
             WHEN json_extract_string(cell, '$.unit_price') IS NULL THEN {cell_label} || ' needs unit_price'
             ELSE coalesce({decimal_error(cell_label + " || ' unit_price'", "json_extract_string(cell, '$.unit_price')", PRICE)},
                           {cell_label} || ' has unknown key '
                           || list_filter(json_keys(cell), k -> k <> 'unit_price' AND NOT list_contains(dims, k))[1]) END"""
    cell_errors = _first_error(f"list_transform(from_json(matrix_prices, '{_JSON_LIST}'), (cell, i) -> {cell})")
    cells = f"""CASE WHEN coalesce(json_type(matrix_prices), 'NULL') = 'NULL' THEN NULL
             WHEN json_type(matrix_prices) <> 'ARRAY' THEN 'properties.prices must be a JSON array'
             ELSE {cell_errors} END"""
    return f"coalesce({dims}, {bands}, {cells})"


def _dimension_source(k: int) -> str:
    """SQL: where MATRIX dimension ``k``'s value comes from per event (:data:`ZONE_COLUMN`,
    :data:`TIME_BAND_BY_HOUR` or :data:`EVENT_ATTRIBUTE`), NULL when the price has no such dimension."""
    return (f"CAST(CASE WHEN charge_model <> 'MATRIX' OR dims[{k}] IS NULL THEN NULL WHEN dims[{k}] = 'zone' THEN {ZONE_COLUMN} "
            f"WHEN dims[{k}] = 'time_band' AND has_bands THEN {TIME_BAND_BY_HOUR} ELSE {EVENT_ATTRIBUTE} END AS TINYINT)")


def _per_event_columns() -> str:
    """SQL: what the per-event expressions read of a valid price version (scan.py): dimension
    sources and JSON paths, the time band of each hour, attribute paths and the model flags."""
    pct_ordered = ("charge_model = 'PERCENTAGE' AND (free_events > 0 OR ((free_units > 0 OR included_quantity > 0) "
                   "AND (per_event_min IS NOT NULL OR per_event_max IS NOT NULL)))")
    cols = [f"CASE WHEN {_VALID} THEN {_dimension_source(k)} END AS dim{k}_source" for k in (1, 2, 3)]
    cols += [f"""'$."' || dims[{k}] || '"' AS dim{k}_path""" for k in (1, 2, 3)]
    cols += [
        f"CASE WHEN has_bands AND {_VALID} THEN list_transform(range(24), hh -> {band_of_hour('hh', 'time_bands')}) END AS hour_bands",
        f"CASE WHEN has_bands AND {_VALID} THEN list_transform(from_json(time_bands, '{_BANDS_TYPE}'), b -> b.band) END AS band_names",
        """'$."' || unique_attribute || '"' AS unique_path""",
        """'$."' || price_attribute || '"' AS price_path""",
        f"{_VALID} AND charge_model = 'DYNAMIC' AS is_dynamic",
        f"{_VALID} AND aggregation = 'UNIQUE_COUNT' AS is_unique",
        f"{_VALID} AND aggregation = 'LATEST' AS is_latest",
        f"{_VALID} AND aggregation = 'TIME_WEIGHTED_SUM' AS is_tws",
        f"{_VALID} AND {pct_ordered} AS pct_ordered",
        f"{_VALID} AND NOT ({pct_ordered}) AND charge_model = 'PERCENTAGE' "
        "AND (per_event_min IS NOT NULL OR per_event_max IS NOT NULL) AS pct_clamped",
    ]
    return ",\n           ".join(cols)


def band_of_hour(hour_expr: str, bands_expr: str) -> str:
    """SQL: the time band (``properties.time_bands``) containing an hour 0..23; bands may wrap midnight."""
    return (f"list_filter(from_json({bands_expr}, '{_BANDS_TYPE}'), b -> "
            f"(b.from_hour <= b.to_hour AND {hour_expr} >= b.from_hour AND {hour_expr} < b.to_hour) OR "
            f"(b.from_hour > b.to_hour AND ({hour_expr} >= b.from_hour OR {hour_expr} < b.to_hour)))[1].band")


def add_band_masks(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    """``{tag}_prices.band_mask``: a MATRIX price's time bands as a 24 x 4-bit mask, the band index
    (1-based in ``time_bands``) of each UTC hour, 0 = none; so an event's band is one shift."""
    con.execute(f"""
    ALTER TABLE {tag}_prices ADD COLUMN band_mask HUGEINT;
    UPDATE {tag}_prices SET band_mask = list_sum(list_transform(range(24), hh ->
        CAST(coalesce(list_position(band_names, hour_bands[hh + 1]), 0) AS HUGEINT) << (4 * hh)))
    WHERE has_bands AND {_VALID};
    """)


def build_slots(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    """``{tag}_slots``: one row per (subscription, service segment, price version) over the
    period, narrow (the parameters stay in ``{tag}_prices``), with the proration factor and the
    prorated allowance, minimum and maximum (:func:`_proration`)."""
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_slots AS
    WITH islands_in_period AS (
        SELECT s.subscription_id, s.account_id, s.currency, s.period_start, s.period_end, i.plan_id,
               CAST(greatest(i.valid_from, s.period_start) AS TIMESTAMP) AS island_start,
               CAST(least(i.valid_to, s.period_end) AS TIMESTAMP) AS island_end
        FROM {tag}_subscriptions s JOIN {tag}_islands i USING (subscription_id)
        WHERE s.problem IS NULL AND s.period_start IS NOT NULL
          AND i.valid_from < s.period_end AND i.valid_to > s.period_start
    ), segments AS (
        SELECT i.subscription_id, i.account_id, i.currency, i.period_start, i.period_end, i.plan_id,
               c.price_id, c.metric,
               greatest(i.island_start, c.effective_from) AS segment_start, least(i.island_end, c.effective_to) AS segment_end
        FROM islands_in_period i
        JOIN {tag}_prices c ON c.plan_id = i.plan_id AND c.effective_from < i.island_end AND c.effective_to > i.island_start
    ), segment_days AS (
        SELECT *,
               date_diff('day', period_start, period_end) AS period_days,
               date_diff('day', CAST(segment_start AS DATE), CAST(segment_end AS DATE)) AS segment_days,
               segment_start = CAST(period_start AS TIMESTAMP) AND segment_end = CAST(period_end AS TIMESTAMP) AS whole_period
        FROM segments
    ), prorated_terms AS ({_proration(tag)}
    )
    SELECT CAST(row_number() OVER (ORDER BY d.subscription_id, d.metric, d.segment_start, d.price_id) AS INTEGER) AS slot_id,
           d.subscription_id, d.account_id, d.currency, d.period_start, d.period_end, d.plan_id, d.price_id, d.metric,
           d.segment_start, d.segment_end, d.period_days, d.segment_days, d.whole_period,
           p.proration_factor, p.allowance, p.minimum_prorated, p.maximum_prorated
    FROM segment_days d LEFT JOIN prorated_terms p ON p.price_id = d.price_id AND p.segment_days = d.segment_days
         AND p.period_days = d.period_days AND p.whole_period = d.whole_period
    """)


def _proration(tag: str) -> str:
    """SQL over ``segment_days``: per distinct (price, segment days, period days, whole period) --
    a few hundred cases, not one per slot -- the factor and the prorated allowance (included
    quantity + free units; none for MATRIX and DYNAMIC), minimum and maximum, by the proration
    rule ``prorated`` (whole: the segment is the whole period, or the charge is not prorated;
    the denominator is ``proration_days`` or the period's days). A misconfigured version's
    values may be anything: it is not prorated (NULL terms)."""
    return f"""
        SELECT price_id, segment_days, period_days, whole_period,
               prorated(1, segment_days, denominator, whole) AS proration_factor,
               CASE WHEN charge_model IN ('MATRIX', 'DYNAMIC') THEN CAST(0 AS {MONEY})
                    ELSE prorated(allowance_full, segment_days, denominator, whole) END AS allowance,
               prorated(minimum_amount, segment_days, denominator, whole) AS minimum_prorated,
               prorated(maximum_amount, segment_days, denominator, whole) AS maximum_prorated
        FROM (SELECT x.price_id, x.segment_days, x.period_days, x.whole_period,
                     NOT c.prorate OR x.whole_period AS whole, coalesce(c.proration_days, x.period_days) AS denominator,
                     c.charge_model, c.included_quantity + c.free_units AS allowance_full, c.minimum_amount, c.maximum_amount
              FROM (SELECT DISTINCT price_id, segment_days, period_days, whole_period FROM segment_days) x
              JOIN {tag}_prices c USING (price_id)
              WHERE c.config_error IS NULL)"""
