"""State: raw change logs → current state + SCD2 history; services from confirmed orders."""

import dagster as dg

from pipelines.assets.policy import WAREHOUSE_STEP, table_key
from pipelines.assets.reporting import ROW_COUNT
from pipelines.resources import Warehouse
from pipelines.state import cdc
from pipelines.state.subscriptions import build_services
from sources.entities import ENTITIES
from warehouse.writer import write

CDC_ENTITIES = [e for e in ENTITIES.values() if e.name != "usage_records"]
STATE_KEYS = {e.name: table_key(f"core.{e.name}") for e in CDC_ENTITIES}
USAGE_EVENTS = table_key("core.usage_events")
VERSIONS = table_key("core.subscription_versions")
SUBSCRIPTIONS = table_key("core.subscriptions")
ORDER_EXCEPTIONS = table_key("core.order_exceptions")


@dg.multi_asset(
    name="core_state",
    specs=[
        dg.AssetSpec(
            key, deps=[table_key(f"raw.{name}")],
            description=f"Current state of {name} (core.{name}) and its SCD2 history (core.{name}_history).",
        )
        for name, key in STATE_KEYS.items()
    ]
    + [dg.AssetSpec(USAGE_EVENTS, deps=[table_key("raw.usage_records")],
                    description="Usage events as of their latest change, deduplicated and ordered by sequence.")],
    **WAREHOUSE_STEP,
)
def core_state(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Rebuild current state and SCD2 history of every entity from its deduplicated change log, ordered by source position."""
    with warehouse.connection() as con:
        for entity in CDC_ENTITIES:
            hist = f"core.{entity.name}_history"
            write(con, [(hist, cdc.history(con, entity, f"raw.{entity.name}"), "true")])
            n = write(con, [(f"core.{entity.name}", cdc.current(con, entity, hist), "true")])[f"core.{entity.name}"]
            versions, deleted = con.execute(
                f"SELECT (SELECT count(*) FROM {hist}), count(*) FILTER (WHERE is_deleted) FROM core.{entity.name}"
            ).fetchone()
            anomalies = dict(cdc.anomalies(con, entity, f"raw.{entity.name}").aggregate("kind, count(*) AS n", "kind").fetchall())
            yield dg.MaterializeResult(
                asset_key=STATE_KEYS[entity.name],
                metadata={ROW_COUNT: n, "rows": n, "history_versions": versions, "deleted_keys": deleted, "cdc_anomalies": anomalies},
            )
        n = write(con, [("core.usage_events", cdc.usage_events(con, "raw.usage_records"), "true")])["core.usage_events"]
        yield dg.MaterializeResult(asset_key=USAGE_EVENTS, metadata={ROW_COUNT: n, "events": n})


@dg.multi_asset(
    name="services",
    specs=[
        dg.AssetSpec(VERSIONS, deps=[STATE_KEYS[n] for n in ("orders", "order_items", "products", "price_plans", "plan_charges", "billing_accounts")],
                     description="Plan in force per subscription over time, from confirmed orders (upgrades now, downgrades at period end)."),
        dg.AssetSpec(SUBSCRIPTIONS, deps=[VERSIONS], description="One row per service: start, end, status."),
        dg.AssetSpec(ORDER_EXCEPTIONS, deps=[STATE_KEYS[n] for n in ("orders", "order_items", "price_plans", "billing_accounts")],
                     description="Confirmed order items that could not be applied to a service, with the reason."),
    ],
    **WAREHOUSE_STEP,
)
def services(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Derive subscriptions and their plan versions from CONFIRMED orders; report order items that cannot apply."""
    with warehouse.connection() as con:
        built = build_services(con)  # the chain is computed once, for the three tables
        counts = write(con, [("core.subscription_versions", built.versions, "true"),
                             ("core.subscriptions", built.subscriptions, "true"),
                             ("core.order_exceptions", built.exceptions, "true")])
    yield dg.MaterializeResult(asset_key=VERSIONS, metadata={ROW_COUNT: counts["core.subscription_versions"], "versions": counts["core.subscription_versions"]})
    yield dg.MaterializeResult(asset_key=SUBSCRIPTIONS, metadata={ROW_COUNT: counts["core.subscriptions"], "subscriptions": counts["core.subscriptions"]})
    yield dg.MaterializeResult(asset_key=ORDER_EXCEPTIONS, metadata={ROW_COUNT: counts["core.order_exceptions"], "exceptions": counts["core.order_exceptions"]})


defs = dg.Definitions(assets=[core_state, services])
