"""Checks of the ledger (docs/billing.md "Finalization"): issued documents are never changed, numbers have no gaps.

Each returns what is wrong (an empty list when nothing is); the finalize job runs them as blocking
asset checks on ledger.documents.
"""

from __future__ import annotations

import duckdb

from pipelines.ledger.finalize import document_hash


def changed_documents(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Numbers of documents whose content hash, recomputed from the ledger, differs from the one stored at issue
    (a changed header or line, a line removed or added), and of lines whose document is missing."""
    rows = con.execute(f"""
        SELECT d.document_number FROM ledger.documents d
        JOIN ({document_hash('ledger.documents', 'ledger.document_lines')}) h USING (document_id)
        WHERE h.content_hash <> d.content_hash
        UNION
        SELECT l.document_number FROM ledger.document_lines l ANTI JOIN ledger.documents d USING (document_id)
        ORDER BY 1""").fetchall()
    return [r[0] for r in rows]


def number_gaps(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Problems with numbering: a series and year whose numbers are not exactly 1..n, and documents whose
    number is not the one assigned to them in ledger.document_numbers."""
    series = con.execute("""
        SELECT series || '-' || issue_year || ': ' || count(*) || ' numbers, '
               || count(DISTINCT sequence_no) || ' distinct, from ' || min(sequence_no) || ' to ' || max(sequence_no)
        FROM ledger.document_numbers GROUP BY series, issue_year
        HAVING min(sequence_no) <> 1 OR max(sequence_no) <> count(*) OR count(DISTINCT sequence_no) <> count(*)
        ORDER BY series, issue_year""").fetchall()
    unmatched = con.execute("""
        SELECT coalesce(d.document_id, n.document_id) || ': document ' || coalesce(d.document_number, 'missing')
               || ', assigned ' || coalesce(n.document_number, 'none')
        FROM ledger.documents d FULL JOIN ledger.document_numbers n USING (document_id)
        WHERE d.document_number IS DISTINCT FROM n.document_number OR d.series IS DISTINCT FROM n.series
           OR d.issue_year IS DISTINCT FROM n.issue_year OR d.sequence_no IS DISTINCT FROM n.sequence_no
        ORDER BY 1""").fetchall()
    return [r[0] for r in series + unmatched]
