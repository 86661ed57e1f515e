"""Performance obligations from the ledger: kinds, patterns, windows, contracts, billed months, voids and
credits (docs/revenue.md "Obligations"). Fixture rows in the contract tables; every number is worked out
in the comments. ``books`` and the row builders are shared by tests/test_revenue_allocation.py and
tests/test_revenue_schedule.py."""

from __future__ import annotations

import hashlib
import itertools
from datetime import date
from decimal import Decimal as D

import duckdb

from domain import install_macros
from pipelines.revenue.obligations import EXPECTED_SERVICE_MONTHS, OBLIGATION_COLUMNS, obligation_rows
from warehouse.fixtures import create_table_with_rows

INPUTS = ("ledger.documents", "ledger.document_lines", "ledger.voids", "ledger.payment_applications",
          "ledger.finalized_months", "core.billing_accounts", "core.products", "core.orders", "core.order_items",
          "core.subscriptions", "core.subscription_versions", "core.plan_charges", "core.bundles_history", "core.bundle_members",
          "core.standalone_selling_prices", "core.usage_events",
          "revenue.journal_lines", "revenue.recognized", "revenue.closed_months",
          # what the bill runs still to come read (the estimates, pipelines/revenue/accrual.py)
          "core.customers", "core.price_plans", "core.tax_rates", "core.coupons", "core.coupon_products",
          "core.coupon_redemptions", "billing.rated_usage", "billing.invoice_lines", "billing.settlement_inputs")
HISTORY = {"valid_from": "2000-01-01", "valid_to": "9999-12-31", "is_deleted": False, "_op": "r", "_file": "fixture"}
DEFAULTS = {
    "core.billing_accounts": {**HISTORY, "customer_id": 1, "account_number": "AC-1", "billing_cycle": "MONTHLY",
                              "bill_cycle_day": 1, "payment_terms_days": 14, "currency": "USD", "status": "ACTIVE"},
    "core.products": {**HISTORY, "currency": "USD", "status": "ACTIVE"},
    "core.orders": {**HISTORY, "account_id": 1, "order_type": "NEW_SERVICE", "status": "CONFIRMED"},
    "core.order_items": {**HISTORY, "quantity": 1},
    "core.subscriptions": {"account_id": 1, "end_date": "9999-12-31", "status": "ACTIVE"},
    "core.subscription_versions": {"account_id": 1, "quantity": 1, "valid_to": "9999-12-31", "change_kind": "ACTIVATE"},
    "core.plan_charges": {**HISTORY, "charge_type": "RECURRING", "billing_timing": "IN_ADVANCE", "prorate": True,
                          "effective_from": "2000-01-01", "billing_interval": "MONTHLY"},
    "core.bundles_history": {**HISTORY, "status": "ACTIVE"},
    "core.bundle_members": HISTORY,
    "core.standalone_selling_prices": {**HISTORY, "currency": "USD", "effective_from": "2000-01-01"},
    "core.usage_events": {"is_deleted": False, "_file": "fixture", "unit": "MB"},
}
PRODUCTS = [  # the catalog of every example
    {"product_id": 1, "sku": "MOB-M", "name": "Mobile M", "category": "MOBILE", "product_type": "SUBSCRIPTION", "base_price": "29.99"},
    {"product_id": 2, "sku": "BB-100", "name": "Broadband 100", "category": "BROADBAND", "product_type": "SUBSCRIPTION", "base_price": "39.99"},
    {"product_id": 7, "sku": "DEV-PHONE-X", "name": "Phone X", "category": "DEVICE", "product_type": "ONE_TIME", "base_price": "599.00"},
    {"product_id": 8, "sku": "FEE-ACT", "name": "Activation fee", "category": "FEE", "product_type": "ONE_TIME", "base_price": "25.00"},
]
_line_ids = itertools.count(1)


def books(**rows) -> duckdb.DuckDBPyConnection:
    """A connection with the domain macros and every revenue input table, holding ``rows`` per table
    (keyword ``core__orders`` for core.orders); the catalog PRODUCTS and account 1 unless given; the
    ledger.documents rows derived from the lines unless given."""
    given = {name.replace("__", "."): r for name, r in rows.items()}
    given.setdefault("core.products", PRODUCTS)
    given.setdefault("core.billing_accounts", [{"account_id": 1}])
    given.setdefault("ledger.documents", documents_of(given.get("ledger.document_lines", [])))
    con = install_macros(duckdb.connect())
    for name in INPUTS:
        create_table_with_rows(con, name, given.get(name, []), DEFAULTS.get(name))
    return con


def line(line_type: str, net: str, start: date, end: date, *, document_id: str = "INV-1", subscription_id=None,
         product_id=1, source_ref=None, amount=None, **more) -> dict:
    """A ledger line of account 1 (USD, no tax), its id L<n>."""
    return {"line_id": f"L{next(_line_ids)}", "document_id": document_id, "document_number": document_id,
            "document_type": "CREDIT_NOTE" if document_id.startswith("CN") else "INVOICE",
            "billing_month": start.replace(day=1), "account_id": 1, "subscription_id": subscription_id,
            "line_type": line_type, "product_id": product_id, "service_start": start, "service_end": end,
            "amount": amount or net, "discount_amount": D(net) - D(amount or net), "coupon_amount": 0,
            "net_amount": net, "tax_amount": 0, "total_amount": net, "currency": "USD", "source_ref": source_ref,
            **more}


def documents_of(lines: list[dict], issue_dates: dict | None = None) -> list[dict]:
    """One ledger document per document_id of ``lines``, issued on the earliest service start of its lines
    (or ``issue_dates[document_id]``), totals the sums of its lines."""
    docs = {}
    for n, ln in enumerate(lines):
        d = docs.setdefault(ln["document_id"], {
            "document_id": ln["document_id"], "document_number": ln["document_id"], "document_type": ln["document_type"],
            "series": ln["document_type"][:3], "issue_year": 2025, "sequence_no": n + 1, "account_id": 1,
            "billing_month": ln["billing_month"], "period_start": ln["service_start"], "period_end": ln["service_end"],
            "issue_date": (issue_dates or {}).get(ln["document_id"], ln["service_start"]), "due_date": ln["service_start"],
            "currency": "USD", "line_count": 0, "subtotal": D(0), "discount_total": D(0), "coupon_total": D(0),
            "net_total": D(0), "tax_total": D(0), "total": D(0), "content_hash": "h", "finalized_at": "2025-01-01"})
        d["line_count"] += 1
        for total, col in (("subtotal", "amount"), ("discount_total", "discount_amount"), ("net_total", "net_amount"),
                           ("total", "total_amount")):
            d[total] += D(str(ln[col]))
        d["issue_date"] = (issue_dates or {}).get(ln["document_id"], min(d["issue_date"], ln["service_start"]))
    return list(docs.values())


def obligations(con, first_open: date | None = date(2025, 1, 1)) -> dict[str, dict]:
    """{obligation_id: row} of obligation_rows."""
    rel = con.sql(obligation_rows(con, first_open))
    assert rel.columns == OBLIGATION_COLUMNS
    return {r[0]: dict(zip(rel.columns, r)) for r in rel.fetchall()}


def _window(o: dict) -> tuple:
    return o["obligation_kind"], o["pattern"], o["recognition_start"], o["recognition_end"], o["spread_days"]


def test_kinds_patterns_and_windows():
    """A recurring line is SERVICE, RATABLE over its period; usage CONSUMPTION over its window; a minimum
    true-up RATABLE; a device GOOD at delivery (one day); tax is not revenue (billed = net)."""
    rec = line("RECURRING", "30.00", date(2025, 1, 15), date(2025, 2, 15), subscription_id=10)
    use = line("USAGE", "4.20", date(2025, 1, 15), date(2025, 2, 15), subscription_id=10, tax_amount="0.30")
    true_up = line("MINIMUM_TRUE_UP", "2.00", date(2025, 1, 15), date(2025, 2, 15), subscription_id=10)
    device = line("ONE_TIME", "599.00", date(2025, 1, 15), date(2025, 1, 16), product_id=7, source_ref="500")
    con = books(ledger__document_lines=[rec, use, true_up, device],
                core__orders=[{"order_id": 40, "order_number": "O-40", "effective_date": "2025-01-15"}],
                core__order_items=[{"order_item_id": 500, "order_id": 40, "product_id": 7}],
                core__subscriptions=[{"subscription_id": 10, "product_id": 1, "start_date": "2025-01-15",
                                      "created_order_id": 40}])
    o = obligations(con)
    assert _window(o[rec["line_id"]]) == ("SERVICE", "RATABLE", date(2025, 1, 15), date(2025, 2, 15), 31)
    assert _window(o[use["line_id"]]) == ("USAGE", "CONSUMPTION", date(2025, 1, 15), date(2025, 2, 15), 31)
    assert _window(o[true_up["line_id"]]) == ("USAGE", "RATABLE", date(2025, 1, 15), date(2025, 2, 15), 31)
    assert _window(o[device["line_id"]]) == ("GOOD", "POINT_IN_TIME", date(2025, 1, 15), date(2025, 1, 16), 1)
    # the subscription's activating order and the one-time item's order are the same contract
    assert {r["contract_id"] for r in o.values()} == {"ORD-40"}
    assert o[use["line_id"]]["billed_amount"] == o[use["line_id"]]["allocated_amount"] == D("4.20")
    assert o[device["line_id"]]["product_line"] == "DEVICE" and o[rec["line_id"]]["product_line"] == "MOBILE"


def test_activation_fee_over_the_expected_service_term_cut_at_the_service_end():
    """A month-to-month activation fee on 2025-01-07 is spread over EXPECTED_SERVICE_MONTHS = 24 months:
    [2025-01-07, 2027-01-07) = 730 days. Its service ending on 2025-03-07 cuts the window there; the spread
    stays 730 days (the rest is recognized on the window's last day, tests/test_revenue_schedule.py).
    A line traced to no order is the account's contract."""
    assert EXPECTED_SERVICE_MONTHS == 24
    fee = line("ONE_TIME", "25.00", date(2025, 1, 7), date(2025, 1, 8), product_id=8, source_ref="501")
    cut = line("ONE_TIME", "25.00", date(2025, 1, 7), date(2025, 1, 8), product_id=8, source_ref="601")
    orphan = line("ONE_TIME", "25.00", date(2025, 1, 7), date(2025, 1, 8), product_id=8, source_ref="999")
    con = books(ledger__document_lines=[fee, cut, orphan],
                core__orders=[{"order_id": 41, "order_number": "O-41", "effective_date": "2025-01-07"},
                              {"order_id": 42, "order_number": "O-42", "effective_date": "2025-01-07"}],
                core__order_items=[{"order_item_id": 501, "order_id": 41, "product_id": 8},
                                   {"order_item_id": 601, "order_id": 42, "product_id": 8}],
                core__subscriptions=[{"subscription_id": 11, "product_id": 1, "start_date": "2025-01-07",
                                      "created_order_id": 41},
                                     {"subscription_id": 12, "product_id": 1, "start_date": "2025-01-07",
                                      "end_date": "2025-03-07", "status": "ENDED", "created_order_id": 42}])
    o = obligations(con)
    assert _window(o[fee["line_id"]]) == ("FEE", "RATABLE", date(2025, 1, 7), date(2027, 1, 7), 730)
    assert _window(o[cut["line_id"]]) == ("FEE", "RATABLE", date(2025, 1, 7), date(2025, 3, 7), 730)
    assert o[orphan["line_id"]]["contract_id"] == "ACC-1"


def test_billings_are_booked_in_the_month_of_the_issue_date():
    """Cut-off: January's service invoiced on Feb 1 is billed in February, not January. With January and
    February closed (F = March) an unposted document is billed in March; a posted one keeps its month."""
    jan = line("RECURRING", "30.00", date(2025, 1, 1), date(2025, 2, 1), subscription_id=10, document_id="INV-A")
    late = line("RECURRING", "30.00", date(2025, 2, 1), date(2025, 3, 1), subscription_id=10, document_id="INV-B")
    lines = [jan, late]
    docs = documents_of(lines, {"INV-A": date(2025, 2, 1), "INV-B": date(2025, 2, 1)})
    posted = {"journal_line_id": "j1", "accounting_month": "2025-02-01", "currency": "USD", "entry_type": "BILLING",
              "entry_id": "e1", "account": "AR", "account_type": "ASSET", "debit": "30.00", "credit": 0,
              "concerns_month": "2025-02-01", "source_id": "INV-A", "description": "billing"}
    assert obligations(books(ledger__document_lines=lines, ledger__documents=docs))[jan["line_id"]]["billed_month"] \
        == date(2025, 2, 1)
    o = obligations(books(ledger__document_lines=lines, ledger__documents=docs, revenue__journal_lines=[posted]),
                    first_open=date(2025, 3, 1))
    assert (o[jan["line_id"]]["billed_month"], o[late["line_id"]]["billed_month"]) == (date(2025, 2, 1), date(2025, 3, 1))


def test_a_void_reverses_every_line_in_the_voids_month():
    """Voiding INV-V on Mar 3 adds VOID-<line> for each line: the same window, pattern and kind, billed and
    allocated negated, billed in March."""
    rec = line("RECURRING", "30.00", date(2025, 1, 15), date(2025, 2, 15), subscription_id=10, document_id="INV-V")
    void = {"document_id": "INV-V", "document_number": "INV-V", "document_type": "INVOICE", "account_id": 1,
            "currency": "USD", "total": "30.00", "reason": "wrong customer", "voided_on": "2025-03-03",
            "voided_at": "2025-03-03"}
    o = obligations(books(ledger__document_lines=[rec], ledger__voids=[void]))
    reversal = o["VOID-" + rec["line_id"]]
    assert _window(reversal) == _window(o[rec["line_id"]])
    assert (reversal["billed_amount"], reversal["allocated_amount"], reversal["billed_month"],
            reversal["reference_line_id"]) == (D("-30.00"), D("-30.00"), date(2025, 3, 1), rec["line_id"])


def test_credit_note_after_partial_service_is_a_negative_service_obligation():
    """31.00 billed for [Jan 15, Feb 15); the service is cut on Jan 20 and a credit note on Feb 1 credits the
    26 unused days: -31.00 x 26/31 = -26.00 over [Jan 20, Feb 15), referencing the credited line, billed in
    February (its issue month). Its schedule: tests/test_revenue_schedule.py."""
    rec = line("RECURRING", "31.00", date(2025, 1, 15), date(2025, 2, 15), subscription_id=10, document_id="INV-C")
    credit = line("RECURRING_CREDIT", "-26.00", date(2025, 1, 20), date(2025, 2, 15), subscription_id=10,
                  document_id="CN-C", reference_line_id=rec["line_id"])
    docs = documents_of([rec, credit], {"CN-C": date(2025, 2, 1)})
    o = obligations(books(ledger__document_lines=[rec, credit], ledger__documents=docs))[credit["line_id"]]
    assert (o["obligation_kind"], o["pattern"], o["recognition_start"], o["recognition_end"]) == \
        ("SERVICE", "RATABLE", date(2025, 1, 20), date(2025, 2, 15))
    assert (o["billed_amount"], o["allocated_amount"], o["billed_month"], o["reference_line_id"]) == \
        (D("-26.00"), D("-26.00"), date(2025, 2, 1), rec["line_id"])


def estimate_id(invoice_id: str, lineage: str) -> str:
    """The obligation id of an estimate: 'ACCRUED-' || the settlement line's id, md5(draft invoice id | lineage)
    (pipelines/invoicing/lines.py)."""
    return "ACCRUED-" + hashlib.md5(f"{invoice_id}|{lineage}".encode()).hexdigest()


def test_one_time_items_delivered_and_not_invoiced_are_estimated():
    """Account 1 (bill cycle day 1): the device (2 x 299.50) and the activation fee of order 60, delivered Jan 20,
    are on no document when January's billing month is finalized (L = January, the latest month computed: estimates
    as of Feb 1). The February run (its invoice INV-AC-1-20250301) would bill them: they are estimated, one
    ACCRUED-<settlement line id> each, the kind, pattern and window the invoiced line gets (the fee over 24 months:
    [2025-01-20, 2027-01-20) = 730 days), billed 0 in the month of delivery, allocated what the run would bill:
    round_money(299.50 x 2) = 599.00 and the fee at the product's base price 25.00 (the item has no price).
    Not estimated: an item invoiced (its line is the obligation), an item delivered after January (Feb 3),
    a CANCELLED order's item; an item whose only line is on a voided invoice is estimated again (VOIDED)."""
    orders = [{"order_id": 60, "order_number": "O-60", "effective_date": "2025-01-20"},
              {"order_id": 61, "order_number": "O-61", "effective_date": "2025-01-05"},
              {"order_id": 62, "order_number": "O-62", "effective_date": "2025-02-03"},
              {"order_id": 63, "order_number": "O-63", "effective_date": "2025-01-22", "status": "CANCELLED"},
              {"order_id": 64, "order_number": "O-64", "effective_date": "2025-01-06"}]
    items = [{"order_item_id": 600, "order_id": 60, "product_id": 7, "quantity": 2, "unit_price": "299.50"},
             {"order_item_id": 601, "order_id": 60, "product_id": 8},
             {"order_item_id": 610, "order_id": 61, "product_id": 7, "unit_price": "599.00"},
             {"order_item_id": 620, "order_id": 62, "product_id": 7, "unit_price": "599.00"},
             {"order_item_id": 630, "order_id": 63, "product_id": 7, "unit_price": "599.00"},
             {"order_item_id": 640, "order_id": 64, "product_id": 7, "unit_price": "599.00"}]
    invoiced = line("ONE_TIME", "599.00", date(2025, 1, 5), date(2025, 1, 6), product_id=7, source_ref="610")
    voided = line("ONE_TIME", "599.00", date(2025, 1, 6), date(2025, 1, 7), product_id=7, source_ref="640",
                  document_id="INV-V")
    void = {"document_id": "INV-V", "document_number": "INV-V", "document_type": "INVOICE", "account_id": 1,
            "currency": "USD", "total": "599.00", "reason": "wrong account", "voided_on": "2025-01-10",
            "voided_at": "2025-01-10"}
    con = books(ledger__document_lines=[invoiced, voided], ledger__voids=[void], core__orders=orders,
                core__order_items=items,
                ledger__finalized_months=[{"billing_month": "2025-01-01", "invoices": 1, "credit_notes": 0,
                                           "drafts_hash": "h", "finalized_at": "2025-02-01"}])
    o = obligations(con)
    estimates = {k: v for k, v in o.items() if k.startswith("ACCRUED-")}
    ids = {item: estimate_id("INV-AC-1-20250301", f"ONE_TIME|{item}") for item in (600, 601, 640)}
    assert sorted(estimates) == sorted(ids.values())
    device, fee = estimates[ids[600]], estimates[ids[601]]
    assert _window(device) == ("GOOD", "POINT_IN_TIME", date(2025, 1, 20), date(2025, 1, 21), 1)
    assert _window(fee) == ("FEE", "RATABLE", date(2025, 1, 20), date(2027, 1, 20), 730)
    assert [(e["contract_id"], e["product_line"], e["document_id"], e["line_id"], e["billed_month"], e["billed_amount"],
             e["allocated_amount"]) for e in (device, fee)] == [
        ("ORD-60", "DEVICE", None, None, date(2025, 1, 1), D("0"), D("599.00")),
        ("ORD-60", "FEE", None, None, date(2025, 1, 1), D("0"), D("25.00"))]
    assert o[invoiced["line_id"]]["allocated_amount"] == D("599.00")  # the invoiced item: its line, no estimate
    assert o[ids[640]]["allocated_amount"] == D("599.00")  # the voided line and its VOID- reversal net to 0
