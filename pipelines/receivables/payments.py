"""Apply payments, credit notes and account credit to ledger invoices (docs/billing.md "Payments and receivables").

:func:`apply_payments` processes each payment of ``core.payments`` once per status and appends, in ONE
transaction, the ``ledger.payment_events`` and then the ``ledger.payment_applications`` of eight steps, each
reading the ledger as the steps before it left it (``balances.STATE_STEPS``):

1. ``void_reversals``: what was applied to or from a voided document is reversed (money paid to a voided
   invoice goes back to account credit; a credit note's money goes back to it).
2. ``refunds``: a refunded (or charged-back) payment's money is taken back from account credit first, then by
   reopening the invoices it paid, newest first; what is still missing makes the account credit negative.
3. ``credit_applied``: account credit pays open invoices, oldest first.
4. ``credit_notes_to_referenced`` and 5. ``credit_notes_oldest_first``: a credit note pays the invoice it
   corrects if open, then open invoices issued on or before it, oldest first; the rest is account credit.
6. ``payments_to_referenced`` and 7. ``payments_oldest_first``: a payment pays the invoice it references if
   open, then open invoices issued on or before the day it was received, oldest first; the rest is an
   over-payment to account credit.
8. ``credit_applied`` again (credit that arose in this call).

Every step is set-based SQL: money and open invoices are ranges on each account's cumulative axis, and an
application is the overlap of a source range with an invoice range (:func:`oldest_first`,
:func:`to_referenced`). No Python loop over payments, invoices or accounts. A second call on the same ledger
appends nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from domain.periods import OPEN_END_DATE
from domain.sql import live, quote_literal
from pipelines.invoicing.engine import with_steps
from pipelines.receivables.balances import STATE_STEPS
from warehouse.tables import TABLES
from warehouse.writer import append, staged

EVENT_COLUMNS = TABLES["ledger.payment_events"].column_names

# Money a payment brought in (its applications, over-payment and refunds; not void reversals, which only move it).
PAYMENT_MONEY = "entry_type IN ('PAYMENT', 'OVERPAYMENT', 'REFUND')"


def new_payment_events(con: duckdb.DuckDBPyConnection, processed_at: str, run_id: str,
                       payments: str = "core.payments", accounts: str = "core.billing_accounts") -> str:
    """Payments in a status not yet processed (PENDING waits), with their outcome and reason (+ ``status_on``)."""
    return f"""
        WITH payment_money AS (
            SELECT payment_id, sum(amount) AS applied FROM ledger.payment_applications WHERE {PAYMENT_MONEY} GROUP BY 1
        )
        SELECT p.payment_id, p.status, p.account_id, p.currency, p.amount, p.received_at, p.invoice_number,
               CASE WHEN p.status = 'SUCCEEDED' AND (a.account_id IS NULL OR a.currency <> p.currency) THEN 'REJECTED'
                    WHEN p.status = 'SUCCEEDED' THEN 'APPLIED'
                    WHEN coalesce(m.applied, 0) > 0 THEN 'REFUNDED'
                    WHEN p.status = 'FAILED' THEN 'FAILED'
                    ELSE 'REJECTED' END AS outcome,
               CASE WHEN p.status = 'SUCCEEDED' AND a.account_id IS NULL THEN 'unknown account ' || p.account_id
                    WHEN p.status = 'SUCCEEDED' AND a.currency <> p.currency
                        THEN 'payment currency ' || p.currency || ' differs from the account currency ' || a.currency
                    WHEN p.status = 'SUCCEEDED' THEN NULL
                    WHEN coalesce(m.applied, 0) > 0 AND p.status = 'FAILED' THEN 'failed after it was applied (charge-back): reversed'
                    WHEN coalesce(m.applied, 0) > 0 THEN NULL
                    WHEN p.status = 'FAILED' THEN 'the payment provider reported it FAILED'
                    ELSE 'refunded before it was applied: nothing to reverse' END AS reason,
               {processed_at} AS processed_at, {run_id} AS run_id,
               coalesce(p.valid_from, p.received_at)::DATE AS status_on
        FROM {live(con, payments)} p
        LEFT JOIN {live(con, accounts)} a USING (account_id)
        LEFT JOIN payment_money m USING (payment_id)
        WHERE p.status <> 'PENDING'
          AND NOT EXISTS (SELECT 1 FROM ledger.payment_events e WHERE e.payment_id = p.payment_id AND e.status = p.status)
        ORDER BY p.payment_id"""


def oldest_first(sources: str) -> dict[str, str]:
    """Steps allocating ``sources`` to open invoices oldest due first, each source only to invoices issued on or
    before its ``eligible_until``: ``allocated`` (one row per source and invoice, ``piece``) and ``unallocated``
    (``leftover``).

    Sources are ranges [a_end - amount, a_end) on the account's cumulative axis, in order (eligible_until,
    source_order); invoices are ranges [t_start, t_end) of ``open_invoices``. A source may not reach past
    ``cap``, the start of the first invoice issued after its eligible_until, so where the sources end on the
    invoice axis follows x_k = min(x_(k-1) + amount_k, cap_k), which unrolls to
    x_k = a_end_k + min(0, min over j <= k of (cap_j - a_end_j)): a running minimum.
    """
    order = "PARTITION BY account_id, currency ORDER BY eligible_until, source_order"
    return {
        "source_caps": f"""
            SELECT s.*, coalesce(min(o.t_start) FILTER (WHERE o.issue_date > s.eligible_until), max(o.t_end), 0) AS cap
            FROM {sources} s LEFT JOIN open_invoices o USING (account_id, currency)
            GROUP BY ALL""",
        "source_cumulative": f"SELECT *, sum(amount) OVER ({order} ROWS UNBOUNDED PRECEDING) AS a_end FROM source_caps",
        "source_ends": f"""
            SELECT *, a_end + least(0, min(cap - a_end) OVER ({order} ROWS UNBOUNDED PRECEDING)) AS x_end
            FROM source_cumulative""",
        "source_ranges": f"SELECT *, coalesce(lag(x_end) OVER ({order}), 0) AS x_start FROM source_ends",
        "allocated": """
            SELECT s.*, o.document_id, o.issue_date AS document_issue_date,
                   least(s.x_end, o.t_end) - greatest(s.x_start, o.t_start) AS piece
            FROM source_ranges s JOIN open_invoices o USING (account_id, currency)
            WHERE least(s.x_end, o.t_end) > greatest(s.x_start, o.t_start)""",
        "unallocated": "SELECT *, amount - (x_end - x_start) AS leftover FROM source_ranges WHERE amount > x_end - x_start",
    }


def to_referenced(sources: str) -> dict[str, str]:
    """Steps applying each source to the open invoice it names (``target_number``): ``referenced`` (``piece``).

    Sources naming the same invoice fill it in order: ranges [a_end - amount, a_end) overlapped with [0, open).
    """
    return {
        "referenced_ranges": f"""
            SELECT s.*, o.document_id, o.issue_date AS document_issue_date, o.open_amount,
                   sum(s.amount) OVER (PARTITION BY o.document_id ORDER BY s.eligible_until, s.source_order
                                       ROWS UNBOUNDED PRECEDING) AS a_end
            FROM {sources} s
            JOIN open_invoices o ON o.document_number = s.target_number AND o.account_id = s.account_id AND o.currency = s.currency""",
        "referenced": """
            SELECT *, least(a_end, open_amount) - greatest(a_end - amount, 0) AS piece FROM referenced_ranges
            WHERE least(a_end, open_amount) > greatest(a_end - amount, 0)""",
    }


VOID_REVERSALS = ({}, """
    SELECT 'VOID_REVERSAL' AS entry_type, a.account_id, a.currency, a.payment_id, a.source_document_id, a.document_id,
           -sum(a.amount) AS amount, CASE WHEN a.source_document_id IS NULL THEN sum(a.amount) ELSE 0 END AS to_account_credit,
           v.voided_on AS applied_on
    FROM ledger.payment_applications a JOIN ledger.voids v ON v.document_id = a.document_id
    GROUP BY a.account_id, a.currency, a.payment_id, a.source_document_id, a.document_id, v.voided_on
    HAVING sum(a.amount) <> 0
    UNION ALL
    SELECT 'VOID_REVERSAL', a.account_id, a.currency, NULL, a.source_document_id, a.document_id,
           -sum(a.amount), CASE WHEN a.document_id IS NULL THEN -sum(a.amount) ELSE 0 END, v.voided_on
    FROM ledger.payment_applications a JOIN ledger.voids v ON v.document_id = a.source_document_id
    WHERE a.document_id IS NULL OR a.document_id NOT IN (SELECT document_id FROM ledger.voids)
    GROUP BY a.account_id, a.currency, a.source_document_id, a.document_id, v.voided_on
    HAVING sum(a.amount) <> 0""")
"""Step 1: per voided document and source (or target), minus the net applied; payment and credit money to credit."""

REFUNDS = ({
    "reversed": f"""
        SELECT e.payment_id, e.account_id, e.currency, e.status_on, m.withdrawn
        FROM _new_payment_events e
        JOIN (SELECT payment_id, sum(amount) AS withdrawn FROM ledger.payment_applications WHERE {PAYMENT_MONEY} GROUP BY 1) m
          USING (payment_id)
        WHERE e.outcome = 'REFUNDED' AND m.withdrawn > 0""",
    "credit_taken": """
        SELECT *, greatest(least(w_end, available) - least(w_end - withdrawn, available), 0) AS taken
        FROM (SELECT r.*, greatest(coalesce(c.credit, 0), 0) AS available,
                     sum(r.withdrawn) OVER (PARTITION BY r.account_id, r.currency ORDER BY r.payment_id
                                            ROWS UNBOUNDED PRECEDING) AS w_end
              FROM reversed r LEFT JOIN account_credit c USING (account_id, currency))""",
    "paid_documents": """
        SELECT a.payment_id, a.document_id, d.document_number, sum(a.amount) AS paid, max(a.applied_on) AS paid_on
        FROM ledger.payment_applications a JOIN reversed USING (payment_id) JOIN documents d USING (document_id)
        GROUP BY ALL HAVING sum(a.amount) > 0""",
    "reopened": """
        SELECT p.payment_id, p.document_id, p.paid, t.withdrawn - t.taken AS to_reopen,
               sum(p.paid) OVER (PARTITION BY p.payment_id ORDER BY p.paid_on DESC, p.document_number DESC
                                 ROWS UNBOUNDED PRECEDING) AS r_end
        FROM paid_documents p JOIN credit_taken t USING (payment_id)""",
    "reopen_pieces": """
        SELECT payment_id, document_id, least(r_end, to_reopen) - greatest(r_end - paid, 0) AS piece FROM reopened
        WHERE least(r_end, to_reopen) > greatest(r_end - paid, 0)""",
}, """
    SELECT 'REFUND' AS entry_type, t.account_id, t.currency, t.payment_id, NULL AS source_document_id, p.document_id,
           -p.piece AS amount, 0 AS to_account_credit, t.status_on AS applied_on
    FROM reopen_pieces p JOIN credit_taken t USING (payment_id)
    UNION ALL
    SELECT 'REFUND', t.account_id, t.currency, t.payment_id, NULL, NULL,
           -(t.withdrawn - coalesce(r.reopened, 0)), -(t.withdrawn - coalesce(r.reopened, 0)), t.status_on
    FROM credit_taken t LEFT JOIN (SELECT payment_id, sum(piece) AS reopened FROM reopen_pieces GROUP BY 1) r USING (payment_id)
    WHERE t.withdrawn > coalesce(r.reopened, 0)""")
"""Step 2: refunded payments: from account credit first, then reopening the invoices they paid, newest first."""

CREDIT_APPLIED = ({
    "credit_sources": f"""
        SELECT account_id, currency, NULL::BIGINT AS payment_id, NULL::VARCHAR AS source_document_id, credit AS amount,
               {OPEN_END_DATE} AS eligible_until, '' AS source_order, credit_since AS source_date
        FROM account_credit WHERE credit > 0""",
    **oldest_first("credit_sources"),
}, """
    SELECT 'CREDIT_APPLIED' AS entry_type, account_id, currency, payment_id, source_document_id, document_id,
           piece AS amount, -piece AS to_account_credit, greatest(source_date, document_issue_date) AS applied_on
    FROM allocated""")
"""Steps 3 and 8: account credit pays open invoices oldest first (on the later of the invoice's issue and the credit)."""

CREDIT_NOTE_SOURCES = """
    SELECT c.account_id, c.currency, NULL::BIGINT AS payment_id, c.document_id AS source_document_id, c.remaining AS amount,
           c.issue_date AS eligible_until, c.document_number AS source_order, c.issue_date AS source_date,
           min(o.document_number) AS target_number
    FROM open_credit_notes c
    LEFT JOIN ledger.document_lines l ON l.document_id = c.document_id
    LEFT JOIN open_invoices o ON o.document_number = l.reference_document_number AND o.account_id = c.account_id
    GROUP BY ALL"""

CREDIT_NOTES_TO_REFERENCED = ({"credit_note_sources": CREDIT_NOTE_SOURCES, **to_referenced("credit_note_sources")}, """
    SELECT 'CREDIT_NOTE' AS entry_type, account_id, currency, payment_id, source_document_id, document_id,
           piece AS amount, 0 AS to_account_credit, greatest(source_date, document_issue_date) AS applied_on
    FROM referenced""")
"""Step 4: a credit note pays the (oldest open) invoice its lines correct."""

CREDIT_NOTES_OLDEST_FIRST = ({"credit_note_sources": CREDIT_NOTE_SOURCES, **oldest_first("credit_note_sources")}, """
    SELECT 'CREDIT_NOTE' AS entry_type, account_id, currency, payment_id, source_document_id, document_id,
           piece AS amount, 0 AS to_account_credit, greatest(source_date, document_issue_date) AS applied_on
    FROM allocated
    UNION ALL
    SELECT 'CREDIT_NOTE', account_id, currency, payment_id, source_document_id, NULL, leftover, leftover, source_date
    FROM unallocated""")
"""Step 5: what is left of a credit note pays open invoices issued on or before it, oldest first, then account credit."""

PAYMENT_SOURCES = f"""
    SELECT e.account_id, e.currency, e.payment_id, NULL::VARCHAR AS source_document_id,
           e.amount - coalesce(m.used, 0) AS amount, e.received_at::DATE AS eligible_until,
           strftime(e.received_at, '%Y%m%d%H%M%S') || lpad(e.payment_id::VARCHAR, 20, '0') AS source_order,
           e.received_at::DATE AS source_date, e.invoice_number AS target_number
    FROM _new_payment_events e
    LEFT JOIN (SELECT payment_id, sum(amount) AS used FROM ledger.payment_applications WHERE {PAYMENT_MONEY} GROUP BY 1) m
      USING (payment_id)
    WHERE e.outcome = 'APPLIED' AND e.amount > coalesce(m.used, 0)"""

PAYMENTS_TO_REFERENCED = ({"payment_sources": PAYMENT_SOURCES, **to_referenced("payment_sources")}, """
    SELECT 'PAYMENT' AS entry_type, account_id, currency, payment_id, source_document_id, document_id,
           piece AS amount, 0 AS to_account_credit, source_date AS applied_on
    FROM referenced""")
"""Step 6: a payment pays the invoice it references, if open."""

PAYMENTS_OLDEST_FIRST = ({"payment_sources": PAYMENT_SOURCES, **oldest_first("payment_sources")}, """
    SELECT 'PAYMENT' AS entry_type, account_id, currency, payment_id, source_document_id, document_id,
           piece AS amount, 0 AS to_account_credit, source_date AS applied_on
    FROM allocated
    UNION ALL
    SELECT 'OVERPAYMENT', account_id, currency, payment_id, source_document_id, NULL, leftover, leftover, source_date
    FROM unallocated""")
"""Step 7: the rest pays open invoices issued on or before the day received, oldest first; then account credit."""

STEPS = {
    "void_reversals": VOID_REVERSALS,
    "refunds": REFUNDS,
    "credit_applied": CREDIT_APPLIED,
    "credit_notes_to_referenced": CREDIT_NOTES_TO_REFERENCED,
    "credit_notes_oldest_first": CREDIT_NOTES_OLDEST_FIRST,
    "payments_to_referenced": PAYMENTS_TO_REFERENCED,
    "payments_oldest_first": PAYMENTS_OLDEST_FIRST,
}
ORDER = ("void_reversals", "refunds", "credit_applied", "credit_notes_to_referenced", "credit_notes_oldest_first",
         "payments_to_referenced", "payments_oldest_first", "credit_applied")


ENTRY_ORDER = ("e.account_id, e.currency, e.payment_id NULLS FIRST, e.source_document_id NULLS FIRST, "
               "e.document_id NULLS LAST, e.amount")


def application_rows(step: str, recorded_at: str, run_id: str) -> str:
    """SELECT of the ``ledger.payment_applications`` rows of one step, with ids continuing the ledger's sequence."""
    steps, entries = STEPS[step]
    return with_steps({**STATE_STEPS, **steps, "entries": entries}, f"""
        SELECT md5(concat_ws('|', e.entry_type, coalesce(e.payment_id::VARCHAR, e.source_document_id, 'credit'),
                             coalesce(e.document_id, 'credit'), n.base + row_number() OVER (ORDER BY {ENTRY_ORDER}))) AS application_id,
               e.entry_type, e.account_id, e.currency, e.payment_id::BIGINT AS payment_id,
               e.source_document_id::VARCHAR AS source_document_id, e.document_id::VARCHAR AS document_id, d.document_number,
               e.amount::DECIMAL(18,4) AS amount, e.to_account_credit::DECIMAL(18,4) AS to_account_credit,
               e.applied_on::DATE AS applied_on, {recorded_at} AS recorded_at, {run_id} AS run_id
        FROM entries e LEFT JOIN documents d USING (document_id)
        CROSS JOIN (SELECT count(*) AS base FROM ledger.payment_applications) n
        WHERE e.amount <> 0 OR e.to_account_credit <> 0
        ORDER BY {ENTRY_ORDER}""")


def apply_payments(con: duckdb.DuckDBPyConnection, run_id: str | None = None, at: datetime | None = None) -> dict:
    """Process payments not yet seen in their status and apply payments, credit notes and account credit (one
    transaction); return the events and applications appended, by outcome / entry type and currency."""
    stamp = f"TIMESTAMP '{(at or datetime.now(UTC).replace(tzinfo=None)).isoformat(sep=' ')}'"
    run = quote_literal(run_id) if run_id else "NULL::VARCHAR"
    with staged(con, con.sql(new_payment_events(con, stamp, run)), "_new_payment_events") as events:
        first_new = con.execute("SELECT coalesce(max(rowid) + 1, 0) FROM ledger.payment_applications").fetchone()[0]
        append(con, [
            ("ledger.payment_events", con.sql(f"SELECT {', '.join(EVENT_COLUMNS)} FROM {events}")),
            *[("ledger.payment_applications", con.sql(application_rows(step, stamp, run))) for step in ORDER],
        ])
        payments = _by_currency(con, f"SELECT outcome, currency, count(*), sum(amount) FROM {events} GROUP BY ALL")
    applications = _by_currency(con, f"""
        SELECT entry_type, currency, count(*), sum(amount)
        FROM ledger.payment_applications WHERE rowid >= {first_new} GROUP BY ALL""")
    return {"payments": payments, "applications": applications}


def _by_currency(con: duckdb.DuckDBPyConnection, query: str) -> dict:
    """``{kind: {currency: {"count": n, "amount": "1.2300"}}}`` from rows (kind, currency, count, amount)."""
    out: dict = {}
    for kind, currency, count, amount in con.execute(query + " ORDER BY 1, 2").fetchall():
        out.setdefault(kind, {})[currency] = {"count": count, "amount": str(amount)}
    return out
