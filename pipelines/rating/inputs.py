"""Typed rating inputs from plain Python rows: for library users' examples, tests and the benchmark.

``create_inputs(con, schema, accounts=[...], subscriptions=[...], charges=[...], usage=[...])``
creates ``<schema>.billing_accounts``, ``<schema>.subscription_versions``,
``<schema>.plan_charges`` and ``<schema>.usage_events`` exactly as the warehouse contract
declares ``core.billing_accounts``, ``core.subscription_versions``, ``core.plan_charges`` and
``core.usage_events`` (``warehouse.fixtures.create_table_with_rows``: exact decimals), the
columns a row leaves out filled from :data:`DEFAULTS`, and returns the keyword arguments of
``rate_usage``. Not used by the pipeline itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from domain.periods import OPEN_END
from warehouse.fixtures import create_table_with_rows

# Column defaults per contract table: a row gives only what its example is about.
DEFAULTS = {
    "core.billing_accounts": {"customer_id": 1, "account_number": "A", "billing_cycle": "MONTHLY", "bill_cycle_day": 1,
                              "payment_terms_days": 30, "currency": "USD", "status": "ACTIVE", "is_deleted": False},
    "core.subscription_versions": {"product_id": 1, "quantity": 1, "valid_to": OPEN_END, "order_id": 1,
                                   "change_kind": "ACTIVATE"},
    "core.plan_charges": {"charge_type": "USAGE", "aggregation": "SUM", "billing_timing": "IN_ARREARS", "prorate": True,
                          "included_quantity": 0, "effective_from": "2000-01-01 00:00:00", "is_deleted": False},
    "core.usage_events": {"unit": "EVENT", "is_deleted": False},
}


def create_inputs(
    con: duckdb.DuckDBPyConnection,
    schema: str = "core",
    *,
    accounts: Sequence[dict] = (),
    subscriptions: Sequence[dict] = (),
    charges: Sequence[dict] = (),
    usage: Sequence[dict] = (),
) -> dict[str, str]:
    """Create the four rating inputs in ``schema`` (events without an ``event_id`` are numbered
    ``e000001``, ``e000002``, ... in order); returns the keyword arguments for ``rate_usage``."""
    usage = [{"event_id": f"e{i + 1:06d}", **u} for i, u in enumerate(usage)]
    rows = {"core.billing_accounts": accounts, "core.subscription_versions": subscriptions,
            "core.plan_charges": charges, "core.usage_events": usage}
    names = {t: create_table_with_rows(con, t, list(r), DEFAULTS[t], schema=schema) for t, r in rows.items()}
    return {"usage": names["core.usage_events"], "subscriptions": names["core.subscription_versions"],
            "accounts": names["core.billing_accounts"], "charges": names["core.plan_charges"]}
