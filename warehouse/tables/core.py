"""``core``: current state and SCD2 history of every entity, and the services built from confirmed orders.

The entity tables derive from the record contract (sources/entities.py): their columns are the
entity's, then the history columns. The service tables are pipelines/state/subscriptions.py's
(docs/state.md). Everything here is rebuilt from ``raw`` (derived).
"""

from sources.entities import ENTITIES, Column, Entity
from warehouse.contract import DERIVED, Table
from warehouse.contract import column as _c
from warehouse.tables.raw import entity_key, nullable

HISTORY_COLUMNS = (
    Column("valid_from", "TIMESTAMP", "Version valid from (inclusive): the change's source time.", False),
    Column("valid_to", "TIMESTAMP", "Version valid until (exclusive); 9999-12-31 for the current version.", False),
    Column("is_deleted", "BOOLEAN", "True when this version is a delete (the row image is the last known one).", False),
    Column("_op", "VARCHAR", "Operation that produced this version (c, u, d, r).", False),
    Column("_position", "BIGINT", "Source log position of the change that produced this version."),
    Column("_file", "VARCHAR", "Landing file the change came from.", False),
)
USAGE_STATE_COLUMNS = (
    Column("is_deleted", "BOOLEAN", "True when the latest change to the event is a delete.", False),
    Column("_position", "BIGINT", "Extract sequence of the latest change to the event."),
    Column("_file", "VARCHAR", "Landing file of the latest change to the event.", False),
)


def history(entity: Entity) -> Table:
    return Table(
        "core", f"{entity.name}_history", DERIVED, (), f"one row per version of each {entity_key(entity)}",
        f"{entity.description} SCD2 history: one row per version of each {entity_key(entity)}, "
        "half-open [valid_from, valid_to), ordered by source position.",
        nullable((*entity.columns, *HISTORY_COLUMNS)),
    )


def current(entity: Entity) -> Table:
    return Table(
        "core", entity.name, DERIVED, entity.key, f"one row per {entity_key(entity)}",
        f"{entity.description} Current state: one row per {entity_key(entity)} (its latest version); "
        "deleted rows kept with is_deleted = true.",
        nullable((*entity.columns, *HISTORY_COLUMNS)),
    )


USAGE_EVENTS = Table(
    "core", "usage_events", DERIVED, ("event_id",), "one row per usage event",
    "Usage events as of the latest change: one row per event_id (deduplicated, ordered by "
    "extract sequence); deleted events kept with is_deleted = true.",
    nullable((*ENTITIES["usage_records"].columns, *USAGE_STATE_COLUMNS)),
)

ENTITY_TABLES = tuple(
    t for e in ENTITIES.values() if e.name != "usage_records" for t in (history(e), current(e))
) + (USAGE_EVENTS,)

SERVICE_TABLES = (
    Table(
        'core', 'order_exceptions', DERIVED, ("order_item_id",), 'one row per rejected order item',
        'Items of CONFIRMED orders for subscription products that could not be applied to the services, one row per order_item_id (key) with the first failing reason. These items changed nothing in core.subscriptions / core.subscription_versions. See docs/state.md for the reasons.',
        (
            _c('order_id', 'BIGINT', 'Order (core.orders).', False),
            _c('order_item_id', 'BIGINT', 'Rejected order item (core.order_items). Primary key.', False),
            _c('subscription_id', 'BIGINT', 'Service the item referred to; NULL when the item carried none.'),
            _c('order_type', 'VARCHAR', 'NEW_SERVICE, CHANGE or DISCONNECT.', False),
            _c('effective_date', 'DATE', 'Effective date of the order.', False),
            _c('reason', 'VARCHAR', 'ACCOUNT_NOT_FOUND, UNKNOWN_PRODUCT, MISSING_SUBSCRIPTION_ID, UNKNOWN_PLAN, PLAN_PRODUCT_MISMATCH, PLAN_CURRENCY_MISMATCH (the plan is in another currency than the billing account), INVALID_QUANTITY, DUPLICATE_SUBSCRIPTION, SUBSCRIPTION_NOT_FOUND, ACCOUNT_MISMATCH or SUBSCRIPTION_ENDED.', False),
        ),
    ),
    Table(
        'core', 'subscription_versions', DERIVED, ("subscription_id", "valid_from"), 'one row per version of a service',
        "Plan and quantity in force for each service over time: one row per (subscription_id, valid_from), intervals half-open [valid_from, valid_to), contiguous and non-overlapping; zero-length versions are dropped. Point-in-time: d >= valid_from AND d < valid_to. Upgrades start on the order's effective date, downgrades at the end of the account's billing period containing it. See docs/state.md.",
        (
            _c('subscription_id', 'BIGINT', 'Service (core.subscriptions). With valid_from, the key.', False),
            _c('account_id', 'BIGINT', 'Billing account owning the service.', False),
            _c('product_id', 'BIGINT', 'Product of this version: the activated product, or the product a CHANGE order moved the service to.', False),
            _c('plan_id', 'BIGINT', 'Price plan in force during the version (core.price_plans; its charges in core.plan_charges).', False),
            _c('bundle_id', 'BIGINT', 'Bundle the service was sold in (from the activation); NULL if none.'),
            _c('quantity', 'INTEGER', 'Quantity in force (from the activating or changing order item).', False),
            _c('valid_from', 'DATE', 'First day the version applies (inclusive).', False),
            _c('valid_to', 'DATE', "Day the version stops applying (exclusive): the next version's valid_from, the disconnect date, or 9999-12-31 when open.", False),
            _c('order_id', 'BIGINT', 'Order whose item started this version.', False),
            _c('change_kind', 'VARCHAR', 'ACTIVATE (new service), UPGRADE (higher recurring price, immediate), DOWNGRADE (lower, at billing period end) or CHANGE (equal price, immediate).', False),
        ),
    ),
    Table(
        'core', 'subscriptions', DERIVED, ("subscription_id",), 'one row per service',
        'One row per service (subscription) activated by a CONFIRMED NEW_SERVICE order item; key subscription_id. Service period is half-open [start_date, end_date). Includes services activated and disconnected on the same day (they have no version in core.subscription_versions). See docs/state.md.',
        (
            _c('subscription_id', 'BIGINT', 'Service id, as given by the NEW_SERVICE order item that activated it. Primary key.', False),
            _c('account_id', 'BIGINT', 'Billing account that ordered and owns the service (core.billing_accounts).', False),
            _c('product_id', 'BIGINT', 'Product the service was activated with (core.products, product_type SUBSCRIPTION); later CHANGE orders may move it, see core.subscription_versions.', False),
            _c('bundle_id', 'BIGINT', 'Bundle the service was sold in (core.bundles); NULL if sold alone.'),
            _c('start_date', 'DATE', 'Activation date: effective_date of the activating order (inclusive).', False),
            _c('end_date', 'DATE', 'Effective date of the first valid DISCONNECT (exclusive); 9999-12-31 when no disconnect has been ordered.', False),
            _c('status', 'VARCHAR', 'ACTIVE when no disconnect has been ordered, else ENDED. As of the data, not of today: a future-dated disconnect already shows ENDED; use start_date/end_date for point-in-time questions.', False),
            _c('created_order_id', 'BIGINT', 'Order that activated the service (core.orders).', False),
            _c('ended_order_id', 'BIGINT', 'DISCONNECT order that ended the service; NULL while open.'),
        ),
    ),)

TABLES = ENTITY_TABLES + SERVICE_TABLES
