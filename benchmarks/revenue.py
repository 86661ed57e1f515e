"""Revenue benchmark: recompute the revenue tables and run their checks over the invoicing benchmark's ledger.

``python -m benchmarks.revenue --accounts 100000`` (also the last step of ``make bench``) takes the warehouse the
invoicing benchmark leaves in ``benchmarks/data/invoicing_<N>.duckdb`` (N accounts, February and March settled and
finalized; it runs that benchmark first when the file is missing), copies it, and times on the copy, in one process:

* **floor**: a hand-written single statement that writes a ratable monthly schedule of every ledger line with the
  domain's cumulative rounding (:data:`FLOOR`) — the simplest recognition a user could write by hand;
* **refresh**: ``pipelines.revenue.close.refresh`` — obligations, allocations, schedule, journal, contract balances,
  roll-forward, waterfall, trial balance, written (what the ``revenue`` job does);
* **checks**: the 11 revenue checks (``pipelines.revenue.checks.revenue_problems``); every one must pass.

It prints wall and CPU seconds, rows, the ratio of refresh to the floor and the peak RSS. The DuckDB memory limit
is the pipeline's (4 GB).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from benchmarks.invoicing import DATA, MEMORY_LIMIT, benchmark_main, peak_rss_mb


FLOOR = """
    CREATE OR REPLACE TEMP TABLE floor_schedule AS
    SELECT line_id, month,
           recognized_through(net_amount, CAST(CAST(month + INTERVAL 1 MONTH AS DATE) - service_start AS BIGINT), days, currency)
             AS cumulative
    FROM (SELECT line_id, net_amount, currency, service_start, CAST(service_end - service_start AS BIGINT) AS days,
                 unnest(generate_series(CAST(date_trunc('month', service_start) AS DATE),
                                        CAST(date_trunc('month', service_end - 1) AS DATE), INTERVAL 1 MONTH)) AS month
          FROM ledger.document_lines WHERE service_end > service_start)"""
"""The floor: a hand-written single statement that recognizes every ledger line ratably by day, month by month, with
the domain's cumulative rounding, and writes the rows — what a user would write for the simplest schedule."""


def timed(work) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result) of ``work()``."""
    t, c = time.perf_counter(), time.process_time()
    out = work()
    return time.perf_counter() - t, time.process_time() - c, out


def run(n: int, threads: int) -> dict:
    from domain import install_macros
    from pipelines.revenue.checks import revenue_problems
    from pipelines.revenue.close import refresh
    from warehouse.migrations import migrate

    source, db = DATA / f"invoicing_{n}.duckdb", DATA / f"revenue_{n}.duckdb"
    if not source.exists():
        subprocess.run([sys.executable, "-m", "benchmarks.invoicing", "--accounts", str(n), "--threads", str(threads)],
                       check=True, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
    shutil.copyfile(source, db)
    con = install_macros(duckdb.connect(str(db), config={"threads": threads, "memory_limit": MEMORY_LIMIT,
                                                        "preserve_insertion_order": False}))
    migrate(con)
    floor = timed(lambda: con.execute(FLOOR).fetchone())
    refreshed = timed(lambda: refresh(con, "benchmark"))
    checked = timed(lambda: revenue_problems(con))
    failing = {name: problems[:3] for name, problems in checked[2].items() if problems}
    rows = dict(con.execute("""
        SELECT 'ledger lines', count(*) FROM ledger.document_lines UNION ALL
        SELECT 'obligations', count(*) FROM revenue.performance_obligations UNION ALL
        SELECT 'schedule rows', count(*) FROM revenue.schedule UNION ALL
        SELECT 'journal lines', count(*) FROM revenue.open_journal_lines""").fetchall())
    con.close()
    db.unlink()
    return {"accounts": n, "threads": threads, "floor": floor[:2], "refresh": refreshed[:2], "checks": checked[:2],
            "failing": failing, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def report(res: dict) -> None:
    (fw, fc), (rw, rc), (cw, cc) = res["floor"], res["refresh"], res["checks"]
    print(f"revenue: {res['accounts']:,} accounts, threads {res['threads']}; " + ", ".join(f"{v:,} {k}" for k, v in res["rows"].items()))
    print(f"  floor (one ratable statement, written)    {fw:6.2f} s ({fc:.1f} CPU-s)")
    print(f"  refresh (every revenue table)            {rw:6.2f} s ({rc:.1f} CPU-s)  = {rw / fw:.1f}x the floor")
    print(f"  checks (11)                              {cw:6.2f} s ({cc:.1f} CPU-s)  failing: {res['failing'] or 'none'}")
    print(f"  peak RSS {res['peak_rss_mb']:,.0f} MB")
    if res["failing"]:
        raise SystemExit("revenue checks failed")


def main(argv=None) -> None:
    benchmark_main("benchmarks.revenue", __doc__, run, report, 100_000, argv)


if __name__ == "__main__":
    main()
