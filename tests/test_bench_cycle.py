"""The cycle benchmark's own parts (benchmarks/cycle.py): landing, the floor, the stages' selections, the summary.

The whole benchmark runs the pipeline for minutes even at its smallest size; ``--verify`` (run by hand, figures in
docs/performance.md) checks its totals against the regular jobs'."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from benchmarks import cycle
from pipelines.definitions import defs


def test_landing_keeps_each_files_modification_time(tmp_path):
    deliveries, landing = tmp_path / "deliveries", tmp_path / "landing"
    files = []
    for i, rel in enumerate(["crm/customers/customers-2025-01-31.jsonl", "usage/usage_records/usage_records-2025-01-31-001.csv"]):
        path = deliveries / rel
        path.parent.mkdir(parents=True)
        path.write_text(f"file {i}\n")
        os.utime(path, ns=(1_000_000_000 * (i + 1), 1_000_000_000 * (i + 1)))
        files.append(path)
    cycle.land(files, deliveries, landing)
    for path in files:
        landed = landing / path.relative_to(deliveries)
        assert landed.read_text() == path.read_text()
        assert landed.stat().st_mtime_ns == path.stat().st_mtime_ns  # the delivery order the ingest follows


def test_the_floor_groups_the_months_parquet_and_csv_usage(tmp_path):
    usage = tmp_path / "usage" / "usage_records"
    usage.mkdir(parents=True)
    duckdb.sql("COPY (SELECT * FROM (VALUES (1, 'DATA_MB', 2.5), (1, 'DATA_MB', 1.0), (2, 'SMS', 1.0)) "
               "t(subscription_id, metric, quantity)) TO '" + str(usage / "u-001.parquet") + "' (FORMAT parquet)")
    (usage / "u-002.csv").write_text("subscription_id,metric,quantity\n1,DATA_MB,3\n3,VOICE_MIN,1.5\n")
    (tmp_path / "crm").mkdir()
    (tmp_path / "crm" / "customers-2025-01-31.jsonl").write_text("{}\n")
    result = cycle.floor(sorted(tmp_path.rglob("*.*")), threads=1)
    assert result["groups"] == 3  # (1, DATA_MB) from both files, (2, SMS), (3, VOICE_MIN); the CRM file is no usage


def test_every_stage_selects_assets_of_the_pipeline_and_together_they_cover_the_finance_jobs():
    graph = defs.resolve_asset_graph()
    selected = {}
    for stage in (*cycle.STAGES, cycle.DOCUMENTS):
        keys = cycle.stage_selection(stage.name).resolve(graph)
        assert keys, stage.name
        selected[stage.name] = keys
    finance = set()
    for job, _ in cycle.REGULAR_JOBS:
        finance |= set(defs.resolve_job_def(job).asset_layer.selected_asset_keys)
    assert finance <= set().union(*selected.values())


@pytest.mark.parametrize("months", [1, 2])
def test_the_summary_states_the_ratio_to_the_floor(months):
    stage = {"wall_s": 2.0, "cpu_s": 3.0, "peak_mb": 100.0}
    reports = [{"month": f"2025-0{m + 1}", "floor": {"wall_s": 0.5}, "stages": {s.name: dict(stage) for s in cycle.STAGES},
                "events": 1000, "invoices": 10, "documents": 11, "lines": 50} for m in range(months)]
    text = cycle.summarize(cycle.Sample(10, 1000, months), reports)
    # 10 stages of 2 s: 20 s for a floor of 0.5 s
    assert "**20.0** | 30.0 | 100" in text and "**40.0× the floor**" in text and "50 events/s" in text
    assert ("second month / first month: **1.00×**" in text) == (months == 2)
