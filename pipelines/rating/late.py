"""Late usage: delta lines against what was already billed for a past billing month.

The month is re-rated from the current usage (``rate_usage``, same catalog rules); each line is
matched to the billed line with the same ``rated_line_id`` (the id is the lineage key:
subscription, charge, price version, segment, line type, matrix cell). The result is what is
owed now minus what was billed, as lines referencing the original period:

* ``DELTA``: quantity, events and amounts are differences (new - billed); a line billed before
  but absent now is a DELTA down to zero, a new line a DELTA up from zero;
* ``REVERSAL`` + ``REBILL``: a VOLUME line whose tier changed (the unit price of *every* unit
  changed) is shown as the billed line reversed (all amounts negated) plus the new line in full.

Lines whose quantity, billable quantity and precise amount are unchanged give nothing. The
delta ``amount`` is ``new.amount - billed.amount`` (both already rounded), so the deltas and the
original invoice lines sum exactly to the re-rated lines. Billing the deltas (credit note or
adjustment lines) belongs to invoice finalization.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from pipelines.rating.catalog import month_literal
from pipelines.rating.engine import RATED_COLUMNS, rate_usage

ADJUSTMENT_KINDS = ("DELTA", "REVERSAL", "REBILL")

DELTA_COLUMNS = RATED_COLUMNS + ("adjustment_kind", "original_rated_line_id")

_NUMERIC = ("quantity", "included_quantity", "billable_quantity", "event_count", "amount_precise", "amount")


def rate_late_usage_deltas(
    con: duckdb.DuckDBPyConnection,
    billing_month: dt.date,
    *,
    billed: str = "billing.rated_usage",
    usage: str = "core.usage_events",
    subscriptions: str = "core.subscription_versions",
    accounts: str = "core.billing_accounts",
    charges: str = "core.plan_charges",
) -> duckdb.DuckDBPyRelation:
    """Delta lines for ``billing_month`` given the lines already billed (``billed``, rows of that
    month, shaped like ``billing.rated_usage``). Columns: ``DELTA_COLUMNS`` (the rated_usage
    columns, ``adjustment_kind`` and ``original_rated_line_id``)."""
    bm = month_literal(billing_month)
    now = rate_usage(con, billing_month, usage=usage, subscriptions=subscriptions, accounts=accounts, charges=charges)
    tag = now.tag
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_billed AS
    SELECT {', '.join(RATED_COLUMNS)} FROM {billed} WHERE billing_month = {bm}
    """)
    ident = [c for c in RATED_COLUMNS if c not in _NUMERIC and c not in ("rated_line_id",)]

    def pick(src: str) -> str:
        return ", ".join(f"{src}.{c}" for c in ident)

    negated = ", ".join(f"-b.{c} AS {c}" for c in _NUMERIC)
    diff = ", ".join(f"coalesce(n.{c}, 0) - coalesce(b.{c}, 0) AS {c}" for c in _NUMERIC)
    tier = "json_extract_string({x}.tier_slices, '$[0].tier')"
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_deltas AS
    WITH j AS (
        SELECT n.rated_line_id AS n_id, b.rated_line_id AS b_id,
               n.rated_line_id IS NOT NULL AND b.rated_line_id IS NOT NULL AND n.charge_model = 'VOLUME'
                 AND n.line_type = 'USAGE' AND {tier.format(x='n')} IS DISTINCT FROM {tier.format(x='b')}
                 AS tier_changed,
               (n.quantity IS DISTINCT FROM b.quantity OR n.billable_quantity IS DISTINCT FROM b.billable_quantity
                 OR n.amount_precise IS DISTINCT FROM b.amount_precise OR n.amount IS DISTINCT FROM b.amount) AS changed
        FROM {tag}_rated n FULL OUTER JOIN {tag}_billed b USING (rated_line_id)
    ), d AS (
        -- reversal of a billed line whose volume tier changed
        SELECT {pick('b')}, {negated}, 'REVERSAL' AS adjustment_kind, b.rated_line_id AS original_rated_line_id
        FROM j JOIN {tag}_billed b ON b.rated_line_id = j.b_id WHERE j.tier_changed AND j.changed
        UNION ALL
        -- the new line in full after a volume tier change
        SELECT {pick('n')}, {', '.join(f'n.{c}' for c in _NUMERIC)}, 'REBILL', n.rated_line_id
        FROM j JOIN {tag}_rated n ON n.rated_line_id = j.n_id WHERE j.tier_changed AND j.changed
        UNION ALL
        -- everything else: new minus billed (either side may be missing)
        SELECT {', '.join(f'coalesce(n.{c}, b.{c}) AS {c}' for c in ident)}, {diff}, 'DELTA',
               coalesce(n.rated_line_id, b.rated_line_id)
        FROM j LEFT JOIN {tag}_rated n ON n.rated_line_id = j.n_id LEFT JOIN {tag}_billed b ON b.rated_line_id = j.b_id
        WHERE NOT j.tier_changed AND j.changed
    )
    SELECT md5(concat_ws('|', original_rated_line_id, adjustment_kind, CAST(amount_precise AS VARCHAR),
                         CAST(quantity AS VARCHAR))) AS rated_line_id,
           d.* EXCLUDE (adjustment_kind, original_rated_line_id), adjustment_kind, original_rated_line_id
    FROM d
    ORDER BY subscription_id, metric, charge_code, segment_start, line_type, adjustment_kind DESC
    """)
    cols = ", ".join(DELTA_COLUMNS)
    return con.sql(f"SELECT {cols} FROM {tag}_deltas")
