"""Invoicing assets: the bill cycle's draft invoices and their lines, per billing month."""


import dagster as dg

from pipelines.assets.state import STATE_KEYS, VERSIONS
from pipelines.invoicing.engine import build_invoice_lines, build_invoices
from pipelines.partitions import billing_month, months_in_run
from pipelines.rating.assets import RATED, UNRATED
from pipelines.resources import Warehouse
from warehouse.writer import staged, write

LINES = dg.AssetKey(["billing", "invoice_lines"])
INVOICES = dg.AssetKey(["billing", "invoices"])

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
        dg.AssetSpec(LINES, group_name="bill_cycle",
                     deps=[RATED, UNRATED, VERSIONS] + [STATE_KEYS[n] for n in ("billing_accounts", "customers", "plan_charges", "bundles", "orders", "order_items", "tax_rates")],
                     description="Draft invoice lines: recurring fees (prorated, in advance), credits, one-time items, usage, discounts and tax per line."),
        dg.AssetSpec(INVOICES, group_name="bill_cycle", deps=[LINES],
                     description="Draft invoices per billing account and period, with totals equal to the sum of their lines."),
    ],
    partitions_def=billing_month,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[dg.AssetCheckSpec("totals_equal_sum_of_lines", asset=INVOICES, blocking=True,
                                   description="Every invoice's subtotal, discount, net, tax and total equal the sums of its lines.")],
    pool="duckdb_writer",
)
def invoicing(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Build the draft invoices of every bill cycle ending in the run's months (a re-run replaces the month's drafts)."""
    months = months_in_run(context)
    by_month = {}
    with warehouse.connection() as con:
        for month in months:
            # Lines are computed once, then lines and headers replace the month together.
            with staged(con, build_invoice_lines(con, month), "_month_lines") as lines:
                counts = write(con, [
                    ("billing.invoice_lines", con.table(lines), "billing_month = ?"),
                    ("billing.invoices", build_invoices(con, month, lines), "billing_month = ?"),
                ], [month])
            by_month[f"{month:%Y-%m}"] = {
                "invoices": counts["billing.invoices"], "lines": counts["billing.invoice_lines"],
                **{f"total {cur}": str(t) for cur, t in con.execute(
                    "SELECT currency, sum(total) FROM billing.invoices WHERE billing_month = ? GROUP BY 1 ORDER BY 1", [month]).fetchall()},
            }
        bad = totals_mismatches(con, months[0], months[-1])
    yield dg.MaterializeResult(asset_key=LINES, metadata={"lines": sum(m["lines"] for m in by_month.values())})
    yield dg.MaterializeResult(asset_key=INVOICES, metadata={"by_month": by_month})
    yield dg.AssetCheckResult(check_name="totals_equal_sum_of_lines", asset_key=INVOICES, passed=not bad,
                              metadata={"invoices_not_adding_up": len(bad), "first": str(bad[:5])})
