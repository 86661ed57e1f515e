"""Payments and receivables (docs/billing.md "Payments and receivables"): payments, credit notes and account
credit applied to ledger invoices; status, balances, aging; the apply_payments job. Arithmetic in the comments."""

from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta
from decimal import Decimal as D

import duckdb
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from pipelines.receivables import account_balances, apply_payments, ar_aging, document_status, month_end_aging
from pipelines.receivables.balances import over_applied_documents, receivables_imbalances
from tests.pipeline import failed_checks, run_apply_payments
from warehouse.connection import connect
from warehouse.ddl import create_tables
from warehouse.fixtures import create_table_with_rows
from warehouse.migrations import migrate
from warehouse.writer import write

AT = datetime(2025, 7, 1)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """An empty warehouse at the contract's version (migrated once, copied per test)."""
    path = tmp_path_factory.mktemp("receivables") / "template.duckdb"
    with connect(path) as con:
        migrate(con)
    return path


@pytest.fixture
def warehouse(migrated, tmp_path):
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(migrated, path)
    return path


@pytest.fixture
def con(warehouse):
    with connect(warehouse) as c:
        account(c, 1)
        yield c


def add_rows(con, qualified: str, rows: list[dict], defaults: dict | None = None) -> None:
    """Append plain Python rows to a contract table of the warehouse (exact decimals)."""
    create_table_with_rows(con, qualified, rows, defaults, schema="given")
    name = qualified.split(".")[1]
    con.execute(f"INSERT INTO {qualified} BY NAME SELECT * FROM given.{name}; DROP TABLE given.{name}")


def account(con, account_id: int, currency: str = "USD", credit_limit: str | None = None) -> None:
    add_rows(con, "core.billing_accounts", [dict(
        account_id=account_id, customer_id=account_id, account_number=f"A{account_id:04d}", billing_cycle="MONTHLY",
        bill_cycle_day=1, payment_method="CARD", payment_terms_days=30, credit_limit=credit_limit, currency=currency,
        status="ACTIVE", is_deleted=False)])


def document(con, number: str, total: str, issued: date, due: date | None = None, account_id: int = 1,
             currency: str = "USD", corrects: str | None = None) -> None:
    """An issued invoice (or, for a CN- number, a credit note whose one line corrects invoice ``corrects``)."""
    kind = "CREDIT_NOTE" if number.startswith("CN") else "INVOICE"
    doc_id = f"D{number}"
    head = dict(document_id=doc_id, document_number=number, document_type=kind)
    add_rows(con, "ledger.documents", [dict(
        **head, series=number[:number.index("-")], issue_year=issued.year, sequence_no=int(number[-6:]),
        account_id=account_id, customer_id=account_id, billing_month=issued.replace(day=1), period_start=issued,
        period_end=issued, issue_date=issued, due_date=due or (issued if kind == "CREDIT_NOTE" else issued + timedelta(30)),
        currency=currency, line_count=1, subtotal=total, discount_total=0, coupon_total=0, net_total=total, tax_total=0,
        total=total, content_hash="hash", finalized_at=issued)])
    add_rows(con, "ledger.document_lines", [dict(
        line_id=f"L-{number}", **head, billing_month=issued.replace(day=1), account_id=account_id, line_type="RECURRING",
        amount=total, discount_amount=0, coupon_amount=0, net_amount=total, tax_amount=0, total_amount=total,
        currency=currency, reference_document_number=corrects)])


def pay(con, payment_id: int, amount: str, received: date, status: str = "SUCCEEDED", account_id: int = 1,
        currency: str = "USD", invoice_number: str | None = None) -> None:
    add_rows(con, "core.payments", [dict(
        payment_id=payment_id, account_id=account_id, invoice_number=invoice_number, amount=amount, currency=currency,
        status=status, method="CARD", received_at=received, valid_from=received, is_deleted=False)])


def payment_becomes(con, payment_id: int, status: str, on: date) -> None:
    """The provider changed the payment's status on ``on`` (its current row in core.payments)."""
    con.execute("UPDATE core.payments SET status = ?, valid_from = ? WHERE payment_id = ?", [status, on, payment_id])


def void(con, number: str, on: date) -> None:
    doc_id, kind, account_id, currency, total = con.execute(
        "SELECT document_id, document_type, account_id, currency, total FROM ledger.documents WHERE document_number = ?",
        [number]).fetchone()
    add_rows(con, "ledger.voids", [dict(document_id=doc_id, document_number=number, document_type=kind, account_id=account_id,
                                     currency=currency, total=total, reason="issued in error", voided_on=on, voided_at=on)])


def applications(con) -> list[tuple]:
    """(entry_type, target number or 'credit', amount, to_account_credit, applied_on), in ledger order."""
    return con.execute("""
        SELECT entry_type, coalesce(document_number, 'credit'), amount, to_account_credit, applied_on
        FROM ledger.payment_applications ORDER BY rowid""").fetchall()


def status(con) -> dict[str, tuple]:
    """number -> (status, open_amount, paid_date)."""
    return {r[0]: r[1:] for r in document_status(con).select("document_number, status, open_amount, paid_date").fetchall()}


def credit(con, account_id: int = 1) -> D:
    return con.execute("SELECT coalesce(sum(to_account_credit), 0) FROM ledger.payment_applications WHERE account_id = ?",
                       [account_id]).fetchone()[0]


def rebuild(con) -> None:
    """Replace the derived receivables tables, as the asset does (the balance check reads them)."""
    write(con, [("billing.document_status", document_status(con), "true"),
                ("billing.account_balances", account_balances(con), "true")])


def balanced(con) -> bool:
    rebuild(con)
    return receivables_imbalances(con) == [] and over_applied_documents(con) == []


FEB1, MAR1 = date(2025, 2, 1), date(2025, 3, 1)


def test_partial_payment_leaves_the_rest_open(con):
    document(con, "INV-2025-000001", "100.00", FEB1)
    pay(con, 1, "60.00", date(2025, 2, 10))
    apply_payments(con, at=AT)
    assert applications(con) == [("PAYMENT", "INV-2025-000001", D("60.00"), D(0), date(2025, 2, 10))]
    assert status(con)["INV-2025-000001"] == ("PARTIALLY_PAID", D("40.00"), None)  # 100.00 - 60.00 = 40.00
    assert balanced(con)


def test_exact_payment_pays_the_invoice_on_the_day_received(con):
    document(con, "INV-2025-000001", "100.00", FEB1)
    pay(con, 1, "100.00", date(2025, 2, 10))
    apply_payments(con, at=AT)
    assert status(con)["INV-2025-000001"] == ("PAID", D(0), date(2025, 2, 10))
    assert balanced(con)


def test_over_payment_becomes_credit_that_the_next_invoice_consumes(con):
    document(con, "INV-2025-000001", "100.00", FEB1)
    pay(con, 1, "130.00", date(2025, 2, 5))
    apply_payments(con, at=AT)
    # 130.00 = 100.00 to the invoice + 30.00 over-paid to account credit
    assert applications(con) == [("PAYMENT", "INV-2025-000001", D("100.00"), D(0), date(2025, 2, 5)),
                                 ("OVERPAYMENT", "credit", D("30.00"), D("30.00"), date(2025, 2, 5))]
    document(con, "INV-2025-000002", "80.00", MAR1)
    apply_payments(con, at=AT)
    # the credit pays 30.00 of the 80.00 invoice on its issue date (later than Feb 5): 80.00 - 30.00 = 50.00 open
    assert applications(con)[-1] == ("CREDIT_APPLIED", "INV-2025-000002", D("30.00"), D("-30.00"), MAR1)
    assert status(con)["INV-2025-000002"] == ("PARTIALLY_PAID", D("50.00"), None)
    assert credit(con) == 0
    assert balanced(con)


def test_a_payment_referencing_a_later_invoice_pays_it_first(con):
    document(con, "INV-2025-000001", "100.00", FEB1)
    document(con, "INV-2025-000002", "50.00", MAR1)
    pay(con, 1, "70.00", date(2025, 3, 5), invoice_number="INV-2025-000002")
    apply_payments(con, at=AT)
    # 70.00: 50.00 to the referenced INV-2, the other 20.00 to the oldest open, INV-1: 100.00 - 20.00 = 80.00
    assert applications(con) == [("PAYMENT", "INV-2025-000002", D("50.00"), D(0), date(2025, 3, 5)),
                                 ("PAYMENT", "INV-2025-000001", D("20.00"), D(0), date(2025, 3, 5))]
    assert status(con)["INV-2025-000001"][:2] == ("PARTIALLY_PAID", D("80.00"))
    assert status(con)["INV-2025-000002"][:2] == ("PAID", D(0))


def test_a_payment_only_pays_invoices_issued_by_the_day_it_was_received(con):
    document(con, "INV-2025-000001", "50.00", FEB1)
    document(con, "INV-2025-000002", "50.00", MAR1)
    pay(con, 1, "80.00", date(2025, 2, 5))
    pay(con, 2, "30.00", date(2025, 3, 5))
    apply_payments(con, at=AT)
    # Feb 5: 80.00 = 50.00 to INV-1 (INV-2 not issued yet) + 30.00 credit. Mar 5: 30.00 to INV-2 (50.00 - 30.00 = 20.00);
    # then the credit pays INV-2's last 20.00 on Mar 1 (its issue date; the credit arose Feb 5): 10.00 credit left.
    assert applications(con) == [
        ("PAYMENT", "INV-2025-000001", D("50.00"), D(0), date(2025, 2, 5)),
        ("OVERPAYMENT", "credit", D("30.00"), D("30.00"), date(2025, 2, 5)),
        ("PAYMENT", "INV-2025-000002", D("30.00"), D(0), date(2025, 3, 5)),
        ("CREDIT_APPLIED", "INV-2025-000002", D("20.00"), D("-20.00"), MAR1),
    ]
    assert credit(con) == D("10.00")  # 80.00 + 30.00 paid - 100.00 invoiced
    assert balanced(con)


def test_failed_payment_is_recorded_and_applies_nothing(con):
    document(con, "INV-2025-000001", "100.00", FEB1)
    pay(con, 1, "100.00", date(2025, 2, 10), status="FAILED")
    summary = apply_payments(con, at=AT)
    assert con.execute("SELECT status, outcome, reason FROM ledger.payment_events").fetchall() == [
        ("FAILED", "FAILED", "the payment provider reported it FAILED")]
    assert applications(con) == []
    assert status(con)["INV-2025-000001"] == ("OPEN", D("100.00"), None)
    assert summary["payments"] == {"FAILED": {"USD": {"count": 1, "amount": "100.0000"}}}


def test_pending_payment_waits_then_applies_once_succeeded(con):
    document(con, "INV-2025-000001", "100.00", FEB1)
    pay(con, 1, "100.00", date(2025, 2, 10), status="PENDING")
    apply_payments(con, at=AT)
    assert con.execute("SELECT count(*) FROM ledger.payment_events").fetchone()[0] == 0
    payment_becomes(con, 1, "SUCCEEDED", date(2025, 2, 11))
    apply_payments(con, at=AT)
    assert status(con)["INV-2025-000001"][0] == "PAID"


def test_refund_takes_back_credit_first_then_reopens_the_invoice(con):
    document(con, "INV-2025-000001", "100.00", FEB1)
    pay(con, 1, "130.00", date(2025, 2, 10))
    apply_payments(con, at=AT)
    payment_becomes(con, 1, "REFUNDED", date(2025, 2, 20))
    apply_payments(con, at=AT)
    # 130.00 refunded: the 30.00 of account credit first, then the 100.00 it paid on INV-1 (reopened)
    assert applications(con)[2:] == [("REFUND", "INV-2025-000001", D("-100.00"), D(0), date(2025, 2, 20)),
                                     ("REFUND", "credit", D("-30.00"), D("-30.00"), date(2025, 2, 20))]
    assert status(con)["INV-2025-000001"] == ("OPEN", D("100.00"), None)
    assert credit(con) == 0
    assert con.execute("SELECT status, outcome FROM ledger.payment_events ORDER BY status").fetchall() == [
        ("REFUNDED", "REFUNDED"), ("SUCCEEDED", "APPLIED")]
    assert balanced(con)  # paid_net = 130.00 - 130.00 = 0: invoiced 100.00 = open 100.00


def test_refund_reopens_the_invoices_it_paid_newest_first(con):
    document(con, "INV-2025-000001", "60.00", FEB1)
    document(con, "INV-2025-000002", "60.00", MAR1)
    pay(con, 1, "100.00", date(2025, 3, 5))  # 60.00 to INV-1, 40.00 to INV-2
    pay(con, 2, "50.00", date(2025, 3, 6))   # 20.00 to INV-2, 30.00 credit
    apply_payments(con, at=AT)
    payment_becomes(con, 1, "REFUNDED", date(2025, 3, 20))
    apply_payments(con, at=AT)
    # 100.00 refunded: 30.00 credit, then INV-2 (newest it paid) -40.00, then INV-1 -30.00 of its 60.00
    assert applications(con)[-3:] == [("REFUND", "INV-2025-000001", D("-30.00"), D(0), date(2025, 3, 20)),
                                      ("REFUND", "INV-2025-000002", D("-40.00"), D(0), date(2025, 3, 20)),
                                      ("REFUND", "credit", D("-30.00"), D("-30.00"), date(2025, 3, 20))]
    assert {n: s[:2] for n, s in status(con).items()} == {"INV-2025-000001": ("PARTIALLY_PAID", D("30.00")),
                                                          "INV-2025-000002": ("PARTIALLY_PAID", D("40.00"))}
    assert balanced(con)  # 120.00 invoiced = 50.00 paid net + 70.00 open


def test_credit_note_applies_to_the_invoice_it_corrects(con):
    document(con, "INV-2025-000001", "100.00", FEB1)
    document(con, "INV-2025-000002", "100.00", MAR1)
    document(con, "CN-2025-000001", "-25.00", MAR1, corrects="INV-2025-000002")
    apply_payments(con, at=AT)
    # the credit note corrects INV-2, not the oldest INV-1: 100.00 - 25.00 = 75.00
    assert applications(con) == [("CREDIT_NOTE", "INV-2025-000002", D("25.00"), D(0), MAR1)]
    st = status(con)
    assert st["INV-2025-000001"][:2] == ("OPEN", D("100.00"))
    assert st["INV-2025-000002"][:2] == ("PARTIALLY_PAID", D("75.00"))
    assert st["CN-2025-000001"] == ("APPLIED", D(0), MAR1)
    assert balanced(con)  # 200.00 - 25.00 = 0 paid + 175.00 open


def test_credit_note_beyond_its_invoice_pays_the_oldest_then_becomes_credit(con):
    document(con, "INV-2025-000001", "10.00", FEB1)
    document(con, "INV-2025-000002", "20.00", MAR1)
    pay(con, 1, "20.00", date(2025, 3, 2), invoice_number="INV-2025-000002")
    apply_payments(con, at=AT)
    document(con, "CN-2025-000001", "-25.00", date(2025, 4, 1), corrects="INV-2025-000002")
    apply_payments(con, at=AT)
    # INV-2 is paid: the 25.00 pays the oldest open INV-1 10.00, the other 15.00 is account credit
    assert applications(con)[1:] == [("CREDIT_NOTE", "INV-2025-000001", D("10.00"), D(0), date(2025, 4, 1)),
                                     ("CREDIT_NOTE", "credit", D("15.00"), D("15.00"), date(2025, 4, 1))]
    assert balanced(con)  # 30.00 - 25.00 = 20.00 paid + 0 open - 15.00 credit


def test_void_of_a_paid_invoice_returns_the_payment_to_account_credit(con):
    document(con, "INV-2025-000001", "100.00", FEB1)
    pay(con, 1, "100.00", date(2025, 2, 10))
    apply_payments(con, at=AT)
    void(con, "INV-2025-000001", date(2025, 2, 15))
    apply_payments(con, at=AT)
    assert applications(con)[-1] == ("VOID_REVERSAL", "INV-2025-000001", D("-100.00"), D("100.00"), date(2025, 2, 15))
    assert status(con)["INV-2025-000001"] == ("VOID", D(0), None)
    assert credit(con) == D("100.00")
    assert balanced(con)  # 0 invoiced = 100.00 paid + 0 open - 100.00 credit
    document(con, "INV-2025-000002", "90.00", MAR1)  # the re-issued invoice consumes the credit
    apply_payments(con, at=AT)
    assert status(con)["INV-2025-000002"] == ("PAID", D(0), MAR1)
    assert credit(con) == D("10.00")  # 100.00 - 90.00


def test_void_of_a_credit_note_reopens_the_invoice_it_paid(con):
    document(con, "INV-2025-000001", "100.00", FEB1)
    document(con, "CN-2025-000001", "-40.00", MAR1, corrects="INV-2025-000001")
    apply_payments(con, at=AT)
    void(con, "CN-2025-000001", date(2025, 3, 10))
    apply_payments(con, at=AT)
    assert applications(con)[-1] == ("VOID_REVERSAL", "INV-2025-000001", D("-40.00"), D(0), date(2025, 3, 10))
    assert status(con)["INV-2025-000001"][:2] == ("OPEN", D("100.00"))
    assert status(con)["CN-2025-000001"][0] == "VOID"
    assert balanced(con)


def test_second_call_appends_nothing(con):
    document(con, "INV-2025-000001", "100.00", FEB1)
    document(con, "INV-2025-000002", "50.00", MAR1)
    document(con, "CN-2025-000001", "-70.00", MAR1, corrects="INV-2025-000002")
    pay(con, 1, "130.00", date(2025, 2, 5))
    pay(con, 2, "10.00", date(2025, 2, 6), status="FAILED")
    pay(con, 3, "5.00", date(2025, 2, 7), status="PENDING")
    apply_payments(con, at=AT)
    payment_becomes(con, 1, "REFUNDED", date(2025, 3, 3))
    void(con, "INV-2025-000001", date(2025, 3, 4))
    apply_payments(con, at=AT)
    counts = con.execute("SELECT (SELECT count(*) FROM ledger.payment_events), (SELECT count(*) FROM ledger.payment_applications)").fetchone()
    assert counts[1] > 0
    assert apply_payments(con, at=AT) == {"payments": {}, "applications": {}}
    assert con.execute("SELECT (SELECT count(*) FROM ledger.payment_events), (SELECT count(*) FROM ledger.payment_applications)").fetchone() == counts
    assert con.execute("SELECT count(DISTINCT application_id) = count(*) FROM ledger.payment_applications").fetchone()[0]
    assert balanced(con)


def test_other_currency_and_unknown_account_are_rejected(con):
    document(con, "INV-2025-000001", "100.00", FEB1)
    pay(con, 1, "100.00", date(2025, 2, 10), currency="EUR")
    pay(con, 2, "100.00", date(2025, 2, 10), account_id=99)
    apply_payments(con, at=AT)
    assert con.execute("SELECT payment_id, outcome, reason FROM ledger.payment_events ORDER BY 1").fetchall() == [
        (1, "REJECTED", "payment currency EUR differs from the account currency USD"),
        (2, "REJECTED", "unknown account 99")]
    assert applications(con) == []


def test_kwd_amounts_keep_three_decimals(con):
    account(con, 2, currency="KWD")
    document(con, "INV-2025-000001", "12.345", FEB1, account_id=2, currency="KWD")
    pay(con, 1, "10.125", date(2025, 2, 10), account_id=2, currency="KWD")
    pay(con, 2, "2.225", date(2025, 2, 11), account_id=2, currency="KWD")
    apply_payments(con, at=AT)
    # 12.345 - 10.125 = 2.220 open; 2.225 pays it and over-pays 0.005
    assert applications(con)[-2:] == [("PAYMENT", "INV-2025-000001", D("2.220"), D(0), date(2025, 2, 11)),
                                      ("OVERPAYMENT", "credit", D("0.005"), D("0.005"), date(2025, 2, 11))]
    rebuild(con)
    assert con.execute("SELECT paid_net, open_ar, account_credit, balance FROM billing.account_balances WHERE account_id = 2"
                       ).fetchone() == (D("12.350"), D(0), D("0.005"), D("-0.005"))
    assert receivables_imbalances(con) == []


def test_balance_over_the_credit_limit_is_flagged(con):
    account(con, 2, credit_limit="100.00")
    document(con, "INV-2025-000001", "150.00", FEB1, account_id=2)
    apply_payments(con, at=AT)
    over = lambda: account_balances(con).filter("account_id = 2").select("balance, over_credit_limit").fetchone()  # noqa: E731
    assert over() == (D("150.00"), True)  # 150.00 > 100.00
    pay(con, 1, "60.00", date(2025, 2, 10), account_id=2)
    apply_payments(con, at=AT)
    assert over() == (D("90.00"), False)  # 150.00 - 60.00 = 90.00 <= 100.00


def test_aging_on_a_fixed_date_puts_each_invoice_in_its_bucket(con):
    as_of = date(2025, 6, 30)
    for n, (days_past_due, total) in enumerate([(-15, "1.00"), (30, "2.00"), (45, "4.00"), (75, "8.00"), (120, "16.00")], 1):
        due = as_of - timedelta(days_past_due)  # due 2025-07-15, 05-31, 05-16, 04-16, 03-02
        document(con, f"INV-2025-{n:06d}", total, due - timedelta(30), due=due)
    pay(con, 1, "0.50", date(2025, 7, 10), invoice_number="INV-2025-000005")  # received after as_of: not in the aging
    pay(con, 2, "3.00", date(2025, 6, 1), invoice_number="INV-2025-000004")  # 8.00 - 3.00 = 5.00 open on as_of
    apply_payments(con, at=AT)
    # current 1.00 | 1-30: 2.00 | 31-60: 4.00 | 61-90: 8.00 - 3.00 = 5.00 | over 90: 16.00; open 1 + 2 + 4 + 5 + 16 = 28.00
    expected = (date(2025, 6, 1), as_of, 1, "USD", D("1.00"), D("2.00"), D("4.00"), D("5.00"), D("16.00"), D("28.00"), D(0))
    assert ar_aging(con, as_of).fetchall() == [expected]
    assert ar_aging(con, date(2025, 7, 10)).fetchone()[8:10] == (D("15.50"), D("27.50"))  # 16.00 - 0.50; 28.00 - 0.50
    add_rows(con, "ledger.finalized_months", [dict(billing_month=date(2025, 6, 1), invoices=5, credit_notes=0, drafts_hash="h",
                                                 finalized_at=AT)])
    assert month_end_aging(con).fetchall() == [expected]  # the month end of every finalized month


def test_the_checks_find_ledgers_that_do_not_add_up(con):
    document(con, "INV-2025-000001", "100.00", FEB1)
    pay(con, 1, "100.00", date(2025, 2, 10))
    apply_payments(con, at=AT)
    assert balanced(con)
    # a second application of the same payment, not backed by money: over-applied and out of balance
    con.execute("""INSERT INTO ledger.payment_applications BY NAME
                   SELECT 'bogus' AS application_id, entry_type, account_id, currency, payment_id, document_id, document_number,
                          amount, to_account_credit, applied_on, recorded_at FROM ledger.payment_applications""")
    rebuild(con)
    assert over_applied_documents(con) == ["INV-2025-000001"]  # 200.00 applied to a 100.00 invoice
    assert receivables_imbalances(con) == [(1, "USD", D("100.00"), D("0.00"))]  # 100.00 paid + (-100.00) open


def test_apply_payments_job_in_dagster(warehouse, tmp_path):
    with connect(warehouse) as c:
        account(c, 1)
        document(c, "INV-2025-000001", "100.00", FEB1)
        document(c, "INV-2025-000002", "50.00", MAR1)
        add_rows(c, "ledger.finalized_months", [dict(billing_month=date(2025, m, 1), invoices=1, credit_notes=0, drafts_hash="h",
                                                   finalized_at=AT) for m in (1, 2)])
        pay(c, 1, "120.00", date(2025, 3, 5))
        pay(c, 2, "9.00", date(2025, 3, 6), status="FAILED")
    result = run_apply_payments(warehouse, tmp_path / "landing")
    assert result.success and failed_checks(result) == []
    meta = {m.asset_key.path[-1]: m.metadata for m in result.asset_materializations_for_node("receivables")}
    assert meta["payment_events"]["payments"].data == {"APPLIED": {"USD": {"count": 1, "amount": "120.0000"}},
                                                       "FAILED": {"USD": {"count": 1, "amount": "9.0000"}}}
    # 150.00 invoiced - 120.00 paid = 30.00 open on INV-2
    assert meta["account_balances"]["by_currency"].data == {
        "USD": {"open_ar": "30.0000", "account_credit": "0.0000", "accounts_over_credit_limit": 0}}
    with connect(warehouse) as c:
        assert c.execute("SELECT document_number, status, open_amount FROM billing.document_status ORDER BY 1").fetchall() == [
            ("INV-2025-000001", "PAID", D(0)), ("INV-2025-000002", "PARTIALLY_PAID", D("30.00"))]
        # month ends Jan 31 and Feb 28: only INV-1 (issued Feb 1) is open on Feb 28, not yet due (due Mar 3)
        assert c.execute("SELECT billing_month, as_of, current_amount FROM billing.ar_aging").fetchall() == [
            (date(2025, 2, 1), date(2025, 2, 28), D("100.00"))]
    again = run_apply_payments(warehouse, tmp_path / "landing")
    assert again.success
    with connect(warehouse) as c:
        assert c.execute("SELECT count(*) FROM ledger.payment_applications").fetchone()[0] == 2


RECEIVABLES_TABLES = ["core.payments", "core.billing_accounts", "ledger.documents", "ledger.document_lines", "ledger.voids",
                      "ledger.payment_events", "ledger.payment_applications", "billing.document_status",
                      "billing.account_balances"]


def reference_allocation(invoices: list[tuple], payments: list[tuple]) -> tuple[dict, D]:
    """The rules played one payment at a time (a test model): referenced invoice first, then oldest open invoices
    issued by the day received, the rest to credit; finally credit pays what is still open, oldest first."""
    open_ = {n: D(total) for n, total, _ in invoices}
    issued = {n: day for n, _, day in invoices}
    in_order = sorted(payments, key=lambda p: (p[2], p[0]))  # by day received, then id
    rest = {}
    for pid, amount, day, ref in in_order:  # every payment's reference first
        take = min(D(amount), open_[ref]) if ref in open_ else D(0)
        if ref in open_:
            open_[ref] -= take
        rest[pid] = D(amount) - take
    credit_ = D(0)
    for pid, amount, day, ref in in_order:
        left = rest[pid]
        for n in sorted(open_):  # numbers in issue (= due) order
            if issued[n] > day:
                break
            take = min(left, open_[n])
            open_[n] -= take
            left -= take
        credit_ += left
    for n in sorted(open_):
        take = min(credit_, open_[n])
        open_[n] -= take
        credit_ -= take
    return open_, credit_


amounts = st.integers(min_value=1, max_value=20_000).map(lambda cents: f"{cents / 100:.2f}")


@settings(max_examples=20, deadline=None, phases=[Phase.explicit, Phase.generate])
@given(invoices=st.lists(st.tuples(amounts, st.integers(0, 90)), min_size=1, max_size=5),
       payments=st.lists(st.tuples(amounts, st.integers(0, 120), st.integers(0, 6)), max_size=6))
def test_set_based_allocation_equals_paying_one_payment_at_a_time(invoices, payments):
    con = duckdb.connect()
    create_tables(con, RECEIVABLES_TABLES)
    account(con, 1)
    start = date(2025, 1, 1)
    invs = [(f"INV-2025-{n:06d}", total, start + timedelta(d)) for n, (total, d) in enumerate(sorted(invoices, key=lambda i: i[1]), 1)]
    for number, total, day in invs:
        document(con, number, total, day)
    pays = [(pid, amount, start + timedelta(d), f"INV-2025-{ref:06d}") for pid, (amount, d, ref) in enumerate(payments, 1)]
    for pid, amount, day, ref in pays:
        pay(con, pid, amount, day, invoice_number=ref)
    apply_payments(con, at=AT)
    open_, credit_ = reference_allocation(invs, pays)
    assert {n: s[1] for n, s in status(con).items()} == open_
    assert credit(con) == credit_
    assert balanced(con)
    assert apply_payments(con, at=AT) == {"payments": {}, "applications": {}}


@settings(max_examples=10, deadline=None, phases=[Phase.explicit, Phase.generate])
@given(steps=st.lists(st.tuples(st.sampled_from(["invoice", "credit_note", "pay", "fail", "refund", "void"]), amounts,
                                st.integers(0, 5)), min_size=1, max_size=10))
def test_the_ledger_balances_after_any_history_in_batches(steps):
    con = duckdb.connect()
    create_tables(con, RECEIVABLES_TABLES)
    account(con, 1)
    day = date(2025, 1, 1)
    numbers, paid, voided = [], [], set()
    for n, (what, amount, pick) in enumerate(steps, 1):
        day += timedelta(7)
        if what in ("invoice", "credit_note"):
            number = f"{'INV' if what == 'invoice' else 'CN'}-2025-{n:06d}"
            corrects = numbers[pick % len(numbers)] if numbers and what == "credit_note" else None
            document(con, number, amount if what == "invoice" else f"-{amount}", day, corrects=corrects)
            numbers += [number] if what == "invoice" else []
        elif what in ("pay", "fail"):
            pay(con, n, amount, day, status="SUCCEEDED" if what == "pay" else "FAILED")
            paid += [n] if what == "pay" else []
        elif what == "refund" and paid:
            payment_becomes(con, paid.pop(pick % len(paid)), "REFUNDED", day)
        elif what == "void" and set(numbers) - voided:
            number = sorted(set(numbers) - voided)[pick % len(set(numbers) - voided)]
            void(con, number, day)
            voided.add(number)
        apply_payments(con, at=AT)
        assert balanced(con)
    assert apply_payments(con, at=AT) == {"payments": {}, "applications": {}}
