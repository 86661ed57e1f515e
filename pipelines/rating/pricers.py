"""One small pricer per charge model, each a SELECT over the aggregated *base* rows.

A base row is one (slot, matrix cell): the segment's charge parameters plus its aggregated
``quantity``, ``allowance`` (prorated included quantity + free units), ``billable``
(= max(quantity - allowance, 0)) and the per-event aggregates a model needs. Every pricer
returns the same columns::

    cell_id, billable_quantity, applied_unit_price, tier_slices (JSON text), dimensions (JSON text),
    amount_precise (DECIMAL(38,10)), unpriced (BOOLEAN: matrix cell without a price)

Products of two DECIMAL(38,10) are DECIMAL(38,20); they are brought back to 10 decimals with
``rating_r10`` (DuckDB ``round`` on DECIMAL: half away from zero), never through DOUBLE.

Line amounts are ``round_money(amount_precise, currency)`` (pipelines/domain/money.py).
"""

from __future__ import annotations

import duckdb

DEC = "DECIMAL(38,10)"

MACROS = f"""
CREATE OR REPLACE MACRO rating_r10(x) AS CAST(round(x, 10) AS {DEC});
CREATE OR REPLACE MACRO rating_dstr(x) AS CAST(x AS VARCHAR);
CREATE OR REPLACE MACRO rating_div_ceil(a, b) AS
    CAST((_unscaled(a) + _unscaled(b) - 1) // _unscaled(b) AS DECIMAL(38,0));
"""


def install_rating_macros(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(MACROS)


_OUT = "billable_quantity, applied_unit_price, tier_slices, dimensions, amount_precise, unpriced"


def per_unit(base: str) -> str:
    """PER_UNIT: billable x unit_price."""
    return f"""
    SELECT *, billable AS billable_quantity, unit_price AS applied_unit_price,
           NULL AS tier_slices, NULL AS dimensions, rating_r10(billable * unit_price) AS amount_precise, false AS unpriced
    FROM {base} WHERE charge_model = 'PER_UNIT'"""


def package(base: str) -> str:
    """PACKAGE: ceil(billable / package_size) x unit_price (billable is after free units)."""
    return f"""
    SELECT *, billable AS billable_quantity, unit_price AS applied_unit_price,
           CAST(to_json([{{'packages': rating_dstr(rating_div_ceil(billable, package_size)),
                           'package_size': rating_dstr(package_size), 'package_price': rating_dstr(unit_price),
                           'amount': rating_dstr(rating_r10(rating_div_ceil(billable, package_size) * unit_price))}}]) AS VARCHAR)
             AS tier_slices,
           NULL AS dimensions,
           rating_r10(rating_div_ceil(billable, package_size) * unit_price) AS amount_precise, false AS unpriced
    FROM {base} WHERE charge_model = 'PACKAGE'"""


def _slice_json(q: str, unit: str, flat: str) -> str:
    return (f"{{'tier': tier, 'from': rating_dstr(lower), 'to': rating_dstr(upper), 'quantity': rating_dstr({q}), "
            f"'unit_amount': rating_dstr({unit}), 'flat_amount': rating_dstr({flat}), "
            f"'amount': rating_dstr(rating_r10({q} * {unit}) + {flat})}}")


def graduated(base: str, tiers: str) -> str:
    """GRADUATED and GRADUATED_PERCENTAGE: each unit priced in the tier it falls in; the flat
    amount of every tier reached (tier 1 always) is added. Tier k covers (lower, upper]."""
    return f"""
    WITH sl AS (
        SELECT b.cell_id, b.billable, t.tier, t.lower, t.upper, t.unit_amount, t.flat_amount,
               CASE WHEN b.billable > t.lower THEN least(b.billable, coalesce(t.upper, b.billable)) - t.lower
                    ELSE CAST(0 AS {DEC}) END AS slice_q
        FROM {base} b JOIN {tiers} t ON t.price_id = b.price_id AND (t.tier = 1 OR b.billable > t.lower)
        WHERE b.charge_model IN ('GRADUATED', 'GRADUATED_PERCENTAGE')
    )
    , g AS (
        SELECT cell_id,
               CAST(to_json(list({_slice_json('slice_q', 'unit_amount', 'flat_amount')} ORDER BY tier)) AS VARCHAR) AS tier_slices,
               rating_r10(sum(slice_q * unit_amount)) + sum(flat_amount) AS amount_precise
        FROM sl GROUP BY cell_id
    )
    SELECT b.*, b.billable AS billable_quantity, NULL AS applied_unit_price, g.tier_slices, NULL AS dimensions,
           g.amount_precise, false AS unpriced
    FROM {base} b JOIN g USING (cell_id)"""


def volume(base: str, tiers: str) -> str:
    """VOLUME: every unit at the one tier the billable total falls in, plus that tier's flat."""
    return f"""
    SELECT b.*, b.billable AS billable_quantity, t.unit_amount AS applied_unit_price,
           CAST(to_json([{_slice_json('b.billable', 't.unit_amount', 't.flat_amount')}]) AS VARCHAR) AS tier_slices,
           NULL AS dimensions,
           rating_r10(b.billable * t.unit_amount) + t.flat_amount AS amount_precise, false AS unpriced
    FROM {base} b JOIN {tiers} t ON t.price_id = b.price_id
         AND (t.tier = 1 OR b.billable > t.lower) AND (t.upper IS NULL OR b.billable <= t.upper)
    WHERE b.charge_model = 'VOLUME'"""


def percentage(base: str) -> str:
    """PERCENTAGE: rate x units (the transaction amounts), per-event min/max on each event's
    percentage, a fixed fee per paying event; the first ``free_events`` events are free, then the
    first ``allowance`` units (free_units + included_quantity, prorated) carry no rate.

    Order-independent cases are closed forms over the scan's aggregates; when free events or
    free units meet per-event min/max, events are taken in (event_time, event_id) order."""
    clamp = ("CASE WHEN chg > 0 THEN least(greatest(chg * rate, coalesce(per_event_min, chg * rate)), "
             "coalesce(per_event_max, chg * rate)) ELSE chg * rate END")
    return f"""
    WITH ev AS (
        SELECT cell_id, allowance, free_events, rate, per_event_min, per_event_max, unnest(evs) AS e
        FROM {base} WHERE charge_model = 'PERCENTAGE' AND pct_ordered AND evs IS NOT NULL
    ), o AS (
        SELECT *, row_number() OVER (PARTITION BY cell_id ORDER BY e.t, e.id) AS i FROM ev
    ), c AS (
        SELECT *, sum(CASE WHEN i > free_events THEN e.q ELSE 0 END)
                    OVER (PARTITION BY cell_id ORDER BY i ROWS UNBOUNDED PRECEDING) AS cum
        FROM o
    ), d AS (
        SELECT *, CASE WHEN i > free_events THEN greatest(CAST(0 AS {DEC}), least(e.q, cum - allowance))
                       ELSE CAST(0 AS {DEC}) END AS chg
        FROM c
    ), ordered AS (
        SELECT cell_id, sum(chg) AS billable, rating_r10(sum({clamp})) AS rate_amount FROM d GROUP BY cell_id
    )
    SELECT b.*,
           CASE WHEN b.pct_ordered THEN coalesce(o.billable, 0) ELSE b.billable END AS billable_quantity,
           b.rate AS applied_unit_price,
           CAST(to_json([{{'rate': rating_dstr(b.rate), 'rate_amount': rating_dstr(ra.rate_amount),
                           'paying_events': greatest(b.n - b.free_events, 0), 'fixed_fee': rating_dstr(b.fixed_fee),
                           'fixed_amount': rating_dstr(coalesce(b.fixed_fee, 0) * greatest(b.n - b.free_events, 0))}}])
                AS VARCHAR) AS tier_slices,
           NULL AS dimensions,
           ra.rate_amount + coalesce(b.fixed_fee, 0) * greatest(b.n - b.free_events, 0) AS amount_precise,
           false AS unpriced
    FROM {base} b LEFT JOIN ordered o USING (cell_id),
         LATERAL (SELECT CASE WHEN b.pct_ordered THEN coalesce(o.rate_amount, 0)
                              WHEN b.pct_clamped THEN coalesce(rating_r10(b.pct), 0)
                              ELSE rating_r10(b.billable * b.rate) END AS rate_amount) ra
    WHERE b.charge_model = 'PERCENTAGE'"""


def matrix(base: str, prices: str) -> str:
    """MATRIX: the cell of ``properties.prices`` matching the event's dimension values (first
    match in list order, ``"*"`` matches anything), else ``default_unit_price``; quantity x price.
    The lookup runs once per distinct (price, dimension values), then joins back on equality."""
    match = " AND ".join(
        f"(k.dims[{i}] IS NULL OR json_extract_string(c.cell, '$.\"' || k.dims[{i}] || '\"') IN (k.v{i}, '*'))"
        for i in (1, 2, 3))
    dims_json = ("CASE WHEN b.n = 0 THEN NULL WHEN len(b.dims) = 1 THEN CAST(json_object(b.dims[1], b.v1) AS VARCHAR) "
                 "WHEN len(b.dims) = 2 THEN CAST(json_object(b.dims[1], b.v1, b.dims[2], b.v2) AS VARCHAR) "
                 "ELSE CAST(json_object(b.dims[1], b.v1, b.dims[2], b.v2, b.dims[3], b.v3) AS VARCHAR) END")
    return f"""
    WITH cells AS (
        SELECT price_id, unnest(arr) AS cell, unnest(range(1, len(arr) + 1)) AS ord
        FROM (SELECT price_id, from_json(matrix_prices, '["JSON"]') AS arr
              FROM {prices} WHERE charge_model = 'MATRIX' AND json_type(matrix_prices) = 'ARRAY')
    ), k AS (
        SELECT DISTINCT price_id, dims, v1, v2, v3 FROM {base} WHERE charge_model = 'MATRIX' AND n > 0
    ), m AS (
        SELECT k.price_id, k.v1, k.v2, k.v3,
               arg_min(TRY_CAST(json_extract_string(c.cell, '$.unit_price') AS {DEC}), c.ord) AS cell_price
        FROM k JOIN cells c ON c.price_id = k.price_id AND {match}
        GROUP BY k.price_id, k.v1, k.v2, k.v3
    ), b AS (
        SELECT b.*, m.cell_price
        FROM {base} b LEFT JOIN m ON m.price_id = b.price_id AND m.v1 IS NOT DISTINCT FROM b.v1
             AND m.v2 IS NOT DISTINCT FROM b.v2 AND m.v3 IS NOT DISTINCT FROM b.v3
        WHERE b.charge_model = 'MATRIX'
    )
    SELECT b.* EXCLUDE (cell_price), b.billable AS billable_quantity,
           coalesce(b.cell_price, b.default_unit_price) AS applied_unit_price,
           NULL AS tier_slices, {dims_json} AS dimensions,
           coalesce(rating_r10(b.billable * coalesce(b.cell_price, b.default_unit_price)), 0) AS amount_precise,
           b.n > 0 AND coalesce(b.cell_price, b.default_unit_price) IS NULL AS unpriced
    FROM b"""


def dynamic(base: str) -> str:
    """DYNAMIC: sum over events of quantity x the event's own price (attributes.<price_attribute>)."""
    return f"""
    SELECT *, billable AS billable_quantity, NULL AS applied_unit_price, NULL AS tier_slices, NULL AS dimensions,
           coalesce(rating_r10(dyn), 0) AS amount_precise, false AS unpriced
    FROM {base} WHERE charge_model = 'DYNAMIC'"""


def all_pricers(base: str, tiers: str, prices: str) -> str:
    """UNION ALL of every pricer, each restricted to its model."""
    parts = [per_unit(base), package(base), graduated(base, tiers), volume(base, tiers),
             percentage(base), matrix(base, prices), dynamic(base)]
    return "\nUNION ALL BY NAME\n".join(f"SELECT * FROM ({p})" for p in parts)
