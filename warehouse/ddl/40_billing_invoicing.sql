CREATE SCHEMA IF NOT EXISTS billing;

CREATE TABLE IF NOT EXISTS billing.invoice_lines (
    line_id VARCHAR NOT NULL,
    invoice_id VARCHAR NOT NULL,
    billing_month DATE NOT NULL,
    account_id BIGINT NOT NULL,
    subscription_id BIGINT,
    line_type VARCHAR NOT NULL,
    product_id BIGINT,
    plan_id BIGINT,
    price_id BIGINT,
    charge_code VARCHAR,
    description VARCHAR,
    service_start DATE,
    service_end DATE,
    quantity DECIMAL(38,10),
    unit_price DECIMAL(38,10),
    days INTEGER,
    period_days INTEGER,
    amount_precise DECIMAL(38,10),
    amount DECIMAL(18,4) NOT NULL,
    discount_amount DECIMAL(18,4) NOT NULL,
    net_amount DECIMAL(18,4) NOT NULL,
    tax_jurisdiction VARCHAR,
    tax_name VARCHAR,
    tax_rate DECIMAL(9,6),
    tax_amount DECIMAL(18,4) NOT NULL,
    total_amount DECIMAL(18,4) NOT NULL,
    currency VARCHAR NOT NULL,
    source_ref VARCHAR,
    reference_line_id VARCHAR
);
COMMENT ON TABLE billing.invoice_lines IS 'Draft invoice lines of the bill cycle (docs/billing.md). Grain: one row per invoice line; key line_id (deterministic md5 of invoice_id and the line lineage); partitioned by billing_month (a re-run replaces the month). Recurring fees in advance and catch-up (RECURRING), credits of prepaid time no longer due (RECURRING_CREDIT, negative, referencing the credited line), one-time order items (ONE_TIME) and rated usage (USAGE, MINIMUM_TRUE_UP, MAXIMUM_CAP, ...). net_amount = amount + discount_amount; total_amount = net_amount + tax_amount.';
COMMENT ON COLUMN billing.invoice_lines.line_id IS 'Line id: md5(invoice_id | line_type | lineage), stable across re-runs of the same inputs.';
COMMENT ON COLUMN billing.invoice_lines.invoice_id IS 'Invoice the line is on: INV-<account_number>-<period end YYYYMMDD> (billing.invoices).';
COMMENT ON COLUMN billing.invoice_lines.billing_month IS 'Bill cycle partition (first day of the month) whose run produced the line; the accounting month of the invoice.';
COMMENT ON COLUMN billing.invoice_lines.account_id IS 'Billing account invoiced.';
COMMENT ON COLUMN billing.invoice_lines.subscription_id IS 'Service the line is for (NULL for one-time items not tied to a service).';
COMMENT ON COLUMN billing.invoice_lines.line_type IS 'RECURRING, RECURRING_CREDIT, ONE_TIME, USAGE, or the rated line type of usage lines when not USAGE (MINIMUM_TRUE_UP, MAXIMUM_CAP, ...).';
COMMENT ON COLUMN billing.invoice_lines.product_id IS 'Product charged (the subscription product, the one-time product, or the product of the usage plan).';
COMMENT ON COLUMN billing.invoice_lines.plan_id IS 'Price plan of the charge (NULL for one-time items without a plan).';
COMMENT ON COLUMN billing.invoice_lines.price_id IS 'Price version (core.plan_charges.price_id) of recurring and usage lines; NULL for one-time items.';
COMMENT ON COLUMN billing.invoice_lines.charge_code IS 'Charge code within the plan (one-time items: the product SKU).';
COMMENT ON COLUMN billing.invoice_lines.description IS 'Text printed on the invoice (product, plan, service dates; credits start with "Credit:").';
COMMENT ON COLUMN billing.invoice_lines.service_start IS 'First day of service covered (inclusive). One-time items: the order effective date.';
COMMENT ON COLUMN billing.invoice_lines.service_end IS 'End of service covered (exclusive, half-open [service_start, service_end)). One-time items: effective date + 1.';
COMMENT ON COLUMN billing.invoice_lines.quantity IS 'Recurring: subscription quantity; one-time: quantity ordered; usage: billable quantity rated.';
COMMENT ON COLUMN billing.invoice_lines.unit_price IS 'Recurring: price per full billing period per unit; one-time: agreed unit price; NULL for usage.';
COMMENT ON COLUMN billing.invoice_lines.days IS 'Recurring lines: days of service covered (service_end - service_start); NULL otherwise.';
COMMENT ON COLUMN billing.invoice_lines.period_days IS 'Recurring lines: proration denominator (actual days of the billing period, or the plan''s fixed proration_days); NULL otherwise.';
COMMENT ON COLUMN billing.invoice_lines.amount_precise IS 'Exact amount before rounding, 10 decimals (recurring: unit_price x quantity x days / period_days; credits negative).';
COMMENT ON COLUMN billing.invoice_lines.amount IS 'amount_precise rounded half away from zero to the currency minor unit (usage: the rated amount, already rounded).';
COMMENT ON COLUMN billing.invoice_lines.discount_amount IS 'Bundle discount on recurring and recurring-credit lines: -round(amount x bundle discount_pct), sign opposite to the line; 0 otherwise.';
COMMENT ON COLUMN billing.invoice_lines.net_amount IS 'amount + discount_amount: the taxable amount and the revenue obligation of the line.';
COMMENT ON COLUMN billing.invoice_lines.tax_jurisdiction IS 'Customer tax jurisdiction: country, or country-state (e.g. US-CA); recorded even when no rate was found. Credits keep the credited line''s jurisdiction.';
COMMENT ON COLUMN billing.invoice_lines.tax_name IS 'Name of the tax rate applied; NULL when no rate was in force (tax 0, see billing tax exceptions).';
COMMENT ON COLUMN billing.invoice_lines.tax_rate IS 'Rate applied as a fraction (0.072500 = 7.25 %): state rate over country rate, in force on the tax point (period end - 1 day); credits reuse the credited line''s rate; 0 when none.';
COMMENT ON COLUMN billing.invoice_lines.tax_amount IS 'round(net_amount x tax_rate) half away from zero to the minor unit, per line.';
COMMENT ON COLUMN billing.invoice_lines.total_amount IS 'net_amount + tax_amount.';
COMMENT ON COLUMN billing.invoice_lines.currency IS 'ISO 4217 currency of the account (every line of an invoice shares it).';
COMMENT ON COLUMN billing.invoice_lines.source_ref IS 'Lineage: rated_line_id (usage), order_item_id (one-time), subscription_id/price_id (recurring).';
COMMENT ON COLUMN billing.invoice_lines.reference_line_id IS 'RECURRING_CREDIT lines: line_id of the earlier RECURRING line whose days are credited; NULL otherwise.';

CREATE TABLE IF NOT EXISTS billing.invoices (
    invoice_id VARCHAR NOT NULL,
    invoice_number VARCHAR NOT NULL,
    account_id BIGINT NOT NULL,
    customer_id BIGINT,
    billing_month DATE NOT NULL,
    period_start DATE NOT NULL,
    period_end DATE NOT NULL,
    invoice_date DATE NOT NULL,
    due_date DATE NOT NULL,
    currency VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    line_count INTEGER NOT NULL,
    subtotal DECIMAL(18,4) NOT NULL,
    discount_total DECIMAL(18,4) NOT NULL,
    net_total DECIMAL(18,4) NOT NULL,
    tax_total DECIMAL(18,4) NOT NULL,
    total DECIMAL(18,4) NOT NULL
);
COMMENT ON TABLE billing.invoices IS 'Draft invoice headers (docs/billing.md). Grain: one row per invoice = account x billing period ending in billing_month, only when it has at least one line; key invoice_id; partitioned by billing_month (a re-run replaces the month). Totals are sums of the rounded lines: total = net_total + tax_total = sum(total_amount).';
COMMENT ON COLUMN billing.invoices.invoice_id IS 'Invoice id: INV-<account_number>-<period end YYYYMMDD>, deterministic.';
COMMENT ON COLUMN billing.invoices.invoice_number IS 'Draft number D-YYYYMM-NNNNNN (rank by account_id within the month); gapless final numbers come with finalization.';
COMMENT ON COLUMN billing.invoices.account_id IS 'Billing account invoiced.';
COMMENT ON COLUMN billing.invoices.customer_id IS 'Customer owning the account.';
COMMENT ON COLUMN billing.invoices.billing_month IS 'Bill cycle partition (first day of the month) the billing period ends in.';
COMMENT ON COLUMN billing.invoices.period_start IS 'Start of the billing period P billed in arrears (inclusive).';
COMMENT ON COLUMN billing.invoices.period_end IS 'End of the billing period P (exclusive); the next period N starts here.';
COMMENT ON COLUMN billing.invoices.invoice_date IS 'Invoice date = period_end.';
COMMENT ON COLUMN billing.invoices.due_date IS 'invoice_date + the account''s payment_terms_days.';
COMMENT ON COLUMN billing.invoices.currency IS 'ISO 4217 currency of the account and every line.';
COMMENT ON COLUMN billing.invoices.status IS 'DRAFT (replaced by a re-run of the month); FINAL / VOID come with finalization.';
COMMENT ON COLUMN billing.invoices.line_count IS 'Number of lines on the invoice (always >= 1).';
COMMENT ON COLUMN billing.invoices.subtotal IS 'Sum of the lines'' amount (before discounts).';
COMMENT ON COLUMN billing.invoices.discount_total IS 'Sum of the lines'' discount_amount (negative or 0 for charges).';
COMMENT ON COLUMN billing.invoices.net_total IS 'Sum of the lines'' net_amount = subtotal + discount_total.';
COMMENT ON COLUMN billing.invoices.tax_total IS 'Sum of the lines'' tax_amount.';
COMMENT ON COLUMN billing.invoices.total IS 'Amount due: net_total + tax_total (sum of rounded values, never re-rounded).';
