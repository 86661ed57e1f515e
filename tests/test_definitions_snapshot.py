"""A snapshot of the Dagster definitions graph, so that no change to it goes unnoticed.

The graph (every asset's step, group, deps with their partition mappings, partitions, checks,
kinds, owners, tags, column schema and code file; every step's pool, retry and backfill policy; the
jobs and their selections; schedules; sensors; resources) is rendered as stable JSON and compared with
``tests/snapshots/definitions.json``. After an intended change, regenerate it and review the diff:

    .venv/bin/python -m tests.test_definitions_snapshot
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

import dagster as dg
import pytest

from pipelines.assets.policy import BILL_CYCLE_STEP, month_before
from pipelines.definitions import defs

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
REGENERATE = "regenerate with `.venv/bin/python -m tests.test_definitions_snapshot` and review the diff"


def _name(key: dg.AssetKey) -> str:
    return key.to_user_string()


def _partitions(p: dg.PartitionsDefinition | None) -> str | None:
    return None if p is None else f"{type(p).__name__}: {p}"


def _code_files(metadata) -> list[str]:
    refs = metadata.get("dagster/code_references")
    paths = [Path(r.file_path) for r in refs.code_references] if refs else []
    return [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else p.name for p in paths]


def _column_schema(metadata) -> str | None:
    schema = getattr(metadata.get("dagster/column_schema"), "value", metadata.get("dagster/column_schema"))
    return schema and f"{metadata['dagster/table_name']}: {len(schema.columns)} columns"


def _asset(graph, assets_def: dg.AssetsDefinition, key: dg.AssetKey) -> dict:
    node, spec, metadata = graph.get(key), assets_def.specs_by_key[key], assets_def.metadata_by_key[key]
    return {
        "step": assets_def.node_def.name,
        "group": node.group_name,
        "description": node.description,
        "deps": {_name(p): repr(graph.get_partition_mapping(key, p)) if node.is_partitioned else None
                 for p in sorted(node.parent_keys, key=_name)},
        "partitions": _partitions(node.partitions_def),
        "checks": {c.name: {"blocking": c.blocking} for c in assets_def.check_specs if c.asset_key == key},
        "kinds": sorted(node.kinds),
        "owners": list(node.owners),
        "tags": {k: v for k, v in sorted(spec.tags.items()) if not k.startswith("dagster/kind/")},
        "column_schema": _column_schema(metadata),
        "code": _code_files(metadata),
    }


def _retry_policy(policy: dg.RetryPolicy | None) -> str | None:
    return policy and f"{policy.max_retries} retries, {policy.delay} s, {policy.backoff and policy.backoff.value}"


def _step(assets_def: dg.AssetsDefinition) -> dict:
    policy = assets_def.backfill_policy
    return {
        "assets": sorted(_name(k) for k in assets_def.keys),
        "pool": assets_def.op.pool,
        "retry_policy": _retry_policy(assets_def.op.retry_policy),
        "backfill_policy": policy and policy.policy_type.value,
        "partitions": _partitions(assets_def.partitions_def),
        "can_subset": assets_def.can_subset,
    }


def _job(job: dg.JobDefinition) -> dict:
    layer = job.asset_layer
    return {
        "description": job.description,
        "selection": sorted(_name(k) for k in layer.selected_asset_keys),
        "checks": sorted(k.to_user_string() for k in layer.asset_graph.asset_check_keys),
        "partitions": _partitions(job.partitions_def),
        "executor": job.executor_def.name,
    }


def _sensor(sensor: dg.SensorDefinition) -> dict:
    return {"description": sensor.description, "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "default_status": sensor.default_status.value, "jobs": sorted(j.name for j in sensor.jobs) if sensor.has_jobs else []}


def _schedule(schedule: dg.ScheduleDefinition) -> dict:
    return {"description": schedule.description, "cron_schedule": schedule.cron_schedule, "job": schedule.job_name,
            "execution_timezone": schedule.execution_timezone, "default_status": schedule.default_status.value}


def render(definitions: dg.Definitions) -> dict:
    """The definitions graph as plain, sorted data (no line numbers, no absolute paths)."""
    graph = definitions.resolve_asset_graph()
    repo = definitions.get_repository_def()
    assets_defs = [a for a in graph.assets_defs if a.is_executable]
    return {
        "assets": {_name(k): _asset(graph, a, k) for a in assets_defs for k in sorted(a.keys, key=_name)},
        "steps": {a.node_def.name: _step(a) for a in sorted(assets_defs, key=lambda a: a.node_def.name)},
        "jobs": {j.name: _job(j) for j in sorted(repo.get_all_jobs(), key=lambda j: j.name) if not j.name.startswith("__")},
        "schedules": {s.name: _schedule(s) for s in sorted(repo.schedule_defs, key=lambda s: s.name)},
        "sensors": {s.name: _sensor(s) for s in sorted(repo.sensor_defs, key=lambda s: s.name)},
        "resources": sorted(definitions.resources or {}),
    }


def rendered(definitions: dg.Definitions) -> str:
    return json.dumps(render(definitions), indent=1, sort_keys=True) + "\n"


def test_definitions_match_the_snapshot():
    expected, actual = SNAPSHOT.read_text(), rendered(defs)
    diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), "snapshot", "definitions", n=2))
    assert actual == expected, f"the definitions graph changed ({REGENERATE}):\n{diff}"


# The snapshot must notice each kind of change: every variant of a small graph renders differently.
def _small(*, deps=(), blocking=True, pool_policy=BILL_CYCLE_STEP, group="g", selection="g", tags=None) -> dg.Definitions:
    @dg.multi_asset(specs=[dg.AssetSpec("a", group_name=group, tags=tags or {}), dg.AssetSpec("b", deps=["a", *deps], group_name=group)],
                    check_specs=[dg.AssetCheckSpec("ok", asset="b", blocking=blocking)], **pool_policy)
    def step():
        yield dg.MaterializeResult(asset_key="a")
        yield dg.MaterializeResult(asset_key="b")
        yield dg.AssetCheckResult(check_name="ok", asset_key="b", passed=True)

    job = dg.define_asset_job("job", selection=dg.AssetSelection.groups(selection))
    return dg.Definitions(assets=[step], jobs=[job])


@pytest.mark.parametrize("variant", [
    dict(deps=[month_before(dg.AssetKey("b"))]),  # a month-to-month dependency
    dict(blocking=False),  # a check no longer blocks
    dict(pool_policy={"pool": "other", "partitions_def": BILL_CYCLE_STEP["partitions_def"]}),  # pool and backfill policy
    dict(pool_policy={**BILL_CYCLE_STEP, "retry_policy": dg.RetryPolicy(max_retries=1)}),  # retry policy
    dict(group="h", selection="h"),  # group
    dict(selection="nothing"),  # a job's selection
    dict(tags={"tally/table_kind": "ledger"}),  # tags
], ids=["partition_mapping", "blocking", "pool", "retry", "group", "job_selection", "tags"])
def test_the_snapshot_notices_a_change(variant):
    assert render(_small(**variant)) != render(_small())


if __name__ == "__main__":
    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(rendered(defs))
    print(f"wrote {SNAPSHOT.relative_to(ROOT)}", file=sys.stderr)
