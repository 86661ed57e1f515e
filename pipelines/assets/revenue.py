"""Revenue (ASC 606 / IFRS 15, docs/revenue.md): the derived revenue tables of the open months, and closing a month.

Not partitioned, deliberately. The derived tables are recomputed whole on every run, from the ledger (issued
documents, voids, payment applications), the catalog and the closed months' posted rows: an open month's
revenue depends on every document issued since (a credit note, a void, late usage booked as a correction), so no
run recomputes "one month", and a billing_month partition would claim that re-running February leaves March's
rows alone when it does not. Closed months are immutable by construction (posted tables, appended once by
close_month, their hash checked on every run), which is what per-month partitions would otherwise protect.
The bill_cycle job includes the revenue step (an unpartitioned asset runs once in a partitioned run); the
revenue job runs it alone (after finalize and apply_payments, in the UI or a shell); the close_month job posts
a month then runs it so that the month shows CLOSED.
"""

from datetime import date

import dagster as dg

from pipelines.assets.policy import WAREHOUSE_STEP, table_key
from pipelines.assets.reporting import ROW_COUNT, row_count
from pipelines.partitions import month_key, month_of_key
from pipelines.resources import Warehouse
from pipelines.revenue import CHECKS, DERIVED_TABLES, CloseRefused, close_month, refresh, revenue_problems

INPUTS = [table_key(t) for t in (
    "ledger.documents", "ledger.document_lines", "ledger.voids", "ledger.payment_applications", "ledger.finalized_months",
    "core.products", "core.orders", "core.order_items", "core.subscriptions", "core.plan_charges", "core.bundles",
    "core.standalone_selling_prices", "core.usage_events",
    # the estimates rate and settle the bill runs still to come (pipelines/revenue/accrual.py): their other inputs
    "billing.rated_usage", "core.billing_accounts", "core.customers", "core.subscription_versions", "core.price_plans",
    "core.bundle_members", "core.tax_rates", "core.coupons", "core.coupon_products", "core.coupon_redemptions")]
RECOGNIZED, JOURNAL, CLOSED = (table_key(t) for t in ("revenue.recognized", "revenue.journal_lines", "revenue.closed_months"))
RECONCILED = [table_key(t) for t in ("billing.document_status", "billing.account_balances")]  # the AR and credit checks read them
# close_month also reads the derived tables, which it recomputes first: not declared as deps (no cycle in the graph).

OBLIGATIONS, ALLOCATIONS, SCHEDULE, OPEN_JOURNAL, CONTRACT_BALANCES, ROLLFORWARD, WATERFALL, TRIAL_BALANCE = (
    table_key(t) for t in DERIVED_TABLES)
DERIVED_SPECS = [  # each table's deps: what its rows are computed from (the write order is close.DERIVED_TABLES)
    dg.AssetSpec(ALLOCATIONS, deps=INPUTS,
                 description="Transaction price allocated by relative standalone selling price (bundles, committed contracts)."),
    dg.AssetSpec(OBLIGATIONS, deps=[*INPUTS, ALLOCATIONS, JOURNAL, CLOSED],
                 description="Performance obligations: every line of an issued or voided document, committed contracts ended early, "
                             "and the lines the bill runs still to come will invoice for what is rendered (estimates: usage of a "
                             "period in progress, service days, one-time items delivered)."),
    dg.AssetSpec(SCHEDULE, deps=[OBLIGATIONS, RECOGNIZED],
                 description="Recognition schedule, obligation x month: scheduled, posted by closed months, open and the month it is booked in."),
    dg.AssetSpec(OPEN_JOURNAL, deps=[OBLIGATIONS, SCHEDULE, JOURNAL],
                 description="The double-entry journal of the open accounting months, as it stands (posted when the month closes)."),
    dg.AssetSpec(CONTRACT_BALANCES, deps=[OBLIGATIONS, SCHEDULE, RECOGNIZED],
                 description="Contract liabilities, unbilled receivables and contract assets per contract at each month end."),
    dg.AssetSpec(ROLLFORWARD, deps=[OPEN_JOURNAL, CONTRACT_BALANCES],
                 description="Deferred revenue roll-forward per month and currency: opening + billings - recognized - corrections = closing."),
    dg.AssetSpec(WATERFALL, deps=[OBLIGATIONS, SCHEDULE, RECOGNIZED],
                 description="Revenue waterfall: what each billing month's obligations recognize in each month."),
    dg.AssetSpec(TRIAL_BALANCE, deps=[OPEN_JOURNAL, JOURNAL, *RECONCILED],
                 description="Trial balance per accounting month and currency over the posted and the open journal, with the month's status."),
]


def _check_results(problems: dict[str, list[str]]):
    for name, bad in problems.items():
        yield dg.AssetCheckResult(check_name=name, asset_key=table_key(CHECKS[name].table), passed=not bad,
                                  metadata={"problems": len(bad), "first": str(bad[:5])})


@dg.multi_asset(
    name="revenue_tables",  # the op; the job running it alone is revenue
    specs=DERIVED_SPECS,
    check_specs=[dg.AssetCheckSpec(name, asset=table_key(check.table), blocking=True, description=check.description)
                 for name, check in CHECKS.items()],
    **WAREHOUSE_STEP,
)
def revenue(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Recompute the derived revenue tables for the open accounting months (closed months shown as posted); run every revenue check."""
    with warehouse.connection() as con:
        done = refresh(con, context.run_id)
        problems = revenue_problems(con)
        closed = [month_key(m) for (m,) in con.execute("SELECT accounting_month FROM revenue.closed_months ORDER BY 1").fetchall()]
    first_open = done["first_open_month"]
    context.log.info(f"revenue: first open month {first_open or 'none'}, {len(closed)} closed months")
    for spec in DERIVED_SPECS:  # in their dependency order, as Dagster wants them yielded
        rows = done["rows"][".".join(spec.key.path)]
        yield dg.MaterializeResult(asset_key=spec.key, metadata={
            ROW_COUNT: rows, "rows": rows, "first_open_month": month_key(first_open) if first_open else "none",
            "closed_months": str(closed)})
    yield from _check_results(problems)


class CloseMonthConfig(dg.Config):
    """Which accounting month to close."""

    month: str
    """The accounting month, YYYY-MM: the first open month (the one after the last closed), its billing month finalized."""


@dg.multi_asset(
    name="revenue_close",  # the op (its config: the month); the job is close_month
    specs=[
        dg.AssetSpec(RECOGNIZED, deps=INPUTS,
                     description="Posted revenue: the schedule's amounts booked in each closed month, corrections of earlier months flagged."),
        dg.AssetSpec(JOURNAL, deps=[RECOGNIZED], description="Posted journal lines of each closed month (appended, never changed)."),
        dg.AssetSpec(CLOSED, deps=[RECOGNIZED, JOURNAL],
                     description="Closed accounting months: counts, totals per currency and the content hash of what they posted."),
    ],
    check_specs=[dg.AssetCheckSpec("closed_months_unchanged", asset=CLOSED, blocking=True,
                                   description=CHECKS["closed_months_unchanged"].description)],
    **WAREHOUSE_STEP,
)
def close(context: dg.AssetExecutionContext, config: CloseMonthConfig, warehouse: Warehouse):
    """Close one accounting month: recompute the revenue tables, then post its revenue and journal (appended, one transaction); a refusal fails the run."""
    month = accounting_month(config.month)
    with warehouse.connection() as con:
        try:
            summary = close_month(con, month, context.run_id)
        except CloseRefused as refused:
            raise dg.Failure(description=f"close_month refused: {refused}", allow_retries=False) from refused
        changed = CHECKS["closed_months_unchanged"].problems(con)
        rows = {key: row_count(con, ".".join(key.path)) for key in (RECOGNIZED, JOURNAL, CLOSED)}
    context.log.info(f"closed {month:%Y-%m}: {summary['recognized_rows']} revenue rows, {summary['journal_lines']} journal lines")
    posted = {"accounting_month": month_key(month)}
    yield dg.MaterializeResult(asset_key=RECOGNIZED, metadata={**rows[RECOGNIZED], **posted, "rows": summary["recognized_rows"]})
    yield dg.MaterializeResult(asset_key=JOURNAL, metadata={**rows[JOURNAL], **posted, "rows": summary["journal_lines"]})
    yield dg.MaterializeResult(asset_key=CLOSED, metadata={**rows[CLOSED], **posted, "totals": summary["totals"],
                                                           "content_hash": summary["content_hash"]})
    yield dg.AssetCheckResult(check_name="closed_months_unchanged", asset_key=CLOSED, passed=not changed,
                              metadata={"problems": len(changed), "first": str(changed[:5])})


def accounting_month(text: str) -> date:
    """The first day of accounting month ``text`` (YYYY-MM); a run config that is not one fails the run, saying so."""
    try:
        return month_of_key(text)
    except ValueError:
        raise dg.Failure(description=f"close_month: month must be YYYY-MM (an accounting month), not {text!r}", allow_retries=False) from None


defs = dg.Definitions(assets=[revenue, close])
