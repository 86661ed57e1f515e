"""The bill cycle engine: invoice lines and draft invoice headers (docs/billing.md).

Plain functions over DuckDB SQL, no Dagster imports. Each takes a connection on which
``domain.install_macros(con)`` was called, the names of its input relations (warehouse tables by
default; tests pass their own) and the billing month; each returns a lazy ``DuckDBPyRelation``
whose columns are the contract's (``warehouse/tables/billing.py``).

The engine is a sequence of named steps, read as Kill Bill's invoice generator: the accounts
billed and their windows, the tax rate, recurring due, recurring billed, elementary intervals and
their state, segments, recurring lines priced, usage lines, one-time lines, rounding, discounts,
tax, the line rows; then the headers. Each step is a SELECT (``accounts.py``, ``recurring.py``,
``lines.py``, ``headers.py``) reading the steps before it by name; :func:`with_steps` composes
them into one WITH statement, and a test runs any step alone on tables named like its inputs.
Running the same month twice on the same inputs gives the same rows.
"""

from __future__ import annotations

from datetime import date

import duckdb

from domain.periods import month_literal
from domain.sql import columns_of, live
from pipelines.invoicing.accounts import account_tax_rates, billed_accounts, billing_windows
from pipelines.invoicing.headers import invoice_header_rows, invoice_totals
from pipelines.invoicing.lines import (
    credited_line_bundles,
    discounted_lines,
    invoice_line_rows,
    one_time_lines,
    recurring_lines,
    recurring_lines_priced,
    rounded_lines,
    taxed_lines,
    usage_lines,
)
from pipelines.invoicing.recurring import (
    earlier_recurring_lines,
    elementary_intervals,
    interval_states,
    intervals_billed,
    intervals_due,
    recurring_billed,
    recurring_due,
    recurring_prices,
    recurring_segments,
    service_versions,
)
from warehouse.tables import TABLES

__all__ = ["build_invoice_lines", "build_invoices", "INVOICE_LINE_COLUMNS", "INVOICE_COLUMNS"]

INVOICE_LINE_COLUMNS = list(TABLES["billing.invoice_lines"].column_names)

INVOICE_COLUMNS = list(TABLES["billing.invoices"].column_names)


def with_steps(steps: dict[str, str], final: str) -> str:
    """One statement: ``WITH name AS (select), ...`` over the steps in order, then ``final``."""
    return "WITH " + ",\n".join(f"{name} AS ({select}\n)" for name, select in steps.items()) + "\n" + final


def build_invoice_lines(
    con: duckdb.DuckDBPyConnection,
    billing_month: date,
    *,
    accounts: str = "core.billing_accounts",
    customers: str = "core.customers",
    versions: str = "core.subscription_versions",
    charges: str = "core.plan_charges",
    products: str = "core.products",
    plans: str = "core.price_plans",
    bundles: str = "core.bundles",
    orders: str = "core.orders",
    order_items: str = "core.order_items",
    tax_rates: str = "core.tax_rates",
    rated: str = "billing.rated_usage",
    billed: str = "billing.invoice_lines",
) -> duckdb.DuckDBPyRelation:
    """Invoice lines of the bill cycle ``billing_month`` (rows of ``billing.invoice_lines``).

    ``billed`` is read only for billing months before ``billing_month``; ``rated`` only for
    ``billing_month`` itself; soft-deleted rows of every input are ignored. See docs/billing.md.
    """
    month = month_literal(billing_month)
    products, plans = live(con, products), live(con, plans)
    steps = {
        "billed_accounts": billed_accounts(month, live(con, accounts), live(con, customers)),
        "billing_windows": billing_windows(),
        "account_tax_rates": account_tax_rates(live(con, tax_rates)),
        "service_versions": service_versions(live(con, versions)),
        "recurring_prices": recurring_prices(live(con, charges)),
        "recurring_due": recurring_due(),
        "earlier_recurring_lines": earlier_recurring_lines(month, billed),
        "recurring_billed": recurring_billed(),
        "elementary_intervals": elementary_intervals(),
        "intervals_due": intervals_due(),
        "intervals_billed": intervals_billed(),
        "interval_states": interval_states(),
        "recurring_segments": recurring_segments(),
        "credited_line_bundles": credited_line_bundles(),
        "recurring_lines_priced": recurring_lines_priced(),
        "recurring_lines": recurring_lines(products, plans, live(con, bundles)),
        "usage_lines": usage_lines(month, rated, products, plans, columns_of(con, rated)),
        "one_time_lines": one_time_lines(month, live(con, orders), live(con, order_items), products, billed),
        "rounded_lines": rounded_lines(),
        "discounted_lines": discounted_lines(),
        "taxed_lines": taxed_lines(),
    }
    return con.sql(with_steps(steps, invoice_line_rows(month)))


def build_invoices(
    con: duckdb.DuckDBPyConnection,
    billing_month: date,
    lines: str,
    *,
    accounts: str = "core.billing_accounts",
    customers: str = "core.customers",
) -> duckdb.DuckDBPyRelation:
    """Draft invoice headers (rows of ``billing.invoices``) from the month's lines in ``lines``.

    One invoice per invoice_id having at least one line in ``billing_month``; totals are sums
    of the rounded line amounts, never re-rounded.
    """
    month = month_literal(billing_month)
    steps = {
        "billed_accounts": billed_accounts(month, live(con, accounts), live(con, customers)),
        "invoice_totals": invoice_totals(month, lines),
    }
    return con.sql(with_steps(steps, invoice_header_rows(month)))
