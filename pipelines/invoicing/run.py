"""One bill run's invoicing step, written: what the invoicing asset and the benchmark call (docs/billing.md).

:func:`bill_month` settles ``month`` (``build_settlement_lines``, computed once) and writes its drafts (lines and
headers), its review and its exceptions in one transaction, replacing the month's; a finalized month is left
as it is. No Dagster imports.
"""

from __future__ import annotations

from datetime import date

import duckdb

from pipelines.invoicing.engine import CREDIT_NOTE_CUSTOMER_TYPES, LOOKBACK_MONTHS, build_invoices, build_settlement_lines
from pipelines.invoicing.review import billing_exceptions, settlement_review
from warehouse.writer import staged, write


def is_finalized(con: duckdb.DuckDBPyConnection, month: date) -> bool:
    """``month`` is in ledger.finalized_months."""
    return con.execute("SELECT count(*) FROM ledger.finalized_months WHERE billing_month = ?", [month]).fetchone()[0] > 0


def bill_month(con: duckdb.DuckDBPyConnection, month: date, *, lookback_months: int = LOOKBACK_MONTHS,
               credit_note_customer_types=CREDIT_NOTE_CUSTOMER_TYPES) -> dict[str, int] | None:
    """Settle and write ``month``: rows written per table, or None when the month is finalized (nothing written)."""
    if is_finalized(con, month):
        return None
    settled = build_settlement_lines(con, month, lookback_months=lookback_months,
                                     credit_note_customer_types=credit_note_customer_types)
    with staged(con, settled, "_month_settlement") as differences:  # computed once, read four times
        lines = con.sql(f"SELECT * EXCLUDE (beyond_lookback) FROM {differences} WHERE NOT beyond_lookback")
        with staged(con, lines, "_month_lines") as drafted:
            return write(con, [
                ("billing.invoice_lines", con.table(drafted), "billing_month = ?"),
                ("billing.invoices", build_invoices(con, month, drafted), "billing_month = ?"),
                ("billing.settlement_review", settlement_review(con, month, differences), "billing_month = ?"),
                ("billing.billing_exceptions", billing_exceptions(con, month, differences), "billing_month = ?"),
            ], [month])
