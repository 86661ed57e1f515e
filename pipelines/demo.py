"""`make demo`: generate the sample landing zone, run the bill cycle through Dagster, print a summary.

Usage: ``python -m pipelines.demo [--customers 2000] [--months 3] [--start 2025-01] [--seed 42]``.
Paths come from ``TALLY_LANDING_DIR`` and ``TALLY_WAREHOUSE_PATH`` (see README); the Dagster
instance from ``DAGSTER_HOME``, so the runs show in ``make ui`` afterwards.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import dagster as dg

from domain.money import minor_unit
from domain.periods import add_months
from pipelines.recover import recover_dead_runs, worker_tags
from warehouse.connection import connect, default_landing_dir, default_warehouse_path, snapshot_path

SUMMARY_SQL = """
WITH months AS (SELECT unnest($months::DATE[]) AS billing_month),
inv AS (
    SELECT billing_month, currency, count(*) AS invoices, sum(net_total) AS billed, sum(tax_total) AS tax, sum(total) AS total
    FROM billing.invoices GROUP BY ALL
),
rev AS (SELECT billing_month, currency, recognized_in_month, deferred_revenue FROM revenue.deferred_balances),
cur AS (SELECT billing_month, currency FROM inv UNION SELECT billing_month, currency FROM rev)
SELECT strftime(m.billing_month, '%Y-%m') AS month, c.currency,
       coalesce(i.invoices, 0) AS invoices, coalesce(i.billed, 0) AS billed_net, coalesce(i.tax, 0) AS tax,
       coalesce(i.total, 0) AS billed_total, coalesce(r.recognized_in_month, 0) AS revenue_recognized,
       coalesce(r.deferred_revenue, 0) AS deferred_at_month_end
FROM months m JOIN cur c USING (billing_month)
LEFT JOIN inv i USING (billing_month, currency) LEFT JOIN rev r USING (billing_month, currency)
ORDER BY 1, 2
"""

# Quarantined records and unrated events per month: a landed file belongs to the month in its name.
EXCEPTIONS_SQL = """
WITH months AS (SELECT unnest($months::DATE[]) AS billing_month),
q AS (
    SELECT CAST(strptime(regexp_extract(file, '(\\d{4}-\\d{2})-\\d{2}', 1), '%Y-%m') AS DATE) AS billing_month, count(*) AS n
    FROM audit.quarantine GROUP BY 1
),
u AS (SELECT billing_month, count(*) AS n FROM billing.unrated_usage GROUP BY 1)
SELECT strftime(m.billing_month, '%Y-%m'), coalesce(q.n, 0), coalesce(u.n, 0)
FROM months m LEFT JOIN q USING (billing_month) LEFT JOIN u USING (billing_month) ORDER BY 1
"""


def _run(job_name: str, instance: dg.DagsterInstance, tags: dict[str, str] | None = None) -> None:
    from pipelines.definitions import defs

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = defs.resolve_job_def(job_name).execute_in_process(  # this process is the run's worker (pipelines/recover.py)
        instance=instance, raise_on_error=False, run_config=quiet, tags={**worker_tags(), **(tags or {})}
    )
    if not result.success:
        failures = [e.message for e in result.all_events if e.is_failure]
        sys.exit(f"run of {job_name} failed: {failures[:3]}")
    failed_checks = [
        e.asset_check_evaluation_data for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    ]
    if failed_checks:
        sys.exit(f"run of {job_name}: asset checks failed: {[c.check_name for c in failed_checks]}")


def print_summary(warehouse: Path, months: list[date]) -> None:
    with connect(warehouse, read_only=True) as con:
        rows = con.execute(SUMMARY_SQL, {"months": months}).fetchall()
        exceptions = con.execute(EXCEPTIONS_SQL, {"months": months}).fetchall()
        files = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'LOADED'), count(*) FILTER (WHERE status = 'DUPLICATE'), "
            "coalesce(sum(records_read), 0), coalesce(sum(records_quarantined), 0) FROM audit.ingested_files"
        ).fetchone()
    head = f"{'month':<8} {'cur':<4} {'invoices':>8} {'billed (net)':>14} {'tax':>12} {'billed total':>14} {'revenue recog.':>15} {'deferred at end':>16}"
    print("\nBill cycle summary")
    print(head)
    print("-" * len(head))
    for month, cur, n, *amounts in rows:
        net, tax, total, rec, deferred = (f"{a:,.{minor_unit(cur)}f}" for a in amounts)  # exact Decimal formatting
        print(f"{month:<8} {cur:<4} {n:>8} {net:>14} {tax:>12} {total:>14} {rec:>15} {deferred:>16}")
    print(f"\n{'month':<8} {'records quarantined':>20} {'usage events unrated':>21}")
    for month, q, u in exceptions:
        print(f"{month:<8} {q:>20} {u:>21}")
    print(f"\nFiles seen {files[0]} (loaded {files[1]}, duplicate deliveries skipped {files[2]}); "
          f"records read {files[3]}, quarantined {files[4]} (audit.quarantine).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--start", default="2025-01")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    landing, warehouse = default_landing_dir(), default_warehouse_path()
    first = date.fromisoformat(args.start + "-01")
    months = [add_months(first, i) for i in range(args.months)]

    if not landing.exists() or not any(landing.iterdir()):
        from sources.generator import generate_landing_zone

        print(f"Generating the sample landing zone in {landing} ({args.customers} customers, {args.months} months, seed {args.seed})")
        generate_landing_zone(landing, customers=args.customers, start_month=args.start, months=args.months, seed=args.seed)
    else:
        print(f"Using the landing zone in {landing}")

    instance = dg.DagsterInstance.get()
    for recovered in recover_dead_runs(instance):  # a killed earlier run never blocks this one
        print(recovered)
    print("Running the ingest job (landing zone → raw → core state → services)")
    _run("ingest", instance)
    print(f"Running the bill_cycle job for {months[0]:%Y-%m} … {months[-1]:%Y-%m} in one run")
    _run("bill_cycle", instance, tags={
        "dagster/asset_partition_range_start": months[0].isoformat(),
        "dagster/asset_partition_range_end": months[-1].isoformat(),
    })
    print_summary(warehouse, months)
    print(f"""
Open the UI:            make ui   (Dagster webserver + daemon on http://127.0.0.1:3000, same warehouse)
Query the warehouse:    .venv/bin/python -c "import duckdb; print(duckdb.connect('{snapshot_path(warehouse)}', read_only=True).sql('FROM billing.invoices LIMIT 5'))"
                        (the read-only snapshot; the tables are described in docs/warehouse.md)""")


if __name__ == "__main__":
    main()
