"""Invoicing: the bill cycle's draft invoices and their lines, per billing month."""

from datetime import date

import dagster as dg
import duckdb

from pipelines.assets.policy import BILL_CYCLE_STEP, month_before, table_key
from pipelines.invoicing.engine import build_invoice_lines, build_invoices
from pipelines.partitions import each_month_then_check
from pipelines.resources import Warehouse
from warehouse.writer import staged, write

LINES = table_key("billing.invoice_lines")
INVOICES = table_key("billing.invoices")
INPUTS = ["billing.rated_usage", "billing.unrated_usage", "core.subscription_versions", "core.billing_accounts", "core.customers",
          "core.plan_charges", "core.products", "core.price_plans", "core.bundles", "core.orders", "core.order_items", "core.tax_rates"]


def totals_mismatches(con, first, last) -> list[str]:
    """Invoices whose header totals differ from the sum of their lines (or lines without a header)."""
    rows = con.execute(
        """
        WITH sums AS (
            SELECT invoice_id, count(*) AS line_count, sum(amount) AS subtotal, sum(discount_amount) AS discount_total,
                   sum(net_amount) AS net_total, sum(tax_amount) AS tax_total, sum(total_amount) AS total
            FROM billing.invoice_lines WHERE billing_month BETWEEN $1 AND $2 GROUP BY invoice_id
        ), heads AS (SELECT * FROM billing.invoices WHERE billing_month BETWEEN $1 AND $2)
        SELECT coalesce(h.invoice_id, s.invoice_id)
        FROM heads h FULL JOIN sums s USING (invoice_id)
        WHERE h.invoice_id IS NULL OR s.invoice_id IS NULL
           OR h.line_count <> s.line_count OR h.subtotal <> s.subtotal OR h.discount_total <> s.discount_total
           OR h.net_total <> s.net_total OR h.tax_total <> s.tax_total OR h.total <> s.total
           OR h.total <> h.net_total + h.tax_total OR h.net_total <> h.subtotal + h.discount_total
        ORDER BY 1
        """,
        [first, last],
    ).fetchall()
    return [r[0] for r in rows]


@dg.multi_asset(
    name="invoicing",
    specs=[
        dg.AssetSpec(LINES, deps=[table_key(t) for t in INPUTS],
                     description="Draft invoice lines: recurring fees (prorated, in advance), credits, one-time items, usage, discounts and tax per line."),
        # Month M's lines credit and settle what months before M billed: the step (lines and headers) of month M
        # depends on month M-1's, so re-running a month makes the next one stale.
        dg.AssetSpec(INVOICES, deps=[LINES, month_before(INVOICES)],
                     description="Draft invoices per billing account and period, with totals equal to the sum of their lines."),
    ],
    check_specs=[dg.AssetCheckSpec("totals_equal_sum_of_lines", asset=INVOICES, blocking=True,
                                   description="Every invoice's subtotal, discount, net, tax and total equal the sums of its lines.")],
    **BILL_CYCLE_STEP,
)
def invoicing(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Build the draft invoices of every bill cycle ending in the run's months (a re-run replaces the month's drafts)."""
    bad = each_month_then_check(context, warehouse, invoice_month, totals_mismatches)
    yield dg.MaterializeResult(asset_key=LINES)
    yield dg.MaterializeResult(asset_key=INVOICES)
    yield dg.AssetCheckResult(check_name="totals_equal_sum_of_lines", asset_key=INVOICES, passed=not bad,
                              metadata={"invoices_not_adding_up": len(bad), "first": str(bad[:5])})


def invoice_month(context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection, month: date) -> None:
    """Build and write one month's lines and headers (they replace the month together); report them on its partitions."""
    with staged(con, build_invoice_lines(con, month), "_month_lines") as lines:  # computed once, written twice
        counts = write(con, [
            ("billing.invoice_lines", con.table(lines), "billing_month = ?"),
            ("billing.invoices", build_invoices(con, month, lines), "billing_month = ?"),
        ], [month])
    totals = con.execute(
        "SELECT currency, sum(total) FROM billing.invoices WHERE billing_month = ? GROUP BY 1 ORDER BY 1", [month]
    ).fetchall()
    partition = month.isoformat()
    context.add_asset_metadata({"lines": counts["billing.invoice_lines"]}, asset_key=LINES, partition_key=partition)
    context.add_asset_metadata({"invoices": counts["billing.invoices"], "total": {cur: str(t) for cur, t in totals}},
                               asset_key=INVOICES, partition_key=partition)


defs = dg.Definitions(assets=[invoicing])
