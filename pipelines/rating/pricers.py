"""Pricers: one CASE branch per charge model, evaluated in a single pass over the base rows.

A base row is one (slot, matrix cell): the segment's charge parameters plus its aggregated
``quantity``, ``allowance`` (prorated included quantity + free units), ``billable``
(= max(quantity - allowance, 0)), the per-event aggregates a model needs, the price's tiers as
columns ``lo{k}, up{k}, ua{k}, fa{k}`` (tier k: lower, upper, unit amount, flat amount;
``k <= n_tiers``), the matrix cell price ``cell_price`` (looked up once per distinct cell) and,
for ordered percentages, ``o_billable`` / ``o_rate_i, o_rate_f`` (the rate amount summed exactly).
:func:`priced_columns` returns the SELECT list of the priced columns::

    billable_quantity, applied_unit_price, amount_precise (DECIMAL(38,10))

and :func:`tier_slices` the line's tier slices (JSON text) over them.

Tier slices are rendered to JSON text by string concatenation of the DECIMAL text forms
(identical to ``to_json`` of the slice structs: no value needs escaping); the parts that depend
only on the price (tier number, bounds, unit and flat amounts) are rendered once per price
(``head{k}``, ``mid{k}``), so a line only renders its quantity and amount.

Products of two DECIMAL(38,10) are DECIMAL(38,20); they are brought back to 10 decimals with
``rating_r10`` (DuckDB ``round`` on DECIMAL: half away from zero), never through DOUBLE.

Line amounts are ``round_money(amount_precise, currency)`` (domain/money.py).

A line's arithmetic is inside ``try``: a line whose amount leaves DECIMAL(38,10) (or whose
per-event sums do not fit) gets a NULL ``amount_precise``, and the engine unrates its events
(``amount out of range``, pipelines/rating/limits.py); tier slices are rendered only for the other
lines (:func:`tier_slices`).
"""

from __future__ import annotations

import duckdb

from pipelines.rating.scan import event_percentage, exact_sum, joined_sum

DEC = "DECIMAL(38,10)"
_DEC20 = "DECIMAL(38,20)"

MACROS = f"""
CREATE OR REPLACE MACRO rating_r10(x) AS CAST(round(x, 10) AS {DEC});
CREATE OR REPLACE MACRO rating_dstr(x) AS CAST(x AS VARCHAR);
CREATE OR REPLACE MACRO rating_jstr(x) AS coalesce('"' || CAST(x AS VARCHAR) || '"', 'null');
CREATE OR REPLACE MACRO rating_jnum(x) AS coalesce(CAST(x AS VARCHAR), 'null');
CREATE OR REPLACE MACRO rating_div_ceil(a, b) AS
    CAST((_unscaled(a) + _unscaled(b) - 1) // _unscaled(b) AS DECIMAL(38,0));
"""


# Charge models as small integers (``model_code``): the CASE branches compare integers per row.
MODEL_CODES = {"MATRIX": 1, "GRADUATED": 2, "GRADUATED_PERCENTAGE": 3, "VOLUME": 4, "PERCENTAGE": 5,
               "PER_UNIT": 6, "PACKAGE": 7, "DYNAMIC": 8}


def model_code(col: str = "charge_model") -> str:
    """SQL: the TINYINT code of a charge model (:data:`MODEL_CODES`), evaluated once per slot."""
    return f"CAST(CASE {col} {' '.join(f'WHEN {m!r} THEN {c}' for m, c in MODEL_CODES.items())} END AS TINYINT)"


def install_rating_macros(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(MACROS)


def tier_columns(tiers: str, n: int) -> str:
    """SELECT over ``tiers``: one row per price_id with tier k's bounds and amounts as columns, and
    the constant parts of tier k's slice JSON (``head{k}``: tier, from, to; ``mid{k}``: unit and
    flat amounts), rendered once per price instead of once per line."""
    cols = ["price_id", "max(n_tiers) AS nt"]
    for k in range(1, n + 1):
        lo, up, ua, fa = (f"max(CASE WHEN tier = {k} THEN {c} END)" for c in ("lower", "upper", "unit_amount", "flat_amount"))
        cols += [f"{lo} AS lo{k}", f"{up} AS up{k}", f"{ua} AS ua{k}", f"{fa} AS fa{k}",
                 f"'{{\"tier\":{k},\"from\":' || rating_jstr({lo}) || ',\"to\":' || rating_jstr({up}) "
                 f"|| ',\"quantity\":' AS head{k}",
                 f"',\"unit_amount\":' || rating_jstr({ua}) || ',\"flat_amount\":' || rating_jstr({fa}) "
                 f"|| ',\"amount\":' AS mid{k}"]
    return f"SELECT {', '.join(cols)} FROM {tiers} GROUP BY price_id"


def _slice(head: str, mid: str, q: str, unit: str, flat: str) -> str:
    """A tier slice as JSON text: ``{"tier", "from", "to", "quantity", "unit_amount", "flat_amount",
    "amount"}``, the constant parts (``head``, ``mid``) from :func:`tier_columns`."""
    return f"{head} || rating_jstr({q}) || {mid} || rating_jstr(rating_r10({q} * {unit}) + {flat}) || '}}'"


def _graduated(n: int) -> tuple[str, str]:
    """GRADUATED and GRADUATED_PERCENTAGE: each unit priced in the tier it falls in; the flat
    amount of every tier reached (tier 1 always) is added. Tier k covers (lower, upper]."""
    if n == 0:
        return "NULL", "NULL"
    inc = {k: ("true" if k == 1 else f"(nt >= {k} AND billable > lo{k})") for k in range(1, n + 1)}
    sq = {k: f"(CASE WHEN billable > lo{k} THEN least(billable, coalesce(up{k}, billable)) - lo{k} ELSE CAST(0 AS {DEC}) END)"
          for k in range(1, n + 1)}
    amount = (" + ".join(f"(CASE WHEN {inc[k]} THEN {sq[k]} * ua{k} ELSE 0 END)" for k in inc))
    flats = " + ".join(f"(CASE WHEN {inc[k]} THEN fa{k} ELSE 0 END)" for k in inc)
    slices = ", ".join(f"CASE WHEN {inc[k]} THEN {_slice(f'head{k}', f'mid{k}', sq[k], f'ua{k}', f'fa{k}')} END"
                       for k in inc)
    return f"rating_r10({amount}) + ({flats})", f"'[' || concat_ws(',', {slices}) || ']'"


def _volume_tier(n: int) -> str:
    """VOLUME: the one tier the billable total falls in."""
    if n == 0:
        return "NULL"
    whens = " ".join(f"WHEN nt >= {k} AND ({'true' if k == 1 else f'billable > lo{k}'}) "
                     f"AND (up{k} IS NULL OR billable <= up{k}) THEN {k}" for k in range(1, n + 1))
    return f"CASE {whens} END"


def _pick(field: str, n: int) -> str:
    return "NULL" if n == 0 else f"CASE vt {' '.join(f'WHEN {k} THEN {field}{k}' for k in range(1, n + 1))} END"


def _rate_amount() -> str:
    """PERCENTAGE: the rate part of the amount (ordered, clamped per event, or closed form)."""
    return (f"CASE WHEN pct_ordered THEN coalesce(rating_r10({joined_sum('o_rate', _DEC20)}), 0) "
            f"WHEN pct_clamped THEN coalesce(rating_r10({joined_sum('amt', _DEC20)}), 0) "
            "ELSE rating_r10(billable * rate) END")


_PACKAGES = "rating_div_ceil(billable, package_size)"
_PAYING = "greatest(n - free_events, 0)"


def priced_columns(n_tiers: int) -> str:
    """SELECT list over a base row (with ``vt``, the VOLUME tier index, computed beforehand by
    :func:`volume_tier`): billable_quantity, applied_unit_price, amount_precise (NULL when the
    line's arithmetic overflows)."""
    n = n_tiers
    g_amount, _ = _graduated(n)
    v_ua, v_fa = (_pick(f, n) for f in ("ua", "fa"))
    matrix_price = "coalesce(cell_price, default_unit_price)"
    amount = f"""CASE WHEN billable IS NULL THEN NULL  -- the quantity is out of range
        WHEN mc = {MODEL_CODES['MATRIX']} THEN CAST(coalesce(rating_r10(billable * {matrix_price}), 0) AS {DEC})
        WHEN mc = {MODEL_CODES['PER_UNIT']} THEN CAST(rating_r10(billable * unit_price) AS {DEC})
        WHEN mc = {MODEL_CODES['PACKAGE']} THEN CAST(rating_r10({_PACKAGES} * unit_price) AS {DEC})
        WHEN mc = {MODEL_CODES['GRADUATED']} THEN CAST({g_amount} AS {DEC})
        WHEN mc = {MODEL_CODES['GRADUATED_PERCENTAGE']} THEN CAST({g_amount} AS {DEC})
        WHEN mc = {MODEL_CODES['VOLUME']} THEN CAST(rating_r10(billable * {v_ua}) + {v_fa} AS {DEC})
        WHEN mc = {MODEL_CODES['PERCENTAGE']} THEN CAST(({_rate_amount()}) + coalesce(fixed_fee, 0) * {_PAYING} AS {DEC})
        WHEN mc = {MODEL_CODES['DYNAMIC']} THEN CAST(coalesce(rating_r10({joined_sum('amt', _DEC20)}), 0) AS {DEC})
    END"""
    unit = f"""CASE mc WHEN {MODEL_CODES['MATRIX']} THEN {matrix_price}
        WHEN {MODEL_CODES['PER_UNIT']} THEN unit_price WHEN {MODEL_CODES['PACKAGE']} THEN unit_price WHEN {MODEL_CODES['VOLUME']} THEN {v_ua}
        WHEN {MODEL_CODES['PERCENTAGE']} THEN rate END"""
    billable_q = f"CASE WHEN mc = {MODEL_CODES['PERCENTAGE']} AND pct_ordered THEN coalesce(o_billable, 0) ELSE billable END"
    return f"{billable_q} AS billable_quantity, {unit} AS applied_unit_price, try({amount}) AS amount_precise"


def tier_slices(n_tiers: int) -> str:
    """SQL: the line's tier slices as JSON text (tiered models, package, percentage details), over
    the columns of :func:`priced_columns`' rows; only for lines whose amount was computed (a slice
    never exceeds its line's amount, all prices being >= 0)."""
    n = n_tiers
    _, g_slices = _graduated(n)
    v_ua, v_fa, v_head, v_mid = (_pick(f, n) for f in ("ua", "fa", "head", "mid"))
    rate_amount = _rate_amount()
    return f"""CASE WHEN amount_precise IS NULL THEN NULL WHEN mc = {MODEL_CODES['PACKAGE']}
             THEN '[{{"packages":' || rating_jstr({_PACKAGES}) || ',"package_size":' || rating_jstr(package_size)
             || ',"package_price":' || rating_jstr(unit_price) || ',"amount":'
             || rating_jstr(rating_r10({_PACKAGES} * unit_price)) || '}}]'
        WHEN mc = {MODEL_CODES['GRADUATED']} THEN {g_slices}
        WHEN mc = {MODEL_CODES['GRADUATED_PERCENTAGE']} THEN {g_slices}
        WHEN mc = {MODEL_CODES['VOLUME']} THEN '[' || {_slice(v_head, v_mid, 'billable', v_ua, v_fa)} || ']'
        WHEN mc = {MODEL_CODES['PERCENTAGE']} THEN '[{{"rate":' || rating_jstr(rate) || ',"rate_amount":' || rating_jstr({rate_amount})
             || ',"paying_events":' || rating_jnum({_PAYING}) || ',"fixed_fee":' || rating_jstr(fixed_fee)
             || ',"fixed_amount":' || rating_jstr(coalesce(fixed_fee, 0) * {_PAYING}) || '}}]'
    END"""


def volume_tier(n_tiers: int) -> str:
    return f"CASE WHEN mc = {MODEL_CODES['VOLUME']} THEN {_volume_tier(n_tiers)} END AS vt"


def percentage_ordered(base: str) -> str:
    """PERCENTAGE with free events or free units meeting per-event min/max: events taken in
    (event_time, event_id) order; one row per slot with its billable units and rate amount
    (summed exactly, :func:`~pipelines.rating.scan.exact_sum`).

    Order-independent cases are closed forms over the scan's aggregates (:func:`priced_columns`)."""
    clamp = event_percentage("chg")
    return f"""
    WITH ev AS (
        SELECT slot_id, allowance, free_events, rate, per_event_min, per_event_max, unnest(evs) AS e
        FROM {base} WHERE charge_model = 'PERCENTAGE' AND pct_ordered AND evs IS NOT NULL
    ), o AS (
        SELECT *, row_number() OVER (PARTITION BY slot_id ORDER BY e.t, e.id) AS i FROM ev
    ), c AS (
        SELECT *, sum(CASE WHEN i > free_events THEN e.q ELSE 0 END)
                    OVER (PARTITION BY slot_id ORDER BY i ROWS UNBOUNDED PRECEDING) AS cum
        FROM o
    ), d AS (
        SELECT *, CASE WHEN i > free_events THEN greatest(CAST(0 AS {DEC}), least(e.q, cum - allowance))
                       ELSE CAST(0 AS {DEC}) END AS chg
        FROM c
    )
    SELECT slot_id, sum(chg) AS o_billable, {', '.join(exact_sum(clamp, 'o_rate'))} FROM d GROUP BY slot_id"""


def matrix_cells(cells: str, slots: str, prices: str) -> str:
    """MATRIX: per distinct (price, dimension values), the cell of ``properties.prices`` matching
    them (first match in list order, ``"*"`` matches anything) and the dimensions as JSON text.
    Base rows join it on equality; no match falls back to ``default_unit_price``."""
    match = " AND ".join(
        f"(k.dims[{i}] IS NULL OR json_extract_string(c.cell, '$.\"' || k.dims[{i}] || '\"') IN (k.v{i}, '*'))"
        for i in (1, 2, 3))
    dims_json = ("CASE WHEN len(k.dims) = 1 THEN CAST(json_object(k.dims[1], k.v1) AS VARCHAR) "
                 "WHEN len(k.dims) = 2 THEN CAST(json_object(k.dims[1], k.v1, k.dims[2], k.v2) AS VARCHAR) "
                 "ELSE CAST(json_object(k.dims[1], k.v1, k.dims[2], k.v2, k.dims[3], k.v3) AS VARCHAR) END")
    return f"""
    WITH cells AS (
        SELECT price_id, unnest(arr) AS cell, unnest(range(1, len(arr) + 1)) AS ord
        FROM (SELECT price_id, from_json(matrix_prices, '["JSON"]') AS arr
              FROM {prices} WHERE charge_model = 'MATRIX' AND json_type(matrix_prices) = 'ARRAY')
    ), k AS (
        SELECT DISTINCT p.price_id, p.dims, x.v1, x.v2, x.v3
        FROM {cells} x JOIN {slots} s USING (slot_id) JOIN {prices} p USING (price_id)
        WHERE p.charge_model = 'MATRIX' AND p.config_error IS NULL AND x.n > 0
    ), m AS (
        SELECT k.price_id, k.v1, k.v2, k.v3,
               arg_min(TRY_CAST(json_extract_string(c.cell, '$.unit_price') AS {DEC}), c.ord) AS cell_price
        FROM k JOIN cells c ON c.price_id = k.price_id AND {match}
        GROUP BY k.price_id, k.v1, k.v2, k.v3
    )
    SELECT k.price_id, k.v1, k.v2, k.v3, m.cell_price, {dims_json} AS dimensions
    FROM k LEFT JOIN m ON m.price_id = k.price_id AND m.v1 IS NOT DISTINCT FROM k.v1
         AND m.v2 IS NOT DISTINCT FROM k.v2 AND m.v3 IS NOT DISTINCT FROM k.v3"""
