-- core: services built from confirmed orders (pipelines/state/subscriptions.py, docs/state.md).
-- Rebuilt from core.orders / core.order_items / the catalog on every run (deterministic).
CREATE SCHEMA IF NOT EXISTS core;

CREATE TABLE IF NOT EXISTS core.subscriptions (
    subscription_id  BIGINT  NOT NULL,
    account_id       BIGINT  NOT NULL,
    product_id       BIGINT  NOT NULL,
    bundle_id        BIGINT,
    start_date       DATE    NOT NULL,
    end_date         DATE    NOT NULL,
    status           VARCHAR NOT NULL,
    created_order_id BIGINT  NOT NULL,
    ended_order_id   BIGINT
);

COMMENT ON TABLE core.subscriptions IS 'One row per service (subscription) activated by a CONFIRMED NEW_SERVICE order item; key subscription_id. Service period is half-open [start_date, end_date). Includes services activated and disconnected on the same day (they have no version in core.subscription_versions). See docs/state.md.';
COMMENT ON COLUMN core.subscriptions.subscription_id IS 'Service id, as given by the NEW_SERVICE order item that activated it. Primary key.';
COMMENT ON COLUMN core.subscriptions.account_id IS 'Billing account that ordered and owns the service (core.billing_accounts).';
COMMENT ON COLUMN core.subscriptions.product_id IS 'Product the service was activated with (core.products, product_type SUBSCRIPTION); later CHANGE orders may move it, see core.subscription_versions.';
COMMENT ON COLUMN core.subscriptions.bundle_id IS 'Bundle the service was sold in (core.bundles); NULL if sold alone.';
COMMENT ON COLUMN core.subscriptions.start_date IS 'Activation date: effective_date of the activating order (inclusive).';
COMMENT ON COLUMN core.subscriptions.end_date IS 'Effective date of the first valid DISCONNECT (exclusive); 9999-12-31 when no disconnect has been ordered.';
COMMENT ON COLUMN core.subscriptions.status IS 'ACTIVE when no disconnect has been ordered, else ENDED. As of the data, not of today: a future-dated disconnect already shows ENDED; use start_date/end_date for point-in-time questions.';
COMMENT ON COLUMN core.subscriptions.created_order_id IS 'Order that activated the service (core.orders).';
COMMENT ON COLUMN core.subscriptions.ended_order_id IS 'DISCONNECT order that ended the service; NULL while open.';

CREATE TABLE IF NOT EXISTS core.subscription_versions (
    subscription_id BIGINT  NOT NULL,
    account_id      BIGINT  NOT NULL,
    product_id      BIGINT  NOT NULL,
    plan_id         BIGINT  NOT NULL,
    bundle_id       BIGINT,
    quantity        INTEGER NOT NULL,
    valid_from      DATE    NOT NULL,
    valid_to        DATE    NOT NULL,
    order_id        BIGINT  NOT NULL,
    change_kind     VARCHAR NOT NULL
);

COMMENT ON TABLE core.subscription_versions IS 'Plan and quantity in force for each service over time: one row per (subscription_id, valid_from), intervals half-open [valid_from, valid_to), contiguous and non-overlapping; zero-length versions are dropped. Point-in-time: d >= valid_from AND d < valid_to. Upgrades start on the order''s effective date, downgrades at the end of the account''s billing period containing it. See docs/state.md.';
COMMENT ON COLUMN core.subscription_versions.subscription_id IS 'Service (core.subscriptions). With valid_from, the key.';
COMMENT ON COLUMN core.subscription_versions.account_id IS 'Billing account owning the service.';
COMMENT ON COLUMN core.subscription_versions.product_id IS 'Product of this version: the activated product, or the product a CHANGE order moved the service to.';
COMMENT ON COLUMN core.subscription_versions.plan_id IS 'Price plan in force during the version (core.price_plans; its charges in core.plan_charges).';
COMMENT ON COLUMN core.subscription_versions.bundle_id IS 'Bundle the service was sold in (from the activation); NULL if none.';
COMMENT ON COLUMN core.subscription_versions.quantity IS 'Quantity in force (from the activating or changing order item).';
COMMENT ON COLUMN core.subscription_versions.valid_from IS 'First day the version applies (inclusive).';
COMMENT ON COLUMN core.subscription_versions.valid_to IS 'Day the version stops applying (exclusive): the next version''s valid_from, the disconnect date, or 9999-12-31 when open.';
COMMENT ON COLUMN core.subscription_versions.order_id IS 'Order whose item started this version.';
COMMENT ON COLUMN core.subscription_versions.change_kind IS 'ACTIVATE (new service), UPGRADE (higher recurring price, immediate), DOWNGRADE (lower, at billing period end) or CHANGE (equal price, immediate).';

CREATE TABLE IF NOT EXISTS core.order_exceptions (
    order_id        BIGINT  NOT NULL,
    order_item_id   BIGINT  NOT NULL,
    subscription_id BIGINT,
    order_type      VARCHAR NOT NULL,
    effective_date  DATE    NOT NULL,
    reason          VARCHAR NOT NULL
);

COMMENT ON TABLE core.order_exceptions IS 'Items of CONFIRMED orders for subscription products that could not be applied to the services, one row per order_item_id (key) with the first failing reason. These items changed nothing in core.subscriptions / core.subscription_versions. See docs/state.md for the reasons.';
COMMENT ON COLUMN core.order_exceptions.order_id IS 'Order (core.orders).';
COMMENT ON COLUMN core.order_exceptions.order_item_id IS 'Rejected order item (core.order_items). Primary key.';
COMMENT ON COLUMN core.order_exceptions.subscription_id IS 'Service the item referred to; NULL when the item carried none.';
COMMENT ON COLUMN core.order_exceptions.order_type IS 'NEW_SERVICE, CHANGE or DISCONNECT.';
COMMENT ON COLUMN core.order_exceptions.effective_date IS 'Effective date of the order.';
COMMENT ON COLUMN core.order_exceptions.reason IS 'ACCOUNT_NOT_FOUND, UNKNOWN_PRODUCT, MISSING_SUBSCRIPTION_ID, UNKNOWN_PLAN, PLAN_PRODUCT_MISMATCH, INVALID_QUANTITY, DUPLICATE_SUBSCRIPTION, SUBSCRIPTION_NOT_FOUND, ACCOUNT_MISMATCH, SUBSCRIPTION_PRODUCT_MISMATCH or SUBSCRIPTION_ENDED.';
