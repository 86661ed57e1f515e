"""Revenue assets: recognition per invoice line and deferred revenue, per accounting month."""


import dagster as dg

from pipelines.invoicing.assets import LINES
from pipelines.partitions import billing_month, months_in_run
from pipelines.resources import Warehouse
from pipelines.revenue.engine import deferred_balances, recognize
from warehouse.writer import staged, write

RECOGNITION = dg.AssetKey(["revenue", "recognition"])
BALANCES = dg.AssetKey(["revenue", "deferred_balances"])


def balance_violations(con, first, last) -> list[tuple]:
    """Months and currencies where billed-to-date differs from recognized + deferred, or from the invoice lines."""
    return con.execute(
        """
        WITH billed AS (
            SELECT b.billing_month, b.currency, sum(l.net_amount) AS billed
            FROM revenue.deferred_balances b
            JOIN billing.invoice_lines l ON l.currency = b.currency AND l.billing_month <= b.billing_month
            WHERE b.billing_month BETWEEN $1 AND $2
            GROUP BY ALL
        )
        SELECT b.billing_month, b.currency, b.billed_to_date, b.recognized_to_date, b.deferred_revenue, l.billed
        FROM revenue.deferred_balances b LEFT JOIN billed l USING (billing_month, currency)
        WHERE b.billing_month BETWEEN $1 AND $2
          AND (b.billed_to_date <> b.recognized_to_date + b.deferred_revenue OR b.billed_to_date <> coalesce(l.billed, 0))
        ORDER BY 1, 2
        """,
        [first, last],
    ).fetchall()


@dg.multi_asset(
    name="revenue",
    specs=[
        dg.AssetSpec(RECOGNITION, group_name="bill_cycle", deps=[LINES],
                     description="Revenue recognized per invoice line in each accounting month (ratably by day, cumulative rounding)."),
        dg.AssetSpec(BALANCES, group_name="bill_cycle", deps=[RECOGNITION],
                     description="Billed, recognized and deferred revenue to date per currency at month end."),
    ],
    partitions_def=billing_month,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[dg.AssetCheckSpec("billed_equals_recognized_plus_deferred", asset=BALANCES, blocking=True,
                                   description="Per month and currency: billed to date = recognized to date + deferred, and billed = the invoice lines.")],
    pool="duckdb_writer",
)
def revenue(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Recognize revenue of every invoice line for the run's accounting months and roll the deferred balance forward."""
    months = months_in_run(context)
    summary = {}
    with warehouse.connection() as con:
        for month in months:
            with staged(con, recognize(con, month), "_recognition") as recognition:
                write(con, [
                    ("revenue.recognition", con.table(recognition), "billing_month = ?"),
                    ("revenue.deferred_balances", deferred_balances(con, month, recognition=recognition), "billing_month = ?"),
                ], [month])
            for cur, rec, deferred in con.execute(
                "SELECT currency, recognized_in_month, deferred_revenue FROM revenue.deferred_balances WHERE billing_month = ? ORDER BY 1",
                [month],
            ).fetchall():
                summary[f"{month:%Y-%m} {cur}"] = f"recognized {rec}, deferred {deferred}"
        bad = balance_violations(con, months[0], months[-1])
    yield dg.MaterializeResult(asset_key=RECOGNITION, metadata={"by_month": summary})
    yield dg.MaterializeResult(asset_key=BALANCES, metadata={"by_month": summary})
    yield dg.AssetCheckResult(check_name="billed_equals_recognized_plus_deferred", asset_key=BALANCES, passed=not bad,
                              metadata={"violations": len(bad), "first": str(bad[:5])})
