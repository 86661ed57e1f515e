"""Bill cycle engine (no Dagster imports): settlement of what is owed against what was issued into draft lines
and headers, the run's review and exceptions; typed inputs for library users."""

from pipelines.invoicing.engine import (
    INVOICE_COLUMNS,
    INVOICE_LINE_COLUMNS,
    build_invoice_lines,
    build_invoices,
    build_settlement_lines,
)
from pipelines.invoicing.review import billing_exceptions, settlement_review

__all__ = ["build_invoice_lines", "build_invoices", "build_settlement_lines", "settlement_review",
           "billing_exceptions", "INVOICE_LINE_COLUMNS", "INVOICE_COLUMNS"]
