"""The command-line backfill: its arguments, the GraphQL it sends (checked against the installed webserver's schema),
and, over a real `dagster dev`, a range of months billed in one run that the UI's backfill pages show."""

from __future__ import annotations

from datetime import date

import pytest
from dagster_graphql.schema import create_schema
from graphql import parse, validate
from graphql.execution.values import get_variable_values

from pipelines.backfill import (JOB_ASSETS, LAUNCH, STATUS, backfill_link, backfill_params, job_selector, months_from_to,
                                parse_args)
from pipelines.partitions import month_key

SCHEMA = create_schema().graphql_schema


def test_arguments():
    args = parse_args(["--job", "bill_cycle", "--from", "2025-01", "--to", "2025-03"])
    assert (args.job, args.first, args.last, args.url, args.wait) == \
        ("bill_cycle", date(2025, 1, 1), date(2025, 3, 1), "http://127.0.0.1:3000", False)
    args = parse_args(["--job", "finalize", "--from", "2025-02", "--to", "2025-02", "--url", "http://h:4000", "--wait"])
    assert (args.first, args.last, args.url, args.wait) == (date(2025, 2, 1), date(2025, 2, 1), "http://h:4000", True)


@pytest.mark.parametrize("argv", [
    ["--job", "bill_cycle", "--from", "2025-03", "--to", "2025-01"],  # backwards
    ["--job", "bill_cycle", "--from", "2025-1", "--to", "2025-03"],  # not YYYY-MM
    ["--job", "bill_cycle", "--from", "2025-01-01", "--to", "2025-03"],  # a day, not a month
    ["--job", "bill_cycle", "--from", "2025-13", "--to", "2025-13"],
    ["--from", "2025-01", "--to", "2025-03"],  # no job
])
def test_wrong_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2 and "error:" in capsys.readouterr().err


def test_the_months_of_a_range_are_its_partition_keys_across_a_year_end():
    assert months_from_to(date(2024, 11, 1), date(2025, 2, 1)) == ["2024-11", "2024-12", "2025-01", "2025-02"]
    assert months_from_to(date(2025, 1, 1), date(2025, 1, 1)) == [month_key(date(2025, 1, 1))]


@pytest.mark.parametrize("document", [JOB_ASSETS, LAUNCH, STATUS], ids=["job_assets", "launch", "status"])
def test_each_graphql_document_is_valid_against_the_webservers_schema(document):
    assert validate(SCHEMA, parse(document)) == []


def variables_accepted(document: str, variables: dict) -> dict:
    """``variables`` as the schema coerces them for ``document`` (an AssertionError naming what it refuses)."""
    (operation,) = parse(document).definitions
    coerced = get_variable_values(SCHEMA, operation.variable_definitions, variables)
    assert isinstance(coerced, dict), [e.message for e in coerced]
    return coerced


def test_the_launch_variables_are_an_asset_backfill_of_the_jobs_assets_over_the_months():
    params = backfill_params("bill_cycle", [["billing", "invoices"], ["warehouse_snapshot"]], ["2025-01", "2025-02"])
    coerced = variables_accepted(LAUNCH, {"backfillParams": params})["backfillParams"]
    assert coerced["assetSelection"] == [{"path": ["billing", "invoices"]}, {"path": ["warehouse_snapshot"]}]
    assert coerced["partitionNames"] == ["2025-01", "2025-02"] and "selector" not in coerced  # not a job backfill
    assert coerced["title"] == "bill_cycle 2025-01 to 2025-02"
    assert variables_accepted(JOB_ASSETS, {"job": job_selector("bill_cycle")})["job"]["repositoryLocationName"] == "tally"
    assert variables_accepted(STATUS, {"backfillId": "abcdefgh"}) == {"backfillId": "abcdefgh"}


def test_the_backfill_page_link():
    assert backfill_link("http://127.0.0.1:3000/", "abcdefgh") == "http://127.0.0.1:3000/runs/b/abcdefgh?tab=partitions"
