"""Invoicing: each bill run settles what is owed against what was issued, into draft documents per billing month."""

from datetime import date

import dagster as dg
import duckdb

from pipelines.assets.policy import BILL_CYCLE_STEP, month_before, table_key
from pipelines.invoicing.engine import CREDIT_NOTE_CUSTOMER_TYPES, LOOKBACK_MONTHS
from pipelines.invoicing.lines import CORRECTION_TYPES
from pipelines.invoicing.run import bill_month
from pipelines.assets.reporting import document_figures, markdown_table, row_count, top_documents
from pipelines.partitions import billing_month, month_key, months_in_run, run_months
from pipelines.resources import Warehouse

LINES = table_key("billing.invoice_lines")
INVOICES = table_key("billing.invoices")
REVIEW = table_key("billing.settlement_review")
EXCEPTIONS = table_key("billing.billing_exceptions")
SETTLEMENT_INPUTS = table_key("billing.settlement_inputs")
INPUTS = ["billing.rated_usage", "billing.unrated_usage", "core.subscription_versions", "core.billing_accounts",
          "core.customers", "core.plan_charges", "core.products", "core.price_plans", "core.bundles",
          "core.bundle_members", "core.orders", "core.order_items", "core.tax_rates", "core.coupons",
          "core.coupon_products", "core.coupon_redemptions"]
# core.bundles is the asset that also writes core.bundles_history (read for discounts in force).
# The run also reads what was issued (ledger.document_lines, voids, finalized_months), which the finalize job
# writes from these drafts: not declared as deps, since Dagster's asset graph allows no cycle.


class InvoicingConfig(dg.Config):
    lookback_months: int = LOOKBACK_MONTHS
    """How far back a bill run settles: differences of older service months are reported, not billed."""
    credit_note_customer_types: list[str] = list(CREDIT_NOTE_CUSTOMER_TYPES)
    """Customer types whose credits of issued documents go out as a credit note (others: on the invoice)."""


def totals_mismatches(con, first, last) -> list[str]:
    """Invoices whose header totals differ from the sum of their lines (or lines without a header)."""
    rows = con.execute(
        """
        WITH sums AS (
            SELECT invoice_id, count(*) AS line_count, sum(amount) AS subtotal, sum(discount_amount) AS discount_total,
                   sum(coupon_amount) AS coupon_total, sum(net_amount) AS net_total, sum(tax_amount) AS tax_total,
                   sum(total_amount) AS total
            FROM billing.invoice_lines WHERE billing_month BETWEEN $1 AND $2 GROUP BY invoice_id
        ), heads AS (SELECT * FROM billing.invoices WHERE billing_month BETWEEN $1 AND $2)
        SELECT coalesce(h.invoice_id, s.invoice_id)
        FROM heads h FULL JOIN sums s USING (invoice_id)
        WHERE h.invoice_id IS NULL OR s.invoice_id IS NULL
           OR h.line_count <> s.line_count OR h.subtotal <> s.subtotal OR h.discount_total <> s.discount_total
           OR h.coupon_total <> s.coupon_total
           OR h.net_total <> s.net_total OR h.tax_total <> s.tax_total OR h.total <> s.total
           OR h.total <> h.net_total + h.tax_total
           OR h.net_total <> h.subtotal + h.discount_total + h.coupon_total
           OR (h.document_type = 'INVOICE' AND h.total < 0)
        ORDER BY 1
        """,
        [first, last],
    ).fetchall()
    return [r[0] for r in rows]


def lines_without_tax_rate(con, first, last) -> list[str]:
    """Draft lines of the months without a tax rate (NO_TAX_RATE exceptions)."""
    return [r[0] for r in con.execute(
        "SELECT line_id FROM billing.invoice_lines WHERE billing_month BETWEEN $1 AND $2 AND tax_rate IS NULL ORDER BY 1",
        [first, last]).fetchall()]


# Every recurring line counted once: the ledger (not voided) and the drafts of months not finalized.
_RECURRING_COVERAGE = """
    SELECT account_id, subscription_id, price_id, quantity, service_start, service_end,
           CASE WHEN line_type = 'RECURRING' THEN 1 ELSE -1 END AS coverage
    FROM (SELECT account_id, subscription_id, price_id, quantity, service_start, service_end, line_type
          FROM ledger.document_lines WHERE document_id NOT IN (SELECT document_id FROM ledger.voids)
          UNION ALL
          SELECT account_id, subscription_id, price_id, quantity, service_start, service_end, line_type
          FROM billing.invoice_lines WHERE billing_month NOT IN (SELECT billing_month FROM ledger.finalized_months))
    WHERE line_type IN ('RECURRING', 'RECURRING_CREDIT')"""


def service_days_billed_twice(con, first, last) -> list[str]:
    """Recurring keys (subscription/price/quantity) of accounts drafted in the months whose net coverage of
    some service day, across drafts and the ledger, is not 0 or 1."""
    rows = con.execute(f"""
        WITH coverage AS ({_RECURRING_COVERAGE}),
        edges AS (SELECT account_id, subscription_id, price_id, quantity, service_start AS day, coverage FROM coverage
                  UNION ALL
                  SELECT account_id, subscription_id, price_id, quantity, service_end, -coverage FROM coverage),
        per_day AS (SELECT account_id, subscription_id, price_id, quantity, day, sum(coverage) AS change
                    FROM edges GROUP BY account_id, subscription_id, price_id, quantity, day),
        running AS (
            SELECT *, sum(change) OVER (PARTITION BY account_id, subscription_id, price_id, quantity
                                        ORDER BY day ROWS UNBOUNDED PRECEDING) AS net
            FROM per_day)
        SELECT DISTINCT CAST(subscription_id AS VARCHAR) || '/' || CAST(price_id AS VARCHAR) || ' x '
                        || CAST(quantity AS VARCHAR)
        FROM running
        WHERE (net < 0 OR net > 1)
          AND account_id IN (SELECT account_id FROM billing.invoice_lines WHERE billing_month BETWEEN $1 AND $2)
        ORDER BY 1""", [first, last]).fetchall()
    return [r[0] for r in rows]


def credits_beyond_credited(con, first, last) -> list[str]:
    """Issued or drafted lines whose credits (lines referencing them) exceed them in absolute amount."""
    rows = con.execute(f"""
        WITH all_lines AS (
            SELECT line_id, amount, line_type, reference_line_id FROM ledger.document_lines
            WHERE document_id NOT IN (SELECT document_id FROM ledger.voids)
            UNION ALL
            SELECT line_id, amount, line_type, reference_line_id FROM billing.invoice_lines
            WHERE billing_month NOT IN (SELECT billing_month FROM ledger.finalized_months))
        SELECT c.reference_line_id
        FROM all_lines c JOIN all_lines l ON l.line_id = c.reference_line_id
        WHERE c.line_type IN {CORRECTION_TYPES} AND c.amount < 0 AND l.amount > 0
          AND c.reference_line_id IN (SELECT reference_line_id FROM billing.invoice_lines
                                      WHERE billing_month BETWEEN $1 AND $2)
        GROUP BY c.reference_line_id, l.amount
        HAVING -sum(c.amount) > l.amount
        ORDER BY 1""", [first, last]).fetchall()
    return [r[0] for r in rows]


CHECKS = {  # check name -> (asset, what it finds wrong, description)
    "totals_equal_sum_of_lines": (INVOICES, totals_mismatches,
                                  "Every draft's subtotal, discount, coupon, net, tax and total equal the sums of its "
                                  "lines; no invoice has a negative total."),
    "every_line_has_a_tax_rate": (LINES, lines_without_tax_rate,
                                  "Every draft line has a tax rate for its jurisdiction on its tax point (a missing "
                                  "rate is a NO_TAX_RATE exception, never 0 tax)."),
    "each_service_day_billed_once": (LINES, service_days_billed_twice,
                                     "Net coverage of every recurring service day across drafts and the ledger is 0 or 1."),
    "credit_notes_within_credited": (LINES, credits_beyond_credited,
                                     "No issued or drafted line is credited for more than its amount."),
}


@dg.multi_asset(
    name="invoicing",
    specs=[
        dg.AssetSpec(LINES, deps=[table_key(t) for t in INPUTS],
                     description="Draft lines: what is owed up to the run's period minus what was issued (recurring "
                                 "fees per charge period, usage, one-time items), with adjustments and credits of "
                                 "earlier periods, discounts, coupons and tax per line."),
        dg.AssetSpec(REVIEW, deps=[LINES],
                     description="What the drafts would issue against what is issued, per account, category, reason "
                                 "and service month (differences beyond the lookback reported here)."),
        dg.AssetSpec(EXCEPTIONS, deps=[LINES],
                     description="Problems found by the bill run: lines without a tax rate (blocking finalization), "
                                 "differences beyond the lookback."),
        dg.AssetSpec(SETTLEMENT_INPUTS, deps=[LINES],
                     description="What the bill run settled per account: every period within the lookback "
                                 "(resettled) or, nothing having changed since its previous run, from its current "
                                 "period; and the fingerprint of its inputs the next run compares."),
        # Month M's lines settle what months before M drafted: the step of month M depends on month M-1's, so
        # re-running a month makes the next one stale.
        dg.AssetSpec(INVOICES, deps=[LINES, month_before(INVOICES)],
                     description="Draft invoices and credit notes per billing account and period, with totals equal "
                                 "to the sum of their lines."),
    ],
    check_specs=[dg.AssetCheckSpec(name, asset=asset, blocking=True, description=description, partitions_def=billing_month)
                 for name, (asset, _, description) in CHECKS.items()],
    **BILL_CYCLE_STEP,
)
def invoicing(context: dg.AssetExecutionContext, config: InvoicingConfig, warehouse: Warehouse):
    """Settle every bill cycle ending in the run's months into drafts (a re-run replaces a month's drafts; a
    finalized month's drafts are never rewritten)."""
    months = months_in_run(context)
    with warehouse.connection() as con:
        for month in months:
            invoice_month(context, con, month, config)
        found = {name: check(con, months[0], months[-1]) for name, (_, check, _) in CHECKS.items()}
    for key in (LINES, REVIEW, EXCEPTIONS, INVOICES, SETTLEMENT_INPUTS):
        yield dg.MaterializeResult(asset_key=key)
    for name, (asset, _, _) in CHECKS.items():
        bad = found[name]
        yield dg.AssetCheckResult(check_name=name, asset_key=asset, passed=not bad,
                                  metadata={"found": len(bad), "first": str(bad[:5]), "months": run_months(months)})


def invoice_month(context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection, month: date,
                  config: InvoicingConfig) -> None:
    """Settle one month (lines, headers, review and exceptions replace the month together) and report it on its
    partitions; a finalized month is left as it is."""
    counts = bill_month(con, month, lookback_months=config.lookback_months,
                        credit_note_customer_types=config.credit_note_customer_types)
    if counts is None:
        context.log.info(f"{month:%Y-%m} is finalized: its drafts are not rewritten; later differences go to the "
                         "next open month")
        for key in (LINES, REVIEW, EXCEPTIONS, INVOICES, SETTLEMENT_INPUTS):
            context.add_asset_metadata({"finalized": True}, asset_key=key, partition_key=month_key(month))
        return
    report_month(context, con, month, counts)


def report_month(context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection, month: date, counts: dict) -> None:
    """The month's figures on its partitions: documents and their money per currency, the largest invoices, lines
    and adjustments, review, exceptions by kind, accounts settled."""
    partition = month_key(month)
    docs = con.execute(
        "SELECT document_type, currency, count(*), sum(total) FROM billing.invoices WHERE billing_month = ? "
        "GROUP BY ALL ORDER BY ALL", [month]).fetchall()
    adjustments = con.execute(
        "SELECT currency, count(*), sum(net_amount) FROM billing.invoice_lines "
        "WHERE billing_month = ? AND adjustment_reason IS NOT NULL GROUP BY 1 ORDER BY 1", [month]).fetchall()
    review = con.execute(
        "SELECT category || '/' || reason, sum(lines), sum(net_amount) FROM billing.settlement_review "
        "WHERE billing_month = ? GROUP BY 1 ORDER BY 1", [month]).fetchall()
    exceptions = dict(con.execute(
        "SELECT exception, count(*) FROM billing.billing_exceptions WHERE billing_month = ? GROUP BY 1 ORDER BY 1",
        [month]).fetchall())
    exceptions_md = markdown_table(("exception", "count"), list(exceptions.items()))
    context.add_asset_metadata({
        **row_count(con, "billing.invoice_lines", month),
        "lines": counts["billing.invoice_lines"],
        "adjustments": sum(n for _, n, _ in adjustments),
        "adjustments_net": {cur: str(net) for cur, _, net in adjustments},
    }, asset_key=LINES, partition_key=partition)
    context.add_asset_metadata({
        **row_count(con, "billing.invoices", month),
        "invoices": sum(n for t, _, n, _ in docs if t == "INVOICE"),
        "credit_notes": sum(n for t, _, n, _ in docs if t == "CREDIT_NOTE"),
        "total": {f"{t} {cur}": str(total) for t, cur, _, total in docs},
        **document_figures(con, "billing.invoices", month),
        "preview": dg.MetadataValue.md(f"**Top invoices of {partition} by total**\n\n"
                                       f"{top_documents(con, 'billing.invoices', 'invoice_id', month)}\n\n"
                                       f"**Exceptions of {partition}**\n\n{exceptions_md}"),
    }, asset_key=INVOICES, partition_key=partition)
    context.add_asset_metadata({**row_count(con, "billing.settlement_review", month),
                                "review": {k: f"{n} lines, net {net}" for k, n, net in review}},
                               asset_key=REVIEW, partition_key=partition)
    context.add_asset_metadata({**row_count(con, "billing.billing_exceptions", month), "exceptions": exceptions,
                                "blocking": exceptions.get("NO_TAX_RATE", 0),
                                **{f"exceptions {kind}": n for kind, n in exceptions.items()},
                                "by_kind": dg.MetadataValue.md(exceptions_md)},
                               asset_key=EXCEPTIONS, partition_key=partition)
    accounts, resettled = con.execute("SELECT count(*), count(*) FILTER (WHERE resettled) FROM billing.settlement_inputs "
                                      "WHERE billing_month = ?", [month]).fetchone()
    context.add_asset_metadata({**row_count(con, "billing.settlement_inputs", month), "accounts": accounts,
                                "resettled": resettled, "settled_from_current_period": accounts - resettled},
                               asset_key=SETTLEMENT_INPUTS, partition_key=partition)


defs = dg.Definitions(assets=[invoicing])
