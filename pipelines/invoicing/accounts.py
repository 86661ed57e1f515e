"""Invoicing steps: which accounts are billed this month, their windows, their tax rate (docs/billing.md).

Each function returns the SELECT of one named step (``billed_accounts``, ``billing_windows``,
``account_tax_rates``); a step reads its input relations by the names of the steps before it.
"""

from __future__ import annotations

from domain.money import RATE


def billed_accounts(month: str, accounts: str, customers: str) -> str:
    """One row per account with a period ending in ``month``: the period billed P = [period_start,
    period_end), the next period's end, the invoice id and the customer's tax jurisdiction and tax point."""
    return f"""
    SELECT a.account_id, a.account_number, a.customer_id, a.currency, a.payment_terms_days,
           a.billing_cycle, a.bill_cycle_day,
           period_start_for(a.period_end, a.bill_cycle_day, a.billing_cycle) AS period_start,
           a.period_end,
           period_after(a.period_end, a.bill_cycle_day, a.billing_cycle) AS next_period_end,
           'INV-' || a.account_number || '-' || strftime(a.period_end, '%Y%m%d') AS invoice_id,
           c.country AS customer_country,
           c.state AS customer_state,
           tax_jurisdiction(c.country, c.state) AS tax_jurisdiction,
           CAST(a.period_end - 1 AS DATE) AS tax_point
    FROM (SELECT *, CAST(period_end_in({month}, bill_cycle_day, billing_cycle) AS DATE) AS period_end
          FROM {accounts}) a
    LEFT JOIN {customers} c ON c.customer_id = a.customer_id
    WHERE a.period_end IS NOT NULL"""


def billing_windows() -> str:
    """The two windows reconciled per billed account: P (the period billed) and N (the next period)."""
    return """
    SELECT account_id, 'P' AS billing_window, period_start AS window_start, period_end AS window_end
    FROM billed_accounts
    UNION ALL
    SELECT account_id, 'N' AS billing_window, period_end AS window_start, next_period_end AS window_end
    FROM billed_accounts"""


def account_tax_rates(tax_rates: str) -> str:
    """Per billed account, the rate of its jurisdiction in force on its tax point (domain.tax);
    accounts without one have no row."""
    return f"""
    SELECT a.account_id, r.tax_name, CAST(r.rate AS {RATE}) AS tax_rate
    FROM billed_accounts a
    JOIN {tax_rates} r
      ON tax_rate_applies(r.country, r.state, r.effective_from, r.effective_to,
                          a.customer_country, a.customer_state, a.tax_point)
    QUALIFY row_number() OVER (
        PARTITION BY a.account_id
        ORDER BY tax_rate_precedence(r.state, r.effective_from, r.tax_rate_id) DESC) = 1"""
