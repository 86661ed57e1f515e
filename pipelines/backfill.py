"""Backfill a range of billing months from the command line, in one run, through the Dagster webserver.

    python -m pipelines.backfill --job bill_cycle --from 2025-01 --to 2025-03 [--url http://127.0.0.1:3000] [--wait]

Launches an asset backfill of the job's assets over the months (GraphQL ``launchPartitionBackfill`` with
``assetSelection`` and ``partitionNames``), as the UI's Materialize button does: the bill cycle's steps
run a range in one run (their single-run backfill policy), the backfill shows on the UI's backfill pages
(printed link), and the daemon runs it (``make ui``). ``--wait`` waits for it to end and exits 1 unless it
succeeded. Not ``dagster job backfill``: it launches one run per month, and its page fails
(docs/operations.md, "Backfills").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from datetime import date

from pipelines.partitions import month_key, month_of_key

LOCATION = "tally"  # pyproject.toml [tool.dagster] code_location_name
REPOSITORY = "__repository__"  # the repository Dagster makes of a Definitions object
DONE = {"COMPLETED_SUCCESS": True, "COMPLETED": True, "COMPLETED_FAILED": False, "FAILED": False, "CANCELED": False}

JOB_ASSETS = """
query JobAssets($job: PipelineSelector!) {
  assetNodes(pipeline: $job) { assetKey { path } }
}
"""
LAUNCH = """
mutation LaunchBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionKeysNotFoundError { partitionKeys message }
    ... on Error { message }
  }
}
"""
STATUS = """
query BackfillStatus($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { id status runs { runId status } error { message } }
    ... on Error { message }
  }
}
"""


class BackfillFailed(Exception):
    """The webserver refused the backfill, or it ended without succeeding."""


def month_arg(text: str) -> date:
    """A ``--from`` / ``--to`` value: a billing month, YYYY-MM."""
    try:
        month = month_of_key(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a billing month is YYYY-MM, not {text!r}") from None
    if month_key(month) != text:
        raise argparse.ArgumentTypeError(f"a billing month is YYYY-MM, not {text!r}")
    return month


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.backfill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", required=True, help="a partitioned job: bill_cycle or finalize")
    parser.add_argument("--from", dest="first", type=month_arg, required=True, help="first billing month, YYYY-MM")
    parser.add_argument("--to", dest="last", type=month_arg, required=True, help="last billing month, YYYY-MM (inclusive)")
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the Dagster webserver (default: %(default)s)")
    parser.add_argument("--wait", action="store_true", help="wait for the backfill to end; exit 1 unless it succeeded")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits at most (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.last < args.first:
        parser.error(f"--to {month_key(args.last)} is before --from {month_key(args.first)}")
    return args


def months_from_to(first: date, last: date) -> list[str]:
    """The partition keys of the billing months ``first`` .. ``last``, in order."""
    keys, month = [], first
    while month <= last:
        keys.append(month_key(month))
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return keys


def job_selector(job: str) -> dict:
    return {"pipelineName": job, "repositoryName": REPOSITORY, "repositoryLocationName": LOCATION}


def backfill_params(job: str, asset_paths: list[list[str]], partition_keys: list[str]) -> dict:
    """The ``LaunchBackfillParams`` of an asset backfill of the job's assets over ``partition_keys``."""
    return {
        "assetSelection": [{"path": path} for path in asset_paths],
        "partitionNames": partition_keys,
        "title": f"{job} {partition_keys[0]} to {partition_keys[-1]}",
        "description": f"python -m pipelines.backfill --job {job} --from {partition_keys[0]} --to {partition_keys[-1]}",
        "tags": [{"key": "tally/backfill_job", "value": job}],
    }


def backfill_link(url: str, backfill_id: str) -> str:
    """The UI page of backfill ``backfill_id``."""
    return f"{url.rstrip('/')}/runs/b/{backfill_id}?tab=partitions"


class Webserver:
    """The Dagster webserver's GraphQL endpoint."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def query(self, text: str, variables: dict) -> dict:
        """The ``data`` of a GraphQL request; a GraphQL error raises BackfillFailed."""
        request = urllib.request.Request(f"{self.url}/graphql", json.dumps({"query": text, "variables": variables}).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.load(response)
        if body.get("errors"):
            raise BackfillFailed("; ".join(e["message"] for e in body["errors"]))
        return body["data"]

    def job_asset_paths(self, job: str) -> list[list[str]]:
        nodes = self.query(JOB_ASSETS, {"job": job_selector(job)})["assetNodes"]
        if not nodes:
            raise BackfillFailed(f"no job {job!r} with assets in code location {LOCATION} at {self.url}")
        return [node["assetKey"]["path"] for node in nodes]

    def launch(self, params: dict) -> str:
        result = self.query(LAUNCH, {"backfillParams": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise BackfillFailed(f"{result['__typename']}: {result.get('message')}")
        return result["backfillId"]

    def status(self, backfill_id: str) -> dict:
        result = self.query(STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
        if result["__typename"] != "PartitionBackfill":
            raise BackfillFailed(f"{result['__typename']}: {result.get('message')}")
        return result

    def wait(self, backfill_id: str, timeout: float, poll: float = 2.0) -> dict:
        """The backfill once it has ended (a status in ``DONE``); BackfillFailed after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (backfill := self.status(backfill_id))["status"] not in DONE:
            if time.monotonic() > deadline:
                raise BackfillFailed(f"backfill {backfill_id} still {backfill['status']} after {timeout:.0f}s")
            time.sleep(poll)
        return backfill


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = Webserver(args.url)
    keys = months_from_to(args.first, args.last)
    try:
        backfill_id = server.launch(backfill_params(args.job, server.job_asset_paths(args.job), keys))
        print(f"backfill {backfill_id}: {args.job} {keys[0]} to {keys[-1]} ({len(keys)} months)")
        print(backfill_link(args.url, backfill_id))
        if not args.wait:
            return 0
        backfill = server.wait(backfill_id, args.timeout)
    except BackfillFailed as failed:
        print(f"backfill refused or failed: {failed}", file=sys.stderr)
        return 1
    runs = ", ".join(f"{run['runId']} {run['status']}" for run in backfill["runs"])
    print(f"{backfill['status']}: {len(backfill['runs'])} run(s): {runs}")
    if backfill.get("error"):
        print(backfill["error"]["message"], file=sys.stderr)
    return 0 if DONE[backfill["status"]] else 1


if __name__ == "__main__":
    sys.exit(main())
