"""A real `dagster dev` (webserver + daemon) over a temporary instance, warehouse and landing zone, for end-to-end tests.

:func:`start_dagster` lays out the folders (``DAGSTER_HOME`` with the project's ``dagster.yaml``, the small sample
landing zone), starts ``dagster dev`` on 127.0.0.1 with a free port in its own process group and waits until the
``tally`` code location has loaded; :meth:`DagsterServer.stop` ends that process group. Runs are launched and
followed through the webserver's GraphQL API, as the UI does; every wait is on a condition with a timeout and fails
with the tail of the server's log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sources.generator import generate_landing_zone

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "tally"
REPOSITORY = "__repository__"
SAMPLE = {"customers": 60, "start_month": "2025-01", "months": 3, "seed": 42}
"""The small sample the server's landing zone holds: 2025-01 … 2025-03, as the demo test's."""
RUN_DONE = {"SUCCESS", "FAILURE", "CANCELED"}
BACKFILL_RUNNING = {"REQUESTED", "CANCELING", "FAILING"}


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float, what: str, log: Path | None = None, every: float = 0.25):
    """Poll ``condition`` until it returns something truthy (returned); after ``timeout`` seconds fail, saying
    ``what`` was awaited, with the server log's tail."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}" + (f"\n{log_tail(log)}" if log else ""))
        time.sleep(every)


def log_tail(log: Path, lines: int = 60) -> str:
    text = log.read_text(errors="replace").splitlines() if log.exists() else ["(no log)"]
    return "--- dagster dev log, last lines ---\n" + "\n".join(text[-lines:])


class GraphQLError(AssertionError):
    pass


@dataclass
class DagsterServer:
    """A running ``dagster dev``: its UI/GraphQL address and the instance, warehouse and landing zone it uses."""

    url: str
    home: Path
    warehouse: Path
    landing: Path
    log: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def snapshot(self) -> Path:
        """The analysts' read-only snapshot, published next to the warehouse."""
        from warehouse.connection import snapshot_path
        return snapshot_path(self.warehouse)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        """The ``data`` of a GraphQL request (fails on a transport or GraphQL error, with the log's tail)."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url + "/graphql", body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as e:
            raise GraphQLError(f"GraphQL HTTP {e.code}: {e.read()[:2000]!r}\n{log_tail(self.log)}") from e
        if answer.get("errors"):
            raise GraphQLError(f"GraphQL errors: {answer['errors']}\n{log_tail(self.log)}")
        return answer["data"]

    def launch_run(self, job: str, tags: dict[str, str] | None = None, run_config: dict | None = None) -> str:
        """Launch ``job`` (queued, then started by the daemon) with ``tags`` and ``run_config``; return the run id."""
        params = {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job},
                  "runConfigData": run_config or {},
                  "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}}
        launched = self.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(f"launchRun({job}) answered {launched}")
        return launched["run"]["runId"]

    def run(self, run_id: str) -> dict:
        """The run's status and tags (``{"status": ..., "tags": {key: value}}``)."""
        found = self.graphql(RUN, {"runId": run_id})["runOrError"]
        return {"status": found["status"], "tags": {t["key"]: t["value"] for t in found["tags"]}, "job": found["jobName"]}

    def wait_for_run(self, run_id: str, timeout: float = 120) -> dict:
        """The run once it ended; fails unless it succeeded, with its step failures and the log's tail."""
        run = wait_until(lambda: (r := self.run(run_id))["status"] in RUN_DONE and r, timeout, f"run {run_id}", self.log)
        if run["status"] != "SUCCESS":
            raise AssertionError(f"run {run_id} ({run['job']}) ended {run['status']}:\n{self.run_failures(run_id)}\n"
                                 f"{log_tail(self.log)}")
        return run

    def run_failures(self, run_id: str) -> str:
        """The messages of the run's failure events (what a failed run's page shows first)."""
        events = self.graphql(RUN_EVENTS, {"runId": run_id})["logsForRun"]["events"]
        return "\n".join(f"{e['__typename']}: {e.get('message')} {(e.get('error') or {}).get('message', '')}"
                         for e in events if "Failure" in e["__typename"] or e.get("level") == "ERROR")

    def run_job(self, job: str, tags: dict[str, str] | None = None, run_config: dict | None = None,
                timeout: float = 120) -> dict:
        """Launch ``job`` and wait for it to succeed."""
        return self.wait_for_run(self.launch_run(job, tags, run_config), timeout)

    def job_assets(self, job: str) -> list[dict]:
        """The assets the job materializes: ``{"path": [...], "partitioned": bool}``."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": job}
        return [{"path": a["assetKey"]["path"], "partitioned": a["isPartitioned"]}
                for a in self.graphql(JOB_ASSETS, {"pipeline": selector})["assetNodes"]]

    def launch_backfill(self, asset_paths: list[list[str]], partition_keys: list[str]) -> str:
        """Launch an asset backfill of ``asset_paths`` over ``partition_keys`` (the UI's "Launch backfill")."""
        params = {"assetSelection": [{"path": p} for p in asset_paths], "partitionNames": partition_keys}
        launched = self.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise GraphQLError(f"launchPartitionBackfill answered {launched}")
        return launched["backfillId"]

    def wait_for_backfill(self, backfill_id: str, timeout: float = 180) -> dict:
        """The backfill once the daemon has finished it: its status and runs (each ``{"runId", "status", "tags"}``)."""
        def finished():
            found = self.graphql(BACKFILL, {"backfillId": backfill_id})["partitionBackfillOrError"]
            return found["status"] not in BACKFILL_RUNNING and found
        found = wait_until(finished, timeout, f"backfill {backfill_id}", self.log, every=0.5)
        runs = [{"runId": r["runId"], "status": r["status"], "tags": {t["key"]: t["value"] for t in r["tags"]}}
                for r in found["runs"]]
        return {"status": found["status"], "runs": runs}

    def partition_metadata(self, asset_path: list[str], partition_key: str) -> dict:
        """The metadata of the latest materialization of ``asset_path``'s partition: ``{label: value}``, numbers
        as numbers, anything else as its text."""
        found = self.graphql(MATERIALIZATION, {"key": {"path": asset_path}, "partitions": [partition_key]})
        events = found["assetOrError"]["assetMaterializations"]
        assert events, f"no materialization of {'/'.join(asset_path)} partition {partition_key}"
        return {e["label"]: _metadata_value(e) for e in events[0]["metadataEntries"]}

    def stop(self, timeout: float = 60) -> None:
        """End ``dagster dev`` and everything it started (its process group): interrupted as Ctrl-C would, killed
        if still there after ``timeout`` seconds; fails if any of its processes outlived that."""
        group = self.process.pid
        if self.process.poll() is None:
            os.killpg(group, signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if processes_in_group(group):
            os.killpg(group, signal.SIGKILL)
            wait_until(lambda: not processes_in_group(group), 10, f"process group {group} to exit")
        self.process.wait(5)
        strays = processes_of_instance(self.home)  # anything it started that left its process group
        for pid in strays:
            os.kill(pid, signal.SIGKILL)
        assert not strays, f"processes of {self.home} outlived dagster dev: {strays}"


METADATA_VALUES = ("intValue", "floatValue", "text", "mdStr", "jsonString", "path")


def _metadata_value(entry: dict):
    """A GraphQL metadata entry's value (its type's name when it is of a kind not queried)."""
    return next((entry[k] for k in METADATA_VALUES if entry.get(k) is not None), entry["__typename"])


def _live_processes() -> dict[int, int]:
    """Every live (not zombie) process: pid -> process group."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            found[int(stat.parent.name)] = int(fields[2])
    return found


def processes_in_group(group: int) -> list[int]:
    """The live processes of process group ``group``."""
    return [pid for pid, pgid in _live_processes().items() if pgid == group]


def processes_of_instance(home: Path) -> list[int]:
    """The live processes running with ``DAGSTER_HOME`` = ``home`` (this server's, whatever their group)."""
    marker = f"DAGSTER_HOME={home}".encode()
    found = []
    for pid in _live_processes():
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:
            continue
    return found


def _default_signals() -> None:
    """In the child: Ctrl-C and SIGTERM as a terminal would deliver them (a background shell may ignore both, and an
    ignored signal stays ignored across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_dagster(tmp: Path, timeout: float = 120) -> DagsterServer:
    """Lay out an instance, warehouse and sample landing zone under ``tmp``, start ``dagster dev`` from the
    repository root (``pyproject.toml``'s ``[tool.dagster]``: the ``tally`` location) and wait until it has loaded."""
    home, landing, warehouse = tmp / "dagster_home", tmp / "landing", tmp / "warehouse.duckdb"
    home.mkdir(parents=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    generate_landing_zone(landing, **SAMPLE)
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "TALLY_LANDING_DIR": str(landing),
           "TALLY_WAREHOUSE_PATH": str(warehouse), "PYTHONPATH": str(REPO)}  # this checkout's code, not an installed one
    env.pop("TALLY_DOCUMENTS_DIR", None)  # documents go next to the warehouse
    log = tmp / "dagster-dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)], cwd=REPO,
                                   env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=_default_signals)
    server = DagsterServer(url=f"http://127.0.0.1:{port}", home=home, warehouse=warehouse, landing=landing, log=log,
                           process=process)
    try:
        wait_until(lambda: _location_loaded(server), timeout, f"dagster dev on port {port} to load {LOCATION!r}", log)
    except BaseException:
        server.stop()
        raise
    return server


def _location_loaded(server: DagsterServer) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"dagster dev exited with {server.process.returncode}\n{log_tail(server.log)}")
    try:
        entries = server.graphql(WORKSPACE)["workspaceOrError"]["locationEntries"]
    except (urllib.error.URLError, ConnectionError, GraphQLError):
        return False
    for entry in entries:
        if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED":
            if entry["locationOrLoadError"]["__typename"] == "PythonError":
                raise AssertionError(f"{LOCATION} failed to load: {entry['locationOrLoadError']['message']}")
            return True
    return False


WORKSPACE = """
query { workspaceOrError { ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
LAUNCH_RUN = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message }
  ... on InvalidSubsetError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
RUN = """
query($runId: ID!) { runOrError(runId: $runId) { ... on Run { status jobName tags { key value } } } }"""
RUN_EVENTS = """
query($runId: ID!) { logsForRun(runId: $runId, limit: 5000) { ... on EventConnection { events {
  __typename
  ... on MessageEvent { message level }
  ... on ExecutionStepFailureEvent { error { message } }
  ... on RunFailureEvent { error { message } } } } } }"""
JOB_ASSETS = """
query($pipeline: PipelineSelector!) { assetNodes(pipeline: $pipeline) { assetKey { path } isPartitioned } }"""
LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename
  ... on LaunchBackfillSuccess { backfillId }
  ... on PythonError { message }
  ... on InvalidSubsetError { message }
  ... on UnauthorizedError { message } } }"""
BACKFILL = """
query($backfillId: String!) { partitionBackfillOrError(backfillId: $backfillId) {
  ... on PartitionBackfill { status runs { runId status tags { key value } } }
  ... on PythonError { message } } }"""
MATERIALIZATION = """
query($key: AssetKeyInput!, $partitions: [String!]) { assetOrError(assetKey: $key) { ... on Asset {
  assetMaterializations(partitions: $partitions, limit: 1) { partition metadataEntries {
    __typename label
    ... on IntMetadataEntry { intValue }
    ... on FloatMetadataEntry { floatValue }
    ... on TextMetadataEntry { text }
    ... on MarkdownMetadataEntry { mdStr }
    ... on JsonMetadataEntry { jsonString }
    ... on PathMetadataEntry { path } } } } } }"""
