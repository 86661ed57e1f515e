-- billing: rating outputs (pipelines/rating, docs/rating.md).
-- Partitioned by billing_month: a bill cycle run replaces its month's rows inside one transaction.

CREATE SCHEMA IF NOT EXISTS billing;

CREATE TABLE IF NOT EXISTS billing.rated_usage (
    rated_line_id      VARCHAR        NOT NULL,
    billing_month      DATE           NOT NULL,
    account_id         BIGINT         NOT NULL,
    subscription_id    BIGINT         NOT NULL,
    plan_id            BIGINT         NOT NULL,
    price_id           BIGINT         NOT NULL,
    charge_code        VARCHAR        NOT NULL,
    metric             VARCHAR,
    aggregation        VARCHAR,
    charge_model       VARCHAR        NOT NULL,
    billing_timing     VARCHAR,
    line_type          VARCHAR        NOT NULL,
    dimensions         VARCHAR,
    currency           VARCHAR        NOT NULL,
    period_start       DATE           NOT NULL,
    period_end         DATE           NOT NULL,
    service_start      DATE           NOT NULL,
    service_end        DATE           NOT NULL,
    segment_start      TIMESTAMP      NOT NULL,
    segment_end        TIMESTAMP      NOT NULL,
    proration_factor   DECIMAL(38,10) NOT NULL,
    quantity           DECIMAL(38,10) NOT NULL,
    included_quantity  DECIMAL(38,10) NOT NULL,
    billable_quantity  DECIMAL(38,10) NOT NULL,
    unit_price         DECIMAL(38,10),
    tier_slices        VARCHAR,
    event_count        BIGINT         NOT NULL,
    first_event_at     TIMESTAMP,
    last_event_at      TIMESTAMP,
    amount_precise     DECIMAL(38,10) NOT NULL,
    amount             DECIMAL(18,4)  NOT NULL
);

COMMENT ON TABLE billing.rated_usage IS 'Rated usage lines. Grain: one row per (billing_month, subscription_id, price_id, service segment [segment_start, segment_end), line_type, dimensions); key rated_line_id = md5 of that lineage. A USAGE line exists for every usage charge price version in force over a segment of the billing period, even without usage (amount may be 0); MINIMUM_TRUE_UP and MAXIMUM_CAP lines are added per segment when a commitment applies. Partitioned by billing_month (docs/rating.md).';
COMMENT ON COLUMN billing.rated_usage.rated_line_id IS 'Deterministic line id: md5(billing_month|subscription_id|charge_code|price_id|segment_start|segment_end|line_type|dimensions). Same inputs give the same id.';
COMMENT ON COLUMN billing.rated_usage.billing_month IS 'Partition: first day of the month whose bill cycle bills this line''s billing period.';
COMMENT ON COLUMN billing.rated_usage.account_id IS 'Billing account of the subscription (its bill cycle defines the period).';
COMMENT ON COLUMN billing.rated_usage.subscription_id IS 'Subscription (service) whose usage is rated.';
COMMENT ON COLUMN billing.rated_usage.plan_id IS 'Price plan in force on the subscription over the service segment.';
COMMENT ON COLUMN billing.rated_usage.price_id IS 'Price version (core.plan_charges.price_id) in force over the service segment.';
COMMENT ON COLUMN billing.rated_usage.charge_code IS 'Stable charge name within the plan, shared by its price versions.';
COMMENT ON COLUMN billing.rated_usage.metric IS 'Usage metric priced (data_mb, voice_min, sms, ...).';
COMMENT ON COLUMN billing.rated_usage.aggregation IS 'How events were aggregated into quantity: SUM, COUNT, MAX, UNIQUE_COUNT, LATEST or TIME_WEIGHTED_SUM.';
COMMENT ON COLUMN billing.rated_usage.charge_model IS 'Charge model of the price version: PER_UNIT, GRADUATED, VOLUME, PACKAGE, PERCENTAGE, GRADUATED_PERCENTAGE, MATRIX or DYNAMIC.';
COMMENT ON COLUMN billing.rated_usage.billing_timing IS 'IN_ARREARS or IN_ADVANCE, copied from the charge for the invoicing engine.';
COMMENT ON COLUMN billing.rated_usage.line_type IS 'USAGE (the priced usage), MINIMUM_TRUE_UP (positive: minimum commitment minus usage amount) or MAXIMUM_CAP (negative discount: usage amount above the cap).';
COMMENT ON COLUMN billing.rated_usage.dimensions IS 'MATRIX lines: JSON object of the matrix cell (e.g. {"zone":"EU","time_band":"PEAK"}); NULL otherwise.';
COMMENT ON COLUMN billing.rated_usage.currency IS 'ISO 4217 currency of the billing account; amount is rounded to its minor unit.';
COMMENT ON COLUMN billing.rated_usage.period_start IS 'Billing period start (inclusive) of the account''s bill cycle billed in billing_month.';
COMMENT ON COLUMN billing.rated_usage.period_end IS 'Billing period end (exclusive).';
COMMENT ON COLUMN billing.rated_usage.service_start IS 'Service segment start date (inclusive): the part of the period where this plan and price version were both in force.';
COMMENT ON COLUMN billing.rated_usage.service_end IS 'Service segment end date (exclusive).';
COMMENT ON COLUMN billing.rated_usage.segment_start IS 'Exact segment start instant (UTC); differs from service_start only when a price version starts mid-day.';
COMMENT ON COLUMN billing.rated_usage.segment_end IS 'Exact segment end instant (UTC, exclusive).';
COMMENT ON COLUMN billing.rated_usage.proration_factor IS 'Segment days / period days (or / proration_days), exact to 10 decimals; 1 for a whole period or prorate = false. Applied to allowances, free units and commitments.';
COMMENT ON COLUMN billing.rated_usage.quantity IS 'Aggregated quantity of the segment (per the aggregation); for commitment lines, the segment''s usage amount.';
COMMENT ON COLUMN billing.rated_usage.included_quantity IS 'Allowance deducted before pricing (included_quantity plus free units, prorated).';
COMMENT ON COLUMN billing.rated_usage.billable_quantity IS 'Quantity priced: max(quantity - included_quantity, 0) (PERCENTAGE: units bearing the rate); 1 for commitment lines.';
COMMENT ON COLUMN billing.rated_usage.unit_price IS 'Unit price applied when there is a single one (PER_UNIT, PACKAGE per package, VOLUME tier, MATRIX cell, PERCENTAGE rate); NULL otherwise.';
COMMENT ON COLUMN billing.rated_usage.tier_slices IS 'JSON list of tier slices for tiered models: [{"tier","from","to","quantity","unit_amount","flat_amount","amount"}]; NULL otherwise.';
COMMENT ON COLUMN billing.rated_usage.event_count IS 'Number of usage events rated into the line.';
COMMENT ON COLUMN billing.rated_usage.first_event_at IS 'Earliest event_time rated into the line.';
COMMENT ON COLUMN billing.rated_usage.last_event_at IS 'Latest event_time rated into the line.';
COMMENT ON COLUMN billing.rated_usage.amount_precise IS 'Exact amount to 10 decimals, before rounding to the minor unit.';
COMMENT ON COLUMN billing.rated_usage.amount IS 'round_money(amount_precise, currency): half away from zero to the currency minor unit.';

CREATE TABLE IF NOT EXISTS billing.unrated_usage (
    billing_month    DATE           NOT NULL,
    event_id         VARCHAR        NOT NULL,
    subscription_id  BIGINT,
    account_id       BIGINT,
    metric           VARCHAR,
    quantity         DECIMAL(38,10),
    event_time       TIMESTAMP,
    reason           VARCHAR        NOT NULL,
    _file            VARCHAR
);

COMMENT ON TABLE billing.unrated_usage IS 'Usage events that could not be rated, never dropped. Grain: one row per (billing_month, event_id). An event belongs to the month billing its account''s period containing event_time, or, when the subscription or its account is unknown, to its calendar month.';
COMMENT ON COLUMN billing.unrated_usage.billing_month IS 'Partition: billing month the event would have been rated in.';
COMMENT ON COLUMN billing.unrated_usage.event_id IS 'Mediation event id (core.usage_events.event_id).';
COMMENT ON COLUMN billing.unrated_usage.subscription_id IS 'Subscription the event names (may be unknown).';
COMMENT ON COLUMN billing.unrated_usage.account_id IS 'Billing account of the subscription, when known.';
COMMENT ON COLUMN billing.unrated_usage.metric IS 'Metric of the event.';
COMMENT ON COLUMN billing.unrated_usage.quantity IS 'Quantity of the event.';
COMMENT ON COLUMN billing.unrated_usage.event_time IS 'When the usage happened (UTC).';
COMMENT ON COLUMN billing.unrated_usage.reason IS 'Why it was not rated: unknown subscription, unknown billing account, no active subscription at event time, unknown metric, metric not priced by plan, no price in effect at event time, missing quantity, quantity out of range (negative or 10^12 or more, or the line''s quantity does not fit), bad attributes: not valid JSON, bad attributes: <price attribute> out of range, bad attributes: ..., charge misconfigured: ... (the price version is outside the plan format, docs/rating.md "Limits"), amount out of range (the event''s line does not fit the rated_usage types).';
COMMENT ON COLUMN billing.unrated_usage._file IS 'Landing file the event came from.';
