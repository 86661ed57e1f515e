"""The single scan of usage: events → (slot, matrix key) aggregates, plus per-event unrated rows.

One pass over the usage relation does everything that needs event values:

* assigns each event to the partition (its subscription's account period, or the calendar
  month when the subscription or account is unknown) with a hash join on subscription_id;
* finds its slot (plan version x price version x segment) with a hash join on
  (subscription_id, metric) and a half-open time condition;
* aggregates, per (slot, matrix key), every quantity the slot's aggregation and model need
  (sum, count, max, latest, unique count, time weight, dynamic amount, clamped percentage),
  as aggregate expressions, so pricing afterwards only touches the few aggregated rows;
* keeps each event that cannot be rated as its own group (key ``u_event_id``) with its values,
  so unrated usage comes out of the same scan.

The SQL is assembled from the features present among the slots in force (matrix keys,
dynamic prices, unique counts, ...), so a month without matrix charges pays nothing for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipelines.rating.catalog import DEC, columns_of, live_filter


_EV = f"STRUCT(t TIMESTAMP, id VARCHAR, q {DEC})"


@dataclass(frozen=True)
class Features:
    matrix: bool
    dynamic: bool
    unique: bool
    latest: bool
    tws: bool
    maxq: bool
    pct_clamped: bool
    pct_ordered: bool
    config_error: bool

    @classmethod
    def of(cls, con: duckdb.DuckDBPyConnection, slots: str) -> "Features":
        row = con.execute(f"""
            SELECT coalesce(bool_or(charge_model = 'MATRIX'), false), coalesce(bool_or(charge_model = 'DYNAMIC'), false),
                   coalesce(bool_or(aggregation = 'UNIQUE_COUNT'), false), coalesce(bool_or(aggregation = 'LATEST'), false),
                   coalesce(bool_or(aggregation = 'TIME_WEIGHTED_SUM'), false), coalesce(bool_or(aggregation = 'MAX'), false),
                   coalesce(bool_or(pct_clamped), false), coalesce(bool_or(pct_ordered), false),
                   coalesce(bool_or(config_error IS NOT NULL), false)
            FROM {slots}""").fetchone()
        return cls(*row)


def _matrix_key(k: int) -> str:
    return (f"CASE s.k{k} WHEN 'zone' THEN e.zone WHEN 'hour' THEN s.hour_bands[hour(e.event_time) + 1] "
            f"WHEN 'attr' THEN json_extract_string(e.attributes, s.path{k}) END")


def usage_source(con: duckdb.DuckDBPyConnection, usage: str) -> str:
    """A SELECT over the usage relation with the columns the engine reads (missing optional
    columns as NULL) and deleted rows removed."""
    cols = columns_of(con, usage)
    opt = {c: (c if c in cols else f"CAST(NULL AS VARCHAR) AS {c}") for c in ("zone", "attributes", "_file")}
    return (f"SELECT event_id, subscription_id, metric, CAST(quantity AS {DEC}) AS quantity, "
            f"CAST(event_time AS TIMESTAMP) AS event_time, {opt['zone']}, {opt['attributes']}, {opt['_file']} "
            f"FROM {usage} WHERE {live_filter(cols)}")


def event_slot_join(tag: str, f: Features) -> tuple[str, str]:
    """(per-event SELECT list, FROM ... WHERE ...) shared by the scan and targeted rescans."""
    m = ", ".join(f"{_matrix_key(k)} AS m{k}" for k in (1, 2, 3)) if f.matrix else \
        "CAST(NULL AS VARCHAR) AS m1, CAST(NULL AS VARCHAR) AS m2, CAST(NULL AS VARCHAR) AS m3"
    bad_parts = ["WHEN e.quantity IS NULL THEN 'missing quantity'"]
    if f.config_error:
        bad_parts.append("WHEN s.config_error IS NOT NULL THEN 'charge misconfigured: ' || s.config_error")
    if f.dynamic:
        bad_parts.append(f"WHEN s.charge_model = 'DYNAMIC' AND TRY_CAST(json_extract_string(e.attributes, s.price_path) AS {DEC}) IS NULL "
                         "THEN 'bad attributes: missing or invalid ' || s.price_attribute")
    if f.matrix:
        for k in (1, 2, 3):
            bad_parts.append(f"WHEN s.k{k} IS NOT NULL AND ({_matrix_key(k)}) IS NULL "
                             f"THEN 'bad attributes: missing ' || s.dims[{k}]")
    if f.unique:
        bad_parts.append("WHEN s.aggregation = 'UNIQUE_COUNT' AND json_extract_string(e.attributes, s.unique_path) IS NULL "
                         "THEN 'bad attributes: missing ' || s.unique_attribute")
    bad = f"CASE WHEN s.slot_id IS NOT NULL THEN CASE {' '.join(bad_parts)} END END"
    select = (f"s.slot_id, e.event_id, e.subscription_id, e.metric, e.quantity, e.event_time, e._file, e.zone, "
              f"e.attributes, s.seg_end, s.rate, s.per_event_min, s.per_event_max, s.price_path, s.unique_path, "
              f"s.charge_model, s.aggregation, s.pct_clamped, s.pct_ordered, {m}, {bad} AS bad")
    return select, bad


def build_scan(
    con: duckdb.DuckDBPyConnection,
    tag: str,
    usage: str,
    bm: str,
    window: tuple[str, str],
    f: Features,
) -> None:
    """Create ``{tag}_agg``: one row per (slot, matrix key) of rated usage, one row per unrated event."""
    select, _bad = event_slot_join(tag, f)
    lo, hi = window
    aggs = [
        "count(*) AS n",
        "sum(quantity) AS sum_q",
        "min(event_time) AS first_at",
        "max(event_time) AS last_at",
        "any_value(subscription_id) AS subscription_id",
        "any_value(metric) AS metric",
        "any_value(_file) AS _file",
        "any_value(bad) AS bad",
    ]
    aggs.append("max(quantity) AS max_q" if f.maxq else f"CAST(NULL AS {DEC}) AS max_q")
    aggs.append("max({'t': event_time, 'id': event_id, 'q': quantity}) FILTER (WHERE aggregation = 'LATEST') AS latest"
                if f.latest else f"CAST(NULL AS {_EV}) AS latest")
    aggs.append("count(DISTINCT json_extract_string(attributes, unique_path)) FILTER (WHERE aggregation = 'UNIQUE_COUNT') AS ucount"
                if f.unique else "CAST(NULL AS BIGINT) AS ucount")
    aggs.append("sum(quantity * date_diff('millisecond', event_time, seg_end)) FILTER (WHERE aggregation = 'TIME_WEIGHTED_SUM') AS tw"
                if f.tws else f"CAST(NULL AS {DEC}) AS tw")
    aggs.append(f"sum(quantity * TRY_CAST(json_extract_string(attributes, price_path) AS {DEC})) FILTER (WHERE charge_model = 'DYNAMIC') AS dyn"
                if f.dynamic else "CAST(NULL AS DECIMAL(38,20)) AS dyn")
    aggs.append("sum(CASE WHEN quantity > 0 THEN least(greatest(quantity * rate, coalesce(per_event_min, quantity * rate)), "
                "coalesce(per_event_max, quantity * rate)) ELSE quantity * rate END) FILTER (WHERE pct_clamped) AS pct"
                if f.pct_clamped else "CAST(NULL AS DECIMAL(38,20)) AS pct")
    aggs.append("list({'t': event_time, 'id': event_id, 'q': quantity}) FILTER (WHERE pct_ordered) AS evs"
                if f.pct_ordered else f"CAST(NULL AS {_EV}[]) AS evs")
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE {tag}_agg AS
    SELECT slot_id, m1, m2, m3, u_event_id, {', '.join(aggs)}
    FROM (
      SELECT *, CASE WHEN slot_id IS NULL OR bad IS NOT NULL THEN event_id END AS u_event_id
      FROM (
        SELECT {select}
        FROM ({usage}) e
        LEFT JOIN {tag}_subs sp ON sp.subscription_id = e.subscription_id
        LEFT JOIN {tag}_slots s ON s.subscription_id = e.subscription_id AND s.metric = e.metric
                               AND e.event_time >= s.seg_start AND e.event_time < s.seg_end
        WHERE e.event_time >= {lo} AND e.event_time < {hi}
          AND ((sp.subscription_id IS NULL AND e.event_time >= {bm} AND e.event_time < {bm} + INTERVAL 1 MONTH)
               OR (e.event_time >= sp.win_start AND e.event_time < sp.win_end))
      ) y
    ) x
    GROUP BY slot_id, m1, m2, m3, u_event_id
    """)

