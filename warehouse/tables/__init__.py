"""Every warehouse table, declared once (the table contract, :mod:`warehouse.contract`).

``TABLES`` maps ``schema.name`` to its :class:`~warehouse.contract.Table`, in creation order;
``SCHEMAS`` describes each schema (DuckDB has no schema comments). To add a table, declare it in
its schema's module; to change one, declare the change and add a migration
(docs/architecture.md, "Changing the warehouse").
"""

from warehouse.contract import Table
from warehouse.tables import audit, billing, core, ledger, marts, raw, revenue

SCHEMAS = {
    "raw": "Append-only change logs exactly as received from the landing zone (one table per entity).",
    "core": "Current state and SCD2 history of every entity, merged from raw by the keys each run's new change-log rows touch; subscriptions from confirmed orders.",
    "billing": "Bill cycles: rated usage, unrated usage, draft invoices and their lines, per billing month.",
    "ledger": "What was issued or decided, append-only: finalized invoices and credit notes with their lines, numbers, finalized months, voids, payments processed and applied.",
    "revenue": "Revenue (ASC 606 / IFRS 15): obligations, allocations, schedules, posted revenue and journals, closed months.",
    "marts": "The analysts' tables, one question each (MRR and its movements, churn and ARPU, revenue by product, deferred revenue, the waterfall, AR aging, the customer 360), recomputed whole from the ledger, receivables and revenue.",
    "audit": "Ingestion ledger: files ingested with their record accounting, and quarantined records; the schema history.",
}

TABLES: dict[str, Table] = {t.qualified: t for module in (raw, core, billing, ledger, revenue, marts, audit) for t in module.TABLES}


def table(qualified: str) -> Table:
    """The declaration of ``schema.name``; a KeyError names the table when it is not in the contract."""
    try:
        return TABLES[qualified]
    except KeyError:
        raise KeyError(f"{qualified} is not a table of the warehouse contract (warehouse/tables/)") from None
