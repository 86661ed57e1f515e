"""Invoicing steps: what was issued, how far back the run settles, which accounts are billed, their tax rate
(docs/billing.md "Settlement", "Which accounts are billed", "Tax point").

Each function returns the SELECT of one named step (``issued_lines``, ``voided_lines``,
``settlement_months``, ``billed_accounts``, ``settled_accounts``, ``due_horizons``, ``looked_at``,
``account_tax_rates``); a step reads its input relations by the names of the steps
before it. :func:`service_month_of` is the one place a service day's billing month is computed
(:func:`with_service_month` adds it to a relation, once per distinct day).
"""

from __future__ import annotations

from domain.money import RATE

ISSUED_COLUMNS = (
    "line_id, billing_month, account_id, subscription_id, line_type, product_id, plan_id, price_id, charge_code, "
    "description, "
    "service_start, service_end, service_month, quantity, unit_price, days, period_days, amount_precise, amount, "
    "discount_pct, discount_amount, coupon_id, coupon_amount, net_amount, tax_jurisdiction, tax_name, tax_rate, "
    "tax_point, tax_amount, total_amount, currency, source_ref"
)


def service_month_of(day: str, month: str, bill_cycle_day: str = "a.bill_cycle_day",
                     billing_cycle: str = "a.billing_cycle") -> str:
    """SQL: the billing month of the account period containing ``day``, at most ``month`` (the run's)."""
    return (f"least(CAST(date_trunc('month', period_end_containing({day}, {bill_cycle_day}, {billing_cycle}) - 1)"
            f" AS DATE), {month})")


def issued_lines(month: str, document_lines: str, voids: str, finalized_months: str, drafts: str) -> str:
    """ISSUED: lines of ledger documents not voided (with their document number), plus the draft lines of
    billing months before ``month`` that are not finalized (pending drafts: no document number yet), of the
    settled accounts (a run over a shard of accounts reads only their lines), and of those only the lines the
    run looks at (:func:`looked_at`): a line older than that can change nothing this run bills."""
    return f"""
    SELECT {ISSUED_COLUMNS}, d.document_number, false AS voided
    FROM {document_lines} d JOIN looked_at f USING (account_id)
    WHERE d.document_id NOT IN (SELECT document_id FROM {voids}) AND {_looked_at_condition('d')}
    UNION ALL BY NAME
    SELECT {ISSUED_COLUMNS}, CAST(NULL AS VARCHAR) AS document_number, false AS voided
    FROM {drafts} d JOIN looked_at f USING (account_id)
    WHERE billing_month < {month} AND billing_month NOT IN (SELECT billing_month FROM {finalized_months})
      AND {_looked_at_condition('d')}"""


def looked_at() -> str:
    """Per settled account, the first day, or month, each kind of issued line is looked at from: recurring lines
    ending after ``recurring_from`` (the first day looked at, :func:`looked_at_from`, at the account's earliest
    charge interval), one-time lines from ``items_from``, usage lines of service months from ``usage_from_month``."""
    return f"""
    SELECT a.account_id, a.items_from, a.usage_from_month, {looked_at_from()} AS recurring_from
    FROM settled_accounts a
    JOIN (SELECT bill_cycle_day, billing_cycle, min(settle_from) AS settle_from FROM due_horizons GROUP BY ALL) h
      USING (bill_cycle_day, billing_cycle)"""


def _looked_at_condition(line: str) -> str:
    """SQL: the issued line ``line`` (joined to ``looked_at f``) is one the run looks at."""
    return f"""CASE WHEN {line}.line_type IN ('RECURRING', 'RECURRING_CREDIT') THEN {line}.service_end > f.recurring_from
                 WHEN {line}.line_type IN ('ONE_TIME', 'ONE_TIME_CREDIT') THEN {line}.service_start >= f.items_from
                 ELSE coalesce({line}.service_month, {line}.billing_month) >= f.usage_from_month END"""


def voided_lines(document_lines: str, voids: str) -> str:
    """Lines of voided ledger documents of the accounts billed: what a re-bill after the void corrects (reason VOIDED)."""
    return f"""
    SELECT {ISSUED_COLUMNS}, d.document_number, true AS voided
    FROM {document_lines} d
    WHERE d.document_id IN (SELECT document_id FROM {voids})
      AND d.account_id IN (SELECT account_id FROM billed_accounts)"""


def settlement_months(month: str, lookback_months: int, document_lines: str, finalized_months: str, drafts: str) -> str:
    """One row: the first billing month ever issued over all accounts (``go_live``: the first month of a ledger
    line, voided or not, or of a pending draft before ``month``; the run's month when there is none), the first
    month whose differences are billed (``bill_from_month``, the lookback) and the first month whose
    differences are looked at (``report_from_month``: one more lookback, reported as BEYOND_LOOKBACK)."""
    return f"""
    SELECT go_live,
           greatest(go_live, CAST({month} - to_months({lookback_months}) AS DATE)) AS bill_from_month,
           greatest(go_live, CAST({month} - to_months({2 * lookback_months}) AS DATE)) AS report_from_month
    FROM (SELECT coalesce(least((SELECT min(billing_month) FROM {document_lines}),
                                (SELECT min(billing_month) FROM {drafts} WHERE billing_month < {month}
                                   AND billing_month NOT IN (SELECT billing_month FROM {finalized_months}))),
                          {month}) AS go_live)"""


def billed_accounts(month: str, accounts: str, customers: str, credit_note_customer_types: tuple[str, ...]) -> str:
    """One row per account with a period ending in ``month``: the period billed P = [period_start,
    period_end), the next period's end, the draft ids (invoice and credit note), the customer's tax
    jurisdiction and the tax point (= issue date = period end)."""
    types = ", ".join(f"'{t}'" for t in credit_note_customer_types) or "NULL"
    return f"""
    SELECT a.account_id, a.account_number, a.customer_id, a.currency, a.payment_terms_days,
           a.billing_cycle, a.bill_cycle_day,
           period_start_for(a.period_end, a.bill_cycle_day, a.billing_cycle) AS period_start,
           a.period_end,
           period_after(a.period_end, a.bill_cycle_day, a.billing_cycle) AS next_period_end,
           'INV-' || a.account_number || '-' || strftime(a.period_end, '%Y%m%d') AS invoice_id,
           'CN-' || a.account_number || '-' || strftime(a.period_end, '%Y%m%d') AS credit_note_id,
           coalesce(c.customer_type IN ({types}), false) AS takes_credit_notes,
           c.country AS customer_country,
           c.state AS customer_state,
           tax_jurisdiction(c.country, c.state) AS tax_jurisdiction,
           a.period_end AS tax_point
    FROM (SELECT *, CAST(period_end_in({month}, bill_cycle_day, billing_cycle) AS DATE) AS period_end
          FROM {accounts}) a
    LEFT JOIN {customers} c ON c.customer_id = a.customer_id
    WHERE a.period_end IS NOT NULL"""


def settled_accounts(month: str, resettled: str | None) -> str:
    """The billed accounts with the first day whose differences are billed (``bill_from``) and looked at
    (``report_from``): the start of the account period billed in bill_from_month / report_from_month (computed
    once per bill cycle day and cycle); ``resettle`` (from ``resettled``, by account: settle every period within
    the lookback; all of them without ``resettled``, pipelines/invoicing/fingerprints.py) and where an account
    settled from its current period starts: one-time items from ``items_from`` (the period's first day), rated
    usage from ``usage_from_month`` (this run's month); recurring charges, see ``due_horizons``."""
    accounts = (f"(SELECT b.*, coalesce(r.resettle, true) AS resettle FROM billed_accounts b "
                f"LEFT JOIN (SELECT account_id, resettle FROM {resettled}) r USING (account_id))" if resettled
                else "(SELECT *, true AS resettle FROM billed_accounts)")
    return f"""
    SELECT a.*, g.bill_from, g.report_from,
           CASE WHEN a.resettle THEN g.report_from ELSE a.period_start END AS items_from,
           CASE WHEN a.resettle THEN g.report_from_month ELSE {month} END AS usage_from_month
    FROM {accounts} a
    JOIN (SELECT bill_cycle_day, billing_cycle, s.report_from_month,
                 period_start_for(period_end_containing(s.bill_from_month, bill_cycle_day, billing_cycle),
                                  bill_cycle_day, billing_cycle) AS bill_from,
                 period_start_for(period_end_containing(s.report_from_month, bill_cycle_day, billing_cycle),
                                  bill_cycle_day, billing_cycle) AS report_from
          FROM (SELECT DISTINCT bill_cycle_day, billing_cycle FROM billed_accounts) CROSS JOIN settlement_months s) g
      USING (bill_cycle_day, billing_cycle)"""


def looked_at_from() -> str:
    """SQL: the first day a key's charge periods are looked at (``a`` = settled_accounts, ``h`` = its due horizon
    for the charge's interval): report_from, or for an account settled from its current period the charge period
    containing that period's first day (``h.settle_from``)."""
    return "CASE WHEN a.resettle THEN a.report_from ELSE greatest(a.report_from, h.settle_from) END"


def due_horizons() -> str:
    """Per bill cycle day, cycle and charge interval, the end of the last charge period due in this run: in
    advance, the period containing the day before N ends; in arrears, the last one ending by P's end; and
    ``settle_from``, the start of the charge period containing P's first day: where an account settled from its
    current period starts (every charge period ending by then was due in full at its previous run)."""
    return """
    SELECT bill_cycle_day, billing_cycle, billing_interval,
           period_end_containing(CAST(next_period_end - 1 AS DATE), bill_cycle_day, billing_interval) AS advance_to,
           period_start_for(period_end_containing(period_end, bill_cycle_day, billing_interval),
                            bill_cycle_day, billing_interval) AS arrears_to,
           period_start_for(period_end_containing(period_start, bill_cycle_day, billing_interval),
                            bill_cycle_day, billing_interval) AS settle_from
    FROM (SELECT DISTINCT bill_cycle_day, billing_cycle, period_start, period_end, next_period_end FROM billed_accounts)
    CROSS JOIN (VALUES ('MONTHLY'), ('QUARTERLY'), ('ANNUAL')) i(billing_interval)"""


def with_service_month(relation: str, day: str, month: str) -> str:
    """SQL: ``relation`` (with account_id and the date column ``day``) with ``service_month``: the billing month
    of the account period containing ``day``, at most ``month`` (the run's), computed once per distinct day,
    bill cycle day and cycle."""
    return f"""(
        SELECT r.*, m.service_month
        FROM {relation} r
        JOIN billed_accounts a USING (account_id)
        JOIN (SELECT day, bill_cycle_day, billing_cycle,
                     {service_month_of('day', month, 'bill_cycle_day', 'billing_cycle')} AS service_month
              FROM (SELECT DISTINCT x.{day} AS day, b.bill_cycle_day, b.billing_cycle
                    FROM {relation} x JOIN billed_accounts b USING (account_id))) m
          ON m.day = r.{day} AND m.bill_cycle_day = a.bill_cycle_day AND m.billing_cycle = a.billing_cycle)"""


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
