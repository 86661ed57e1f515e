"""What a bill run would issue, for finance to review before finalizing (docs/billing.md "Settlement", "Exceptions").

Both builders read the run's differences (``build_settlement_lines``, staged as a relation) and return lazy
relations with the contract's columns:

* :func:`settlement_review`: per account, category (NEW_CHARGES, ADJUSTMENT, CREDIT, BEYOND_LOOKBACK), reason
  and service month, the lines and amounts (rows of ``billing.settlement_review``);
* :func:`billing_exceptions`: lines drafted without a tax rate (NO_TAX_RATE, blocking) and differences older
  than the lookback (BEYOND_LOOKBACK, reported only) (rows of ``billing.billing_exceptions``).
"""

from __future__ import annotations

from datetime import date

import duckdb

from domain.money import AMOUNT
from domain.periods import month_literal
from warehouse.tables import TABLES

SETTLEMENT_REVIEW_COLUMNS = list(TABLES["billing.settlement_review"].column_names)
BILLING_EXCEPTION_COLUMNS = list(TABLES["billing.billing_exceptions"].column_names)


def _document_type(invoice_id: str) -> str:
    """SQL: the draft document type of a line's invoice_id (CN-... drafts are credit notes)."""
    return f"CASE WHEN {invoice_id} LIKE 'CN-%' THEN 'CREDIT_NOTE' WHEN {invoice_id} IS NOT NULL THEN 'INVOICE' END"


def settlement_review(con: duckdb.DuckDBPyConnection, billing_month: date, settled: str) -> duckdb.DuckDBPyRelation:
    """Per account x category x reason x service month: lines, net, tax and total the run drafts (or, beyond
    the lookback, would), and the draft document they go out on (``document_type``). Category: BEYOND_LOOKBACK;
    CREDIT for a credit of an issued line (reason: the adjustment reason, SERVICE_CHANGE for a change effective
    in the current or next period: a cancellation, a downgrade); NEW_CHARGES for the current period (reason
    CURRENT_PERIOD); an earlier period's ADJUSTMENT (charged), with its reason. The credits of one account go
    to one draft (the credit note when it takes them), so each group's lines are on one document."""
    month = month_literal(billing_month)
    return con.sql(f"""
    SELECT {month} AS billing_month, account_id, any_value(currency) AS currency, category, reason, service_month,
           CAST(count(*) AS INTEGER) AS lines,
           CAST(sum(net_amount) AS {AMOUNT}) AS net_amount,
           CAST(sum(tax_amount) AS {AMOUNT}) AS tax_amount,
           CAST(sum(total_amount) AS {AMOUNT}) AS total_amount,
           max({_document_type('invoice_id')}) AS document_type
    FROM (
        SELECT *, coalesce(adjustment_reason, CASE WHEN category = 'CREDIT' THEN 'SERVICE_CHANGE'
                                                   ELSE 'CURRENT_PERIOD' END) AS reason
        FROM (SELECT *,
                     CASE WHEN beyond_lookback THEN 'BEYOND_LOOKBACK'
                          WHEN amount < 0 AND reference_line_id IS NOT NULL THEN 'CREDIT'
                          WHEN service_month = {month} THEN 'NEW_CHARGES'
                          WHEN amount < 0 THEN 'CREDIT' ELSE 'ADJUSTMENT' END AS category
              FROM {settled})
    )
    GROUP BY account_id, category, reason, service_month
    ORDER BY account_id, service_month, category, reason""")


def billing_exceptions(con: duckdb.DuckDBPyConnection, billing_month: date, settled: str) -> duckdb.DuckDBPyRelation:
    """NO_TAX_RATE (blocking) for each drafted line without a tax rate for its jurisdiction on its tax point;
    BEYOND_LOOKBACK (not blocking) per account and service month whose differences are older than the lookback."""
    month = month_literal(billing_month)
    return con.sql(f"""
    SELECT {month} AS billing_month, md5('NO_TAX_RATE|' || line_id) AS exception_id, account_id, invoice_id, line_id,
           'NO_TAX_RATE' AS exception, true AS blocking,
           'no tax rate for ' || coalesce(tax_jurisdiction, '(no jurisdiction)') || ' on '
             || CAST(tax_point AS VARCHAR) || ': ' || description AS detail
    FROM {settled}
    WHERE NOT beyond_lookback AND tax_rate IS NULL
    UNION ALL
    SELECT {month}, md5('BEYOND_LOOKBACK|' || CAST(account_id AS VARCHAR) || '|' || CAST(service_month AS VARCHAR)),
           account_id, NULL, NULL, 'BEYOND_LOOKBACK', false,
           CAST(count(*) AS VARCHAR) || ' difference(s) of service month ' || strftime(service_month, '%Y-%m')
             || ' older than the lookback, net ' || CAST(CAST(sum(net_amount) AS {AMOUNT}) AS VARCHAR) || ' '
             || any_value(currency) || ': not billed'
    FROM {settled}
    WHERE beyond_lookback
    GROUP BY account_id, service_month
    ORDER BY 3, 2""")
