"""Runs that never recover: a killed run never blocks the next one, a wait on the writer pool is bounded.

All on a real Dagster instance whose DAGSTER_HOME holds the project's dagster.yaml. The kill and the
wait run real `ingest` runs (the Dagster CLI, in a subprocess) over a small generated landing zone;
the recovery's decisions are checked on runs and pool slots set up through Dagster's storage.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from pipelines.recover import POOL, WORKER_TAG, PoolWaitTimeout, recover_dead_runs_sensor, take_turn, worker_tags
from pipelines.recover import main as recover_main  # `python -m pipelines.recover`
from sources.generator import generate_landing_zone

ROOT = Path(__file__).resolve().parents[1]
INGEST = [sys.executable, "-m", "dagster", "job", "execute", "-m", "pipelines.definitions", "-j", "ingest"]


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.fixture
def instance(home):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def env_for(tmp_path: Path, home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "DAGSTER_HOME": str(home), "TALLY_LANDING_DIR": str(tmp_path / "landing"),
            "TALLY_WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"), **extra}


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (so a kill reaches every process it started)."""
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def finish(proc: subprocess.Popen, log: Path, timeout: float = 240) -> str:
    """Wait for ``proc`` (killing it after ``timeout``: a hung run ignores SIGTERM); return its output."""
    try:
        proc.wait(timeout)
    finally:
        kill(proc)
    return log.read_text()


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pool_holders(instance: dg.DagsterInstance) -> list[str]:
    return [slot.run_id for slot in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots]


def test_an_ingest_killed_mid_step_is_failed_its_slot_freed_and_the_next_ingest_completes(tmp_path, home, instance, monkeypatch, capsys):
    generate_landing_zone(tmp_path / "landing", customers=300, start_month="2025-01", months=1, seed=7)
    env = env_for(tmp_path, home)
    first = start(INGEST, env, tmp_path / "first.log")
    try:
        holder = wait_until(lambda: pool_holders(instance), 180, "the first ingest's step to claim the writer slot")
    finally:
        kill(first)  # kill -9 while its step runs
    (killed,) = holder
    assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.STARTED  # the zombie of issue 7
    assert pool_holders(instance) == [killed]

    assert recover(["--list"], home, monkeypatch) == 0
    listing = capsys.readouterr().out
    assert killed in listing and "worker gone" in listing, listing
    assert pool_holders(instance) == [killed]  # --list changes nothing

    out = finish(start(INGEST, env, tmp_path / "next.log"), tmp_path / "next.log")
    runs = instance.get_runs(dg.RunsFilter(job_name="ingest"))
    assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE], out[-3000:]
    assert runs[1].run_id == killed
    assert pool_holders(instance) == []
    failure = instance.all_logs(killed, of_type=dg.DagsterEventType.RUN_FAILURE)[-1]
    assert "worker" in failure.message and "gone" in failure.message, failure.message


def hold_the_pool(home: Path, release: threading.Event, tags: dict[str, str], results: list) -> None:
    """A live run holding the writer slot until ``release`` is set (a long bill cycle, say)."""

    @dg.asset(pool=POOL)
    def long_write() -> None:
        release.wait(180)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        results.append(dg.materialize([long_write], instance=instance, tags=tags, raise_on_error=False))


def test_a_run_waiting_on_a_live_holder_gives_up_naming_it_and_the_holder_finishes(tmp_path, home, instance):
    generate_landing_zone(tmp_path / "landing", customers=50, start_month="2025-01", months=1, seed=7)
    release, results = threading.Event(), []
    holder = threading.Thread(target=hold_the_pool, args=(home, release, worker_tags(), results))
    holder.start()
    try:
        (holding,) = wait_until(lambda: pool_holders(instance), 60, "the holder to claim the writer slot")
        out = finish(start(INGEST, env_for(tmp_path, home, TALLY_POOL_WAIT_SECONDS="1"), tmp_path / "w.log"),
                     tmp_path / "w.log")
        (waiter,) = instance.get_runs(dg.RunsFilter(job_name="ingest"))
        assert waiter.status == dg.DagsterRunStatus.FAILURE
        assert holding in out and "started 20" in out and "__ephemeral_asset_job__" in out, out[-3000:]
        assert pool_holders(instance) == [holding]  # the live holder is left alone
    finally:
        release.set()
        holder.join(240)  # on a loaded machine the holder's run can take a minute to wind down after its step
    assert not holder.is_alive(), "the holder's run did not finish within 240 s of its release"
    assert results[0].success and pool_holders(instance) == []


def start_run(instance: dg.DagsterInstance, tags: dict[str, str], claim: bool = True) -> str:
    """A STARTED `ingest` run (holding the writer slot if ``claim``), as a worker elsewhere leaves it."""
    from pipelines.definitions import defs

    run = instance.create_run_for_job(defs.resolve_job_def("ingest"), tags=tags)
    instance.report_dagster_event(dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name="ingest"), run.run_id)
    if claim:
        instance.event_log_storage.set_concurrency_slots(POOL, 1)
        assert instance.event_log_storage.claim_concurrency_slot(POOL, run.run_id, "ingest_landing_zone").is_claimed
    return run.run_id


def recover(argv: list[str], home: Path, monkeypatch) -> int:
    """`python -m pipelines.recover ARGV` on the instance at ``home``."""
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return recover_main(argv)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_daemon_sensor_fails_a_run_whose_worker_died_and_frees_its_slot(home, instance):
    run_id = start_run(instance, {WORKER_TAG: f"{socket.gethostname()}:{dead_pid()}:1"})
    result = recover_dead_runs_sensor(dg.build_sensor_context(instance=instance))
    assert run_id in result.skip_message
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    assert pool_holders(instance) == []


def test_a_run_on_another_host_is_left_alone_until_the_operator_frees_it(home, instance, monkeypatch, capsys):
    run_id = start_run(instance, {WORKER_TAG: "another-host:4242:1"})
    assert recover([], home, monkeypatch) == 0
    shown = capsys.readouterr().out
    assert run_id in shown and "another host" in shown, shown
    assert pool_holders(instance) == [run_id]  # cannot tell whether it is alive: never failed by guesswork

    assert recover(["--free", run_id], home, monkeypatch) == 0
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    assert pool_holders(instance) == []


def test_runs_take_turns_whole_a_later_run_waits_for_an_earlier_live_one_between_its_steps(home, instance, monkeypatch):
    earlier = start_run(instance, worker_tags(), claim=False)  # alive, between two steps: holds no slot
    later = start_run(instance, {}, claim=False)
    monkeypatch.setenv("TALLY_POOL_WAIT_SECONDS", "1")
    with pytest.raises(PoolWaitTimeout, match=f"run {earlier} \\(job ingest, STARTED, started"):
        take_turn(instance, later, logging.getLogger("test"))
    take_turn(instance, earlier, logging.getLogger("test"))  # the earlier run never waits for a later one
    assert instance.get_run_by_id(earlier).status == dg.DagsterRunStatus.STARTED


def test_the_operator_cannot_free_a_run_whose_worker_is_alive_here(home, instance, monkeypatch, capsys):
    run_id = start_run(instance, worker_tags())
    assert recover(["--free", run_id], home, monkeypatch) == 1
    assert "refused" in capsys.readouterr().err
    assert pool_holders(instance) == [run_id]
