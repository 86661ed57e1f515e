"""Rating benchmark: ``python -m benchmarks.rating --events 20000000``.

1. Generates (or reuses) N synthetic usage events as Parquet under ``benchmarks/data/`` (in
   chunks of 10M rows, deterministic: every value is a hash of the event number), with a
   realistic catalog: two plans with five usage charges each (graduated data with an
   allowance, matrix voice by zone x time-of-day band, volume SMS, percentage payments with
   per-event min/max, dynamic API calls), a price change on Mar 10, 10 % of subscriptions
   upgrading on Mar 16, 2 % starting on Mar 10, 20 % of accounts on bill cycle day 15, a
   minimum commitment and a cap, and ~0.2 % unrateable events.
2. Floor: DuckDB's bare ``SELECT subscription_id, metric, sum(quantity) ... GROUP BY`` over the
   same files (the usage file has no account column; the subscription is its account-level key).
3. Reference: the two steps no rater can skip, with no pricing at all: the plan in force for
   each event (a join on subscription with a half-open time range) and a GROUP BY to the grain
   of a rated line with its lineage (subscription, plan, metric, zone x time band: count,
   quantity, first and last event), over the calendar month's events. A lower bound for the
   engine, in the same run.
4. Engine: ``rate_usage`` for billing month 2025-03 over a view of the files, and the rated and
   unrated lines inserted into ``billing.rated_usage`` / ``billing.unrated_usage`` of a DuckDB
   database file (``benchmarks/data/bench.duckdb``): rating + write.
5. A straightforward row-at-a-time Python rater on a 1M-event sample, its speed-up factor, and a
   cross-check of its total against the engine's on the same sample.

Floor, reference, engine and the Python rater each run in a fresh subprocess, so each peak RSS
(``resource.getrusage``) is that phase's own. ``--repeat N`` runs floor, reference and engine N
times, interleaved, and reports each one's fastest run (the machine may be shared). Prints one
table; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb

DATA = Path(__file__).resolve().parent / "data"
CHUNK = 10_000_000
MEMORY_LIMIT = "3GB"  # DuckDB spills beyond it; the 4 GB peak-RSS target leaves room for Python and the OS
MONTH = dt.date(2025, 3, 1)
NEXT_MONTH = dt.date(2025, 4, 1)
START = dt.datetime(2025, 2, 15)
SPAN_SECONDS = 45 * 86400  # Feb 15 .. Apr 1
REFERENCE_EVENTS_PER_SHARD = 60_000_000

# ------------------------------------------------------------------ catalog
BANDS = [{"band": "PEAK", "from_hour": 8, "to_hour": 20}, {"band": "OFFPEAK", "from_hour": 20, "to_hour": 8}]


def _matrix(prices: dict, default: str) -> dict:
    return {"dimensions": ["zone", "time_band"], "time_bands": BANDS, "default_unit_price": default,
            "prices": [{"zone": z, "time_band": b, "unit_price": p} for (z, b), p in prices.items()]}


def catalog() -> list[dict]:
    pct = {"rate": "0.029", "fixed_fee": "0.30", "per_event_min": "0.50", "per_event_max": "20"}
    c = [
        # plan 1 (basic)
        dict(price_id=11, plan_id=1, charge_code="data", metric="data_mb", charge_model="GRADUATED", included_quantity="1024",
             tiers=[{"up_to": "10240", "unit_amount": "0.002"}, {"up_to": None, "unit_amount": "0.001"}],
             effective_to="2025-03-10 00:00:00"),
        dict(price_id=12, plan_id=1, charge_code="data", metric="data_mb", charge_model="GRADUATED", included_quantity="1024",
             tiers=[{"up_to": "10240", "unit_amount": "0.0025"}, {"up_to": None, "unit_amount": "0.0012"}],
             effective_from="2025-03-10 00:00:00"),
        dict(price_id=13, plan_id=1, charge_code="voice", metric="voice_min", charge_model="MATRIX",
             properties=_matrix({("LOCAL", "PEAK"): "0.05", ("LOCAL", "OFFPEAK"): "0.02", ("EU", "PEAK"): "0.15",
                                 ("EU", "OFFPEAK"): "0.10", ("US", "PEAK"): "0.25", ("US", "OFFPEAK"): "0.20"}, "0.99")),
        dict(price_id=14, plan_id=1, charge_code="sms", metric="sms", aggregation="COUNT", charge_model="VOLUME",
             tiers=[{"up_to": "100", "unit_amount": "0.05"}, {"up_to": "1000", "unit_amount": "0.03"},
                    {"up_to": None, "unit_amount": "0.01", "flat_amount": "5"}], properties={"maximum_amount": "50"}),
        dict(price_id=15, plan_id=1, charge_code="payments", metric="payment_usd", charge_model="PERCENTAGE", properties=pct),
        dict(price_id=16, plan_id=1, charge_code="api", metric="api_call", charge_model="DYNAMIC"),
        # plan 2 (premium)
        dict(price_id=21, plan_id=2, charge_code="data", metric="data_mb", charge_model="PER_UNIT", unit_price="0.0015",
             included_quantity="5120", properties={"minimum_amount": "20"}),
        dict(price_id=23, plan_id=2, charge_code="voice", metric="voice_min", charge_model="MATRIX",
             properties=_matrix({("LOCAL", "PEAK"): "0.03", ("LOCAL", "OFFPEAK"): "0.01", ("EU", "PEAK"): "0.10",
                                 ("EU", "OFFPEAK"): "0.08", ("US", "PEAK"): "0.20", ("US", "OFFPEAK"): "0.15"}, "0.79")),
        dict(price_id=24, plan_id=2, charge_code="sms", metric="sms", aggregation="COUNT", charge_model="VOLUME",
             tiers=[{"up_to": "500", "unit_amount": "0.04"}, {"up_to": None, "unit_amount": "0.02"}]),
        dict(price_id=25, plan_id=2, charge_code="payments", metric="payment_usd", charge_model="PERCENTAGE",
             properties={**pct, "rate": "0.025"}),
        dict(price_id=26, plan_id=2, charge_code="api", metric="api_call", charge_model="DYNAMIC"),
    ]
    return [{"charge_type": "USAGE", "aggregation": "SUM", "billing_timing": "IN_ARREARS", "prorate": True, **x} for x in c]


def n_subscriptions(events: int) -> int:
    return max(1000, events // 200)


def build_catalog(con: duckdb.DuckDBPyConnection, events: int, schema: str = "src") -> dict[str, str]:
    """Accounts, subscription versions and plan charges for ``events`` (sizes scale with N)."""
    from domain.periods import OPEN_END_DATE
    from pipelines.rating.inputs import create_inputs

    names = create_inputs(con, schema, charges=catalog())
    n = n_subscriptions(events)
    versions = ("(subscription_id, account_id, product_id, plan_id, bundle_id, quantity, valid_from, valid_to, order_id, "
                "change_kind)")
    con.execute(f"""
    INSERT INTO {schema}.billing_accounts (account_id, customer_id, account_number, billing_cycle, bill_cycle_day,
                                           payment_terms_days, currency, status, is_deleted)
    SELECT a, a, 'A' || a, 'MONTHLY', CASE WHEN a % 5 = 0 THEN 15 ELSE 1 END, 30,
           CASE WHEN a % 7 = 0 THEN 'EUR' ELSE 'USD' END, 'ACTIVE', false
    FROM range(1, {n // 2 + 1}) t(a);
    -- subscription s on account ceil(s/2); s % 10 = 0 upgrades plan 1 -> 2 on Mar 16; s % 50 = 1 starts Mar 10
    INSERT INTO {schema}.subscription_versions {versions}
    SELECT s, (s + 1) // 2, 1, CASE WHEN s % 3 = 0 THEN 2 ELSE 1 END, NULL, 1,
           CASE WHEN s % 50 = 1 THEN DATE '2025-03-10' ELSE DATE '2024-01-01' END,
           CASE WHEN s % 10 = 0 THEN DATE '2025-03-16' ELSE {OPEN_END_DATE} END, s, 'ACTIVATE'
    FROM range(1, {n + 1}) t(s);
    INSERT INTO {schema}.subscription_versions {versions}
    SELECT s, (s + 1) // 2, 1, 2, NULL, 1, DATE '2025-03-16', {OPEN_END_DATE}, s, 'UPGRADE'
    FROM range(1, {n + 1}) t(s) WHERE s % 10 = 0;
    """)
    return names


# ------------------------------------------------------------------ events
def event_select(lo: int, hi: int, n_subs: int) -> str:
    """Deterministic synthetic events lo..hi-1 (every value a hash of the event number)."""
    return f"""
    WITH r AS (SELECT i, hash(i) AS h1, hash(i * 7 + 3) AS h2, hash(i * 13 + 5) AS h3 FROM range({lo}, {hi}) t(i)),
    k AS (SELECT i, h2, h3,
                 CASE WHEN h1 % 1000 = 0 THEN {n_subs} + 1 + h1 % 97 ELSE 1 + (h1 >> 10) % {n_subs} END AS sub,
                 h2 % 1000 AS mk FROM r)
    SELECT 'ev' || i AS event_id,
           CAST(sub AS BIGINT) AS subscription_id,
           CASE WHEN mk < 500 THEN 'data_mb' WHEN mk < 750 THEN 'voice_min' WHEN mk < 950 THEN 'sms'
                WHEN mk < 990 THEN 'payment_usd' WHEN mk < 999 THEN 'api_call' ELSE 'fax_pages' END AS metric,
           CAST(CASE WHEN mk < 500 THEN CAST((h2 >> 12) % 50000 AS DECIMAL(18,3)) / 1000
                     WHEN mk < 750 THEN CAST((h2 >> 12) % 36000 AS DECIMAL(18,3)) / 600
                     WHEN mk < 950 OR mk >= 990 THEN 1
                     ELSE CAST((h2 >> 12) % 100000 AS DECIMAL(18,2)) / 100 END AS DECIMAL(38,10)) AS quantity,
           CASE WHEN mk < 500 THEN 'MB' WHEN mk < 750 THEN 'MIN' WHEN mk < 990 AND mk >= 950 THEN 'USD' ELSE 'EVENT' END AS unit,
           TIMESTAMP '{START:%Y-%m-%d %H:%M:%S}' + to_seconds(CAST(h3 % {SPAN_SECONDS} AS BIGINT)) AS event_time,
           CASE WHEN mk >= 500 AND mk < 750 THEN ['LOCAL', 'LOCAL', 'EU', 'US', 'ROW'][CAST(1 + (h3 >> 20) % 5 AS BIGINT)] END AS zone,
           CASE WHEN mk >= 990 AND mk < 999 THEN '{{"unit_price": "0.00' || (1 + (h3 >> 24) % 9) || '"}}' END AS attributes
    FROM k"""


def write_events(folder: Path, events: int, select: Callable[[int, int, int], str]) -> Path:
    """Parquet files of ``select(lo, hi, n_subscriptions)`` for ``events`` events in chunks, under ``folder``
    (reused if complete)."""
    done = folder / "_SUCCESS"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    n_subs = n_subscriptions(events)
    t0 = time.perf_counter()
    for k, lo in enumerate(range(0, events, CHUNK)):
        hi = min(events, lo + CHUNK)
        con.execute(f"COPY ({select(lo, hi, n_subs)}) TO '{folder}/part-{k:04d}.parquet' "
                    "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)")
        print(f"  generated {hi:,} / {events:,} events", file=sys.stderr, flush=True)
    done.write_text(f"{events} events, generated in {time.perf_counter() - t0:.1f}s\n")
    return folder


def ensure_events(events: int) -> Path:
    """Parquet files for ``events`` events under benchmarks/data/usage_<N>/ (reused if complete)."""
    return write_events(DATA / f"usage_{events}", events, event_select)


def usage_view(con: duckdb.DuckDBPyConnection, folder: Path, name: str = "src.usage_parquet") -> str:
    con.execute("CREATE SCHEMA IF NOT EXISTS src")
    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT *, false AS is_deleted, 'bench' AS _file "
                f"FROM read_parquet('{folder}/*.parquet')")
    return name


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ------------------------------------------------------------------ phases (each in its own process)
def phase_floor(folder: Path, threads: int) -> dict:
    con = duckdb.connect(config={"threads": threads})
    t0 = time.perf_counter()
    # materialised inside DuckDB like the engine's output (fetching 500k rows into Python would inflate it)
    con.execute(f"CREATE TEMP TABLE floor AS SELECT subscription_id AS account, metric, sum(quantity) AS quantity "
                f"FROM read_parquet('{folder}/*.parquet') GROUP BY ALL")
    seconds = time.perf_counter() - t0
    groups = con.execute("SELECT count(*) FROM floor").fetchone()[0]
    return {"seconds": seconds, "groups": groups, "peak_rss_mb": peak_rss_mb()}


def phase_reference(folder: Path, events: int, threads: int) -> dict:
    """The part of rating no rater can skip, without any pricing: find the plan in force for each
    event (a join on subscription with a half-open time range) and aggregate to the grain of a
    rated line with its lineage (subscription, plan, metric, matrix zone x time band: event count,
    quantity, first and last event), for the events of the calendar month (about as many as the
    engine rates in the billing periods ending in it). No price versions, billing periods,
    unrated reasons, tiers, rounding, ids or write: a lower bound for the engine, measured in the
    same run as the floor."""
    con = duckdb.connect(config={"threads": threads, "memory_limit": MEMORY_LIMIT, "preserve_insertion_order": False})
    build_catalog(con, events)
    con.execute("CREATE TEMP TABLE versions AS SELECT subscription_id, plan_id, CAST(valid_from AS TIMESTAMP) AS a, "
                "CAST(valid_to AS TIMESTAMP) AS b FROM src.subscription_versions")
    # Like the engine, large inputs run in subscription shards so the aggregation does not spill:
    # 2 shards at 100M events was the fastest (18.5 s; 1 shard spills: 23.5 s; 3 shards: 19.6 s).
    shards = max(1, -(-events // REFERENCE_EVENTS_PER_SHARD))
    t0 = time.perf_counter()
    for i in range(shards):
        head = "CREATE TEMP TABLE reference AS" if i == 0 else "INSERT INTO reference"
        only = "" if shards == 1 else f" AND e.subscription_id % {shards} = {i}"
        con.execute(f"""
        {head}
        SELECT e.subscription_id, v.plan_id, e.metric, e.zone, hour(e.event_time) >= 8 AND hour(e.event_time) < 20 AS peak,
               count(*) AS events, sum(e.quantity) AS quantity, min(e.event_time) AS first_at, max(e.event_time) AS last_at
        FROM read_parquet('{folder}/*.parquet') e
        JOIN versions v ON v.subscription_id = e.subscription_id AND e.event_time >= v.a AND e.event_time < v.b
        WHERE e.event_time >= TIMESTAMP '{MONTH}' AND e.event_time < TIMESTAMP '{NEXT_MONTH}'{only}
        GROUP BY ALL""")
    seconds = time.perf_counter() - t0
    groups = con.execute("SELECT count(*) FROM reference").fetchone()[0]
    return {"seconds": seconds, "groups": groups, "shards": shards, "peak_rss_mb": peak_rss_mb()}


def phase_engine(folder: Path, events: int, threads: int, db: Path) -> dict:
    from domain import install_macros
    from pipelines.rating import rate_usage
    from warehouse.ddl import create_tables

    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    con = install_macros(duckdb.connect(str(db), config={"threads": threads, "memory_limit": MEMORY_LIMIT,
                                                        "preserve_insertion_order": False}))
    names = build_catalog(con, events)
    create_tables(con, ["billing.rated_usage", "billing.unrated_usage"])
    names["usage"] = usage_view(con, folder)
    t0 = time.perf_counter()
    r = rate_usage(con, MONTH, **names, unrated_share_limit="0.01")
    t_rate = time.perf_counter() - t0
    con.execute("BEGIN")
    con.execute("DELETE FROM billing.rated_usage WHERE billing_month = DATE '2025-03-01'")
    con.execute("DELETE FROM billing.unrated_usage WHERE billing_month = DATE '2025-03-01'")
    con.execute(f"INSERT INTO billing.rated_usage BY NAME SELECT * FROM {r.tag}_rated")
    con.execute(f"INSERT INTO billing.unrated_usage BY NAME SELECT * FROM {r.tag}_unrated")
    con.execute("COMMIT")
    total = time.perf_counter() - t0
    stats = con.execute("""SELECT count(*), sum(event_count), sum(amount) FROM billing.rated_usage""").fetchone()
    unrated = con.execute("SELECT count(*) FROM billing.unrated_usage").fetchone()[0]
    reasons = con.execute("SELECT reason, count(*) FROM billing.unrated_usage GROUP BY 1 ORDER BY 2 DESC").fetchall()
    return {"seconds": total, "rate_seconds": t_rate, "write_seconds": total - t_rate, "lines": stats[0],
            "rated_events": int(stats[1] or 0), "amount": str(stats[2]), "unrated_events": unrated,
            "unrated_share": str(r.unrated_share), "reasons": reasons, "peak_rss_mb": peak_rss_mb()}


def phase_python(folder: Path, events: int, sample: int, threads: int) -> dict:
    """Row-at-a-time Python rater on the first ``sample`` events, and the engine on the same sample."""
    from domain import install_macros
    from pipelines.rating import rate_usage
    from warehouse.ddl import create_tables

    con = install_macros(duckdb.connect(config={"threads": threads}))
    names = build_catalog(con, events)
    con.execute(f"CREATE TABLE src.sample AS SELECT * FROM read_parquet('{folder}/part-0000.parquet') LIMIT {sample}")
    names["usage"] = "src.sample"
    rows = con.execute("SELECT event_id, subscription_id, metric, quantity, event_time, zone, attributes FROM src.sample").fetchall()
    accounts = {a: (cur, bcd) for a, cur, bcd in con.execute(
        "SELECT account_id, currency, bill_cycle_day FROM src.billing_accounts").fetchall()}
    versions = defaultdict(list)
    for s, a, p, vf, vt in con.execute(
            "SELECT subscription_id, account_id, plan_id, valid_from, valid_to FROM src.subscription_versions").fetchall():
        versions[s].append((a, p, vf, vt))
    t0 = time.perf_counter()
    lines = NaiveRater(catalog(), accounts, versions).rate(rows)
    t_py = time.perf_counter() - t0
    # compare USAGE lines (the naive rater adds commitments only for segments with events)
    py_total = sum((v for k, v in lines.items() if k[-1] not in ("min", "max")), Decimal(0))
    t1 = time.perf_counter()
    r = rate_usage(con, MONTH, **names)
    eng_total = r.rated.filter("line_type = 'USAGE'").aggregate("sum(amount_precise)").fetchone()[0]
    t_eng = time.perf_counter() - t1
    return {"events": len(rows), "seconds": t_py, "engine_seconds": t_eng, "python_total": str(py_total),
            "engine_total": str(eng_total), "totals_match": abs(py_total - eng_total) <= Decimal("0.0001") * max(1, len(lines)),
            "lines": len(lines), "peak_rss_mb": peak_rss_mb()}


class NaiveRater:
    """The obvious per-event loop: look up account, version and price for each event, accumulate
    per (subscription, price, segment, cell) in dicts, then price each bucket with Decimal.
    Covers the benchmark catalog's models (graduated, per-unit, volume, matrix, percentage with
    per-event min/max, dynamic, allowances, minimum and cap) with the same rules as the engine."""

    def __init__(self, charges, accounts, versions):
        self.charges = defaultdict(list)
        for c in charges:
            c = dict(c)
            c["from"] = dt.datetime.fromisoformat(c.get("effective_from", "2000-01-01 00:00:00"))
            c["to"] = dt.datetime.fromisoformat(c.get("effective_to", "9999-12-31 00:00:00"))
            self.charges[(c["plan_id"], c["metric"])].append(c)
        self.accounts, self.versions = accounts, versions

    @staticmethod
    def _period(bcd):
        return (dt.datetime(2025, 3, 1), dt.datetime(2025, 4, 1)) if bcd == 1 else \
               (dt.datetime(2025, 2, bcd), dt.datetime(2025, 3, bcd))

    def rate(self, rows):
        buckets = {}
        for event_id, sub, metric, q, t, zone, attrs in rows:
            vs = self.versions.get(sub)
            if not vs:
                continue  # unrated: unknown subscription
            acct = self.accounts[vs[0][0]]
            ps, pe = self._period(acct[1])
            if not (ps <= t < pe):
                continue
            v = next((v for v in vs if dt.datetime.combine(v[2], dt.time()) <= t < dt.datetime.combine(v[3], dt.time())), None)
            if v is None:
                continue
            c = next((c for c in self.charges.get((v[1], metric), ()) if c["from"] <= t < c["to"]), None)
            if c is None:
                continue
            seg_start = max(dt.datetime.combine(v[2], dt.time()), c["from"], ps)
            seg_end = min(dt.datetime.combine(v[3], dt.time()), c["to"], pe)
            cell = None
            model = c["charge_model"]
            if model == "MATRIX":
                band = "PEAK" if 8 <= t.hour < 20 else "OFFPEAK"
                cell = (zone, band)
            key = (sub, c["price_id"], seg_start, seg_end, cell)
            b = buckets.get(key)
            if b is None:
                b = buckets[key] = {"q": Decimal(0), "n": 0, "pct": Decimal(0), "dyn": Decimal(0), "c": c,
                                    "ps": ps, "pe": pe, "cur": acct[0]}
            b["q"] += q
            b["n"] += 1
            if model == "PERCENTAGE":
                p = c["properties"]
                x = q * Decimal(p["rate"])
                if q > 0:
                    x = min(max(x, Decimal(p["per_event_min"])), Decimal(p["per_event_max"]))
                b["pct"] += x
            elif model == "DYNAMIC":
                b["dyn"] += q * Decimal(json.loads(attrs)["unit_price"])
        out = {}
        totals = defaultdict(Decimal)
        for key, b in buckets.items():
            amount = self._price(b, key)
            out[key] = amount
            totals[key[:4]] += amount
        first = {}
        for k, b in buckets.items():
            first.setdefault(k[:4], b)
        for key, total in totals.items():  # commitments per segment
            b = first[key]
            c = b["c"]
            props = c.get("properties") or {}
            f = self._factor(key[2], key[3], b["ps"], b["pe"])
            if "minimum_amount" in props and total < self._pr(Decimal(props["minimum_amount"]), f):
                out[key + ("min",)] = self._pr(Decimal(props["minimum_amount"]), f) - total
            if "maximum_amount" in props and total > self._pr(Decimal(props["maximum_amount"]), f):
                out[key + ("max",)] = self._pr(Decimal(props["maximum_amount"]), f) - total
        return out

    @staticmethod
    def _factor(s, e, ps, pe):
        return ((e.date() - s.date()).days, (pe.date() - ps.date()).days)

    @staticmethod
    def _pr(x, f):
        from domain.money import div_round
        return x if f[0] == f[1] else min(x, div_round(x * f[0], f[1], 10))

    def _price(self, b, key):
        c = b["c"]
        model = c["charge_model"]
        q = Decimal(b["n"]) if c["aggregation"] == "COUNT" else b["q"]
        f = self._factor(key[2], key[3], b["ps"], b["pe"])
        billable = max(q - self._pr(Decimal(c.get("included_quantity", "0")), f), Decimal(0))
        r10 = lambda x: x.quantize(Decimal("1e-10"), rounding=ROUND_HALF_UP)  # noqa: E731
        if model == "PER_UNIT":
            return r10(billable * Decimal(c["unit_price"]))
        if model == "GRADUATED":
            total, lower = Decimal(0), Decimal(0)
            for i, t in enumerate(c["tiers"]):
                upper = Decimal(t["up_to"]) if t["up_to"] is not None else None
                if i == 0 or billable > lower:
                    top = billable if upper is None else min(billable, upper)
                    total += max(top - lower, Decimal(0)) * Decimal(t["unit_amount"]) + Decimal(t.get("flat_amount", "0"))
                if upper is not None:
                    lower = upper
            return r10(total)
        if model == "VOLUME":
            for t in c["tiers"]:
                if t["up_to"] is None or billable <= Decimal(t["up_to"]):
                    return r10(billable * Decimal(t["unit_amount"])) + Decimal(t.get("flat_amount", "0"))
        if model == "MATRIX":
            p = c["properties"]
            price = next((Decimal(x["unit_price"]) for x in p["prices"]
                          if (x["zone"], x["time_band"]) == key[4]), Decimal(p["default_unit_price"]))
            return r10(billable * price)
        if model == "PERCENTAGE":
            return r10(b["pct"]) + Decimal(c["properties"]["fixed_fee"]) * b["n"]
        if model == "DYNAMIC":
            return r10(b["dyn"])
        raise ValueError(model)


# ------------------------------------------------------------------ driver
def run_phase(args: list[str], module: str = "benchmarks.rating") -> dict:
    """Run ``module`` with ``args`` in a fresh process (its own peak RSS); the JSON its last line prints."""
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    if out.returncode:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"phase {args[1]} failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--sample", type=int, default=1_000_000, help="events for the row-at-a-time Python rater")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--skip-python", action="store_true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run floor, reference and engine this many times, interleaved, and report each one's fastest run")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--phase", choices=["floor", "reference", "engine", "python"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    folder = DATA / f"usage_{a.events}"
    if a.phase == "floor":
        print(json.dumps(phase_floor(folder, a.threads)))
        return
    if a.phase == "reference":
        print(json.dumps(phase_reference(folder, a.events, a.threads)))
        return
    if a.phase == "engine":
        print(json.dumps(phase_engine(folder, a.events, a.threads, DATA / "bench.duckdb"), default=str))
        return
    if a.phase == "python":
        print(json.dumps(phase_python(folder, a.events, a.sample, a.threads), default=str))
        return

    print(f"events: {a.events:,}  threads: {a.threads}  (cores: {os.cpu_count()})", flush=True)
    ensure_events(a.events)
    common = ["--events", str(a.events), "--threads", str(a.threads)]
    runs = {"floor": [], "reference": [], "engine": []}
    for _ in range(a.repeat):  # interleaved, so a busy spell on a shared machine hits all three alike
        for phase, out in runs.items():
            out.append(run_phase(["--phase", phase, *common]))
    floor, reference, engine = (min(out, key=lambda r: r["seconds"]) for out in runs.values())
    res = {"events": a.events, "threads": a.threads, "repeat": a.repeat, "floor": floor, "reference": reference,
           "engine": engine, "all_seconds": {phase: [r["seconds"] for r in out] for phase, out in runs.items()},
           "reference_ratio": reference["seconds"] / floor["seconds"], "rate_ratio": engine["rate_seconds"] / floor["seconds"],
           "ratio": engine["seconds"] / floor["seconds"], "events_per_second": a.events / engine["seconds"]}
    if not a.skip_python:
        py = run_phase(["--phase", "python", *common, "--sample", str(a.sample)])
        res["python"] = py
        res["python_speedup"] = (py["seconds"] / py["events"]) / (engine["seconds"] / a.events)
    if a.repeat > 1:
        print(f"fastest of {a.repeat} interleaved runs each; all runs (s): "
              + "; ".join(f"{k} {', '.join(f'{x:.2f}' for x in v)}" for k, v in res["all_seconds"].items()))
    print(f"floor  (GROUP BY sum)    : {floor['seconds']:8.2f} s   peak RSS {floor['peak_rss_mb']:8.0f} MB")
    print(f"reference (join + grain) : {reference['seconds']:8.2f} s   peak RSS {reference['peak_rss_mb']:8.0f} MB"
          f"   ({reference['groups']:,} groups; plan-in-force join and line-grain GROUP BY, no pricing)")
    print(f"engine (rate + write)    : {engine['seconds']:8.2f} s   peak RSS {engine['peak_rss_mb']:8.0f} MB"
          f"   (rate {engine['rate_seconds']:.2f} s, write {engine['write_seconds']:.2f} s)")
    print(f"ratio engine / floor     : {res['ratio']:8.2f} x   (rate alone {res['rate_ratio']:.2f} x;"
          f" reference / floor {res['reference_ratio']:.2f} x; engine / reference {engine['seconds'] / reference['seconds']:.2f} x)")
    print(f"events per second        : {res['events_per_second']:,.0f}")
    print(f"rated lines              : {engine['lines']:,}   rated events {engine['rated_events']:,}"
          f"   unrated {engine['unrated_events']:,} (share {float(engine['unrated_share']):.4%})")
    if "python" in res:
        py = res["python"]
        print(f"python row-at-a-time     : {py['seconds']:8.2f} s for {py['events']:,} events "
              f"({py['events'] / py['seconds']:,.0f} ev/s)  -> engine is {res['python_speedup']:,.0f}x faster per event")
        print(f"python vs engine totals  : {py['python_total']} vs {py['engine_total']}  match={py['totals_match']}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
