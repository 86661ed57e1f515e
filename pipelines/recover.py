"""Runs that never recover: fail the runs whose worker died and free their writer-pool slots.

Every asset that writes the warehouse is in the ``duckdb_writer`` pool (one step at a time, see
dagster.yaml). A run worker killed mid-step (``kill -9``, out of memory, a lost container) leaves
its slot claimed and its run STARTED. For runs executed in-process (``make demo``, ``dagster job
execute``) nothing in Dagster knows the worker died, so every later writer step would wait for the
slot forever. Hence:

- every run records its worker in the run tag ``tally/worker`` (``host:pid:process start``);
- :func:`recover_dead_runs` fails the in-progress runs whose worker is gone from this host and
  frees the slots still held by runs that are over; a worker on another host is never guessed dead;
- :func:`take_turn`, called as a run starts, recovers, then waits (sleeping, at most
  ``$TALLY_POOL_WAIT_SECONDS``) while an earlier live run is in progress or holds the pool, and
  fails naming that run when the bound is reached. A waiting run never fails the run it waits for.

CLI (``make recover``, docs/operations.md)::

    python -m pipelines.recover                 # recover, then show what holds or waits for the pool
    python -m pipelines.recover --list          # only show
    python -m pipelines.recover --free RUN_ID   # fail RUN_ID (if not over) and free its slots
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

POOL = "duckdb_writer"
WORKER_TAG = "tally/worker"
POOL_WAIT_ENV = "TALLY_POOL_WAIT_SECONDS"
DEFAULT_POOL_WAIT_SECONDS = 1800
ACTIVE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


class PoolWaitTimeout(Exception):
    """A run waited ``$TALLY_POOL_WAIT_SECONDS`` for the writer pool and gave up."""


def pool_wait_seconds() -> float:
    """``$TALLY_POOL_WAIT_SECONDS`` (default 1800): how long a run waits for a live holder of the pool."""
    return float(os.environ.get(POOL_WAIT_ENV, DEFAULT_POOL_WAIT_SECONDS))  # float ok: seconds


def _proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name ([0] state, [19] start time); [] if unreadable."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


@dataclass(frozen=True)
class Worker:
    """The process executing a run: host, pid and the process's start time (tells a reused pid apart)."""

    host: str
    pid: int
    started: str

    @classmethod
    def current(cls) -> Worker:
        stat = _proc_stat(os.getpid())
        return cls(socket.gethostname(), os.getpid(), stat[19] if stat else "")

    @classmethod
    def of(cls, run: dg.DagsterRun) -> Worker | None:
        host, _, rest = run.tags.get(WORKER_TAG, "").partition(":")
        pid, _, started = rest.partition(":")
        return cls(host, int(pid), started) if pid.isdigit() else None

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.started}"

    def alive(self) -> bool | None:
        """Whether the worker process still runs; None (cannot tell) for a worker on another host."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        stat = _proc_stat(self.pid)
        if not stat:  # no /proc (macOS): the pid answering is all we know
            return True
        return stat[0] != "Z" and (not self.started or stat[19] == self.started)


def worker_tags() -> dict[str, str]:
    """The run tag naming this process as the run's worker."""
    return {WORKER_TAG: str(Worker.current())}


@dataclass(frozen=True)
class PoolRun:
    """A run that holds or waits for a writer slot, or is in progress: what the recovery decides on."""

    record: dg.RunRecord
    holding: tuple[str, ...]  # its steps holding a slot of the pool

    @property
    def run(self) -> dg.DagsterRun:
        return self.record.dagster_run

    @property
    def is_over(self) -> bool:
        return self.run.status in FINISHED

    @property
    def worker(self) -> Worker | None:
        return Worker.of(self.run)

    @property
    def worker_gone(self) -> bool:
        return not self.is_over and self.worker is not None and self.worker.alive() is False

    def started_before(self, other: PoolRun) -> bool:
        mine, theirs = self.record.start_time, other.record.start_time
        return mine is not None and (theirs is None or (mine, self.run.run_id) < (theirs, other.run.run_id))

    def describe(self) -> str:
        worker = self.worker
        if worker is None:
            state = "worker not recorded"
        else:
            state = {True: "alive", False: "gone", None: "on another host, cannot tell"}[worker.alive()]
            state = f"worker {state} ({worker})"
        started = datetime.fromtimestamp(self.record.start_time or self.record.create_timestamp.timestamp(), timezone.utc)
        holds = f", holding {POOL} for {', '.join(self.holding)}" if self.holding else ""
        return (f"run {self.run.run_id} (job {self.run.job_name}, {self.run.status.value}, started "
                f"{started:%Y-%m-%d %H:%M:%S} UTC, {state}{holds})")


def pool_runs(instance: dg.DagsterInstance) -> list[PoolRun]:
    """The runs holding or waiting for a slot of the pool, and every run in progress."""
    info = instance.event_log_storage.get_concurrency_info(POOL)
    holding: dict[str, list[str]] = {}
    for slot in info.claimed_slots:
        holding.setdefault(slot.run_id, []).append(slot.step_key)
    in_pool = set(holding) | {step.run_id for step in info.pending_steps}
    records = {r.dagster_run.run_id: r for r in instance.get_run_records(dg.RunsFilter(statuses=ACTIVE))}
    if missing := in_pool - set(records):
        records.update({r.dagster_run.run_id: r for r in instance.get_run_records(dg.RunsFilter(run_ids=list(missing)))})
    return [PoolRun(record, tuple(holding.get(run_id, ()))) for run_id, record in records.items()]


def fail_and_free(instance: dg.DagsterInstance, run: PoolRun, why: str) -> str:
    """Mark ``run`` failed (unless it is over) and free every concurrency slot it holds or waits for; say so."""
    current = instance.get_run_by_id(run.run.run_id)
    done = f"its {POOL} slots freed"
    if current is not None and current.status not in FINISHED:
        done = f"marked failed, {done}"
        instance.report_run_failed(current, f"{why}: {done} by Tally's recovery (pipelines.recover).")
    instance.event_log_storage.free_concurrency_slots_for_run(run.run.run_id)
    return f"{why}: {done}"


def recover_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Fail the runs whose worker is gone from this host, free the slots of runs that are over; say what was done."""
    done = []
    for run in pool_runs(instance):
        if run.worker_gone:
            done.append(fail_and_free(instance, run, f"The worker of {run.describe()}"))
        elif run.is_over and run.holding:
            done.append(fail_and_free(instance, run, f"{run.describe()} is over"))
    return done


def blockers(instance: dg.DagsterInstance, run_id: str) -> list[PoolRun]:
    """The runs ``run_id`` must wait for: holders of the pool, and earlier runs in progress with a known worker."""
    runs = pool_runs(instance)
    mine = next((r for r in runs if r.run.run_id == run_id), None)
    return [
        r for r in runs
        if r.run.run_id != run_id and not r.is_over
        and (r.holding or (mine is not None and r.worker is not None and r.started_before(mine)))
    ]


def take_turn(instance: dg.DagsterInstance, run_id: str, log) -> None:
    """As run ``run_id`` starts: record its worker, recover dead runs, wait (bounded) for the runs it must follow."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.status in FINISHED:  # resources rebuilt after the run (`dagster job execute`'s result)
        return
    instance.add_run_tags(run_id, worker_tags())
    timeout = pool_wait_seconds()
    deadline, delay, said, said_at = time.monotonic() + timeout, 0.5, "", 0.0
    while True:
        for message in recover_dead_runs(instance):
            log.warning(message)
        waiting_for = blockers(instance, run_id)
        if not waiting_for:
            return
        described = "; ".join(r.describe() for r in waiting_for)
        now = time.monotonic()
        if now >= deadline:
            raise PoolWaitTimeout(
                f"Gave up after waiting {timeout:.0f}s (${POOL_WAIT_ENV}) for the {POOL} pool, held by {described}. "
                "A waiting run never fails a live one: let it finish or stop it; if its worker is gone from "
                "another host, free it with `make recover RUN=<run id>` (docs/operations.md)."
            )
        if described != said or now - said_at >= 60:
            log.info(f"Waiting up to {deadline - now:.0f}s more for the {POOL} pool: {described}")
            said, said_at = described, now
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, 10.0)


def _show(instance: dg.DagsterInstance) -> None:
    runs = [r for r in pool_runs(instance) if r.holding or not r.is_over]
    print(f"{POOL} pool: {len(runs)} run(s) holding, waiting or in progress")
    for run in runs:
        print(f"  {run.describe()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="only show what holds or waits for the pool")
    group.add_argument("--free", metavar="RUN_ID", help="fail RUN_ID (if not over) and free its slots")
    args = parser.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        if args.free:
            run = next((r for r in pool_runs(instance) if r.run.run_id == args.free), None)
            if run is None:
                print(f"run {args.free} holds no {POOL} slot and is not in progress")
            elif run.worker is not None and run.worker.alive():
                print(f"refused: {run.describe()}; stop that process first", file=sys.stderr)
                return 1
            else:
                print(fail_and_free(instance, run, f"Operator freed {run.describe()}"))
        elif not args.list:
            for message in recover_dead_runs(instance) or ["No run with a dead worker."]:
                print(message)
        _show(instance)
    return 0


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def recover_dead_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """While the daemon runs (`make ui`): fail runs whose worker died and free their writer slots, so the queue never stalls."""
    return dg.SkipReason("; ".join(recover_dead_runs(context.instance)) or "No run with a dead worker.")


if __name__ == "__main__":
    sys.exit(main())
