"""Receivables derived from the ledger: what each document has had applied, its status, each account's balance.

``STATE_STEPS`` are the ledger as it is at the moment a statement runs (named SELECT steps for
``with_steps``): the apply_payments steps read them after the steps before them appended their rows,
and :func:`document_status` / :func:`account_balances` build ``billing.document_status`` and
``billing.account_balances`` from them (docs/billing.md "Payments and receivables").
"""

from __future__ import annotations

import duckdb

from domain.sql import live
from pipelines.invoicing.engine import with_steps

STATE_STEPS = {
    # Issued documents, with their void (if any).
    "documents": """
        SELECT d.document_id, d.document_number, d.document_type, d.account_id, d.currency, d.issue_date, d.due_date,
               d.total, v.document_id IS NOT NULL AS voided, v.voided_on
        FROM ledger.documents d LEFT JOIN ledger.voids v USING (document_id)""",
    # Per document: the sum applied to it (invoices), the sum applied from it (credit notes, positive), and the latest
    # date money arrived (to an invoice) or left (from a credit note).
    "applied": """
        SELECT document_id, sum(applied_to) AS applied_to, sum(applied_from) AS applied_from,
               max(applied_on) FILTER (WHERE applied_to > 0 OR applied_from > 0) AS last_applied_on
        FROM (
            SELECT document_id, amount AS applied_to, 0 AS applied_from, applied_on
            FROM ledger.payment_applications WHERE document_id IS NOT NULL
            UNION ALL
            SELECT source_document_id, 0, amount, applied_on
            FROM ledger.payment_applications WHERE source_document_id IS NOT NULL
        )
        GROUP BY document_id""",
    # Open invoices in the order money pays them (oldest due first), as ranges [t_start, t_end) of the account's open AR.
    "open_invoices": """
        SELECT *, sum(open_amount) OVER w - open_amount AS t_start, sum(open_amount) OVER w AS t_end
        FROM (
            SELECT d.document_id, d.document_number, d.account_id, d.currency, d.issue_date, d.due_date,
                   d.total - coalesce(p.applied_to, 0) AS open_amount
            FROM documents d LEFT JOIN applied p USING (document_id)
            WHERE d.document_type = 'INVOICE' AND NOT d.voided AND d.total - coalesce(p.applied_to, 0) > 0
        )
        WINDOW w AS (PARTITION BY account_id, currency ORDER BY due_date, document_number ROWS UNBOUNDED PRECEDING)""",
    # Credit notes not yet fully applied: remaining (positive) is what they still give.
    "open_credit_notes": """
        SELECT d.document_id, d.document_number, d.account_id, d.currency, d.issue_date,
               -d.total - coalesce(p.applied_from, 0) AS remaining
        FROM documents d LEFT JOIN applied p USING (document_id)
        WHERE d.document_type = 'CREDIT_NOTE' AND NOT d.voided AND -d.total - coalesce(p.applied_from, 0) > 0""",
    # Account credit per account and currency, and the date the latest credit arose.
    "account_credit": """
        SELECT account_id, currency, sum(to_account_credit) AS credit,
               max(applied_on) FILTER (WHERE to_account_credit > 0) AS credit_since
        FROM ledger.payment_applications GROUP BY account_id, currency""",
}

DOCUMENT_STATUS_ROWS = """
    SELECT document_id, document_number, document_type, account_id, currency, issue_date, due_date,
           total::DECIMAL(18,4) AS total, applied::DECIMAL(18,4) AS applied, open_amount::DECIMAL(18,4) AS open_amount,
           status, CASE WHEN status IN ('PAID', 'APPLIED') THEN coalesce(last_applied_on, issue_date) END AS paid_date
    FROM (
        SELECT d.*, p.last_applied_on,
               CASE WHEN d.document_type = 'INVOICE' THEN coalesce(p.applied_to, 0) ELSE coalesce(p.applied_from, 0) END AS applied,
               CASE WHEN d.voided THEN 0
                    WHEN d.document_type = 'INVOICE' THEN d.total - coalesce(p.applied_to, 0)
                    ELSE d.total + coalesce(p.applied_from, 0) END AS open_amount,
               CASE WHEN d.voided THEN 'VOID'
                    WHEN open_amount = 0 THEN CASE WHEN d.document_type = 'INVOICE' THEN 'PAID' ELSE 'APPLIED' END
                    WHEN applied > 0 AND d.document_type = 'INVOICE' THEN 'PARTIALLY_PAID'
                    ELSE 'OPEN' END AS status
        FROM documents d LEFT JOIN applied p USING (document_id)
    )"""


def document_status(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    """``billing.document_status`` rows: every ledger document's applied and open amounts, status and paid date."""
    return con.sql(with_steps(STATE_STEPS, DOCUMENT_STATUS_ROWS + " ORDER BY document_number"))


def account_balances(con: duckdb.DuckDBPyConnection, accounts: str = "core.billing_accounts") -> duckdb.DuckDBPyRelation:
    """``billing.account_balances`` rows: per account and currency with ledger activity, invoiced, credited, paid,
    open AR, account credit, balance and the credit limit flag."""
    steps = {
        **STATE_STEPS,
        "status": DOCUMENT_STATUS_ROWS,
        "by_documents": """
            SELECT account_id, currency,
                   sum(total) FILTER (WHERE document_type = 'INVOICE' AND status <> 'VOID') AS invoiced,
                   sum(-total) FILTER (WHERE document_type = 'CREDIT_NOTE' AND status <> 'VOID') AS credited,
                   sum(open_amount) FILTER (WHERE document_type = 'INVOICE') AS open_ar
            FROM status GROUP BY account_id, currency""",
        "by_applications": """
            SELECT account_id, currency,
                   sum(amount) FILTER (WHERE entry_type IN ('PAYMENT', 'OVERPAYMENT', 'REFUND')) AS paid_net,
                   sum(to_account_credit) AS account_credit
            FROM ledger.payment_applications GROUP BY account_id, currency""",
        "by_payments": """
            SELECT account_id, currency, max(received_at) AS last_payment_at
            FROM ledger.payment_events WHERE status = 'SUCCEEDED' AND outcome = 'APPLIED' GROUP BY account_id, currency""",
        "totals": """
            SELECT account_id, currency, coalesce(invoiced, 0) AS invoiced, coalesce(credited, 0) AS credited,
                   coalesce(paid_net, 0) AS paid_net, coalesce(open_ar, 0) AS open_ar,
                   coalesce(account_credit, 0) AS account_credit, last_payment_at
            FROM by_documents FULL JOIN by_applications USING (account_id, currency)
                 FULL JOIN by_payments USING (account_id, currency)""",
    }
    return con.sql(with_steps(steps, f"""
        SELECT t.account_id, t.currency, t.invoiced::DECIMAL(18,4) AS invoiced, t.credited::DECIMAL(18,4) AS credited,
               t.paid_net::DECIMAL(18,4) AS paid_net, t.open_ar::DECIMAL(18,4) AS open_ar,
               t.account_credit::DECIMAL(18,4) AS account_credit, (t.open_ar - t.account_credit)::DECIMAL(18,4) AS balance,
               a.credit_limit, coalesce(t.open_ar - t.account_credit > a.credit_limit, false) AS over_credit_limit,
               t.last_payment_at
        FROM totals t LEFT JOIN {live(con, accounts)} a USING (account_id)
        ORDER BY t.account_id, t.currency"""))


def receivables_imbalances(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Accounts and currencies where invoiced - credited <> paid_net + open_ar - account_credit.

    Each term from its own source: invoiced and credited from ledger.documents (less voids), paid_net from
    ledger.payment_events (applied payments less reversed ones), open_ar from billing.document_status and
    account_credit from billing.account_balances.
    """
    return con.execute("""
        WITH issued AS (
            SELECT d.account_id, d.currency,
                   sum(d.total) FILTER (WHERE d.document_type = 'INVOICE') AS invoiced,
                   sum(-d.total) FILTER (WHERE d.document_type = 'CREDIT_NOTE') AS credited
            FROM ledger.documents d ANTI JOIN ledger.voids v USING (document_id) GROUP BY ALL
        ), paid AS (
            SELECT account_id, currency,
                   sum(amount) FILTER (WHERE outcome = 'APPLIED') - coalesce(sum(amount) FILTER (WHERE outcome = 'REFUNDED'), 0) AS paid_net
            FROM ledger.payment_events GROUP BY ALL
        ), open AS (
            SELECT account_id, currency, sum(open_amount) AS open_ar FROM billing.document_status
            WHERE document_type = 'INVOICE' GROUP BY ALL
        ), sides AS (
            SELECT account_id, currency,
                   coalesce(i.invoiced, 0) - coalesce(i.credited, 0) AS issued_net,
                   coalesce(p.paid_net, 0) + coalesce(o.open_ar, 0) - coalesce(b.account_credit, 0) AS settled_net
            FROM issued i FULL JOIN paid p USING (account_id, currency) FULL JOIN open o USING (account_id, currency)
                 FULL JOIN billing.account_balances b USING (account_id, currency)
        )
        SELECT account_id, currency, issued_net, settled_net FROM sides WHERE issued_net <> settled_net ORDER BY 1, 2
        """).fetchall()


def over_applied_documents(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Documents applied beyond their total, or with an open amount of the wrong sign (billing.document_status)."""
    return [r[0] for r in con.execute("""
        SELECT document_number FROM billing.document_status
        WHERE (document_type = 'INVOICE' AND (applied > total OR open_amount < 0 OR applied < 0))
           OR (document_type = 'CREDIT_NOTE' AND (applied > -total OR open_amount > 0 OR applied < 0))
        ORDER BY 1""").fetchall()]

