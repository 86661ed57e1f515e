"""Catalog side of rating: billing periods, service segments and the price versions in force.

Everything here works on the small tables (accounts, subscription versions, plan charges),
never on events. The output is the *slots* table: one row per (subscription, service
segment, USAGE price version) over the account's billing period billed in the month, with
the charge's parameters parsed once from ``properties`` and ``tiers`` (docs/rating.md).

A service segment is the intersection of the billing period, a subscription version island
(consecutive versions on the same plan are merged) and a price version's
``[effective_from, effective_to)``. A plan change or a price change therefore splits the
period; each part carries its own proration factor (segment days / period days, or
/ ``proration_days``) for allowances, free units and commitments.
"""

from __future__ import annotations

import datetime as dt

import duckdb

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

DEC = "DECIMAL(38,10)"
OPEN_TS = "TIMESTAMP '9999-12-31'"
OPEN_DATE = "DATE '9999-12-31'"

USAGE_MODELS = ("PER_UNIT", "GRADUATED", "VOLUME", "PACKAGE", "PERCENTAGE", "GRADUATED_PERCENTAGE", "MATRIX", "DYNAMIC")
AGGREGATIONS = ("SUM", "COUNT", "MAX", "UNIQUE_COUNT", "LATEST", "TIME_WEIGHTED_SUM")
TIERED_MODELS = ("GRADUATED", "VOLUME", "GRADUATED_PERCENTAGE")

_BANDS_TYPE = '[{"band":"VARCHAR","from_hour":"INTEGER","to_hour":"INTEGER"}]'
_JSON_LIST = '["JSON"]'


def columns_of(con: duckdb.DuckDBPyConnection, relation: str) -> set[str]:
    """Lower-cased column names of a relation (table, view or table function)."""
    return {c.lower() for c in con.sql(f"SELECT * FROM {relation} LIMIT 0").columns}


def live_filter(cols: set[str]) -> str:
    """Predicate keeping non-deleted rows when the relation has ``is_deleted``."""
    return "NOT coalesce(is_deleted, false)" if "is_deleted" in cols else "true"


def month_literal(billing_month: dt.date) -> str:
    if billing_month.day != 1:
        raise ValueError(f"billing_month must be the first day of a month, got {billing_month}")
    return f"DATE '{billing_month.isoformat()}'"


def _prop_text(name: str) -> str:
    return f"json_extract_string(properties, '$.{name}')"


def _prop_dec(name: str) -> str:
    return f"TRY_CAST({_prop_text(name)} AS {DEC})"


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
        *(decimal_error(f"'properties.{k}'", _prop_text(k), b) for k, b in DECIMAL_PROPERTIES.items()),
        *(name_error(f"'properties.{k}'", _prop_text(k)) for k in ("price_attribute", "unique_attribute")),
    ]
    return f"coalesce({', '.join(checks)})"


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


def build_catalog(
    con: duckdb.DuckDBPyConnection,
    billing_month: dt.date,
    tag: str,
    *,
    subscriptions: str,
    accounts: str,
    charges: str,
) -> None:
    """Create the temp tables ``{tag}_acct``, ``{tag}_ver``, ``{tag}_subs``, ``{tag}_chg``,
    ``{tag}_tiers`` and ``{tag}_slots`` on ``con``."""
    bm = month_literal(billing_month)
    a_live = live_filter(columns_of(con, accounts))
    s_live = live_filter(columns_of(con, subscriptions))
    c_live = live_filter(columns_of(con, charges))

    # Accounts and the period each bills in this month (NULL period: none ends this month).
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_acct AS
    SELECT account_id, currency, bill_cycle_day, billing_cycle, pe AS period_end,
           CASE WHEN pe IS NOT NULL THEN period_start_for(pe, bill_cycle_day, billing_cycle) END AS period_start
    FROM (SELECT account_id, upper(currency) AS currency, bill_cycle_day, upper(billing_cycle) AS billing_cycle,
                 period_end_in({bm}, bill_cycle_day, upper(billing_cycle)) AS pe
          FROM {accounts} WHERE {a_live})
    """)

    # Subscription version islands: consecutive versions on the same plan are one island.
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_ver AS
    WITH v AS (
        SELECT subscription_id, plan_id, CAST(valid_from AS DATE) AS vf,
               CAST(coalesce(valid_to, {OPEN_DATE}) AS DATE) AS vt
        FROM {subscriptions} WHERE {s_live} AND valid_from < coalesce(valid_to, {OPEN_DATE})
    ), f AS (
        SELECT *, CASE WHEN lag(plan_id) OVER w IS NOT DISTINCT FROM plan_id AND lag(vt) OVER w = vf
                       THEN 0 ELSE 1 END AS brk
        FROM v WINDOW w AS (PARTITION BY subscription_id ORDER BY vf, vt)
    ), g AS (
        SELECT *, sum(brk) OVER (PARTITION BY subscription_id ORDER BY vf, vt ROWS UNBOUNDED PRECEDING) AS island FROM f
    )
    SELECT subscription_id, plan_id, min(vf) AS valid_from, max(vt) AS valid_to
    FROM g GROUP BY subscription_id, island, plan_id
    """)

    # Every known subscription: its account, the account's period and the event window that
    # belongs to this partition (unknown account: the calendar month, all unrated).
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_subs AS
    SELECT s.subscription_id, s.account_id, a.currency, a.period_start, a.period_end,
           CASE WHEN a.account_id IS NULL THEN 'unknown billing account' END AS problem,
           CAST(CASE WHEN a.account_id IS NULL THEN {bm} ELSE a.period_start END AS TIMESTAMP) AS win_start,
           CAST(CASE WHEN a.account_id IS NULL THEN {bm} + INTERVAL 1 MONTH ELSE a.period_end END AS TIMESTAMP) AS win_end
    FROM (SELECT subscription_id, arg_max(account_id, valid_from) AS account_id
          FROM {subscriptions} WHERE {s_live} GROUP BY subscription_id) s
    LEFT JOIN {tag}_acct a USING (account_id)
    """)

    # USAGE price versions, normalised.
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_chg AS
    SELECT price_id, plan_id, charge_code, metric,
           upper(coalesce(aggregation, 'SUM')) AS aggregation, upper(charge_model) AS charge_model,
           upper(coalesce(billing_timing, 'IN_ARREARS')) AS billing_timing, coalesce(prorate, true) AS prorate,
           CAST(unit_price AS {DEC}) AS unit_price, CAST(coalesce(included_quantity, 0) AS {DEC}) AS included_quantity,
           tiers, proration_days,
           -- properties only when a JSON object (else a catalog error), so reading a key never fails
           CASE WHEN json_valid(properties) AND json_type(properties) = 'OBJECT' THEN properties END AS properties,
           CASE WHEN properties IS NULL THEN NULL WHEN NOT json_valid(properties) THEN 'properties is not valid JSON'
                WHEN json_type(properties) <> 'OBJECT' THEN 'properties is not a JSON object' END AS properties_error,
           CAST(effective_from AS TIMESTAMP) AS effective_from,
           CAST(coalesce(effective_to, {OPEN_TS}) AS TIMESTAMP) AS effective_to
    FROM {charges}
    WHERE {c_live} AND upper(charge_type) = 'USAGE'
    """)

    # Tiers, parsed once per price version: tier k covers (lower, upper], upper NULL = open; each
    # tier's first problem (not an object, unknown key, a number outside the contract) in tier_error.
    tier_label = "'tiers: tier ' || tier"
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_tiers AS
    WITH p AS (
        SELECT price_id, charge_model, from_json(tiers, '{_JSON_LIST}') AS arr
        FROM {tag}_chg
        WHERE charge_model IN {TIERED_MODELS} AND json_valid(tiers) AND json_type(tiers) = 'ARRAY'
    ), u AS (
        SELECT price_id, charge_model, unnest(arr) AS t, unnest(range(1, len(arr) + 1)) AS tier FROM p
    ), v AS (
        SELECT price_id, CAST(tier AS INTEGER) AS tier, coalesce(json_type(t), '') = 'OBJECT' AS is_object,
               json_extract_string(t, '$.up_to') AS up_to,
               CASE WHEN json_extract_string(t, '$.unit_amount') IS NOT NULL THEN 'unit_amount' ELSE 'rate' END AS unit_key,
               coalesce(json_extract_string(t, '$.unit_amount'), json_extract_string(t, '$.rate')) AS unit,
               json_extract_string(t, '$.flat_amount') AS flat,
               charge_model = 'GRADUATED_PERCENTAGE' AS is_rate, t
        FROM u
    )
    SELECT price_id, tier, up_to IS NULL AS is_open,
           TRY_CAST(up_to AS {DEC}) AS upper,
           TRY_CAST(coalesce(unit, '0') AS {DEC}) AS unit_amount,
           TRY_CAST(coalesce(flat, '0') AS {DEC}) AS flat_amount,
           CASE WHEN NOT is_object THEN {tier_label} || ' is not a JSON object'
                ELSE coalesce({unknown_key_error(tier_label, 't', TIER_KEYS)},
                              {decimal_error(tier_label + " || ' up_to'", 'up_to', PLAN_QUANTITY)},
                              CASE WHEN is_rate THEN {decimal_error(tier_label + " || ' ' || unit_key", 'unit', RATE)}
                                   ELSE {decimal_error(tier_label + " || ' ' || unit_key", 'unit', PRICE)} END,
                              {decimal_error(tier_label + " || ' flat_amount'", 'flat', AMOUNT)}) END AS tier_error,
           coalesce(lag(TRY_CAST(up_to AS {DEC})) OVER (PARTITION BY price_id ORDER BY tier), CAST(0 AS {DEC})) AS lower,
           count(*) OVER (PARTITION BY price_id) AS n_tiers
    FROM v
    """)

    # Price versions with their parameters parsed once (properties, tiers check, matrix bands), the
    # first problem in config_error; the per-event parameters of a misconfigured version are left
    # NULL/false, so its events read nothing of it (they are unrated with the error).
    dims = "from_json(json_extract(properties, '$.dimensions'), '[\"VARCHAR\"]')"
    pct_ordered = ("charge_model = 'PERCENTAGE' AND (free_events > 0 OR ((free_units > 0 OR included_quantity > 0) "
                   "AND (per_event_min IS NOT NULL OR per_event_max IS NOT NULL)))")
    ok = "config_error IS NULL"
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_prices AS
    WITH tier_check AS (
        SELECT price_id, count(*) AS n_tiers,
               CASE WHEN bool_or(tier_error IS NOT NULL) THEN arg_min(tier_error, tier) FILTER (WHERE tier_error IS NOT NULL)
                    WHEN bool_or(is_open AND tier < n_tiers) THEN 'tiers: only the last tier may be open'
                    WHEN bool_or(tier = n_tiers AND NOT is_open) THEN 'tiers: the last tier must be open (up_to null)'
                    WHEN bool_or(tier > 1 AND upper <= lower) OR bool_or(tier = 1 AND upper <= 0)
                         THEN 'tiers: up_to must increase' END AS tier_error
        FROM {tag}_tiers GROUP BY price_id
    ), p AS (
        SELECT c.*,
               {_prop_dec('rate')} AS rate,
               {_prop_dec('fixed_fee')} AS fixed_fee,
               {_prop_dec('per_event_min')} AS per_event_min,
               {_prop_dec('per_event_max')} AS per_event_max,
               coalesce({_prop_dec('free_units')}, 0) AS free_units,
               coalesce(TRY_CAST({_prop_text('free_events')} AS BIGINT), 0) AS free_events,
               {_prop_dec('package_size')} AS package_size,
               {_prop_dec('minimum_amount')} AS minimum_amount,
               {_prop_dec('maximum_amount')} AS maximum_amount,
               {_prop_dec('default_unit_price')} AS default_unit_price,
               {_prop_text('unique_attribute')} AS unique_attribute,
               coalesce({_prop_text('price_attribute')}, 'unit_price') AS price_attribute,
               {dims} AS dims,
               json_extract(properties, '$.time_bands') AS time_bands,
               json_extract(properties, '$.prices') AS matrix_prices,
               {_value_errors()} AS value_error,
               CASE WHEN charge_model IN {TIERED_MODELS} AND tiers IS NOT NULL AND NOT json_valid(tiers) THEN 'tiers is not valid JSON'
                    WHEN charge_model IN {TIERED_MODELS} AND tiers IS NOT NULL AND json_type(tiers) <> 'ARRAY'
                      THEN 'tiers is not a JSON array'
                    ELSE tc.tier_error END AS tier_error,
               coalesce(tc.n_tiers, 0) AS n_tiers
        FROM {tag}_chg c LEFT JOIN tier_check tc USING (price_id)
    ), q AS (
        SELECT p.*, coalesce(json_array_length(time_bands), 0) > 0 AS has_bands FROM p
    ), e AS (
        SELECT q.*, CASE
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
           END AS config_error
        FROM q
    )
    SELECT e.*,
           CASE WHEN {ok} THEN {_kind_code(1)} END AS kc1, CASE WHEN {ok} THEN {_kind_code(2)} END AS kc2,
           CASE WHEN {ok} THEN {_kind_code(3)} END AS kc3,
           '$."' || dims[1] || '"' AS path1, '$."' || dims[2] || '"' AS path2, '$."' || dims[3] || '"' AS path3,
           CASE WHEN has_bands AND {ok} THEN list_transform(range(24), hh -> {band_of_hour('hh', 'time_bands')}) END AS hour_bands,
           CASE WHEN has_bands AND {ok} THEN list_transform(from_json(time_bands, '{_BANDS_TYPE}'), b -> b.band) END AS band_names,
           '$."' || unique_attribute || '"' AS unique_path,
           '$."' || price_attribute || '"' AS price_path,
           {ok} AND charge_model = 'DYNAMIC' AS is_dynamic,
           {ok} AND aggregation = 'UNIQUE_COUNT' AS is_unique,
           {ok} AND aggregation = 'LATEST' AS is_latest,
           {ok} AND aggregation = 'TIME_WEIGHTED_SUM' AS is_tws,
           {ok} AND {pct_ordered} AS pct_ordered,
           {ok} AND NOT ({pct_ordered}) AND charge_model = 'PERCENTAGE'
             AND (per_event_min IS NOT NULL OR per_event_max IS NOT NULL) AS pct_clamped
    FROM e
    """)
    # Time bands as a 24 x 4-bit mask: the band index (1-based in time_bands) of each hour, 0 = none.
    con.execute(f"""
    ALTER TABLE {tag}_prices ADD COLUMN band_mask HUGEINT;
    UPDATE {tag}_prices SET band_mask = list_sum(list_transform(range(24), hh ->
        CAST(coalesce(list_position(band_names, hour_bands[hh + 1]), 0) AS HUGEINT) << (4 * hh)))
    WHERE has_bands AND {ok};
    """)

    # Slots: (subscription, segment, price version) over the period; narrow (parameters by price_id).
    # Proration is exact HUGEINT arithmetic (``prorate``/``div_round``), so it is computed once per
    # distinct (price, segment days, proration days) -- a few hundred combinations -- and joined
    # back, not once per slot.
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_slots AS
    WITH sv AS (
        SELECT s.subscription_id, s.account_id, s.currency, s.period_start, s.period_end, v.plan_id,
               CAST(greatest(v.valid_from, s.period_start) AS TIMESTAMP) AS vs,
               CAST(least(v.valid_to, s.period_end) AS TIMESTAMP) AS ve
        FROM {tag}_subs s JOIN {tag}_ver v USING (subscription_id)
        WHERE s.problem IS NULL AND s.period_start IS NOT NULL
          AND v.valid_from < s.period_end AND v.valid_to > s.period_start
    ), j AS (
        SELECT sv.subscription_id, sv.account_id, sv.currency, sv.period_start, sv.period_end, sv.plan_id,
               c.price_id, c.metric,
               greatest(sv.vs, c.effective_from) AS seg_start, least(sv.ve, c.effective_to) AS seg_end
        FROM sv JOIN {tag}_prices c ON c.plan_id = sv.plan_id AND c.effective_from < sv.ve AND c.effective_to > sv.vs
    ), p AS (
        SELECT j.*,
               date_diff('day', period_start, period_end) AS period_days,
               date_diff('day', CAST(seg_start AS DATE), CAST(seg_end AS DATE)) AS seg_days,
               seg_start = CAST(period_start AS TIMESTAMP) AND seg_end = CAST(period_end AS TIMESTAMP) AS whole_period
        FROM j
    ), shapes AS (  -- the distinct proration cases
        SELECT DISTINCT price_id, seg_days, period_days, whole_period FROM p
    ), f AS (
        SELECT x.price_id, x.seg_days, x.period_days, x.whole_period,
               NOT c.prorate OR x.whole_period AS whole,
               coalesce(c.proration_days, x.period_days) AS denominator,
               c.charge_model, c.included_quantity + c.free_units AS allowance_full,
               c.minimum_amount, c.maximum_amount
        FROM shapes x JOIN {tag}_prices c USING (price_id)
        WHERE c.config_error IS NULL  -- a misconfigured version's values may be anything: not prorated
    ), r AS (
        SELECT price_id, seg_days, period_days, whole_period,
               CASE WHEN whole THEN CAST(1 AS {DEC})
                    ELSE least(CAST(1 AS {DEC}), div_round(seg_days, denominator, 10)) END AS proration_factor,
               CASE WHEN charge_model IN ('MATRIX', 'DYNAMIC') THEN CAST(0 AS {DEC})
                    WHEN whole THEN allowance_full
                    ELSE least(allowance_full, prorate(allowance_full, seg_days, denominator)) END AS allowance,
               CASE WHEN minimum_amount IS NULL OR whole THEN minimum_amount
                    ELSE least(minimum_amount, prorate(minimum_amount, seg_days, denominator)) END AS minimum_prorated,
               CASE WHEN maximum_amount IS NULL OR whole THEN maximum_amount
                    ELSE least(maximum_amount, prorate(maximum_amount, seg_days, denominator)) END AS maximum_prorated
        FROM f
    )
    SELECT CAST(row_number() OVER (ORDER BY p.subscription_id, p.metric, p.seg_start, p.price_id) AS INTEGER) AS slot_id,
           p.subscription_id, p.account_id, p.currency, p.period_start, p.period_end, p.plan_id, p.price_id, p.metric,
           p.seg_start, p.seg_end, p.period_days, p.seg_days, p.whole_period,
           r.proration_factor, r.allowance, r.minimum_prorated, r.maximum_prorated
    FROM p LEFT JOIN r ON r.price_id = p.price_id AND r.seg_days = p.seg_days AND r.period_days = p.period_days
         AND r.whole_period = p.whole_period
    """)


def _kind_code(k: int) -> str:
    # per-event dimension source as a small integer: 1 zone column, 2 time band by hour, 3 attribute
    return (f"CAST(CASE WHEN charge_model <> 'MATRIX' OR dims[{k}] IS NULL THEN NULL WHEN dims[{k}] = 'zone' THEN 1 "
            f"WHEN dims[{k}] = 'time_band' AND has_bands THEN 2 ELSE 3 END AS TINYINT)")


def band_of_hour(hour_expr: str, bands_expr: str) -> str:
    """SQL: the time band (``properties.time_bands``) containing an hour 0..23; bands may wrap midnight."""
    return (f"list_filter(from_json({bands_expr}, '{_BANDS_TYPE}'), b -> "
            f"(b.from_hour <= b.to_hour AND {hour_expr} >= b.from_hour AND {hour_expr} < b.to_hour) OR "
            f"(b.from_hour > b.to_hour AND ({hour_expr} >= b.from_hour OR {hour_expr} < b.to_hour)))[1].band")
