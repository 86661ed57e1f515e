CREATE SCHEMA IF NOT EXISTS revenue;

CREATE TABLE IF NOT EXISTS revenue.recognition (
    billing_month DATE NOT NULL,
    line_id VARCHAR NOT NULL,
    invoice_id VARCHAR NOT NULL,
    account_id BIGINT NOT NULL,
    line_type VARCHAR NOT NULL,
    obligation_type VARCHAR NOT NULL,
    currency VARCHAR NOT NULL,
    obligation_amount DECIMAL(18,4) NOT NULL,
    recognized_amount DECIMAL(18,4) NOT NULL,
    cumulative_recognized DECIMAL(18,4) NOT NULL,
    deferred_amount DECIMAL(18,4) NOT NULL
);
COMMENT ON TABLE revenue.recognition IS 'Revenue recognition schedule (docs/revenue.md). Grain: accounting month x invoice line (performance obligation); key (billing_month, line_id); partitioned by billing_month. Lines with something recognized in the month or a deferred balance at its end; lines fully recognized in earlier months are omitted. RATABLE lines use cumulative rounding so a schedule sums exactly to its obligation; cumulative_recognized + deferred_amount = obligation_amount.';
COMMENT ON COLUMN revenue.recognition.billing_month IS 'Accounting month (first day); a line is first recognized in its own billing month, earlier service days are caught up there.';
COMMENT ON COLUMN revenue.recognition.line_id IS 'Invoice line (billing.invoice_lines.line_id) = the performance obligation.';
COMMENT ON COLUMN revenue.recognition.invoice_id IS 'Invoice of the line.';
COMMENT ON COLUMN revenue.recognition.account_id IS 'Billing account of the line.';
COMMENT ON COLUMN revenue.recognition.line_type IS 'Line type of the invoice line (RECURRING, RECURRING_CREDIT, ONE_TIME, USAGE, MINIMUM_TRUE_UP, ...).';
COMMENT ON COLUMN revenue.recognition.obligation_type IS 'RATABLE (RECURRING and RECURRING_CREDIT: by day over [service_start, service_end)) or POINT_IN_TIME (usage and one-time lines: all in the line''s billing month).';
COMMENT ON COLUMN revenue.recognition.currency IS 'ISO 4217 currency of the line.';
COMMENT ON COLUMN revenue.recognition.obligation_amount IS 'Transaction price of the obligation: the line''s net_amount (after discounts, before tax; negative for credits).';
COMMENT ON COLUMN revenue.recognition.recognized_amount IS 'Revenue recognized in this accounting month: cumulative_recognized - cumulative at the previous month end (0 before the line''s billing month).';
COMMENT ON COLUMN revenue.recognition.cumulative_recognized IS 'Recognized through the month end: round(obligation x elapsed service days / total days) in minor units, half away from zero (RATABLE); the whole obligation (POINT_IN_TIME).';
COMMENT ON COLUMN revenue.recognition.deferred_amount IS 'Deferred revenue of the line at month end: obligation_amount - cumulative_recognized.';

CREATE TABLE IF NOT EXISTS revenue.deferred_balances (
    billing_month DATE NOT NULL,
    currency VARCHAR NOT NULL,
    billed_in_month DECIMAL(18,4) NOT NULL,
    recognized_in_month DECIMAL(18,4) NOT NULL,
    billed_to_date DECIMAL(18,4) NOT NULL,
    recognized_to_date DECIMAL(18,4) NOT NULL,
    deferred_revenue DECIMAL(18,4) NOT NULL
);
COMMENT ON TABLE revenue.deferred_balances IS 'Deferred revenue roll-forward (docs/revenue.md). Grain: accounting month x currency; key (billing_month, currency); partitioned by billing_month. Invariant: billed_to_date = recognized_to_date + deferred_revenue exactly.';
COMMENT ON COLUMN revenue.deferred_balances.billing_month IS 'Accounting month (first day); balances are at its end.';
COMMENT ON COLUMN revenue.deferred_balances.currency IS 'ISO 4217 currency (amounts are never converted).';
COMMENT ON COLUMN revenue.deferred_balances.billed_in_month IS 'Sum of net_amount of the invoice lines of this billing month (tax excluded).';
COMMENT ON COLUMN revenue.deferred_balances.recognized_in_month IS 'Sum of recognized_amount of revenue.recognition for this month.';
COMMENT ON COLUMN revenue.deferred_balances.billed_to_date IS 'Sum of net_amount of every invoice line with billing_month up to this month.';
COMMENT ON COLUMN revenue.deferred_balances.recognized_to_date IS 'Sum of recognized_amount of revenue.recognition for every month up to this one.';
COMMENT ON COLUMN revenue.deferred_balances.deferred_revenue IS 'Sum of deferred_amount of revenue.recognition for this month: billed but not yet recognized at month end.';
