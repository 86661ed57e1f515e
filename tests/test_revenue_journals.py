"""The journal of the open months (pipelines/revenue/journals.py, docs/journals.md): every entry of the chart of
accounts on hand-computed fixtures of the ledger and of the revenue.performance_obligations / revenue.schedule
contract tables (arithmetic in the comments), closed months posted and never re-booked.

The fixture helpers here (``books``, ``fill``, ``obligation``, ``build``, ``close``) are shared with
tests/test_revenue_reports.py.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import duckdb

from domain import install_macros
from domain.periods import month_literal
from pipelines.revenue.checks import revenue_problems
from pipelines.revenue.close import DERIVED_TABLES as REVENUE_TABLES
from pipelines.revenue.close import close_month, closed_month_row, refresh
from pipelines.revenue.journals import journal_rows
from pipelines.revenue.reports import (
    contract_balance_rows,
    rollforward_rows,
    trial_balance_rows,
    waterfall_rows,
)
from warehouse.ddl import create_tables
from warehouse.fixtures import create_table_with_rows
from tests.test_revenue_obligations import DEFAULTS as CORE
from tests.test_revenue_obligations import PRODUCTS, estimate_id
from warehouse.writer import write

JAN, FEB, MAR = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)

DEFAULTS = {
    "ledger.documents": {"document_type": "INVOICE", "series": "INV", "issue_year": 2025, "sequence_no": 1,
                         "account_id": 1, "currency": "USD", "line_count": 1, "discount_total": 0, "coupon_total": 0,
                         "tax_total": 0, "content_hash": "h", "finalized_at": "2025-01-01"},
    "ledger.voids": {"document_type": "INVOICE", "account_id": 1, "currency": "USD", "reason": "wrong account",
                     "voided_at": "2025-01-01"},
    "ledger.payment_applications": {"account_id": 1, "currency": "USD", "to_account_credit": 0,
                                    "recorded_at": "2025-01-01"},
    "ledger.payment_events": {"account_id": 1, "currency": "USD", "received_at": "2025-01-01",
                              "processed_at": "2025-01-01"},
    "ledger.finalized_months": {"invoices": 1, "credit_notes": 0, "drafts_hash": "h", "finalized_at": "2025-01-01"},
    "core.orders": {"order_number": "O1", "account_id": 1, "order_type": "NEW_SERVICE", "status": "CONFIRMED",
                    "effective_date": "2025-01-01"},
}
DERIVED = ("revenue.open_journal_lines", "revenue.contract_balances", "revenue.deferred_rollforward", "revenue.waterfall",
           "revenue.trial_balance")


def fill(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    """Append plain rows (exact decimals, the table's test defaults) to contract table ``table``."""
    given = create_table_with_rows(con, table, rows, DEFAULTS.get(table), schema="given")
    con.execute(f"INSERT INTO {table} SELECT * FROM {given}; DROP TABLE {given}")


def books(**rows: list[dict]) -> duckdb.DuckDBPyConnection:
    """A warehouse of empty contract tables, filled with ``rows`` per table (``ledger_documents=[...]``)."""
    con = install_macros(duckdb.connect())
    create_tables(con)
    for key, table_rows in rows.items():
        fill(con, key.replace("_", ".", 1), table_rows)
    return con


def doc(document_id: str, issue_date: str, net: str, tax: str = "0", **extra) -> dict:
    """A ledger document: total = net + tax (a credit note: negative amounts)."""
    total = D(net) + D(tax)
    return {"document_id": document_id, "document_number": extra.pop("document_number", document_id),
            "billing_month": issue_date[:8] + "01", "period_start": issue_date, "period_end": issue_date,
            "issue_date": issue_date, "due_date": issue_date, "subtotal": net, "net_total": net, "tax_total": tax,
            "total": total, **extra}


def obligation(obligation_id: str, billed_month: date, billed: str, schedule: dict[date, str], *, allocated=None,
               contract_id: str = "ACC-1", account_id: int = 1, currency: str = "USD", product_line: str = "MOBILE",
               kind: str = "SERVICE", document_id: str | None = None) -> tuple[dict, list[dict]]:
    """An obligation row and its schedule rows (scheduled per service month, nothing posted, booked in the month)."""
    allocated = billed if allocated is None else allocated
    assert sum(D(a) for a in schedule.values()) == D(allocated), "a schedule sums to its obligation"
    common = {"obligation_id": obligation_id, "contract_id": contract_id, "account_id": account_id,
              "currency": currency, "obligation_kind": kind, "product_line": product_line}
    months = sorted(schedule)
    start, end = months[0], date(months[-1].year + months[-1].month // 12, months[-1].month % 12 + 1, 1)
    row = {**common, "document_id": document_id, "line_id": obligation_id, "pattern": "RATABLE",
           "recognition_start": start, "recognition_end": end, "spread_days": (end - start).days,
           "billed_month": billed_month, "billed_amount": billed, "allocated_amount": allocated}
    cumulative, rows = D(0), []
    for m in months:
        cumulative += D(schedule[m])
        rows.append({**common, "service_month": m, "scheduled_amount": schedule[m], "cumulative_amount": cumulative,
                     "posted_amount": 0, "open_amount": schedule[m], "booked_month": m})
    return row, rows


def add_obligations(con: duckdb.DuckDBPyConnection, *obligations: tuple[dict, list[dict]]) -> None:
    fill(con, "revenue.performance_obligations", [o for o, _ in obligations])
    fill(con, "revenue.schedule", [s for _, rows in obligations for s in rows])


def build(con: duckdb.DuckDBPyConnection, first_open: date, run_id: str = "run-1") -> None:
    """Write the derived tables of this module in the order the revenue asset writes them (each reads the ones
    before it); the schedule's posted / open / booked amounts follow the closed months (engineer B's rule)."""
    con.execute(f"""
        UPDATE revenue.schedule s SET posted_amount = coalesce(p.posted, 0), open_amount = s.scheduled_amount - coalesce(p.posted, 0),
               booked_month = greatest(s.service_month, DATE '{first_open}')
        FROM (SELECT s2.obligation_id, s2.service_month, sum(r.amount) AS posted FROM revenue.schedule s2
              LEFT JOIN revenue.recognized r ON r.obligation_id = s2.obligation_id AND r.concerns_month = s2.service_month
              GROUP BY ALL) p
        WHERE p.obligation_id = s.obligation_id AND p.service_month = s.service_month""")
    for table, rows in zip(DERIVED, (journal_rows(con, first_open, run_id), contract_balance_rows(con, first_open),
                                     rollforward_rows(con, first_open), waterfall_rows(con, first_open),
                                     trial_balance_rows(con, first_open))):
        write(con, [(table, con.sql(rows), "true")])


def close(con: duckdb.DuckDBPyConnection, month: date) -> None:
    """Post ``month`` as close_month does: its open journal, its schedule's open amounts, the closed month (its counts,
    totals per currency and hash as close_month records them)."""
    con.execute(f"""
        INSERT INTO revenue.journal_lines SELECT * FROM revenue.open_journal_lines WHERE accounting_month = DATE '{month}';
        INSERT INTO revenue.recognized
        SELECT booked_month, obligation_id, contract_id, account_id, currency, obligation_kind, product_line, service_month,
               open_amount, service_month < booked_month, 'close' FROM revenue.schedule
        WHERE booked_month = DATE '{month}' AND open_amount <> 0;
        INSERT INTO revenue.closed_months {closed_month_row(month_literal(month), "TIMESTAMP '2025-01-01'", "'close'")}""")


def lines(con: duckdb.DuckDBPyConnection, where: str = "true", table: str = "revenue.open_journal_lines") -> list[tuple]:
    """(month, entry_type, account, debit, credit, concerns_month) of the journal lines matching ``where``."""
    return con.execute(f"""
        SELECT accounting_month, entry_type, account, debit, credit, concerns_month FROM {table} WHERE {where}
        ORDER BY accounting_month, entry_type, entry_id, account""").fetchall()


def balances(con: duckdb.DuckDBPyConnection, month: date, currency: str = "USD") -> dict[str, D]:
    """Closing balance (debit positive) per account in revenue.trial_balance."""
    return dict(con.execute("""SELECT account, closing_balance FROM revenue.trial_balance
                               WHERE accounting_month = ? AND currency = ? AND closing_balance <> 0""",
                            [month, currency]).fetchall())


def test_invoice_with_tax_billed_in_advance():
    # Issued Jan 15 for [Jan 15, Feb 15), 31 days: net 31.00, tax 31.00 x 7.25 % = 2.2475 -> 2.25, total 33.25.
    # Ratable: January 17 days = 31.00 x 17/31 = 17.00; February 14 days = 14.00.
    con = books(ledger_documents=[doc("INV-1", "2025-01-15", "31.00", "2.25")],
                ledger_finalized_months=[{"billing_month": JAN}, {"billing_month": FEB}])
    add_obligations(con, obligation("L1", JAN, "31.00", {JAN: "17.00", FEB: "14.00"}, document_id="INV-1"))
    build(con, JAN)
    assert lines(con, "entry_type = 'BILLING'") == [
        (JAN, "BILLING", "AR", D("33.25"), 0, JAN),
        (JAN, "BILLING", "DEFERRED_REVENUE", 0, D("31.00"), JAN),
        (JAN, "BILLING", "TAX_PAYABLE", 0, D("2.25"), JAN),
    ]
    assert lines(con, "entry_type = 'RECOGNITION'") == [
        (JAN, "RECOGNITION", "DEFERRED_REVENUE", D("17.00"), 0, JAN),
        (JAN, "RECOGNITION", "REVENUE:MOBILE", 0, D("17.00"), JAN),
        (FEB, "RECOGNITION", "DEFERRED_REVENUE", D("14.00"), 0, FEB),
        (FEB, "RECOGNITION", "REVENUE:MOBILE", 0, D("14.00"), FEB),
    ]
    # Jan 31: deferred 31.00 - 17.00 = 14.00 (a credit); Feb 28: 14.00 - 14.00 = 0.
    assert balances(con, JAN) == {"AR": D("33.25"), "TAX_PAYABLE": D("-2.25"), "DEFERRED_REVENUE": D("-14.00"),
                                  "REVENUE:MOBILE": D("-17.00")}
    assert balances(con, FEB) == {"AR": D("33.25"), "TAX_PAYABLE": D("-2.25"), "REVENUE:MOBILE": D("-31.00")}
    assert lines(con, "entry_type = 'CONTRACT_BALANCE'") == []  # never a debit position


def test_usage_in_arrears_is_unbilled_ar_until_invoiced():
    # Usage consumed in January 12.00, invoiced Feb 1 with tax 12.00 x 7.25 % = 0.87: total 12.87.
    con = books(ledger_documents=[doc("INV-2", "2025-02-01", "12.00", "0.87")],
                ledger_finalized_months=[{"billing_month": JAN}])
    add_obligations(con, obligation("U1", FEB, "12.00", {JAN: "12.00"}, kind="USAGE", document_id="INV-2"))
    build(con, JAN)
    assert lines(con, "entry_type IN ('RECOGNITION', 'CONTRACT_BALANCE')") == [
        (JAN, "CONTRACT_BALANCE", "DEFERRED_REVENUE", 0, D("12.00"), JAN),   # position 0 - 12.00: unbilled 12.00
        (JAN, "CONTRACT_BALANCE", "UNBILLED_AR", D("12.00"), 0, JAN),
        (JAN, "RECOGNITION", "DEFERRED_REVENUE", D("12.00"), 0, JAN),
        (JAN, "RECOGNITION", "REVENUE:MOBILE", 0, D("12.00"), JAN),
        (FEB, "CONTRACT_BALANCE", "DEFERRED_REVENUE", D("12.00"), 0, FEB),   # billed 12.00 - 12.00: back to 0
        (FEB, "CONTRACT_BALANCE", "UNBILLED_AR", 0, D("12.00"), FEB),
    ]
    assert balances(con, JAN) == {"UNBILLED_AR": D("12.00"), "REVENUE:MOBILE": D("-12.00")}  # deferred 12 - 12 = 0
    assert balances(con, FEB) == {"AR": D("12.87"), "TAX_PAYABLE": D("-0.87"), "REVENUE:MOBILE": D("-12.00")}


def test_late_usage_after_close_is_a_correction_concerning_the_closed_month():
    # January (usage 12.00 of the example above) is closed; 5.00 more January usage arrives, invoiced Feb 1 (no tax).
    con = books(ledger_documents=[doc("INV-2", "2025-02-01", "12.00", "0.87")],
                ledger_finalized_months=[{"billing_month": JAN}])
    add_obligations(con, obligation("U1", FEB, "12.00", {JAN: "12.00"}, kind="USAGE"))
    build(con, JAN)
    close(con, JAN)
    posted_january = lines(con, table="revenue.journal_lines")
    fill(con, "ledger.documents", [doc("INV-3", "2025-02-01", "5.00", sequence_no=2)])
    add_obligations(con, obligation("U2", FEB, "5.00", {JAN: "5.00"}, kind="USAGE"))
    build(con, FEB, run_id="run-2")
    assert lines(con, table="revenue.journal_lines") == posted_january  # January untouched
    assert lines(con, "entry_type = 'RECOGNITION'") == [
        (FEB, "RECOGNITION", "DEFERRED_REVENUE", D("5.00"), 0, JAN),
        (FEB, "RECOGNITION", "REVENUE:MOBILE", 0, D("5.00"), JAN),
    ]
    # January's BILLING of INV-2 is not booked twice: both invoices in February; unbilled 12.00 cleared.
    assert lines(con, "entry_type IN ('BILLING', 'CONTRACT_BALANCE') AND account <> 'TAX_PAYABLE'") == [
        (FEB, "BILLING", "AR", D("12.87"), 0, FEB), (FEB, "BILLING", "DEFERRED_REVENUE", 0, D("12.00"), FEB),
        (FEB, "BILLING", "AR", D("5.00"), 0, FEB), (FEB, "BILLING", "DEFERRED_REVENUE", 0, D("5.00"), FEB),
        (FEB, "CONTRACT_BALANCE", "DEFERRED_REVENUE", D("12.00"), 0, FEB),
        (FEB, "CONTRACT_BALANCE", "UNBILLED_AR", 0, D("12.00"), FEB),
    ]
    assert con.execute("SELECT description FROM revenue.open_journal_lines WHERE account = 'REVENUE:MOBILE'").fetchone() \
        == ("Revenue MOBILE for 2025-01 (correction of a closed month)",)
    assert con.execute("SELECT corrections, recognized FROM revenue.deferred_rollforward WHERE accounting_month = ?",
                       [FEB]).fetchone() == (D("5.00"), D("0"))


def credit_note_after_partial_service(documents=(), obligations=()) -> duckdb.DuckDBPyConnection:
    """EUR, VAT 20 %. INV-3 issued Jan 15 for [Jan 15, Feb 15): net 31.00, tax 6.20, total 37.20; January (closed)
    recognized 17 days = 17.00. Cancelled on Jan 25: credit note CN-1 issued Feb 1 for [Jan 25, Feb 15), 21 days:
    net -21.00, tax -4.20, total -25.20; its schedule: January 7 days = -7.00, February 14 days = -14.00.
    ``documents`` and ``obligations`` are January's others."""
    eur = {"currency": "EUR", "contract_id": "ACC-3", "account_id": 3}
    con = books(ledger_documents=[doc("INV-3", "2025-01-15", "31.00", "6.20", currency="EUR", account_id=3), *documents],
                ledger_finalized_months=[{"billing_month": JAN}])
    add_obligations(con, obligation("L3", JAN, "31.00", {JAN: "17.00", FEB: "14.00"}, **eur), *obligations)
    build(con, JAN)
    close(con, JAN)
    fill(con, "ledger.documents", [doc("CN-1", "2025-02-01", "-21.00", "-4.20", currency="EUR", account_id=3,
                                       document_type="CREDIT_NOTE", series="CN")])
    add_obligations(con, obligation("C3", FEB, "-21.00", {JAN: "-7.00", FEB: "-14.00"}, **eur))
    build(con, FEB)
    return con


def test_credit_note_after_partial_service_reverses_revenue_to_contra_and_deferred():
    con = credit_note_after_partial_service()
    assert lines(con) == [
        (FEB, "BILLING", "AR", 0, D("25.20"), FEB),
        (FEB, "BILLING", "DEFERRED_REVENUE", D("21.00"), 0, FEB),      # the 14 February days leave deferred revenue
        (FEB, "BILLING", "TAX_PAYABLE", D("4.20"), 0, FEB),
        (FEB, "RECOGNITION", "CONTRA_REVENUE:MOBILE", D("7.00"), 0, JAN),  # the 7 January days already recognized
        (FEB, "RECOGNITION", "DEFERRED_REVENUE", 0, D("7.00"), JAN),
        # February: 14.00 - 14.00 = 0, no entry.
    ]
    # Feb 28: deferred 14.00 - 21.00 + 7.00 = 0; AR 37.20 - 25.20 = 12.00; tax 6.20 - 4.20 = 2.00.
    assert balances(con, FEB, "EUR") == {"AR": D("12.00"), "TAX_PAYABLE": D("-2.00"), "REVENUE:MOBILE": D("-17.00"),
                                         "CONTRA_REVENUE:MOBILE": D("7.00")}


def test_void_reverses_the_billing_and_the_revenue_recognized():
    # INV-4 issued Jan 15 for [Jan 15, Feb 15) 31.00 (no tax), January closed with 17.00 recognized; voided Feb 3:
    # the VOID- obligation -31.00 reverses the schedule: January -17.00 (booked in February), February -14.00.
    con = books(ledger_documents=[doc("INV-4", "2025-01-15", "31.00")],
                ledger_finalized_months=[{"billing_month": JAN}])
    add_obligations(con, obligation("L4", JAN, "31.00", {JAN: "17.00", FEB: "14.00"}))
    build(con, JAN)
    close(con, JAN)
    fill(con, "ledger.voids", [{"document_id": "INV-4", "document_number": "INV-4", "total": "31.00",
                                "voided_on": "2025-02-03"}])
    add_obligations(con, obligation("VOID-L4", FEB, "-31.00", {JAN: "-17.00", FEB: "-14.00"}))
    build(con, FEB)
    assert lines(con) == [
        (FEB, "RECOGNITION", "CONTRA_REVENUE:MOBILE", D("17.00"), 0, JAN),
        (FEB, "RECOGNITION", "DEFERRED_REVENUE", 0, D("17.00"), JAN),
        (FEB, "VOID", "AR", 0, D("31.00"), FEB),
        (FEB, "VOID", "DEFERRED_REVENUE", D("31.00"), 0, FEB),
    ]
    assert balances(con, FEB) == {"REVENUE:MOBILE": D("-17.00"), "CONTRA_REVENUE:MOBILE": D("17.00")}


def test_subsidized_handset_creates_a_contract_asset_that_runs_off():
    # Order 50, 24-month term: handset SSP 480.00 billed 120.00, plan 30.00/month (SSP 30.00 x 24 = 720.00).
    # Transaction price 120.00 + 720.00 = 840.00; handset 840 x 480/1200 = 336.00, service 504.00; r = 504/720 = 0.7:
    # each 30.00 month is allocated 21.00. INV-5 (Jan 1): handset 120.00 + January 30.00; INV-6 (Feb 1): 30.00.
    term = {"contract_id": "ORD-50"}
    con = books(ledger_documents=[doc("INV-5", "2025-01-01", "150.00"), doc("INV-6", "2025-02-01", "30.00")],
                ledger_finalized_months=[{"billing_month": JAN}, {"billing_month": FEB}],
                core_orders=[{"order_id": 50, "contract_term_months": 24}])
    add_obligations(con, obligation("G1", JAN, "120.00", {JAN: "336.00"}, allocated="336.00", kind="GOOD",
                                    product_line="DEVICE", **term),
                    obligation("S1", JAN, "30.00", {JAN: "21.00"}, allocated="21.00", **term),
                    obligation("S2", FEB, "30.00", {FEB: "21.00"}, allocated="21.00", **term))
    build(con, JAN)
    # Jan 31: billed 150.00 - recognized 357.00 = -207.00: a contract asset of 207.00; Feb 28: 180.00 - 378.00 = -198.00.
    assert lines(con, "entry_type = 'CONTRACT_BALANCE'") == [
        (JAN, "CONTRACT_BALANCE", "CONTRACT_ASSET", D("207.00"), 0, JAN),
        (JAN, "CONTRACT_BALANCE", "DEFERRED_REVENUE", 0, D("207.00"), JAN),
        (FEB, "CONTRACT_BALANCE", "CONTRACT_ASSET", 0, D("9.00"), FEB),     # runs off 30.00 - 21.00 = 9.00 a month
        (FEB, "CONTRACT_BALANCE", "DEFERRED_REVENUE", D("9.00"), 0, FEB),
    ]
    assert balances(con, JAN) == {"AR": D("150.00"), "CONTRACT_ASSET": D("207.00"), "REVENUE:DEVICE": D("-336.00"),
                                  "REVENUE:MOBILE": D("-21.00")}  # deferred -150 + 357 - 207 = 0
    assert con.execute("SELECT accounting_month, billed_to_date, recognized_to_date, contract_asset, unbilled_ar "
                       "FROM revenue.contract_balances ORDER BY 1").fetchall() == [
        (JAN, D("150.00"), D("357.00"), D("207.00"), 0), (FEB, D("180.00"), D("378.00"), D("198.00"), 0)]


# Payments: one application of each entry type, with the signs pipelines/receivables/payments.py gives them.
# Account 1 (USD): INV-A 100.00 (Feb 1), INV-B 80.00 (Mar 1), CN-C -30.00 (Mar 1), CN-D -25.00 (Mar 2), INV-E 40.00
# (Mar 3); INV-A voided Mar 15, CN-D voided Mar 16. Payments 7 (130.00), 8 (50.00, refunded), 9 (40.00, refunded).
PAYMENT_DOCUMENTS = [doc("INV-A", "2025-02-01", "100.00"), doc("INV-B", "2025-03-01", "80.00"),
                     doc("CN-C", "2025-03-01", "-30.00", document_type="CREDIT_NOTE"),
                     doc("CN-D", "2025-03-02", "-25.00", document_type="CREDIT_NOTE"), doc("INV-E", "2025-03-03", "40.00")]
PAYMENT_VOIDS = [{"document_id": "INV-A", "document_number": "INV-A", "total": "100.00", "voided_on": "2025-03-15"},
                 {"document_id": "CN-D", "document_number": "CN-D", "document_type": "CREDIT_NOTE", "total": "-25.00",
                  "voided_on": "2025-03-16"}]
# (application_id, entry_type, payment_id, source_document_id, document_id, amount, to_account_credit, applied_on)
PAYMENT_APPLICATIONS = [
    ("a01", "PAYMENT", 7, None, "INV-A", "100.00", "0", "2025-02-05"),
    ("a02", "OVERPAYMENT", 7, None, None, "30.00", "30.00", "2025-02-05"),
    ("a03", "CREDIT_APPLIED", None, None, "INV-B", "30.00", "-30.00", "2025-03-01"),
    ("a04", "CREDIT_NOTE", None, "CN-C", "INV-B", "30.00", "0", "2025-03-01"),
    ("a05", "CREDIT_NOTE", None, "CN-D", "INV-B", "20.00", "0", "2025-03-02"),
    ("a06", "CREDIT_NOTE", None, "CN-D", None, "5.00", "5.00", "2025-03-02"),
    ("a07", "OVERPAYMENT", 8, None, None, "50.00", "50.00", "2025-03-10"),
    ("a08", "REFUND", 8, None, None, "-50.00", "-50.00", "2025-03-12"),
    ("a09", "PAYMENT", 9, None, "INV-E", "40.00", "0", "2025-03-04"),
    ("a10", "REFUND", 9, None, "INV-E", "-40.00", "0", "2025-03-13"),
    ("a11", "VOID_REVERSAL", 7, None, "INV-A", "-100.00", "100.00", "2025-03-15"),
    ("a12", "VOID_REVERSAL", None, "CN-D", "INV-B", "-20.00", "0", "2025-03-16"),
    ("a13", "VOID_REVERSAL", None, "CN-D", None, "-5.00", "-5.00", "2025-03-16"),
]
PAYMENT_EVENTS = [{"payment_id": 7, "status": "SUCCEEDED", "amount": "130.00", "outcome": "APPLIED"},
                  {"payment_id": 8, "status": "SUCCEEDED", "amount": "50.00", "outcome": "APPLIED"},
                  {"payment_id": 8, "status": "REFUNDED", "amount": "50.00", "outcome": "REFUNDED"},
                  {"payment_id": 9, "status": "SUCCEEDED", "amount": "40.00", "outcome": "APPLIED"},
                  {"payment_id": 9, "status": "REFUNDED", "amount": "40.00", "outcome": "REFUNDED"}]


def payment_books() -> duckdb.DuckDBPyConnection:
    keys = ("application_id", "entry_type", "payment_id", "source_document_id", "document_id", "amount",
            "to_account_credit", "applied_on")
    con = books(ledger_documents=PAYMENT_DOCUMENTS, ledger_voids=PAYMENT_VOIDS, ledger_payment_events=PAYMENT_EVENTS,
                 ledger_payment_applications=[{**dict(zip(keys, a)), "document_number": a[4]} for a in PAYMENT_APPLICATIONS],
                 core_billing_accounts=[{"account_id": 1, "customer_id": 1, "account_number": "AC1", "billing_cycle": "MONTHLY",
                                         "bill_cycle_day": 1, "payment_terms_days": 30, "currency": "USD",
                                         "status": "ACTIVE"}])
    # Each document recognized in its month; the voids reverse INV-A's February and CN-D's March.
    add_obligations(con, *(obligation(d["document_id"], m, str(d["net_total"]), {m: str(d["net_total"])})
                           for d in PAYMENT_DOCUMENTS for m in [date.fromisoformat(d["billing_month"])]),
                    obligation("VOID-INV-A", MAR, "-100.00", {FEB: "-100.00"}),
                    obligation("VOID-CN-D", MAR, "25.00", {MAR: "25.00"}))
    return con


def test_payments_of_every_entry_type():
    con = payment_books()
    build(con, FEB)
    got = con.execute("""SELECT source_id, account, debit, credit FROM revenue.open_journal_lines
                         WHERE entry_type = 'PAYMENT' ORDER BY source_id, account""").fetchall()
    assert got == [
        ("a01", "AR", 0, D("100.00")), ("a01", "CASH", D("100.00"), 0),               # payment to an invoice
        ("a02", "CASH", D("30.00"), 0), ("a02", "CUSTOMER_CREDIT", 0, D("30.00")),    # over-payment to credit
        ("a03", "AR", 0, D("30.00")), ("a03", "CUSTOMER_CREDIT", D("30.00"), 0),      # credit applied
        # a04, a05: a credit note to an invoice moves AR to AR: no entry
        ("a06", "AR", D("5.00"), 0), ("a06", "CUSTOMER_CREDIT", 0, D("5.00")),        # credit note to credit
        ("a07", "CASH", D("50.00"), 0), ("a07", "CUSTOMER_CREDIT", 0, D("50.00")),
        ("a08", "CASH", 0, D("50.00")), ("a08", "CUSTOMER_CREDIT", D("50.00"), 0),    # refund out of credit
        ("a09", "AR", 0, D("40.00")), ("a09", "CASH", D("40.00"), 0),
        ("a10", "AR", D("40.00"), 0), ("a10", "CASH", 0, D("40.00")),                 # refund reopens the invoice
        ("a11", "AR", D("100.00"), 0), ("a11", "CUSTOMER_CREDIT", 0, D("100.00")),    # voided invoice's money to credit
        # a12: a voided credit note's money leaves the invoice: AR to AR, no entry
        ("a13", "AR", 0, D("5.00")), ("a13", "CUSTOMER_CREDIT", D("5.00"), 0),        # voided credit note's credit removed
    ]
    assert con.execute("SELECT DISTINCT accounting_month FROM revenue.open_journal_lines WHERE source_id = 'a01'"
                       ).fetchall() == [(FEB,)]
    # Cash 100 + 30 + 50 - 50 + 40 - 40 = 130.00; credit 30 - 30 + 5 + 50 - 50 + 100 - 5 = 100.00;
    # AR: billed 100 + 80 - 30 - 25 + 40 = 165, voids -100 + 25, applications -100 - 30 + 5 - 40 + 40 + 100 - 5: 60.00.
    # Revenue: billed 165 - 100 + 25 = 90.00, all recognized.
    assert balances(con, MAR) == {"AR": D("60.00"), "CASH": D("130.00"), "CUSTOMER_CREDIT": D("-100.00"),
                                  "REVENUE:MOBILE": D("-90.00")}


def test_closed_month_entries_are_not_booked_again_and_late_ones_go_to_the_open_month():
    # A payment of Jan 20 posted with January; one of Jan 30 applied after January closed is booked in February.
    con = books(ledger_documents=[doc("INV-1", "2025-01-01", "10.00")],
                ledger_payment_applications=[{"application_id": "p1", "entry_type": "PAYMENT", "payment_id": 1,
                                              "document_id": "INV-1", "amount": "4.00", "applied_on": "2025-01-20"}])
    add_obligations(con, obligation("L1", JAN, "10.00", {JAN: "10.00"}))
    build(con, JAN)
    close(con, JAN)
    fill(con, "ledger.payment_applications", [{"application_id": "p2", "entry_type": "PAYMENT", "payment_id": 2,
                                               "document_id": "INV-1", "amount": "6.00", "applied_on": "2025-01-30"}])
    build(con, FEB)
    assert lines(con) == [(FEB, "PAYMENT", "AR", 0, D("6.00"), JAN), (FEB, "PAYMENT", "CASH", D("6.00"), 0, JAN)]
    assert balances(con, FEB) == {"CASH": D("10.00"), "REVENUE:MOBILE": D("-10.00")}
    assert con.execute("SELECT DISTINCT month_status FROM revenue.trial_balance WHERE accounting_month = ?",
                       [JAN]).fetchall() == [("CLOSED",)]


# The estimates of the phones: the lines of the February run (its draft INV-AC-1-20250215) for order items 600 and 610.
PHONE_600, PHONE_610 = (estimate_id("INV-AC-1-20250215", f"ONE_TIME|{item}") for item in (600, 610))


def delivered_device(coupon: str = "0") -> tuple[duckdb.DuckDBPyConnection, dict]:
    """The engine on a bill-cycle-15 account (USD, no tax): INV-1 (Jan 15) bills [Jan 15, Feb 15) 31.00; order 60's
    phone (599.00) is delivered Jan 20 and order 61's (599.00) Jan 22, order 61 cancelled before January closes.
    January is billed, finalized and closed; INV-2 (Feb 15) then invoices the phone less ``coupon`` and
    [Feb 15, Mar 15) 28.00, and February is finalized. Returns the connection (February refreshed, open) and what
    January's close posted."""

    def given(table, rows):
        defaults = {**CORE.get(table, {}), **DEFAULTS.get(table, {})}
        name = create_table_with_rows(con, table, rows, defaults, schema="given")
        con.execute(f"DELETE FROM {table}; INSERT INTO {table} SELECT * FROM {name}; DROP TABLE {name}")

    def document(document_id, issue_date, lines):
        net = sum(D(line_net) for *_, line_net in lines)
        given_docs.append(doc(document_id, issue_date, str(net), sequence_no=len(given_docs) + 1))
        given_lines.extend({"line_id": f"{document_id}-{i}", "document_id": document_id, "document_number": document_id,
                            "document_type": "INVOICE", "billing_month": issue_date[:8] + "01", "account_id": 1,
                            "line_type": t, "product_id": p, "service_start": s, "service_end": e, "quantity": 1,
                            "amount": a, "discount_amount": 0, "coupon_amount": D(a) - D(n), "net_amount": n,
                            "tax_amount": 0, "total_amount": n, "currency": "USD", "source_ref": ref}
                           for i, (t, p, s, e, ref, a, n) in enumerate(lines))
        given("ledger.documents", given_docs)
        given("ledger.document_lines", given_lines)

    con = books()
    given_docs, given_lines = [], []
    given("core.products", PRODUCTS)
    given("core.billing_accounts", [{"account_id": 1, "bill_cycle_day": 15}])
    orders = [{"order_id": 60, "effective_date": "2025-01-20"}, {"order_id": 61, "effective_date": "2025-01-22"}]
    given("core.orders", orders)
    given("core.order_items", [{"order_item_id": 600, "order_id": 60, "product_id": 7, "unit_price": "599.00"},
                               {"order_item_id": 610, "order_id": 61, "product_id": 7, "unit_price": "599.00"}])
    document("INV-1", "2025-01-15", [("RECURRING", 1, "2025-01-15", "2025-02-15", None, "31.00", "31.00")])
    given("ledger.finalized_months", [{"billing_month": JAN}])
    refresh(con)
    assert {r[0] for r in con.execute("SELECT obligation_id FROM revenue.performance_obligations").fetchall()} == {
        "INV-1-0", PHONE_600, PHONE_610}
    given("core.orders", [orders[0], {**orders[1], "status": "CANCELLED"}])  # the estimate of 610 disappears
    january = close_month(con, JAN)
    net = str(D("599.00") - D(coupon))
    document("INV-2", "2025-02-15", [("ONE_TIME", 7, "2025-01-20", "2025-01-21", "600", "599.00", net),
                                     ("RECURRING", 1, "2025-02-15", "2025-03-15", None, "28.00", "28.00")])
    given("ledger.finalized_months", [{"billing_month": JAN}, {"billing_month": FEB}])
    refresh(con)
    return con, january


def test_a_device_delivered_before_its_invoice_is_revenue_of_its_delivery_month_as_unbilled_ar():
    # January: service 31.00 x 17/31 = 17.00 + the phone's estimate 599.00 = 616.00; order 61's phone is gone with its
    # order (nothing). Contracts at Jan 31: ACC-1 billed 31.00 - 17.00 = 14.00 deferred; ORD-60 0 - 599.00: unbilled AR.
    con, january = delivered_device()
    assert january["totals"]["USD"] == {"revenue": "616.0000", "corrections": "0.0000", "deferred_revenue": "14.0000",
                                        "unbilled_ar": "599.0000", "contract_assets": "0.0000", "ar": "31.0000"}
    good = "SELECT obligation_id, amount FROM revenue.recognized WHERE obligation_kind = 'GOOD'"
    assert con.execute(good).fetchall() == [(PHONE_600, D("599.00"))]
    # February: INV-2 invoices the phone at its estimate: the estimate's posted 599.00 comes back (-599.00) and the line
    # books 599.00, both concerning January: 0, no entry, no contra revenue; UNBILLED_AR 599.00 cleared.
    assert con.execute("""SELECT obligation_id, service_month, scheduled_amount, posted_amount, open_amount, booked_month
                          FROM revenue.schedule WHERE obligation_kind = 'GOOD' ORDER BY 1""").fetchall() == [
        (PHONE_600, JAN, D("0"), D("599.00"), D("-599.00"), FEB),
        ("INV-2-0", JAN, D("599.00"), D("0"), D("599.00"), FEB)]
    assert lines(con, "concerns_month = DATE '2025-01-01' OR account LIKE 'CONTRA%'") == []
    assert lines(con, "entry_type = 'CONTRACT_BALANCE'") == [
        (FEB, "CONTRACT_BALANCE", "DEFERRED_REVENUE", D("599.00"), 0, FEB),
        (FEB, "CONTRACT_BALANCE", "UNBILLED_AR", 0, D("599.00"), FEB)]
    assert revenue_problems(con) == {name: [] for name in revenue_problems(con)}
    # A re-run changes nothing.
    before = {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in REVENUE_TABLES}
    refresh(con)
    assert {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in REVENUE_TABLES} == before
    # February closed: the estimate is gone with its revenue posted and posted back (599.00 - 599.00); the books agree.
    close_month(con, FEB)
    refresh(con)
    assert con.execute("SELECT accounting_month, amount FROM revenue.recognized WHERE obligation_id = ? "
                       "ORDER BY 1", [PHONE_600]).fetchall() == [(JAN, D("599.00")), (FEB, D("-599.00"))]
    assert revenue_problems(con) == {name: [] for name in revenue_problems(con)}


def test_a_device_invoiced_below_its_estimate_books_the_difference_as_a_correction_not_contra_revenue():
    # A 50.00 coupon: INV-2 bills the phone 599.00 - 50.00 = 549.00. February concerning January: 549.00 - 599.00 =
    # -50.00, a negative correction of REVENUE:DEVICE (the estimate's reversal is not a credit to the customer).
    con, _ = delivered_device(coupon="50.00")
    assert lines(con, "concerns_month = DATE '2025-01-01'") == [
        (FEB, "RECOGNITION", "DEFERRED_REVENUE", 0, D("50.00"), JAN),
        (FEB, "RECOGNITION", "REVENUE:DEVICE", D("50.00"), 0, JAN)]
    corrections = "SELECT corrections FROM revenue.deferred_rollforward WHERE accounting_month = ?"
    assert con.execute(corrections, [FEB]).fetchone() == (D("-50.00"),)
    assert revenue_problems(con) == {name: [] for name in revenue_problems(con)}
