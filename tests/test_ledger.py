"""Finalization, numbering, hashes and voids (pipelines/ledger/, docs/billing.md "Finalization").

The engine tests put hand-built drafts (billing.invoices + billing.invoice_lines) in a scratch DuckDB
holding every contract table and finalize them; the job tests run the real finalize, bill_cycle and
void_document jobs through Dagster on a tiny landing zone.

Drafts (USD; totals = sums of the lines, tax per line):
* November 2025 (issue date 2025-12-01): account 1 INVOICE 20.00 + tax 1.45 (7.25 %) and 5.00 + 0.36;
  account 2 INVOICE 40.00 + 2.90.
* December 2025: account 1 INVOICE (issue 2026-01-01) 20.00 + 1.45; account 2 CREDIT_NOTE (issue 2026-01-01)
  -10.00 - 0.73 crediting its November line; account 3 (bill cycle day 15: issue 2025-12-15) INVOICE 30.00 + 2.18.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from decimal import Decimal as D

import dagster as dg
import duckdb
import polars as pl
import pytest

from pipelines.ledger import FinalizeRefused, VoidRefused, changed_documents, finalize, number_gaps, void
from pipelines.ledger.finalize import DOCUMENT_COLUMNS, HEADER_HASHED, column_text
from tests.extracts import DebeziumFile
from tests.pipeline import failed_checks, run_bill_cycle, run_finalize, run_ingest, run_void
from warehouse.ddl import create_tables
from warehouse.fixtures import create_table_with_rows
from warehouse.tables import TABLES
from warehouse.writer import WriteRefused, append, write

NOV, DEC = date(2025, 11, 1), date(2025, 12, 1)
LEDGER_TABLES = [name for name in TABLES if name.startswith("ledger.")]


def _line(line_id, invoice_id, month, account_id, amount, tax, **extra):
    amount, tax = D(amount), D(tax)
    return {**dict(line_id=line_id, invoice_id=invoice_id, billing_month=month, account_id=account_id, subscription_id=10 * account_id,
                   line_type="RECURRING", description=f"Line {line_id}", service_month=month, amount=amount, discount_amount=0,
                   coupon_amount=0, net_amount=amount, tax_jurisdiction="US-CA", tax_name="CA sales tax", tax_rate=D("0.0725"),
                   tax_amount=tax, total_amount=amount + tax, currency="USD"), **extra}


def _invoice(invoice_id, month, account_id, period_start, period_end, lines, document_type="INVOICE"):
    mine = [ln for ln in lines if ln["invoice_id"] == invoice_id]
    net, tax = sum(ln["net_amount"] for ln in mine), sum(ln["tax_amount"] for ln in mine)
    return dict(invoice_id=invoice_id, invoice_number="D", account_id=account_id, customer_id=account_id, billing_month=month,
                period_start=period_start, period_end=period_end, invoice_date=period_end, tax_point=period_end,
                due_date=period_end if document_type == "CREDIT_NOTE" else date.fromordinal(period_end.toordinal() + 30),
                currency="USD", status="DRAFT", line_count=len(mine), subtotal=net, discount_total=0, coupon_total=0,
                net_total=net, tax_total=tax, total=net + tax, document_type=document_type)


NOV_LINES = [
    _line("n1", "INV-AC1-20251201", NOV, 1, "20.00", "1.45"),  # 20.00 x 7.25 % = 1.45
    _line("n2", "INV-AC1-20251201", NOV, 1, "5.00", "0.36"),  # 5.00 x 7.25 % = 0.3625 -> 0.36
    _line("n3", "INV-AC2-20251201", NOV, 2, "40.00", "2.90"),  # 40.00 x 7.25 % = 2.90
]
NOV_INVOICES = [_invoice("INV-AC1-20251201", NOV, 1, date(2025, 11, 1), date(2025, 12, 1), NOV_LINES),  # 25.00 + 1.81 = 26.81
                _invoice("INV-AC2-20251201", NOV, 2, date(2025, 11, 1), date(2025, 12, 1), NOV_LINES)]  # 40.00 + 2.90 = 42.90
DEC_LINES = [
    _line("d1", "INV-AC1-20260101", DEC, 1, "20.00", "1.45"),
    # credits November's line n3 (a pending draft when December was billed: no document number yet)
    _line("d2", "CN-AC2-20260101", DEC, 2, "-10.00", "-0.73", line_type="RECURRING_CREDIT", reference_line_id="n3",
          adjustment_reason="BACKDATED_CHANGE", service_month=NOV),  # -10.00 x 7.25 % = -0.725 -> -0.73
    _line("d3", "INV-AC3-20251215", DEC, 3, "30.00", "2.18"),  # 30.00 x 7.25 % = 2.175 -> 2.18
]
DEC_INVOICES = [_invoice("INV-AC1-20260101", DEC, 1, date(2025, 12, 1), date(2026, 1, 1), DEC_LINES),
                _invoice("CN-AC2-20260101", DEC, 2, date(2025, 12, 1), date(2026, 1, 1), DEC_LINES, "CREDIT_NOTE"),
                _invoice("INV-AC3-20251215", DEC, 3, date(2025, 11, 15), date(2025, 12, 15), DEC_LINES)]


def add_drafts(con, invoices, lines):
    """Put draft rows in billing.invoices / invoice_lines (as a bill run writes them)."""
    for table, rows in (("billing.invoices", invoices), ("billing.invoice_lines", lines)):
        scratch = create_table_with_rows(con, table, rows, schema="given")
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {scratch}; DROP TABLE {scratch}")


@pytest.fixture()
def con():
    con = duckdb.connect()
    create_tables(con)
    add_drafts(con, NOV_INVOICES, NOV_LINES)
    add_drafts(con, DEC_INVOICES, DEC_LINES)
    yield con
    con.close()


def ledger_rows(con) -> dict[str, list]:
    return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in LEDGER_TABLES}


def numbers(con, month) -> dict[str, str]:
    return dict(con.execute("SELECT document_id, document_number FROM ledger.documents WHERE billing_month = ?", [month]).fetchall())


def test_numbers_are_gapless_per_series_and_issue_year_across_months(con):
    nov = finalize(con, NOV, run_id="run-nov")
    # November: both issued 2025-12-01, numbered by account: INV-2025-000001 (account 1), INV-2025-000002 (account 2).
    assert numbers(con, NOV) == {"INV-AC1-20251201": "INV-2025-000001", "INV-AC2-20251201": "INV-2025-000002"}
    assert (nov["invoices"], nov["credit_notes"], nov["lines"]) == (2, 0, 3)
    assert nov["totals"] == {"INVOICE USD": "69.7100"}  # 26.81 + 42.90
    dec = finalize(con, DEC)
    # December: account 3's invoice is issued 2025-12-15 and continues 2025 (000003); account 1's is issued
    # 2026-01-01 and starts 2026 at 000001; the credit note has its own series.
    assert numbers(con, DEC) == {"INV-AC1-20260101": "INV-2026-000001", "CN-AC2-20260101": "CN-2026-000001",
                                 "INV-AC3-20251215": "INV-2025-000003"}
    assert dec["number_ranges"] == {"INV-2025": "INV-2025-000003 to INV-2025-000003",
                                    "INV-2026": "INV-2026-000001 to INV-2026-000001", "CN-2026": "CN-2026-000001 to CN-2026-000001"}
    assert dec["totals"] == {"INVOICE USD": "53.6300", "CREDIT_NOTE USD": "-10.7300"}  # 21.45 + 32.18; -10.00 - 0.73
    assert con.execute("SELECT series, issue_year, sequence_no, document_number, document_id FROM ledger.document_numbers "
                       "ORDER BY series, issue_year, sequence_no").fetchall() == [
        ("CN", 2026, 1, "CN-2026-000001", "CN-AC2-20260101"),
        ("INV", 2025, 1, "INV-2025-000001", "INV-AC1-20251201"), ("INV", 2025, 2, "INV-2025-000002", "INV-AC2-20251201"),
        ("INV", 2025, 3, "INV-2025-000003", "INV-AC3-20251215"), ("INV", 2026, 1, "INV-2026-000001", "INV-AC1-20260101"),
    ]
    # first and last in number order: invoices (by year, sequence), then credit notes
    assert con.execute("SELECT billing_month, invoices, credit_notes, first_number, last_number, run_id FROM ledger.finalized_months "
                       "ORDER BY 1").fetchall() == [(NOV, 2, 0, "INV-2025-000001", "INV-2025-000002", "run-nov"),
                                                    (DEC, 2, 1, "INV-2025-000003", "CN-2026-000001", None)]
    assert number_gaps(con) == [] and changed_documents(con) == []


def test_documents_and_lines_are_the_drafts_with_their_numbers_and_hashes(con):
    finalize(con, NOV)
    finalize(con, DEC)
    doc = con.execute("SELECT document_type, series, issue_date, due_date, line_count, subtotal, tax_total, total, coupon_total "
                      "FROM ledger.documents WHERE document_id = 'CN-AC2-20260101'").fetchone()
    assert doc == ("CREDIT_NOTE", "CN", date(2026, 1, 1), date(2026, 1, 1), 1, D("-10.00"), D("-0.73"), D("-10.73"), D("0"))
    # every draft line column is in the ledger, unchanged, under its document's number and type
    draft_cols = [c for c in TABLES["billing.invoice_lines"].column_names if c not in ("invoice_id", "reference_document_number")]
    drafts = con.execute(f"SELECT {', '.join(draft_cols)} FROM billing.invoice_lines ORDER BY line_id").fetchall()
    assert con.execute(f"SELECT {', '.join(draft_cols)} FROM ledger.document_lines ORDER BY line_id").fetchall() == drafts
    # the credit of November's pending draft line n3 gets the number n3 was issued under when November was finalized
    assert con.execute("SELECT document_number, document_type, reference_document_number FROM ledger.document_lines "
                       "WHERE line_id = 'd2'").fetchone() == ("CN-2026-000001", "CREDIT_NOTE", "INV-2025-000002")
    # the month's hash: sha256 of its documents' content hashes in number order (INV-2025-000003, INV-2026-000001, CN-2026-000001)
    hashes = [h for (h,) in con.execute("SELECT content_hash FROM ledger.documents WHERE billing_month = ? "
                                        "ORDER BY series DESC, issue_year, sequence_no", [DEC]).fetchall()]
    stored = con.execute("SELECT drafts_hash FROM ledger.finalized_months WHERE billing_month = ?", [DEC]).fetchone()[0]
    assert stored == hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    assert len(set(hashes)) == 3 and all(len(h) == 64 for h in hashes)


def test_the_hash_covers_every_header_column_but_when_and_by_which_run():
    # series, issue_year and sequence_no are parts of document_number; content_hash, finalized_at and run_id are not content
    assert set(DOCUMENT_COLUMNS) - set(HEADER_HASHED) == {"series", "issue_year", "sequence_no", "content_hash", "finalized_at", "run_id"}


def test_a_wide_decimal_is_hashed_as_its_own_text():
    """A DECIMAL(38,10) is rendered through DECIMAL(18,10) when it fits (|x| < 10^8): exactly CAST(x AS VARCHAR) on
    both sides of that boundary, negative, zero, tiny, huge and NULL alike (so content hashes do not change)."""
    values = ["99999999.9999999999", "-99999999.9999999999", "100000000", "-100000000.0000000001", "0",
              "-0.0000000001", "12.34", "1234567890123456789012345678.0123456789", None]
    got = duckdb.connect().execute(f"""
        SELECT {column_text('x', 'DECIMAL(38,10)')}, CAST(x AS VARCHAR)
        FROM (SELECT CAST(unnest(CAST(? AS VARCHAR[])) AS DECIMAL(38,10)) AS x)""", [values]).fetchall()
    assert [fast for fast, _ in got] == [plain for _, plain in got]
    assert got[0][0] == "99999999.9999999999" and got[2][0] == "100000000.0000000000" and got[-1][0] is None


@pytest.mark.parametrize("tamper", [
    "UPDATE ledger.document_lines SET amount = 21.00 WHERE line_id = 'n1'",
    "UPDATE ledger.document_lines SET amount_precise = 20.0000000001 WHERE line_id = 'n1'",
    "UPDATE ledger.document_lines SET description = 'Line n1 ' WHERE line_id = 'n1'",
    "UPDATE ledger.documents SET due_date = DATE '2026-02-01' WHERE document_number = 'INV-2025-000001'",
    "DELETE FROM ledger.document_lines WHERE line_id = 'n2'",
    "INSERT INTO ledger.document_lines SELECT * REPLACE ('n9' AS line_id) FROM ledger.document_lines WHERE line_id = 'n1'",
    "UPDATE ledger.document_lines SET tax_name = NULL WHERE line_id = 'n1'",
])
def test_a_tampered_document_is_detected_by_its_hash(con, tamper):
    finalize(con, NOV)
    assert changed_documents(con) == []
    con.execute(tamper)  # in this scratch copy only: the ledger is never updated
    assert changed_documents(con) == ["INV-2025-000001"]


def test_a_number_gap_or_a_number_changed_is_detected(con):
    finalize(con, NOV)
    finalize(con, DEC)
    con.execute("DELETE FROM ledger.document_numbers WHERE document_number = 'INV-2025-000002'")  # scratch copy
    assert number_gaps(con) == ["INV-2025: 2 numbers, 2 distinct, from 1 to 3",
                                "INV-AC2-20251201: document INV-2025-000002, assigned none"]
    con.execute("UPDATE ledger.documents SET document_number = 'INV-2025-000009' WHERE document_id = 'INV-AC1-20251201'")
    assert "INV-AC1-20251201: document INV-2025-000009, assigned INV-2025-000001" in number_gaps(con)


def test_a_month_is_finalized_once(con):
    finalize(con, NOV)
    before = ledger_rows(con)
    with pytest.raises(FinalizeRefused, match=r"2025-11 is already finalized .*numbers INV-2025-000001 to INV-2025-000002"):
        finalize(con, NOV)
    assert ledger_rows(con) == before


def test_a_month_needs_the_month_before_finalized_unless_nothing_was_billed_before(con):
    with pytest.raises(FinalizeRefused, match="2025-12 cannot be finalized before 2025-11: finalize 2025-11 first"):
        finalize(con, DEC)
    assert all(rows == [] for rows in ledger_rows(con).values())
    finalize(con, NOV)  # the first month ever billed needs no month before it
    finalize(con, DEC)


def test_a_month_without_drafts_is_refused_and_one_drafted_with_no_documents_is_finalized_empty(con):
    finalize(con, NOV)
    finalize(con, DEC)
    with pytest.raises(FinalizeRefused, match="2026-01 has no drafts: run the bill_cycle job for 2026-01 first"):
        finalize(con, date(2026, 1, 1))
    # January rated, nothing to invoice: finalized with zero counts, no numbers
    con.execute("INSERT INTO billing.rating_runs (billing_month, rated_at, events_rated) VALUES ('2026-01-01', now()::TIMESTAMP, 0)")
    summary = finalize(con, date(2026, 1, 1))
    assert (summary["invoices"], summary["credit_notes"], summary["first_number"], summary["last_number"]) == (0, 0, None, None)
    assert con.execute("SELECT drafts_hash FROM ledger.finalized_months WHERE billing_month = '2026-01-01'").fetchone()[0] == \
        hashlib.sha256(b"").hexdigest()


def test_blocking_billing_exceptions_refuse_the_month(con):
    con.execute("""INSERT INTO billing.billing_exceptions VALUES
        ('2025-11-01', 'x1', 2, 'INV-AC2-20251201', 'n3', 'NO_TAX_RATE', true, 'no tax rate for KW on 2025-12-01'),
        ('2025-11-01', 'x2', 1, NULL, NULL, 'BEYOND_LOOKBACK', false, 'difference older than the lookback')""")
    with pytest.raises(FinalizeRefused, match=r"2025-11 has 1 blocking billing exception\(s\) \(NO_TAX_RATE; e.g. no tax rate for KW"):
        finalize(con, NOV)
    con.execute("DELETE FROM billing.billing_exceptions WHERE blocking")  # resolved by a re-run of the bill cycle
    assert finalize(con, NOV)["invoices"] == 2  # a non-blocking exception does not stop it


def test_a_failure_while_appending_leaves_nothing_written(con):
    # finalized_months is appended last; make its insert fail (a NOT NULL column the rows do not fill)
    con.execute("CREATE OR REPLACE TABLE ledger.finalized_months AS SELECT *, CAST(NULL AS VARCHAR) AS approved_by "
                "FROM ledger.finalized_months LIMIT 0; ALTER TABLE ledger.finalized_months ALTER COLUMN approved_by SET NOT NULL")
    with pytest.raises(duckdb.ConstraintException):
        finalize(con, NOV)
    assert all(rows == [] for rows in ledger_rows(con).values())


def test_void_keeps_the_number_and_is_refused_twice(con):
    finalize(con, NOV)
    before = con.execute("SELECT * FROM ledger.documents ORDER BY ALL").fetchall()
    voided = void(con, "INV-2025-000002", "  wrong address  ", voided_on=date(2025, 12, 5), run_id="r1")
    assert voided == {"document_number": "INV-2025-000002", "document_type": "INVOICE", "total": "42.9000 USD",
                      "voided_on": "2025-12-05", "reason": "wrong address"}
    assert con.execute("SELECT document_id, document_number, account_id, total, reason, voided_on, run_id FROM ledger.voids").fetchall() == [
        ("INV-AC2-20251201", "INV-2025-000002", 2, D("42.90"), "wrong address", date(2025, 12, 5), "r1")]
    assert con.execute("SELECT * FROM ledger.documents ORDER BY ALL").fetchall() == before  # number and content kept
    with pytest.raises(VoidRefused, match=r"INV-2025-000002 is already voided \(on 2025-12-05: wrong address\)"):
        void(con, "INV-2025-000002", "again")
    with pytest.raises(VoidRefused, match="INV-2025-000042 is not an issued document number"):
        void(con, "INV-2025-000042", "typo")
    with pytest.raises(VoidRefused, match="voiding INV-2025-000001 needs a reason"):
        void(con, "INV-2025-000001", "  ")
    with pytest.raises(VoidRefused, match="issued on 2025-12-01: it cannot be voided on 2025-11-30"):
        void(con, "INV-2025-000001", "early", voided_on=date(2025, 11, 30))
    assert con.execute("SELECT count(*) FROM ledger.voids").fetchone()[0] == 1


def test_append_writes_ledger_tables_only_and_checks_the_contract():
    con = duckdb.connect()
    create_tables(con, ["billing.invoices", "ledger.voids"])
    row = pl.DataFrame({"document_id": ["INV-AC1-20251201"], "document_number": ["INV-2025-000001"], "document_type": ["INVOICE"],
                        "account_id": [1], "currency": ["USD"], "total": [D("26.81")], "reason": ["r"], "voided_on": [NOV],
                        "voided_at": [datetime(2025, 12, 2)]},
                       schema_overrides={"total": pl.Decimal(18, 4)})
    assert append(con, [("ledger.voids", row)]) == {"ledger.voids": 1}
    with pytest.raises(WriteRefused, match="refused to append to billing.invoices: not a LEDGER table"):
        append(con, [("ledger.voids", row), ("billing.invoices", con.table("billing.invoices"))])
    with pytest.raises(WriteRefused, match="total: DECIMAL\\(18,6\\) has 6 decimal places"):
        append(con, [("ledger.voids", row.with_columns(pl.col("total").cast(pl.Decimal(18, 6))))])
    assert con.execute("SELECT count(*) FROM ledger.voids").fetchone()[0] == 1  # neither refused append wrote anything


def test_write_never_replaces_ledger_rows():
    """write() with a ``where`` deletes before it inserts: refused on any LEDGER table (ledger, raw, audit), nothing written."""
    con = duckdb.connect()
    create_tables(con, ["billing.invoices", "ledger.voids", "audit.ingested_files"])
    row = pl.DataFrame({"document_id": ["INV-AC1-20251201"], "document_number": ["INV-2025-000001"], "document_type": ["INVOICE"],
                        "account_id": [1], "currency": ["USD"], "total": [D("26.81")], "reason": ["r"], "voided_on": [NOV],
                        "voided_at": [datetime(2025, 12, 2)]},
                       schema_overrides={"total": pl.Decimal(18, 4)})
    assert write(con, [("ledger.voids", row, None)]) == {"ledger.voids": 1}  # appending is allowed
    for where in ("true", "document_id = 'INV-AC1-20251201'"):
        with pytest.raises(WriteRefused, match="refused to replace rows of ledger.voids: LEDGER tables are append only"):
            write(con, [("billing.invoices", con.table("billing.invoices"), "true"), ("ledger.voids", row, where)])
    with pytest.raises(WriteRefused, match="audit.ingested_files"):
        write(con, [("audit.ingested_files", con.table("audit.ingested_files"), "true")])
    assert con.execute("SELECT count(*) FROM ledger.voids").fetchone()[0] == 1


# --- the jobs, through Dagster -------------------------------------------------------------------------------------

T0 = datetime(2024, 12, 1)


def land_two_accounts(landing):
    """Two calendar-monthly USD accounts in California, each on Mobile S (20.00 a month in advance) from January 1."""
    DebeziumFile("products").snapshot(1, T0, dict(product_id=1, sku="MOB-S", name="Mobile S", category="MOBILE", product_type="SUBSCRIPTION",
                                                  base_price=D("20"), currency="USD", status="ACTIVE")).write(landing, "products-2024-12-01.jsonl")
    DebeziumFile("price_plans").snapshot(2, T0, dict(plan_id=11, product_id=1, name="Mobile S", currency="USD", status="ACTIVE")) \
        .write(landing, "price_plans-2024-12-01.jsonl")
    DebeziumFile("plan_charges").snapshot(3, T0, dict(
        price_id=101, plan_id=11, charge_code="monthly_fee", charge_type="RECURRING", charge_model="FLAT", billing_timing="IN_ADVANCE",
        billing_interval="MONTHLY", prorate=True, unit_price=D("20.00"), effective_from=datetime(2024, 1, 1))).write(landing, "plan_charges-2024-12-01.jsonl")
    DebeziumFile("tax_rates").snapshot(4, T0, dict(tax_rate_id=1, country="US", state="CA", tax_name="CA sales tax", rate=D("0.0725"),
                                                   effective_from=date(2024, 1, 1))).write(landing, "tax_rates-2024-12-01.jsonl")
    customers, accounts, orders, items = (DebeziumFile(e) for e in ("customers", "billing_accounts", "orders", "order_items"))
    for n in (1, 2):
        customers.create(10 + n, T0, dict(customer_id=n, name=f"Customer {n}", email=f"c{n}@example.com", address_line="1 Main St",
                                          city="Springfield", state="CA", postal_code="90001", country="US", customer_type="INDIVIDUAL",
                                          status="ACTIVE", created_at=T0))
        accounts.create(20 + n, T0, dict(account_id=1000 + n, customer_id=n, account_number=f"AC{1000 + n}", billing_cycle="MONTHLY",
                                         bill_cycle_day=1, payment_method="CARD", payment_terms_days=30, credit_limit=D("1000"),
                                         currency="USD", status="ACTIVE", created_at=T0))
        orders.create(30 + n, T0, dict(order_id=n, order_number=f"ORD-{n}", account_id=1000 + n, order_type="NEW_SERVICE",
                                       status="CONFIRMED", effective_date=date(2025, 1, 1), created_at=T0))
        items.create(40 + n, T0, dict(order_item_id=n, order_id=n, product_id=1, plan_id=11, subscription_id=500 + n, quantity=1))
    customers.write(landing, "customers-2024-12-15.jsonl")
    accounts.write(landing, "billing_accounts-2024-12-15.jsonl")
    orders.write(landing, "orders-2024-12-20.jsonl")
    items.write(landing, "order_items-2024-12-20.jsonl")


def step_failures(result) -> list[str]:
    return [e.event_specific_data.error.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]


def read_ledger(warehouse) -> dict[str, list]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return ledger_rows(con)


def test_the_finalize_and_void_jobs_through_dagster(tmp_path):
    warehouse, landing = tmp_path / "w.duckdb", tmp_path / "landing"
    land_two_accounts(landing)
    instance = dg.DagsterInstance.ephemeral()
    assert run_ingest(warehouse, landing, instance).success
    jan, mar = date(2025, 1, 1), date(2025, 3, 1)
    assert run_bill_cycle(warehouse, landing, jan, instance=instance).success

    finalized = run_finalize(warehouse, landing, jan, instance)
    assert finalized.success and failed_checks(finalized) == []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        drafts = con.execute("SELECT invoice_id, total FROM billing.invoices WHERE billing_month = ? ORDER BY account_id", [jan]).fetchall()
        issued = con.execute("SELECT document_id, total, document_number FROM ledger.documents ORDER BY account_id").fetchall()
    # one invoice per account, numbered by account from INV-2025-000001, with the drafts' totals
    assert [(d, t) for d, t, _ in issued] == drafts and len(drafts) == 2
    assert [n for *_, n in issued] == ["INV-2025-000001", "INV-2025-000002"]
    meta = finalized.asset_materializations_for_node("ledger_documents")[0].metadata
    assert meta["invoices"].value == 2 and meta["first_number"].value == "INV-2025-000001"

    # a backdated new service lands; a re-run of the finalized month's bill cycle changes no ledger row
    DebeziumFile("orders").create(50, datetime(2025, 2, 3), dict(order_id=3, order_number="ORD-3", account_id=1001, order_type="NEW_SERVICE",
                                                                 status="CONFIRMED", effective_date=date(2025, 1, 10), created_at=T0)) \
        .write(landing, "orders-2025-02-03.jsonl")
    DebeziumFile("order_items").create(51, datetime(2025, 2, 3), dict(order_item_id=3, order_id=3, product_id=1, plan_id=11,
                                                                      subscription_id=503, quantity=1)).write(landing, "order_items-2025-02-03.jsonl")
    assert run_ingest(warehouse, landing, instance).success
    before = read_ledger(warehouse)
    assert run_bill_cycle(warehouse, landing, jan, instance=instance).success
    assert read_ledger(warehouse) == before  # finalizing it again is refused
    again = run_finalize(warehouse, landing, jan, instance)
    assert not again.success and "finalize refused: 2025-01 is already finalized" in step_failures(again)[0]
    assert run_bill_cycle(warehouse, landing, date(2025, 2, 1), instance=instance).success  # March waits for February's bill run
    assert run_bill_cycle(warehouse, landing, mar, instance=instance).success
    skipped = run_finalize(warehouse, landing, mar, instance)
    assert not skipped.success and "2025-03 cannot be finalized before 2025-02: finalize 2025-02 first" in step_failures(skipped)[0]
    assert read_ledger(warehouse) == before

    voided = run_void(warehouse, landing, "INV-2025-000002", "duplicate account", instance)
    assert voided.success
    assert voided.asset_materializations_for_node("ledger__voids")[0].metadata["reason"].value == "duplicate account"
    twice = run_void(warehouse, landing, "INV-2025-000002", "again", instance)
    assert not twice.success and "void refused: INV-2025-000002 is already voided" in step_failures(twice)[0]
    after = read_ledger(warehouse)
    assert [r[1] for r in after["ledger.voids"]] == ["INV-2025-000002"]
    assert {t: rows for t, rows in after.items() if t != "ledger.voids"} == {t: rows for t, rows in before.items() if t != "ledger.voids"}
