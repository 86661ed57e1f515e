"""Marts: the analysts' tables (warehouse/tables/marts.py), recomputed whole after the stages they read.

Not partitioned: a mart spans every month (MRR movements compare each month with the one before, the roll-forward
chains months), so it is rebuilt whole from the ledger, receivables and revenue tables in one transaction.
"""

import dagster as dg

from pipelines.assets.policy import WAREHOUSE_STEP, table_key
from pipelines.marts import CHECKS, MART_ROWS, mart_problems, mart_writes
from pipelines.resources import Warehouse
from warehouse.tables import TABLES
from warehouse.writer import write

INPUTS = [table_key(t) for t in (
    "ledger.documents", "ledger.document_lines", "ledger.voids", "ledger.finalized_months", "ledger.payment_events",
    "billing.document_status", "billing.account_balances", "billing.ar_aging",
    "revenue.recognized", "revenue.schedule", "revenue.performance_obligations", "revenue.closed_months",
    "revenue.deferred_rollforward", "revenue.waterfall", "revenue.trial_balance",
    "core.customers", "core.billing_accounts", "core.subscriptions", "core.products")]
MARTS = [table_key(t) for t in MART_ROWS]


def _spec(key: dg.AssetKey) -> dg.AssetSpec:
    """The mart's asset: its description is the first sentence of the table's."""
    return dg.AssetSpec(key, deps=INPUTS, description=TABLES[".".join(key.path)].description.split(". ")[0] + ".")


@dg.multi_asset(
    name="marts",
    specs=[_spec(key) for key in MARTS],
    check_specs=[dg.AssetCheckSpec(name, asset=table_key(check.table), description=check.description)
                 for name, check in CHECKS.items()],
    **WAREHOUSE_STEP,
)
def marts(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Recompute every mart from the ledger, receivables and revenue tables (one transaction); check their invariants."""
    with warehouse.connection() as con:
        rows = write(con, mart_writes(con))
        problems = mart_problems(con)
    context.log.info("marts: " + ", ".join(f"{t} {n}" for t, n in rows.items()))
    for key in MARTS:
        yield dg.MaterializeResult(asset_key=key, metadata={"dagster/row_count": rows[".".join(key.path)]})
    for name, bad in problems.items():
        yield dg.AssetCheckResult(check_name=name, asset_key=table_key(CHECKS[name].table), passed=not bad,
                                  metadata={"problems": len(bad), "first": str(bad[:5])})


defs = dg.Definitions(assets=[marts])
