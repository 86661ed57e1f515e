"""Roll-forward, trial balance, waterfall, contract balances and the reconciliations of the books with billing and
cash (pipelines/revenue/reports.py, docs/journals.md): hand-computed months in two currencies across a close, each
reconciliation made to fail on a deliberately broken fixture, and a property test over random histories of
documents, credit notes, voids and payments (applied by the real receivables engine)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal as D

import duckdb
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from pipelines.receivables import account_balances, apply_payments, document_status
from pipelines.revenue.reports import (
    ar_mismatches,
    cash_mismatches,
    customer_credit_mismatches,
    deferred_mismatches,
    rollforward_breaks,
    trial_balance_breaks,
    unbalanced_entries,
)
from tests.test_revenue_journals import (
    FEB,
    JAN,
    MAR,
    add_obligations,
    balances,
    books,
    build,
    close,
    credit_note_after_partial_service,
    doc,
    fill,
    obligation,
    payment_books,
)
from warehouse.writer import write

RECONCILIATIONS = (unbalanced_entries, trial_balance_breaks, ar_mismatches, cash_mismatches, customer_credit_mismatches,
                   rollforward_breaks, deferred_mismatches)


def with_receivables(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """billing.document_status and billing.account_balances written by the receivables engine from the ledger."""
    write(con, [("billing.document_status", document_status(con), "true"),
                ("billing.account_balances", account_balances(con), "true")])
    return con


def problems(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
    return {check.__name__: rows for check in RECONCILIATIONS if (rows := check(con))}


def two_currency_books() -> duckdb.DuckDBPyConnection:
    """USD: INV-1 billed in advance (Jan 15, [Jan 15, Feb 15): 31.00 + tax 2.25; January 17 days = 17.00, February
    14.00), January usage 12.00 invoiced Feb 1 (INV-2, tax 0.87) on account 2. EUR: INV-3 (Jan 15, 31.00 + VAT 6.20)
    credited after January closed by CN-1 (Feb 1, [Jan 25, Feb 15): -21.00 - 4.20; January -7.00, February -14.00)."""
    return with_receivables(credit_note_after_partial_service(
        [doc("INV-1", "2025-01-15", "31.00", "2.25"), doc("INV-2", "2025-02-01", "12.00", "0.87", account_id=2)],
        [obligation("L1", JAN, "31.00", {JAN: "17.00", FEB: "14.00"}),
         obligation("U1", FEB, "12.00", {JAN: "12.00"}, contract_id="ACC-2", account_id=2, kind="USAGE")]))


def test_rollforward_per_month_and_currency():
    con = two_currency_books()
    got = con.execute("SELECT * FROM revenue.deferred_rollforward ORDER BY currency, accounting_month").fetchall()
    # (month, currency, opening, billings, recognized, corrections, closing, deferred, unbilled, assets, status)
    assert got == [
        # EUR January: 31.00 billed - 17.00 = 14.00; February: 14.00 - 21.00 (credit note) - 0 (14.00 - 14.00)
        # - (-7.00) (contra revenue for January) = 0.
        (JAN, "EUR", 0, D("31.00"), D("17.00"), 0, D("14.00"), D("14.00"), 0, 0, "CLOSED"),
        (FEB, "EUR", D("14.00"), D("-21.00"), 0, D("-7.00"), 0, 0, 0, 0, "OPEN"),
        # USD January: billed 31.00 (INV-2 is February's), recognized 17.00 + 12.00 = 29.00: net 2.00 =
        # deferred 14.00 (INV-1) - unbilled 12.00 (the usage); February: 2.00 + 12.00 - 14.00 = 0.
        (JAN, "USD", 0, D("31.00"), D("29.00"), 0, D("2.00"), D("14.00"), D("12.00"), 0, "CLOSED"),
        (FEB, "USD", D("2.00"), D("12.00"), D("14.00"), 0, 0, 0, 0, 0, "OPEN"),
    ]


def test_trial_balance_sums_to_zero_per_month_and_currency():
    con = two_currency_books()
    assert con.execute("""SELECT accounting_month, currency, sum(closing_balance), sum(debits) - sum(credits)
                          FROM revenue.trial_balance GROUP BY ALL ORDER BY ALL""").fetchall() == [
        (JAN, "EUR", 0, 0), (JAN, "USD", 0, 0), (FEB, "EUR", 0, 0), (FEB, "USD", 0, 0)]
    got = con.execute("""SELECT account, opening_balance, debits, credits, closing_balance FROM revenue.trial_balance
                         WHERE accounting_month = ? AND currency = 'USD' ORDER BY account""", [FEB]).fetchall()
    assert got == [
        ("AR", D("33.25"), D("12.87"), 0, D("46.12")),                  # 33.25 + 12.87
        # Jan 31: Cr 31.00 billed, Dr 29.00 recognized, Cr 12.00 to unbilled AR = -14.00; February: Dr 14.00 recognized
        # + Dr 12.00 back from unbilled AR, Cr 12.00 INV-2 billed: 0.
        ("DEFERRED_REVENUE", D("-14.00"), D("26.00"), D("12.00"), 0),
        ("REVENUE:MOBILE", D("-29.00"), 0, D("14.00"), D("-43.00")),
        ("TAX_PAYABLE", D("-2.25"), 0, D("0.87"), D("-3.12")),
        ("UNBILLED_AR", D("12.00"), 0, D("12.00"), 0),
    ]  # 46.12 - 43.00 - 3.12 = 0


def test_waterfall_by_billing_and_recognition_month():
    con = two_currency_books()
    assert con.execute("SELECT * FROM revenue.waterfall ORDER BY currency, billed_month, recognition_month").fetchall() == [
        (JAN, JAN, "EUR", D("17.00"), False), (JAN, FEB, "EUR", D("14.00"), False),
        (FEB, FEB, "EUR", D("-21.00"), False),  # the credit note: -7.00 (January, a correction) - 14.00
        (JAN, JAN, "USD", D("17.00"), False), (JAN, FEB, "USD", D("14.00"), False),
        (FEB, JAN, "USD", D("12.00"), False),   # usage billed in February, recognized when consumed
    ]


def test_waterfall_flags_the_forward_schedule():
    # A quarter billed Jan 1 (90.00: 31 + 28 + 31 days at 1.00): nothing happened after January yet.
    con = books(ledger_documents=[doc("INV-Q", "2025-01-01", "90.00")], ledger_finalized_months=[{"billing_month": JAN}])
    add_obligations(con, obligation("Q1", JAN, "90.00", {JAN: "31.00", FEB: "28.00", MAR: "31.00"}))
    build(con, JAN)
    assert con.execute("SELECT recognition_month, amount, is_scheduled FROM revenue.waterfall ORDER BY 1").fetchall() == [
        (JAN, D("31.00"), False), (FEB, D("28.00"), True), (MAR, D("31.00"), True)]
    assert con.execute("SELECT DISTINCT accounting_month FROM revenue.open_journal_lines").fetchall() == [(JAN,)]


def test_contract_balances_omit_settled_contracts_that_did_not_move():
    con = two_currency_books()
    assert con.execute("""SELECT accounting_month, contract_id, billed_to_date, recognized_to_date, contract_liability,
                                 unbilled_ar FROM revenue.contract_balances ORDER BY 2, 1""").fetchall() == [
        (JAN, "ACC-1", D("31.00"), D("17.00"), D("14.00"), 0), (FEB, "ACC-1", D("31.00"), D("31.00"), 0, 0),
        (JAN, "ACC-2", 0, D("12.00"), 0, D("12.00")), (FEB, "ACC-2", D("12.00"), D("12.00"), 0, 0),
        (JAN, "ACC-3", D("31.00"), D("17.00"), D("14.00"), 0), (FEB, "ACC-3", D("10.00"), D("10.00"), 0, 0),
    ]  # ACC-3 February: 31.00 - 21.00 billed, 17.00 - 7.00 + 14.00 - 14.00 recognized


def test_the_books_reconcile():
    assert problems(two_currency_books()) == {}
    assert problems(with_receivables(build_payments())) == {}


def build_payments() -> duckdb.DuckDBPyConnection:
    con = payment_books()
    build(con, FEB)
    return con


LATE_APPLICATION = """
    INSERT INTO ledger.payment_applications (application_id, entry_type, account_id, currency, payment_id, document_id,
                                             document_number, amount, to_account_credit, applied_on, recorded_at)
    SELECT 'late', '{entry}', account_id, currency, 99, {document}, NULL, 1.00, {credit}, DATE '2025-03-20',
           TIMESTAMP '2025-03-20' FROM ledger.documents WHERE document_id = 'INV-B'"""

BREAKS = {
    "unbalanced_entries": (two_currency_books, """
        INSERT INTO revenue.journal_lines SELECT * REPLACE (md5('extra') AS journal_line_id, 1.00 AS debit, 0 AS credit)
        FROM revenue.journal_lines WHERE entry_type = 'RECOGNITION' AND account = 'REVENUE:MOBILE' AND currency = 'EUR'"""),
    "trial_balance_breaks": (two_currency_books, """
        UPDATE revenue.trial_balance SET closing_balance = closing_balance + 1
        WHERE accounting_month = DATE '2025-02-01' AND currency = 'EUR' AND account = 'AR'"""),
    # a payment applied in the ledger after the books were built: open AR falls by 1.00, the journal's AR does not
    "ar_mismatches": (build_payments, LATE_APPLICATION.format(entry="PAYMENT", document="document_id", credit="0")),
    "cash_mismatches": (build_payments, """
        INSERT INTO ledger.payment_events (payment_id, status, account_id, currency, amount, received_at, outcome, processed_at)
        VALUES (10, 'SUCCEEDED', 1, 'USD', 5.00, '2025-03-20', 'APPLIED', '2025-03-20')"""),
    # an overpayment put on account credit after the books were built (to no invoice: AR unchanged)
    "customer_credit_mismatches": (build_payments, LATE_APPLICATION.format(entry="OVERPAYMENT", document="NULL", credit="1.00")),
    "rollforward_breaks": (two_currency_books, """
        UPDATE revenue.deferred_rollforward SET billings = billings + 1 WHERE accounting_month = DATE '2025-02-01'"""),
    "deferred_mismatches": (two_currency_books, """
        UPDATE revenue.contract_balances SET contract_liability = contract_liability + 1 WHERE contract_id = 'ACC-1'"""),
}


@pytest.mark.parametrize("check", sorted(BREAKS))
def test_each_reconciliation_finds_its_broken_fixture(check):
    fixture, breakage = BREAKS[check]
    con = with_receivables(fixture()) if fixture is build_payments else fixture()
    assert problems(con) == {}
    con.execute(breakage)
    assert list(problems(con)) == [check]


def test_deferred_revenue_reconciles_with_the_unrecognized_schedule():
    con = two_currency_books()
    # A schedule that no longer sums to its obligation: INV-1's 31.00 with 17.00 + 13.00 = 30.00 scheduled.
    con.execute("UPDATE revenue.schedule SET scheduled_amount = 13.00 WHERE obligation_id = 'L1' AND service_month = ?", [FEB])
    build(con, FEB)
    assert deferred_mismatches(con) == [
        # January (closed): the journal's 14.00 - 12.00 = 2.00; the schedule's INV-1 unbooked after January 13.00
        # - usage booked before its billing 12.00 = 1.00.
        (JAN, "USD", "NET_DEFERRED", D("2.00"), D("1.00")),
        # February: billed 43.00 - booked 42.00 = 1.00 in the journal; the schedule has nothing left to book: 0.
        (FEB, "USD", "NET_DEFERRED", D("1.00"), D("0.00")),
    ]


# A closed month's contract positions re-derived by later facts (seen at 100k accounts: a few hundred orders failing
# payment after January closed, a commitment's term changed). Each case: January's documents and obligations, what
# the recompute after the close writes differently (as the engine would: the obligation's and its schedule's contract,
# the order), January's contract balances as posted (deferred, unbilled, asset) and as recomputed, February's.
# U1: January usage 12.00 of ACC-1 invoiced Feb 1 (INV-2), unbilled AR at Jan 31.
USAGE = (doc("INV-2", "2025-02-01", "12.00"), obligation("U1", FEB, "12.00", {JAN: "12.00"}, kind="USAGE"))
REDERIVED = {
    # INV-1 (Jan 30) bills [Jan 30, Feb 28) 29.00 under ORD-7, January recognizing 2.00; the order fails payment on
    # Feb 2, its subscription leaves the state, the line traces to no order: contract ACC-1. January's posted 2.00 stays
    # ORD-7's: recomputed, ACC-1 billed 29.00 - 12.00 = a liability 17.00 and ORD-7 2.00 unbilled, where January
    # posted 29.00 - 2.00 = 27.00 deferred and 12.00 unbilled (the GBP 75.96 on both of the benchmark).
    "order_fails_payment_after_close": (
        [doc("INV-1", "2025-01-30", "29.00"), USAGE[0]],
        [obligation("L1", JAN, "29.00", {JAN: "2.00", FEB: "27.00"}, contract_id="ORD-7"), USAGE[1]], [],
        "UPDATE {table} SET contract_id = 'ACC-1' WHERE obligation_id = 'L1'",
        (D("27.00"), D("12.00"), 0), (D("17.00"), D("2.00"), 0), (D("2.00"), D("2.00"), 0)),
    # A line billed in January for February's service (30.00, ORD-8) moves to ACC-1 the same way: recomputed, it nets
    # with the usage (30.00 - 12.00 = 18.00 deferred, nothing unbilled); January posted 30.00 and 12.00.
    "billed_ahead_line_changes_contract": (
        [doc("INV-3", "2025-01-30", "30.00"), USAGE[0]],
        [obligation("L2", JAN, "30.00", {FEB: "30.00"}, contract_id="ORD-8"), USAGE[1]], [],
        "UPDATE {table} SET contract_id = 'ACC-1' WHERE obligation_id = 'L2'",
        (D("30.00"), D("12.00"), 0), (D("18.00"), 0, 0), (0, 0, 0)),
    # The subsidized handset of ORD-50 (24 months; docs/journals.md): a contract asset of 336.00 + 21.00 - 150.00 =
    # 207.00 at Jan 31; the order's term is removed after the close (backdated): the same position is unbilled AR now.
    "commitment_term_removed_after_close": (
        [doc("INV-5", "2025-01-01", "150.00"), doc("INV-6", "2025-02-01", "30.00")],
        [obligation("G1", JAN, "120.00", {JAN: "336.00"}, allocated="336.00", kind="GOOD", product_line="DEVICE",
                    contract_id="ORD-50"),
         obligation("S1", JAN, "30.00", {JAN: "21.00"}, allocated="21.00", contract_id="ORD-50"),
         obligation("S2", FEB, "30.00", {FEB: "21.00"}, allocated="21.00", contract_id="ORD-50")],
        [{"order_id": 50, "contract_term_months": 24}],
        "UPDATE core.orders SET contract_term_months = NULL WHERE order_id = 50",
        (0, 0, D("207.00")), (0, D("207.00"), 0), (0, D("198.00"), 0)),
}


def contract_totals(con: duckdb.DuckDBPyConnection, month) -> tuple:
    return con.execute("""SELECT coalesce(sum(contract_liability), 0), coalesce(sum(unbilled_ar), 0),
                                 coalesce(sum(contract_asset), 0)
                          FROM revenue.contract_balances WHERE accounting_month = ?""", [month]).fetchone()


@pytest.mark.parametrize("case", sorted(REDERIVED))
def test_a_closed_month_reconciles_with_its_contracts_as_posted_when_later_facts_re_derive_them(case):
    documents, obligations, orders, change, posted, recomputed, february = REDERIVED[case]
    con = books(ledger_documents=documents, ledger_finalized_months=[{"billing_month": JAN}, {"billing_month": FEB}],
                **({"core_orders": orders} if orders else {}))
    add_obligations(con, *obligations)
    build(con, JAN)
    assert deferred_mismatches(con) == [] and contract_totals(con, JAN) == posted
    close(con, JAN)
    journal = con.execute("SELECT * FROM revenue.journal_lines ORDER BY ALL").fetchall()
    for table in ("revenue.performance_obligations", "revenue.schedule"):
        con.execute(change.format(table=table))
    build(con, FEB)
    assert contract_totals(con, JAN) == recomputed   # the recompute re-derives the closed month's positions
    assert contract_totals(con, FEB) == february
    # The closed month's books are the posted ones; the change is February's CONTRACT_BALANCE (from the posted balances).
    assert con.execute("SELECT * FROM revenue.journal_lines ORDER BY ALL").fetchall() == journal
    assert {m: (-b.get("DEFERRED_REVENUE", 0), b.get("UNBILLED_AR", 0), b.get("CONTRACT_ASSET", 0))
            for m in (JAN, FEB) for b in [balances(con, m)]} == {JAN: posted, FEB: february}
    assert problems(con) == {}


# Property: random histories of invoices, credit notes, voids and payments in two currencies, January closed or not.

documents = st.lists(st.tuples(
    st.integers(1, 3),                      # account (1, 3: USD; 2: EUR)
    st.integers(0, 2),                      # issue month: Jan, Feb, Mar
    st.integers(-5000, 20000),              # net in cents (negative: a credit note)
    st.integers(0, 100),                    # share of the first month's recognition, in %
    st.booleans(),                          # in arrears: recognized the month before it is issued
    st.one_of(st.none(), st.integers(0, 2)),  # voided in month (at or after issue), or not
), min_size=1, max_size=6)
payments = st.lists(st.tuples(st.integers(1, 3), st.integers(1, 15000), st.integers(0, 2), st.booleans()), max_size=4)


@settings(max_examples=20, deadline=None, phases=[Phase.explicit, Phase.generate])
@given(documents=documents, payments=payments, close_january=st.booleans())
def test_every_month_and_currency_balances_for_random_histories(documents, payments, close_january):
    months = (JAN, FEB, MAR)
    currency = {1: "USD", 2: "EUR", 3: "USD"}
    con = books(core_billing_accounts=[{"account_id": a, "customer_id": a, "account_number": f"A{a}", "currency": c,
                                        "billing_cycle": "MONTHLY", "bill_cycle_day": 1, "payment_terms_days": 30,
                                        "status": "ACTIVE"} for a, c in currency.items()],
                ledger_finalized_months=[{"billing_month": m} for m in months])
    voids = []
    for n, (account, issued, cents, share, in_arrears, voided) in enumerate(documents):
        net = D(cents) / 100
        first = months[issued - 1] if in_arrears and issued else months[issued]
        following = months[min(months.index(first) + 1, 2)]
        first_amount = (net * share / 100).quantize(D("0.01"))
        schedule = {first: first_amount}
        schedule[following] = schedule.get(following, 0) + net - first_amount
        document_id = f"D{n}"
        fill(con, "ledger.documents", [doc(document_id, str(months[issued]), str(net), account_id=account,
                                           currency=currency[account], sequence_no=n,
                                           document_type="INVOICE" if net >= 0 else "CREDIT_NOTE")])
        kw = {"contract_id": f"ACC-{account}", "account_id": account, "currency": currency[account]}
        add_obligations(con, obligation(document_id, months[issued], str(net), schedule, **kw))
        if voided is not None and voided >= issued:
            voids.append((document_id, months[voided], net, schedule, kw))
    for n, (account, cents, received, refunded) in enumerate(payments):
        fill(con, "core.payments", [{"payment_id": n, "account_id": account, "amount": D(cents) / 100,
                                     "currency": currency[account], "status": "SUCCEEDED",
                                     "received_at": str(months[received].replace(day=10)), "valid_from": "2025-01-01"}])
    apply_payments(con, at=datetime(2025, 3, 31))
    if close_january:
        build(con, JAN)
        close(con, JAN)
    first_open = FEB if close_january else JAN
    for document_id, month, net, schedule, kw in voids:
        month = max(month, first_open)
        fill(con, "ledger.voids", [{"document_id": document_id, "document_number": document_id, "total": str(net),
                                    "account_id": kw["account_id"], "currency": kw["currency"],
                                    "voided_on": str(month.replace(day=20))}])
        add_obligations(con, obligation("VOID-" + document_id, month, str(-net),
                                        {m: str(-a) for m, a in schedule.items()}, **kw))
    refunded = [n for n, p in enumerate(payments) if p[3]]
    con.execute("UPDATE core.payments SET status = 'REFUNDED', valid_from = '2025-03-25' WHERE list_contains(?, payment_id)",
                [refunded])
    apply_payments(con, at=datetime(2025, 3, 31))
    build(con, first_open)
    assert problems(with_receivables(con)) == {}
