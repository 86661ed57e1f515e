"""A ledger invoice or credit note as the HTML document a customer receives (docs/billing.md "Customer documents").

Three queries fetch a set of documents (:func:`document_sheets`): their headers joined to the customer,
the account, the receivables status and balance and any void; their lines with product, plan and coupon
names, in print order; their taxes summed per jurisdiction and rate. Python only formats those few rows
(:func:`render_sheet`). Amounts are printed exactly to the currency's minor unit (``domain.money.minor_unit``):
an amount finer than that is an error, never rounded away. Every value from the warehouse is HTML-escaped.
"""

from __future__ import annotations

import html
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Context, Decimal, Inexact

import duckdb

from domain.money import minor_unit

OPERATOR_NAME_ENV = "TALLY_OPERATOR_NAME"
OPERATOR_ADDRESS_ENV = "TALLY_OPERATOR_ADDRESS"
OPERATOR_BANK_ENV = "TALLY_OPERATOR_BANK"

REASONS = {
    "LATE_USAGE": "late usage",
    "BACKDATED_CHANGE": "backdated change",
    "CATALOG_CHANGE": "price change",
    "ORDER_REVERSED": "order reversed",
    "VOIDED": "re-billed after a voided document",
}

HEADERS_SQL = """
SELECT d.*, a.account_number, a.payment_method,
       c.name AS customer_name, c.email, c.address_line, c.city, c.state, c.postal_code, c.country,
       s.status AS payment_status, s.paid_date,
       coalesce(s.open_amount, d.total) AS amount_due,
       coalesce(b.balance, 0) - coalesce(s.open_amount, 0) AS balance_carried,
       v.reason AS void_reason, v.voided_on
FROM ledger.documents d
LEFT JOIN core.billing_accounts a ON a.account_id = d.account_id
LEFT JOIN core.customers c ON c.customer_id = coalesce(d.customer_id, a.customer_id)
LEFT JOIN billing.document_status s ON s.document_id = d.document_id
LEFT JOIN billing.account_balances b ON b.account_id = d.account_id AND b.currency = d.currency
LEFT JOIN ledger.voids v ON v.document_id = d.document_id
WHERE {where}
ORDER BY d.document_number
"""

# Print order within a document: services (by id), then items without a service; within a service the
# recurring fees, one-time items, usage, then adjustments of earlier periods.
LINES_SQL = """
SELECT l.*, p.name AS product_name, pl.name AS plan_name, cp.name AS coupon_name, cp.code AS coupon_code
FROM ledger.document_lines l
LEFT JOIN core.products p ON p.product_id = l.product_id
LEFT JOIN core.price_plans pl ON pl.plan_id = l.plan_id
LEFT JOIN core.coupons cp ON cp.coupon_id = l.coupon_id
WHERE {line_range} AND l.document_id IN (SELECT d.document_id FROM ledger.documents d WHERE {where})
ORDER BY l.document_number, l.subscription_id NULLS LAST,
         l.adjustment_reason IS NOT NULL,
         CASE WHEN l.line_type LIKE 'RECURRING%' THEN 0 WHEN l.line_type LIKE 'ONE_TIME%' THEN 1 ELSE 2 END,
         l.service_start, l.line_type, l.line_id
"""

TAXES_SQL = """
SELECT l.document_number, l.tax_jurisdiction, l.tax_name, l.tax_rate,
       sum(l.net_amount) AS taxable_amount, sum(l.tax_amount) AS tax_amount
FROM ledger.document_lines l
WHERE {line_range} AND l.document_id IN (SELECT d.document_id FROM ledger.documents d WHERE {where})
GROUP BY ALL
ORDER BY l.document_number, l.tax_jurisdiction NULLS LAST, l.tax_rate NULLS LAST, l.tax_name
"""


@dataclass(frozen=True)
class Operator:
    """Who issues the documents: printed in the header, and the bank account transfers go to."""

    name: str
    address: str
    bank: str

    @classmethod
    def from_env(cls) -> Operator:
        """``$TALLY_OPERATOR_NAME``, ``$TALLY_OPERATOR_ADDRESS``, ``$TALLY_OPERATOR_BANK`` (defaults: the sample operator)."""
        return cls(
            name=os.environ.get(OPERATOR_NAME_ENV, "Tally Telecom"),
            address=os.environ.get(OPERATOR_ADDRESS_ENV, "1 Exchange Square, London EC2A 2BR, GB"),
            bank=os.environ.get(OPERATOR_BANK_ENV, "IBAN GB33 BUKB 2020 1555 5555 55, BIC BUKBGB22"),
        )


@dataclass(frozen=True)
class Sheet:
    """One document's rows: its header, its lines in print order, its taxes per jurisdiction and rate."""

    header: dict
    lines: list[dict]
    taxes: list[dict]


def _dicts(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> list[dict]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def document_sheets(con: duckdb.DuckDBPyConnection, where: str, params: list,
                    numbers: tuple[str, str] | None = None) -> list[Sheet]:
    """The documents of ``ledger.documents d`` matching ``where`` (SQL over ``d``, with ``params``), by number;
    ``numbers``: (first, last) document number they lie within, so the lines are read only in that range."""
    line_range, range_params = ("l.document_number BETWEEN ? AND ?", list(numbers)) if numbers else ("true", [])
    headers = _dicts(con, HEADERS_SQL.format(where=where), params)
    lines = _dicts(con, LINES_SQL.format(where=where, line_range=line_range), range_params + params)
    taxes = _dicts(con, TAXES_SQL.format(where=where, line_range=line_range), range_params + params)
    by_number = {
        key: {number: list(rows) for number, rows in itertools.groupby(rows, key=lambda r: r["document_number"])}
        for key, rows in (("lines", lines), ("taxes", taxes))
    }
    return [Sheet(h, by_number["lines"].get(h["document_number"], []), by_number["taxes"].get(h["document_number"], []))
            for h in headers]


def document_sheet(con: duckdb.DuckDBPyConnection, document_number: str) -> Sheet:
    """The rows of ledger document ``document_number`` (a KeyError when there is none)."""
    sheets = document_sheets(con, "d.document_number = ?", [document_number])
    if not sheets:
        raise KeyError(f"no ledger document numbered {document_number!r}")
    return sheets[0]


def render_document(con: duckdb.DuckDBPyConnection, document_number: str, operator: Operator | None = None) -> str:
    """The HTML of ledger document ``document_number`` (a KeyError when there is none)."""
    return render_sheet(document_sheet(con, document_number), operator or Operator.from_env())


DOCUMENTS_PER_BATCH = 20_000
"""Documents fetched and rendered at a time: memory stays bounded whatever the month's size (1M invoices)."""

BATCHES_SQL = """
SELECT min(document_number), max(document_number)
FROM (SELECT document_number, (row_number() OVER (ORDER BY document_number) - 1) // $per_batch AS batch
      FROM ledger.documents WHERE billing_month = $month)
GROUP BY batch ORDER BY batch
"""


def render_month(con: duckdb.DuckDBPyConnection, billing_month: date, operator: Operator | None = None,
                 per_batch: int = DOCUMENTS_PER_BATCH) -> Iterator[tuple[dict, str]]:
    """(header, HTML) of every document finalized for ``billing_month``, by number, fetched ``per_batch`` at a time."""
    operator = operator or Operator.from_env()
    for first, last in con.execute(BATCHES_SQL, {"month": billing_month, "per_batch": per_batch}).fetchall():
        for sheet in document_sheets(con, "d.billing_month = ? AND d.document_number BETWEEN ? AND ?",
                                     [billing_month, first, last], numbers=(first, last)):
            yield sheet.header, render_sheet(sheet, operator)


# -- formatting ------------------------------------------------------------------------------------------------

def money(amount: Decimal, currency: str) -> str:
    """``amount`` to exactly the currency's minor unit, grouped by thousands: 1,234.50 (JPY 1,235; KWD 1.250)."""
    exact = Decimal(amount).quantize(Decimal(1).scaleb(-minor_unit(currency)), context=Context(traps=[Inexact]))
    return f"{exact:,}"


def plain(value: Decimal, min_places: int = 0) -> str:
    """A quantity or unit price without trailing zeros, with at least ``min_places`` decimals: 29.99, 0.0125, 3,000."""
    value = Decimal(value)
    places = max(min_places, -value.normalize().as_tuple().exponent)
    return f"{value.quantize(Decimal(1).scaleb(-places)):,}"


def percent(rate: Decimal | None) -> str:
    """A fraction as a percentage: 0.072500 -> 7.25 %."""
    return "no rate" if rate is None else f"{plain(Decimal(rate) * 100)} %"


def day(d: date | None) -> str:
    return "" if d is None else f"{d.day} {d:%b %Y}"


def span(start: date | None, end: date | None) -> str:
    """A half-open period [start, end) as the days it covers: 1 Jan – 31 Jan 2025 (15 Dec 2024 – 14 Jan 2025)."""
    if start is None or end is None:
        return day(start)
    last = end - timedelta(days=1)
    if last <= start:
        return day(start)
    return f"{start.day} {start:%b} – {day(last)}" if start.year == last.year else f"{day(start)} – {day(last)}"


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


# -- the document ----------------------------------------------------------------------------------------------

CSS = """
@page { size: A4; margin: 16mm 14mm 18mm 14mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; font-size: 9pt; color: #1b1b1b; margin: 0; }
header.top { display: flex; justify-content: space-between; border-bottom: 2px solid #1b3a5c; padding-bottom: 4mm; }
.operator .name { font-size: 15pt; font-weight: bold; color: #1b3a5c; }
.title h1 { margin: 0; font-size: 18pt; text-align: right; }
.title .void { color: #b00020; font-weight: bold; text-align: right; }
section.parties { display: flex; justify-content: space-between; margin: 5mm 0 3mm; }
.bill-to .label, .meta th { color: #555; font-weight: normal; text-align: left; padding-right: 4mm; }
.meta td { text-align: right; }
table.lines, table.taxes, table.totals { width: 100%; border-collapse: collapse; margin-top: 3mm; }
table.lines th, table.taxes th { text-align: left; border-bottom: 1px solid #1b3a5c; padding: 1.5mm 1mm; font-size: 8.5pt; }
table.lines td, table.taxes td { padding: 0.8mm 1mm; border-bottom: 0.3px solid #ddd; vertical-align: top; }
thead { display: table-header-group; }
tfoot { display: table-footer-group; }
tr, .totals, .balance, .payment { break-inside: avoid; page-break-inside: avoid; }
td.num, table.lines th.num, table.taxes th.num { text-align: right; white-space: nowrap; }
td.period { white-space: nowrap; }
tr.service td { font-weight: bold; background: #eef2f7; border-bottom: none; padding-top: 1.2mm; }
tr.deduction td { color: #444; font-size: 8.5pt; }
tr.deduction td.desc { padding-left: 5mm; }
.note { display: block; color: #555; font-size: 8pt; }
table.totals { width: 45%; margin-left: 55%; }
table.totals td { padding: 0.6mm 1mm; }
table.totals tr.grand td { font-weight: bold; font-size: 11pt; border-top: 1.5px solid #1b3a5c; }
h2 { font-size: 10pt; color: #1b3a5c; margin: 4mm 0 1mm; }
.balance, .payment { margin-top: 3mm; padding: 2mm 3mm; border: 1px solid #c9d3df; }
.balance h2, .payment h2 { margin-top: 0; }
.balance table.totals { width: 100%; margin: 0; }
.payment p { margin: 0; }
footer { margin-top: 5mm; color: #777; font-size: 7pt; }
@media screen { body { max-width: 190mm; margin: 10mm auto; } }
"""


def _service_heading(subscription_id, lines: list[dict]) -> str:
    if subscription_id is None:
        return "One-time items"
    names = dict.fromkeys(n for r in lines for n in (r["product_name"], r["plan_name"]) if n)
    return f"Service {subscription_id}" + (": " + " · ".join(names) if names else "")


def _correction_note(line: dict) -> str:
    """What an adjustment or credit corrects: the document, the period, the reason."""
    parts = []
    if line["reference_document_number"]:
        parts.append(f"corrects {line['reference_document_number']}")
    if line["adjustment_reason"]:
        if line["service_month"]:
            parts.append(f"service of {line['service_month']:%b %Y}")
        parts.append(REASONS.get(line["adjustment_reason"], line["adjustment_reason"].replace("_", " ").lower()))
    return ("Adjustment: " if line["adjustment_reason"] else "") + ", ".join(parts)


def _line_rows(line: dict, currency: str) -> str:
    note = _correction_note(line)
    description = _e(line["description"] or line["product_name"] or line["line_type"])
    if note:
        description += f'<span class="note">{_e(note)}</span>'
    quantity = "" if line["quantity"] is None else plain(line["quantity"])
    unit_price = "" if line["unit_price"] is None else plain(line["unit_price"], minor_unit(currency))
    rows = [
        f'<tr class="line"><td class="desc">{description}</td><td class="period">{_e(span(line["service_start"], line["service_end"]))}</td>'
        f'<td class="num">{_e(quantity)}</td><td class="num">{_e(unit_price)}</td><td class="num">{_e(percent(line["tax_rate"]))}</td>'
        f'<td class="num">{money(line["amount"], currency)}</td></tr>'
    ]
    if line["discount_amount"]:
        rows.append(_deduction_row(f"Bundle discount {percent(line['discount_pct'])}" if line["discount_pct"] is not None
                                   else "Bundle discount", line["discount_amount"], currency))
    if line["coupon_amount"]:
        coupon = " ".join(x for x in (line["coupon_code"], line["coupon_name"] and f"({line['coupon_name']})") if x)
        rows.append(_deduction_row(f"Coupon {coupon}".strip(), line["coupon_amount"], currency))
    return "\n".join(rows)


def _deduction_row(label: str, amount: Decimal, currency: str) -> str:
    return (f'<tr class="deduction"><td class="desc" colspan="5">{_e(label)}</td>'
            f'<td class="num">{money(amount, currency)}</td></tr>')


def _lines_table(sheet: Sheet, currency: str) -> str:
    groups = []
    for subscription_id, rows in itertools.groupby(sheet.lines, key=lambda r: r["subscription_id"]):
        rows = list(rows)
        groups.append(f'<tr class="service"><td colspan="6">{_e(_service_heading(subscription_id, rows))}</td></tr>')
        groups.extend(_line_rows(r, currency) for r in rows)
    return (
        '<table class="lines"><thead><tr><th>Description</th><th>Service period</th><th class="num">Quantity</th>'
        f'<th class="num">Unit price</th><th class="num">Tax rate</th><th class="num">Amount ({_e(currency)})</th></tr></thead>'
        f'<tbody>{"".join(groups)}</tbody></table>'
    )


def _taxes_table(sheet: Sheet, currency: str) -> str:
    rows = "".join(
        f'<tr><td>{_e(t["tax_jurisdiction"] or "")}</td><td>{_e(t["tax_name"] or "")}</td><td class="num">{_e(percent(t["tax_rate"]))}</td>'
        f'<td class="num">{money(t["taxable_amount"], currency)}</td><td class="num">{money(t["tax_amount"], currency)}</td></tr>'
        for t in sheet.taxes
    )
    return (
        '<h2>Taxes</h2><table class="taxes"><thead><tr><th>Jurisdiction</th><th>Tax</th><th class="num">Rate</th>'
        f'<th class="num">Taxable amount ({_e(currency)})</th><th class="num">Tax ({_e(currency)})</th></tr></thead>'
        f'<tbody>{rows}</tbody></table>'
    )


def _totals_table(h: dict) -> str:
    cur = h["currency"]
    rows = [("Subtotal", h["subtotal"])]
    if h["discount_total"]:
        rows.append(("Bundle discounts", h["discount_total"]))
    if h["coupon_total"]:
        rows.append(("Coupons", h["coupon_total"]))
    rows += [("Net amount", h["net_total"]), ("Tax", h["tax_total"])]
    body = "".join(f'<tr><td>{label}</td><td class="num">{money(v, cur)} {_e(cur)}</td></tr>' for label, v in rows)
    label = "Total credited" if h["document_type"] == "CREDIT_NOTE" else "Total"
    return f'<table class="totals">{body}<tr class="grand"><td>{label}</td><td class="num">{money(h["total"], cur)} {_e(cur)}</td></tr></table>'


def _balance_block(h: dict) -> str:
    cur = h["currency"]
    status = f" ({_e(h['payment_status'].replace('_', ' ').lower())})" if h["payment_status"] else ""
    this = "Credit available on this credit note" if h["document_type"] == "CREDIT_NOTE" else "Amount due on this invoice"
    rows = [
        ("Balance carried from your other documents", h["balance_carried"]),
        (this, h["amount_due"]),
        ("Account balance", h["balance_carried"] + h["amount_due"]),
    ]
    body = "".join(f'<tr><td>{label}{status if label == this else ""}</td><td class="num">{money(v, cur)} {_e(cur)}</td></tr>'
                   for label, v in rows)
    return f'<div class="balance"><h2>Your balance</h2><table class="totals">{body}</table></div>'


def payment_instructions(h: dict, operator: Operator) -> str:
    """What the customer does about this document, by the account's payment method (plain text)."""
    cur, number = h["currency"], h["document_number"]
    due = f"{money(h['amount_due'], cur)} {cur}"
    if h["void_reason"] is not None:
        return f"This document was voided on {day(h['voided_on'])} ({h['void_reason']}). Nothing is due on it."
    if h["document_type"] == "CREDIT_NOTE":
        return (f"This credit note credits {money(-h['total'], cur)} {cur}. It is applied to the invoice it corrects if that is "
                "still open, otherwise to your oldest open invoice, or kept as credit on your account for your next invoices.")
    if h["amount_due"] <= 0:
        return f"This invoice was paid on {day(h['paid_date'])}. Thank you." if h["paid_date"] else "Nothing is due on this invoice."
    method = h["payment_method"]
    if method == "CARD":
        return f"{due} will be charged to the card on file on {day(h['due_date'])}. No action is needed."
    if method == "DIRECT_DEBIT":
        return f"{due} will be collected by direct debit from your bank account on or after {day(h['due_date'])}. No action is needed."
    return (f"Please pay {due} by {day(h['due_date'])} by bank transfer to {operator.name}, {operator.bank}, "
            f"quoting {number} as the payment reference.")


def _bill_to(h: dict) -> str:
    place = " ".join(x for x in (h["postal_code"], h["city"]) if x)
    region = ", ".join(x for x in (h["state"], h["country"]) if x)
    lines = [h["customer_name"], h["address_line"], place, region, h["email"]]
    return "<br>".join(_e(x) for x in lines if x)


def _meta(h: dict) -> str:
    rows = [("Number", h["document_number"]), ("Issue date", day(h["issue_date"]))]
    if h["document_type"] == "INVOICE":
        rows.append(("Due date", day(h["due_date"])))
    rows += [("Account", h["account_number"] or h["account_id"]), ("Billing period", span(h["period_start"], h["period_end"])),
             ("Currency", h["currency"])]
    return "".join(f"<tr><th>{label}</th><td>{_e(v)}</td></tr>" for label, v in rows)


def title(h: dict) -> str:
    return "Credit note" if h["document_type"] == "CREDIT_NOTE" else "Invoice"


def render_sheet(sheet: Sheet, operator: Operator) -> str:
    """The HTML document of ``sheet``: header, parties, lines by service, taxes, totals, balance, how to pay."""
    h = sheet.header
    void = (f'<div class="void">VOID since {_e(day(h["voided_on"]))}: {_e(h["void_reason"])}</div>'
            if h["void_reason"] is not None else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{_e(title(h))} {_e(h["document_number"])}</title>
<style>{CSS}</style></head>
<body>
<header class="top">
  <div class="operator"><div class="name">{_e(operator.name)}</div><div>{_e(operator.address)}</div></div>
  <div class="title"><h1>{_e(title(h))}</h1>{void}</div>
</header>
<section class="parties">
  <div class="bill-to"><div class="label">Bill to</div>{_bill_to(h)}</div>
  <table class="meta">{_meta(h)}</table>
</section>
{_lines_table(sheet, h["currency"])}
{_taxes_table(sheet, h["currency"])}
{_totals_table(h)}
{_balance_block(h)}
<div class="payment"><h2>Payment</h2><p>{_e(payment_instructions(h, operator))}</p></div>
<footer>{_e(operator.name)} · {_e(title(h))} {_e(h["document_number"])} · document {_e(h["document_id"])} ·
content hash {_e(h["content_hash"][:16])}</footer>
</body></html>
"""


def header_markdown(h: dict) -> str:
    """A one-table markdown preview of a document's header (asset metadata)."""
    cur = h["currency"]
    rows = [("Document", f"{title(h)} {h['document_number']}"), ("Account", h["account_number"] or h["account_id"]),
            ("Customer", h["customer_name"] or ""), ("Billing period", span(h["period_start"], h["period_end"])),
            ("Issue date", day(h["issue_date"])), ("Due date", day(h["due_date"])),
            ("Total", f"{money(h['total'], cur)} {cur}")]
    cells = "\n".join(f"| {label} | {str(v).replace('|', '/')} |" for label, v in rows)
    return f"| | |\n|---|---|\n{cells}"
