"""The analysts' marts (warehouse/tables/marts.py): plain SQL over the ledger, receivables and revenue tables, no Dagster.

:data:`MART_ROWS` gives each mart's SELECT in write order (a mart may read one written before it, in the same
transaction); :func:`mart_writes` is what the ``marts`` asset hands to :func:`warehouse.writer.write`.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from pipelines.marts.checks import CHECKS, mart_problems
from pipelines.marts.mrr import customer_churn_rows, customer_mrr_rows, mrr_movement_rows
from pipelines.marts.receivables import ar_aging_rows, customer_360_rows
from pipelines.marts.revenue import deferred_rollforward_rows, revenue_by_product_rows, revenue_waterfall_rows

__all__ = ["MART_ROWS", "CHECKS", "mart_problems", "mart_writes"]

MART_ROWS: dict[str, Callable[[], str]] = {
    "marts.customer_mrr": customer_mrr_rows,
    "marts.mrr_movements": mrr_movement_rows,
    "marts.customer_churn": customer_churn_rows,
    "marts.revenue_by_product": revenue_by_product_rows,
    "marts.deferred_revenue_rollforward": deferred_rollforward_rows,
    "marts.revenue_waterfall": revenue_waterfall_rows,
    "marts.ar_aging": ar_aging_rows,
    "marts.customer_360": customer_360_rows,
}


def mart_writes(con: duckdb.DuckDBPyConnection) -> list[tuple[str, duckdb.DuckDBPyRelation, str]]:
    """Every mart replaced whole: ``(table, rows, "true")`` for :func:`warehouse.writer.write`, in write order."""
    return [(table, con.sql(rows()), "true") for table, rows in MART_ROWS.items()]
