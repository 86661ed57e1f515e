"""Subscriptions from confirmed orders: services, their plan versions, and order exceptions.

Engine convention (docs/architecture.md): a DuckDB connection (with ``domain.install_macros``
applied) and input relation names in, ``DuckDBPyRelation`` s out; set-based SQL only, no loop
over orders. The rules, with examples, are in ``docs/state.md`` (Part 2).

:func:`build_services` runs the chain of named steps once, each into a temp table of ``con``,
and returns the three outputs (:class:`Services`). Each step is a function of its input
relations, testable alone on given rows (tests/test_services_steps.py):

1. :func:`subscription_items`: items of CONFIRMED, live orders whose product is a SUBSCRIPTION
   product (or unknown), numbered ``sequence_no`` by (effective_date, order_id, order_item_id);
2. :func:`static_checks`: ``static_reason``: account, product, subscription id, plan,
   plan/product, quantity;
3. :func:`activations`: the first valid NEW_SERVICE item of each subscription_id;
4. :func:`lifecycle_links`: each item linked to its activation, ``lifecycle_reason``: reused id,
   no subscription yet, another account;
5. :func:`disconnects`: the first valid DISCONNECT of each subscription;
6. :func:`classified_items`: ``reason``: the item's first failing reason (NULL = applied);
7. :func:`applied_changes`: activations and applied changes, with the plan each replaces;
8. :func:`priced_changes`: a year of the new and the previous plan's recurring charges on the effective date;
9. :func:`change_kinds`: ACTIVATE, UPGRADE, DOWNGRADE or CHANGE;
10. :func:`timing`: the day each applied item (and the disconnect) takes effect; a downgrade
    at the end of the account's billing period containing the effective date;
11. :func:`effective_items`: items not superseded by a later item taking effect no later;
12. :func:`versions`: the surviving items as half-open versions (``core.subscription_versions``).

:func:`service_rows` (``core.subscriptions``) and :func:`exception_rows`
(``core.order_exceptions``) read the steps' tables.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import duckdb

from domain.money import MONEY
from domain.periods import OPEN_END_DATE, OPEN_END_TIMESTAMP
from domain.sql import live
from warehouse.tables import TABLES

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
    "PLAN_CURRENCY_MISMATCH": "The plan's currency is not the billing account's currency.",
    "INVALID_QUANTITY": "NEW_SERVICE / CHANGE item with a NULL or non-positive quantity.",
    "DUPLICATE_SUBSCRIPTION": "NEW_SERVICE reusing a subscription_id already activated.",
    "SUBSCRIPTION_NOT_FOUND": "CHANGE / DISCONNECT of a subscription not activated by then.",
    "ACCOUNT_MISMATCH": "CHANGE / DISCONNECT ordered by another account than the subscription's.",
    "SUBSCRIPTION_ENDED": "CHANGE / DISCONNECT after the subscription was disconnected.",
}


@dataclass(frozen=True)
class Services:
    """The three outputs of one :func:`build_services` run, over temp tables of its connection."""

    versions: duckdb.DuckDBPyRelation  # core.subscription_versions
    subscriptions: duckdb.DuckDBPyRelation  # core.subscriptions
    exceptions: duckdb.DuckDBPyRelation  # core.order_exceptions


_runs = itertools.count(1)


def build_services(
    con: duckdb.DuckDBPyConnection,
    *,
    orders: str = "core.orders",
    order_items: str = "core.order_items",
    products: str = "core.products",
    plan_charges: str = "core.plan_charges",
    accounts: str = "core.billing_accounts",
    plans: str = "core.price_plans",
) -> Services:
    """Services, plan versions and order exceptions from confirmed orders, the chain computed once.

    Inputs are current-state relations (deleted rows ignored); ``plans`` (price_plans) maps a
    plan to the product it prices. Each step is evaluated once into a temp table of ``con``
    (``_services<run>_<step>``: a later call gets its own); the intermediate ones are dropped
    once the three outputs are stored, so the outputs can be written in any order and any
    number of times without recomputing anything.
    """
    prefix = f"_services{next(_runs)}_"
    stored: list[str] = []

    def step(name: str, relation: duckdb.DuckDBPyRelation) -> str:
        table = prefix + name
        relation.create_view(table + "_v", replace=True)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {table}_v")
        con.execute(f"DROP VIEW {table}_v")
        stored.append(table)
        return table

    items = step("items", subscription_items(con, orders, order_items, products, accounts, plans))
    checked = step("checked", static_checks(con, items))
    activated = step("activations", activations(con, checked))
    linked = step("linked", lifecycle_links(con, checked, activated))
    ended = step("disconnects", disconnects(con, linked))
    classified = step("classified", classified_items(con, linked, ended))
    applied = step("applied", applied_changes(con, classified))
    priced = step("priced", priced_changes(con, applied, plan_charges))
    kinded = step("kinds", change_kinds(con, priced))
    timed = step("timing", timing(con, kinded, ended))
    effective = step("effective", effective_items(con, timed))
    intermediate = list(stored)
    services = Services(
        versions=con.table(step("versions", versions(con, effective))),
        subscriptions=con.table(step("subscriptions", service_rows(con, activated, ended))),
        exceptions=con.table(step("exceptions", exception_rows(con, classified))),
    )
    for table in intermediate:
        con.execute(f"DROP TABLE {table}")
    return services


def subscription_items(con, orders: str, order_items: str, products: str, accounts: str, plans: str) -> duckdb.DuckDBPyRelation:
    """Step 1: confirmed NEW_SERVICE / CHANGE / DISCONNECT items of subscription (or unknown) products.

    With the order's account (found?, bill cycle, currency), the item's product type, whether its
    plan exists, which product it prices and its currency, and ``sequence_no``: the order items apply in.
    """
    return con.sql(f"""
SELECT o.order_id, i.order_item_id, o.account_id, o.order_type, CAST(o.effective_date AS DATE) AS effective_date,
       i.product_id, i.plan_id, i.bundle_id, i.subscription_id, i.quantity,
       p.product_type, a.account_id IS NOT NULL AS account_found, a.bill_cycle_day, a.billing_cycle,
       a.currency AS account_currency,
       pl.plan_id IS NOT NULL AS plan_found, pl.product_id AS plan_product_id, pl.currency AS plan_currency,
       row_number() OVER (ORDER BY o.effective_date, o.order_id, i.order_item_id) AS sequence_no
FROM {live(con, orders)} o
JOIN {live(con, order_items)} i ON i.order_id = o.order_id
LEFT JOIN {live(con, products)} p ON p.product_id = i.product_id
LEFT JOIN {live(con, accounts)} a ON a.account_id = o.account_id
LEFT JOIN {live(con, plans)} pl ON pl.plan_id = i.plan_id
WHERE o.status = 'CONFIRMED'
  AND o.order_type IN ('NEW_SERVICE', 'CHANGE', 'DISCONNECT')
  AND (p.product_type IS NULL OR p.product_type = 'SUBSCRIPTION')
""")


def static_checks(con, items: str) -> duckdb.DuckDBPyRelation:
    """Step 2: ``static_reason``, the first check the item fails on its own (NULL if none)."""
    return con.sql(f"""
SELECT *, CASE
    WHEN NOT account_found THEN 'ACCOUNT_NOT_FOUND'
    WHEN product_type IS NULL THEN 'UNKNOWN_PRODUCT'
    WHEN subscription_id IS NULL THEN 'MISSING_SUBSCRIPTION_ID'
    WHEN order_type <> 'DISCONNECT' AND NOT plan_found THEN 'UNKNOWN_PLAN'
    WHEN order_type <> 'DISCONNECT' AND plan_product_id <> product_id THEN 'PLAN_PRODUCT_MISMATCH'
    WHEN order_type <> 'DISCONNECT' AND plan_currency <> account_currency THEN 'PLAN_CURRENCY_MISMATCH'
    WHEN order_type <> 'DISCONNECT' AND coalesce(quantity, 0) <= 0 THEN 'INVALID_QUANTITY'
END AS static_reason
FROM {items}
""")


def activations(con, checked: str) -> duckdb.DuckDBPyRelation:
    """Step 3: per subscription_id, its first NEW_SERVICE item without a static reason."""
    return con.sql(f"""
SELECT subscription_id, sequence_no AS activation_no, account_id, product_id, bundle_id, order_id, effective_date
FROM {checked}
WHERE static_reason IS NULL AND order_type = 'NEW_SERVICE'
QUALIFY row_number() OVER (PARTITION BY subscription_id ORDER BY sequence_no) = 1
""")


def lifecycle_links(con, checked: str, activations: str) -> duckdb.DuckDBPyRelation:
    """Step 4: each item with its subscription's activation and ``lifecycle_reason``.

    ``lifecycle_reason`` is the static reason, else DUPLICATE_SUBSCRIPTION (a NEW_SERVICE that
    is not the activation), SUBSCRIPTION_NOT_FOUND (a CHANGE / DISCONNECT before any
    activation), ACCOUNT_MISMATCH (ordered by another account than the service's).
    """
    return con.sql(f"""
SELECT c.*, a.activation_no, a.account_id AS service_account_id, a.bundle_id AS service_bundle_id,
    coalesce(c.static_reason, CASE
        WHEN c.order_type = 'NEW_SERVICE' AND c.sequence_no <> a.activation_no THEN 'DUPLICATE_SUBSCRIPTION'
        WHEN c.order_type <> 'NEW_SERVICE' AND (a.activation_no IS NULL OR c.sequence_no < a.activation_no)
            THEN 'SUBSCRIPTION_NOT_FOUND'
        WHEN c.order_type <> 'NEW_SERVICE' AND c.account_id <> a.account_id THEN 'ACCOUNT_MISMATCH'
    END) AS lifecycle_reason
FROM {checked} c LEFT JOIN {activations} a ON a.subscription_id = c.subscription_id
""")


def disconnects(con, linked: str) -> duckdb.DuckDBPyRelation:
    """Step 5: per subscription, its first DISCONNECT without a lifecycle reason: the service's end."""
    return con.sql(f"""
SELECT subscription_id, min(sequence_no) AS disconnect_no, arg_min(effective_date, sequence_no) AS end_date,
       arg_min(order_id, sequence_no) AS ended_order_id
FROM {linked}
WHERE lifecycle_reason IS NULL AND order_type = 'DISCONNECT'
GROUP BY subscription_id
""")


def classified_items(con, linked: str, disconnects: str) -> duckdb.DuckDBPyRelation:
    """Step 6: ``reason``, the item's first failing reason: the lifecycle reason, else
    SUBSCRIPTION_ENDED for a CHANGE / DISCONNECT after the service's disconnect. NULL = applied."""
    return con.sql(f"""
SELECT l.*,
    coalesce(l.lifecycle_reason, CASE WHEN l.order_type <> 'NEW_SERVICE' AND l.sequence_no > d.disconnect_no
                                      THEN 'SUBSCRIPTION_ENDED' END) AS reason
FROM {linked} l LEFT JOIN {disconnects} d ON d.subscription_id = l.subscription_id
""")


def applied_changes(con, classified: str) -> duckdb.DuckDBPyRelation:
    """Step 7: applied NEW_SERVICE and CHANGE items, with ``previous_plan_id``: the plan of the
    previous applied item of the subscription (NULL for the activation)."""
    return con.sql(f"""
SELECT *, lag(plan_id) OVER (PARTITION BY subscription_id ORDER BY sequence_no) AS previous_plan_id
FROM {classified}
WHERE reason IS NULL AND order_type IN ('NEW_SERVICE', 'CHANGE')
""")


def _recurring_per_year(plan_id: str) -> str:
    """A year of the plan's RECURRING charges in force on the item's effective date (NULL if none)."""
    return f"""(SELECT sum(r.per_year) FROM recurring_charges r WHERE r.plan_id = a.{plan_id}
            AND r.effective_from <= CAST(a.effective_date AS TIMESTAMP)
            AND r.effective_to > CAST(a.effective_date AS TIMESTAMP))"""


def priced_changes(con, applied: str, plan_charges: str) -> duckdb.DuckDBPyRelation:
    """Step 8: ``new_recurring_per_year`` (the item's plan) and ``previous_recurring_per_year`` (the
    plan it replaces): a year of their recurring charges in force on the effective date, each unit
    price times the periods of its billing interval in a year (12 monthly, 4 quarterly, 1 annual), so
    plans of different intervals compare."""
    return con.sql(f"""
WITH recurring_charges AS (
    SELECT plan_id, CAST(unit_price AS {MONEY}) * (12 // cycle_months(billing_interval)) AS per_year, effective_from,
           coalesce(effective_to, {OPEN_END_TIMESTAMP}) AS effective_to
    FROM {live(con, plan_charges)} WHERE charge_type = 'RECURRING'
)
SELECT a.*, {_recurring_per_year("plan_id")} AS new_recurring_per_year,
       {_recurring_per_year("previous_plan_id")} AS previous_recurring_per_year
FROM {applied} a
""")


def change_kinds(con, priced: str) -> duckdb.DuckDBPyRelation:
    """Step 9: ``change_kind``: ACTIVATE, or the new plan's recurring charges per year against the
    previous one's (a plan without any counts 0): higher UPGRADE, lower DOWNGRADE, equal CHANGE."""
    return con.sql(f"""
SELECT *, CASE
    WHEN order_type = 'NEW_SERVICE' THEN 'ACTIVATE'
    WHEN coalesce(new_recurring_per_year, 0) > coalesce(previous_recurring_per_year, 0) THEN 'UPGRADE'
    WHEN coalesce(new_recurring_per_year, 0) < coalesce(previous_recurring_per_year, 0) THEN 'DOWNGRADE'
    ELSE 'CHANGE'
END AS change_kind
FROM {priced}
""")


def timing(con, kinded: str, disconnects: str) -> duckdb.DuckDBPyRelation:
    """Step 10: ``takes_effect`` of every applied item and of the disconnect.

    A DOWNGRADE takes effect at the end of the account's billing period containing the effective
    date (``period_end_containing``), everything else on the effective date. The version carries
    the activation's account and bundle and the item's product (a CHANGE may move a service to
    another product, Mobile S to Mobile L).
    """
    return con.sql(f"""
SELECT subscription_id, sequence_no, order_id, plan_id, quantity, change_kind,
       service_account_id AS account_id, product_id, service_bundle_id AS bundle_id,
       CASE WHEN change_kind = 'DOWNGRADE' THEN period_end_containing(effective_date, bill_cycle_day, billing_cycle)
            ELSE effective_date END AS takes_effect
FROM {kinded}
UNION ALL
SELECT subscription_id, disconnect_no, ended_order_id, NULL, NULL, 'DISCONNECT', NULL, NULL, NULL, end_date
FROM {disconnects}
""")


def effective_items(con, timed: str) -> duckdb.DuckDBPyRelation:
    """Step 11: the items not superseded: an item is superseded when a later item (sequence
    order) takes effect no later than it (a zero-length version, a pending downgrade overtaken)."""
    return con.sql(f"""
SELECT * FROM {timed}
QUALIFY takes_effect < coalesce(
    min(takes_effect) OVER (PARTITION BY subscription_id ORDER BY sequence_no
                            ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), {OPEN_END_DATE})
""")


def versions(con, effective: str) -> duckdb.DuckDBPyRelation:
    """Step 12: rows of ``core.subscription_versions``: each surviving item but the disconnect is
    a version ``[takes_effect, next survivor's takes_effect)`` (open end 9999-12-31)."""
    return con.sql(f"""
WITH bounded AS (
    SELECT *, coalesce(lead(takes_effect) OVER (PARTITION BY subscription_id ORDER BY sequence_no),
                       {OPEN_END_DATE}) AS valid_to
    FROM {effective}
)
SELECT CAST(subscription_id AS BIGINT) AS subscription_id, CAST(account_id AS BIGINT) AS account_id,
       CAST(product_id AS BIGINT) AS product_id, CAST(plan_id AS BIGINT) AS plan_id,
       CAST(bundle_id AS BIGINT) AS bundle_id, CAST(quantity AS INTEGER) AS quantity,
       CAST(takes_effect AS DATE) AS valid_from, CAST(valid_to AS DATE) AS valid_to,
       CAST(order_id AS BIGINT) AS order_id, CAST(change_kind AS VARCHAR) AS change_kind
FROM bounded WHERE change_kind <> 'DISCONNECT'
""")


def service_rows(con, activations: str, disconnects: str) -> duckdb.DuckDBPyRelation:
    """Rows of ``core.subscriptions``: one per activation, ended by its disconnect if any.

    From the order events, not the versions: a service activated and disconnected on the same
    day (no version) is still listed. ``status`` is ENDED once a disconnect was ordered, even
    one dated in the future (as of the data).
    """
    return con.sql(f"""
SELECT CAST(a.subscription_id AS BIGINT) AS subscription_id, CAST(a.account_id AS BIGINT) AS account_id,
       CAST(a.product_id AS BIGINT) AS product_id, CAST(a.bundle_id AS BIGINT) AS bundle_id,
       a.effective_date AS start_date,
       CAST(coalesce(d.end_date, {OPEN_END_DATE}) AS DATE) AS end_date,
       CASE WHEN d.end_date IS NULL THEN 'ACTIVE' ELSE 'ENDED' END AS status,
       CAST(a.order_id AS BIGINT) AS created_order_id,
       CAST(d.ended_order_id AS BIGINT) AS ended_order_id
FROM {activations} a LEFT JOIN {disconnects} d ON d.subscription_id = a.subscription_id
""")


def exception_rows(con, classified: str) -> duckdb.DuckDBPyRelation:
    """Rows of ``core.order_exceptions``: every item with a reason (see ``REASONS``)."""
    return con.sql(f"""
SELECT CAST(order_id AS BIGINT) AS order_id, CAST(order_item_id AS BIGINT) AS order_item_id,
       CAST(subscription_id AS BIGINT) AS subscription_id, CAST(order_type AS VARCHAR) AS order_type,
       CAST(effective_date AS DATE) AS effective_date, CAST(reason AS VARCHAR) AS reason
FROM {classified} WHERE reason IS NOT NULL
""")
