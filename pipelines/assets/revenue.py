"""Revenue: recognition per invoice line and deferred revenue, per accounting month."""

from datetime import date

import dagster as dg
import duckdb

from pipelines.assets.policy import BILL_CYCLE_STEP, month_before, table_key
from pipelines.partitions import each_month_then_check
from pipelines.resources import Warehouse
from pipelines.revenue.engine import deferred_balances, recognize
from warehouse.writer import staged, write

RECOGNITION = table_key("revenue.recognition")
BALANCES = table_key("revenue.deferred_balances")
LINES = table_key("billing.invoice_lines")


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
        dg.AssetSpec(RECOGNITION, deps=[LINES],
                     description="Revenue recognized per invoice line in each accounting month (ratably by day, cumulative rounding)."),
        # Month M recognizes every line billed up to M and rolls month M-1's balances forward: the step of month M
        # depends on month M-1's, so re-running a month makes the next one stale.
        dg.AssetSpec(BALANCES, deps=[RECOGNITION, month_before(BALANCES)],
                     description="Billed, recognized and deferred revenue to date per currency at month end."),
    ],
    check_specs=[dg.AssetCheckSpec("billed_equals_recognized_plus_deferred", asset=BALANCES, blocking=True,
                                   description="Per month and currency: billed to date = recognized to date + deferred, and billed = the invoice lines.")],
    **BILL_CYCLE_STEP,
)
def revenue(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Recognize revenue of every invoice line for the run's accounting months and roll the deferred balance forward."""
    bad = each_month_then_check(context, warehouse, recognize_month, balance_violations)
    yield dg.MaterializeResult(asset_key=RECOGNITION)
    yield dg.MaterializeResult(asset_key=BALANCES)
    yield dg.AssetCheckResult(check_name="billed_equals_recognized_plus_deferred", asset_key=BALANCES, passed=not bad,
                              metadata={"violations": len(bad), "first": str(bad[:5])})


def recognize_month(context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection, month: date) -> None:
    """Recognize one month and roll its balances (they replace the month together); report them on its partitions."""
    with staged(con, recognize(con, month), "_recognition") as recognition:  # computed once, written and summed
        counts = write(con, [
            ("revenue.recognition", con.table(recognition), "billing_month = ?"),
            ("revenue.deferred_balances", deferred_balances(con, month, recognition=recognition), "billing_month = ?"),
        ], [month])
    by_currency = {cur: {"recognized_in_month": str(rec), "deferred_revenue": str(deferred)} for cur, rec, deferred in con.execute(
        "SELECT currency, recognized_in_month, deferred_revenue FROM revenue.deferred_balances WHERE billing_month = ? ORDER BY 1",
        [month],
    ).fetchall()}
    partition = month.isoformat()
    context.add_asset_metadata({"rows": counts["revenue.recognition"], "by_currency": by_currency},
                               asset_key=RECOGNITION, partition_key=partition)
    context.add_asset_metadata({"by_currency": by_currency}, asset_key=BALANCES, partition_key=partition)


defs = dg.Definitions(assets=[revenue])
