"""Quality gates (pipelines/quality, docs/quality.md): each passes on good tables and fails on a planted defect."""

from datetime import date, datetime, timezone
from decimal import Decimal as D

import dagster as dg
import duckdb
import pytest

from pipelines.definitions import bill_cycle_job, defs, finalize_job
from pipelines.partitions import billing_month
from pipelines.quality import expectations
from pipelines.quality.checks import BLOCKING, CONTRACT_CHECK, EXPECTATIONS_CHECK, quality_checks
from pipelines.quality.invariants import duplicate_key_rule, null_rule, outside_set_rule, violations
from pipelines.quality.rules import LINE_TYPES, VALUE_SETS, rules
from pipelines.quality.schemas import sample, schema_failures
from pipelines.resources import LandingZone, Warehouse
from tests.pipeline import failed_checks
from tests.test_ledger import DEC, DEC_INVOICES, DEC_LINES, NOV, NOV_INVOICES, NOV_LINES, add_drafts, land_two_accounts
from warehouse.ddl import create_tables
from warehouse.tables import TABLES

LINES, INVOICES = "billing.invoice_lines", "billing.invoices"
NOV_WINDOW, DEC_WINDOW = (NOV, DEC), (DEC, date(2026, 1, 1))


@pytest.fixture()
def con(tmp_path):
    """A real warehouse file holding November's and December's drafts (tests/test_ledger.py's)."""
    with duckdb.connect(str(tmp_path / "w.duckdb")) as c:
        create_tables(c, [LINES, INVOICES, "ledger.documents", "ledger.document_lines"])
        add_drafts(c, NOV_INVOICES + DEC_INVOICES, NOV_LINES + DEC_LINES)
        yield c


def contract(con, table, window=None) -> tuple[dict, list]:
    """What the contract check finds: the exact violations, and pandera's failures on the sample."""
    r = rules(table)
    return violations(con, r, window).found, schema_failures(sample(con, r, window), table)


# --- rules ---------------------------------------------------------------------------------------------------------

def test_value_sets_are_the_domain_modules_and_name_contract_columns():
    assert set(VALUE_SETS[LINES]["line_type"]) == set(LINE_TYPES) >= {"RECURRING", "USAGE_ADJUSTMENT", "MAXIMUM_CAP"}
    assert VALUE_SETS["ledger.documents"]["series"] == ("INV", "CN")
    assert VALUE_SETS["core.customers"]["status"] == ("ACTIVE", "SUSPENDED", "CLOSED")
    assert all(set(sets) <= set(TABLES[t].column_names) for t, sets in VALUE_SETS.items())


def test_a_derived_table_requires_its_key_and_a_ledger_table_only_its_not_null_columns():
    assert "customer_id" in rules("core.customers").required  # every column of core.* is nullable in the contract
    assert "record_no" not in rules("audit.quarantine").required  # a file rejected whole has no record number
    assert set(rules(INVOICES).required) == {c.name for c in TABLES[INVOICES].columns if not c.nullable}
    # a key column whose grain has an unknown (a posted estimate whose line is gone has no product) may be NULL
    by_product = rules("marts.revenue_by_product")
    assert "product_id" not in by_product.required and {"product_line", "customer_type"} <= set(by_product.required)


# --- the contract check: exact SQL invariants and the pandera schema -------------------------------------------------

def test_good_drafts_hold_their_contract(con):
    for table in (LINES, INVOICES):
        assert contract(con, table) == ({}, [])
        assert violations(con, rules(table), NOV_WINDOW).rows == {LINES: 3, INVOICES: 2}[table]


def test_a_null_key_is_found_exactly_and_on_the_sample(con):
    # the DDL forbids it; a table that drifted from the contract (a constraint dropped) does not
    con.execute(f"ALTER TABLE {LINES} ALTER COLUMN line_id DROP NOT NULL")
    con.execute(f"UPDATE {LINES} SET line_id = NULL WHERE line_id = 'd1'")
    found, schema = contract(con, LINES, DEC_WINDOW)
    assert found == {null_rule("line_id"): 1}
    assert any(f.startswith("line_id: not_nullable") for f in schema), schema
    assert contract(con, LINES, NOV_WINDOW) == ({}, [])  # the defect is in December only


def test_a_duplicate_key_is_found(con):
    con.execute(f"INSERT INTO {INVOICES} SELECT * FROM {INVOICES} WHERE invoice_id = 'INV-AC1-20251201'")
    found, schema = contract(con, INVOICES)
    assert found == {duplicate_key_rule(rules(INVOICES)): 1}
    assert any("invoice_id" in f for f in schema), schema


def test_a_value_outside_its_set_is_found(con):
    con.execute(f"UPDATE {LINES} SET line_type = 'RECURING' WHERE line_id = 'n2'")
    con.execute(f"UPDATE {INVOICES} SET document_type = 'RECEIPT' WHERE invoice_id = 'CN-AC2-20260101'")
    assert contract(con, LINES)[0] == {outside_set_rule("line_type"): 1}
    assert any(f.startswith("line_type: isin") and "RECURING" in f for f in contract(con, LINES)[1])
    assert contract(con, INVOICES)[0] == {outside_set_rule("document_type"): 1}


def test_a_column_whose_type_drifted_fails_the_schema(con):
    con.execute(f"ALTER TABLE {INVOICES} ALTER COLUMN total TYPE DOUBLE")  # money as float: never
    found, schema = contract(con, INVOICES)
    assert found == {} and any(f.startswith("total: dtype") for f in schema), schema


def test_an_empty_window_holds_its_contract(con):
    assert contract(con, LINES, (date(2030, 1, 1), date(2030, 2, 1))) == ({}, [])


# --- the Great Expectations suite --------------------------------------------------------------------------------------

def test_good_drafts_meet_their_expectations(con):
    for table in (LINES, INVOICES):
        outcome = expectations.validate(con, table)
        assert outcome.passed, outcome
        assert outcome.sample_rows == {LINES: 6, INVOICES: 5}[table]


def test_an_invoice_whose_total_is_not_the_sum_of_its_lines_fails(con):
    con.execute(f"UPDATE {INVOICES} SET total = total + 0.01, net_total = net_total + 0.01 "
                "WHERE invoice_id = 'INV-AC3-20251215'")
    outcome = expectations.validate(con, INVOICES, DEC_WINDOW)
    assert not outcome.passed
    assert outcome.exact == {f"{INVOICES} <> sums of {LINES}": 1, "net_total <> subtotal + discount_total + "
                             "coalesce(coupon_total, 0)": 1}
    failed = " ".join(outcome.failed)
    assert "column_A=total, column_B=lines_total" in failed and "column_A=net_total, column_B=lines_net_total" in failed
    assert expectations.validate(con, INVOICES, NOV_WINDOW).passed  # the window is December's


def test_a_line_whose_total_is_not_net_plus_tax_fails(con):
    con.execute(f"UPDATE {LINES} SET total_amount = total_amount + 1 WHERE line_id = 'n1'")
    outcome = expectations.validate(con, LINES)
    assert outcome.exact == {"total_amount <> net_amount + tax_amount": 1}
    assert any("column_A=total_amount" in f for f in outcome.failed)


def test_a_null_key_a_duplicate_and_a_value_outside_the_set_fail_the_suite(con):
    con.execute(f"ALTER TABLE {LINES} ALTER COLUMN line_id DROP NOT NULL")
    con.execute(f"UPDATE {LINES} SET line_id = NULL WHERE line_id = 'n1'")
    con.execute(f"UPDATE {LINES} SET line_id = 'n3' WHERE line_id = 'd3'")
    con.execute(f"UPDATE {LINES} SET adjustment_reason = 'TYPO' WHERE line_id = 'd2'")
    failed = " ".join(expectations.validate(con, LINES).failed)
    for expectation in ("expect_column_values_to_not_be_null(column=line_id)",
                        "expect_column_values_to_be_unique(column=line_id)",
                        "expect_column_values_to_be_in_set(column=adjustment_reason)"):
        assert expectation in failed, failed


def test_money_reaches_the_suite_as_exact_decimals(con):
    frame = expectations.suite_sample(con, INVOICES, NOV_WINDOW)
    assert {type(v) for v in frame["lines_total"]} == {D}
    assert sorted(frame["lines_total"]) == [D("26.81"), D("42.90")]


# --- through Dagster: real materializations with the checks ----------------------------------------------------------

def _materialize(warehouse, landing, selection, instance, **kwargs) -> dg.ExecuteInProcessResult:
    assets = list(defs.assets)
    return dg.materialize([*assets, *quality_checks(assets)], selection=selection, instance=instance,
                          resources={"warehouse": Warehouse(path=str(warehouse)), "landing": LandingZone(path=str(landing))},
                          raise_on_error=False, **kwargs)


def partition_key(month: date) -> str:
    """The billing_month partition key of ``month``, as the partitions definition spells it."""
    return billing_month.get_partition_key_for_timestamp(datetime(month.year, month.month, 1, tzinfo=timezone.utc).timestamp())


def evaluations(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def test_the_checks_run_after_ingest_and_the_bill_cycle_and_a_tampered_draft_stops_its_customer_documents(tmp_path):
    warehouse, landing = tmp_path / "w.duckdb", tmp_path / "landing"
    land_two_accounts(landing)
    instance = dg.DagsterInstance.ephemeral()
    ingested = _materialize(warehouse, landing, dg.AssetSelection.groups("ingest", "state"), instance)
    assert ingested.success and failed_checks(ingested) == []
    assert evaluations(ingested)[("core/customers", CONTRACT_CHECK)].metadata["rows_checked"].value == 2
    jan = partition_key(date(2025, 1, 1))
    billed = _materialize(warehouse, landing, bill_cycle_job.selection, instance,
                          tags={"dagster/asset_partition_range_start": jan, "dagster/asset_partition_range_end": jan})
    assert billed.success and failed_checks(billed) == []
    checked = evaluations(billed)
    invoices = checked[("billing/invoices", CONTRACT_CHECK)]
    assert invoices.metadata["rows_checked"].value == 2  # January's drafts, one per account
    assert invoices.metadata["window"].value == "billing months 2025-01-01 to 2025-02-01 (exclusive)"
    assert ("billing/invoice_lines", EXPECTATIONS_CHECK) in checked and ("revenue/schedule", EXPECTATIONS_CHECK) in checked
    assert checked[("revenue/schedule", CONTRACT_CHECK)].metadata["window"].value == "whole table"

    with duckdb.connect(str(warehouse)) as c:  # one draft's total no longer the sum of its lines, before finalizing
        c.execute("UPDATE billing.invoices SET total = total + 1, tax_total = tax_total + 1 "
                  "WHERE invoice_id = (SELECT min(invoice_id) FROM billing.invoices)")
    finalized = _materialize(warehouse, landing, finalize_job.selection, instance, partition_key=jan)
    found = evaluations(finalized)[("ledger/documents", EXPECTATIONS_CHECK)]
    assert not found.passed and found.metadata["exact_mismatches"].value == {"ledger.documents <> sums of ledger.document_lines": 1}
    assert "ledger.documents" in BLOCKING and not finalized.success
    assert finalized.asset_materializations_for_node("customer_documents") == []  # the wrong invoice does not go out
