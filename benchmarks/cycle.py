"""The whole bill cycle at scale: ``python -m benchmarks.cycle --events 100000000`` (``make bench-cycle SCALE=…``).

1. Generates, or reuses from ``benchmarks/data/cycle/``, a landing zone with the sample generator
   (sources/generator.py): ``--customers`` customers and accounts (default: one per 100 events) with their orders,
   plan changes, bundles, coupons and payments, and about ``--events`` usage events per month, for ``--months``
   consecutive months (default 2). 90 % of the customers are the base at go-live, the rest join over the months, so
   every month bills about the same base. Generating is not measured.
2. For each month in turn, lands its batch, then runs the real bill cycle through Dagster, stage by stage, each
   stage a run of the pipeline's own assets and checks (pipelines/definitions.py), in a fresh process, against one
   warehouse and one Dagster instance: ingest (files to raw change logs), state, rating, settlement, finalize (the
   ledger and the customers' documents), payments, revenue (and journals), close (the month's posting), marts,
   publish (the analysts' snapshot).
3. Prints per stage wall time, CPU time (user + system, the process and its children) and peak memory (the
   process's maximum resident set), the month's total, events per second and invoices per second, and the floor:
   DuckDB's bare ``SELECT subscription_id, metric, sum(quantity) … GROUP BY`` over the month's landed usage files,
   measured in the same run. The whole cycle over the floor is the headline ratio.
4. ``--events 1000000,10000000,100000000`` runs it at each size (customers scaled alike) and prints the scale curve;
   ``--verify`` also runs the regular path (the jobs finance runs: ingest, bill_cycle, finalize, apply_payments,
   revenue, close_month) on the same landing zone into a second warehouse and checks that the totals are equal.

Stages run in fresh processes so each one's CPU and peak memory are its own (``os.wait4``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("TALLY_BENCH_CACHE", ROOT / "benchmarks" / "data" / "cycle"))
"""Where landing zones are generated once and runs are made (``$TALLY_BENCH_CACHE``)."""
START_MONTH = "2025-01"
SEED = 42
ESTABLISHED = 0.9  # share of the customers that are the base at go-live (they join on the first day)
EVENTS_PER_CUSTOMER = 100  # per month: 100M events <-> 1M customers


# ------------------------------------------------------------------ the landing zone


@dataclass(frozen=True)
class Sample:
    customers: int
    events_per_month: int
    months: int

    @property
    def folder(self) -> Path:
        return CACHE / f"{self.customers}c-{self.events_per_month}e-{self.months}m-seed{SEED}"

    @property
    def deliveries(self) -> Path:
        return self.folder / "deliveries"

    def stamp(self) -> dict:
        code = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in ("sources/generator.py", "sources/entities.py")))
        return {"customers": self.customers, "events_per_month": self.events_per_month, "months": self.months,
                "start": START_MONTH, "seed": SEED, "established": ESTABLISHED, "generator_sha256": code.hexdigest()}


def ensure_sample(sample: Sample) -> tuple[Path, float | None]:
    """The deliveries of ``sample`` (generated unless the cache holds them, made by this generator); seconds spent
    generating (None when reused)."""
    stamp_file = sample.folder / "stamp.json"
    if stamp_file.exists() and json.loads(stamp_file.read_text()) == sample.stamp():
        return sample.deliveries, None
    from sources.generator import generate_landing_zone

    shutil.rmtree(sample.folder, ignore_errors=True)
    sample.folder.mkdir(parents=True)
    print(f"generating {sample.customers:,} customers, about {sample.events_per_month:,} events a month, "
          f"{sample.months} months in {sample.deliveries} …", flush=True)
    started = time.perf_counter()
    summary = generate_landing_zone(sample.deliveries, customers=sample.customers, start_month=START_MONTH,
                                    months=sample.months, seed=SEED, usage_events=sample.events_per_month * sample.months,
                                    established=ESTABLISHED)
    seconds = time.perf_counter() - started
    (sample.folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    stamp_file.write_text(json.dumps(sample.stamp(), indent=1) + "\n")
    return sample.deliveries, seconds


def month_batches(deliveries: Path) -> dict[str, list[Path]]:
    """The delivered files by the month of their batch date, as the demo lands them (pipelines/demo.py)."""
    from pipelines.demo import batches_by_month

    return {f"{m:%Y-%m}": files for m, files in batches_by_month(deliveries).items()}


def land(files: list[Path], deliveries: Path, landing: Path) -> None:
    """Land ``files`` as hard links (same modification times, the delivery order; no copy of gigabytes), or copies
    where the landing zone is on another file system."""
    for path in files:
        target = landing / path.relative_to(deliveries)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


# ------------------------------------------------------------------ the stages


@dataclass(frozen=True)
class Stage:
    name: str
    partitioned: bool  # runs for the billing month's partition
    what: str


STAGES = (
    Stage("ingest", False, "landed files to raw change logs, quarantine and the file ledger"),
    Stage("state", False, "current state, SCD2 history, usage events, subscriptions"),
    Stage("rating", True, "usage rated into charges (bill_cycle_inputs gate, rated and unrated usage)"),
    Stage("settlement", True, "draft invoices: recurring fees, usage, coupons, taxes, adjustments"),
    Stage("finalize", True, "drafts to numbered ledger invoices and credit notes"),
    Stage("payments", False, "payments applied; status, balances and aging"),
    Stage("revenue", False, "obligations, allocations, schedules, journals, reconciliations"),
    Stage("close", False, "the accounting month's revenue and journal posted, revenue recomputed"),
    Stage("marts", False, "the analysts' marts"),
    Stage("publish", False, "the analysts' read-only snapshot"),
)
DOCUMENTS = Stage("documents", True, "the customers' HTML invoices and credit notes, one file each (--documents)")
"""Not in the cycle's total (the issue's cycle ends with publishing), but in the finalize job: run with --documents."""
STAGE = {s.name: s for s in (*STAGES, DOCUMENTS)}


def stage_selection(name: str):
    """The assets (and so their checks) a stage materializes: the pipeline's groups, as the jobs select them."""
    import dagster as dg

    from pipelines.assets import documents, ledger, revenue

    return {
        "ingest": dg.AssetSelection.groups("ingest"),
        "state": dg.AssetSelection.groups("state"),
        "rating": dg.AssetSelection.groups("rating"),
        "settlement": dg.AssetSelection.groups("invoicing"),
        "finalize": dg.AssetSelection.groups("ledger") - dg.AssetSelection.assets(ledger.VOIDS, documents.DOCUMENTS),
        "documents": dg.AssetSelection.assets(documents.DOCUMENTS),
        "payments": dg.AssetSelection.groups("receivables"),
        "revenue": dg.AssetSelection.assets(revenue.revenue),
        "close": dg.AssetSelection.groups("revenue"),
        "marts": dg.AssetSelection.groups("marts"),
        "publish": dg.AssetSelection.groups("publish"),
    }[name]


def run_stage(name: str, month: str) -> dict:
    """Materialize stage ``name`` for billing month ``month`` in this process (as the demo runs its jobs), with the
    instance and warehouse of the environment; what it made."""
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.recover import worker_tags

    stage = STAGE[name]
    job = dg.define_asset_job(f"bench_{name}", selection=stage_selection(name))
    resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(job.name)
    ops = {"revenue_close": {"config": {"month": month}}} if name == "close" else {}
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}, "ops": ops}
    result = resolved.execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False, run_config=quiet,
                                         tags=worker_tags(), partition_key=month if stage.partitioned else None)
    failed_checks = [f"{e.asset_check_evaluation_data.asset_key.to_user_string()} {e.asset_check_evaluation_data.check_name}"
                     for e in result.all_events
                     if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed]
    if not result.success:
        errors = [e.step_failure_data.error.message.strip()[:2000] for e in result.all_events if e.is_step_failure]
        raise SystemExit(f"stage {name} for {month} failed (run {result.run_id}): {'; '.join(errors)}")
    return {"run_id": result.run_id, "failed_checks": failed_checks}


def measure(cmd: list[str], env: dict, profile: Path | None = None) -> dict:
    """Run ``cmd``; its wall seconds, CPU seconds (user + system, children included) and peak RSS (MB). With
    ``profile``, py-spy samples it from outside (20 a second) into that file."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    spy = None
    if profile:
        spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(proc.pid), "-r", "20",
                                "-f", "raw", "-o", str(profile)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if spy:
        spy.wait()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:])} failed (exit {proc.returncode})")
    report = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    return {**report, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}


# ------------------------------------------------------------------ the floor and the month's figures


def usage_files(files: list[Path]) -> tuple[list[str], list[str]]:
    parquet = sorted(str(p) for p in files if "/usage/" in p.as_posix() and p.name.endswith(".parquet"))
    csv = sorted(str(p) for p in files if "/usage/" in p.as_posix() and p.name.endswith(".csv"))
    return parquet, csv


def floor(files: list[Path], threads: int) -> dict:
    """DuckDB's bare aggregation of the month's landed usage files: the least any rater must spend reading them."""
    import duckdb

    parquet, csv = usage_files(files)
    con = duckdb.connect(config={"threads": threads})
    parts = []
    if parquet:
        parts.append(f"SELECT subscription_id, metric, quantity FROM read_parquet({parquet})")
    if csv:
        parts.append(f"SELECT subscription_id, metric, TRY_CAST(quantity AS DECIMAL(38, 6)) AS quantity "
                     f"FROM read_csv({csv}, all_varchar = true)")
    started, cpu = time.perf_counter(), time.process_time()
    groups = con.execute(f"SELECT count(*) FROM (SELECT subscription_id, metric, sum(quantity) FROM "
                         f"({' UNION ALL '.join(parts)}) GROUP BY ALL)").fetchone()[0]
    return {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu, "groups": groups}


MONTH_FIGURES_SQL = """
SELECT
    (SELECT count(*) FROM core.usage_events
      WHERE event_time >= CAST($month AS DATE) AND event_time < CAST($month AS DATE) + INTERVAL 1 MONTH) AS events,
    (SELECT count(*) FROM ledger.documents WHERE billing_month = CAST($month AS DATE)) AS documents,
    (SELECT count(*) FROM ledger.documents WHERE billing_month = CAST($month AS DATE) AND document_type = 'INVOICE') AS invoices,
    (SELECT count(*) FROM ledger.document_lines l JOIN ledger.documents d USING (document_id)
      WHERE d.billing_month = CAST($month AS DATE)) AS lines
"""


def month_figures(warehouse: Path, month: str) -> dict:
    from warehouse.connection import connect

    with connect(warehouse, read_only=True) as con:
        events, documents, invoices, lines = con.execute(MONTH_FIGURES_SQL, {"month": f"{month}-01"}).fetchone()
    return {"events": events, "documents": documents, "invoices": invoices, "lines": lines}


# ------------------------------------------------------------------ the cycle


def environment(run_dir: Path) -> dict:
    home = run_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return {**os.environ, "DAGSTER_HOME": str(home), "TALLY_WAREHOUSE_PATH": str(run_dir / "warehouse.duckdb"),
            "TALLY_LANDING_DIR": str(run_dir / "landing"), "TALLY_FIRST_BILLING_MONTH": START_MONTH,
            "PYTHONPATH": str(ROOT)}


OUR_CODE = ("pipelines/", "warehouse/", "sources/", "domain/")


def profile_top(raw: Path, n: int = 8) -> list[tuple[str, float]]:
    """The ``n`` functions of our code with the largest share of ``raw``'s samples (py-spy's collapsed stacks),
    inclusive: where a stage's time goes, by our step that spent it."""
    from collections import Counter

    shares, total = Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        ours = {f for f in stack.split(";") if any(part in f for part in OUR_CODE)}
        for frame in ours:
            name, _, where = frame.partition(" (")
            shares[f"{name} ({where.split(':')[0].rsplit('/', 2)[-2]}/{where.split(':')[0].rsplit('/', 1)[-1]})"] += int(count)
    return [(name, count / max(total, 1)) for name, count in shares.most_common(n)]


def run_cycle(sample: Sample, run_dir: Path, threads: int, with_documents: bool = False,
              profile: Path | None = None) -> list[dict]:
    """Every month of ``sample``, landed then billed stage by stage in ``run_dir`` (made afresh); one report a month."""
    shutil.rmtree(run_dir, ignore_errors=True)
    env = environment(run_dir)
    batches = month_batches(sample.deliveries)
    months = [m for m in sorted(batches)][: sample.months]
    reports = []
    for month in months:
        land(batches[month], sample.deliveries, run_dir / "landing")
        report = {"month": month, "floor": floor(batches[month], threads), "stages": {}}
        for stage in (*STAGES, DOCUMENTS) if with_documents else STAGES:
            cmd = [sys.executable, "-m", "benchmarks.cycle", "--stage", stage.name, "--month", month]
            raw = profile / f"{month}-{stage.name}.txt" if profile else None
            if raw:
                profile.mkdir(parents=True, exist_ok=True)
            figures = measure(cmd, env, raw)
            if raw and raw.exists():
                figures["profile"] = profile_top(raw)
            report["stages"][stage.name] = figures
            print(f"  {month} {stage.name:<11} {figures['wall_s']:8.1f} s wall {figures['cpu_s']:8.1f} s CPU "
                  f"{figures['peak_mb']:8.0f} MB" + (f"  failed checks: {figures['failed_checks']}" if figures.get("failed_checks") else ""),
                  flush=True)
            for name, share in figures.get("profile", []):
                print(f"      {share:6.1%}  {name}")
        report.update(month_figures(run_dir / "warehouse.duckdb", month))
        reports.append(report)
    return reports


TOTALS_SQL = {
    "rated usage": "SELECT billing_month, currency, count(*), sum(quantity), sum(amount) FROM billing.rated_usage GROUP BY ALL",
    "unrated usage": "SELECT billing_month, reason, count(*) FROM billing.unrated_usage GROUP BY ALL",
    "issued documents": "SELECT billing_month, document_type, currency, count(*), min(document_number), max(document_number), "
                        "sum(line_count), sum(net_total), sum(tax_total), sum(total) FROM ledger.documents GROUP BY ALL",
    "issued lines": "SELECT d.billing_month, l.currency, count(*), sum(l.total_amount) FROM ledger.document_lines l "
                    "JOIN ledger.documents d USING (document_id) GROUP BY ALL",
    "payments applied": "SELECT entry_type, currency, count(*), sum(amount) FROM ledger.payment_applications GROUP BY ALL",
    "balances": "SELECT currency, count(*), sum(invoiced), sum(credited), sum(paid_net), sum(open_ar), sum(account_credit) "
                "FROM billing.account_balances GROUP BY ALL",
    "revenue recognized": "SELECT accounting_month, currency, obligation_kind, count(*), sum(amount) FROM revenue.recognized GROUP BY ALL",
    "journals": "SELECT accounting_month, currency, account, count(*), sum(debit), sum(credit) FROM revenue.journal_lines GROUP BY ALL",
    "closed months": "SELECT accounting_month, recognized_rows, journal_lines FROM revenue.closed_months",
}
"""What the benchmark's stage-by-stage cycle and the regular path must agree on, per table: counts and sums."""

REGULAR_JOBS = (("ingest", False), ("bill_cycle", True), ("finalize", True), ("apply_payments", False), ("revenue", False),
                ("close_month", False))


def run_regular(month: str) -> dict:
    """The jobs finance runs for ``month``, as the demo runs them (pipelines/demo.py), in this process."""
    from pipelines.demo import _run
    from pipelines.partitions import month_of_key
    import dagster as dg

    instance = dg.DagsterInstance.get()
    for job, partitioned in REGULAR_JOBS:
        ops = {"revenue_close": {"config": {"month": month}}} if job == "close_month" else None
        _run(job, instance, month_of_key(month) if partitioned else None, ops)
    return {}


def totals(warehouse: Path) -> dict[str, list[tuple]]:
    from warehouse.connection import connect

    with connect(warehouse, read_only=True) as con:
        return {name: sorted(con.execute(sql).fetchall(), key=repr) for name, sql in TOTALS_SQL.items()}


def verify(sample: Sample, run_dir: Path) -> list[str]:
    """Run the regular path over ``sample`` into a second warehouse; the totals that differ from the benchmark's."""
    regular = run_dir.with_name("regular")
    shutil.rmtree(regular, ignore_errors=True)
    env = environment(regular)
    batches = month_batches(sample.deliveries)
    for month in sorted(batches)[: sample.months]:
        land(batches[month], sample.deliveries, regular / "landing")
        measure([sys.executable, "-m", "benchmarks.cycle", "--regular", "--month", month], env)
    ours, theirs = totals(run_dir / "warehouse.duckdb"), totals(regular / "warehouse.duckdb")
    return [f"{name}: benchmark {ours[name]} != regular path {theirs[name]}" for name in TOTALS_SQL if ours[name] != theirs[name]]


def summarize(sample: Sample, reports: list[dict]) -> str:
    lines = [f"## {sample.customers:,} customers, about {sample.events_per_month:,} events a month", ""]
    head = "| stage | " + " | ".join(f"{r['month']} wall s | CPU s | peak MB" for r in reports) + " |"
    lines += [head, "|---|" + "---:|---:|---:|" * len(reports)]
    for stage in STAGES:
        cells = " | ".join(f"{r['stages'][stage.name]['wall_s']:.1f} | {r['stages'][stage.name]['cpu_s']:.1f} | "
                           f"{r['stages'][stage.name]['peak_mb']:,.0f}" for r in reports)
        lines.append(f"| {stage.name} | {cells} |")
    totals = []
    for r in reports:
        cycle = [r["stages"][s.name] for s in STAGES]
        wall, cpu, peak = sum(s["wall_s"] for s in cycle), sum(s["cpu_s"] for s in cycle), max(s["peak_mb"] for s in cycle)
        r["total"] = {"wall_s": wall, "cpu_s": cpu, "peak_mb": peak}
        totals.append(f"**{wall:.1f}** | {cpu:.1f} | {peak:,.0f}")
    lines.append("| **whole cycle** | " + " | ".join(totals) + " |")
    legend = [f"- {s.name}: {s.what}" for s in STAGES]
    if all(DOCUMENTS.name in r["stages"] for r in reports):
        lines.append(f"| documents (not in the total) | " + " | ".join(
            f"{r['stages']['documents']['wall_s']:.1f} | {r['stages']['documents']['cpu_s']:.1f} | "
            f"{r['stages']['documents']['peak_mb']:,.0f}" for r in reports) + " |")
    lines += ["", "Stages:", *legend, ""]
    for r in reports:
        wall, floor_s = r["total"]["wall_s"], r["floor"]["wall_s"]
        lines.append(f"- {r['month']}: {r['events']:,} events rated, {r['invoices']:,} invoices "
                     f"({r['documents']:,} documents, {r['lines']:,} lines); floor {floor_s:.2f} s; "
                     f"whole cycle **{wall / floor_s:.1f}× the floor**, {wall / 60:.1f} min; "
                     f"{r['events'] / wall:,.0f} events/s and {r['invoices'] / wall:,.0f} invoices/s over the whole cycle; "
                     f"rating {r['stages']['rating']['wall_s'] / floor_s:.1f}× the floor")
    if len(reports) > 1:
        a, b = reports[0]["total"]["wall_s"], reports[1]["total"]["wall_s"]
        lines.append(f"- second month / first month: **{b / a:.2f}×** wall")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", default="100000000",
                    help="usage events per month (about); several, comma-separated, run the scale curve")
    ap.add_argument("--customers", type=int, default=None, help=f"default: events / {EVENTS_PER_CUSTOMER}")
    ap.add_argument("--months", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--documents", action="store_true",
                    help="also render the customers' HTML documents (a stage of its own, not in the cycle's total)")
    ap.add_argument("--profile", type=Path, default=None,
                    help="sample each stage with py-spy into this folder and print where its time goes (slower)")
    ap.add_argument("--verify", action="store_true",
                    help="also run the regular path (the finance jobs) and check that the totals are the same")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--stage", choices=[s.name for s in STAGES], help=argparse.SUPPRESS)
    ap.add_argument("--month", help=argparse.SUPPRESS)
    ap.add_argument("--regular", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.regular:
        print(json.dumps(run_regular(args.month)))
        return
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.month)))
        return
    sizes = [int(x.replace("_", "")) for x in args.events.split(",")]
    results = []
    for events in sizes:
        sample = Sample(args.customers or max(100, events // EVENTS_PER_CUSTOMER), events, args.months)
        folder, seconds = ensure_sample(sample)
        print(f"landing zone: {folder} ({'generated in %.0f s' % seconds if seconds is not None else 'cached'})", flush=True)
        if args.generate_only:
            continue
        reports = run_cycle(sample, sample.folder / "run", args.threads, args.documents, args.profile)
        print(summarize(sample, reports), flush=True)
        if args.verify:
            differences = verify(sample, sample.folder / "run")
            print("\n".join(differences) if differences else
                  f"verified: the totals of {', '.join(TOTALS_SQL)} equal the regular path's", flush=True)
            if differences:
                raise SystemExit(1)
        results.append({"customers": sample.customers, "events_per_month": events, "months": reports})
    if len(results) > 1:
        print("\n## Scale curve (the second month)\n\n| events | customers | whole cycle s | per M events s | vs previous size |\n|---:|---:|---:|---:|---:|")
        previous = None
        for r in results:
            last = r["months"][-1]
            wall = last["total"]["wall_s"]
            grow = f"{wall / previous[1]:.1f}× time for {last['events'] / previous[0]:.1f}× events" if previous else ""
            print(f"| {last['events']:,} | {r['customers']:,} | {wall:.1f} | {wall / max(last['events'], 1) * 1e6:.2f} | {grow} |")
            previous = (last["events"], wall)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
