"""The monthly bill cycle schedule and the landing zone sensor, evaluated by Dagster over the real definitions."""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

from pipelines.automation import landed_files, month_just_ended
from pipelines.definitions import defs
from pipelines.partitions import month_key
from pipelines.resources import LandingZone


def tick(year: int, month: int, day: int, hour: int = 6) -> datetime:
    return datetime(year, month, day, hour, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def schedule_tick(instance: dg.DagsterInstance, at: datetime) -> list:
    """What the schedule asks for at ``at``: its run requests, or its skip reason."""
    repository = defs.get_repository_def()
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at, repository_def=repository)
    data = repository.get_schedule_def("monthly_bill_cycle").evaluate_tick(context)
    return data.run_requests or [data.skip_message]


@pytest.mark.parametrize(("at", "month"), [
    (tick(2025, 3, 2), date(2025, 2, 1)),
    (tick(2026, 1, 2), date(2025, 12, 1)),
    (tick(2025, 2, 28, 23), date(2025, 1, 1)),
])
def test_the_month_just_ended(at, month):
    assert month_just_ended(at) == month


def test_the_schedule_bills_the_month_just_ended_after_month_end_and_is_off_by_default(instance):
    schedule = defs.get_repository_def().get_schedule_def("monthly_bill_cycle")
    assert schedule.job_name == "bill_cycle" and schedule.cron_schedule == "0 6 2 * *"
    assert schedule.execution_timezone == "UTC" and schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    (request,) = schedule_tick(instance, tick(2025, 3, 2))
    assert request.partition_key == month_key(date(2025, 2, 1)) == "2025-02"
    job = defs.resolve_job_def("bill_cycle")
    assert request.partition_key in job.partitions_def.get_partition_keys(current_time=tick(2025, 3, 2))
    assert dg.validate_run_config(job, request.run_config)


def test_the_schedule_skips_a_month_before_the_first_billing_month(instance):
    (reason,) = schedule_tick(instance, tick(2025, 1, 2))
    assert "2024-12 is not a billing month" in reason and "2025-01" in reason


def land(landing: Path, relative: str, content: str) -> Path:
    path = landing / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def sensor_tick(instance: dg.DagsterInstance, landing: Path, cursor: str | None) -> tuple[list, str]:
    """One evaluation of the landing zone sensor over ``landing`` from ``cursor``: its run requests and new cursor."""
    repository = defs.get_repository_def()
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"landing": LandingZone(path=str(landing))},
                                      repository_def=repository)
    data = repository.get_sensor_def("landing_zone_sensor").evaluate_tick(context)
    return data.run_requests, data.cursor


def test_a_new_file_gives_one_ingest_run_and_nothing_new_gives_none(instance, tmp_path):
    landing = tmp_path / "landing"
    sensor = defs.get_repository_def().get_sensor_def("landing_zone_sensor")
    assert sensor.job_name == "ingest" and sensor.default_status == dg.DefaultSensorStatus.STOPPED

    requests, cursor = sensor_tick(instance, landing, None)  # no landing zone yet
    assert requests == []
    land(landing, "crm/customers/customers-2025-01-31.jsonl", '{"op": "c"}\n')
    (request,), cursor = sensor_tick(instance, landing, cursor)
    assert dg.validate_run_config(defs.resolve_job_def("ingest"), request.run_config)
    requests, cursor = sensor_tick(instance, landing, cursor)
    assert requests == []  # nothing new since


def test_changed_files_count_uploads_in_flight_and_removed_files_do_not(instance, tmp_path):
    landing = tmp_path / "landing"
    orders = land(landing, "orders/orders/orders-2025-01-31.jsonl", '{"op": "c"}\n')
    (first,), cursor = sensor_tick(instance, landing, None)

    land(landing, "usage/usage_events/usage-2025-02-28.parquet.part", "half")  # an upload in flight
    land(landing, "usage/.staging/usage-2025-02-28.parquet", "half")  # in a hidden folder
    assert sensor_tick(instance, landing, cursor)[0] == []

    orders.write_text('{"op": "c"}\n{"op": "u"}\n')  # redelivered with more records: another size
    os.utime(orders, ns=(orders.stat().st_atime_ns, orders.stat().st_mtime_ns + 1_000_000_000))
    (second,), cursor = sensor_tick(instance, landing, cursor)
    assert second.run_key != first.run_key

    orders.unlink()
    assert sensor_tick(instance, landing, cursor)[0] == []
    assert landed_files(landing) == {}


def test_a_run_request_not_launched_is_asked_again_under_the_same_run_key(instance, tmp_path):
    landing = tmp_path / "landing"
    land(landing, "payments/payments/payments-2025-01-31.jsonl", '{"op": "c"}\n')
    (once,), _ = sensor_tick(instance, landing, None)
    (again,), _ = sensor_tick(instance, landing, None)  # the same tick evaluated again (its cursor was never stored)
    assert once.run_key == again.run_key  # Dagster launches one run per run key
