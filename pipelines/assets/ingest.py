"""Ingestion: landing zone → raw change logs, quarantine, file ledger."""

from pathlib import Path

import dagster as dg

from pipelines.assets.policy import WAREHOUSE_STEP, table_key
from pipelines.ingest.engine import accounting_violations, ingest_landing_zone
from pipelines.assets.reporting import row_count
from pipelines.resources import LandingZone, Warehouse
from sources.entities import ENTITIES

RAW_KEYS = {name: table_key(f"raw.{name}") for name in ENTITIES}
LEDGER = table_key("audit.ingested_files")
QUARANTINE = table_key("audit.quarantine")
READS_WITH_POLARS = {"polars"}  # the extract readers (sources/readers.py) parse landed files into Polars frames


@dg.multi_asset(
    name="ingest_landing_zone",
    specs=[
        dg.AssetSpec(key, description=f"Append-only change log of {name}: {ENTITIES[name].description}", kinds=READS_WITH_POLARS)
        for name, key in RAW_KEYS.items()
    ]
    + [
        dg.AssetSpec(LEDGER, description="Every landed file seen, with its checksum and record accounting.", kinds=READS_WITH_POLARS),
        dg.AssetSpec(QUARANTINE, description="Rejected records with file, position, reason and raw payload.", kinds=READS_WITH_POLARS),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "records_accounted_for", asset=LEDGER, blocking=True,
            description=("For every LOADED delivery: records loaded + quarantined = records read; each raw table and the "
                         "quarantine hold exactly the ledger's totals, and this run's deliveries exactly their own records."),
        )
    ],
    **WAREHOUSE_STEP,
)
def ingest_landing_zone_asset(context: dg.AssetExecutionContext, warehouse: Warehouse, landing: LandingZone):
    """Load every new delivery of a landed CDC extract once (by name and checksum) into raw.*; reject bad records to audit.quarantine."""
    with warehouse.connection() as con:
        summary = ingest_landing_zone(con, Path(landing.path))
        violations = accounting_violations(con, since=summary.first_delivery_at)
        totals = dict(
            con.execute(
                "SELECT status, count(*) FROM audit.ingested_files GROUP BY status"
            ).fetchall()
        )
        rows = {key: row_count(con, ".".join(key.path)) for key in [*RAW_KEYS.values(), LEDGER, QUARANTINE]}
    for name, key in RAW_KEYS.items():
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                **rows[key],
                "records_read": summary.records_read.get(name, 0),
                "records_loaded": summary.records_loaded.get(name, 0),
                "records_quarantined": summary.records_quarantined.get(name, 0),
            },
        )
    yield dg.MaterializeResult(
        asset_key=LEDGER,
        metadata={
            **rows[LEDGER],
            "files_seen": summary.files_seen, "files_loaded": summary.files_loaded,
            "files_already_ingested": summary.files_skipped, "files_hashed": summary.files_hashed,
            "files_duplicate": summary.files_duplicate, "files_failed": summary.files_failed, "ledger_by_status": totals,
        },
    )
    yield dg.MaterializeResult(
        asset_key=QUARANTINE, metadata={**rows[QUARANTINE], "records_quarantined": sum(summary.records_quarantined.values())}
    )
    yield dg.AssetCheckResult(
        check_name="records_accounted_for", asset_key=LEDGER, passed=not violations,
        metadata={"files_not_adding_up": len(violations), "first": str(violations[:5])},
    )


defs = dg.Definitions(assets=[ingest_landing_zone_asset])
