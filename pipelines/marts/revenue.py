"""Revenue marts over the revenue tables (docs/revenue.md): revenue by product and customer type, the deferred
revenue roll-forward and the waterfall with running totals. Nothing is recognized here: the schedule, the posted
revenue, the roll-forward and the waterfall already are the rules."""

from __future__ import annotations

from pipelines.invoicing.engine import with_steps
from pipelines.revenue.obligations import ESTIMATE_PREFIX, is_estimate

BOOKED = """
    SELECT accounting_month, obligation_id, account_id, currency, product_line, concerns_month, amount
    FROM revenue.recognized
    UNION ALL
    SELECT booked_month, obligation_id, account_id, currency, product_line, service_month, open_amount
    FROM revenue.schedule
    WHERE open_amount <> 0 AND booked_month <= (SELECT max(accounting_month) FROM revenue.trial_balance)"""
"""Revenue as booked per accounting month: closed months as posted, open months as the schedule books them, through
the latest month of the books (the forward schedule is the waterfall's)."""


ESTIMATED_PRODUCTS = f"""
    SELECT e.obligation_id, any_value(l.product_id) AS product_id
    FROM (SELECT DISTINCT obligation_id, substr(obligation_id, {len(ESTIMATE_PREFIX) + 1}) AS line_id FROM booked
          WHERE {is_estimate()}
            AND obligation_id NOT IN (SELECT obligation_id FROM revenue.performance_obligations)) e
    JOIN (SELECT line_id, product_id FROM ledger.document_lines
          UNION ALL SELECT line_id, product_id FROM billing.invoice_lines) l USING (line_id)
    GROUP BY ALL"""
"""The product of a posted estimate that is no longer an obligation (its line was invoiced since, or re-estimated):
the product of the line it estimated ('ACCRUED-<line id>'), issued or drafted; none when that line is gone."""


def revenue_by_product_rows() -> str:
    """SELECT of ``marts.revenue_by_product``: booked revenue per month, currency, product and customer type."""
    return with_steps({"booked": BOOKED, "estimated_products": ESTIMATED_PRODUCTS}, """
        SELECT b.accounting_month, b.currency, b.product_line, coalesce(o.product_id, e.product_id) AS product_id,
               p.name AS product_name, c.customer_type,
               coalesce(sum(b.amount) FILTER (WHERE b.concerns_month >= b.accounting_month), 0)::DECIMAL(18,4) AS revenue,
               coalesce(sum(b.amount) FILTER (WHERE b.concerns_month < b.accounting_month), 0)::DECIMAL(18,4) AS corrections,
               count(DISTINCT b.account_id) AS accounts,
               CASE WHEN b.accounting_month IN (SELECT accounting_month FROM revenue.closed_months) THEN 'CLOSED'
                    ELSE 'OPEN' END AS month_status
        FROM booked b
        LEFT JOIN revenue.performance_obligations o USING (obligation_id)
        LEFT JOIN estimated_products e USING (obligation_id)
        LEFT JOIN core.products p ON p.product_id = coalesce(o.product_id, e.product_id)
        LEFT JOIN core.billing_accounts a ON a.account_id = b.account_id
        LEFT JOIN core.customers c ON c.customer_id = a.customer_id
        GROUP BY ALL""")


def deferred_rollforward_rows() -> str:
    """SELECT of ``marts.deferred_revenue_rollforward``: revenue.deferred_rollforward with the month's net change."""
    return """
        SELECT accounting_month, currency, opening_net_deferred, billings, recognized, corrections, closing_net_deferred,
               (closing_net_deferred - opening_net_deferred)::DECIMAL(18,4) AS net_change, deferred_revenue, unbilled_ar,
               contract_assets, month_status
        FROM revenue.deferred_rollforward"""


def revenue_waterfall_rows() -> str:
    """SELECT of ``marts.revenue_waterfall``: revenue.waterfall with months after billing, recognized to date, total and
    remaining per billed month."""
    return with_steps({"running": """
        SELECT billed_month, recognition_month, currency,
               datediff('month', billed_month, recognition_month)::INTEGER AS months_after, amount,
               sum(amount) OVER (PARTITION BY billed_month, currency ORDER BY recognition_month)::DECIMAL(18,4)
                   AS cumulative_amount,
               sum(amount) OVER (PARTITION BY billed_month, currency)::DECIMAL(18,4) AS billed_total, is_scheduled
        FROM revenue.waterfall"""}, """
        SELECT *, (billed_total - cumulative_amount)::DECIMAL(18,4) AS remaining_amount FROM running""")
