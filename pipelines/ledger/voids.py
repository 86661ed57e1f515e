"""Voids: finance voids an issued document by number, with a reason (docs/billing.md "Voids").

The document keeps its number and its content; the void is one appended ``ledger.voids`` row. The
next bill run re-bills what the voided document covered (its lines no longer count as issued), and
the receivables step reverses what was applied to it. Plain functions over DuckDB, no Dagster.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import duckdb

from warehouse.writer import append


class VoidRefused(Exception):
    """The void cannot be recorded (unknown or already voided number, no reason, a date before issue); nothing was written."""


def void(con: duckdb.DuckDBPyConnection, document_number: str, reason: str, voided_on: date | None = None,
         run_id: str | None = None) -> dict:
    """Void ledger document ``document_number`` for ``reason`` on ``voided_on`` (default: today, UTC): append its
    ledger.voids row. Refuses (:class:`VoidRefused`) an empty reason, an unknown or already voided number, and a
    void dated before the document's issue date. Returns what was voided."""
    reason = (reason or "").strip()
    if not reason:
        raise VoidRefused(f"voiding {document_number} needs a reason")
    doc = con.execute("SELECT document_id, issue_date FROM ledger.documents WHERE document_number = ?", [document_number]).fetchone()
    if doc is None:
        raise VoidRefused(f"{document_number} is not an issued document number")
    voided = con.execute("SELECT voided_on, reason FROM ledger.voids WHERE document_number = ?", [document_number]).fetchone()
    if voided:
        raise VoidRefused(f"{document_number} is already voided (on {voided[0]}: {voided[1]})")
    voided_on = voided_on or datetime.now(timezone.utc).date()
    if voided_on < doc[1]:
        raise VoidRefused(f"{document_number} was issued on {doc[1]}: it cannot be voided on {voided_on}")
    row = con.sql(
        """
        SELECT document_id, document_number, document_type, account_id, currency, total,
               $reason AS reason, CAST($voided_on AS DATE) AS voided_on,
               CAST($voided_at AS TIMESTAMP) AS voided_at, CAST($run_id AS VARCHAR) AS run_id
        FROM ledger.documents WHERE document_number = $number""",
        params={"reason": reason, "voided_on": voided_on, "voided_at": datetime.now(timezone.utc).replace(tzinfo=None),
                "run_id": run_id, "number": document_number},
    )
    append(con, [("ledger.voids", row)])
    total, currency, doc_type = con.execute(
        "SELECT total, currency, document_type FROM ledger.voids WHERE document_number = ?", [document_number]).fetchone()
    return {"document_number": document_number, "document_type": doc_type, "total": f"{total} {currency}",
            "voided_on": voided_on.isoformat(), "reason": reason}
