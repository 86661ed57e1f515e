"""Rating assets: usage → rated charges and unrated usage, per billing month."""


import dagster as dg

from pipelines.assets.state import STATE_KEYS, USAGE_EVENTS, VERSIONS
from pipelines.ingest.engine import accounting_violations
from pipelines.partitions import billing_month, months_in_run
from pipelines.rating.engine import rate_usage, unrated_share
from pipelines.resources import Warehouse
from warehouse.writer import write

RATED = dg.AssetKey(["billing", "rated_usage"])
UNRATED = dg.AssetKey(["billing", "unrated_usage"])


class RatingConfig(dg.Config):
    max_unrated_share: float = 0.05  # float ok: a share of events, not money
    """Invoicing is blocked when more than this share of a month's usage events cannot be rated."""


@dg.multi_asset(
    name="rating",
    specs=[
        dg.AssetSpec(RATED, group_name="bill_cycle", deps=[USAGE_EVENTS, VERSIONS, STATE_KEYS["plan_charges"], STATE_KEYS["billing_accounts"]],
                     description="Usage priced under the plan in force at event time: one line per subscription, charge version and service segment."),
        dg.AssetSpec(UNRATED, group_name="bill_cycle", deps=[USAGE_EVENTS, VERSIONS],
                     description="Usage events of the billing period that could not be rated, with the reason."),
    ],
    partitions_def=billing_month,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[dg.AssetCheckSpec("unrated_share_within_limit", asset=UNRATED, blocking=True,
                                   description="Blocks invoicing when the share of unrated usage events exceeds the configured limit."),
                 dg.AssetCheckSpec("landing_zone_accounted_for", asset=RATED, blocking=True,
                                   description="Blocks invoicing from stale state: every landed record is in raw or in quarantine "
                                               "(the ingest ledger's records_accounted_for holds).")],
    pool="duckdb_writer",
)
def rating(context: dg.AssetExecutionContext, config: RatingConfig, warehouse: Warehouse):
    """Rate the usage of every billing period ending in the run's months; unratable events go to billing.unrated_usage."""
    shares, rated_n, unrated_n, amount, catalog_errors = {}, 0, 0, {}, {}
    with warehouse.connection() as con:
        unaccounted = accounting_violations(con)
        for month in months_in_run(context):
            result = rate_usage(con, month)
            catalog_errors.update({str(price_id): error for price_id, error in result.catalog_errors.items()})
            counts = write(con, [("billing.rated_usage", result.rated, "billing_month = ?"),
                                 ("billing.unrated_usage", result.unrated, "billing_month = ?")], [month])
            rated_n += counts["billing.rated_usage"]
            unrated_n += counts["billing.unrated_usage"]
            shares[month.isoformat()] = float(unrated_share(con, month))  # float ok: a share
            for cur, total in con.execute(
                "SELECT currency, sum(amount) FROM billing.rated_usage WHERE billing_month = ? GROUP BY 1 ORDER BY 1", [month]
            ).fetchall():
                amount[f"{month:%Y-%m} {cur}"] = str(total)
    worst = max(shares.values(), default=0.0)
    if catalog_errors:
        context.log.warning(f"misconfigured usage price versions (their events are unrated): {catalog_errors}")
    yield dg.MaterializeResult(asset_key=RATED, metadata={"rated_lines": rated_n, "rated_amount": amount,
                                                          "misconfigured_price_versions": catalog_errors})
    yield dg.MaterializeResult(asset_key=UNRATED, metadata={"unrated_events": unrated_n, "unrated_share_by_month": shares})
    yield dg.AssetCheckResult(
        check_name="landing_zone_accounted_for", asset_key=RATED, passed=not unaccounted,
        metadata={"files_not_adding_up": len(unaccounted), "first": str(unaccounted[:5])},
    )
    yield dg.AssetCheckResult(
        check_name="unrated_share_within_limit", asset_key=UNRATED, passed=worst <= config.max_unrated_share,
        metadata={"worst_share": worst, "limit": config.max_unrated_share},
    )
