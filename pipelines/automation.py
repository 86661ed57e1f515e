"""Automation: the monthly bill cycle schedule and the landing zone sensor (both off until turned on in the UI).

* :data:`monthly_bill_cycle` runs job ``bill_cycle`` for the billing month just ended, at 06:00 UTC on the
  2nd of every month (``BILL_CYCLE_CRON``): the month's batch of extracts, dated its last day, has had a day
  to land, and the bill cycle's blocking checks refuse a month whose extracts have not.
* :data:`landing_zone_sensor` looks at the landing zone (``$TALLY_LANDING_DIR``) every minute and runs job
  ``ingest`` (which republishes the snapshot) when a file is new or changed since it last looked. Its
  cursor is what it has seen: each file's path with its size and modification time, listed by the rules
  ingest reads files by (:func:`sources.landing.hidden_or_temporary`: uploads in flight are not files yet).

They name their jobs, defined in pipelines/definitions.py, which adds them to the definitions.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg

from pipelines.partitions import billing_month, month_key
from pipelines.resources import LandingZone
from sources.landing import hidden_or_temporary

BILL_CYCLE_CRON = "0 6 2 * *"
"""06:00 UTC on the 2nd day of every month."""

LANDING_POLL_SECONDS = 60


def month_just_ended(at: datetime) -> date:
    """The billing month (first day) before the month of ``at``."""
    return (at.date().replace(day=1) - timedelta(days=1)).replace(day=1)


@dg.schedule(
    cron_schedule=BILL_CYCLE_CRON, job_name="bill_cycle", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Bill the month just ended: job bill_cycle for that billing month, at 06:00 UTC on the 2nd of every month "
                "(off by default; turn it on in Automation).",
)
def monthly_bill_cycle(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Request the bill cycle of the month before the tick's month; skip a month before the first billing month."""
    key = month_key(month_just_ended(context.scheduled_execution_time))
    if not billing_month.has_partition_key(key):
        return dg.SkipReason(f"{key} is not a billing month (the first is {billing_month.get_first_partition_key()})")
    return dg.RunRequest(run_key=key, partition_key=key)


def landed_files(landing_root: Path) -> dict[str, list[int]]:
    """Every landed file ingest would read: its path under ``landing_root`` -> [size in bytes, modification time in ns]."""
    root = landing_root.resolve()
    if not root.exists():
        return {}
    stamps = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not hidden_or_temporary(relative):
            stat = path.stat()
            stamps[relative] = [stat.st_size, stat.st_mtime_ns]
    return stamps


def new_or_changed(seen: dict[str, list[int]], landed: dict[str, list[int]]) -> list[str]:
    """The paths of ``landed`` not in ``seen`` with the same size and modification time, sorted."""
    return sorted(path for path, stamp in landed.items() if seen.get(path) != stamp)


@dg.sensor(
    job_name="ingest", minimum_interval_seconds=LANDING_POLL_SECONDS, default_status=dg.DefaultSensorStatus.STOPPED,
    description="Run job ingest (then the snapshot is republished) when extract files land or change in the landing zone "
                "($TALLY_LANDING_DIR); checks every minute (off by default; turn it on in Automation).",
)
def landing_zone_sensor(context: dg.SensorEvaluationContext, landing: LandingZone) -> dg.SensorResult:
    """One ingest run for the files landed or changed since the last evaluation (the cursor: what it has seen)."""
    seen = json.loads(context.cursor) if context.cursor else {}
    landed = landed_files(Path(landing.path))
    cursor = json.dumps(landed, sort_keys=True)
    new = new_or_changed(seen, landed)
    if not new:
        return dg.SensorResult(skip_reason=f"no new extract file in {landing.path}", cursor=cursor)
    context.log.info(f"{len(new)} new or changed file(s) in {landing.path}: {', '.join(new[:5])}{' …' if len(new) > 5 else ''}")
    run_key = hashlib.sha256(json.dumps({path: landed[path] for path in new}, sort_keys=True).encode()).hexdigest()
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=run_key, tags={"tally/new_files": str(len(new))})],
                           cursor=cursor)
