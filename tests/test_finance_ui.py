"""What finance sees in the Dagster UI, through real materializations: month partition keys, the blocking check
that refuses a month whose data has not landed or whose previous month is not billed (nothing written, the
missing extracts named, the result tied to the month's partition), and the figures each materialization reports,
equal to SQL sums over the tables it wrote."""

from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from domain.money import minor_unit
from pipelines.assets.rating import missing_for_month
from pipelines.definitions import defs
from pipelines.assets.reporting import in_minor_units
from pipelines.partitions import billing_month, month_key, month_of_key
from tests.pipeline import failed_checks, run_apply_payments, run_bill_cycle, run_finalize, run_ingest

JAN, FEB, MAR = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)
READY = dg.AssetKey(["bill_cycle_inputs"])
BILLING_TABLES = ("billing.rating_runs", "billing.rated_usage", "billing.unrated_usage", "billing.invoice_lines",
                  "billing.invoices", "billing.settlement_inputs", "billing.billing_exceptions")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> tuple[Path, Path]:
    """January's and February's sample batches (30 customers) landed and ingested: (warehouse, landing)."""
    from sources.generator import generate_landing_zone

    root = tmp_path_factory.mktemp("finance")
    landing, warehouse = root / "landing", root / "warehouse.duckdb"
    generate_landing_zone(landing, customers=30, start_month="2025-01", months=2, seed=7)
    assert run_ingest(warehouse, landing).success
    return warehouse, landing


@pytest.fixture
def zone(ingested, tmp_path) -> tuple[Path, Path]:
    """A copy of the ingested warehouse, for one test to bill: (warehouse, landing)."""
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(ingested[0], warehouse)
    return warehouse, ingested[1]


SMALL_SAMPLE = {"ops": {"rating": {"config": {"max_unrated_share": 0.5}}}}  # 30 customers: faults weigh more


def bill(warehouse: Path, landing: Path, first: date, last: date | None = None) -> dg.ExecuteInProcessResult:
    """The bill cycle of ``first`` (to ``last``) on the small sample."""
    return run_bill_cycle(warehouse, landing, first, last, run_config=SMALL_SAMPLE)


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def rows_written(warehouse: Path) -> dict[str, int]:
    return {t: query(warehouse, f"SELECT count(*) FROM {t}")[0][0] for t in BILLING_TABLES}


def readiness(result: dg.ExecuteInProcessResult) -> list[tuple[str | None, bool, str]]:
    """(partition, passed, description) of every month_ready_to_bill evaluation of the run."""
    return [(e.event_specific_data.partition, e.event_specific_data.passed, e.event_specific_data.description)
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and e.event_specific_data.check_name == "month_ready_to_bill"]


def materialized(result: dg.ExecuteInProcessResult, *path: str) -> dict[str | None, dict]:
    """{partition: metadata} of the run's materializations of asset ``path``."""
    return {e.partition: e.materialization.metadata for e in result.get_asset_materialization_events()
            if e.asset_key.path == list(path)}


def test_partition_keys_are_months():
    keys = defs.resolve_job_def("bill_cycle").partitions_def.get_partition_keys()
    assert keys[:3] == ["2025-01", "2025-02", "2025-03"] and keys == billing_month.get_partition_keys()
    assert month_key(FEB) == "2025-02" and month_of_key("2025-02") == FEB
    assert all(month_key(month_of_key(k)) == k for k in keys)


def test_a_month_whose_data_has_not_landed_is_refused_before_anything_is_written(zone):
    warehouse, landing = zone
    result = bill(warehouse, landing, MAR)
    assert not result.success and failed_checks(result) == ["month_ready_to_bill"]
    [(partition, passed, description)] = readiness(result)
    assert (partition, passed) == ("2025-03", False)  # tied to the month it judged
    assert "no usage events of 2025-03 have landed (usage/usage_records)" in description
    assert "the previous month 2025-02 is not billed" in description
    assert rows_written(warehouse) == dict.fromkeys(BILLING_TABLES, 0)
    ran = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert ran == {"bill_cycle_inputs"}  # rating, invoicing and revenue never started


def test_a_month_whose_state_extracts_came_before_its_end_is_refused_naming_them(zone):
    warehouse, landing = zone
    with duckdb.connect(str(warehouse)) as con:  # the CRM's customer and account extracts were taken mid-January
        con.execute("UPDATE audit.ingested_files SET ingested_at = TIMESTAMP '2025-01-20 06:00:00' "
                    "WHERE entity IN ('customers', 'billing_accounts')")
    result = bill(warehouse, landing, JAN)
    [(partition, passed, description)] = readiness(result)
    assert (partition, passed) == ("2025-01", False)
    assert description == ("2025-01: no delivery of crm/billing_accounts, crm/customers ingested after 2025-01 ended "
                           "(2025-02-01)")
    assert rows_written(warehouse) == dict.fromkeys(BILLING_TABLES, 0)


def test_a_warehouse_without_a_usage_feed_bills_subscriptions_without_waiting_for_usage(zone):
    warehouse, _ = zone
    with duckdb.connect(str(warehouse)) as con:
        with_feed = missing_for_month(con, JAN, billed_before=False)
        con.execute("DELETE FROM audit.ingested_files WHERE entity = 'usage_records'")  # no usage extract ever loaded
        con.execute("DELETE FROM core.usage_events")
        without = missing_for_month(con, JAN, billed_before=False)
        march = missing_for_month(con, MAR, billed_before=True)
    assert with_feed == [] and without == []
    assert march == []  # every state extract was ingested after March ended, and no usage is expected


def test_a_month_waits_for_the_previous_month_to_be_billed(zone):
    warehouse, landing = zone
    refused = bill(warehouse, landing, FEB)
    assert readiness(refused) == [("2025-02", False, "2025-02: the previous month 2025-01 is not billed (run its bill cycle first)")]
    assert rows_written(warehouse) == dict.fromkeys(BILLING_TABLES, 0)

    january = bill(warehouse, landing, JAN)  # the first billing month waits for none
    assert january.success and readiness(january) == [("2025-01", True, "passed: 2025-01")]
    february = bill(warehouse, landing, FEB)
    assert february.success and [p for p, passed, _ in readiness(february) if passed] == ["2025-02"]


def test_a_range_run_judges_each_month_on_its_own_partition(zone):
    warehouse, landing = zone
    result = bill(warehouse, landing, JAN, FEB)  # February's previous month is billed first, in the run
    assert result.success
    assert readiness(result) == [("2025-01", True, "passed"), ("2025-02", True, "passed"),
                                 (None, True, "passed: 2025-01, 2025-02")]
    assert set(materialized(result, "bill_cycle_inputs")) == {"2025-01", "2025-02"}
    assert query(warehouse, "SELECT count(DISTINCT billing_month) FROM billing.rating_runs") == [(2,)]


@pytest.fixture(scope="module")
def billed(ingested, tmp_path_factory):
    """January billed, finalized and its payments applied, on a copy: (warehouse, bill run, finalize run, payments run)."""
    warehouse = tmp_path_factory.mktemp("billed") / "warehouse.duckdb"
    shutil.copy(ingested[0], warehouse)
    runs = [bill(warehouse, ingested[1], JAN), run_finalize(warehouse, ingested[1], JAN),
            run_apply_payments(warehouse, ingested[1])]
    assert all(r.success for r in runs)
    return warehouse, *runs


def minor(rows: list[tuple]) -> dict[str, int]:
    """{currency: amount in minor units} of (currency, amount) rows."""
    return {cur: in_minor_units(amount, cur) for cur, amount in rows}


def figures(metadata: dict, name: str) -> dict[str, int]:
    """{currency: int} of the ``<name> <currency> (minor units)`` metadata entries."""
    suffix = " (minor units)"
    return {key[len(name) + 1:-len(suffix)]: value.value for key, value in metadata.items()
            if key.startswith(name + " ") and key.endswith(suffix)}


def test_rating_reports_rows_rated_amounts_and_unrated_usage_per_month(billed):
    warehouse, bill, _, _ = billed
    rated, unrated = materialized(bill, "billing", "rated_usage")["2025-01"], materialized(bill, "billing", "unrated_usage")["2025-01"]
    assert rated["dagster/row_count"].value == query(warehouse, "SELECT count(*) FROM billing.rated_usage WHERE billing_month = ?", [JAN])[0][0] > 0
    amounts = query(warehouse, "SELECT currency, sum(amount) FROM billing.rated_usage WHERE billing_month = ? GROUP BY 1", [JAN])
    assert figures(rated, "rated") == minor(amounts) and all(isinstance(v, int) for v in figures(rated, "rated").values())
    assert rated["rated_amount"].data == {cur: str(total) for cur, total in amounts}  # the exact text, next to it
    n = query(warehouse, "SELECT count(*) FROM billing.unrated_usage WHERE billing_month = ?", [JAN])[0][0]
    assert unrated["dagster/row_count"].value == unrated["unrated_events"].value == n
    for reason, events in query(warehouse, "SELECT reason, count(*) FROM billing.unrated_usage GROUP BY 1"):
        assert f"| {reason} | {events} |" in unrated["unrated_by_reason"].value


def test_invoicing_reports_counts_money_per_currency_and_a_preview(billed):
    warehouse, bill, _, _ = billed
    invoices = materialized(bill, "billing", "invoices")["2025-01"]
    sums = query(warehouse, """
        SELECT currency, sum(net_total), sum(tax_total), sum(total),
               coalesce(sum(total) FILTER (WHERE document_type = 'INVOICE'), 0),
               coalesce(sum(total) FILTER (WHERE document_type = 'CREDIT_NOTE'), 0)
        FROM billing.invoices WHERE billing_month = ? GROUP BY 1""", [JAN])
    assert sums
    for i, name in enumerate(("net", "tax", "total", "invoiced", "credited")):
        assert figures(invoices, name) == minor([(row[0], row[i + 1]) for row in sums]), name
    assert invoices["dagster/row_count"].value == query(warehouse, "SELECT count(*) FROM billing.invoices")[0][0]
    top = query(warehouse, "SELECT invoice_id, total FROM billing.invoices WHERE document_type = 'INVOICE' "
                           "ORDER BY total DESC, invoice_id LIMIT 10")
    preview = invoices["preview"].value
    assert all(f"| {invoice_id} |" in preview and f"| {total} |" in preview for invoice_id, total in top)
    assert preview.index(top[0][0]) < preview.index(top[-1][0])  # largest first
    lines = materialized(bill, "billing", "invoice_lines")["2025-01"]
    assert lines["dagster/row_count"].value == lines["lines"].value == query(warehouse, "SELECT count(*) FROM billing.invoice_lines")[0][0]
    exceptions = materialized(bill, "billing", "billing_exceptions")["2025-01"]
    for kind, n in query(warehouse, "SELECT exception, count(*) FROM billing.billing_exceptions GROUP BY 1"):
        assert exceptions[f"exceptions {kind}"].value == n and f"| {kind} | {n} |" in preview


def test_finalize_reports_what_was_issued_per_currency(billed):
    warehouse, _, finalize, _ = billed
    documents = materialized(finalize, "ledger", "documents")["2025-01"]
    sums = query(warehouse, "SELECT currency, sum(net_total), sum(tax_total), sum(total) FROM ledger.documents GROUP BY 1")
    for i, name in enumerate(("net", "tax", "total")):
        assert figures(documents, name) == minor([(row[0], row[i + 1]) for row in sums]), name
    assert documents["dagster/row_count"].value == query(warehouse, "SELECT count(*) FROM ledger.documents")[0][0] > 0
    (top,) = query(warehouse, "SELECT document_number FROM ledger.documents WHERE document_type = 'INVOICE' "
                              "ORDER BY total DESC, document_number LIMIT 1")[0]
    assert f"| {top} |" in documents["preview"].value
    lines = materialized(finalize, "ledger", "document_lines")["2025-01"]
    assert lines["dagster/row_count"].value == query(warehouse, "SELECT count(*) FROM ledger.document_lines")[0][0]


def test_receivables_report_balances_per_currency(billed):
    warehouse, _, _, payments = billed
    balances = materialized(payments, "billing", "account_balances")[None]
    sums = query(warehouse, "SELECT currency, sum(invoiced), sum(paid_net), sum(open_ar) FROM billing.account_balances GROUP BY 1")
    for i, name in enumerate(("invoiced", "paid", "open AR")):
        assert figures(balances, name) == minor([(row[0], row[i + 1]) for row in sums]), name
    for path in (("ledger", "payment_events"), ("ledger", "payment_applications"), ("billing", "document_status"),
                 ("billing", "account_balances"), ("billing", "ar_aging")):
        (meta,) = materialized(payments, *path).values()
        assert meta["dagster/row_count"].value == query(warehouse, f"SELECT count(*) FROM {'.'.join(path)}")[0][0], path


def test_amounts_in_minor_units_are_exact_integers():
    assert in_minor_units(Decimal("15456.0700"), "USD") == 1545607
    assert in_minor_units(Decimal("1200.0000"), "JPY") == 1200 and minor_unit("JPY") == 0
    assert in_minor_units(Decimal("-3.1250"), "KWD") == -3125
    assert in_minor_units(Decimal("0.005"), "USD") == 1  # half away from zero, as domain.money rounds
