"""Customer documents: a finalized invoice and a credit note rendered to HTML, printed to PDF by headless
Chromium, and read back with pdftotext; minor units (JPY, KWD), escaping; the asset and the command."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date
from decimal import Decimal, Inexact
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.assets.documents import customer_documents
from pipelines.documents.__main__ import main as documents_command
from pipelines.documents.pdf import ChromiumMissing, chromium_binary, print_to_pdf
from pipelines.documents.render import Operator, money, percent, plain, render_document, render_month
from pipelines.partitions import month_key
from pipelines.resources import Warehouse
from warehouse.connection import connect
from warehouse.fixtures import create_table_with_rows
from warehouse.migrations import migrate

OPERATOR = Operator(name="Tally Telecom", address="1 Exchange Square, London", bank="IBAN GB33 BUKB 2020 1555 5555 55")
JAN = "2025-01-01"

# Account 1 (USD, US-WA, bank transfer, 14 days): INV-2025-000001 for [Jan 1, Feb 1), issued Feb 1, due Feb 15.
#   L1 Mobile Plus Feb in advance 49.99; bundle 10 %: -round(4.999) = -5.00; coupon 20 % of 44.99 = 8.998 -> -9.00;
#      net 49.99 - 5.00 - 9.00 = 35.99; tax 6.8 %: 35.99 x 0.068 = 2.44732 -> 2.45; total 38.44
#   L2 data usage 1,536.5 MB x 0.0125 = 19.20625 -> 19.21; tax 19.21 x 0.068 = 1.30628 -> 1.31; total 20.52
#   L3 late December usage (adjustment of INV-2024-000123) 3.40; tax 3.40 x 0.068 = 0.2312 -> 0.23; total 3.63
#   L4 activation fee 25.00 (no service); tax 1.70; total 26.70
#   L5 broadband cancelled Jan 10: credit 39.99 x 22/31 = 879.78/31 = 28.38 -> -28.38, reversed at the credited
#      line's US-CA 7.25 %: -28.38 x 0.0725 = -2.05755 -> -2.06; total -30.44
#   subtotal 49.99 + 19.21 + 3.40 + 25.00 - 28.38 = 69.22; net 69.22 - 5.00 - 9.00 = 55.22;
#   tax US-WA 6.8 %: 2.45 + 1.31 + 0.23 + 1.70 = 5.69 on 35.99 + 19.21 + 3.40 + 25.00 = 83.60; US-CA 7.25 %: -2.06 on -28.38;
#   tax 5.69 - 2.06 = 3.63; total 55.22 + 3.63 = 58.85.
# Paid 20.00: open 58.85 - 20.00 = 38.85 (partially paid); INV-2024-000123 still owes 12.50: account balance
# 38.85 + 12.50 = 51.35, carried from other documents 51.35 - 38.85 = 12.50.
# Account 2 (JPY, JP, business): CN-2025-000001 credits 3,000 x 16/31 = 48,000/31 = 1,548.39 -> -1,548 of
#   December (backdated disconnect Dec 16, INV-2024-000456); consumption tax 10 %: -154.8 -> -155; total -1,703.
# Account 3 (KWD, 0 % explicit): INV-2025-000002: 12.500 + 100 x 0.0125 = 1.250; total 13.750; card.
DOCUMENTS = [
    dict(document_id="INV-A0001-20250201", document_number="INV-2025-000001", document_type="INVOICE", series="INV",
         sequence_no=1, account_id=1, customer_id=1, currency="USD", due_date="2025-02-15", line_count=5,
         subtotal="69.22", discount_total="-5.00", coupon_total="-9.00", net_total="55.22", tax_total="3.63", total="58.85"),
    dict(document_id="CN-A0002-20250201", document_number="CN-2025-000001", document_type="CREDIT_NOTE", series="CN",
         sequence_no=1, account_id=2, customer_id=2, currency="JPY", due_date="2025-02-01", line_count=1,
         subtotal="-1548", discount_total="0", coupon_total="0", net_total="-1548", tax_total="-155", total="-1703"),
    dict(document_id="INV-A0003-20250201", document_number="INV-2025-000002", document_type="INVOICE", series="INV",
         sequence_no=2, account_id=3, customer_id=3, currency="KWD", due_date="2025-02-08", line_count=2,
         subtotal="13.750", discount_total="0", coupon_total="0", net_total="13.750", tax_total="0", total="13.750"),
]
DOCUMENT_DEFAULTS = dict(issue_year=2025, billing_month=JAN, period_start=JAN, period_end="2025-02-01", issue_date="2025-02-01",
                         content_hash="0" * 64, finalized_at="2025-02-02 08:00:00")
INV1 = dict(document_id="INV-A0001-20250201", document_number="INV-2025-000001", document_type="INVOICE", account_id=1,
            currency="USD", tax_jurisdiction="US-WA", tax_name="WA sales tax", tax_rate="0.068", tax_point="2025-02-01")
LINES = [
    dict(INV1, line_id="l1", subscription_id=501, line_type="RECURRING", product_id=10, plan_id=100, description="Mobile Plus monthly fee",
         service_start="2025-02-01", service_end="2025-03-01", quantity=1, unit_price="49.99", amount="49.99", discount_pct="0.10",
         discount_amount="-5.00", coupon_id=7, coupon_amount="-9.00", net_amount="35.99", tax_amount="2.45", total_amount="38.44"),
    dict(INV1, line_id="l2", subscription_id=501, line_type="USAGE", product_id=10, plan_id=100, description="Mobile data (MB)",
         service_start=JAN, service_end="2025-02-01", quantity="1536.5", unit_price="0.0125", amount="19.21",
         net_amount="19.21", tax_amount="1.31", total_amount="20.52"),
    dict(INV1, line_id="l3", subscription_id=501, line_type="USAGE_ADJUSTMENT", product_id=10, plan_id=100,
         description="Mobile data (MB), late usage", service_start="2024-12-01", service_end=JAN, service_month="2024-12-01",
         quantity="272", unit_price="0.0125", amount="3.40", net_amount="3.40", tax_amount="0.23", total_amount="3.63",
         reference_line_id="d9", reference_document_number="INV-2024-000123", adjustment_reason="LATE_USAGE"),
    dict(INV1, line_id="l4", line_type="ONE_TIME", product_id=30, description="Activation fee", service_start="2025-01-05",
         service_end="2025-01-06", quantity=1, unit_price="25.00", amount="25.00", net_amount="25.00", tax_amount="1.70", total_amount="26.70"),
    dict(INV1, line_id="l5", subscription_id=502, line_type="RECURRING_CREDIT", product_id=20, plan_id=200,
         description="Broadband 100 monthly fee, cancelled", service_start="2025-01-10", service_end="2025-02-01", quantity=1,
         unit_price="39.99", days=22, period_days=31, amount="-28.38", net_amount="-28.38", tax_jurisdiction="US-CA",
         tax_name="CA sales tax", tax_rate="0.0725", tax_point=JAN, tax_amount="-2.06", total_amount="-30.44",
         reference_line_id="d8", reference_document_number="INV-2024-000123"),
    dict(line_id="c1", document_id="CN-A0002-20250201", document_number="CN-2025-000001", document_type="CREDIT_NOTE", account_id=2,
         subscription_id=601, line_type="RECURRING_CREDIT", product_id=10, plan_id=100, description="Mobile Plus monthly fee, disconnected",
         service_start="2024-12-16", service_end=JAN, service_month="2024-12-01", quantity=1, unit_price="3000", days=16,
         period_days=31, amount="-1548", net_amount="-1548", tax_jurisdiction="JP", tax_name="Consumption tax", tax_rate="0.10",
         tax_point=JAN, tax_amount="-155", total_amount="-1703", currency="JPY", reference_line_id="d7",
         reference_document_number="INV-2024-000456", adjustment_reason="BACKDATED_CHANGE"),
    dict(line_id="k1", document_id="INV-A0003-20250201", document_number="INV-2025-000002", document_type="INVOICE", account_id=3,
         subscription_id=701, line_type="RECURRING", product_id=10, plan_id=100, description="Mobile Plus monthly fee",
         service_start="2025-02-01", service_end="2025-03-01", quantity=1, unit_price="12.5", amount="12.500", net_amount="12.500",
         tax_jurisdiction="KW", tax_name="No VAT", tax_rate="0", tax_amount="0", total_amount="12.500", currency="KWD"),
    dict(line_id="k2", document_id="INV-A0003-20250201", document_number="INV-2025-000002", document_type="INVOICE", account_id=3,
         subscription_id=701, line_type="USAGE", product_id=10, plan_id=100, description="Mobile data (MB)", service_start=JAN,
         service_end="2025-02-01", quantity=100, unit_price="0.0125", amount="1.250", net_amount="1.250", tax_jurisdiction="KW",
         tax_name="No VAT", tax_rate="0", tax_amount="0", total_amount="1.250", currency="KWD"),
]
LINE_DEFAULTS = dict(billing_month=JAN, service_month=JAN, discount_amount="0", coupon_amount="0")
CUSTOMERS = [
    dict(customer_id=1, name="Smith <&> Sons", email="ap@smith.example", address_line="12 Pike St", city="Seattle", state="WA",
         postal_code="98101", country="US", customer_type="BUSINESS"),
    dict(customer_id=2, name="Yamada Shoji KK", address_line="1-1 Marunouchi", city="Tokyo", postal_code="100-0005", country="JP",
         customer_type="BUSINESS"),
    dict(customer_id=3, name="Al-Sabah Trading", city="Kuwait City", country="KW", customer_type="BUSINESS"),
]
ACCOUNTS = [
    dict(account_id=1, customer_id=1, account_number="A0001", payment_method="BANK_TRANSFER", payment_terms_days=14, currency="USD"),
    dict(account_id=2, customer_id=2, account_number="A0002", payment_method="DIRECT_DEBIT", payment_terms_days=30, currency="JPY"),
    dict(account_id=3, customer_id=3, account_number="A0003", payment_method="CARD", payment_terms_days=7, currency="KWD"),
]
LIVE = dict(status="ACTIVE", is_deleted=False, valid_from="2024-01-01 00:00:00")


def insert(con: duckdb.DuckDBPyConnection, qualified: str, rows: list[dict], defaults: dict | None = None) -> None:
    """Append ``rows`` to the migrated warehouse's ``qualified`` table (exact values, via a contract-typed copy)."""
    given = create_table_with_rows(con, qualified, rows, defaults, schema="given")
    con.execute(f"INSERT INTO {qualified} SELECT * FROM {given}; DROP TABLE {given}")


@pytest.fixture
def warehouse(tmp_path) -> Path:
    """A migrated warehouse holding three finalized January documents, their accounts and the receivables of account 1."""
    path = tmp_path / "warehouse.duckdb"
    with connect(path) as con:
        migrate(con)
        insert(con, "ledger.documents", DOCUMENTS, DOCUMENT_DEFAULTS)
        insert(con, "ledger.document_lines", LINES, LINE_DEFAULTS)
        insert(con, "core.customers", CUSTOMERS, LIVE)
        insert(con, "core.billing_accounts", ACCOUNTS, dict(LIVE, billing_cycle="MONTHLY", bill_cycle_day=1))
        insert(con, "core.products", [dict(product_id=10, sku="MOB-PLUS", name="Mobile Plus", category="MOBILE"),
                                      dict(product_id=20, sku="BB-100", name="Broadband 100", category="BROADBAND"),
                                      dict(product_id=30, sku="ACT", name="Activation", category="FEE", product_type="ONE_TIME")],
               dict(LIVE, product_type="SUBSCRIPTION", base_price="0", currency="USD"))
        insert(con, "core.price_plans", [dict(plan_id=100, product_id=10, name="Plus 2025"), dict(plan_id=200, product_id=20, name="BB 2024")],
               dict(LIVE, currency="USD"))
        insert(con, "core.coupons", [dict(coupon_id=7, code="WELCOME20", name="Welcome 20 %", discount_type="PERCENT",
                                          percent_off="0.20", duration="ONCE")], LIVE)
        insert(con, "billing.document_status", [
            dict(document_id="INV-A0001-20250201", document_number="INV-2025-000001", document_type="INVOICE", account_id=1,
                 currency="USD", issue_date="2025-02-01", due_date="2025-02-15", total="58.85", applied="20.00",
                 open_amount="38.85", status="PARTIALLY_PAID")])
        insert(con, "billing.account_balances", [
            dict(account_id=1, currency="USD", invoiced="71.35", credited="0", paid_net="20.00", open_ar="51.35",
                 account_credit="0", balance="51.35", credit_limit="500", over_credit_limit=False)])
    return path


def pdf_text(html: str, tmp_path: Path, name: str) -> str:
    """The text of ``html`` as Chromium prints it (A4), extracted by pdftotext with its layout, spaces collapsed per line."""
    assert shutil.which("pdftotext"), "pdftotext (poppler-utils) is missing: `.ci/run` installs it"
    try:
        chromium_binary()
    except ChromiumMissing as missing:
        pytest.fail(str(missing))
    source = tmp_path / f"{name}.html"
    source.write_text(html, encoding="utf-8")
    pdf = print_to_pdf(source, tmp_path / f"{name}.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return "\n".join(re.sub(r"\s+", " ", line).strip() for line in text.splitlines())


def has_row(text: str, *cells: str) -> bool:
    """Some printed line holds ``cells`` in this order."""
    pattern = r".*".join(re.escape(c) for c in cells)
    return any(re.search(pattern, line) for line in text.splitlines())


def test_an_invoice_prints_everything_a_customer_needs(warehouse, tmp_path):
    with connect(warehouse, read_only=True) as con:
        html = render_document(con, "INV-2025-000001", OPERATOR)
    text = pdf_text(html, tmp_path, "INV-2025-000001")
    flat = " ".join(text.split())
    for expected in ("Tally Telecom", "Invoice", "INV-2025-000001", "Smith <&> Sons", "12 Pike St", "98101 Seattle",
                     "Billing period 1 Jan – 31 Jan 2025", "Account A0001", "Issue date 1 Feb 2025", "Due date 15 Feb 2025"):
        assert expected in flat, expected
    # lines grouped by service, each with its description and amount
    assert has_row(text, "Service 501: Mobile Plus · Plus 2025")
    assert has_row(text, "Service 502: Broadband 100 · BB 2024")
    assert has_row(text, "One-time items")
    assert has_row(text, "Mobile Plus monthly fee", "1 Feb – 28 Feb 2025", "49.99", "6.8 %", "49.99")
    assert has_row(text, "Bundle discount 10 %", "-5.00")
    assert has_row(text, "Coupon WELCOME20 (Welcome 20 %)", "-9.00")
    assert has_row(text, "Mobile data (MB)", "1,536.5", "0.0125", "19.21")
    assert has_row(text, "Mobile data (MB), late usage", "272", "3.40")
    assert "Adjustment: corrects INV-2024-000123, service of Dec 2024, late usage" in flat
    assert has_row(text, "Activation fee", "1", "25.00", "25.00")
    assert has_row(text, "Broadband 100 monthly fee, cancelled", "10 Jan – 31 Jan 2025", "39.99", "7.25 %", "-28.38")
    assert "corrects INV-2024-000123" in flat
    # taxes by jurisdiction and rate: US-WA 6.8 % 5.69 on 83.60; US-CA 7.25 % -2.06 on -28.38
    assert has_row(text, "US-WA", "WA sales tax", "6.8 %", "83.60", "5.69")
    assert has_row(text, "US-CA", "CA sales tax", "7.25 %", "-28.38", "-2.06")
    # totals
    for label, amount in (("Subtotal", "69.22"), ("Bundle discounts", "-5.00"), ("Coupons", "-9.00"), ("Net amount", "55.22"),
                          ("Tax", "3.63"), ("Total", "58.85")):
        assert has_row(text, label, f"{amount} USD"), label
    # balance: 12.50 carried + 38.85 open on this invoice (58.85 - 20.00 paid) = 51.35
    assert has_row(text, "Balance carried from your other documents", "12.50 USD")
    assert has_row(text, "Amount due on this invoice (partially paid)", "38.85 USD")
    assert has_row(text, "Account balance", "51.35 USD")
    assert ("Please pay 38.85 USD by 15 Feb 2025 by bank transfer to Tally Telecom, IBAN GB33 BUKB 2020 1555 5555 55, "
            "quoting INV-2025-000001 as the payment reference.") in flat


def test_a_credit_note_in_yen_prints_what_it_corrects(warehouse, tmp_path):
    with connect(warehouse, read_only=True) as con:
        html = render_document(con, "CN-2025-000001", OPERATOR)
    text = pdf_text(html, tmp_path, "CN-2025-000001")
    flat = " ".join(text.split())
    for expected in ("Credit note", "CN-2025-000001", "Yamada Shoji KK", "Issue date 1 Feb 2025", "Account A0002"):
        assert expected in flat, expected
    assert "Due date" not in flat  # a credit note is not due
    # 3,000 x 16/31 -> -1,548 JPY (no decimals); tax 10 %: -155; total -1,703
    assert has_row(text, "Mobile Plus monthly fee, disconnected", "16 Dec – 31 Dec 2024", "3,000", "10 %", "-1,548")
    assert "Adjustment: corrects INV-2024-000456, service of Dec 2024, backdated change" in flat
    assert has_row(text, "JP", "Consumption tax", "10 %", "-1,548", "-155")
    assert has_row(text, "Total credited", "-1,703 JPY")
    assert has_row(text, "Credit available on this credit note", "-1,703 JPY")  # not yet applied (no receivables run)
    assert "This credit note credits 1,703 JPY." in flat


def test_a_long_document_repeats_the_table_header_on_every_page(warehouse, tmp_path):
    # 80 daily data lines of 1.00 (no tax): subtotal = net = total = 80 x 1.00 = 80.00
    number, document_id = "INV-2025-000003", "INV-A0001-20250201-LONG"
    with connect(warehouse) as con:
        insert(con, "ledger.documents", [dict(DOCUMENTS[0], document_id=document_id, document_number=number, sequence_no=3,
                                              line_count=80, subtotal="80.00", discount_total="0", coupon_total="0",
                                              net_total="80.00", tax_total="0", total="80.00")], DOCUMENT_DEFAULTS)
        insert(con, "ledger.document_lines", [
            dict(INV1, document_id=document_id, document_number=number, line_id=f"long{i:02d}", subscription_id=501,
                 line_type="USAGE", description=f"Roaming day {i + 1}", quantity=1, unit_price="1", amount="1.00",
                 net_amount="1.00", tax_rate="0", tax_amount="0", total_amount="1.00") for i in range(80)], LINE_DEFAULTS)
        html = render_document(con, number, OPERATOR)
    text = pdf_text(html, tmp_path, number)
    assert has_row(text, "Total", "80.00 USD")
    pages = [subprocess.run(["pdftotext", "-f", str(p), "-l", str(p), "-layout", str(tmp_path / f"{number}.pdf"), "-"],
                            capture_output=True, text=True, check=True).stdout for p in (1, 2)]
    assert pages[1].strip(), "80 lines fit on one A4 page: the test needs more"
    for page in pages:
        assert re.search(r"Description\s+Service period\s+Quantity\s+Unit price\s+Tax rate\s+Amount \(USD\)", page)
    assert "Roaming day 80" in pages[1]


def test_dinars_print_three_decimals_and_the_card_is_charged(warehouse):
    with connect(warehouse, read_only=True) as con:
        html = render_document(con, "INV-2025-000002", OPERATOR)
    assert '<td class="num">12.500</td>' in html and '<td class="num">1.250</td>' in html  # 12.5 and 100 x 0.0125
    assert '<td class="num">0.0125</td>' in html  # a unit price keeps its precision
    assert "13.750 KWD</td>" in html
    assert "13.750 KWD will be charged to the card on file on 8 Feb 2025." in html


def test_a_voided_document_says_so_and_keeps_its_number(warehouse):
    with connect(warehouse) as con:
        insert(con, "ledger.voids", [dict(document_id="INV-A0003-20250201", document_number="INV-2025-000002", document_type="INVOICE",
                                          account_id=3, currency="KWD", total="13.750", reason="wrong plan <billed>",
                                          voided_on="2025-02-03", voided_at="2025-02-03 09:00:00")])
        html = render_document(con, "INV-2025-000002", OPERATOR)
    assert "INV-2025-000002" in html
    assert "VOID since 3 Feb 2025: wrong plan &lt;billed&gt;" in html
    assert "This document was voided on 3 Feb 2025 (wrong plan &lt;billed&gt;). Nothing is due on it." in html


def test_customer_text_is_html_escaped(warehouse):
    with connect(warehouse, read_only=True) as con:
        html = render_document(con, "INV-2025-000001", OPERATOR)
    assert "Smith &lt;&amp;&gt; Sons" in html
    assert "<&>" not in html


def test_an_unknown_number_is_an_error(warehouse):
    with connect(warehouse, read_only=True) as con, pytest.raises(KeyError, match="INV-2025-999999"):
        render_document(con, "INV-2025-999999", OPERATOR)


@pytest.mark.parametrize("amount, currency, printed", [
    ("1234.5", "USD", "1,234.50"), ("-28.38", "USD", "-28.38"), ("0", "USD", "0.00"),
    ("1548", "JPY", "1,548"), ("-1703.0000", "JPY", "-1,703"),
    ("12.5", "KWD", "12.500"), ("1234.125", "KWD", "1,234.125"),
])
def test_money_prints_the_currency_minor_unit(amount, currency, printed):
    assert money(Decimal(amount), currency) == printed


def test_money_never_rounds_an_amount_away():
    with pytest.raises(Inexact):
        money(Decimal("1.005"), "USD")  # an amount finer than the minor unit is a bug upstream, not a rounding


@pytest.mark.parametrize("value, places, printed", [
    ("29.9900000000", 2, "29.99"), ("0.0125000000", 2, "0.0125"), ("3000", 0, "3,000"), ("1536.5000000000", 0, "1,536.5"),
    ("12.5", 3, "12.500"), ("1.0000000000", 0, "1"),
])
def test_plain_drops_trailing_zeros_but_keeps_the_minor_unit(value, places, printed):
    assert plain(Decimal(value), places) == printed


def test_percent():
    assert (percent(Decimal("0.072500")), percent(Decimal("0.19")), percent(Decimal("0")), percent(None)) == (
        "7.25 %", "19 %", "0 %", "no rate")


def test_the_finalize_asset_writes_the_months_documents(warehouse, tmp_path, monkeypatch):
    out = tmp_path / "documents"
    monkeypatch.setenv("TALLY_DOCUMENTS_DIR", str(out))
    result = dg.materialize([customer_documents], resources={"warehouse": Warehouse(path=str(warehouse))},
                            partition_key=month_key(date.fromisoformat(JAN)),
                            raise_on_error=False)
    assert result.success
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html")) == [
        "2025/CN-2025-000001.html", "2025/INV-2025-000001.html", "2025/INV-2025-000002.html"]
    assert "Smith &lt;&amp;&gt; Sons" in (out / "2025" / "INV-2025-000001.html").read_text()
    [materialization] = result.asset_materializations_for_node("customer_documents")
    assert materialization.metadata["documents"].value == 3
    assert "CN-2025-000001" in materialization.metadata["first_document"].value  # number order: CN before INV


@pytest.mark.parametrize("per_batch", [1, 2, 3, 1000])
def test_a_month_rendered_in_batches_is_the_month_rendered_at_once(warehouse, per_batch):
    # 3 documents: batches of 1 and 2 split them (CN-…001 | INV-…001, INV-…002), 3 and 1000 take them at once
    with connect(warehouse, read_only=True) as con:
        batched = list(render_month(con, date.fromisoformat(JAN), OPERATOR, per_batch=per_batch))
        whole = [(n, render_document(con, n, OPERATOR)) for n in ("CN-2025-000001", "INV-2025-000001", "INV-2025-000002")]
    assert [(h["document_number"], text) for h, text in batched] == whole


def test_the_asset_is_in_the_finalize_jobs_group():
    from pipelines.definitions import defs

    [spec] = [s for a in defs.assets for s in a.specs if s.key == dg.AssetKey(["customer_documents"])]
    assert spec.group_name == "ledger"  # the finalize job selects the "ledger" group
    assert dg.AssetKey(["ledger", "documents"]) in {d.asset_key for d in spec.deps}


def test_the_command_writes_html_and_pdf(warehouse, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TALLY_DOCUMENTS_DIR", str(tmp_path / "documents"))
    assert documents_command(["INV-2025-000002", "--warehouse", str(warehouse), "--pdf", str(tmp_path / "k.pdf")]) == 0
    html = tmp_path / "documents" / "2025" / "INV-2025-000002.html"
    assert "Al-Sabah Trading" in html.read_text()
    text = subprocess.run(["pdftotext", str(tmp_path / "k.pdf"), "-"], capture_output=True, text=True, check=True).stdout
    assert "INV-2025-000002" in text and "13.750 KWD" in text
    assert documents_command(["INV-2025-999999", "--warehouse", str(warehouse)]) == 1
    assert "no ledger document numbered 'INV-2025-999999'" in capsys.readouterr().err


def test_without_chromium_the_error_says_what_installs_it(monkeypatch):
    from pipelines.documents import pdf

    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(pdf, "DEBIAN_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(ChromiumMissing, match=r"\.ci/run"):
        chromium_binary()
