"""Rating: usage → rated charges and unrated usage, per billing month."""

from datetime import date, datetime, timezone

import dagster as dg
import duckdb

from pipelines.assets.policy import BILL_CYCLE_STEP, table_key
from pipelines.ingest.engine import accounting_violations
from pipelines.partitions import months_in_run
from pipelines.rating.engine import rate_usage, unrated_share
from pipelines.rating.late import late_usage, rating_run
from pipelines.resources import Warehouse
from warehouse.writer import write

RATED = table_key("billing.rated_usage")
UNRATED = table_key("billing.unrated_usage")
RUNS = table_key("billing.rating_runs")
USAGE_EVENTS, VERSIONS = table_key("core.usage_events"), table_key("core.subscription_versions")


class RatingConfig(dg.Config):
    max_unrated_share: float = 0.05  # float ok: a share of events, not money
    """Invoicing is blocked when more than this share of a month's usage events cannot be rated."""
    lookback_months: int = 12
    """How far back late usage re-rates: rated months in [first month of the run - lookback, first month)."""


@dg.multi_asset(
    name="rating",
    specs=[
        dg.AssetSpec(RATED, deps=[USAGE_EVENTS, VERSIONS, table_key("core.plan_charges"), table_key("core.billing_accounts")],
                     description="Usage priced under the plan in force at event time: one line per subscription, charge version and service segment."),
        dg.AssetSpec(UNRATED, deps=[USAGE_EVENTS, VERSIONS],
                     description="Usage events of the billing period that could not be rated, with the reason."),
        dg.AssetSpec(RUNS, deps=[table_key("audit.ingested_files")],
                     description="When each billing month was last rated, the latest ingestion it saw, and the bill run "
                                 "that re-rated it for late usage."),
    ],
    check_specs=[dg.AssetCheckSpec("unrated_share_within_limit", asset=UNRATED, blocking=True,
                                   description="Blocks invoicing when the share of unrated usage events exceeds the configured limit."),
                 dg.AssetCheckSpec("landing_zone_accounted_for", asset=RATED, blocking=True,
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
                                "late_events": sum(n for _, n in late)}, asset_key=RATED, partition_key=months[0].isoformat())
    worst = max(shares.values(), default=0.0)
    yield dg.MaterializeResult(asset_key=RATED)
    yield dg.MaterializeResult(asset_key=UNRATED)
    yield dg.MaterializeResult(asset_key=RUNS)
    yield dg.AssetCheckResult(
        check_name="landing_zone_accounted_for", asset_key=RATED, passed=not unaccounted,
        metadata={"files_not_adding_up": len(unaccounted), "first": str(unaccounted[:5])},
    )
    yield dg.AssetCheckResult(
        check_name="unrated_share_within_limit", asset_key=UNRATED, passed=worst <= config.max_unrated_share,
        metadata={"worst_share": worst, "limit": config.max_unrated_share,
                  "unrated_share_by_month": {f"{m:%Y-%m}": share for m, share in shares.items()}},
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
    rerated = {"rerated_by": f"{run_month:%Y-%m}", "late_events": late_events}
    for key, figures in ((RATED, {"rated_lines": counts["billing.rated_usage"]}),
                         (UNRATED, {"unrated_events": counts["billing.unrated_usage"]}), (RUNS, {})):
        context.log_event(dg.AssetMaterialization(key, partition=month.isoformat(), metadata=figures | rerated))


def rate_month(context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection, month: date) -> float:
    """Rate and write one month of the run; report its figures on its own partitions; return its unrated share."""
    counts, catalog_errors = rate_and_write(context, con, month)
    share = float(unrated_share(con, month))  # float ok: a share
    amounts = con.execute(
        "SELECT currency, sum(amount) FROM billing.rated_usage WHERE billing_month = ? GROUP BY 1 ORDER BY 1", [month]
    ).fetchall()
    partition = month.isoformat()
    context.add_asset_metadata({"rated_lines": counts["billing.rated_usage"], "rated_amount": {cur: str(t) for cur, t in amounts},
                                "misconfigured_price_versions": catalog_errors},
                               asset_key=RATED, partition_key=partition)
    context.add_asset_metadata({"unrated_events": counts["billing.unrated_usage"], "unrated_share": share},
                               asset_key=UNRATED, partition_key=partition)
    return share


defs = dg.Definitions(assets=[rating])
