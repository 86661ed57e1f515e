"""Finalization: a billing month's drafts become ledger documents (docs/billing.md "Finalization").

:func:`finalize` refuses a month that cannot be finalized (:func:`refusal`), then in ONE
transaction appends the month's documents, their lines, their numbers and the finalized month.
Its steps are SELECTs over the drafts (``billing.invoices``, ``billing.invoice_lines``):
:func:`numbered_documents` gives every draft its gapless number, :func:`document_line_rows` turns
the draft lines into ledger lines, :func:`document_hash` hashes a document and its lines,
:func:`document_rows` and :func:`finalized_month_row` give the rows appended. Plain functions over
DuckDB, no Dagster.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone

import duckdb

from domain.periods import add_months, month_literal
from domain.sql import quote_literal
from warehouse.tables import TABLES
from warehouse.writer import append, staged

SERIES = {"INVOICE": "INV", "CREDIT_NOTE": "CN"}

HEADER_HASHED = (
    "document_id", "document_number", "document_type", "account_id", "customer_id", "billing_month", "period_start",
    "period_end", "issue_date", "due_date", "currency", "line_count", "subtotal", "discount_total", "coupon_total",
    "net_total", "tax_total", "total",
)
"""The header columns a content hash covers, in this order (what finalization decides, not when or by which run)."""

LINE_HASHED = TABLES["ledger.document_lines"].column_names
"""Every line column, in contract order. Columns are only ever appended to the contract, and a migration
that appends one leaves it NULL on earlier lines: hash only the columns of the version a document was
issued under before appending one here."""

DOCUMENT_COLUMNS = TABLES["ledger.documents"].column_names
NUMBER_ORDER = "(d.series <> 'INV'), d.issue_year, d.sequence_no"
"""Number order: invoices, then credit notes, each by year and sequence."""


class FinalizeRefused(Exception):
    """The month cannot be finalized (the message says why and what to do); nothing was written."""


def column_text(column: str, sql_type: str) -> str:
    """SQL: ``CAST(column AS VARCHAR)`` of a ``sql_type`` column, the same text, cheaper for a wide DECIMAL (more than
    18 digits, 128-bit): a value that fits 18 digits is rendered through DECIMAL(18, scale) (64-bit), the same digits,
    scale and sign at a fifth of the cost."""
    wide = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", sql_type)
    if not wide or int(wide[1]) <= 18 or int(wide[2]) >= 18:
        return f"CAST({column} AS VARCHAR)"
    scale = int(wide[2])
    return (f"CASE WHEN abs({column}) < {10 ** (18 - scale)} "
            f"THEN CAST(CAST({column} AS DECIMAL(18,{scale})) AS VARCHAR) ELSE CAST({column} AS VARCHAR) END")


def canonical_text(table: str, columns: tuple[str, ...], alias: str) -> str:
    """SQL: the row's canonical text, a JSON array of each column as text (NULL as null), in ``columns`` order
    (columns of the contract table ``table``, typed as it declares them)."""
    types = {c.name: c.sql_type for c in TABLES[table].columns}
    return "CAST(to_json([" + ", ".join(column_text(f"{alias}.{c}", types[c]) for c in columns) + "]) AS VARCHAR)"


def document_hash(documents: str, lines: str) -> str:
    """SELECT document_id, content_hash: sha256 of the header's canonical text, the line count and the sums of the
    two 64-bit halves of each line's sha256 (order-independent and streamed: no ordered aggregate, no big strings;
    every line's text carries its line_id, so the lines are a set)."""
    halves = [f"CAST(CAST(('0x' || substr(line_sha, {start}, 16)) AS UBIGINT) AS HUGEINT)" for start in (1, 17)]
    return f"""
    SELECT d.document_id,
           sha256({canonical_text('ledger.documents', HEADER_HASHED, 'd')} || '|' || CAST(coalesce(h.lines, 0) AS VARCHAR)
                  || '|' || CAST(coalesce(h.sum_high, 0) AS VARCHAR) || '|' || CAST(coalesce(h.sum_low, 0) AS VARCHAR))
             AS content_hash
    FROM {documents} d
    LEFT JOIN (
        SELECT document_id, count(*) AS lines, sum({halves[0]}) AS sum_high, sum({halves[1]}) AS sum_low
        FROM (SELECT l.document_id, sha256({canonical_text('ledger.document_lines', LINE_HASHED, 'l')}) AS line_sha
              FROM {lines} l)
        GROUP BY document_id
    ) h USING (document_id)"""


def numbered_documents(month: str) -> str:
    """The month's drafts with series (INV / CN by document type), issue year and the next numbers of their
    series and year, continuing ledger.document_numbers in order (account_id, document_id): gapless."""
    series = "CASE coalesce(d.document_type, 'INVOICE') " + " ".join(f"WHEN '{t}' THEN '{s}'" for t, s in SERIES.items()) + " END"
    return f"""
    WITH drafts AS (
        SELECT d.*, coalesce(d.document_type, 'INVOICE') AS doc_type, {series} AS series,
               CAST(year(d.invoice_date) AS INTEGER) AS issue_year
        FROM billing.invoices d WHERE d.billing_month = {month}
    ), used AS (
        SELECT series, issue_year, max(sequence_no) AS last_no FROM ledger.document_numbers GROUP BY series, issue_year
    ), numbered AS (
        SELECT d.*, CAST(coalesce(u.last_no, 0) + row_number() OVER (
                   PARTITION BY d.series, d.issue_year ORDER BY d.account_id, d.invoice_id) AS INTEGER) AS sequence_no
        FROM drafts d LEFT JOIN used u USING (series, issue_year)
    )
    SELECT invoice_id AS document_id, printf('%s-%d-%06d', series, issue_year, sequence_no) AS document_number,
           doc_type AS document_type, series, issue_year, sequence_no, account_id, customer_id, billing_month,
           period_start, period_end, invoice_date AS issue_date, due_date, currency, line_count, subtotal, discount_total,
           coalesce(coupon_total, 0) AS coupon_total, net_total, tax_total, total
    FROM numbered"""


LINE_TYPES = {c.name: c.sql_type for c in TABLES["ledger.document_lines"].columns}


def document_line_rows(month: str, documents: str) -> str:
    """The ledger lines of ``documents``: every draft line column, with the document's id, number and type, each
    typed as ledger.document_lines declares it (so these rows are, value for value and type for type, the rows
    appended, and hash alike); a correction of a line of a month finalized since it was drafted gets that line's
    document number (only the ledger lines so referenced are looked up, not the whole ledger)."""
    renamed = {"document_id": "d.document_id", "document_number": "d.document_number", "document_type": "d.document_type",
               "coupon_amount": "coalesce(l.coupon_amount, 0)",
               "reference_document_number": "coalesce(l.reference_document_number, r.document_number)"}
    cols = ", ".join(f"CAST({renamed.get(c, 'l.' + c)} AS {LINE_TYPES[c]}) AS {c}" for c in LINE_HASHED)
    return f"""
    SELECT {cols}
    FROM billing.invoice_lines l
    JOIN {documents} d ON d.document_id = l.invoice_id
    LEFT JOIN (SELECT line_id, document_number FROM ledger.document_lines
               WHERE line_id IN (SELECT reference_line_id FROM billing.invoice_lines
                                 WHERE billing_month = {month} AND reference_document_number IS NULL)) r
      ON r.line_id = l.reference_line_id
    WHERE l.billing_month = {month}"""


def document_rows(numbered: str, lines: str, finalized_at: str, run_id: str) -> str:
    """The rows of ledger.documents: the numbered drafts with their content hash."""
    cols = ", ".join({"content_hash": "h.content_hash", "finalized_at": f"{finalized_at} AS finalized_at",
                      "run_id": f"{run_id} AS run_id"}.get(c, f"d.{c}") for c in DOCUMENT_COLUMNS)
    return f"SELECT {cols} FROM {numbered} d JOIN ({document_hash(numbered, lines)}) h USING (document_id)"


def number_rows(documents: str, assigned_at: str) -> str:
    """The rows of ledger.document_numbers: one per document appended."""
    return f"""
    SELECT series, issue_year, sequence_no, document_number, document_id, {assigned_at} AS assigned_at
    FROM {documents}"""


def finalized_month_row(month: str, documents: str, finalized_at: str, run_id: str) -> str:
    """The ledger.finalized_months row: counts, first and last number and the hash of the content hashes, in number order."""
    return f"""
    SELECT {month} AS billing_month,
           CAST(count(*) FILTER (WHERE d.document_type = 'INVOICE') AS INTEGER) AS invoices,
           CAST(count(*) FILTER (WHERE d.document_type = 'CREDIT_NOTE') AS INTEGER) AS credit_notes,
           arg_min(d.document_number, ({NUMBER_ORDER})) AS first_number,
           arg_max(d.document_number, ({NUMBER_ORDER})) AS last_number,
           sha256(coalesce(string_agg(d.content_hash, chr(10) ORDER BY {NUMBER_ORDER}), '')) AS drafts_hash,
           {finalized_at} AS finalized_at, {run_id} AS run_id
    FROM {documents} d"""


def refusal(con: duckdb.DuckDBPyConnection, month: date) -> str | None:
    """Why ``month`` cannot be finalized now, or None: finalized already; the month before is not finalized
    (unless no earlier month was ever billed); no drafts (the bill cycle did not run); blocking exceptions."""
    m, previous = month_literal(month), add_months(month, -1)
    done = con.execute("SELECT finalized_at, first_number, last_number FROM ledger.finalized_months WHERE billing_month = ?",
                       [month]).fetchone()
    if done:
        return f"{month:%Y-%m} is already finalized (at {done[0]:%Y-%m-%d %H:%M} UTC, numbers {done[1]} to {done[2]})"
    billed_before, previous_done = con.execute(f"""
        SELECT EXISTS (SELECT 1 FROM billing.invoices WHERE billing_month < {m})
               OR EXISTS (SELECT 1 FROM billing.rating_runs WHERE billing_month < {m})
               OR EXISTS (SELECT 1 FROM ledger.finalized_months WHERE billing_month < {m}),
               EXISTS (SELECT 1 FROM ledger.finalized_months WHERE billing_month = {month_literal(previous)})""").fetchone()
    if billed_before and not previous_done:
        return f"{month:%Y-%m} cannot be finalized before {previous:%Y-%m}: finalize {previous:%Y-%m} first"
    drafted = con.execute(f"""
        SELECT EXISTS (SELECT 1 FROM billing.invoices WHERE billing_month = {m})
               OR EXISTS (SELECT 1 FROM billing.rating_runs WHERE billing_month = {m})""").fetchone()[0]
    if not drafted:
        return f"{month:%Y-%m} has no drafts: run the bill_cycle job for {month:%Y-%m} first"
    blocking = con.execute(f"""
        SELECT count(*), string_agg(DISTINCT exception, ', '), arg_min(detail, exception_id)
        FROM billing.billing_exceptions WHERE billing_month = {m} AND blocking""").fetchone()
    if blocking[0]:
        return (f"{month:%Y-%m} has {blocking[0]} blocking billing exception(s) ({blocking[1]}; e.g. {blocking[2]}): "
                f"resolve them and re-run the bill_cycle job for {month:%Y-%m}")
    return None


def finalize(con: duckdb.DuckDBPyConnection, month: date, run_id: str | None = None) -> dict:
    """Finalize billing ``month``: its drafts become numbered, hashed ledger documents, appended with their lines,
    numbers and the finalized month in ONE transaction. Refuses (:class:`FinalizeRefused`) when :func:`refusal` says
    why; returns a summary (counts, number ranges per series and year, totals per document type and currency)."""
    if why := refusal(con, month):
        raise FinalizeRefused(why)
    m = month_literal(month)
    at = f"TIMESTAMP '{datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=' ')}'"
    run = quote_literal(run_id) if run_id else "CAST(NULL AS VARCHAR)"
    # In order, in one transaction: the documents, hashed from their lines (the typed rows appended next: hashing
    # them before they are appended reads committed tables, in parallel; rows this transaction appended are
    # scanned on one thread), the lines, then their numbers and the month, from the documents appended (the month
    # has no other ledger rows: it is finalized once). The check finalized_documents_unchanged rehashes the stored lines.
    appended_documents = f"(SELECT * FROM ledger.documents WHERE billing_month = {m})"
    with staged(con, con.sql(numbered_documents(m)), "_finalizing_numbered") as numbered:
        lines = document_line_rows(m, numbered)
        counts = append(con, [
            ("ledger.documents", con.sql(document_rows(numbered, f"({lines})", at, run))),
            ("ledger.document_lines", con.sql(lines)),
            ("ledger.document_numbers", con.sql(number_rows(appended_documents, at))),
            ("ledger.finalized_months", con.sql(finalized_month_row(m, appended_documents, at, run))),
        ])
    return finalized_summary(con, month, counts["ledger.document_lines"])


def finalized_summary(con: duckdb.DuckDBPyConnection, month: date, lines: int) -> dict:
    """What finalizing ``month`` issued: counts, number ranges per series and year, totals per type and currency."""
    head = con.execute("SELECT invoices, credit_notes, first_number, last_number FROM ledger.finalized_months WHERE billing_month = ?",
                       [month]).fetchone()
    ranges = con.execute("""
        SELECT series || '-' || issue_year, arg_min(document_number, sequence_no) || ' to ' || arg_max(document_number, sequence_no)
        FROM ledger.documents WHERE billing_month = ? GROUP BY series, issue_year ORDER BY series DESC, issue_year""",
                         [month]).fetchall()
    totals = con.execute("""
        SELECT document_type, currency, sum(total) FROM ledger.documents WHERE billing_month = ?
        GROUP BY ALL ORDER BY document_type DESC, currency""", [month]).fetchall()
    return {"billing_month": month.isoformat(), "invoices": head[0], "credit_notes": head[1], "lines": lines,
            "first_number": head[2], "last_number": head[3], "number_ranges": dict(ranges),
            "totals": {f"{t} {cur}": str(total) for t, cur, total in totals}}
