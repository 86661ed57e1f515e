"""``revenue``: recognition per invoice line and deferred balances, per accounting month (docs/revenue.md)."""

from warehouse.contract import DERIVED, Table
from warehouse.contract import column as _c

TABLES = (
    Table(
        'revenue', 'deferred_balances', DERIVED, ("billing_month", "currency"), 'one row per accounting month and currency',
        'Deferred revenue roll-forward (docs/revenue.md). Grain: accounting month x currency; key (billing_month, currency); partitioned by billing_month. Invariant: billed_to_date = recognized_to_date + deferred_revenue exactly.',
        (
            _c('billing_month', 'DATE', 'Accounting month (first day); balances are at its end.', False),
            _c('currency', 'VARCHAR', 'ISO 4217 currency (amounts are never converted).', False),
            _c('billed_in_month', 'DECIMAL(18,4)', 'Sum of net_amount of the invoice lines of this billing month (tax excluded).', False),
            _c('recognized_in_month', 'DECIMAL(18,4)', 'Sum of recognized_amount of revenue.recognition for this month.', False),
            _c('billed_to_date', 'DECIMAL(18,4)', 'Sum of net_amount of every invoice line with billing_month up to this month.', False),
            _c('recognized_to_date', 'DECIMAL(18,4)', 'Sum of recognized_amount of revenue.recognition for every month up to this one.', False),
            _c('deferred_revenue', 'DECIMAL(18,4)', 'Sum of deferred_amount of revenue.recognition for this month: billed but not yet recognized at month end.', False),
        ),
        partition="billing_month",
    ),
    Table(
        'revenue', 'recognition', DERIVED, ("billing_month", "line_id"), 'one row per accounting month and invoice line',
        'Revenue recognition schedule (docs/revenue.md). Grain: accounting month x invoice line (performance obligation); key (billing_month, line_id); partitioned by billing_month. Lines with something recognized in the month or a deferred balance at its end; lines fully recognized in earlier months are omitted. RATABLE lines use cumulative rounding so a schedule sums exactly to its obligation; cumulative_recognized + deferred_amount = obligation_amount.',
        (
            _c('billing_month', 'DATE', 'Accounting month (first day); a line is first recognized in its own billing month, earlier service days are caught up there.', False),
            _c('line_id', 'VARCHAR', 'Invoice line (billing.invoice_lines.line_id) = the performance obligation.', False),
            _c('invoice_id', 'VARCHAR', 'Invoice of the line.', False),
            _c('account_id', 'BIGINT', 'Billing account of the line.', False),
            _c('line_type', 'VARCHAR', 'Line type of the invoice line (RECURRING, RECURRING_CREDIT, ONE_TIME, USAGE, MINIMUM_TRUE_UP, ...).', False),
            _c('obligation_type', 'VARCHAR', "RATABLE (RECURRING and RECURRING_CREDIT: by day over [service_start, service_end)) or POINT_IN_TIME (usage and one-time lines: all in the line's billing month).", False),
            _c('currency', 'VARCHAR', 'ISO 4217 currency of the line.', False),
            _c('obligation_amount', 'DECIMAL(18,4)', "Transaction price of the obligation: the line's net_amount (after discounts, before tax; negative for credits).", False),
            _c('recognized_amount', 'DECIMAL(18,4)', "Revenue recognized in this accounting month: cumulative_recognized - cumulative at the previous month end (0 before the line's billing month).", False),
            _c('cumulative_recognized', 'DECIMAL(18,4)', 'Recognized through the month end: round(obligation x elapsed service days / total days) in minor units, half away from zero (RATABLE); the whole obligation (POINT_IN_TIME).', False),
            _c('deferred_amount', 'DECIMAL(18,4)', 'Deferred revenue of the line at month end: obligation_amount - cumulative_recognized.', False),
        ),
        partition="billing_month",
    ),
)
