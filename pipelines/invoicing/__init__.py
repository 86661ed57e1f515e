"""Bill cycle engine (no Dagster imports): invoice lines, tax, draft invoice headers; typed inputs for library users."""

from pipelines.invoicing.engine import INVOICE_COLUMNS, INVOICE_LINE_COLUMNS, build_invoice_lines, build_invoices

__all__ = ["build_invoice_lines", "build_invoices", "INVOICE_LINE_COLUMNS", "INVOICE_COLUMNS"]
