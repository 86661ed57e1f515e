"""The billing ledger's lifecycle end to end: five hand-built accounts land as CDC extracts month by month and go
through the real Dagster jobs on one DuckDB file, as in production: land the batch, ingest, bill_cycle M,
finalize M, apply_payments (and a void). Every issued row is asserted to the cent, with the arithmetic.

Catalog (USD; CA sales tax 7.25 %; every account calendar-monthly, bill cycle day 1, 30 days' terms, credit
limit 100.00): Mobile S (plan 11) 20.00 a month in advance + data 0.01 per MB; Broadband (plan 31) 40.00 a
month in advance; Phone (one-time) 300.00.

Accounts: AC1001 (A, individual): Mobile S from Jan 1 with data, late January usage, and the payments.
AC1002 (D, individual): Mobile S from Jan 1, a phone ordered Jan 15; in February the phone's order fails payment
and the service is disconnected on Feb 1, the first day of its prepaid period. AC1003 (B, business): Mobile S and
Broadband from Jan 1; a disconnect of Mobile S backdated to Jan 20 lands in February. AC1004 (C, individual): a
service from Jan 10 that becomes known only in February. AC1005 (F, individual): Broadband from Jan 1; its
January invoice is partly paid, then voided.

Batches: 1 before January's run (the catalog, customers, orders, January usage); 2 during February (the late and
backdated changes, February usage, February's payments; before February's run the payments are applied and
F's January invoice is voided on Feb 12); 3 during March (payments); 4 during April (a refund).
January's documents are issued Feb 1 (due Mar 3), February's Mar 1 (due Mar 31), March's Apr 1 (due May 1).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal as D

import dagster as dg
import duckdb
import pytest

from pipelines.documents import render_document
from pipelines.ledger import changed_documents, number_gaps
from pipelines.partitions import month_key
from pipelines.receivables import ar_aging
from pipelines.receivables.balances import receivables_imbalances
from tests.extracts import DebeziumFile, write_usage
from tests.pipeline import failed_checks, run_apply_payments, run_bill_cycle, run_finalize, run_ingest, run_void
from warehouse.tables import TABLES

JAN, FEB, MAR, APR = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1), date(2025, 4, 1)
T0 = datetime(2024, 12, 1)
A, D_, B, C, F = 1001, 1002, 1003, 1004, 1005  # D_: D is Decimal
LEDGER_TABLES = [name for name in TABLES if name.startswith("ledger.")]


def _customer(cid, ctype):
    return dict(customer_id=cid, name=f"Customer {cid}", email=f"c{cid}@example.com", phone="555-0100",
                address_line="1 Main St", city="Springfield", state="CA", postal_code="90001", country="US",
                customer_type=ctype, status="ACTIVE", created_at=T0)


def _account(aid, cid):
    return dict(account_id=aid, customer_id=cid, account_number=f"AC{aid}", billing_cycle="MONTHLY", bill_cycle_day=1,
                payment_method="CARD", payment_terms_days=30, credit_limit=D("100"), currency="USD", status="ACTIVE",
                created_at=T0)


def _charge(price_id, plan_id, code, ctype, model, unit_price, metric=None):
    return dict(price_id=price_id, plan_id=plan_id, charge_code=code, charge_type=ctype, metric=metric,
                aggregation="SUM" if ctype == "USAGE" else None, charge_model=model,
                billing_timing="IN_ADVANCE" if ctype == "RECURRING" else "IN_ARREARS", prorate=True,
                unit_price=unit_price, included_quantity=None, tiers=None, properties=None, proration_days=None,
                billing_interval="MONTHLY" if ctype == "RECURRING" else None,
                effective_from=datetime(2024, 1, 1), effective_to=None)


def _order(oid, aid, otype, eff, status="CONFIRMED"):
    return dict(order_id=oid, order_number=f"ORD-{oid}", account_id=aid, order_type=otype, status=status,
                effective_date=eff, created_at=datetime.combine(eff, datetime.min.time()))


def _item(iid, oid, product, plan=None, sub=None, unit_price=None):
    return dict(order_item_id=iid, order_id=oid, product_id=product, plan_id=plan, bundle_id=None,
                subscription_id=sub, quantity=1, unit_price=unit_price)


def _usage(seq, event_id, sub, qty, when):
    return dict(op="I", seq=seq, event_id=event_id, subscription_id=sub, metric="data_mb", quantity=qty, unit="MB",
                event_time=when, zone="DOMESTIC", attributes=None)


def _payment(pid, aid, amount, status, received, number=None):
    return dict(payment_id=pid, account_id=aid, invoice_number=number, amount=D(amount), currency="USD", status=status,
                method="CARD", received_at=received)


def land_batch_1(landing):
    f = DebeziumFile("products")
    for pid, sku, name, cat, ptype, price in [(1, "MOB-S", "Mobile S", "MOBILE", "SUBSCRIPTION", "20"),
                                              (3, "BB", "Broadband", "BROADBAND", "SUBSCRIPTION", "40"),
                                              (4, "PHONE", "Phone", "DEVICE", "ONE_TIME", "300")]:
        f.snapshot(pid, T0, dict(product_id=pid, sku=sku, name=name, category=cat, product_type=ptype,
                                 base_price=D(price), currency="USD", status="ACTIVE"))
    f.write(landing, "products-2024-12-01.jsonl")
    f = DebeziumFile("price_plans")
    for plan, product in [(11, 1), (31, 3)]:
        f.snapshot(100 + plan, T0, dict(plan_id=plan, product_id=product, name=f"Plan {plan}", currency="USD", status="ACTIVE"))
    f.write(landing, "price_plans-2024-12-01.jsonl")
    f = DebeziumFile("plan_charges")
    for i, ch in enumerate([_charge(101, 11, "monthly_fee", "RECURRING", "FLAT", D("20.00")),
                            _charge(102, 11, "data", "USAGE", "PER_UNIT", D("0.01"), metric="data_mb"),
                            _charge(301, 31, "monthly_fee", "RECURRING", "FLAT", D("40.00"))]):
        f.snapshot(200 + i, T0, ch)
    f.write(landing, "plan_charges-2024-12-01.jsonl")
    DebeziumFile("tax_rates").snapshot(310, T0, dict(tax_rate_id=1, country="US", state="CA", tax_name="CA sales tax",
                                                     rate=D("0.0725"), effective_from=date(2024, 1, 1))) \
        .write(landing, "tax_rates-2024-12-01.jsonl")
    customers, accounts = DebeziumFile("customers"), DebeziumFile("billing_accounts")
    for n, (aid, ctype) in enumerate([(A, "INDIVIDUAL"), (D_, "INDIVIDUAL"), (B, "BUSINESS"), (C, "INDIVIDUAL"),
                                      (F, "INDIVIDUAL")]):
        customers.create(1000 + n, T0, _customer(n + 1, ctype))
        accounts.create(1100 + n, T0, _account(aid, n + 1))
    customers.write(landing, "customers-2024-12-15.jsonl")
    accounts.write(landing, "billing_accounts-2024-12-15.jsonl")
    orders, items = DebeziumFile("orders"), DebeziumFile("order_items")
    for oid, aid, eff in [(1, A, JAN), (2, D_, JAN), (3, D_, date(2025, 1, 15)), (4, B, JAN), (5, F, JAN)]:
        orders.create(2000 + oid, T0, _order(oid, aid, "NEW_SERVICE", eff))
    orders.write(landing, "orders-2024-12-20.jsonl")
    for i, it in enumerate([_item(1, 1, 1, 11, 5001), _item(2, 2, 1, 11, 5002), _item(3, 3, 4, unit_price=D("300.00")),
                            _item(4, 4, 1, 11, 5003), _item(5, 4, 3, 31, 5004), _item(6, 5, 3, 31, 5005)]):
        items.create(3000 + i, T0, it)
    items.write(landing, "order_items-2024-12-20.jsonl")
    write_usage(landing, "usage_records-2025-01-31.parquet", [_usage(1, "a-1", 5001, "1000", datetime(2025, 1, 5, 10))])


def land_batch_2(landing):
    orders, items = DebeziumFile("orders"), DebeziumFile("order_items")
    phone = _order(3, D_, "NEW_SERVICE", date(2025, 1, 15))
    orders.update(2100, datetime(2025, 2, 3), phone, {**phone, "status": "PAYMENT_FAILED"})
    orders.create(2101, datetime(2025, 2, 3), _order(6, D_, "DISCONNECT", FEB))               # the first day of Feb
    orders.create(2102, datetime(2025, 2, 4), _order(7, B, "DISCONNECT", date(2025, 1, 20)))  # backdated
    orders.create(2103, datetime(2025, 2, 5), _order(8, C, "NEW_SERVICE", date(2025, 1, 10)))  # backdated
    items.create(3100, datetime(2025, 2, 3), _item(7, 6, 1, None, 5002))
    items.create(3101, datetime(2025, 2, 4), _item(8, 7, 1, None, 5003))
    items.create(3102, datetime(2025, 2, 5), _item(9, 8, 1, 11, 5006))
    orders.write(landing, "orders-2025-02-05.jsonl")
    items.write(landing, "order_items-2025-02-05.jsonl")
    write_usage(landing, "usage_records-2025-02-28.parquet", [
        _usage(10, "a-late", 5001, "500", datetime(2025, 1, 25)),  # January usage landing in February
        _usage(11, "a-2", 5001, "200", datetime(2025, 2, 10)),
    ])
    DebeziumFile("payments") \
        .create(4000, datetime(2025, 2, 5), _payment(1, B, "128.70", "FAILED", datetime(2025, 2, 5), "INV-2025-000003")) \
        .create(4001, datetime(2025, 2, 10), _payment(2, A, "20.00", "SUCCEEDED", datetime(2025, 2, 10))) \
        .create(4002, datetime(2025, 2, 10), _payment(3, F, "50.00", "SUCCEEDED", datetime(2025, 2, 10), "INV-2025-000004")) \
        .write(landing, "payments-2025-02-10.jsonl")


EXACT = _payment(4, A, "28.96", "SUCCEEDED", datetime(2025, 3, 5), "INV-2025-000005")


def land_batch_3(landing):
    DebeziumFile("payments") \
        .create(4100, datetime(2025, 3, 5), EXACT) \
        .create(4101, datetime(2025, 3, 6), _payment(5, D_, "21.45", "SUCCEEDED", datetime(2025, 3, 6))) \
        .create(4102, datetime(2025, 3, 10), _payment(6, A, "50.00", "SUCCEEDED", datetime(2025, 3, 10))) \
        .write(landing, "payments-2025-03-10.jsonl")
    # March's mediation extract: usage has landed for March (a bill cycle waits for it), nothing to charge
    write_usage(landing, "usage_records-2025-03-31.parquet", [_usage(12, "a-3", 5001, "0", datetime(2025, 3, 12))])


def land_batch_4(landing):
    DebeziumFile("payments").update(4200, datetime(2025, 4, 3), EXACT, {**EXACT, "status": "REFUNDED"}) \
        .write(landing, "payments-2025-04-03.jsonl")


def read(warehouse, sql, params=None):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params).fetchall()


def ledger_snapshot(warehouse) -> dict[str, list]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in LEDGER_TABLES}


def invariants(warehouse) -> dict[str, list]:
    """What the ledger checks (pipelines/ledger/checks.py) and the receivables balance check find wrong over the
    whole warehouse (empty lists when nothing is)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {"changed_documents": changed_documents(con), "number_gaps": number_gaps(con),
                "receivables_imbalances": receivables_imbalances(con)}


class Lifecycle:
    """The lifecycle's warehouse, each step's outcome and invariants, and snapshots taken between steps."""

    def __init__(self, warehouse):
        self.warehouse = warehouse
        self.steps: list[tuple[str, bool, list[str], dict]] = []  # (step, success, failed checks, invariants)
        self.snapshots: dict[str, dict] = {}
        self.results: dict[str, dg.ExecuteInProcessResult] = {}

    def run(self, name, result):
        self.results[name] = result
        self.steps.append((name, result.success, failed_checks(result), invariants(self.warehouse)))

    def read(self, sql, params=None):
        return read(self.warehouse, sql, params)


@pytest.fixture(scope="module")
def life(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lifecycle")
    landing, warehouse = tmp / "landing", tmp / "warehouse.duckdb"
    life = Lifecycle(warehouse)
    w, l = warehouse, landing
    land_batch_1(landing)
    life.run("ingest 1", run_ingest(w, l))
    life.run("bill 2025-01", run_bill_cycle(w, l, JAN))
    life.run("finalize 2025-01", run_finalize(w, l, JAN))
    life.run("apply payments 1", run_apply_payments(w, l))
    life.snapshots["january issued"] = ledger_snapshot(w)

    land_batch_2(landing)
    life.run("ingest 2", run_ingest(w, l))
    life.run("apply payments 2a", run_apply_payments(w, l))
    life.snapshots["before void"] = ledger_snapshot(w)
    life.run("void INV-2025-000004", run_void(w, l, "INV-2025-000004", "billed to the wrong customer", voided_on=date(2025, 2, 12)))
    life.run("bill 2025-02", run_bill_cycle(w, l, FEB))
    life.run("finalize 2025-02", run_finalize(w, l, FEB))
    life.run("apply payments 2b", run_apply_payments(w, l))

    life.snapshots["february issued"] = ledger_snapshot(w)
    drafts = "SELECT * FROM billing.{} WHERE billing_month <= '2025-02-01' ORDER BY ALL"
    life.snapshots["drafts before re-run"] = {t: life.read(drafts.format(t)) for t in ("invoices", "invoice_lines")}
    life.run("re-bill 2025-01", run_bill_cycle(w, l, JAN))
    life.run("re-bill 2025-02", run_bill_cycle(w, l, FEB))
    life.run("apply payments again", run_apply_payments(w, l))
    life.refused = run_finalize(w, l, JAN)  # a month is finalized once
    life.snapshots["after re-run"] = ledger_snapshot(w)
    life.snapshots["drafts after re-run"] = {t: life.read(drafts.format(t)) for t in ("invoices", "invoice_lines")}

    land_batch_3(landing)
    life.run("ingest 3", run_ingest(w, l))
    life.run("bill 2025-03", run_bill_cycle(w, l, MAR))
    life.run("finalize 2025-03", run_finalize(w, l, MAR))
    life.run("apply payments 3", run_apply_payments(w, l))
    life.snapshots["march applied"] = {"status": life.read(STATUS_SQL)}

    land_batch_4(landing)
    life.run("ingest 4", run_ingest(w, l))
    life.run("apply payments 4", run_apply_payments(w, l))
    return life



STATUS_SQL = "SELECT document_number, status, open_amount, paid_date FROM billing.document_status ORDER BY document_number"
RECEIVABLES_STEPS = ("apply payments", "void")  # the steps that rebuild the receivables (their balance is checked)
d = date


HEADER = "document_number, document_id, document_type, issue_date, due_date, net_total, tax_total, total"


def documents(life, month):
    return life.read(f"SELECT {HEADER} FROM ledger.documents WHERE billing_month = ? ORDER BY document_number", [month])


def issued(life, number):
    (header,) = life.read(f"SELECT {HEADER} FROM ledger.documents WHERE document_number = ?", [number])
    return header


def lines(life, number):
    """(line_type, service_start, service_end, service_month, amount, tax_amount, adjustment_reason,
    reference_document_number) of an issued document, sorted."""
    return life.read("""SELECT line_type, service_start, service_end, service_month, amount, tax_amount, adjustment_reason,
                               reference_document_number
                        FROM ledger.document_lines WHERE document_number = ? ORDER BY ALL""", [number])


def line_id(life, number, subscription_or_item, service_start):
    """Id of the line of an issued document for a subscription (or a one-time item's order item) starting on a day."""
    (row,) = life.read("""SELECT line_id FROM ledger.document_lines WHERE document_number = ? AND service_start = ?
                            AND (subscription_id = ? OR (subscription_id IS NULL AND source_ref = CAST(? AS VARCHAR)))""",
                       [number, service_start, subscription_or_item, subscription_or_item])
    return row[0]


def references(life, number):
    """(line_type, service_start, reference_line_id, reference_document_number) of an issued document's lines."""
    return life.read("""SELECT line_type, service_start, reference_line_id, reference_document_number
                        FROM ledger.document_lines WHERE document_number = ? ORDER BY ALL""", [number])


R, RC, U, UA, OT, OTC = "RECURRING", "RECURRING_CREDIT", "USAGE", "USAGE_ADJUSTMENT", "ONE_TIME", "ONE_TIME_CREDIT"


# 7. invariants after every step ------------------------------------------------------------------------------

def test_every_run_succeeds_with_every_check_passing(life):
    assert [(name, ok, failed) for name, ok, failed, _ in life.steps] == [(name, True, []) for name, *_ in life.steps]


def test_after_every_step_hashes_hold_numbers_are_gapless_and_receivables_balance(life):
    """The ledger checks over the whole ledger after every step; the receivables balance after every step that rebuilds
    the receivables (between a finalize and the next apply_payments the derived balances do not know the new
    documents yet)."""
    found = [(name, f["changed_documents"], f["number_gaps"]) for name, *_, f in life.steps]
    assert found == [(name, [], []) for name, *_ in life.steps]
    balances = [(name, f["receivables_imbalances"]) for name, *_, f in life.steps if name.startswith(RECEIVABLES_STEPS)]
    assert len(balances) == 7 and balances == [(name, []) for name, _ in balances]


def test_the_ledger_is_only_ever_appended_to(life):
    snapshots = [life.snapshots[k] for k in ("january issued", "before void", "february issued", "after re-run")]
    snapshots.append(ledger_snapshot(life.warehouse))
    for earlier, later in zip(snapshots, snapshots[1:]):
        for table in LEDGER_TABLES:
            assert set(earlier[table]) <= set(later[table]), table


# the documents issued month by month -------------------------------------------------------------------------

def test_january_is_issued_with_gapless_numbers_due_dates_and_the_drafts_content(life):
    """Issued Feb 1 (the period end), due Feb 1 + 30 days = Mar 3; numbered by account. C (AC1004) had no service
    known in January: no document.
      A: Jan 20.00 + Feb in advance 20.00 (tax 20.00 x 7.25 % = 1.45 each) + data 1000 MB x 0.01 = 10.00
         (tax 0.725 -> 0.73): net 50.00, tax 3.63, total 53.63.
      D: 20.00 + 20.00 + phone 300.00 (tax 21.75): net 340.00, tax 1.45 + 1.45 + 21.75 = 24.65, total 364.65.
      B: Mobile S 20.00 + 20.00, Broadband 40.00 + 40.00 (tax 2.90 each): net 120.00, tax 8.70, total 128.70.
      F: Broadband 40.00 + 40.00: net 80.00, tax 5.80, total 85.80."""
    due = d(2025, 3, 3)
    assert documents(life, JAN) == [
        ("INV-2025-000001", "INV-AC1001-20250201", "INVOICE", FEB, due, D("50.00"), D("3.63"), D("53.63")),
        ("INV-2025-000002", "INV-AC1002-20250201", "INVOICE", FEB, due, D("340.00"), D("24.65"), D("364.65")),
        ("INV-2025-000003", "INV-AC1003-20250201", "INVOICE", FEB, due, D("120.00"), D("8.70"), D("128.70")),
        ("INV-2025-000004", "INV-AC1005-20250201", "INVOICE", FEB, due, D("80.00"), D("5.80"), D("85.80")),
    ]
    assert lines(life, "INV-2025-000001") == [
        (R, JAN, FEB, JAN, D("20.00"), D("1.45"), None, None),
        (R, FEB, MAR, JAN, D("20.00"), D("1.45"), None, None),
        (U, JAN, FEB, JAN, D("10.00"), D("0.73"), None, None),
    ]
    assert life.read("SELECT billing_month, invoices, credit_notes, first_number, last_number FROM ledger.finalized_months "
                     "ORDER BY 1") == [(JAN, 4, 0, "INV-2025-000001", "INV-2025-000004"),
                                       (FEB, 4, 2, "INV-2025-000005", "CN-2025-000002"),
                                       (MAR, 4, 0, "INV-2025-000009", "INV-2025-000012")]
    # the ledger lines are the finalized months' drafts, column for column
    columns = ", ".join(c for c in TABLES["billing.invoice_lines"].column_names if c != "invoice_id")
    drafts = life.read(f"SELECT invoice_id, {columns} FROM billing.invoice_lines ORDER BY line_id")
    issued = life.read(f"SELECT document_id, {columns} FROM ledger.document_lines ORDER BY line_id")
    assert len(issued) == 12 + 14 + 5 and issued == drafts  # January, February, March (with its usage line, 0.00)


def test_numbers_are_gapless_per_series_in_issue_order(life):
    """Per series and year 1..n, in order of (account, document) within each month: February issued
    INV-000005..8 (A, B, C, F) and the credit notes CN-000001 (D) and CN-000002 (B)."""
    numbers = life.read("SELECT series, issue_year, sequence_no, document_number, document_id FROM ledger.document_numbers "
                        "ORDER BY series, sequence_no")
    assert [(s, y, n) for s, y, n, *_ in numbers] == [("CN", 2025, 1), ("CN", 2025, 2)] + [("INV", 2025, n) for n in range(1, 13)]
    assert {num: doc for *_, num, doc in numbers if num.startswith("CN") or num >= "INV-2025-000005"} == {
        "CN-2025-000001": "CN-AC1002-20250301", "CN-2025-000002": "CN-AC1003-20250301",
        "INV-2025-000005": "INV-AC1001-20250301", "INV-2025-000006": "INV-AC1003-20250301",
        "INV-2025-000007": "INV-AC1004-20250301", "INV-2025-000008": "INV-AC1005-20250301",
        "INV-2025-000009": "INV-AC1001-20250401", "INV-2025-000010": "INV-AC1003-20250401",
        "INV-2025-000011": "INV-AC1004-20250401", "INV-2025-000012": "INV-AC1005-20250401",
    }
    assert sorted(p.name for p in (life.warehouse.parent / "documents" / "2025").glob("*.html")) == sorted(
        f"{num}.html" for *_, num, _ in numbers)  # the finalize job rendered every document


# 1. finalize, then re-run ------------------------------------------------------------------------------------

def test_rerunning_finalized_months_after_later_changes_changes_nothing_issued(life):
    """After February's batch landed (backdated changes into January, late January usage) and February was
    finalized, January's and February's bill cycles and apply_payments ran again: every ledger table, every
    number and the finalized months' drafts are exactly as before."""
    before, after = life.snapshots["february issued"], life.snapshots["after re-run"]
    assert sum(len(rows) for rows in before.values()) > 0
    assert after == before
    assert life.snapshots["drafts after re-run"] == life.snapshots["drafts before re-run"]
    refusal = [e.event_specific_data.error.message for e in life.refused.all_events if e.event_type_value == "STEP_FAILURE"]
    assert not life.refused.success and "finalize refused: 2025-01 is already finalized" in refusal[0]
    # January's drafts still bill A's January usage as it was issued (10.00), though January was re-rated (15.00)
    assert life.read("SELECT amount FROM billing.invoice_lines WHERE billing_month = ? AND account_id = ? AND line_type = 'USAGE'",
                     [JAN, A]) == [(D("10.00"),)]
    assert life.read("SELECT amount FROM billing.rated_usage WHERE billing_month = ? AND account_id = ?", [JAN, A]) == [(D("15.00"),)]


# 2. late usage -----------------------------------------------------------------------------------------------

def test_late_usage_is_billed_on_the_next_invoice_as_an_adjustment_of_the_issued_line(life):
    """500 MB used on Jan 25 land in February's batch: January is re-rated to 1500 MB x 0.01 = 15.00; 10.00 was
    issued, so February's invoice carries +5.00 (tax 5.00 x 7.25 % = 0.3625 -> 0.36) for service month January,
    LATE_USAGE, referencing January's usage line on INV-2025-000001. February: March in advance 20.00 (1.45) and
    200 MB = 2.00 (tax 0.145 -> 0.15). Net 20.00 + 2.00 + 5.00 = 27.00, tax 1.45 + 0.15 + 0.36 = 1.96: 28.96,
    issued Mar 1, due Mar 31."""
    assert lines(life, "INV-2025-000005") == [
        (R, MAR, APR, FEB, D("20.00"), D("1.45"), None, None),
        (U, FEB, MAR, FEB, D("2.00"), D("0.15"), None, None),
        (UA, JAN, FEB, JAN, D("5.00"), D("0.36"), "LATE_USAGE", "INV-2025-000001"),
    ]
    (january_usage,) = life.read("SELECT line_id, source_ref FROM ledger.document_lines WHERE document_number = "
                                 "'INV-2025-000001' AND line_type = 'USAGE'")
    assert life.read("SELECT reference_line_id, source_ref FROM ledger.document_lines WHERE line_type = 'USAGE_ADJUSTMENT'") == [
        january_usage]  # the same rated line, corrected
    assert issued(life, "INV-2025-000005") == ("INV-2025-000005", "INV-AC1001-20250301", "INVOICE", MAR, d(2025, 3, 31),
                                       D("27.00"), D("1.96"), D("28.96"))


# 3. backdated changes and a reversed order; 4. credit notes ---------------------------------------------------

def test_backdated_disconnect_of_a_business_goes_to_a_credit_note_beside_its_invoice(life):
    """B's Mobile S (sub 5003) disconnected effective Jan 20, known in February after January billed January and
    February in advance. B is a business: the credits of issued lines go on CN-2025-000002, referencing the
    credited lines of INV-2025-000003:
      [Jan 20, Feb 1) 12 of 31 days: 20.00 x 12 / 31 = 7.7419354839 -> -7.74, tax -0.56115 -> -0.56, service
      month January, BACKDATED_CHANGE;  [Feb 1, Mar 1) the whole line reversed: -20.00, tax -1.45.
      Total -27.74 - 2.01 = -29.75, due on its issue date.
    Its new charge (Broadband March in advance 40.00, tax 2.90) is on its invoice INV-2025-000006."""
    assert lines(life, "CN-2025-000002") == [
        (RC, d(2025, 1, 20), FEB, JAN, D("-7.74"), D("-0.56"), "BACKDATED_CHANGE", "INV-2025-000003"),
        (RC, FEB, MAR, FEB, D("-20.00"), D("-1.45"), None, "INV-2025-000003"),
    ]
    assert references(life, "CN-2025-000002") == [
        (RC, d(2025, 1, 20), line_id(life, "INV-2025-000003", 5003, JAN), "INV-2025-000003"),
        (RC, FEB, line_id(life, "INV-2025-000003", 5003, FEB), "INV-2025-000003"),
    ]
    assert lines(life, "INV-2025-000006") == [(R, MAR, APR, FEB, D("40.00"), D("2.90"), None, None)]
    assert issued(life, "CN-2025-000002") == ("CN-2025-000002", "CN-AC1003-20250301", "CREDIT_NOTE", MAR, MAR,
                                     D("-27.74"), D("-2.01"), D("-29.75"))
    assert issued(life, "INV-2025-000006")[5:] == (D("40.00"), D("2.90"), D("42.90"))


def test_backdated_activation_is_billed_on_the_next_invoice(life):
    """C's service from Jan 10 becomes known in February: [Jan 10, Feb 1) 22 of 31 days: 20.00 x 22 / 31 =
    14.1935483871 -> 14.19 (tax 1.028775 -> 1.03), service month January, BACKDATED_CHANGE (nothing issued to
    correct: no reference); February 20.00 and March in advance 20.00 (1.45 each). Net 54.19, tax 3.93, 58.12."""
    assert lines(life, "INV-2025-000007") == [
        (R, d(2025, 1, 10), FEB, JAN, D("14.19"), D("1.03"), "BACKDATED_CHANGE", None),
        (R, FEB, MAR, FEB, D("20.00"), D("1.45"), None, None),
        (R, MAR, APR, FEB, D("20.00"), D("1.45"), None, None),
    ]
    assert issued(life, "INV-2025-000007")[5:] == (D("54.19"), D("3.93"), D("58.12"))


def test_failed_order_and_first_day_cancellation_of_an_individual_are_a_credit_note(life):
    """D's phone order (300.00, tax 21.75, billed and issued in January) fails payment, and its service is
    disconnected on Feb 1, the first day of the period January billed in advance. February has only credits
    for D, referencing INV-2025-000002: the phone -300.00 (tax -21.75) ORDER_REVERSED for service month
    January, February's whole line -20.00 (tax -1.45). An individual's corrections go on its invoice draft, but
    a draft with a negative total is issued as a credit note, never as a negative invoice: CN-2025-000001,
    -320.00 - 23.20 = -343.20. Nothing is left to bill D in March."""
    assert lines(life, "CN-2025-000001") == [
        (OTC, d(2025, 1, 15), d(2025, 1, 16), JAN, D("-300.00"), D("-21.75"), "ORDER_REVERSED", "INV-2025-000002"),
        (RC, FEB, MAR, FEB, D("-20.00"), D("-1.45"), None, "INV-2025-000002"),
    ]
    assert references(life, "CN-2025-000001") == [
        (OTC, d(2025, 1, 15), line_id(life, "INV-2025-000002", 3, d(2025, 1, 15)), "INV-2025-000002"),
        (RC, FEB, line_id(life, "INV-2025-000002", 5002, FEB), "INV-2025-000002"),
    ]
    assert issued(life, "CN-2025-000001") == ("CN-2025-000001", "CN-AC1002-20250301", "CREDIT_NOTE", MAR, MAR,
                                       D("-320.00"), D("-23.20"), D("-343.20"))
    assert life.read("SELECT document_type, document_number FROM ledger.documents WHERE account_id = ? ORDER BY 2", [D_]) == [
        ("CREDIT_NOTE", "CN-2025-000001"), ("INVOICE", "INV-2025-000002")]
    assert life.read("SELECT count(*) FROM ledger.documents WHERE document_type = 'INVOICE' AND total < 0") == [(0,)]


def test_the_review_shows_each_correction_with_its_reason_before_finalizing(life):
    """billing.settlement_review of February: the differences of earlier periods per account, category, reason."""
    assert life.read("""SELECT account_id, category, reason, service_month, lines, net_amount, tax_amount, document_type
                        FROM billing.settlement_review WHERE billing_month = ? AND category <> 'NEW_CHARGES'
                        ORDER BY 1, 2, 3""", [FEB]) == [
        (A, "ADJUSTMENT", "LATE_USAGE", JAN, 1, D("5.00"), D("0.36"), "INVOICE"),
        (D_, "CREDIT", "ORDER_REVERSED", JAN, 1, D("-300.00"), D("-21.75"), "CREDIT_NOTE"),
        (D_, "CREDIT", "SERVICE_CHANGE", FEB, 1, D("-20.00"), D("-1.45"), "CREDIT_NOTE"),
        (B, "CREDIT", "BACKDATED_CHANGE", JAN, 1, D("-7.74"), D("-0.56"), "CREDIT_NOTE"),
        (B, "CREDIT", "SERVICE_CHANGE", FEB, 1, D("-20.00"), D("-1.45"), "CREDIT_NOTE"),
        (C, "ADJUSTMENT", "BACKDATED_CHANGE", JAN, 1, D("14.19"), D("1.03"), "INVOICE"),
        (F, "ADJUSTMENT", "VOIDED", JAN, 1, D("40.00"), D("2.90"), "INVOICE"),
    ]
    # and in the bill run's metadata on February's partition, summed over the accounts; the current period:
    # A 20.00 + 2.00, B 40.00, C 20.00 + 20.00, F 40.00 + 40.00 = 7 lines, net 182.00; D's and B's -20.00 credits of
    # February billed in advance are CREDIT/SERVICE_CHANGE: 2 lines, net -40.00, on their credit notes
    (review,) = [e.materialization.metadata["review"].value for e in life.results["bill 2025-02"].get_asset_materialization_events()
                 if e.asset_key == dg.AssetKey(["billing", "settlement_review"]) and e.partition == month_key(FEB)]
    assert review == {"ADJUSTMENT/BACKDATED_CHANGE": "1 lines, net 14.1900", "ADJUSTMENT/LATE_USAGE": "1 lines, net 5.0000",
                      "ADJUSTMENT/VOIDED": "1 lines, net 40.0000", "CREDIT/BACKDATED_CHANGE": "1 lines, net -7.7400",
                      "CREDIT/ORDER_REVERSED": "1 lines, net -300.0000", "CREDIT/SERVICE_CHANGE": "2 lines, net -40.0000",
                      "NEW_CHARGES/CURRENT_PERIOD": "7 lines, net 182.0000"}


# 5. void ------------------------------------------------------------------------------------------------------

def test_a_voided_invoice_keeps_its_number_and_content_and_its_service_is_billed_again(life):
    """F's INV-2025-000004 (85.80) was paid 50.00 on Feb 10, then voided on Feb 12. Its rows are unchanged; the
    50.00 goes back to account credit (VOID_REVERSAL) and pays F's next invoice on its issue date, Mar 1.
    February's run bills again what the void took away: January 40.00 (VOIDED, service month January) and
    February 40.00, with March in advance 40.00: 120.00 + 3 x 2.90 = 128.70; open 128.70 - 50.00 = 78.70."""
    def voided(snapshot):
        return {t: [r for r in snapshot[t] if "INV-2025-000004" in r] for t in ("ledger.documents", "ledger.document_lines")}
    assert voided(ledger_snapshot(life.warehouse)) == voided(life.snapshots["before void"])
    assert len(voided(life.snapshots["before void"])["ledger.document_lines"]) == 2
    assert life.read("SELECT document_number, total, reason, voided_on FROM ledger.voids") == [
        ("INV-2025-000004", D("85.80"), "billed to the wrong customer", d(2025, 2, 12))]
    assert lines(life, "INV-2025-000008") == [
        (R, JAN, FEB, JAN, D("40.00"), D("2.90"), "VOIDED", None),
        (R, FEB, MAR, FEB, D("40.00"), D("2.90"), None, None),
        (R, MAR, APR, FEB, D("40.00"), D("2.90"), None, None),
    ]
    assert life.read("""SELECT entry_type, payment_id, document_number, amount, to_account_credit, applied_on
                        FROM ledger.payment_applications WHERE account_id = ? ORDER BY applied_on""", [F]) == [
        ("PAYMENT", 3, "INV-2025-000004", D("50.00"), D("0"), d(2025, 2, 10)),
        ("VOID_REVERSAL", 3, "INV-2025-000004", D("-50.00"), D("50.00"), d(2025, 2, 12)),
        ("CREDIT_APPLIED", None, "INV-2025-000008", D("50.00"), D("-50.00"), MAR),
    ]
    status = {r[0]: r[1:] for r in life.read(STATUS_SQL)}
    assert status["INV-2025-000004"] == ("VOID", D("0"), None)
    assert status["INV-2025-000008"] == ("PARTIALLY_PAID", D("78.70"), None)


def test_the_voided_invoice_renders_as_void_under_its_number(life):
    with duckdb.connect(str(life.warehouse), read_only=True) as con:
        html = render_document(con, "INV-2025-000004")
    assert "INV-2025-000004" in html and "VOID" in html and "billed to the wrong customer" in html


# 6. payments -------------------------------------------------------------------------------------------------

def test_payments_partial_exact_over_failed_and_refunded(life):
    """A: 20.00 on Feb 10 pays part of INV-1 (53.63: 33.63 open); 28.96 on Mar 5 referencing INV-5 pays it
    exactly; 50.00 on Mar 10 pays INV-1's 33.63 (PAID Mar 10) and 50.00 - 33.63 = 16.37 is over-paid to account
    credit, which pays INV-9 (21.45, issued Apr 1) on its issue date: 21.45 - 16.37 = 5.08 open. The 28.96 is
    refunded on Apr 3: no credit is left, so INV-5 reopens (28.96 open, no paid date).
    B: its 128.70 payment FAILED: nothing applied; CN-2 (29.75) pays INV-3: 128.70 - 29.75 = 98.95 open.
    D: CN-1 (343.20) pays INV-2 (364.65) on Mar 1; 21.45 left, paid on Mar 6."""
    march = {r[0]: r[1:] for r in life.snapshots["march applied"]["status"]}
    assert march["INV-2025-000001"] == ("PAID", D("0"), d(2025, 3, 10))
    assert march["INV-2025-000005"] == ("PAID", D("0"), d(2025, 3, 5))
    final = {r[0]: r[1:] for r in life.read(STATUS_SQL)}
    assert final == {**march, "INV-2025-000005": ("OPEN", D("28.96"), None)}
    assert final == {
        "CN-2025-000001": ("APPLIED", D("0"), MAR), "CN-2025-000002": ("APPLIED", D("0"), MAR),
        "INV-2025-000001": ("PAID", D("0"), d(2025, 3, 10)), "INV-2025-000002": ("PAID", D("0"), d(2025, 3, 6)),
        "INV-2025-000003": ("PARTIALLY_PAID", D("98.95"), None), "INV-2025-000004": ("VOID", D("0"), None),
        "INV-2025-000005": ("OPEN", D("28.96"), None), "INV-2025-000006": ("OPEN", D("42.90"), None),
        "INV-2025-000007": ("OPEN", D("58.12"), None), "INV-2025-000008": ("PARTIALLY_PAID", D("78.70"), None),
        "INV-2025-000009": ("PARTIALLY_PAID", D("5.08"), None), "INV-2025-000010": ("OPEN", D("42.90"), None),
        "INV-2025-000011": ("OPEN", D("21.45"), None), "INV-2025-000012": ("OPEN", D("42.90"), None),
    }
    assert life.read("""SELECT entry_type, payment_id, document_number, amount, to_account_credit, applied_on
                        FROM ledger.payment_applications WHERE account_id = ? ORDER BY applied_on, entry_type""", [A]) == [
        ("PAYMENT", 2, "INV-2025-000001", D("20.00"), D("0"), d(2025, 2, 10)),
        ("PAYMENT", 4, "INV-2025-000005", D("28.96"), D("0"), d(2025, 3, 5)),
        ("OVERPAYMENT", 6, None, D("16.37"), D("16.37"), d(2025, 3, 10)),
        ("PAYMENT", 6, "INV-2025-000001", D("33.63"), D("0"), d(2025, 3, 10)),
        ("CREDIT_APPLIED", None, "INV-2025-000009", D("16.37"), D("-16.37"), APR),
        ("REFUND", 4, "INV-2025-000005", D("-28.96"), D("0"), d(2025, 4, 3)),
    ]
    assert life.read("SELECT payment_id, status, outcome, reason FROM ledger.payment_events ORDER BY 1, 2") == [
        (1, "FAILED", "FAILED", "the payment provider reported it FAILED"),
        (2, "SUCCEEDED", "APPLIED", None), (3, "SUCCEEDED", "APPLIED", None),
        (4, "REFUNDED", "REFUNDED", None), (4, "SUCCEEDED", "APPLIED", None),
        (5, "SUCCEEDED", "APPLIED", None), (6, "SUCCEEDED", "APPLIED", None),
    ]
    assert life.read("SELECT count(*) FROM ledger.payment_applications WHERE payment_id = 1") == [(0,)]


def test_account_balances_and_the_credit_limit(life):
    """invoiced - credited = paid_net + open_ar - account_credit, balance = open_ar - account_credit; limit 100.00.
      A: 53.63 + 28.96 + 21.45 = 104.04 = paid 20.00 + 28.96 + 50.00 - 28.96 (refund) = 70.00 + open 28.96 + 5.08.
      D: 364.65 - 343.20 = 21.45 paid; nothing open.
      B: 128.70 + 42.90 + 42.90 = 214.50 - 29.75 = 184.75 open, nothing paid: over the limit.
      C: 58.12 + 21.45 = 79.57 open.
      F: the voided 85.80 is not invoiced: 128.70 + 42.90 = 171.60 = paid 50.00 + open 78.70 + 42.90 = 121.60: over."""
    assert life.read("""SELECT account_id, invoiced, credited, paid_net, open_ar, account_credit, balance, over_credit_limit
                        FROM billing.account_balances ORDER BY 1""") == [
        (A, D("104.04"), D("0"), D("70.00"), D("34.04"), D("0"), D("34.04"), False),
        (D_, D("364.65"), D("343.20"), D("21.45"), D("0"), D("0"), D("0"), False),
        (B, D("214.50"), D("29.75"), D("0"), D("184.75"), D("0"), D("184.75"), True),
        (C, D("79.57"), D("0"), D("0"), D("79.57"), D("0"), D("79.57"), False),
        (F, D("171.60"), D("0"), D("50.00"), D("121.60"), D("0"), D("121.60"), True),
    ]


@pytest.mark.parametrize("as_of, expected", [
    # Apr 15: INV-9..12 (due May 1) are current; INV-5..8 (due Mar 31) 15 days past due; INV-3 (due Mar 3) 43 days.
    (d(2025, 4, 15), [(A, D("5.08"), D("28.96"), D("0"), D("0"), D("34.04"), D("0")),
                      (B, D("42.90"), D("42.90"), D("98.95"), D("0"), D("184.75"), D("0")),
                      (C, D("21.45"), D("58.12"), D("0"), D("0"), D("79.57"), D("0")),
                      (F, D("42.90"), D("78.70"), D("0"), D("0"), D("121.60"), D("0"))]),
    # Mar 15, the ledger as it stood: A's invoices were paid and its 16.37 over-payment is credit (INV-9 not
    # issued yet, the refund not yet made); INV-3 is 12 days past due; February's invoices are current.
    (d(2025, 3, 15), [(A, D("0"), D("0"), D("0"), D("0"), D("0"), D("16.37")),
                      (B, D("42.90"), D("98.95"), D("0"), D("0"), D("141.85"), D("0")),
                      (C, D("58.12"), D("0"), D("0"), D("0"), D("58.12"), D("0")),
                      (F, D("78.70"), D("0"), D("0"), D("0"), D("78.70"), D("0"))]),
])
def test_aging_on_a_fixed_date(life, as_of, expected):
    with duckdb.connect(str(life.warehouse), read_only=True) as con:
        rows = ar_aging(con, as_of).select(
            "account_id, current_amount, days_1_30, days_31_60, days_61_90 + days_over_90, open_ar, account_credit"
        ).order("account_id").fetchall()
    assert rows == expected
