"""`make demo`'s program, small: the sample month by month (land, ingest, bill, finalize, apply payments) through a
real Dagster instance; a second demo on the same landing zone and warehouse adds nothing."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.demo import batches_by_month, land
from warehouse.tables.ledger import TABLES as LEDGER_TABLES

MONTHS = ["2025-01", "2025-02", "2025-03"]
REPO = Path(__file__).resolve().parent.parent


def demo_env(tmp: Path) -> dict[str, str]:
    home = tmp / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")  # as make demo does
    env = {**os.environ, "TALLY_LANDING_DIR": str(tmp / "landing"), "TALLY_WAREHOUSE_PATH": str(tmp / "warehouse.duckdb"),
           "DAGSTER_HOME": str(home)}
    env.pop("TALLY_DOCUMENTS_DIR", None)  # documents go next to the warehouse
    return env


def run_demo(tmp: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "pipelines.demo", "--customers", "60", "--months", str(len(MONTHS))],
                          env=demo_env(tmp), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def summary(out: str, tmp: Path) -> str:
    """The summary, with the demo's folder (in the documents' paths) as <tmp>."""
    return out[out.index("Bill cycle summary"):out.index("Open the UI")].replace(str(tmp), "<tmp>")


def ledger_rows(warehouse: Path) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {t.name: con.execute(f"SELECT count(*) FROM {t.schema}.{t.name}").fetchone()[0] for t in LEDGER_TABLES}


def test_a_batch_is_the_month_of_its_date_and_lands_once_with_its_modification_time(tmp_path):
    deliveries, landing = tmp_path / "deliveries", tmp_path / "landing"
    names = {  # the snapshot (first day), the month's batch (last day), its redelivered copy, a numbered usage chunk
        "catalog/products/products-2025-01-01.jsonl": 100, "crm/customers/customers-2025-01-31.jsonl": 200,
        "orders/orders/orders-2025-01-31-redelivery.jsonl": 260, "usage/usage_records/usage_records-2025-02-28-001.parquet": 300,
    }
    for name, seconds in names.items():
        (deliveries / name).parent.mkdir(parents=True, exist_ok=True)
        (deliveries / name).write_text(name)
        os.utime(deliveries / name, (seconds, seconds))
    batches = batches_by_month(deliveries)
    assert {m.isoformat(): sorted(p.relative_to(deliveries).as_posix() for p in files) for m, files in batches.items()} == {
        "2025-01-01": sorted(list(names)[:3]), "2025-02-01": [list(names)[3]]}
    january = batches[min(batches)]
    assert land(january, deliveries, landing) == 3
    assert {p.relative_to(landing).as_posix(): p.stat().st_mtime for p in landing.rglob("*") if p.is_file()} == {
        n: s for n, s in names.items() if "2025-01" in n}  # no hidden partial copy left behind
    assert land(january, deliveries, landing) == 0  # landed already


@pytest.fixture(scope="module")
def first_demo(tmp_path_factory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("demo")
    return tmp, run_demo(tmp)


def test_demo_runs_each_month_through_the_lifecycle(first_demo):
    tmp_path, out = first_demo
    warehouse = tmp_path / "warehouse.duckdb"
    assert "warning: check" not in out, out  # every quality gate passed on every run, warnings included
    # every batch landed from the deliveries with its name and modification time (the delivery order)
    delivered = {p.relative_to(tmp_path / "deliveries"): p.stat().st_mtime_ns for p in (tmp_path / "deliveries").rglob("*") if p.is_file()}
    landed = {p.relative_to(tmp_path / "landing"): p.stat().st_mtime_ns for p in (tmp_path / "landing").rglob("*") if p.is_file()}
    assert delivered and landed == delivered
    with duckdb.connect(str(warehouse), read_only=True) as con:
        finalized = con.execute("SELECT strftime(billing_month, '%Y-%m') FROM ledger.finalized_months ORDER BY finalized_at").fetchall()
        assert [m for (m,) in finalized] == MONTHS  # each month finalized, in order
        # month by month: a month's files were ingested after the month before was finalized, before its own finalization
        order = con.execute("""
            WITH files AS (
                SELECT CAST(strptime(regexp_extract(file, '(\\d{4}-\\d{2})-\\d{2}', 1), '%Y-%m') AS DATE) AS billing_month,
                       min(ingested_at) AS first_in, max(ingested_at) AS last_in
                FROM audit.ingested_files GROUP BY 1)
            SELECT strftime(f.billing_month, '%Y-%m'), f.first_in > coalesce(p.finalized_at, TIMESTAMP '1970-01-01'), f.last_in < m.finalized_at
            FROM files f JOIN ledger.finalized_months m USING (billing_month)
            LEFT JOIN ledger.finalized_months p ON p.billing_month = f.billing_month - INTERVAL 1 MONTH ORDER BY 1
        """).fetchall()
        assert order == [(m, True, True) for m in MONTHS]
        # numbers gapless per series and year: exactly 1..n, in the order they were assigned
        for series, year, seqs in con.execute(
                "SELECT series, issue_year, list(sequence_no ORDER BY assigned_at, sequence_no) FROM ledger.document_numbers GROUP BY ALL").fetchall():
            assert seqs == list(range(1, len(seqs) + 1)), (series, year)
        invoices, numbered = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE regexp_matches(document_number, '^(INV|CN)-\\d{4}-\\d{6}$')) FROM ledger.documents").fetchone()
        assert invoices > 0 and numbered == invoices
        paid = con.execute("SELECT count(*) FROM ledger.payment_applications WHERE entry_type = 'PAYMENT'").fetchone()[0]
        assert paid > 0  # the sample's payments landed on its invoices
        example = con.execute("SELECT document_number, issue_year FROM ledger.documents WHERE document_type = 'INVOICE' ORDER BY document_number LIMIT 1").fetchone()
    for month in MONTHS:
        assert re.search(rf"^{month}:\s+\d+ files landed$", out, re.M), out
    assert re.search(r"^\s+finalized: \d+ invoices \(INV-2025-000001 … INV-2025-\d{6}\), \d+ credit notes", out, re.M), out
    assert re.search(r"^Re-ran bill_cycle for 2025-01 \(finalized\): its drafts and the \d+ documents issued .* are unchanged", out, re.M), out
    # the summary's sections
    assert re.search(r"^2025-01\s+USD\s+\d+\s+[\d,]+\.\d\d", out, re.M), out  # drafts billed and revenue
    ledger_section = out[out.index("Ledger summary"):out.index("Document numbers")]
    assert re.search(r"^2025-02\s+USD(\s+\d+){5}(\s+-?[\d,]+\.\d\d){6}$", ledger_section, re.M), ledger_section
    assert re.search(r"^2025-0[23]\s+LATE_USAGE\s+[A-Z]{3}\s+\d+\s+-?[\d,]+\.\d+$", out, re.M), out  # late usage billed as adjustments
    numbers = re.search(r"^Document numbers: (.*)$", out, re.M)[1]
    assert re.search(r"INV-2025 000001 … \d{6} \(gapless\)", numbers) and "GAPS" not in numbers, numbers
    assert re.search(r"^2025-02\s+\d+\s+\d+$", out, re.M)  # quarantined / unrated per month
    assert re.search(r"^Files seen \d+ \(loaded \d+, duplicate deliveries skipped 1\)", out, re.M), out
    html = re.search(r"^An invoice:\s+(\S+\.html)$", out, re.M)
    assert html and Path(html[1]).is_file() and html[1].startswith(str(tmp_path / "documents")), out
    history = out[out.index("Ledger history of account"):out.index("Open the UI")]
    assert re.search(r"^  \d{4}-\d\d-\d\d  document\s+INVOICE\s+INV-2025-\d{6}\s+[\d,]+\.\d\d [A-Z]{3}  (OPEN|PARTIALLY_PAID|PAID)", history, re.M), history
    assert re.search(r"^  \d{4}-\d\d-\d\d  application (PAYMENT|OVERPAYMENT|CREDIT_APPLIED) ", history, re.M), history
    assert (tmp_path / "documents" / str(example[1]) / f"{example[0]}.html").is_file()
    with duckdb.connect(str(tmp_path / "warehouse.snapshot.duckdb"), read_only=True) as con:  # the analysts' snapshot has the ledger
        assert con.execute("SELECT count(*) FROM ledger.documents").fetchone()[0] == invoices


def test_a_refused_run_stops_the_demo_with_its_reason(first_demo):
    tmp_path, _ = first_demo
    before = ledger_rows(tmp_path / "warehouse.duckdb")
    finalize_again = ("import dagster as dg; from datetime import date; from pipelines.demo import _run; "
                      "_run('finalize', dg.DagsterInstance.get(), date(2025, 1, 1))")
    done = subprocess.run([sys.executable, "-c", finalize_again], env=demo_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert re.search(r"^run of finalize for 2025-01 failed \(run [0-9a-f-]+\): .*2025-01 is already finalized",
                     done.stderr, re.M), done.stderr[-2000:]
    assert ledger_rows(tmp_path / "warehouse.duckdb") == before


def test_a_second_demo_on_the_same_data_adds_nothing(first_demo):
    tmp_path, out = first_demo
    warehouse = tmp_path / "warehouse.duckdb"
    before = ledger_rows(warehouse)
    again = run_demo(tmp_path)  # same deliveries, landing zone, warehouse and Dagster instance
    assert "Using the sample deliveries" in again
    for month in MONTHS:
        assert re.search(rf"^{month}:\s+0 files landed; finalized already \(\d+ invoices .*\): skipped$", again, re.M), again
    assert ledger_rows(warehouse) == before
    assert summary(again, tmp_path) == summary(out, tmp_path)


def test_the_demo_from_scratch_prints_the_same_summary(first_demo, tmp_path):
    assert summary(run_demo(tmp_path), tmp_path) == summary(first_demo[1], first_demo[0])  # same seed, same numbers


def test_a_demo_with_other_options_on_existing_data_refuses_and_changes_nothing(first_demo):
    tmp_path, _ = first_demo
    before = ledger_rows(tmp_path / "warehouse.duckdb")
    done = subprocess.run([sys.executable, "-m", "pipelines.demo", "--customers", "60", "--months", str(len(MONTHS)),
                           "--seed", "43"], env=demo_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "was made by another generator or other options (seed 42 -> 43)" in done.stderr, done.stderr[-2000:]
    assert "make clean demo" in done.stderr
    assert ledger_rows(tmp_path / "warehouse.duckdb") == before
