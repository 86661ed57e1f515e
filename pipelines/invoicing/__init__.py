"""Bill cycle engine (no Dagster imports): invoice lines, tax, draft invoice headers."""

from pipelines.invoicing.engine import build_invoice_lines, build_invoices, tax_exceptions

__all__ = ["build_invoice_lines", "build_invoices", "tax_exceptions"]
