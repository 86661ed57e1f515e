"""Invoicing steps: draft invoice headers from the month's lines (docs/billing.md "Headers, ids, numbering").

``invoice_totals`` sums the rounded lines per invoice (never re-rounded); :func:`invoice_header_rows`
gives the rows of ``billing.invoices``, joined to ``billed_accounts`` (accounts.py) for the period,
dates and currency.
"""

from __future__ import annotations

from domain.money import AMOUNT


def invoice_totals(month: str, lines: str) -> str:
    """Per invoice with lines in ``month``: line count and the sums of amount, discount, net and tax."""
    return f"""
    SELECT invoice_id, any_value(account_id) AS account_id, count(*) AS line_count,
           sum(amount) AS subtotal, sum(discount_amount) AS discount_total, sum(coupon_amount) AS coupon_total,
           sum(net_amount) AS net_total, sum(tax_amount) AS tax_total
    FROM {lines}
    WHERE billing_month = {month}
    GROUP BY invoice_id"""


def invoice_header_rows(month: str) -> str:
    """The rows of ``billing.invoices``: draft number D-YYYYMM-NNNNNN ranked by account and id, document type
    (a CN-... draft is a CREDIT_NOTE), invoice date = tax point = period end, due date = period end + payment
    terms (a credit note: its date), total = net_total + tax_total."""
    return f"""
    SELECT i.invoice_id,
           'D-' || strftime({month}, '%Y%m') || '-'
             || lpad(CAST(row_number() OVER (ORDER BY i.account_id, i.invoice_id) AS VARCHAR), 6, '0')
             AS invoice_number,
           CAST(i.account_id AS BIGINT) AS account_id,
           CAST(a.customer_id AS BIGINT) AS customer_id,
           {month} AS billing_month,
           a.period_start, a.period_end,
           a.period_end AS invoice_date,
           CASE WHEN i.invoice_id = a.credit_note_id THEN a.period_end
                ELSE CAST(a.period_end + coalesce(a.payment_terms_days, 0) AS DATE) END AS due_date,
           a.currency,
           'DRAFT' AS status,
           CAST(i.line_count AS INTEGER) AS line_count,
           CAST(i.subtotal AS {AMOUNT}) AS subtotal,
           CAST(i.discount_total AS {AMOUNT}) AS discount_total,
           CAST(i.net_total AS {AMOUNT}) AS net_total,
           CAST(i.tax_total AS {AMOUNT}) AS tax_total,
           CAST(i.net_total + i.tax_total AS {AMOUNT}) AS total,
           CASE WHEN i.invoice_id = a.credit_note_id THEN 'CREDIT_NOTE' ELSE 'INVOICE' END AS document_type,
           CAST(i.coupon_total AS {AMOUNT}) AS coupon_total,
           a.tax_point
    FROM invoice_totals i
    LEFT JOIN billed_accounts a ON a.account_id = i.account_id
    ORDER BY invoice_number"""
