"""Receivables marts: AR aging by month, currency and customer type (billing.ar_aging summed), and the customer 360
(one row per billing account: customer, services in force, MRR, open invoices, balance, last payment)."""

from __future__ import annotations

from pipelines.invoicing.engine import with_steps
from pipelines.marts.mrr import account_mrr_steps

BUCKETS = ("current_amount", "days_1_30", "days_31_60", "days_61_90", "days_over_90", "open_ar", "account_credit")


def share(part: str, whole: str) -> str:
    """SQL: ``part / whole`` of two amounts (4 decimals), exactly, rounded half away from zero to 6 decimals."""
    return f"div_round(({part}) * 10000, CAST(({whole}) * 10000 AS HUGEINT), 6)::DECIMAL(9,6)"


def ar_aging_rows() -> str:
    """SELECT of ``marts.ar_aging``: billing.ar_aging summed per month end, currency and customer type."""
    sums = ", ".join(f"sum(g.{b})::DECIMAL(18,4) AS {b}" for b in BUCKETS)
    return with_steps({"totals": f"""
        SELECT g.billing_month AS month, g.currency, c.customer_type, g.as_of, count(*) AS accounts, {sums}
        FROM billing.ar_aging g
        LEFT JOIN core.billing_accounts a USING (account_id)
        LEFT JOIN core.customers c ON c.customer_id = a.customer_id
        GROUP BY ALL"""}, f"""
        SELECT *, CASE WHEN open_ar <> 0 THEN {share('open_ar - current_amount', 'open_ar')} END AS overdue_share
        FROM totals""")


def customer_360_rows() -> str:
    """SELECT of ``marts.customer_360``: every billing account as of the latest finalized month's last day (no rows
    before a month is finalized)."""
    steps = {
        **account_mrr_steps(),
        "as_of": """
            SELECT (last_month + INTERVAL 1 MONTH - INTERVAL 1 DAY)::DATE AS as_of FROM horizon
            WHERE last_month IS NOT NULL""",
        "services": """
            SELECT s.account_id, count(*) AS active_services, string_agg(DISTINCT p.name, ', ' ORDER BY p.name) AS active_products
            FROM core.subscriptions s CROSS JOIN as_of LEFT JOIN core.products p USING (product_id)
            WHERE s.start_date <= as_of.as_of AND as_of.as_of < s.end_date
            GROUP BY ALL""",
        "open_invoices": """
            SELECT account_id, count(*) AS open_invoices FROM billing.document_status
            WHERE document_type = 'INVOICE' AND open_amount > 0 GROUP BY ALL""",
        "invoice_dates": """
            SELECT account_id, min(issue_date) AS first_invoice_date, max(issue_date) AS last_invoice_date
            FROM ledger.documents WHERE document_type = 'INVOICE' GROUP BY ALL""",
        "last_payment": """
            SELECT account_id, max(received_at) AS last_payment_at, arg_max(amount, received_at) AS last_payment_amount
            FROM ledger.payment_events WHERE status = 'SUCCEEDED' GROUP BY ALL""",
    }
    return with_steps(steps, """
        SELECT a.account_id, a.account_number, a.customer_id, c.name AS customer_name, c.email, c.customer_type, c.country,
               c.status AS customer_status, a.status AS account_status, a.billing_cycle, a.currency, as_of.as_of,
               coalesce(s.active_services, 0) AS active_services, s.active_products,
               coalesce(m.mrr, 0)::DECIMAL(18,4) AS mrr, coalesce(o.open_invoices, 0) AS open_invoices,
               coalesce(b.open_ar, 0)::DECIMAL(18,4) AS open_ar, coalesce(b.account_credit, 0)::DECIMAL(18,4) AS account_credit,
               coalesce(b.balance, 0)::DECIMAL(18,4) AS balance, b.over_credit_limit,
               coalesce(b.invoiced - b.credited, 0)::DECIMAL(18,4) AS lifetime_billed, i.first_invoice_date,
               i.last_invoice_date, p.last_payment_at, p.last_payment_amount
        FROM core.billing_accounts a CROSS JOIN as_of
        LEFT JOIN core.customers c ON c.customer_id = a.customer_id
        LEFT JOIN services s ON s.account_id = a.account_id
        LEFT JOIN account_mrr m ON m.account_id = a.account_id
        LEFT JOIN open_invoices o ON o.account_id = a.account_id
        LEFT JOIN billing.account_balances b ON b.account_id = a.account_id AND b.currency = a.currency
        LEFT JOIN invoice_dates i ON i.account_id = a.account_id
        LEFT JOIN last_payment p ON p.account_id = a.account_id""")
