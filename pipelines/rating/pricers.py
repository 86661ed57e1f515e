"""Pricers: one CASE branch per charge model, evaluated in a single pass over the base rows.

A base row is one (slot, matrix cell): the segment's charge parameters plus its aggregated
``quantity``, ``allowance`` (prorated included quantity + free units), ``billable``
(= max(quantity - allowance, 0)), the per-event aggregates a model needs, the price's tiers as
columns ``tier{k}_lower, tier{k}_upper, tier{k}_unit, tier{k}_flat`` (tier k: lower, upper, unit
amount, flat amount; ``k <= tier_count``), the matrix cell price ``cell_price`` (looked up once per
distinct cell) and, for ordered percentages, ``ordered_billable`` / ``ordered_rate_amount_whole``,
``ordered_rate_amount_fraction`` (the rate amount summed exactly); ``model_code`` is the charge
model as a small integer (:data:`MODEL_CODES`).
:func:`priced_columns` returns the SELECT list of the priced columns::

    billable_quantity, applied_unit_price, amount_precise (DECIMAL(38,10))

and :func:`tier_slices` the line's tier slices (JSON text) over them.

Tier slices are rendered to JSON text by string concatenation of the DECIMAL text forms
(identical to ``to_json`` of the slice structs: no value needs escaping); the parts that depend
only on the price (tier number, bounds, unit and flat amounts) are rendered once per price
(``tier{k}_json_head``, ``tier{k}_json_middle``), so a line only renders its quantity and amount;
the slice of a full tier (every tier below the line's top one: quantity ``upper - lower``) depends
only on the price too and is rendered once per price (``tier{k}_full_json``), so a line renders one
slice. A quantity or amount (DECIMAL(38,10)) is rendered through DECIMAL(18,10) when it fits
(``rating_jmoney``: the same text, the 128-bit decimal-to-text cast costing twelve times as much).

Only the branches of the charge models among the prices in force are written
(``Features.models``): a line of another model never reaches them.

Products of two DECIMAL(38,10) are DECIMAL(38,20); they are brought back to 10 decimals with
``rating_r10`` (DuckDB ``round`` on DECIMAL: half away from zero), never through DOUBLE.

Line amounts are ``round_minor(amount_precise, minor_unit)`` (limits.rounded_line_amount).

A line's arithmetic is inside ``try``: a line whose amount leaves DECIMAL(38,10) (or whose
per-event sums do not fit) gets a NULL ``amount_precise``, and the engine unrates its events
(``amount out of range``, pipelines/rating/limits.py); tier slices are rendered only for the other
lines (:func:`tier_slices`).
"""

from __future__ import annotations

import duckdb

from domain.money import MONEY
from pipelines.rating.limits import PRODUCT
from pipelines.rating.scan import event_percentage, exact_sum, joined_sum

MACROS = f"""
CREATE OR REPLACE TEMP MACRO rating_r10(x) AS CAST(round(x, 10) AS {MONEY});
CREATE OR REPLACE TEMP MACRO rating_jstr(x) AS coalesce('"' || CAST(x AS VARCHAR) || '"', 'null');
CREATE OR REPLACE TEMP MACRO rating_jnum(x) AS coalesce(CAST(x AS VARCHAR), 'null');
CREATE OR REPLACE TEMP MACRO rating_jmoney(x) AS
    coalesce('"' || coalesce(CAST(TRY_CAST(x AS DECIMAL(18,10)) AS VARCHAR), CAST(x AS VARCHAR)) || '"', 'null');
CREATE OR REPLACE TEMP MACRO rating_div_ceil(a, b) AS
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
    the constant parts of tier k's slice JSON (``tier{k}_json_head``: tier, from, to;
    ``tier{k}_json_middle``: unit and flat amounts), rendered once per price instead of once per line."""
    cols = ["price_id", "max(n_tiers) AS tier_count"]
    for k in range(1, n + 1):
        lower, upper, unit, flat = (f"max(CASE WHEN tier = {k} THEN {c} END)"
                                    for c in ("lower", "upper", "unit_amount", "flat_amount"))
        cols += [f"{lower} AS tier{k}_lower", f"{upper} AS tier{k}_upper", f"{unit} AS tier{k}_unit", f"{flat} AS tier{k}_flat",
                 f"'{{\"tier\":{k},\"from\":' || rating_jstr({lower}) || ',\"to\":' || rating_jstr({upper}) "
                 f"|| ',\"quantity\":' AS tier{k}_json_head",
                 f"',\"unit_amount\":' || rating_jstr({unit}) || ',\"flat_amount\":' || rating_jstr({flat}) "
                 f"|| ',\"amount\":' AS tier{k}_json_middle"]
    # the slice of a tier the line fills (quantity upper - lower: every tier below the line's top
    # one) depends only on the price: rendered here once (NULL: the open tier, or its amount
    # overflows, and then so does the line's amount, whose slices are not rendered)
    full = [f"CASE WHEN tier{k}_upper IS NOT NULL THEN try({_slice(_tier('json_head', k), _tier('json_middle', k), _full(k), _tier('unit', k), _tier('flat', k))}) END AS tier{k}_full_json"
            for k in range(1, n + 1)]
    return f"SELECT *{''.join(', ' + x for x in full)} FROM (SELECT {', '.join(cols)} FROM {tiers} GROUP BY price_id)"


def _full(k: int) -> str:
    """The quantity of tier ``k`` when the billable quantity is above it."""
    return f"({_tier('upper', k)} - {_tier('lower', k)})"


def _tier(field: str, k: int | str) -> str:
    """The column ``field`` (lower, upper, unit, flat, json_head, json_middle) of tier ``k``."""
    return f"tier{k}_{field}"


def _slice(head: str, middle: str, quantity: str, unit: str, flat: str) -> str:
    """A tier slice as JSON text: ``{"tier", "from", "to", "quantity", "unit_amount", "flat_amount",
    "amount"}``, the constant parts (``head``, ``middle``) from :func:`tier_columns`; ``quantity``
    and the amount are DECIMAL(38,10) (``rating_jmoney``)."""
    return (f"{head} || rating_jmoney({quantity}) || {middle} || rating_jmoney(rating_r10({quantity} * {unit}) + {flat}) "
            "|| '}'")


def _graduated(n: int) -> tuple[str, str]:
    """GRADUATED and GRADUATED_PERCENTAGE: each unit priced in the tier it falls in; the flat
    amount of every tier reached (tier 1 always) is added. Tier k covers (lower, upper]."""
    if n == 0:
        return "NULL", "NULL"
    reached = {k: ("true" if k == 1 else f"(tier_count >= {k} AND billable > {_tier('lower', k)})") for k in range(1, n + 1)}
    in_tier = {k: f"(CASE WHEN billable > {_tier('lower', k)} THEN least(billable, coalesce({_tier('upper', k)}, billable)) "
                  f"- {_tier('lower', k)} ELSE CAST(0 AS {MONEY}) END)" for k in range(1, n + 1)}
    amount = " + ".join(f"(CASE WHEN {reached[k]} THEN {in_tier[k]} * {_tier('unit', k)} ELSE 0 END)" for k in reached)
    flats = " + ".join(f"(CASE WHEN {reached[k]} THEN {_tier('flat', k)} ELSE 0 END)" for k in reached)
    slices = ", ".join(f"CASE WHEN {reached[k]} THEN CASE WHEN billable > {_tier('upper', k)} THEN {_tier('full_json', k)} "
                       f"ELSE {_slice(_tier('json_head', k), _tier('json_middle', k), in_tier[k], _tier('unit', k), _tier('flat', k))} END END"
                       for k in reached)
    return f"rating_r10({amount}) + ({flats})", f"'[' || concat_ws(',', {slices}) || ']'"


def _volume_tier(n: int) -> str:
    """VOLUME: the one tier the billable total falls in."""
    if n == 0:
        return "NULL"
    above = {k: "true" if k == 1 else f"billable > {_tier('lower', k)}" for k in range(1, n + 1)}
    whens = " ".join(f"WHEN tier_count >= {k} AND ({above[k]}) "
                     f"AND ({_tier('upper', k)} IS NULL OR billable <= {_tier('upper', k)}) THEN {k}" for k in range(1, n + 1))
    return f"CASE {whens} END"


def _pick(field: str, n: int) -> str:
    """SQL: the column ``field`` of the VOLUME tier (``volume_tier``)."""
    return "NULL" if n == 0 else f"CASE volume_tier {' '.join(f'WHEN {k} THEN {_tier(field, k)}' for k in range(1, n + 1))} END"


def _rate_amount() -> str:
    """PERCENTAGE: the rate part of the amount (ordered, clamped per event, or closed form)."""
    return (f"CASE WHEN pct_ordered THEN coalesce(rating_r10({joined_sum('ordered_rate_amount', PRODUCT)}), 0) "
            f"WHEN pct_clamped THEN coalesce(rating_r10({joined_sum('event_amount', PRODUCT)}), 0) "
            "ELSE rating_r10(billable * rate) END")


_PACKAGES = "rating_div_ceil(billable, package_size)"
_PAYING = "greatest(event_count - free_events, 0)"


def _present(models) -> set[str]:
    """The charge models to emit a branch for (``models``: those among the slots in force; None or
    none: all)."""
    return set(models) if models else set(MODEL_CODES)


def priced_columns(n_tiers: int, models=None) -> str:
    """SELECT list over a base row (with ``volume_tier``, the VOLUME tier index, computed beforehand
    by :func:`volume_tier`): billable_quantity, applied_unit_price, amount_precise (NULL when the
    line's arithmetic overflows). Only the branches of ``models`` (the charge models of the slots
    in force, default all) are written: a line of another model never reaches the others."""
    n = n_tiers
    present = _present(models)
    graduated_amount, _ = _graduated(n)
    volume_unit, volume_flat = (_pick(f, n) for f in ("unit", "flat"))
    matrix_price = "coalesce(cell_price, default_unit_price)"
    code = MODEL_CODES
    amounts = {
        "MATRIX": f"CAST(coalesce(rating_r10(billable * {matrix_price}), 0) AS {MONEY})",
        "PER_UNIT": f"CAST(rating_r10(billable * unit_price) AS {MONEY})",
        "PACKAGE": f"CAST(rating_r10({_PACKAGES} * unit_price) AS {MONEY})",
        "GRADUATED": f"CAST({graduated_amount} AS {MONEY})",
        "GRADUATED_PERCENTAGE": f"CAST({graduated_amount} AS {MONEY})",
        "VOLUME": f"CAST(rating_r10(billable * {volume_unit}) + {volume_flat} AS {MONEY})",
        "PERCENTAGE": f"CAST(({_rate_amount()}) + coalesce(fixed_fee, 0) * {_PAYING} AS {MONEY})",
        "DYNAMIC": f"CAST(coalesce(rating_r10({joined_sum('event_amount', PRODUCT)}), 0) AS {MONEY})",
    }
    whens = "".join(f"\n        WHEN model_code = {code[m]} THEN {x}" for m, x in amounts.items() if m in present)
    amount = f"""CASE WHEN billable IS NULL THEN NULL  -- the quantity is out of range{whens}
    END"""
    units = {"MATRIX": matrix_price, "PER_UNIT": "unit_price", "PACKAGE": "unit_price", "VOLUME": volume_unit,
             "PERCENTAGE": "rate"}
    unit_whens = " ".join(f"WHEN {code[m]} THEN {x}" for m, x in units.items() if m in present)
    unit = f"CASE model_code {unit_whens} END" if unit_whens else f"CAST(NULL AS {MONEY})"
    billable_quantity = (f"CASE WHEN model_code = {code['PERCENTAGE']} AND pct_ordered THEN coalesce(ordered_billable, 0) "
                         "ELSE billable END" if "PERCENTAGE" in present else "billable")
    return f"{billable_quantity} AS billable_quantity, {unit} AS applied_unit_price, try({amount}) AS amount_precise"


def tier_slices(n_tiers: int, models=None) -> str:
    """SQL: the line's tier slices as JSON text (tiered models, package, percentage details), over
    the columns of :func:`priced_columns`' rows; only for lines whose amount was computed (a slice
    never exceeds its line's amount, all prices being >= 0). Only the branches of ``models``
    (default all), as :func:`priced_columns`."""
    n = n_tiers
    present = _present(models)
    _, graduated_slices = _graduated(n)
    unit, flat, head, middle = (_pick(f, n) for f in ("unit", "flat", "json_head", "json_middle"))
    code = MODEL_CODES
    branches = {
        "PACKAGE": f"""'[{{"packages":' || rating_jstr({_PACKAGES}) || ',"package_size":' || rating_jstr(package_size)
             || ',"package_price":' || rating_jstr(unit_price) || ',"amount":'
             || rating_jstr(rating_r10({_PACKAGES} * unit_price)) || '}}]'""",
        "GRADUATED": graduated_slices,
        "GRADUATED_PERCENTAGE": graduated_slices,
        "VOLUME": f"'[' || {_slice(head, middle, 'billable', unit, flat)} || ']'",
        "PERCENTAGE": f"""'[{{"rate":' || rating_jstr(rate) || ',"rate_amount":' || rating_jstr({_rate_amount()})
             || ',"paying_events":' || rating_jnum({_PAYING}) || ',"fixed_fee":' || rating_jstr(fixed_fee)
             || ',"fixed_amount":' || rating_jstr(coalesce(fixed_fee, 0) * {_PAYING}) || '}}]'""",
    }
    whens = "".join(f"\n        WHEN model_code = {code[m]} THEN {x}" for m, x in branches.items() if m in present)
    if not whens:  # no model with slices among the prices in force
        return "CAST(NULL AS VARCHAR)"
    return f"""CASE WHEN amount_precise IS NULL THEN NULL{whens}
    END"""


def volume_tier(n_tiers: int, models=None) -> str:
    """SQL: ``volume_tier``, the index of the VOLUME tier the billable quantity falls in (constant
    NULL when no VOLUME price is among ``models``)."""
    if "VOLUME" not in _present(models):
        return "CAST(NULL AS INTEGER) AS volume_tier"
    return f"CASE WHEN model_code = {MODEL_CODES['VOLUME']} THEN {_volume_tier(n_tiers)} END AS volume_tier"


def percentage_ordered(base: str) -> str:
    """PERCENTAGE with free events or free units meeting per-event min/max: events taken in
    (event_time, event_id) order; one row per slot with its billable units (``ordered_billable``)
    and rate amount (summed exactly, :func:`~pipelines.rating.scan.exact_sum`).

    Order-independent cases are closed forms over the scan's aggregates (:func:`priced_columns`)."""
    clamp = event_percentage("chargeable")
    return f"""
    WITH events AS (
        SELECT slot_id, allowance, free_events, rate, per_event_min, per_event_max, unnest(ordered_events) AS e
        FROM {base} WHERE charge_model = 'PERCENTAGE' AND pct_ordered AND ordered_events IS NOT NULL
    ), numbered AS (
        SELECT *, row_number() OVER (PARTITION BY slot_id ORDER BY e.event_time, e.event_id) AS i FROM events
    ), cumulative AS (
        SELECT *, sum(CASE WHEN i > free_events THEN e.quantity ELSE 0 END)
                    OVER (PARTITION BY slot_id ORDER BY i ROWS UNBOUNDED PRECEDING) AS paying_units
        FROM numbered
    ), charged AS (
        SELECT *, CASE WHEN i > free_events THEN greatest(CAST(0 AS {MONEY}), least(e.quantity, paying_units - allowance))
                       ELSE CAST(0 AS {MONEY}) END AS chargeable
        FROM cumulative
    )
    SELECT slot_id, sum(chargeable) AS ordered_billable, {', '.join(exact_sum(clamp, 'ordered_rate_amount'))}
    FROM charged GROUP BY slot_id"""


def matrix_cells(cells: str, slots: str, prices: str) -> str:
    """MATRIX: per distinct (price, dimension values), the cell of ``properties.prices`` matching
    them (first match in list order, ``"*"`` matches anything) and the dimensions as JSON text.
    Base rows join it on equality; no match falls back to ``default_unit_price``."""
    match = " AND ".join(
        f"(k.dims[{i}] IS NULL OR json_extract_string(c.cell, '$.\"' || k.dims[{i}] || '\"') IN (k.dim{i}_value, '*'))"
        for i in (1, 2, 3))
    def as_json(n: int) -> str:  # the first n dimensions and their values as a JSON object
        return f"CAST(json_object({', '.join(f'k.dims[{i}], k.dim{i}_value' for i in range(1, n + 1))}) AS VARCHAR)"

    dims_json = f"CASE WHEN len(k.dims) = 1 THEN {as_json(1)} WHEN len(k.dims) = 2 THEN {as_json(2)} ELSE {as_json(3)} END"
    same = " AND ".join(f"m.dim{i}_value IS NOT DISTINCT FROM k.dim{i}_value" for i in (1, 2, 3))
    return f"""
    WITH cell_list AS (
        SELECT price_id, unnest(cells) AS cell, unnest(range(1, len(cells) + 1)) AS position
        FROM (SELECT price_id, from_json(matrix_prices, '["JSON"]') AS cells
              FROM {prices} WHERE charge_model = 'MATRIX' AND json_type(matrix_prices) = 'ARRAY')
    ), cell_keys AS (
        SELECT DISTINCT p.price_id, p.dims, x.dim1_value, x.dim2_value, x.dim3_value
        FROM {cells} x JOIN {slots} s USING (slot_id) JOIN {prices} p USING (price_id)
        WHERE p.charge_model = 'MATRIX' AND p.config_error IS NULL AND x.event_count > 0
    ), matched AS (
        SELECT k.price_id, k.dim1_value, k.dim2_value, k.dim3_value,
               arg_min(TRY_CAST(json_extract_string(c.cell, '$.unit_price') AS {MONEY}), c.position) AS cell_price
        FROM cell_keys k JOIN cell_list c ON c.price_id = k.price_id AND {match}
        GROUP BY k.price_id, k.dim1_value, k.dim2_value, k.dim3_value
    )
    SELECT k.price_id, k.dim1_value, k.dim2_value, k.dim3_value, m.cell_price, {dims_json} AS dimensions
    FROM cell_keys k LEFT JOIN matched m ON m.price_id = k.price_id AND {same}"""
