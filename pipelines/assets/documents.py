"""Customer documents: the HTML invoices and credit notes of a finalized billing month (in the finalize job)."""

from pathlib import Path

import dagster as dg

from pipelines.assets.policy import BILL_CYCLE_STEP, table_key
from pipelines.documents.files import documents_dir, write_month_documents
from pipelines.documents.render import header_markdown
from pipelines.partitions import month_key, months_in_run
from pipelines.resources import Warehouse

DOCUMENTS = dg.AssetKey(["customer_documents"])


@dg.asset(key=DOCUMENTS, deps=[table_key("ledger.documents")], **BILL_CYCLE_STEP)
def customer_documents(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """The month's issued invoices and credit notes as print-ready HTML, one file per number (<documents dir>/<year>/<number>.html)."""
    directory = documents_dir(warehouse.path)
    with warehouse.connection() as con:
        for month in months_in_run(context):
            written, first = write_month_documents(con, month, directory)
            metadata = {"documents": written, "directory": dg.MetadataValue.path(str(directory))}
            if first:
                header, path = first
                metadata["first_document"] = dg.MetadataValue.md(header_markdown(header))
                metadata["first_file"] = dg.MetadataValue.path(str(Path(path)))
            context.add_asset_metadata(metadata, asset_key=DOCUMENTS, partition_key=month_key(month))
    return dg.MaterializeResult(asset_key=DOCUMENTS)


defs = dg.Definitions(assets=[customer_documents])
