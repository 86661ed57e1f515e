"""Performance obligations from the billing ledger (docs/revenue.md "Obligations").

One obligation per line of an issued document (``ledger.document_lines``), one reversal per line of a
voided document (``'VOID-' || line_id``), one ``CONTRACT_END`` per committed contract whose commitment
ended (``'END-' || contract_id``, pipelines/revenue/allocation.py) and one estimate per line the bill runs
still to come will invoice for what is rendered by the end of the latest month computed (``'ACCRUED-' ||
<settlement line id>``, pipelines/revenue/accrual.py: usage of a period in progress, service days, one-time items
delivered; billed 0, recognized like the line that will invoice it, which replaces it). Each obligation has a
kind, a recognition pattern and window, the product line it credits, the month its billing is booked in and
the transaction price allocated to it.

Named steps (each a SELECT over the steps before it, composed with ``with_steps``): :func:`ledger_lines`
and :func:`estimated_lines` → :func:`obligation_lines` → :func:`line_obligations` (kind, pattern,
window) → the allocation steps → :func:`obligation_table`.
"""

from __future__ import annotations

from datetime import date

import duckdb

from domain.money import AMOUNT
from domain.periods import OPEN_END_DATE, month_literal
from domain.sql import live
from pipelines.invoicing.engine import with_steps
from pipelines.revenue import allocation
from warehouse.tables import TABLES

__all__ = ["obligation_rows", "obligation_steps", "is_estimate", "last_month_sql", "EXPECTED_SERVICE_MONTHS",
           "ESTIMATE_PREFIX", "OBLIGATION_COLUMNS"]

OBLIGATION_COLUMNS = list(TABLES["revenue.performance_obligations"].column_names)

# Finance's estimate of a customer's life in months: the term an activation fee of a month-to-month
# service is recognized over (a committed contract uses its own term).
EXPECTED_SERVICE_MONTHS = 24

# The obligation_id prefix of an estimate: a line rendered and not yet invoiced ('ACCRUED-<settlement line id>').
ESTIMATE_PREFIX = "ACCRUED-"

RECURRING_TYPES = ("RECURRING", "RECURRING_CREDIT")
ONE_TIME_TYPES = ("ONE_TIME", "ONE_TIME_CREDIT")
CONSUMPTION_TYPES = ("USAGE", "USAGE_ADJUSTMENT")


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def first_open_literal(first_open: date | None) -> str:
    """The first open month as SQL (NULL when nothing has activity: greatest() then ignores it)."""
    return month_literal(first_open) if first_open else "CAST(NULL AS DATE)"


def last_month_sql(first_open: date | None) -> str:
    """Scalar SQL: the latest month the engine computes (the open journal's last month L): the latest month with
    activity — a document issued, a void, a payment application, a finalized billing month — never before F."""
    return f"""greatest({first_open_literal(first_open)}, (SELECT max(m) FROM (
        SELECT max(CAST(date_trunc('month', issue_date) AS DATE)) AS m FROM ledger.documents
        UNION ALL SELECT max(CAST(date_trunc('month', voided_on) AS DATE)) FROM ledger.voids
        UNION ALL SELECT max(CAST(date_trunc('month', applied_on) AS DATE)) FROM ledger.payment_applications
        UNION ALL SELECT max(billing_month) FROM ledger.finalized_months)))"""


def is_estimate(obligation_id: str = "obligation_id") -> str:
    """SQL: whether ``obligation_id`` is an estimate (``ACCRUED-<settlement line id>``): revenue rendered and not
    yet invoiced, replaced by the invoiced line once it is."""
    return f"starts_with({obligation_id}, '{ESTIMATE_PREFIX}')"


def ledger_lines() -> str:
    """Step: every issued line with its document's issue date, its void date (if voided) and the order item a
    one-time line bills (its source_ref); billed its net amount."""
    return f"""
    SELECT l.line_id, l.document_id, l.account_id, l.currency, l.subscription_id, l.line_type, l.product_id,
           l.plan_id, l.price_id, l.service_start, l.service_end, l.quantity, l.unit_price, l.days, l.period_days,
           l.amount, CAST(l.net_amount AS {AMOUNT}) AS net_amount, CAST(l.net_amount AS {AMOUNT}) AS billed_amount,
           l.reference_line_id, d.issue_date, v.voided_on,
           CASE WHEN l.line_type IN {_in(ONE_TIME_TYPES)} THEN TRY_CAST(l.source_ref AS BIGINT) END AS order_item_id
    FROM ledger.document_lines l
    JOIN ledger.documents d ON d.document_id = l.document_id
    LEFT JOIN ledger.voids v ON v.document_id = l.document_id"""


def estimated_lines(unbilled: str) -> str:
    """Step: the estimates: each settlement line of ``unbilled`` (pipelines/revenue/accrual.py: rendered by the end
    of the latest month computed and not yet invoiced, from the account's next bill run) as the ledger line it will
    be: ``'ACCRUED-' || line_id``, its draft invoice as document, its net amount (after bundle discount and coupon),
    billed 0."""
    return f"""
    SELECT '{ESTIMATE_PREFIX}' || u.line_id AS line_id, u.invoice_id AS document_id, u.account_id, u.currency,
           u.subscription_id, u.line_type, u.product_id, u.plan_id, u.price_id, u.service_start, u.service_end,
           u.quantity, u.unit_price, u.days, u.period_days, u.amount, CAST(u.net_amount AS {AMOUNT}) AS net_amount,
           CAST(0 AS {AMOUNT}) AS billed_amount, u.reference_line_id, CAST(NULL AS DATE) AS issue_date,
           CAST(NULL AS DATE) AS voided_on,
           CASE WHEN u.line_type IN {_in(ONE_TIME_TYPES)} THEN TRY_CAST(u.source_ref AS BIGINT) END AS order_item_id
    FROM {unbilled} u"""


def obligation_lines(con: duckdb.DuckDBPyConnection) -> str:
    """Step: the issued lines and the estimates, each with its product line, the order it traces to (the
    subscription's activating order; a one-time item's order) and the subscription's bundle and end."""
    return f"""
    SELECT l.*, {is_estimate("l.line_id")} AS is_estimate, coalesce(p.category, 'UNCLASSIFIED') AS product_line,
           coalesce(s.created_order_id, oi.order_id) AS order_id, s.bundle_id
    FROM (SELECT * FROM ledger_lines UNION ALL BY NAME SELECT * FROM estimated_lines) l
    LEFT JOIN {live(con, "core.products")} p ON p.product_id = l.product_id
    LEFT JOIN {live(con, "core.subscriptions")} s ON s.subscription_id = l.subscription_id
    LEFT JOIN {live(con, "core.order_items")} oi ON oi.order_item_id = l.order_item_id"""


def fee_terms(con: duckdb.DuckDBPyConnection) -> str:
    """Step: per order, the term its fees are recognized over (its contract_term_months, else
    EXPECTED_SERVICE_MONTHS) and the end of its services (the latest end_date of the subscriptions it
    activated; open when none ended)."""
    return f"""
    SELECT o.order_id, coalesce(o.contract_term_months, {EXPECTED_SERVICE_MONTHS}) AS term_months,
           (SELECT max(s.end_date) FROM {live(con, "core.subscriptions")} s WHERE s.created_order_id = o.order_id)
             AS services_end
    FROM {live(con, "core.orders")} o"""


def line_obligations() -> str:
    """Step: each line as an obligation: contract, kind, pattern and window.

    SERVICE (recurring) RATABLE over [service_start, service_end); USAGE and USAGE_ADJUSTMENT CONSUMPTION,
    other rated types RATABLE, over their window; GOOD (a DEVICE one-time item) POINT_IN_TIME at delivery
    (service_start); FEE (another one-time item) RATABLE from service_start over the expected service term,
    the window cut at the end of the order's services, ``spread_days`` the whole term. A window of less
    than a day is one day."""
    return f"""
    SELECT *, CAST(greatest(CASE WHEN obligation_kind = 'FEE' THEN fee_term_end - recognition_start
                                 ELSE recognition_end - recognition_start END, 1) AS INTEGER) AS spread_days
    FROM (
        SELECT * EXCLUDE (kind, start_day), kind AS obligation_kind,
               CASE WHEN kind = 'GOOD' THEN 'POINT_IN_TIME'
                    WHEN line_type IN {_in(CONSUMPTION_TYPES)} THEN 'CONSUMPTION' ELSE 'RATABLE' END AS pattern,
               start_day AS recognition_start,
               greatest(CASE WHEN kind = 'GOOD' THEN start_day
                             WHEN kind = 'FEE' THEN least(fee_term_end, coalesce(services_end, {OPEN_END_DATE}))
                             ELSE service_end END, CAST(start_day + 1 AS DATE)) AS recognition_end
        FROM (
            SELECT l.*, t.services_end,
                   coalesce('ORD-' || CAST(l.order_id AS VARCHAR), 'ACC-' || CAST(l.account_id AS VARCHAR)) AS contract_id,
                   coalesce(l.service_start, l.issue_date) AS start_day,
                   CAST(coalesce(l.service_start, l.issue_date)
                        + to_months(coalesce(t.term_months, {EXPECTED_SERVICE_MONTHS})) AS DATE) AS fee_term_end,
                   CASE WHEN l.line_type IN {_in(RECURRING_TYPES)} THEN 'SERVICE'
                        WHEN l.line_type IN {_in(ONE_TIME_TYPES)} AND l.product_line = 'DEVICE' THEN 'GOOD'
                        WHEN l.line_type IN {_in(ONE_TIME_TYPES)} THEN 'FEE'
                        ELSE 'USAGE' END AS kind
            FROM obligation_lines l
            LEFT JOIN fee_terms t ON t.order_id = l.order_id
        )
    )"""


def posted_billings() -> str:
    """Step: the accounting month each document's BILLING and VOID entries were posted in (closed months)."""
    return """
    SELECT source_id AS document_id, entry_type, min(accounting_month) AS posted_month
    FROM revenue.journal_lines WHERE entry_type IN ('BILLING', 'VOID') GROUP BY source_id, entry_type"""


def obligation_table(first_open: date | None) -> str:
    """Step: rows of revenue.performance_obligations: the lines and the estimates (allocated their allocation,
    else their net amount), the reversals of voided lines (negated, booked in the void's month) and the ends of
    commitments. billed_month = the posted month, else greatest(the month of the issue or void date, F); an
    estimate's (billed 0) the month its recognition starts (delivery, first day of service or usage)."""
    f = first_open_literal(first_open)
    columns = """o.contract_id, o.account_id, o.currency, {document}, {line}, {reference}, o.obligation_kind,
           o.pattern, o.product_id, o.product_line, o.recognition_start, o.recognition_end, o.spread_days"""
    return f"""
    SELECT o.line_id AS obligation_id,
           {columns.format(document="CASE WHEN o.is_estimate THEN NULL ELSE o.document_id END AS document_id",
                           line="CASE WHEN o.is_estimate THEN NULL ELSE o.line_id END AS line_id",
                           reference="o.reference_line_id")},
           CASE WHEN o.is_estimate THEN CAST(date_trunc('month', o.recognition_start) AS DATE)
                ELSE coalesce(b.posted_month, greatest(CAST(date_trunc('month', o.issue_date) AS DATE), {f})) END
             AS billed_month,
           o.billed_amount, CAST(coalesce(a.allocated_amount, o.net_amount) AS {AMOUNT}) AS allocated_amount,
           o.subscription_id, o.price_id
    FROM line_obligations o
    LEFT JOIN obligation_allocations a ON a.obligation_id = o.line_id
    LEFT JOIN posted_billings b ON b.document_id = o.document_id AND b.entry_type = 'BILLING'
    UNION ALL
    SELECT 'VOID-' || o.line_id, {columns.format(document="o.document_id", line="o.line_id", reference="o.line_id")},
           coalesce(b.posted_month, greatest(CAST(date_trunc('month', o.voided_on) AS DATE), {f})),
           -o.net_amount, CAST(-o.net_amount AS {AMOUNT}), o.subscription_id, o.price_id
    FROM line_obligations o
    LEFT JOIN posted_billings b ON b.document_id = o.document_id AND b.entry_type = 'VOID'
    WHERE o.voided_on IS NOT NULL
    UNION ALL
    SELECT obligation_id, contract_id, account_id, currency, NULL, NULL, NULL, 'CONTRACT_END', 'POINT_IN_TIME',
           product_id, product_line, end_date, CAST(end_date + 1 AS DATE), 1,
           greatest(CAST(date_trunc('month', end_date) AS DATE), {f}), CAST(0 AS {AMOUNT}), allocated_amount,
           CAST(NULL AS BIGINT), CAST(NULL AS BIGINT)
    FROM contract_ends"""


def obligation_steps(con: duckdb.DuckDBPyConnection, first_open: date | None, unbilled: str | None = None) -> dict[str, str]:
    """The steps from the ledger and the estimates to the obligations and their allocation (the allocation's steps
    included); ``unbilled`` the relation of the lines rendered and not yet invoiced (pipelines/revenue/accrual.py),
    built now for ``first_open`` when not given."""
    from pipelines.revenue.accrual import build_unbilled_lines  # the accrual reads this module's bounds

    return {
        "ledger_lines": ledger_lines(),
        "estimated_lines": estimated_lines(unbilled or build_unbilled_lines(con, first_open)),
        "obligation_lines": obligation_lines(con),
        "fee_terms": fee_terms(con),
        "line_obligations": line_obligations(),
        **allocation.allocation_steps(con),
    }


def obligation_rows(con: duckdb.DuckDBPyConnection, first_open: date | None, unbilled: str | None = None) -> str:
    """SELECT of revenue.performance_obligations (contract column order), ``first_open`` the first open month,
    ``unbilled`` as in :func:`obligation_steps`."""
    steps = {**obligation_steps(con, first_open, unbilled), "posted_billings": posted_billings(),
             "obligations": obligation_table(first_open)}
    return with_steps(steps, f"SELECT {', '.join(OBLIGATION_COLUMNS)} FROM obligations ORDER BY obligation_id")
