"""Each user's flow against a real `dagster dev` (tests/e2e/server.py): ops through the GraphQL API, finance in the
Dagster UI in headless Chromium, analysts with the DuckDB CLI on the published snapshot while a run writes.

The tests share one server (session fixture) over the small sample (2025-01 … 2025-03); each needs only the landing
zone ingested and works whatever the others billed before it."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from pipelines.partitions import month_key
from tests.e2e.server import BIN, REPO, RUN_DONE, DagsterServer, log_tail, wait_until
from warehouse.connection import connect

JANUARY, FEBRUARY, MARCH = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)
INVOICES = ["billing", "invoices"]
ROW_COUNT = "dagster/row_count"
UI_TIMEOUT_MS = 60_000


def invoices_per_month(warehouse: Path) -> dict[date, int]:
    with connect(warehouse, read_only=True) as con:
        return dict(con.execute("SELECT billing_month, count(*) FROM billing.invoices GROUP BY 1").fetchall())


# --- ops: a month, then a range in one run, through GraphQL ------------------------------------------------------


def test_ops_bill_a_month_then_backfill_two_months_as_one_run_through_graphql(ingested: DagsterServer):
    server = ingested
    january = server.run_job("bill_cycle", tags={"dagster/partition": month_key(JANUARY)})
    assert january["tags"]["dagster/partition"] == month_key(JANUARY)

    assets = server.job_assets("bill_cycle")
    assert INVOICES in [a["path"] for a in assets if a["partitioned"]]
    # The documented command-line backfill (pipelines/backfill.py, docs/operations.md): one asset backfill, one run.
    done = subprocess.run([str(BIN / "python"), "-m", "pipelines.backfill", "--job", "bill_cycle",
                           "--from", month_key(FEBRUARY), "--to", month_key(MARCH), "--url", server.url,
                           "--wait", "--timeout", "600"], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    first, link, outcome = done.stdout.splitlines()[:3]
    backfill_id = first.split()[1].rstrip(":")
    assert link == f"{server.url.rstrip('/')}/runs/b/{backfill_id}?tab=partitions"
    assert outcome.startswith("COMPLETED_SUCCESS:"), done.stdout  # the range run, and one for the unpartitioned assets
    backfill = server.wait_for_backfill(backfill_id)
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    assert {r["status"] for r in backfill["runs"]} == {"SUCCESS"}, backfill
    ranges = [(r["tags"]["dagster/asset_partition_range_start"], r["tags"]["dagster/asset_partition_range_end"])
              for r in backfill["runs"] if "dagster/asset_partition_range_start" in r["tags"]]
    assert ranges == [(month_key(FEBRUARY), month_key(MARCH))]  # both months' bill cycle steps in ONE run

    written = invoices_per_month(server.warehouse)
    assert set(written) == {JANUARY, FEBRUARY, MARCH}  # the sample's months, nothing else
    for month in (JANUARY, FEBRUARY, MARCH):
        assert written[month] > 0
        assert server.partition_metadata(INVOICES, month_key(month))[ROW_COUNT] == written[month]


# --- finance: bill a month and finalize it in the Dagster UI ---------------------------------------------------------


@pytest.fixture
def page(browser, ingested: DagsterServer):
    """A browser tab on the server, past the UI's prompts: the community sign-up is marked seen on the server (as its
    "Skip" does; it would otherwise pop up a second after any page loads, over whatever menu is open), and the
    "upstream assets not materialized" confirmation is confirmed whenever it shows."""
    assert ingested.graphql("mutation SetNuxSeen { setNuxSeen }")["setNuxSeen"] is True
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, base_url=ingested.url)
    tab = context.new_page()
    tab.set_default_timeout(UI_TIMEOUT_MS)
    tab.add_locator_handler(tab.get_by_role("dialog").filter(has_text="Are you sure?"),
                            lambda: tab.get_by_role("button", name="Confirm").click())
    yield tab
    context.close()


def screenshots_dir(tmp_path: Path) -> Path:
    """Where the UI screenshots go: ``$TALLY_SCREENSHOTS_DIR`` (``docs/images`` to refresh the docs' pictures), else
    the test's temporary folder."""
    return Path(os.environ.get("TALLY_SCREENSHOTS_DIR") or tmp_path)


def run_id_of(page) -> str:
    """The run id of the run page the tab shows."""
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    return re.search(r"/runs/([0-9a-f-]{36})", page.url)[1]


def pick_partition(page, key: str, attempts: int = 3) -> None:
    """Choose ``key`` in the launchpad's partition picker. Its suggestions come from a query of the job's partitions;
    on a busy machine the menu can open before they arrive and stay empty, so the choice is made again (typed anew)
    until the launchpad shows the partition's tag."""
    picker = page.get_by_placeholder("Partition")
    for attempt in range(attempts):
        picker.click()
        picker.fill("")
        picker.press_sequentially(key)
        suggestion = page.get_by_role("menuitem", name=key, exact=True)
        try:
            suggestion.click(timeout=UI_TIMEOUT_MS // attempts)
            page.get_by_text(f"partition: {key}").wait_for(timeout=UI_TIMEOUT_MS // attempts)
            return
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise
            picker.press("Escape")


def show_run_succeeded(page, server: DagsterServer, run_id: str) -> None:
    """Wait (through GraphQL, failing with the run's errors) for the run to succeed, then for its page to say so."""
    server.wait_for_run(run_id)
    page.goto(f"/runs/{run_id}")
    page.get_by_text("Success", exact=True).first.wait_for()


def test_finance_bills_a_month_and_finalizes_it_in_the_ui(page, ingested: DagsterServer, tmp_path: Path):
    server, key = ingested, month_key(JANUARY)

    # The bill cycle's assets: Materialize all, pick the billing month, launch its run.
    page.goto("/locations/tally/jobs/bill_cycle")
    page.get_by_role("button", name="Materialize all").click()
    launch = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    picker = launch.locator("input[type=text]").first
    picker.fill(key)
    picker.press("Enter")
    launch.get_by_text("1 partition", exact=True).wait_for()
    launch.get_by_role("button", name="Launch 1 run").click()
    page.get_by_role("link", name="View", exact=True).click()  # the "Launched run" toast
    bill_run = run_id_of(page)
    show_run_succeeded(page, server, bill_run)
    assert server.run(bill_run)["tags"]["dagster/partition"] == key

    # The month's materialization page shows the invoice figures the run reported.
    page.goto(f"/assets/{'/'.join(INVOICES)}?view=partitions&partition={key}")
    figures = server.partition_metadata(INVOICES, key)
    assert figures[ROW_COUNT] == invoices_per_month(server.warehouse)[JANUARY] > 0
    metadata = page.locator("table").filter(has_text=ROW_COUNT)
    metadata.wait_for()
    for label, value in figures.items():
        if isinstance(value, int):  # counts and money in minor units: each row shows its number
            expect(metadata.get_by_role("row").filter(has=page.get_by_text(label, exact=True))).to_contain_text(str(value))
    page.screenshot(path=screenshots_dir(tmp_path) / "ui-bill-cycle.png", full_page=True)

    # Finalize the month: the finalize job's launchpad, with the month as its partition.
    page.goto("/locations/tally/jobs/finalize/playground")
    pick_partition(page, key)
    page.get_by_role("button", name="Launch Run").click()
    finalize_run = run_id_of(page)
    show_run_succeeded(page, server, finalize_run)
    assert server.run(finalize_run)["job"] == "finalize"
    expect(page.get_by_text("Loading run logs")).to_have_count(0)  # the run's event log shown, not its spinner
    page.screenshot(path=screenshots_dir(tmp_path) / "ui-finalize.png")

    with connect(server.warehouse, read_only=True) as con:
        assert con.execute("SELECT billing_month FROM ledger.finalized_months").fetchall() == [(JANUARY,)]
        issued = con.execute("SELECT count(*) FROM ledger.documents WHERE billing_month = ?", [JANUARY]).fetchone()[0]
    assert issued == invoices_per_month(server.warehouse)[JANUARY]


# --- analysts: the DuckDB CLI on the snapshot, while a run writes -----------------------------------------------------

DUCKDB_CLI = BIN / "duckdb"  # the `duckdb-cli` package's binary (dev extras), the same DuckDB as the warehouse's
OWN_QUERIES = [
    "SELECT billing_month, count(*) AS invoices FROM billing.invoices GROUP BY ALL ORDER BY ALL;",
    "SELECT currency, sum(total) AS total FROM billing.invoices GROUP BY ALL ORDER BY ALL;",
]


def documented_queries(doc: Path = REPO / "docs" / "warehouse.md") -> list[str]:
    """Every ```sql block of the analysts' guide, in order."""
    return re.findall(r"^```sql\n(.*?)^```", doc.read_text(), flags=re.S | re.M)


def cli(snapshot: Path, sql: str) -> subprocess.CompletedProcess:
    """Run ``sql`` with the DuckDB CLI on ``snapshot``, read-only, stopping at the first error; output as CSV."""
    return subprocess.run([str(DUCKDB_CLI), "-readonly", "-bail", "-csv", str(snapshot)], input=sql,
                          capture_output=True, text=True, timeout=60)


def test_the_duckdb_cli_is_the_warehouse_duckdb():
    version = subprocess.run([str(DUCKDB_CLI), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.split()[0] == f"v{duckdb.__version__}"


def test_analyst_runs_the_documented_queries_with_the_duckdb_cli_while_a_run_writes(ingested: DagsterServer):
    server = ingested
    script = "\n".join(documented_queries() + OWN_QUERIES)
    assert server.snapshot.exists()  # published by the ingest run
    published = server.snapshot.stat().st_ino

    run_id = server.launch_run("bill_cycle", tags={"dagster/partition": month_key(JANUARY)})
    wait_until(lambda: server.run(run_id)["status"] == "STARTED", 120, f"run {run_id} to start", server.log)
    passes, during_run, deadline = [], 0, time.monotonic() + 180
    while True:  # query passes until one starts after the run ended
        status_before = server.run(run_id)["status"]
        done = cli(server.snapshot, script)
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
        passes.append(server.snapshot.stat().st_ino)
        during_run += status_before == server.run(run_id)["status"] == "STARTED"
        if status_before in RUN_DONE:
            break
        assert time.monotonic() < deadline, f"run {run_id} still {status_before} after 180 s\n{log_tail(server.log)}"
    server.wait_for_run(run_id)
    assert during_run >= 1  # some passes began and ended while the run was writing
    assert passes[-1] != published  # the run republished the snapshot (a new file) while the analyst queried it

    last = cli(server.snapshot, OWN_QUERIES[0])
    rows = list(csv.DictReader(io.StringIO(last.stdout)))
    assert {date.fromisoformat(r["billing_month"]): int(r["invoices"]) for r in rows} == invoices_per_month(server.warehouse)
