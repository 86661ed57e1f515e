"""The ledger: finalizing a billing month's drafts into numbered documents, and voiding a document (docs/billing.md "Finalization")."""

from datetime import date

import dagster as dg
import duckdb

from pipelines.assets.policy import BILL_CYCLE_STEP, WAREHOUSE_STEP, month_before, table_key
from pipelines.ledger import FinalizeRefused, VoidRefused, changed_documents, finalize, number_gaps, void
from pipelines.assets.reporting import ROW_COUNT, document_figures, row_count, top_documents
from pipelines.partitions import billing_month, each_month_then_check, month_key, months_in_run, run_months
from pipelines.resources import Warehouse

DOCUMENTS = table_key("ledger.documents")
DOCUMENT_LINES = table_key("ledger.document_lines")
NUMBERS = table_key("ledger.document_numbers")
FINALIZED = table_key("ledger.finalized_months")
VOIDS = table_key("ledger.voids")
DRAFTS = [table_key(t) for t in ("billing.invoices", "billing.invoice_lines", "billing.billing_exceptions")]


def ledger_problems(con: duckdb.DuckDBPyConnection, first: date, last: date) -> dict[str, list[str]]:
    """What the ledger checks find wrong over the whole ledger (the run's months are in it)."""
    return {"finalized_documents_unchanged": changed_documents(con), "document_numbers_gapless": number_gaps(con)}


@dg.multi_asset(
    name="ledger_documents",
    specs=[
        dg.AssetSpec(DOCUMENTS, deps=DRAFTS, description="Issued invoices and credit notes of the finalized month: gapless numbers per series and year, due dates, content hashes."),
        dg.AssetSpec(DOCUMENT_LINES, deps=[DOCUMENTS], description="Lines of the issued documents, exactly as drafted."),
        dg.AssetSpec(NUMBERS, deps=[DOCUMENTS], description="Document numbers assigned, per series and issuing year."),
        # Month M can only be finalized after month M-1: the step of month M depends on month M-1's.
        dg.AssetSpec(FINALIZED, deps=[DOCUMENTS, month_before(FINALIZED)], description="The finalized month: counts, number range, hash of what was issued."),
    ],
    check_specs=[
        dg.AssetCheckSpec("finalized_documents_unchanged", asset=DOCUMENTS, blocking=True, partitions_def=billing_month,
                          description="Every issued document and its lines still hash to the content hash stored at issue."),
        dg.AssetCheckSpec("document_numbers_gapless", asset=DOCUMENTS, blocking=True, partitions_def=billing_month,
                          description="Numbers run 1..n without gaps or repeats per series and year, each the one assigned to its document."),
    ],
    **BILL_CYCLE_STEP,
)
def ledger_documents(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Finalize the run's billing months in order: their drafts become numbered, hashed ledger documents (appended, never rewritten)."""
    problems = each_month_then_check(context, warehouse, finalize_month, ledger_problems)
    for key in (DOCUMENTS, DOCUMENT_LINES, NUMBERS, FINALIZED):
        yield dg.MaterializeResult(asset_key=key)
    for check, bad in problems.items():
        yield dg.AssetCheckResult(check_name=check, asset_key=DOCUMENTS, passed=not bad,
                                  metadata={"problems": len(bad), "first": str(bad[:5]),
                                            "months": run_months(months_in_run(context))})


def finalize_month(context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection, month: date) -> None:
    """Finalize one month (one transaction) and report what it issued on its partitions; a refusal fails the run."""
    try:
        summary = finalize(con, month, context.run_id)
    except FinalizeRefused as refused:
        raise dg.Failure(description=f"finalize refused: {refused}", allow_retries=False) from refused
    context.log.info(f"finalized {month:%Y-%m}: {summary['invoices']} invoices, {summary['credit_notes']} credit notes "
                     f"({summary['first_number']} to {summary['last_number']})")
    partition = month_key(month)
    numbers = {"first_number": summary["first_number"] or "none", "last_number": summary["last_number"] or "none",
               "number_ranges": summary["number_ranges"]}
    issued = {"invoices": summary["invoices"], "credit_notes": summary["credit_notes"]}
    context.add_asset_metadata({**row_count(con, "ledger.documents", month), **issued, **numbers, "totals": summary["totals"],
                                **document_figures(con, "ledger.documents", month),
                                "preview": dg.MetadataValue.md(f"**Top invoices issued for {partition} by total**\n\n"
                                                               f"{top_documents(con, 'ledger.documents', 'document_number', month)}")},
                               asset_key=DOCUMENTS, partition_key=partition)
    context.add_asset_metadata({**row_count(con, "ledger.document_lines", month), "lines": summary["lines"]},
                               asset_key=DOCUMENT_LINES, partition_key=partition)
    context.add_asset_metadata({ROW_COUNT: summary["invoices"] + summary["credit_notes"], **numbers},
                               asset_key=NUMBERS, partition_key=partition)
    context.add_asset_metadata({**row_count(con, "ledger.finalized_months", month), **issued},
                               asset_key=FINALIZED, partition_key=partition)


class VoidConfig(dg.Config):
    """Which document to void and why (voided_on: YYYY-MM-DD, default today UTC)."""

    document_number: str
    reason: str
    voided_on: str | None = None


@dg.asset(key=VOIDS, deps=[DOCUMENTS], description="Voided documents: each keeps its number; the void is appended with its reason.",
          **WAREHOUSE_STEP)  # op ledger__voids: its config is the void_document job's
def voids(context: dg.AssetExecutionContext, config: VoidConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Void one issued document (by number, with a reason): append it to ledger.voids; a refusal fails the run."""
    voided_on = date.fromisoformat(config.voided_on) if config.voided_on else None
    with warehouse.connection() as con:
        try:
            summary = void(con, config.document_number, config.reason, voided_on, context.run_id)
        except VoidRefused as refused:
            raise dg.Failure(description=f"void refused: {refused}", allow_retries=False) from refused
        voids_written = row_count(con, "ledger.voids")
    context.log.info(f"voided {summary['document_number']} ({summary['total']}): {summary['reason']}")
    return dg.MaterializeResult(metadata=summary | voids_written)


defs = dg.Definitions(assets=[ledger_documents, voids])
