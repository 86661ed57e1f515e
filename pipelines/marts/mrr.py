"""Recurring revenue marts: ``marts.customer_mrr`` (mrr-playbook's spine), ``marts.mrr_movements`` and
``marts.customer_churn`` (the rule: warehouse/tables/marts.py ``MRR_RULE``).

Each ``*_rows`` returns the SELECT of its table's rows; the movements and churn read the written
``marts.customer_mrr`` (the marts asset writes them in that order, in one transaction).
"""

from __future__ import annotations

from pipelines.invoicing.engine import with_steps

MOVEMENT = """CASE
            WHEN mrr > 0 AND previous_mrr = 0 AND month = first_active_month THEN 'NEW'
            WHEN mrr > 0 AND previous_mrr = 0 THEN 'REACTIVATION'
            WHEN mrr = 0 AND previous_mrr > 0 THEN 'CHURN'
            WHEN mrr > previous_mrr THEN 'EXPANSION'
            WHEN mrr < previous_mrr THEN 'CONTRACTION'
            WHEN mrr > 0 THEN 'UNCHANGED'
            ELSE 'INACTIVE' END"""
"""A customer's movement in a month, from its MRR, the month before's and its first month with MRR."""

RATE_STEPS = {
    "horizon": "SELECT max(billing_month) AS last_month FROM ledger.finalized_months",
    "recurring_lines": """
        SELECT d.customer_id, l.account_id, l.currency, l.service_start, l.service_end, l.net_amount
        FROM ledger.document_lines l JOIN ledger.documents d USING (document_id)
        WHERE l.line_type IN ('RECURRING', 'RECURRING_CREDIT') AND l.service_end > l.service_start
          AND l.document_id NOT IN (SELECT document_id FROM ledger.voids)""",
    "month_ends": """
        SELECT m::DATE AS month, (m + INTERVAL 1 MONTH - INTERVAL 1 DAY)::DATE AS month_end
        FROM (SELECT unnest(generate_series(min(date_trunc('month', service_start)), (SELECT last_month FROM horizon),
                                            INTERVAL 1 MONTH)) AS m
              FROM recurring_lines)""",
    "account_rates": """
        SELECT m.month, l.customer_id, l.account_id, l.currency,
               sum(round_money(prorate(l.net_amount, day(m.month_end), l.service_end - l.service_start), l.currency))
                   AS rate
        FROM month_ends m JOIN recurring_lines l ON l.service_start <= m.month_end AND m.month_end < l.service_end
        GROUP BY m.month, l.customer_id, l.account_id, l.currency""",
}
"""Each account's monthly run rate of recurring service on every month end through the latest finalized month."""


def positive_mrr(rate: str) -> str:
    """SQL: a run rate as MRR: a negative one counts as 0."""
    return f"greatest({rate}, 0)::DECIMAL(18,4)"


def customer_mrr_rows() -> str:
    """SELECT of ``marts.customer_mrr``: per customer and currency, every month from its first with MRR through the
    month after its last (at most the latest finalized month), with the month's movement."""
    steps = {
        **RATE_STEPS,
        "customer_rates": f"""
            SELECT month, customer_id, currency, {positive_mrr('sum(rate)')} AS mrr FROM account_rates
            GROUP BY month, customer_id, currency""",
        "spans": """
            SELECT customer_id, currency, min(month) AS first_active_month, max(month) AS last_active_month
            FROM customer_rates WHERE mrr > 0 GROUP BY ALL""",
        "spine": """
            SELECT m.month, s.customer_id, s.currency, s.first_active_month, coalesce(r.mrr, 0::DECIMAL(18,4)) AS mrr
            FROM spans s
            JOIN month_ends m ON m.month BETWEEN s.first_active_month
                                 AND least(s.last_active_month + INTERVAL 1 MONTH, (SELECT last_month FROM horizon))
            LEFT JOIN customer_rates r USING (month, customer_id, currency)""",
        "with_previous": """
            SELECT *, coalesce(lag(mrr) OVER (PARTITION BY customer_id, currency ORDER BY month), 0::DECIMAL(18,4))
                      AS previous_mrr
            FROM spine""",
    }
    return with_steps(steps, f"""
        SELECT p.month, p.customer_id, p.currency, c.customer_type, p.mrr, (p.mrr * 12)::DECIMAL(18,4) AS arr,
               p.previous_mrr, (p.mrr - p.previous_mrr)::DECIMAL(18,4) AS mrr_change, {MOVEMENT} AS movement,
               p.mrr > 0 AS is_active, p.first_active_month
        FROM with_previous p LEFT JOIN core.customers c USING (customer_id)""")


def _amount(expr: str) -> str:
    return f"coalesce({expr}, 0)::DECIMAL(18,4)"


def mrr_movement_rows() -> str:
    """SELECT of ``marts.mrr_movements``: marts.customer_mrr summed per month and currency, by movement."""
    movements = ",\n               ".join(
        f"{_amount(f'sum(mrr_change) FILTER (WHERE movement = {kind!r})')} AS {name}"
        for name, kind in (("new_mrr", "NEW"), ("reactivation_mrr", "REACTIVATION"), ("expansion_mrr", "EXPANSION"),
                           ("contraction_mrr", "CONTRACTION"), ("churned_mrr", "CHURN")))
    return f"""
        SELECT month, currency, {_amount('sum(mrr)')} AS mrr, {_amount('sum(arr)')} AS arr,
               {_amount('sum(previous_mrr)')} AS previous_mrr,
               {movements},
               {_amount('sum(mrr_change)')} AS net_change, count(*) FILTER (WHERE is_active) AS active_customers
        FROM marts.customer_mrr GROUP BY ALL"""


def customer_churn_rows() -> str:
    """SELECT of ``marts.customer_churn``: active customers at the start and end of each month, who came, came back
    and left; churn rate and ARPU."""
    return with_steps({"counts": """
        SELECT month, currency, count(*) FILTER (WHERE previous_mrr > 0) AS customers_at_start,
               count(*) FILTER (WHERE movement = 'NEW') AS new_customers,
               count(*) FILTER (WHERE movement = 'REACTIVATION') AS reactivated_customers,
               count(*) FILTER (WHERE movement = 'CHURN') AS churned_customers,
               count(*) FILTER (WHERE is_active) AS customers_at_end, sum(mrr)::DECIMAL(18,4) AS mrr
        FROM marts.customer_mrr GROUP BY ALL"""}, """
        SELECT *, CASE WHEN customers_at_start > 0
                       THEN div_round(churned_customers, customers_at_start, 6)::DECIMAL(9,6) END AS churn_rate,
               CASE WHEN customers_at_end > 0 THEN round_money(div_round(mrr, customers_at_end, 10), currency) END AS arpu
        FROM counts""")


def account_mrr_steps() -> dict[str, str]:
    """``account_mrr``: each account's MRR at the latest finalized month's end (the customer 360's)."""
    return {**RATE_STEPS, "account_mrr": f"""
        SELECT account_id, {positive_mrr('rate')} AS mrr FROM account_rates
        WHERE month = (SELECT last_month FROM horizon)"""}
