"""Subscriptions from confirmed orders: services, their plan versions, and order exceptions.

Engine convention (docs/architecture.md): functions over a DuckDB connection (with
``domain.install_macros`` applied) and input relation names, returning
``DuckDBPyRelation`` s. Everything is set-based SQL (window functions); no loop over orders.
The rules, with examples, are in ``docs/state.md``. Outline:

1. *items*: items of CONFIRMED, non-deleted orders whose product is a SUBSCRIPTION product
   (ONE_TIME / USAGE products are not services). Each gets a sequence number ordered by
   (``effective_date``, ``order_id``, ``order_item_id``) — the order in which changes apply.
2. *static checks*: account, product, subscription id, plan, plan/product, quantity.
3. *lifecycle*: per ``subscription_id`` the first valid NEW_SERVICE item activates it; later
   NEW_SERVICE items reuse the id (exception); CHANGE / DISCONNECT items before activation
   find no subscription, items of another account or product are rejected; the first valid
   DISCONNECT ends it and every later CHANGE / DISCONNECT finds it ended.
4. *timing*: a CHANGE compares the recurring price of the new plan with the previous plan's
   (both in force on the effective date): higher = UPGRADE (immediate), lower = DOWNGRADE (at
   the end of the account's billing period containing the effective date), equal = CHANGE
   (immediate).
5. *versions*: each applied item takes effect at its effective instant; an item whose
   effective instant is not strictly before every later item's (in sequence order) is
   superseded — this drops zero-length versions and cancels a pending downgrade overtaken
   by a later change or disconnect.
"""

from __future__ import annotations

import duckdb

from warehouse.tables import TABLES

OPEN_END = "DATE '9999-12-31'"

VERSION_COLUMNS = TABLES["core.subscription_versions"].column_names
SUBSCRIPTION_COLUMNS = TABLES["core.subscriptions"].column_names
EXCEPTION_COLUMNS = TABLES["core.order_exceptions"].column_names

# Exception reasons (order_exceptions.reason), in the priority they are checked.
REASONS = {
    "ACCOUNT_NOT_FOUND": "The order's billing account does not exist (or is deleted).",
    "UNKNOWN_PRODUCT": "The item's product is not in the catalog (or is deleted).",
    "MISSING_SUBSCRIPTION_ID": "A subscription item without subscription_id.",
    "UNKNOWN_PLAN": "NEW_SERVICE / CHANGE item whose plan_id is NULL or not in the catalog.",
    "PLAN_PRODUCT_MISMATCH": "The plan prices a different product than the item's product.",
    "INVALID_QUANTITY": "NEW_SERVICE / CHANGE item with a NULL or non-positive quantity.",
    "DUPLICATE_SUBSCRIPTION": "NEW_SERVICE reusing a subscription_id already activated.",
    "SUBSCRIPTION_NOT_FOUND": "CHANGE / DISCONNECT of a subscription not activated by then.",
    "ACCOUNT_MISMATCH": "CHANGE / DISCONNECT ordered by another account than the subscription's.",
    "SUBSCRIPTION_ENDED": "CHANGE / DISCONNECT after the subscription was disconnected.",
}


def _live(rel: str) -> str:
    return f"(SELECT * FROM {rel} WHERE NOT coalesce(is_deleted, false))"


def _pipeline(orders: str, order_items: str, products: str, plan_charges: str, accounts: str, plans: str) -> str:
    """The shared CTE chain; each public function selects from its last CTEs."""
    return f"""
WITH
acc AS (SELECT account_id, bill_cycle_day, billing_cycle FROM {_live(accounts)}),
prod AS (SELECT product_id, product_type FROM {_live(products)}),
pln AS (SELECT plan_id, product_id FROM {_live(plans)}),
recurring AS (
    SELECT plan_id, CAST(unit_price AS DECIMAL(38,10)) AS unit_price, effective_from,
           coalesce(effective_to, TIMESTAMP '9999-12-31') AS effective_to
    FROM {_live(plan_charges)} WHERE charge_type = 'RECURRING'
),
item AS (
    SELECT o.order_id, i.order_item_id, o.account_id, o.order_type, CAST(o.effective_date AS DATE) AS effective_date,
           i.product_id, i.plan_id, i.bundle_id, i.subscription_id, i.quantity,
           p.product_type, a.account_id IS NOT NULL AS account_found, a.bill_cycle_day, a.billing_cycle,
           pl.plan_id IS NOT NULL AS plan_found, pl.product_id AS plan_product_id,
           row_number() OVER (ORDER BY o.effective_date, o.order_id, i.order_item_id) AS seq
    FROM {_live(orders)} o
    JOIN {_live(order_items)} i ON i.order_id = o.order_id
    LEFT JOIN prod p ON p.product_id = i.product_id
    LEFT JOIN acc a ON a.account_id = o.account_id
    LEFT JOIN pln pl ON pl.plan_id = i.plan_id
    WHERE o.status = 'CONFIRMED'
      AND o.order_type IN ('NEW_SERVICE', 'CHANGE', 'DISCONNECT')
      AND (p.product_type IS NULL OR p.product_type = 'SUBSCRIPTION')
),
checked AS (
    SELECT *, CASE
        WHEN NOT account_found THEN 'ACCOUNT_NOT_FOUND'
        WHEN product_type IS NULL THEN 'UNKNOWN_PRODUCT'
        WHEN subscription_id IS NULL THEN 'MISSING_SUBSCRIPTION_ID'
        WHEN order_type <> 'DISCONNECT' AND NOT plan_found THEN 'UNKNOWN_PLAN'
        WHEN order_type <> 'DISCONNECT' AND plan_product_id <> product_id THEN 'PLAN_PRODUCT_MISMATCH'
        WHEN order_type <> 'DISCONNECT' AND coalesce(quantity, 0) <= 0 THEN 'INVALID_QUANTITY'
    END AS static_reason
    FROM item
),
act AS (
    SELECT * FROM checked
    WHERE static_reason IS NULL AND order_type = 'NEW_SERVICE'
    QUALIFY row_number() OVER (PARTITION BY subscription_id ORDER BY seq) = 1
),
linked AS (
    SELECT c.*,
        a.seq AS act_seq, a.account_id AS sub_account_id, a.product_id AS sub_product_id,
        a.bundle_id AS sub_bundle_id, a.order_id AS act_order_id,
        coalesce(c.static_reason, CASE
            WHEN c.order_type = 'NEW_SERVICE' AND c.seq <> a.seq THEN 'DUPLICATE_SUBSCRIPTION'
            WHEN c.order_type <> 'NEW_SERVICE' AND (a.seq IS NULL OR c.seq < a.seq) THEN 'SUBSCRIPTION_NOT_FOUND'
            WHEN c.order_type <> 'NEW_SERVICE' AND c.account_id <> a.account_id THEN 'ACCOUNT_MISMATCH'
        END) AS pre_reason
    FROM checked c LEFT JOIN act a ON a.subscription_id = c.subscription_id
),
dis AS (
    SELECT subscription_id, min(seq) AS dis_seq, arg_min(effective_date, seq) AS end_date,
           arg_min(order_id, seq) AS ended_order_id
    FROM linked WHERE pre_reason IS NULL AND order_type = 'DISCONNECT'
    GROUP BY subscription_id
),
classified AS (
    SELECT l.*, d.dis_seq,
        coalesce(l.pre_reason, CASE WHEN l.order_type <> 'NEW_SERVICE' AND l.seq > d.dis_seq
                                    THEN 'SUBSCRIPTION_ENDED' END) AS reason
    FROM linked l LEFT JOIN dis d ON d.subscription_id = l.subscription_id
),
applied AS (
    -- activation and applied changes, with the plan they replace (previous applied item)
    SELECT *, lag(plan_id) OVER (PARTITION BY subscription_id ORDER BY seq) AS prev_plan_id
    FROM classified WHERE reason IS NULL AND order_type IN ('NEW_SERVICE', 'CHANGE')
),
priced AS (
    SELECT a.*,
        (SELECT sum(r.unit_price) FROM recurring r WHERE r.plan_id = a.plan_id
            AND r.effective_from <= CAST(a.effective_date AS TIMESTAMP)
            AND r.effective_to > CAST(a.effective_date AS TIMESTAMP)) AS new_price,
        (SELECT sum(r.unit_price) FROM recurring r WHERE r.plan_id = a.prev_plan_id
            AND r.effective_from <= CAST(a.effective_date AS TIMESTAMP)
            AND r.effective_to > CAST(a.effective_date AS TIMESTAMP)) AS old_price
    FROM applied a
),
kinded AS (
    SELECT *, CASE
        WHEN order_type = 'NEW_SERVICE' THEN 'ACTIVATE'
        WHEN coalesce(new_price, 0) > coalesce(old_price, 0) THEN 'UPGRADE'
        WHEN coalesce(new_price, 0) < coalesce(old_price, 0) THEN 'DOWNGRADE'
        ELSE 'CHANGE'
    END AS change_kind
    FROM priced
),
timed AS (
    -- a CHANGE may move the service to another product (Mobile S -> Mobile L): the item's product
    SELECT subscription_id, seq, order_id, plan_id, quantity, change_kind, sub_account_id, product_id AS sub_product_id, sub_bundle_id,
        CASE WHEN change_kind = 'DOWNGRADE' THEN
            -- end of the account's period containing effective_date: first period end > it
            list_min(list_filter(
                list_transform(range(-1, 14), k -> period_end_in(
                    CAST(date_trunc('month', effective_date) + to_months(k) AS DATE), bill_cycle_day, billing_cycle)),
                e -> e > effective_date))
        ELSE effective_date END AS takes_effect
    FROM kinded
    UNION ALL
    SELECT l.subscription_id, l.seq, l.order_id, NULL, NULL, 'DISCONNECT', NULL, NULL, NULL, l.effective_date
    FROM classified l JOIN dis d ON d.subscription_id = l.subscription_id AND d.dis_seq = l.seq
),
effective AS (
    -- an item is superseded when a later item (sequence order) takes effect no later than it
    SELECT * FROM timed
    QUALIFY takes_effect < coalesce(
        min(takes_effect) OVER (PARTITION BY subscription_id ORDER BY seq
                                ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), {OPEN_END})
),
versions AS (
    SELECT subscription_id, sub_account_id AS account_id, sub_product_id AS product_id, plan_id,
           sub_bundle_id AS bundle_id, quantity, takes_effect AS valid_from,
           coalesce(lead(takes_effect) OVER (PARTITION BY subscription_id ORDER BY seq), {OPEN_END}) AS valid_to,
           order_id, change_kind
    FROM effective
)
"""




def subscription_versions(
    con: duckdb.DuckDBPyConnection,
    orders: str = "core.orders",
    order_items: str = "core.order_items",
    products: str = "core.products",
    plan_charges: str = "core.plan_charges",
    accounts: str = "core.billing_accounts",
    plans: str = "core.price_plans",
) -> duckdb.DuckDBPyRelation:
    """Plan in force over time (-> ``core.subscription_versions``), one row per version.

    Columns: subscription_id BIGINT, account_id BIGINT, product_id BIGINT, plan_id BIGINT,
    bundle_id BIGINT, quantity INTEGER, valid_from DATE, valid_to DATE (half-open, open end
    9999-12-31), order_id BIGINT (order that started the version), change_kind VARCHAR
    (ACTIVATE, UPGRADE, DOWNGRADE, CHANGE). Zero-length versions are dropped.
    ``plans`` (price_plans) maps a plan to the product it prices.
    """
    sql = _pipeline(orders, order_items, products, plan_charges, accounts, plans)
    return con.sql(sql + """
SELECT CAST(subscription_id AS BIGINT) AS subscription_id, CAST(account_id AS BIGINT) AS account_id,
       CAST(product_id AS BIGINT) AS product_id, CAST(plan_id AS BIGINT) AS plan_id,
       CAST(bundle_id AS BIGINT) AS bundle_id, CAST(quantity AS INTEGER) AS quantity,
       CAST(valid_from AS DATE) AS valid_from, CAST(valid_to AS DATE) AS valid_to,
       CAST(order_id AS BIGINT) AS order_id, CAST(change_kind AS VARCHAR) AS change_kind
FROM versions WHERE change_kind <> 'DISCONNECT'
""")


def subscriptions(
    con: duckdb.DuckDBPyConnection,
    orders: str = "core.orders",
    order_items: str = "core.order_items",
    products: str = "core.products",
    plan_charges: str = "core.plan_charges",
    accounts: str = "core.billing_accounts",
    plans: str = "core.price_plans",
) -> duckdb.DuckDBPyRelation:
    """One row per service (-> ``core.subscriptions``), from its activation and disconnect.

    Computed from the order events (not from ``core.subscription_versions``) so that a
    service activated and disconnected on the same day — which has no version — is still
    listed, and so that ``ended_order_id`` is known. Columns: subscription_id, account_id,
    product_id, bundle_id, start_date DATE, end_date DATE (9999-12-31 if open), status
    (ACTIVE if no disconnect was ordered, else ENDED — as of the data, even when the
    disconnect date is in the future), created_order_id, ended_order_id (NULL if open).
    """
    sql = _pipeline(orders, order_items, products, plan_charges, accounts, plans)
    return con.sql(sql + f"""
SELECT CAST(a.subscription_id AS BIGINT) AS subscription_id, CAST(a.account_id AS BIGINT) AS account_id,
       CAST(a.product_id AS BIGINT) AS product_id, CAST(a.bundle_id AS BIGINT) AS bundle_id,
       a.effective_date AS start_date,
       CAST(coalesce(d.end_date, {OPEN_END}) AS DATE) AS end_date,
       CASE WHEN d.end_date IS NULL THEN 'ACTIVE' ELSE 'ENDED' END AS status,
       CAST(a.order_id AS BIGINT) AS created_order_id,
       CAST(d.ended_order_id AS BIGINT) AS ended_order_id
FROM act a LEFT JOIN dis d ON d.subscription_id = a.subscription_id
""")


def order_exceptions(
    con: duckdb.DuckDBPyConnection,
    orders: str = "core.orders",
    order_items: str = "core.order_items",
    products: str = "core.products",
    plan_charges: str = "core.plan_charges",
    accounts: str = "core.billing_accounts",
    plans: str = "core.price_plans",
) -> duckdb.DuckDBPyRelation:
    """Confirmed subscription order items that cannot be applied (-> ``core.order_exceptions``).

    One row per item, with its first failing reason (see ``REASONS``). Columns: order_id,
    order_item_id, subscription_id, order_type, effective_date, reason.
    """
    sql = _pipeline(orders, order_items, products, plan_charges, accounts, plans)
    return con.sql(sql + """
SELECT CAST(order_id AS BIGINT) AS order_id, CAST(order_item_id AS BIGINT) AS order_item_id,
       CAST(subscription_id AS BIGINT) AS subscription_id, CAST(order_type AS VARCHAR) AS order_type,
       CAST(effective_date AS DATE) AS effective_date, CAST(reason AS VARCHAR) AS reason
FROM classified WHERE reason IS NOT NULL
""")
