"""The double-entry journal of the open accounting months and the contracts' month-end positions (docs/journals.md).

Plain DuckDB SQL, no Dagster. :func:`journal_rows` returns the SELECT of ``revenue.open_journal_lines``: every
accounting month from the first open month F to the latest month with activity, per currency, from the ledger
(documents, voids, payment applications), the written ``revenue.performance_obligations`` and
``revenue.schedule`` (open amounts) and, for what closed months already booked, the posted
``revenue.journal_lines`` and ``revenue.recognized``. Each amount is a signed debit (a credit is negative) until
the last step splits it into debit and credit, so a negative amount swaps sides.

Entries (one ``entry_id`` each, balanced):

* BILLING per document (``BILLING-<document_id>``): Dr AR total, Cr TAX_PAYABLE tax, Cr DEFERRED_REVENUE net;
  VOID (``VOID-<document_id>``) reverses it. Booked in the later of the issue (void) month and F, once.
* RECOGNITION per (month, currency, product line, concerns month): Dr DEFERRED_REVENUE, Cr REVENUE:<line>; the
  negative amounts concerning an earlier month (credits of service already recognized) go, gross, to
  CONTRA_REVENUE:<line> (entry ``CONTRA-...``); an estimate's reversal nets with REVENUE.
* CONTRACT_BALANCE per (month, currency): the change of the month-end reclass of debit positions out of
  DEFERRED_REVENUE into UNBILLED_AR (month to month) and CONTRACT_ASSET (committed contracts).
* PAYMENT per payment application (``PAYMENT-<application_id>``): CASH by the money a payment brought or
  returned, AR by what reached an invoice or left a credit note, CUSTOMER_CREDIT by ``to_account_credit``.
"""

from __future__ import annotations

from datetime import date

import duckdb

from domain.sql import live, quote_literal
from pipelines.invoicing.engine import with_steps
from pipelines.receivables.payments import PAYMENT_MONEY
from pipelines.revenue.obligations import first_open_literal, is_estimate, last_month_sql
from warehouse.tables import TABLES

JOURNAL_COLUMNS = TABLES["revenue.open_journal_lines"].column_names

# Chart of accounts (docs/journals.md): account -> type; REVENUE:<product line> and CONTRA_REVENUE:<product line>
# take the product line of the obligation.
ACCOUNT_TYPES = {
    "AR": "ASSET", "UNBILLED_AR": "ASSET", "CONTRACT_ASSET": "ASSET", "CASH": "ASSET",
    "DEFERRED_REVENUE": "LIABILITY", "TAX_PAYABLE": "LIABILITY", "CUSTOMER_CREDIT": "LIABILITY",
}
REVENUE_PREFIX, CONTRA_PREFIX = "REVENUE:", "CONTRA_REVENUE:"

ACCOUNT_TYPE_SQL = ("CASE " + " ".join(f"WHEN account = '{a}' THEN '{t}'" for a, t in ACCOUNT_TYPES.items())
                    + f" WHEN account LIKE '{CONTRA_PREFIX}%' THEN 'CONTRA_REVENUE'"
                    + f" WHEN account LIKE '{REVENUE_PREFIX}%' THEN 'REVENUE' END")

REVENUE_ACCOUNT = f"(account LIKE '{REVENUE_PREFIX}%' OR account LIKE '{CONTRA_PREFIX}%')"


def month_of(expr: str) -> str:
    """The accounting month (first day) containing the date ``expr``."""
    return f"date_trunc('month', {expr})::DATE"


def calendar_steps(first_open: date | None) -> dict[str, str]:
    """``bounds`` (first_open, first_month of the books, last_month = the latest month with activity),
    ``open_months`` (F .. last_month) and ``book_months`` (first_month .. last_month).

    Activity: a document issued, a void, a payment application, a finalized billing month
    (pipelines/revenue/obligations.py last_month_sql, which also bounds the estimates). A month after it is not
    booked yet (the waterfall shows it as scheduled)."""
    return {
        "bounds": f"""
            SELECT f.first_open, least(f.first_open, c.first_closed) AS first_month,
                   {last_month_sql(first_open)} AS last_month
            FROM (SELECT {first_open_literal(first_open)} AS first_open) f,
                 (SELECT min(accounting_month) AS first_closed FROM revenue.closed_months) c""",
        "open_months": """
            SELECT unnest(generate_series(first_open, last_month, INTERVAL 1 MONTH))::DATE AS accounting_month
            FROM bounds WHERE first_open <= last_month""",
        "book_months": """
            SELECT unnest(generate_series(first_month, last_month, INTERVAL 1 MONTH))::DATE AS accounting_month
            FROM bounds WHERE first_month <= last_month""",
    }


def contract_position_steps(con: duckdb.DuckDBPyConnection, first_open: date | None,
                            orders: str = "core.orders") -> dict[str, str]:
    """Steps through ``contract_positions``: per contract and month of the books from its first activity, billed
    and recognized to date, whether it moved in the month, and its liability, unbilled AR or contract asset.

    Billed: the obligations' billed amounts by billed_month. Recognized: the posted revenue.recognized rows by
    accounting month and the schedule's open amounts by booked_month. A contract is committed when its order has
    a contract term (``orders.contract_term_months > 0``): its debit position is a contract asset."""
    return {
        **calendar_steps(first_open),
        "committed_contracts": f"SELECT 'ORD-' || order_id AS contract_id FROM {live(con, orders)} WHERE contract_term_months > 0",
        "contract_flows": """
            SELECT f.* FROM (
                SELECT contract_id, account_id, currency, billed_month AS month, billed_amount AS billed, 0 AS recognized
                FROM revenue.performance_obligations
                UNION ALL
                SELECT contract_id, account_id, currency, accounting_month, 0, amount FROM revenue.recognized
                UNION ALL
                SELECT contract_id, account_id, currency, booked_month, 0, open_amount FROM revenue.schedule
                WHERE open_amount <> 0
            ) f, bounds b WHERE f.month <= b.last_month""",
        "contract_month_flows": """
            SELECT contract_id, account_id, currency, month AS accounting_month, sum(billed) AS billed,
                   sum(recognized) AS recognized
            FROM contract_flows GROUP BY ALL""",
        "contract_months": """
            SELECT c.contract_id, c.account_id, c.currency, m.accounting_month
            FROM (SELECT contract_id, account_id, currency, min(month) AS first_month FROM contract_flows GROUP BY ALL) c
            JOIN book_months m ON m.accounting_month >= c.first_month""",
        "contract_positions": """
            SELECT *, greatest(billed_to_date - recognized_to_date, 0) AS contract_liability,
                   CASE WHEN NOT committed THEN greatest(recognized_to_date - billed_to_date, 0) ELSE 0 END AS unbilled_ar,
                   CASE WHEN committed THEN greatest(recognized_to_date - billed_to_date, 0) ELSE 0 END AS contract_asset
            FROM (
                SELECT m.accounting_month, m.contract_id, m.account_id, m.currency,
                       sum(coalesce(f.billed, 0)) OVER w AS billed_to_date,
                       sum(coalesce(f.recognized, 0)) OVER w AS recognized_to_date,
                       f.contract_id IS NOT NULL AS moved,
                       m.contract_id IN (SELECT contract_id FROM committed_contracts) AS committed
                FROM contract_months m LEFT JOIN contract_month_flows f USING (contract_id, account_id, currency, accounting_month)
                WINDOW w AS (PARTITION BY m.contract_id, m.account_id, m.currency ORDER BY m.accounting_month
                             ROWS UNBOUNDED PRECEDING))""",
    }


def _document_entries(first_open: str) -> dict[str, str]:
    """BILLING and VOID entries not yet posted (posted: a journal line with their entry type and source_id)."""
    return {
        "posted_sources": "SELECT DISTINCT entry_type, source_id FROM revenue.journal_lines WHERE source_id IS NOT NULL",
        "document_entries": f"""
            SELECT 'BILLING' AS entry_type, d.document_id, d.issue_date AS booked_on, 1 AS sign,
                   CASE d.document_type WHEN 'CREDIT_NOTE' THEN 'Credit note ' ELSE 'Invoice ' END
                       || d.document_number || ' issued ' || d.issue_date AS description
            FROM ledger.documents d
            UNION ALL
            SELECT 'VOID', v.document_id, v.voided_on, -1, 'Void of ' || v.document_number || ' on ' || v.voided_on
            FROM ledger.voids v""",
        "document_lines": f"""
            SELECT greatest({month_of('e.booked_on')}, {first_open}) AS accounting_month, d.currency, e.entry_type,
                   e.entry_type || '-' || d.document_id AS entry_id, {month_of('e.booked_on')} AS concerns_month,
                   d.document_id AS source_id, d.document_id, NULL::BIGINT AS payment_id, e.description,
                   x.account, e.sign * x.signed AS signed
            FROM document_entries e JOIN ledger.documents d USING (document_id)
            ANTI JOIN posted_sources p ON p.entry_type = e.entry_type AND p.source_id = d.document_id
            CROSS JOIN LATERAL (VALUES ('AR', d.total), ('TAX_PAYABLE', -d.tax_total),
                                       ('DEFERRED_REVENUE', -d.net_total)) x(account, signed)""",
    }


RECOGNITION_LINES = {
    "recognition_entries": f"""
        SELECT s.booked_month AS accounting_month, s.currency, s.product_line, s.service_month AS concerns_month,
               s.open_amount < 0 AND s.service_month < s.booked_month AND NOT {is_estimate("s.obligation_id")} AS contra,
               sum(s.open_amount) AS amount
        FROM revenue.schedule s JOIN open_months m ON m.accounting_month = s.booked_month
        GROUP BY ALL HAVING sum(s.open_amount) <> 0""",
    "recognition_lines": f"""
        SELECT r.accounting_month, r.currency, 'RECOGNITION' AS entry_type,
               concat_ws('-', CASE WHEN r.contra THEN 'CONTRA' ELSE 'RECOGNITION' END, strftime(r.accounting_month, '%Y-%m'),
                         r.currency, r.product_line, strftime(r.concerns_month, '%Y-%m')) AS entry_id,
               r.concerns_month, NULL::VARCHAR AS source_id, NULL::VARCHAR AS document_id, NULL::BIGINT AS payment_id,
               CASE WHEN r.contra THEN 'Contra revenue ' ELSE 'Revenue ' END || r.product_line || ' for '
                   || strftime(r.concerns_month, '%Y-%m')
                   || CASE WHEN r.concerns_month < r.accounting_month THEN ' (correction of a closed month)' ELSE '' END
                   AS description,
               x.account, x.signed
        FROM recognition_entries r
        CROSS JOIN LATERAL (VALUES ('DEFERRED_REVENUE', r.amount),
                                   (CASE WHEN r.contra THEN '{CONTRA_PREFIX}' ELSE '{REVENUE_PREFIX}' END || r.product_line,
                                    -r.amount)) x(account, signed)""",
}
"""RECOGNITION: the schedule's open amounts booked in each open month, per currency, product line and month
concerned; Dr DEFERRED_REVENUE / Cr REVENUE. A negative amount booked after the month it concerns (a credit or void
of service already recognized, a lower re-measurement after close) goes gross to Dr CONTRA_REVENUE: it is summed
apart from the positive corrections of the same month, never netted with them. The reversal of an estimate (what was
rendered before its invoice, replaced by its invoiced line or no longer owed) is no credit to the customer: it
nets with the month's REVENUE, so a line invoiced at its estimated amount books nothing more."""

CONTRACT_BALANCE_LINES = {
    "reclass_targets": """
        SELECT accounting_month, currency, sum(unbilled_ar) AS unbilled_ar, sum(contract_asset) AS contract_asset
        FROM contract_positions GROUP BY ALL""",
    "reclass_posted": """
        SELECT currency, coalesce(sum(debit - credit) FILTER (WHERE account = 'UNBILLED_AR'), 0) AS unbilled_ar,
               coalesce(sum(debit - credit) FILTER (WHERE account = 'CONTRACT_ASSET'), 0) AS contract_asset
        FROM revenue.journal_lines GROUP BY currency""",
    "reclass_changes": """
        SELECT m.accounting_month, c.currency,
               coalesce(t.unbilled_ar, 0) - lag(coalesce(t.unbilled_ar, 0), 1, coalesce(p.unbilled_ar, 0)) OVER w AS unbilled_ar,
               coalesce(t.contract_asset, 0) - lag(coalesce(t.contract_asset, 0), 1, coalesce(p.contract_asset, 0)) OVER w
                   AS contract_asset
        FROM open_months m
        CROSS JOIN (SELECT currency FROM reclass_targets UNION SELECT currency FROM reclass_posted) c
        LEFT JOIN reclass_targets t USING (accounting_month, currency)
        LEFT JOIN reclass_posted p USING (currency)
        WINDOW w AS (PARTITION BY c.currency ORDER BY m.accounting_month)""",
    "contract_balance_lines": """
        SELECT r.accounting_month, r.currency, 'CONTRACT_BALANCE' AS entry_type,
               concat_ws('-', 'CONTRACT_BALANCE', strftime(r.accounting_month, '%Y-%m'), r.currency) AS entry_id,
               r.accounting_month AS concerns_month, NULL::VARCHAR AS source_id, NULL::VARCHAR AS document_id,
               NULL::BIGINT AS payment_id,
               'Contract balances at ' || last_day(r.accounting_month)
                   || ': debit positions out of deferred revenue (change since the previous month end)' AS description,
               x.account, x.signed
        FROM reclass_changes r
        CROSS JOIN LATERAL (VALUES ('UNBILLED_AR', r.unbilled_ar), ('CONTRACT_ASSET', r.contract_asset),
                                   ('DEFERRED_REVENUE', -(r.unbilled_ar + r.contract_asset))) x(account, signed)""",
}
"""CONTRACT_BALANCE: per open month and currency, the month-end Σ unbilled AR and Σ contract assets of the contracts'
positions minus the month before (for F: the posted balances), moved out of DEFERRED_REVENUE."""


def _payment_lines(first_open: str) -> dict[str, str]:
    """PAYMENT entries of the applications not yet posted, booked in the later of the applied month and F.

    Each leg from its own column: CASH Dr the amount of a payment's money (PAYMENT, OVERPAYMENT, REFUND; void
    reversals only move money between documents and credit); AR Cr the amount reaching an invoice, Dr the
    amount leaving a credit note; CUSTOMER_CREDIT Cr ``to_account_credit``."""
    return {
        "payment_lines": f"""
            SELECT greatest({month_of('a.applied_on')}, {first_open}) AS accounting_month, a.currency,
                   'PAYMENT' AS entry_type, 'PAYMENT-' || a.application_id AS entry_id,
                   {month_of('a.applied_on')} AS concerns_month, a.application_id AS source_id,
                   coalesce(a.document_id, a.source_document_id) AS document_id, a.payment_id,
                   a.entry_type || ' ' || coalesce('payment ' || a.payment_id, 'credit note ' || s.document_number,
                                                   'account credit')
                       || ' to ' || coalesce(a.document_number, 'account credit') || ' on ' || a.applied_on AS description,
                   x.account, x.signed
            FROM ledger.payment_applications a
            LEFT JOIN ledger.documents s ON s.document_id = a.source_document_id
            ANTI JOIN posted_sources p ON p.entry_type = 'PAYMENT' AND p.source_id = a.application_id
            CROSS JOIN LATERAL (VALUES
                ('CASH', CASE WHEN a.{PAYMENT_MONEY} THEN a.amount ELSE 0 END),
                ('AR', CASE WHEN a.source_document_id IS NOT NULL THEN a.amount ELSE 0 END
                       - CASE WHEN a.document_id IS NOT NULL THEN a.amount ELSE 0 END),
                ('CUSTOMER_CREDIT', -a.to_account_credit)) x(account, signed)""",
    }


def journal_rows(con: duckdb.DuckDBPyConnection, first_open: date | None, run_id: str | None) -> str:
    """SELECT of ``revenue.open_journal_lines``: the journal of the open months F .. the latest month with activity."""
    f = first_open_literal(first_open)
    steps = {
        **contract_position_steps(con, first_open),
        **_document_entries(f),
        **RECOGNITION_LINES,
        **CONTRACT_BALANCE_LINES,
        **_payment_lines(f),
        "signed_lines": """
            SELECT * FROM document_lines UNION ALL BY NAME SELECT * FROM recognition_lines
            UNION ALL BY NAME SELECT * FROM contract_balance_lines UNION ALL BY NAME SELECT * FROM payment_lines""",
    }
    run = "NULL::VARCHAR" if run_id is None else quote_literal(run_id)
    return with_steps(steps, f"""
        SELECT md5(concat_ws('|', accounting_month, entry_type, entry_id, account, concerns_month)) AS journal_line_id,
               accounting_month, currency, entry_type, entry_id, account, {ACCOUNT_TYPE_SQL} AS account_type,
               greatest(signed, 0)::DECIMAL(18,4) AS debit, greatest(-signed, 0)::DECIMAL(18,4) AS credit,
               concerns_month, source_id, document_id, payment_id, description, {run} AS run_id
        FROM signed_lines WHERE signed <> 0
        ORDER BY accounting_month, currency, entry_type, entry_id, account""")
