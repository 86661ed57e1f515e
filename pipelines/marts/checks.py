"""The marts' invariants, each a query returning the rows that break it (none when the mart holds): the marts asset
runs them as asset checks, and tests/test_marts.py over a pipeline-built warehouse."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipelines.revenue.journals import REVENUE_ACCOUNT


@dataclass(frozen=True)
class MartCheck:
    table: str
    description: str
    offending: str  # SELECT of the rows breaking the invariant


CHECKS: dict[str, MartCheck] = {
    "mrr_movements_add_up": MartCheck(
        "marts.mrr_movements",
        "previous_mrr + the movements = mrr, and previous_mrr is the month before's mrr (0 after a month without).",
        """
        SELECT m.month, m.currency FROM marts.mrr_movements m
        LEFT JOIN marts.mrr_movements p ON p.currency = m.currency AND p.month = m.month - INTERVAL 1 MONTH
        WHERE m.previous_mrr + m.new_mrr + m.reactivation_mrr + m.expansion_mrr + m.contraction_mrr + m.churned_mrr <> m.mrr
           OR m.net_change <> m.mrr - m.previous_mrr OR m.previous_mrr <> coalesce(p.mrr, 0)"""),
    "customer_churn_adds_up": MartCheck(
        "marts.customer_churn",
        "customers_at_start + new + reactivated - churned = customers_at_end; at start = at the end of the month before.",
        """
        SELECT c.month, c.currency FROM marts.customer_churn c
        LEFT JOIN marts.customer_churn p ON p.currency = c.currency AND p.month = c.month - INTERVAL 1 MONTH
        WHERE c.customers_at_start + c.new_customers + c.reactivated_customers - c.churned_customers <> c.customers_at_end
           OR c.customers_at_start <> coalesce(p.customers_at_end, 0)"""),
    "revenue_matches_the_books": MartCheck(
        "marts.revenue_by_product",
        "Per month and currency, revenue + corrections = the trial balance's revenue and contra-revenue (credits - debits).",
        f"""
        SELECT coalesce(r.accounting_month, t.accounting_month) AS accounting_month, coalesce(r.currency, t.currency) AS currency
        FROM (SELECT accounting_month, currency, sum(revenue + corrections) AS amount FROM marts.revenue_by_product
              GROUP BY ALL) r
        FULL JOIN (SELECT accounting_month, currency, sum(credits - debits) AS amount FROM revenue.trial_balance
                   WHERE {REVENUE_ACCOUNT} GROUP BY ALL) t USING (accounting_month, currency)
        WHERE coalesce(r.amount, 0) <> coalesce(t.amount, 0)"""),
    "rollforward_holds": MartCheck(
        "marts.deferred_revenue_rollforward",
        "opening + billings - recognized - corrections = closing, and opening = the month before's closing.",
        """
        SELECT f.accounting_month, f.currency FROM marts.deferred_revenue_rollforward f
        LEFT JOIN marts.deferred_revenue_rollforward p
               ON p.currency = f.currency AND p.accounting_month = f.accounting_month - INTERVAL 1 MONTH
        WHERE f.opening_net_deferred + f.billings - f.recognized - f.corrections <> f.closing_net_deferred
           OR f.net_change <> f.closing_net_deferred - f.opening_net_deferred
           OR (p.accounting_month IS NOT NULL AND f.opening_net_deferred <> p.closing_net_deferred)"""),
    "waterfall_runs_out": MartCheck(
        "marts.revenue_waterfall",
        "Per billed month and currency the amounts sum to billed_total and nothing remains after the last month.",
        """
        SELECT billed_month, currency FROM marts.revenue_waterfall GROUP BY ALL
        HAVING sum(amount) <> any_value(billed_total) OR arg_max(remaining_amount, recognition_month) <> 0"""),
    "aging_adds_up": MartCheck(
        "marts.ar_aging",
        "open_ar = the five buckets, and per month and currency the mart's totals are billing.ar_aging's.",
        """
        SELECT month, currency FROM marts.ar_aging
        WHERE open_ar <> current_amount + days_1_30 + days_31_60 + days_61_90 + days_over_90
        UNION ALL
        SELECT coalesce(m.month, g.month), coalesce(m.currency, g.currency)
        FROM (SELECT month, currency, sum(open_ar) AS open_ar, sum(accounts) AS accounts FROM marts.ar_aging GROUP BY ALL) m
        FULL JOIN (SELECT billing_month AS month, currency, sum(open_ar) AS open_ar, count(*) AS accounts
                   FROM billing.ar_aging GROUP BY ALL) g USING (month, currency)
        WHERE m.open_ar IS DISTINCT FROM g.open_ar OR m.accounts IS DISTINCT FROM g.accounts"""),
    "customer_360_balances": MartCheck(
        "marts.customer_360",
        "balance = open_ar - account_credit, and the open AR of all accounts is billing.account_balances'.",
        """
        SELECT account_id::VARCHAR FROM marts.customer_360 WHERE balance <> open_ar - account_credit
        UNION ALL
        SELECT 'total' WHERE (SELECT coalesce(sum(open_ar), 0) FROM marts.customer_360)
                             <> (SELECT coalesce(sum(b.open_ar), 0) FROM billing.account_balances b
                                 JOIN core.billing_accounts a ON a.account_id = b.account_id AND a.currency = b.currency)
                         AND EXISTS (SELECT 1 FROM marts.customer_360)"""),
}


def mart_problems(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """Every check's offending rows (first 20 each)."""
    return {name: con.execute(f"SELECT * FROM ({check.offending}) LIMIT 20").fetchall() for name, check in CHECKS.items()}
