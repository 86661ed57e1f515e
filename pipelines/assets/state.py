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
STATE_APPLIED = table_key(cdc.STATE_APPLIED)


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
                    description="Usage events as of their latest change, deduplicated and ordered by sequence."),
       dg.AssetSpec(STATE_APPLIED, deps=[table_key(f"raw.{name}") for name in ENTITIES],
                    description="What core.* has applied of each raw change log: one row per entity per run that applied new rows.")],
    **WAREHOUSE_STEP,
)
def core_state(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Merge the change-log rows ingested since the last run into current state and SCD2 history, for the keys they touch."""
    applied = 0
    with warehouse.connection() as con:
        for entity in CDC_ENTITIES:
            hist, cur = f"core.{entity.name}_history", f"core.{entity.name}"
            with cdc.entity_batch(con, entity, f"raw.{entity.name}", cdc.applied_through(con, entity.name)) as batch:
                anomalies = {}
                if batch.replace is not None:
                    anomalies = dict(batch.anomalies.aggregate("kind, count(*) AS n", "kind").fetchall())
                    applied += _write(con, batch, [(hist, batch.history, batch.replace), (cur, batch.current, batch.replace)])
            n, versions, deleted = con.execute(
                f"SELECT count(*), (SELECT count(*) FROM {hist}), count(*) FILTER (WHERE is_deleted) FROM {cur}").fetchone()
            yield dg.MaterializeResult(
                asset_key=STATE_KEYS[entity.name],
                metadata={ROW_COUNT: n, "rows": n, "history_versions": versions, "deleted_keys": deleted,
                          "rows_applied": batch.rows_applied, "keys_touched": batch.keys_touched,
                          "cdc_anomalies_of_touched_keys": anomalies},
            )
        with cdc.usage_batch(con, cdc.applied_through(con, "usage_records")) as batch:
            if batch.replace is not None:
                applied += _write(con, batch, [("core.usage_events", batch.events, batch.replace)]
                                  + ([("core.usage_events", batch.appended, None)] if batch.appended is not None else []))
        n = con.execute("SELECT count(*) FROM core.usage_events").fetchone()[0]
        yield dg.MaterializeResult(asset_key=USAGE_EVENTS, metadata={
            ROW_COUNT: n, "events": n, "rows_applied": batch.rows_applied, "keys_touched": batch.keys_touched})
        ledger = con.execute(f"SELECT count(*) FROM {cdc.STATE_APPLIED}").fetchone()[0]
    yield dg.MaterializeResult(asset_key=STATE_APPLIED, metadata={ROW_COUNT: ledger, "entities_applied": applied})


def _write(con, batch: cdc.Batch, writes: list) -> int:
    """Write one entity's batch and its ledger row in ONE transaction; 1 if a ledger row was appended."""
    row = batch.ledger_row()
    write(con, writes + ([(cdc.STATE_APPLIED, row, None)] if row is not None else []))
    return int(row is not None)


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
