"""Invoicing benchmark: ``python -m benchmarks.invoicing --accounts 1000000``.

Settles and finalizes one billing month for N accounts, as the bill cycle and the finalize job do,
and prints wall time, CPU time (the process's, all threads: steadier than wall on shared cores) and
peak memory per step. The warehouse is a real one (``warehouse.migrations``) in
``benchmarks/data/invoicing_<N>.duckdb``, filled set-based in SQL (deterministic: every value is a
function of the account number):

* N accounts (80 % USD, 20 % EUR; 20 % on bill cycle day 15, 5 % quarterly), each with a mobile
  subscription (1/3 on the dearer plan) and 60 % also with broadband in a 10 % bundle; 2 % of the
  mobile services upgrade on Feb 16, 1 % disconnect on Mar 20; 4 % of broadband services are
  annual (billed a year in advance);
* tax rates for every jurisdiction (US states, DE); one activation fee per new service;
* rated usage: two lines per mobile subscription and month (data, voice), amounts from the hash
  of the subscription, written into ``billing.rated_usage`` as the rating step would.

Two months run in order, as finance would: February (first invoices: a year of service history
billed in advance for nobody, so it is mostly new charges) then March (settled against
February's ledger). Each month: **settle** (the invoicing engine: drafts, review, exceptions,
written with the warehouse writer), then **finalize** (numbers, hashes, ledger appends).
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
from pathlib import Path

import duckdb

from warehouse.connection import duckdb_config

DATA = Path(__file__).resolve().parent / "data"
MEMORY_LIMIT = duckdb_config()["memory_limit"]  # as pipeline runs (TALLY_DUCKDB_MEMORY_LIMIT, default 4GB)
MONTHS = (dt.date(2025, 2, 1), dt.date(2025, 3, 1))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


LIVE = "DATE '2024-01-01', TIMESTAMP '9999-12-31', false, 'r', 0, 'bench'"
"""The history columns of a current row (valid_from, valid_to, is_deleted, _op, _position, _file)."""


def fill_state(con: duckdb.DuckDBPyConnection, n: int) -> None:
    """Customers, accounts, catalog, tax rates, services and orders for ``n`` accounts."""
    fill_accounts(con, n)
    fill_catalog(con)
    fill_services(con, n)


def fill_accounts(con: duckdb.DuckDBPyConnection, n: int) -> None:
    """``n`` customers and their billing accounts."""
    con.execute(f"""
    INSERT INTO core.customers BY NAME
    SELECT a AS customer_id, 'Customer ' || a AS name, CASE WHEN a % 5 = 0 THEN 'DE' ELSE 'US' END AS country,
           CASE WHEN a % 5 = 0 THEN NULL ELSE ['CA', 'NY', 'WA', 'TX'][1 + a % 4] END AS state,
           CASE WHEN a % 10 = 0 THEN 'BUSINESS' ELSE 'INDIVIDUAL' END AS customer_type, 'ACTIVE' AS status,
           DATE '2024-01-01' AS valid_from, TIMESTAMP '9999-12-31' AS valid_to, false AS is_deleted, 'r' AS _op,
           0 AS _position, 'bench' AS _file
    FROM range(1, {n + 1}) t(a);
    INSERT INTO core.billing_accounts BY NAME
    SELECT a AS account_id, a AS customer_id, 'A' || a AS account_number,
           CASE WHEN a % 20 = 3 THEN 'QUARTERLY' ELSE 'MONTHLY' END AS billing_cycle,
           CASE WHEN a % 5 = 1 THEN 15 ELSE 1 END AS bill_cycle_day, 'CARD' AS payment_method, 30 AS payment_terms_days,
           1000 AS credit_limit, CASE WHEN a % 5 = 0 THEN 'EUR' ELSE 'USD' END AS currency, 'ACTIVE' AS status,
           DATE '2024-01-01' AS valid_from, TIMESTAMP '9999-12-31' AS valid_to, false AS is_deleted, 'r' AS _op,
           0 AS _position, 'bench' AS _file
    FROM range(1, {n + 1}) t(a);
    """)


def fill_catalog(con: duckdb.DuckDBPyConnection) -> None:
    """Products, plans 1..4 in USD and 11..14 in EUR (mobile S, mobile L, broadband monthly, broadband annual),
    their fees, the bundle and its members, tax rates."""
    live = LIVE
    con.execute(f"""
    INSERT INTO core.products BY NAME
    SELECT * FROM (VALUES (1, 'MOB', 'Mobile', 'MOBILE', 'SUBSCRIPTION', 20.00, 'USD', 'ACTIVE'),
                          (2, 'BB', 'Broadband', 'BROADBAND', 'SUBSCRIPTION', 40.00, 'USD', 'ACTIVE'),
                          (3, 'ACT', 'Activation fee', 'FEE', 'ONE_TIME', 25.00, 'USD', 'ACTIVE'))
           v(product_id, sku, name, category, product_type, base_price, currency, status),
         (SELECT {live}) l(valid_from, valid_to, is_deleted, _op, _position, _file);
    INSERT INTO core.price_plans BY NAME
    SELECT plan_id, product_id, name, currency, 'ACTIVE' AS status, l.*
    FROM (VALUES (1, 1, 'Mobile S'), (2, 1, 'Mobile L'), (3, 2, 'Broadband'), (4, 2, 'Broadband yearly')) p(id, product_id, name),
         (VALUES (0, 'USD'), (10, 'EUR')) c(off, currency),
         (SELECT {live}) l(valid_from, valid_to, is_deleted, _op, _position, _file),
         LATERAL (SELECT p.id + c.off AS plan_id);
    INSERT INTO core.plan_charges BY NAME
    SELECT plan_id * 10 AS price_id, plan_id, 'BASE_FEE' AS charge_code, 'RECURRING' AS charge_type, 'FLAT' AS charge_model,
           'IN_ADVANCE' AS billing_timing, true AS prorate,
           CAST([19.99, 44.99, 39.99, 399.00][1 + (plan_id % 10) - 1] AS DECIMAL(38,10)) AS unit_price,
           TIMESTAMP '2000-01-01' AS effective_from, CASE WHEN plan_id % 10 = 4 THEN 'ANNUAL' ELSE 'MONTHLY' END AS billing_interval,
           l.*
    FROM (SELECT plan_id FROM core.price_plans), (SELECT {live}) l(valid_from, valid_to, is_deleted, _op, _position, _file);
    INSERT INTO core.bundles BY NAME SELECT 1 AS bundle_id, 'Home + Mobile' AS name, 0.10 AS discount_pct, 'ACTIVE' AS status, l.*
    FROM (SELECT {live}) l(valid_from, valid_to, is_deleted, _op, _position, _file);
    INSERT INTO core.bundles_history BY NAME SELECT * FROM core.bundles;
    INSERT INTO core.bundle_members BY NAME SELECT m AS bundle_member_id, 1 AS bundle_id, m AS product_id, l.*
    FROM range(1, 3) t(m), (SELECT {live}) l(valid_from, valid_to, is_deleted, _op, _position, _file);
    INSERT INTO core.tax_rates BY NAME
    SELECT row_number() OVER () AS tax_rate_id, country, state, tax_name, rate, DATE '2000-01-01' AS effective_from, l.*
    FROM (VALUES ('US', 'CA', 'CA sales tax', 0.0725), ('US', 'NY', 'NY sales tax', 0.04), ('US', 'WA', 'WA sales tax', 0.068),
                 ('US', 'TX', 'TX sales tax', 0.0625), ('DE', NULL, 'MwSt', 0.19)) v(country, state, tax_name, rate),
         (SELECT {live}) l(valid_from, valid_to, is_deleted, _op, _position, _file);
    """)


def fill_services(con: duckdb.DuckDBPyConnection, n: int) -> None:
    """Subscription 2a-1: mobile; 2a: broadband for 60 % of accounts. Activations a year ago, except 1 % new in
    February (with an activation fee order); upgrades on Feb 16, disconnects on Mar 20."""
    live = LIVE
    con.execute(f"""
    CREATE TEMP TABLE bench_services AS
    SELECT s, (s + 1) // 2 AS account_id, s % 2 = 0 AS broadband,
           CASE WHEN ((s + 1) // 2) % 5 = 0 THEN 10 ELSE 0 END AS plan_offset,
           CASE WHEN s % 100 = 7 THEN DATE '2025-02-10' ELSE DATE '2024-01-01' END AS start_date
    FROM range(1, {2 * n + 1}) t(s)
    WHERE s % 2 = 1 OR ((s + 1) // 2) % 5 < 3;
    INSERT INTO core.subscription_versions BY NAME
    SELECT s AS subscription_id, account_id, CASE WHEN broadband THEN 2 ELSE 1 END AS product_id,
           plan_offset + CASE WHEN broadband THEN (CASE WHEN s % 25 = 0 THEN 4 ELSE 3 END)
                              ELSE (CASE WHEN s % 3 = 0 THEN 2 ELSE 1 END) END AS plan_id,
           CASE WHEN ((s + 1) // 2) % 5 < 3 THEN 1 END AS bundle_id, 1 AS quantity, start_date AS valid_from,
           CASE WHEN NOT broadband AND s % 50 = 1 THEN DATE '2025-02-16'
                WHEN NOT broadband AND s % 100 = 3 THEN DATE '2025-03-20' ELSE DATE '9999-12-31' END AS valid_to,
           s AS order_id, 'ACTIVATE' AS change_kind
    FROM bench_services;
    INSERT INTO core.subscription_versions BY NAME
    SELECT s AS subscription_id, account_id, 1 AS product_id, plan_offset + 2 AS plan_id,
           CASE WHEN ((s + 1) // 2) % 5 < 3 THEN 1 END AS bundle_id, 1 AS quantity, DATE '2025-02-16' AS valid_from,
           DATE '9999-12-31' AS valid_to, s AS order_id, 'UPGRADE' AS change_kind
    FROM bench_services WHERE NOT broadband AND s % 50 = 1;
    INSERT INTO core.orders BY NAME
    SELECT s AS order_id, 'O' || s AS order_number, account_id, 'NEW_SERVICE' AS order_type, 'CONFIRMED' AS status,
           start_date AS effective_date, l.*
    FROM bench_services, (SELECT {live}) l(valid_from, valid_to, is_deleted, _op, _position, _file)
    WHERE start_date >= DATE '2025-01-01';
    INSERT INTO core.order_items BY NAME
    SELECT s AS order_item_id, s AS order_id, 3 AS product_id, s AS subscription_id, 1 AS quantity, 25.00 AS unit_price, l.*
    FROM bench_services, (SELECT {live}) l(valid_from, valid_to, is_deleted, _op, _position, _file)
    WHERE start_date >= DATE '2025-01-01';
    """)


def fill_rated_usage(con: duckdb.DuckDBPyConnection, month: dt.date) -> None:
    """Two rated lines (data, voice) per mobile subscription billed in ``month``, as rating writes them."""
    from domain.periods import month_literal

    m = month_literal(month)
    con.execute(f"""
    INSERT INTO billing.rated_usage BY NAME
    WITH periods AS (
        SELECT a.account_id, a.currency,
               CAST(period_end_in({m}, a.bill_cycle_day, a.billing_cycle) AS DATE) AS period_end,
               a.bill_cycle_day, a.billing_cycle
        FROM core.billing_accounts a
    )
    SELECT md5(strftime({m}, '%Y-%m') || '|' || v.subscription_id || '|' || metric) AS rated_line_id, {m} AS billing_month,
           p.account_id, v.subscription_id, v.plan_id, v.plan_id * 10 + k AS price_id, metric AS charge_code, metric,
           'SUM' AS aggregation, 'PER_UNIT' AS charge_model, 'IN_ARREARS' AS billing_timing, 'USAGE' AS line_type,
           p.currency, period_start_for(p.period_end, p.bill_cycle_day, p.billing_cycle) AS period_start, p.period_end,
           period_start_for(p.period_end, p.bill_cycle_day, p.billing_cycle) AS service_start, p.period_end AS service_end,
           CAST(period_start_for(p.period_end, p.bill_cycle_day, p.billing_cycle) AS TIMESTAMP) AS segment_start,
           CAST(p.period_end AS TIMESTAMP) AS segment_end, 1 AS proration_factor,
           q AS quantity, 0 AS included_quantity, q AS billable_quantity, 0.01 AS unit_price, 10 AS event_count,
           q * 0.01 AS amount_precise, round(q * 0.01, 2) AS amount
    FROM periods p
    JOIN (SELECT DISTINCT ON (subscription_id) * FROM core.subscription_versions WHERE product_id = 1
          ORDER BY subscription_id, valid_from DESC) v USING (account_id),
         (VALUES (1, 'data_mb'), (2, 'voice_min')) c(k, metric),
         LATERAL (SELECT CAST(hash(v.subscription_id, k) % 50000 AS DECIMAL(38,10)) / 10 AS q)
    WHERE p.period_end IS NOT NULL
    """)


def settle(con: duckdb.DuckDBPyConnection, month: dt.date) -> dict:
    """The bill run's invoicing step for ``month``: drafts, review and exceptions, written."""
    from pipelines.invoicing.run import bill_month

    return bill_month(con, month)


def run(n: int, threads: int) -> dict:
    from domain import install_macros
    from pipelines.ledger.finalize import finalize
    from warehouse.migrations import migrate

    db = DATA / f"invoicing_{n}.duckdb"
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    con = install_macros(duckdb.connect(str(db), config={"threads": threads, "memory_limit": MEMORY_LIMIT,
                                                        "preserve_insertion_order": False}))
    migrate(con)
    t0 = time.perf_counter()
    fill_state(con, n)
    for month in MONTHS:
        fill_rated_usage(con, month)
    out = {"accounts": n, "threads": threads, "setup_seconds": time.perf_counter() - t0, "months": []}
    for month in MONTHS:
        t0, c0 = time.perf_counter(), time.process_time()
        settle(con, month)
        t1, c1 = time.perf_counter(), time.process_time()
        finalize(con, month)
        t2, c2 = time.perf_counter(), time.process_time()
        lines, invoices, notes = con.execute(
            "SELECT (SELECT count(*) FROM ledger.document_lines WHERE billing_month = $1), "
            "count(*) FILTER (WHERE document_type = 'INVOICE'), count(*) FILTER (WHERE document_type = 'CREDIT_NOTE') "
            "FROM ledger.documents WHERE billing_month = $1", [month]).fetchone()
        totals = con.execute("SELECT currency, sum(total) FROM ledger.documents WHERE billing_month = ? GROUP BY 1 ORDER BY 1",
                             [month]).fetchall()
        out["months"].append({"month": month.isoformat(), "settle_seconds": t1 - t0, "finalize_seconds": t2 - t1,
                              "settle_cpu_seconds": c1 - c0, "finalize_cpu_seconds": c2 - c1,
                              "lines": lines, "invoices": invoices, "credit_notes": notes,
                              "totals": {c: str(t) for c, t in totals}})
    out["peak_rss_mb"] = peak_rss_mb()
    con.close()
    return out


def run_in_subprocess(module: str, n: int, threads: int) -> dict:
    """Benchmark ``module`` (its ``--raw`` run) in a fresh process (its peak RSS is its own): its JSON result."""
    res = subprocess.run([sys.executable, "-m", module, "--accounts", str(n), "--threads", str(threads),
                          "--raw"], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if res.returncode:
        sys.stderr.write(res.stderr)
        raise SystemExit(f"{module} failed")
    return json.loads(res.stdout.strip().splitlines()[-1])


def benchmark_main(module: str, doc: str, run, report, default_accounts: int, argv=None) -> None:
    """The command line of a benchmark: ``--accounts``, ``--threads``; ``run`` in a fresh process, then ``report``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=default_accounts)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    DATA.mkdir(exist_ok=True)
    if a.raw:
        print(json.dumps(run(a.accounts, a.threads), default=str))
        return
    report(run_in_subprocess(module, a.accounts, a.threads))


def report(res: dict) -> None:
    print(f"invoicing: {res['accounts']:,} accounts, threads {res['threads']}; setup (not timed) {res['setup_seconds']:.1f} s;"
          f" peak RSS {res['peak_rss_mb']:,.0f} MB")
    for m in res["months"]:
        total = m["settle_seconds"] + m["finalize_seconds"]
        cpu = m["settle_cpu_seconds"] + m["finalize_cpu_seconds"]
        print(f"  {m['month'][:7]}: settle {m['settle_seconds']:6.2f} s ({m['settle_cpu_seconds']:.1f} CPU-s)"
              f"  finalize {m['finalize_seconds']:6.2f} s ({m['finalize_cpu_seconds']:.1f} CPU-s)"
              f"  = {total:6.2f} s ({cpu:.1f} CPU-s)   {m['invoices']:,} invoices, {m['credit_notes']:,} credit notes,"
              f" {m['lines']:,} lines"
              f" ({res['accounts'] / total:,.0f} accounts/s)  totals {m['totals']}")


def main(argv=None) -> None:
    benchmark_main("benchmarks.invoicing", __doc__, run, report, 1_000_000, argv)


if __name__ == "__main__":
    main()
