"""Concurrent readers and writers: a run meeting the DuckDB file lock waits with backoff, naming the
holder, then succeeds or fails with a clear message, and its step is retried; two instances' bill cycles
never corrupt anything."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from sources.generator import generate_landing_zone
from tests.pipeline import failed_checks, run_bill_cycle, run_ingest, step_failures
from tests.test_recovery import ROOT, home, wait_until  # noqa: F401 - home: the Dagster instance fixture
from warehouse.connection import WarehouseLocked, connect

JANUARY = date(2025, 1, 1)


def hold_open(path: Path, seconds: float, read_only: bool = True) -> subprocess.Popen:
    """Another process (an analyst, say) holding ``path`` open for ``seconds``; returns once it holds it."""
    code = (f"import duckdb, time; c = duckdb.connect({str(path)!r}, read_only={read_only}); "
            f"print('held', flush=True); time.sleep({seconds})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(30)


@pytest.fixture
def warehouse(tmp_path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    with connect(path) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    return path


def test_connect_waits_for_a_reader_of_the_live_file_then_opens_it(warehouse, caplog):
    analyst = hold_open(warehouse, 2)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="tally.warehouse"), connect(warehouse) as con:
            assert con.execute("SELECT x FROM t").fetchone() == (1,)
        assert time.monotonic() - started > 0.5
    finally:
        stop(analyst)
    assert f"locked by another process, PID {analyst.pid}" in caplog.text and "Analysts query the snapshot" in caplog.text


@pytest.mark.parametrize("read_only", [False, True])
def test_connect_gives_up_after_the_timeout_naming_the_holder_and_the_snapshot(warehouse, monkeypatch, read_only):
    monkeypatch.setenv("TALLY_LOCK_WAIT_SECONDS", "1")
    writer = hold_open(warehouse, 60, read_only=False)
    try:
        with pytest.raises(WarehouseLocked) as raised, connect(warehouse, read_only=read_only):
            pass
    finally:
        stop(writer)
    assert f"locked by another process, PID {writer.pid}" in str(raised.value)
    assert "TALLY_LOCK_WAIT_SECONDS" in str(raised.value) and "warehouse.snapshot.duckdb" in str(raised.value)


INVOICES_SQL = "SELECT count(*), count(DISTINCT invoice_id), sum(total) FROM billing.invoices"
# The other instance's bill cycle of January: imports first, runs once the file named by argv[3] exists.
BILL_JANUARY = """
import sys, time
from datetime import date
from pathlib import Path
import dagster as dg
from tests.pipeline import failed_checks, run_bill_cycle
while not Path(sys.argv[3]).exists():
    time.sleep(0.1)
r = run_bill_cycle(Path(sys.argv[1]), Path(sys.argv[2]), date(2025, 1, 1), instance=dg.DagsterInstance.get())
sys.exit(0 if r.success and not failed_checks(r) else 1)
"""


def logged_lock_waits(instance: dg.DagsterInstance, holder_pid: int) -> list[str]:
    """The run-log lines of ``instance`` saying the warehouse is locked by ``holder_pid``."""
    return [e.message for run in instance.get_runs() for e in instance.all_logs(run.run_id)
            if e.message and f"locked by another process, PID {holder_pid}" in e.message]


def test_two_instances_meeting_an_analyst_wait_log_it_and_leave_what_one_bill_cycle_leaves(tmp_path, home, monkeypatch):
    landing, warehouse, go = tmp_path / "landing", tmp_path / "warehouse.duckdb", tmp_path / "go"
    monkeypatch.setenv("TALLY_LOCK_WAIT_SECONDS", "240")
    dg.DagsterInstance.from_config(str(home)).dispose()  # storage created before two processes use it
    other_home = tmp_path / "other_dagster_home"
    shutil.copytree(home, other_home)
    other = subprocess.Popen([sys.executable, "-c", BILL_JANUARY, str(warehouse), str(landing), str(go)], cwd=ROOT,
                             env={**os.environ, "DAGSTER_HOME": str(other_home)}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    analyst = None
    try:
        generate_landing_zone(landing, customers=20, start_month="2025-01", months=1, seed=5)
        assert run_ingest(warehouse, landing).success
        assert run_bill_cycle(warehouse, landing, JANUARY).success
        with connect(warehouse, read_only=True) as con:
            once = con.execute(INVOICES_SQL).fetchone()
        assert once[0] == once[1] > 0

        analyst = hold_open(warehouse, 300)  # an analyst on the live file while two instances start a bill cycle
        results = []
        ours = threading.Thread(target=lambda: results.append(bill_january(warehouse, landing, home)))
        ours.start()
        go.touch()
        for h in (home, other_home):  # both wait, and say who holds the file in their run logs
            with dg.DagsterInstance.from_config(str(h)) as instance:
                wait_until(lambda: logged_lock_waits(instance, analyst.pid), 180, f"a lock wait logged in {h.name}")
        stop(analyst)  # now the two runs meet each other on the lock
        out, _ = other.communicate(timeout=300)
        ours.join(300)
    finally:
        go.touch()
        for proc in (analyst, other):
            if proc is not None:
                stop(proc)
    assert results and results[0].success and not failed_checks(results[0])
    assert other.returncode == 0, out[-3000:]
    with connect(warehouse, read_only=True) as con:
        assert con.execute(INVOICES_SQL).fetchone() == once


def bill_january(warehouse: Path, landing: Path, home: Path) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return run_bill_cycle(warehouse, landing, JANUARY, instance=instance)


def test_a_step_meeting_a_locked_warehouse_is_retried_with_backoff_and_succeeds_once_it_is_released(tmp_path, monkeypatch):
    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse.duckdb"
    generate_landing_zone(landing, customers=5, start_month="2025-01", months=1, seed=5)
    monkeypatch.setenv("TALLY_LOCK_WAIT_SECONDS", "1")  # each attempt waits 1 s in-process, then the step fails
    writer = hold_open(warehouse, 4, read_only=False)  # another process writing, for 4 s
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            result = run_ingest(warehouse, landing, instance=instance)
            logged = [e.message for e in instance.all_logs(result.run_id) if e.message]
    finally:
        stop(writer)
    assert result.success, step_failures(result)
    retried = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retried == ["ingest_landing_zone"]  # once: the retry 10 s later found the file released
    (locked,) = [m for m in logged if "gave up after" in m]
    assert f"locked by another process, PID {writer.pid}" in locked and "retried with backoff" in locked
    assert "Analysts query the snapshot" in locked and "warehouse.snapshot.duckdb" in locked
    with connect(warehouse, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM audit.ingested_files WHERE status = 'LOADED'").fetchone()[0] > 0
