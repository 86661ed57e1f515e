"""Rating: the month's inputs checked, then usage → rated charges and unrated usage, per billing month."""

from datetime import date, datetime, timezone

import dagster as dg
import duckdb

from domain.periods import add_months
from pipelines.assets.policy import BILL_CYCLE_STEP, table_key
from pipelines.ingest.engine import accounting_violations
from pipelines.assets.reporting import markdown_table, money_figures, row_count
from pipelines.partitions import billing_month, first_billing_month, month_check_result, month_key, months_in_run, run_months
from pipelines.rating.engine import rate_usage, unrated_share
from pipelines.rating.late import late_usage, rating_run
from pipelines.resources import Warehouse
from sources.entities import ENTITIES
from warehouse.writer import write

INPUTS_READY = dg.AssetKey(["bill_cycle_inputs"])
RATED = table_key("billing.rated_usage")
UNRATED = table_key("billing.unrated_usage")
RUNS = table_key("billing.rating_runs")
USAGE_EVENTS, VERSIONS = table_key("core.usage_events"), table_key("core.subscription_versions")
LANDING_LEDGER = table_key("audit.ingested_files")

USAGE_EXTRACT = "usage_records"
STATE_EXTRACTS = ("customers", "billing_accounts", "orders", "order_items")
"""The state extracts a month cannot be billed without, delivered every month (docs/billing.md "Before a bill
cycle"): who is billed (customers, billing accounts) and what they have (orders and their items)."""


def has_usage_feed(con: duckdb.DuckDBPyConnection) -> bool:
    """A usage extract was ever loaded: the operator bills usage (else it bills subscriptions only)."""
    return con.execute("SELECT EXISTS (SELECT 1 FROM audit.ingested_files WHERE entity = ? AND status = 'LOADED')",
                       [USAGE_EXTRACT]).fetchone()[0]


def monthly_extracts(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The extracts delivered every month: the state extracts, and usage when the operator bills it."""
    return [USAGE_EXTRACT] * has_usage_feed(con) + list(STATE_EXTRACTS)


def extracts_not_delivered(con: duckdb.DuckDBPyConnection, month: date) -> list[str]:
    """The monthly extracts (``system/entity``) with no LOADED delivery ingested after ``month`` ended."""
    names = monthly_extracts(con)
    rows = con.execute("""
        SELECT e.path FROM (SELECT unnest($names) AS name, unnest($paths) AS path) e
        WHERE NOT EXISTS (SELECT 1 FROM audit.ingested_files f
                          WHERE f.entity = e.name AND f.status = 'LOADED' AND f.ingested_at >= $month_end)
        ORDER BY e.path""", {"names": names, "paths": [f"{ENTITIES[n].system}/{n}" for n in names],
                            "month_end": add_months(month, 1)}).fetchall()
    return [r[0] for r in rows]


def usage_events_of(con: duckdb.DuckDBPyConnection, month: date) -> int:
    """Usage events (core.usage_events) that happened in calendar month ``month``."""
    return con.execute("SELECT count(*) FROM core.usage_events WHERE event_time >= $1 AND event_time < $2",
                       [month, add_months(month, 1)]).fetchone()[0]


def is_billed(con: duckdb.DuckDBPyConnection, month: date) -> bool:
    """A bill run settled ``month`` (billing.settlement_inputs has its accounts) or it is finalized."""
    return con.execute("""
        SELECT EXISTS (SELECT 1 FROM billing.settlement_inputs WHERE billing_month = $1)
            OR EXISTS (SELECT 1 FROM ledger.finalized_months WHERE billing_month = $1)""", [month]).fetchone()[0]


def missing_for_month(con: duckdb.DuckDBPyConnection, month: date, billed_before: bool) -> list[str]:
    """What month ``month`` lacks to be billed, in words (an empty list when nothing): its usage events (when the
    operator bills usage), the monthly extracts delivered after it ended, and, unless it is the first billing month
    or ``billed_before`` (an earlier month of the same run bills it first), the previous month's bill run."""
    missing, key = [], month_key(month)
    if has_usage_feed(con) and not usage_events_of(con, month):
        missing.append(f"no usage events of {key} have landed (usage/{USAGE_EXTRACT})")
    late = extracts_not_delivered(con, month)
    if late:
        missing.append(f"no delivery of {', '.join(late)} ingested after {key} ended ({add_months(month, 1)})")
    previous = add_months(month, -1)
    if month > first_billing_month() and not billed_before and not is_billed(con, previous):
        missing.append(f"the previous month {month_key(previous)} is not billed (run its bill cycle first)")
    return missing


@dg.asset(
    key=INPUTS_READY, deps=[USAGE_EVENTS, LANDING_LEDGER],
    # It also reads the previous month's bill run (billing.settlement_inputs, ledger.finalized_months), downstream of
    # rating: not declared, since Dagster's asset graph allows no cycle.
    check_specs=[dg.AssetCheckSpec(
        "month_ready_to_bill", asset=INPUTS_READY, blocking=True, partitions_def=billing_month,
        description="Refuses a bill cycle, before anything is written, for a month whose usage events, or whose "
                    "monthly extracts (usage, customers, billing accounts, orders, order items) delivered after its "
                    "end, have not landed, or whose previous month is not billed; the result says what is missing.")],
    description="What the bill cycle of a month finds before it starts: the month's usage events, the latest "
                "delivery of each monthly extract, and whether the previous month is billed (nothing is written).",
    **BILL_CYCLE_STEP,
)
def bill_cycle_inputs(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Check that each month of the run can be billed: its usage and state extracts have landed and the month before
    is billed (or is billed earlier in the same run); a month that cannot is refused by the blocking check."""
    months = months_in_run(context)
    with warehouse.connection() as con:
        problems = {m: missing_for_month(con, m, billed_before=i > 0) for i, m in enumerate(months)}
        for month in months:
            context.add_asset_metadata(month_inputs(con, month), asset_key=INPUTS_READY, partition_key=month_key(month))
    for month, found in problems.items():
        if found:
            context.log.error(f"bill cycle {month_key(month)} refused: {'; '.join(found)}")
    yield dg.MaterializeResult(asset_key=INPUTS_READY)
    yield month_check_result(context, INPUTS_READY, "month_ready_to_bill", problems)


def month_inputs(con: duckdb.DuckDBPyConnection, month: date) -> dict:
    """What the readiness check of ``month`` saw: its usage events and each monthly extract's latest delivery."""
    latest = con.execute("""
        SELECT entity, max(ingested_at) FROM audit.ingested_files
        WHERE status = 'LOADED' AND entity IN (SELECT unnest($1)) GROUP BY 1 ORDER BY 1""",
                         [monthly_extracts(con)]).fetchall()
    return {"usage_events_of_month": usage_events_of(con, month),
            "latest_deliveries": dg.MetadataValue.md(markdown_table(("extract", "latest delivery ingested (UTC)"), latest)),
            "previous_month_billed": is_billed(con, add_months(month, -1))}


class RatingConfig(dg.Config):
    max_unrated_share: float = 0.05  # float ok: a share of events, not money
    """Invoicing is blocked when more than this share of a month's usage events cannot be rated."""
    lookback_months: int = 12
    """How far back late usage re-rates: rated months in [first month of the run - lookback, first month)."""


@dg.multi_asset(
    name="rating",
    specs=[
        dg.AssetSpec(RATED, deps=[INPUTS_READY, USAGE_EVENTS, VERSIONS, table_key("core.plan_charges"),
                                  table_key("core.billing_accounts")],
                     description="Usage priced under the plan in force at event time: one line per subscription, charge version and service segment."),
        dg.AssetSpec(UNRATED, deps=[USAGE_EVENTS, VERSIONS],
                     description="Usage events of the billing period that could not be rated, with the reason."),
        dg.AssetSpec(RUNS, deps=[LANDING_LEDGER],
                     description="When each billing month was last rated, the latest ingestion it saw, and the bill run "
                                 "that re-rated it for late usage."),
    ],
    check_specs=[dg.AssetCheckSpec("unrated_share_within_limit", asset=UNRATED, blocking=True, partitions_def=billing_month,
                                   description="Blocks invoicing when the share of unrated usage events exceeds the configured limit."),
                 dg.AssetCheckSpec("landing_zone_accounted_for", asset=RATED, blocking=True, partitions_def=billing_month,
                                   description="Blocks invoicing from stale state: every landed record is in raw or in quarantine "
                                               "(the ingest ledger's records_accounted_for holds).")],
    **BILL_CYCLE_STEP,
)
def rating(context: dg.AssetExecutionContext, config: RatingConfig, warehouse: Warehouse):
    """Re-rate the earlier months (within the lookback) that late usage landed in, then rate the usage
    of every billing period ending in the run's months; unratable events go to billing.unrated_usage."""
    shares, months = {}, months_in_run(context)
    with warehouse.connection() as con:
        unaccounted = accounting_violations(con)
        late = late_usage(con, months[0], config.lookback_months)
        for month, events in late:
            rerate_month(context, con, month, events, months[0])
        for month in months:
            shares[month] = rate_month(context, con, month)
    context.add_asset_metadata({"rerated_months": {f"{m:%Y-%m}": n for m, n in late},
                                "late_events": sum(n for _, n in late)}, asset_key=RATED, partition_key=month_key(months[0]))
    worst = max(shares.values(), default=0.0)
    yield dg.MaterializeResult(asset_key=RATED)
    yield dg.MaterializeResult(asset_key=UNRATED)
    yield dg.MaterializeResult(asset_key=RUNS)
    yield dg.AssetCheckResult(
        check_name="landing_zone_accounted_for", asset_key=RATED, passed=not unaccounted,
        metadata={"files_not_adding_up": len(unaccounted), "first": str(unaccounted[:5]), "months": run_months(months)},
    )
    yield dg.AssetCheckResult(
        check_name="unrated_share_within_limit", asset_key=UNRATED, passed=worst <= config.max_unrated_share,
        metadata={"worst_share": worst, "limit": config.max_unrated_share,
                  "unrated_share_by_month": {month_key(m): share for m, share in shares.items()}, "months": run_months(months)},
    )


def rate_and_write(context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection, month: date,
                   rerated_by: date | None = None) -> tuple[dict[str, int], dict[str, str]]:
    """Rate one month and write it over its partitions with its billing.rating_runs row, in one
    transaction; return the rows written per table and the misconfigured price versions."""
    result = rate_usage(con, month)
    catalog_errors = {str(price_id): error for price_id, error in result.catalog_errors.items()}
    if catalog_errors:
        context.log.warning(f"{month:%Y-%m}: misconfigured usage price versions (their events are unrated): {catalog_errors}")
    run = rating_run(con, result, datetime.now(timezone.utc).replace(tzinfo=None), rerated_by)
    counts = write(con, [("billing.rated_usage", result.rated, "billing_month = ?"),
                         ("billing.unrated_usage", result.unrated, "billing_month = ?"),
                         ("billing.rating_runs", run, "billing_month = ?")], [month])
    return counts, catalog_errors


def rerate_month(context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection, month: date, late_events: int,
                 run_month: date) -> None:
    """Re-rate an earlier month for its late usage; record it as a materialization of that month's partitions."""
    context.log.info(f"{month:%Y-%m}: re-rated for {late_events} late usage events (bill run {run_month:%Y-%m})")
    counts, _ = rate_and_write(context, con, month, rerated_by=run_month)
    rerated = {"rerated_by": month_key(run_month), "late_events": late_events}
    for key, figures in month_figures(con, month, counts).items():
        context.log_event(dg.AssetMaterialization(key, partition=month_key(month), metadata=figures | rerated))


def rate_month(context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection, month: date) -> float:
    """Rate and write one month of the run; report its figures on its own partitions; return its unrated share."""
    counts, catalog_errors = rate_and_write(context, con, month)
    share = float(unrated_share(con, month))  # float ok: a share
    figures = month_figures(con, month, counts)
    figures[RATED]["misconfigured_price_versions"] = catalog_errors
    figures[UNRATED]["unrated_share"] = share
    for key, metadata in figures.items():
        context.add_asset_metadata(metadata, asset_key=key, partition_key=month_key(month))
    return share


def month_figures(con: duckdb.DuckDBPyConnection, month: date, counts: dict[str, int]) -> dict[dg.AssetKey, dict]:
    """What finance reads of a rated month, per asset: rows, the rated amount per currency (exact text, and in
    minor units to plot), the unrated events by reason and their quantity per metric."""
    amounts = dict(con.execute(
        "SELECT currency, sum(amount) FROM billing.rated_usage WHERE billing_month = ? GROUP BY 1 ORDER BY 1", [month]
    ).fetchall())
    reasons = con.execute("SELECT reason, count(*) FROM billing.unrated_usage WHERE billing_month = ? GROUP BY 1 ORDER BY 2 DESC, 1",
                          [month]).fetchall()
    quantities = con.execute("SELECT metric, count(*), sum(quantity) FROM billing.unrated_usage WHERE billing_month = ? "
                             "GROUP BY 1 ORDER BY 1", [month]).fetchall()
    return {
        RATED: {**row_count(con, "billing.rated_usage", month), "rated_lines": counts["billing.rated_usage"],
                "rated_amount": {cur: str(t) for cur, t in amounts.items()}, **money_figures({"rated": amounts})},
        UNRATED: {**row_count(con, "billing.unrated_usage", month), "unrated_events": counts["billing.unrated_usage"],
                  "unrated_by_reason": dg.MetadataValue.md(markdown_table(("reason", "events"), reasons)),
                  "unrated_quantity": dg.MetadataValue.md(markdown_table(("metric", "events", "quantity"), quantities))},
        RUNS: row_count(con, "billing.rating_runs", month),
    }


defs = dg.Definitions(assets=[bill_cycle_inputs, rating])
