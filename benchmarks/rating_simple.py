"""Rating against a hand-written statement: ``python -m benchmarks.rating_simple --events 20000000``.

The cost a user compares the engine against: on a *simple* workload, the rated lines produced by
ONE hand-written DuckDB statement, and the same lines from ``rate_usage``, measured in the same run.

Workload (deterministic; every value a hash of the event number, like ``benchmarks/rating.py``):

* N/200 subscriptions, one per billing account (calendar bill cycle, 1 in 7 in EUR), all on one
  plan with ONE usage price version: ``data_mb`` summed, GRADUATED, three tiers (the last with a
  flat amount), 500 MB included;
* 10 % of the subscriptions start mid-March (on day 2..28): their allowance is prorated by day
  over the 31-day period (DESIGN.md "Proration": ``div_round(500 x days, 31, 10)``, exact), the
  others have the whole period;
* N events in March, each inside its subscription's service (so every event is rated; the
  comparison is about pricing, not unrated reasons), quantities 0.000 .. 99.999 MB.

Phases, each in a fresh subprocess (same threads, same memory limit, both writing a DuckDB
database file), with wall, CPU seconds (user + system, all threads) and peak RSS:

1. **engine**: ``rate_usage`` for 2025-03, then the lines inserted into ``billing.rated_usage``
   (and the unrated ones into ``billing.unrated_usage``) of ``benchmarks/data/simple_engine.duckdb``,
   the same DELETE + INSERT in one transaction as ``benchmarks/rating.py``;
2. **reference**: :data:`REFERENCE_SQL`, one ``CREATE TABLE AS`` over the same Parquet files and
   catalog tables into ``benchmarks/data/simple_reference.duckdb``: plan in force per event, one
   GROUP BY per subscription, zero-usage lines, exact prorated allowance, graduated tiers,
   rounding to 10 decimals and to the minor unit -- all in DECIMAL, never DOUBLE;
3. **check**: both tables compared with ``EXCEPT ALL`` both ways on every column the reference
   writes (keys, segment, proration factor, quantities, event counts and times, precise and
   rounded amounts): the benchmark fails unless the lines are equal to the cent (and to the
   tenth decimal).

Prints the ratio engine / reference. ``--repeat N`` runs both N times, interleaved, and reports
each one's fastest run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import time
from pathlib import Path

import duckdb

from benchmarks.rating import DATA, MEMORY_LIMIT, n_subscriptions, peak_rss_mb, run_phase, write_events

MODULE = "benchmarks.rating_simple"
MONTH = dt.date(2025, 3, 1)
INCLUDED = "500"
TIERS = [{"up_to": "1000", "unit_amount": "0.0020"}, {"up_to": "10000", "unit_amount": "0.0015"},
         {"up_to": None, "unit_amount": "0.0010", "flat_amount": "2.50"}]
ENGINE_DB = DATA / "simple_engine.duckdb"
REFERENCE_DB = DATA / "simple_reference.duckdb"

# The columns the reference writes, as billing.rated_usage names them; the check compares them all.
COMPARED = ("billing_month", "account_id", "subscription_id", "plan_id", "price_id", "charge_code", "metric",
            "line_type", "currency", "period_start", "period_end", "service_start", "service_end", "segment_start",
            "segment_end", "proration_factor", "quantity", "included_quantity", "billable_quantity", "event_count",
            "first_event_at", "last_event_at", "amount_precise", "amount")


def catalog() -> list[dict]:
    return [dict(price_id=1, plan_id=1, charge_code="data", metric="data_mb", charge_type="USAGE", aggregation="SUM",
                 charge_model="GRADUATED", billing_timing="IN_ARREARS", prorate=True, included_quantity=INCLUDED,
                 tiers=TIERS)]


def start_day(s: str) -> str:
    """SQL: the day of March subscription ``s`` starts on (1: before March, the whole period)."""
    return f"CASE WHEN {s} % 10 = 1 THEN 2 + {s} % 27 ELSE 1 END"


def build_catalog(con: duckdb.DuckDBPyConnection, events: int, schema: str = "src") -> dict[str, str]:
    """One account and one subscription per subscription id; 10 % start mid-March."""
    from domain.periods import OPEN_END_DATE
    from pipelines.rating.inputs import create_inputs

    names = create_inputs(con, schema, charges=catalog())
    n = n_subscriptions(events)
    con.execute(f"""
    INSERT INTO {schema}.billing_accounts (account_id, customer_id, account_number, billing_cycle, bill_cycle_day,
                                           payment_terms_days, currency, status, is_deleted)
    SELECT a, a, 'A' || a, 'MONTHLY', 1, 30, CASE WHEN a % 7 = 0 THEN 'EUR' ELSE 'USD' END, 'ACTIVE', false
    FROM range(1, {n + 1}) t(a);
    INSERT INTO {schema}.subscription_versions (subscription_id, account_id, product_id, plan_id, bundle_id, quantity,
                                                valid_from, valid_to, order_id, change_kind)
    SELECT s, s, 1, 1, NULL, 1,
           CASE WHEN s % 10 = 1 THEN DATE '2025-03-01' + CAST({start_day('s')} - 1 AS INTEGER) ELSE DATE '2024-01-01' END,
           {OPEN_END_DATE}, s, 'ACTIVATE'
    FROM range(1, {n + 1}) t(s);
    """)
    return names


def event_select(lo: int, hi: int, n_subs: int) -> str:
    """Events lo..hi-1: each in March, after its subscription's start."""
    month_seconds = 31 * 86400
    return f"""
    WITH r AS (SELECT i, hash(i) AS h1, hash(i * 7 + 3) AS h2, hash(i * 13 + 5) AS h3 FROM range({lo}, {hi}) t(i)),
    k AS (SELECT i, h2, h3, 1 + (h1 >> 10) % {n_subs} AS sub FROM r),
    d AS (SELECT *, ({start_day('sub')} - 1) * 86400 AS offset_s FROM k)
    SELECT 'ev' || i AS event_id, CAST(sub AS BIGINT) AS subscription_id, 'data_mb' AS metric,
           CAST(CAST((h2 >> 12) % 100000 AS DECIMAL(18,3)) / 1000 AS DECIMAL(38,10)) AS quantity, 'MB' AS unit,
           TIMESTAMP '2025-03-01' + to_seconds(CAST(offset_s + h3 % ({month_seconds} - offset_s) AS BIGINT)) AS event_time
    FROM d"""


def ensure_events(events: int) -> Path:
    """Parquet files of the simple workload's ``events`` events under benchmarks/data/simple_usage_<N>/."""
    return write_events(DATA / f"simple_usage_{events}", events, event_select)


# The hand-written rater: ONE statement, over the usage files and the catalog tables of src.
# Amount = round10(sum over tiers of units in tier x unit amount) + flat amounts of the tiers
# reached (the first always), on billable = max(quantity - allowance, 0); allowance =
# 500 x days / period days rounded half away from zero to 10 decimals (integer arithmetic on the
# unscaled value), the whole 500 for a whole period. Every value DECIMAL; no DOUBLE anywhere.
REFERENCE_SQL = """
CREATE TABLE rated AS
WITH price AS (
    SELECT price_id, plan_id, charge_code, metric, CAST(included_quantity AS DECIMAL(38,10)) AS included,
           CAST(tiers->>'$[0].up_to' AS DECIMAL(38,10)) AS up1, CAST(tiers->>'$[1].up_to' AS DECIMAL(38,10)) AS up2,
           CAST(tiers->>'$[0].unit_amount' AS DECIMAL(38,10)) AS unit1,
           CAST(tiers->>'$[1].unit_amount' AS DECIMAL(38,10)) AS unit2,
           CAST(tiers->>'$[2].unit_amount' AS DECIMAL(38,10)) AS unit3,
           CAST(coalesce(tiers->>'$[0].flat_amount', '0') AS DECIMAL(38,10)) AS flat1,
           CAST(coalesce(tiers->>'$[1].flat_amount', '0') AS DECIMAL(38,10)) AS flat2,
           CAST(coalesce(tiers->>'$[2].flat_amount', '0') AS DECIMAL(38,10)) AS flat3
    FROM src.plan_charges
), subs AS (
    SELECT v.subscription_id, v.account_id, v.plan_id, upper(a.currency) AS currency,
           greatest(CAST(v.valid_from AS TIMESTAMP), TIMESTAMP '2025-03-01') AS segment_start,
           least(CAST(v.valid_to AS TIMESTAMP), TIMESTAMP '2025-04-01') AS segment_end
    FROM src.subscription_versions v JOIN src.billing_accounts a USING (account_id)
    WHERE v.valid_from < DATE '2025-04-01' AND v.valid_to > DATE '2025-03-01'
), usage AS (
    SELECT s.subscription_id, count(*) AS event_count, sum(CAST(e.quantity AS DECIMAL(38,10))) AS quantity,
           min(e.event_time) AS first_event_at, max(e.event_time) AS last_event_at
    FROM read_parquet('{files}') e
    JOIN subs s ON s.subscription_id = e.subscription_id
         AND e.event_time >= s.segment_start AND e.event_time < s.segment_end
    WHERE e.metric = 'data_mb'
    GROUP BY s.subscription_id
), lines AS (
    SELECT s.*, p.*, date_diff('day', CAST(s.segment_start AS DATE), CAST(s.segment_end AS DATE)) AS days,
           coalesce(u.event_count, 0) AS event_count, coalesce(u.quantity, 0) AS quantity,
           u.first_event_at, u.last_event_at
    FROM subs s JOIN price p USING (plan_id) LEFT JOIN usage u USING (subscription_id)
), allowed AS (
    SELECT *, CASE WHEN days = 31 THEN CAST(1 AS DECIMAL(38,10))
                   ELSE CAST((CAST(days AS HUGEINT) * 20000000000 + 31) // 62 AS DECIMAL(38,0))
                        * CAST(0.0000000001 AS DECIMAL(38,10)) END AS proration_factor,
              CASE WHEN days = 31 THEN included
                   ELSE CAST((CAST(included * 10000000000 AS HUGEINT) * days * 2 + 31) // 62 AS DECIMAL(38,0))
                        * CAST(0.0000000001 AS DECIMAL(38,10)) END AS allowance
    FROM lines
), billed AS (
    SELECT *, CAST(greatest(quantity - allowance, 0) AS DECIMAL(38,10)) AS billable FROM allowed
), priced AS (
    SELECT *, CAST(round(least(billable, up1) * unit1
                         + CASE WHEN billable > up1 THEN (least(billable, up2) - up1) * unit2 ELSE 0 END
                         + CASE WHEN billable > up2 THEN (billable - up2) * unit3 ELSE 0 END, 10) AS DECIMAL(38,10))
                + flat1 + CASE WHEN billable > up1 THEN flat2 ELSE 0 END
                + CASE WHEN billable > up2 THEN flat3 ELSE 0 END AS amount_precise
    FROM billed
)
SELECT DATE '2025-03-01' AS billing_month, account_id, subscription_id, plan_id, price_id, charge_code, metric,
       'USAGE' AS line_type, currency, DATE '2025-03-01' AS period_start, DATE '2025-04-01' AS period_end,
       CAST(segment_start AS DATE) AS service_start, CAST(segment_end AS DATE) AS service_end, segment_start, segment_end,
       proration_factor, quantity, CAST(allowance AS DECIMAL(38,10)) AS included_quantity,
       billable AS billable_quantity, event_count, first_event_at, last_event_at,
       CAST(amount_precise AS DECIMAL(38,10)) AS amount_precise,
       CAST(round(amount_precise, 2) AS DECIMAL(18,4)) AS amount  -- USD and EUR: 2 decimals
FROM priced
"""


def _usage() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), r.ru_utime + r.ru_stime


def _since(t: tuple[float, float]) -> tuple[float, float]:
    now = _usage()
    return now[0] - t[0], now[1] - t[1]


def _fresh(db: Path, threads: int) -> duckdb.DuckDBPyConnection:
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    return duckdb.connect(str(db), config={"threads": threads, "memory_limit": MEMORY_LIMIT,
                                           "preserve_insertion_order": False})


def phase_engine(folder: Path, events: int, threads: int) -> dict:
    from domain import install_macros
    from pipelines.rating import rate_usage
    from warehouse.ddl import create_tables

    con = install_macros(_fresh(ENGINE_DB, threads))
    names = build_catalog(con, events)
    create_tables(con, ["billing.rated_usage", "billing.unrated_usage"])
    con.execute("CREATE SCHEMA IF NOT EXISTS src")
    con.execute(f"CREATE OR REPLACE VIEW src.usage_parquet AS SELECT *, false AS is_deleted, 'bench' AS _file "
                f"FROM read_parquet('{folder}/*.parquet')")
    names["usage"] = "src.usage_parquet"
    t0 = _usage()
    r = rate_usage(con, MONTH, **names, unrated_share_limit="0.01")
    rate_wall, rate_cpu = _since(t0)
    con.execute("BEGIN")
    con.execute("DELETE FROM billing.rated_usage WHERE billing_month = DATE '2025-03-01'")
    con.execute("DELETE FROM billing.unrated_usage WHERE billing_month = DATE '2025-03-01'")
    con.execute(f"INSERT INTO billing.rated_usage BY NAME SELECT * FROM {r.tag}_rated")
    con.execute(f"INSERT INTO billing.unrated_usage BY NAME SELECT * FROM {r.tag}_unrated")
    con.execute("COMMIT")
    wall, cpu = _since(t0)
    lines, amount = con.execute("SELECT count(*), sum(amount) FROM billing.rated_usage").fetchone()
    unrated = con.execute("SELECT count(*) FROM billing.unrated_usage").fetchone()[0]
    return {"seconds": wall, "cpu_seconds": cpu, "rate_seconds": rate_wall, "rate_cpu_seconds": rate_cpu,
            "lines": lines, "amount": str(amount), "unrated": unrated, "peak_rss_mb": peak_rss_mb()}


def phase_reference(folder: Path, events: int, threads: int) -> dict:
    con = _fresh(REFERENCE_DB, threads)
    build_catalog(con, events)
    t0 = _usage()
    con.execute(REFERENCE_SQL.format(files=f"{folder}/*.parquet"))
    wall, cpu = _since(t0)
    lines, amount = con.execute("SELECT count(*), sum(amount) FROM rated").fetchone()
    return {"seconds": wall, "cpu_seconds": cpu, "lines": lines, "amount": str(amount), "peak_rss_mb": peak_rss_mb()}


def phase_check() -> dict:
    """The engine's lines equal the reference's on every compared column (EXCEPT ALL both ways)."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{ENGINE_DB}' AS eng (READ_ONLY)")
    con.execute(f"ATTACH '{REFERENCE_DB}' AS ref (READ_ONLY)")
    cols = ", ".join(COMPARED)
    engine_only = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM eng.billing.rated_usage "
                              f"EXCEPT ALL SELECT {cols} FROM ref.rated)").fetchone()[0]
    reference_only = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM ref.rated "
                                 f"EXCEPT ALL SELECT {cols} FROM eng.billing.rated_usage)").fetchone()[0]
    unrated = con.execute("SELECT count(*) FROM eng.billing.unrated_usage").fetchone()[0]
    prorated = con.execute("SELECT count(*) FROM ref.rated WHERE proration_factor < 1").fetchone()[0]
    tiers = con.execute("SELECT count(*) FILTER (WHERE billable_quantity > 10000), "
                        "count(*) FILTER (WHERE billable_quantity > 1000) FROM ref.rated").fetchone()
    return {"engine_only": engine_only, "reference_only": reference_only, "unrated": unrated, "prorated_lines": prorated,
            "lines_in_tier3": tiers[0], "lines_in_tier2_or_3": tiers[1],
            "equal": engine_only == 0 and reference_only == 0 and unrated == 0}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=1, help="run both this many times, interleaved; report the fastest")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--phase", choices=["engine", "reference", "check"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    folder = DATA / f"simple_usage_{a.events}"
    if a.phase == "engine":
        print(json.dumps(phase_engine(folder, a.events, a.threads), default=str))
        return
    if a.phase == "reference":
        print(json.dumps(phase_reference(folder, a.events, a.threads), default=str))
        return
    if a.phase == "check":
        print(json.dumps(phase_check(), default=str))
        return

    print(f"simple workload: {a.events:,} events, {n_subscriptions(a.events):,} subscriptions  threads: {a.threads}"
          f"  (cores: {os.cpu_count()})", flush=True)
    ensure_events(a.events)
    common = ["--events", str(a.events), "--threads", str(a.threads)]
    runs = {"reference": [], "engine": []}
    for _ in range(a.repeat):  # interleaved, so a busy spell on a shared machine hits both alike
        for phase, out in runs.items():
            out.append(run_phase(["--phase", phase, *common], MODULE))
    reference, engine = (min(out, key=lambda r: r["seconds"]) for out in runs.values())
    check = run_phase(["--phase", "check"], MODULE)  # the last runs' tables
    res = {"events": a.events, "threads": a.threads, "repeat": a.repeat, "reference": reference, "engine": engine,
           "check": check, "all_seconds": {p: [r["seconds"] for r in out] for p, out in runs.items()},
           "ratio": engine["seconds"] / reference["seconds"],
           "cpu_ratio": engine["cpu_seconds"] / reference["cpu_seconds"]}
    if a.repeat > 1:
        print(f"fastest of {a.repeat} interleaved runs each; all runs (s): "
              + "; ".join(f"{k} {', '.join(f'{x:.2f}' for x in v)}" for k, v in res["all_seconds"].items()))
    print(f"reference (one statement) : {reference['seconds']:7.2f} s  {reference['cpu_seconds']:7.2f} CPU-s"
          f"  peak RSS {reference['peak_rss_mb']:6.0f} MB  ({reference['lines']:,} lines, total {reference['amount']})")
    print(f"engine (rate + write)     : {engine['seconds']:7.2f} s  {engine['cpu_seconds']:7.2f} CPU-s"
          f"  peak RSS {engine['peak_rss_mb']:6.0f} MB  (rate {engine['rate_seconds']:.2f} s; {engine['lines']:,} lines,"
          f" total {engine['amount']}, {engine['unrated']} unrated)")
    print(f"ratio engine / reference  : {res['ratio']:7.2f} x wall, {res['cpu_ratio']:.2f} x CPU")
    print(f"lines equal to the cent   : {check['equal']}  (engine only {check['engine_only']}, reference only "
          f"{check['reference_only']}; {check['prorated_lines']:,} prorated lines, {check['lines_in_tier2_or_3']:,} "
          f"reaching tier 2, {check['lines_in_tier3']:,} tier 3)")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2, default=str))
    if not check["equal"]:
        raise SystemExit("the engine's lines differ from the reference statement's")


if __name__ == "__main__":
    main()
