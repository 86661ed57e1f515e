"""AR aging: open invoice amounts as of a date, by days past due (docs/billing.md "Payments and receivables").

The ledger as of ``as_of``: documents issued on or before it, voids with ``voided_on`` on or before it and
applications with ``applied_on`` on or before it. An invoice is ``current`` until its due date, then
1-30, 31-60, 61-90 and over 90 days past due (``as_of - due_date``).
"""

from __future__ import annotations

from datetime import date

import duckdb

BUCKETS = ("current_amount", "days_1_30", "days_31_60", "days_61_90", "days_over_90")


def _aging(dates: str) -> str:
    """``billing.ar_aging`` rows for every (billing_month, as_of) of ``dates``."""
    return f"""
        WITH dates AS ({dates}),
        applied AS (
            SELECT t.as_of, a.document_id, sum(a.amount) AS applied
            FROM dates t JOIN ledger.payment_applications a ON a.applied_on <= t.as_of
            WHERE a.document_id IS NOT NULL GROUP BY ALL
        ), voided AS (
            SELECT t.as_of, v.document_id FROM dates t JOIN ledger.voids v ON v.voided_on <= t.as_of
        ), open_invoices AS (
            SELECT t.billing_month, t.as_of, d.account_id, d.currency, t.as_of - d.due_date AS days_past_due,
                   d.total - coalesce(p.applied, 0) AS open_amount
            FROM dates t JOIN ledger.documents d ON d.issue_date <= t.as_of AND d.document_type = 'INVOICE'
            LEFT JOIN applied p ON p.as_of = t.as_of AND p.document_id = d.document_id
            ANTI JOIN voided v ON v.as_of = t.as_of AND v.document_id = d.document_id
        ), buckets AS (
            SELECT billing_month, as_of, account_id, currency,
                   sum(open_amount) FILTER (WHERE days_past_due <= 0) AS current_amount,
                   sum(open_amount) FILTER (WHERE days_past_due BETWEEN 1 AND 30) AS days_1_30,
                   sum(open_amount) FILTER (WHERE days_past_due BETWEEN 31 AND 60) AS days_31_60,
                   sum(open_amount) FILTER (WHERE days_past_due BETWEEN 61 AND 90) AS days_61_90,
                   sum(open_amount) FILTER (WHERE days_past_due > 90) AS days_over_90
            FROM open_invoices GROUP BY ALL
        ), credit AS (
            SELECT t.billing_month, t.as_of, a.account_id, a.currency, sum(a.to_account_credit) AS account_credit
            FROM dates t JOIN ledger.payment_applications a ON a.applied_on <= t.as_of GROUP BY ALL
        )
        SELECT billing_month, as_of, account_id, currency,
               {", ".join(f"coalesce({c}, 0)::DECIMAL(18,4) AS {c}" for c in BUCKETS)},
               ({" + ".join(f"coalesce({c}, 0)" for c in BUCKETS)})::DECIMAL(18,4) AS open_ar,
               coalesce(account_credit, 0)::DECIMAL(18,4) AS account_credit
        FROM buckets FULL JOIN credit USING (billing_month, as_of, account_id, currency)
        WHERE open_ar <> 0 OR account_credit <> 0
        ORDER BY billing_month, account_id, currency"""



def ar_aging(con: duckdb.DuckDBPyConnection, as_of: date) -> duckdb.DuckDBPyRelation:
    """AR aging as of any date (``billing.ar_aging`` columns; billing_month = the month containing as_of)."""
    return con.sql(_aging(f"SELECT date_trunc('month', DATE '{as_of.isoformat()}')::DATE AS billing_month, "
                          f"DATE '{as_of.isoformat()}' AS as_of"))


def month_end_aging(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    """``billing.ar_aging``: the aging at the last day of every finalized billing month."""
    return con.sql(_aging("SELECT billing_month, last_day(billing_month) AS as_of FROM ledger.finalized_months"))
