"""The bill cycle engine: each bill run settles what is owed against what was issued (docs/billing.md).

Plain functions over DuckDB SQL, no Dagster imports. Each takes a connection on which
``domain.install_macros(con)`` was called, the names of its input relations (warehouse tables by
default; tests pass their own) and the billing month; each returns a lazy ``DuckDBPyRelation``
whose columns are the contract's (``warehouse/tables/billing.py``).

The engine is a sequence of named steps, read as Kill Bill's invoice generator with its repair items:
what was issued and how far back the run settles, the accounts billed, the tax rate, recurring owed and
issued per charge period, elementary intervals and their state, segments, recurring lines priced, usage
and one-time owed minus issued, rounding, bundle discounts, coupons, tax, the draft document of each line,
the line rows; then the headers. Each step is a SELECT (``accounts.py``, ``recurring.py``, ``lines.py``,
``coupons.py``, ``headers.py``) reading the steps before it by name; :func:`with_steps` composes them into
one WITH statement, and a test runs any step alone on tables named like its inputs. Running the same month
twice on the same inputs gives the same rows.
"""

from __future__ import annotations

from datetime import date

import duckdb

from domain.periods import month_literal
from domain.sql import columns_of, live
from pipelines.invoicing.accounts import (
    account_tax_rates,
    billed_accounts,
    due_horizons,
    issued_lines,
    looked_at,
    settled_accounts,
    settlement_months,
    voided_lines,
)
from pipelines.invoicing.coupons import coupon_steps
from pipelines.invoicing.fingerprints import account_inputs, catalog_hashes, rated_inputs, settlement_fingerprints, settlement_rules
from pipelines.invoicing.headers import invoice_header_rows, invoice_totals
from pipelines.invoicing.lines import (
    credited_lines,
    discounted_lines,
    invoice_line_rows,
    one_time_issued,
    one_time_lines,
    one_time_owed,
    recurring_lines,
    recurring_lines_priced,
    rounded_lines,
    routed_lines,
    settled_line_rows,
    taxed_lines,
    usage_issued,
    usage_lines,
    usage_owed,
)
from pipelines.invoicing.recurring import (
    charge_period_pieces,
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

__all__ = ["build_invoice_lines", "build_invoices", "build_settlement_lines", "build_settlement_fingerprints",
           "INVOICE_LINE_COLUMNS", "INVOICE_COLUMNS"]

INVOICE_LINE_COLUMNS = list(TABLES["billing.invoice_lines"].column_names)

INVOICE_COLUMNS = list(TABLES["billing.invoices"].column_names)


def with_steps(steps: dict[str, str], final: str) -> str:
    """One statement: ``WITH name AS (select), ...`` over the steps in order, then ``final``."""
    return "WITH " + ",\n".join(f"{name} AS ({select}\n)" for name, select in steps.items()) + "\n" + final


LOOKBACK_MONTHS = 12  # how many months back a bill run settles (older differences are reported, not billed)
CREDIT_NOTE_CUSTOMER_TYPES = ("BUSINESS",)  # customer types whose credits go out as credit notes

INPUT_DEFAULTS = {
    "accounts": "core.billing_accounts", "customers": "core.customers", "versions": "core.subscription_versions",
    "charges": "core.plan_charges", "products": "core.products", "plans": "core.price_plans",
    "bundles": "core.bundles_history", "bundle_members": "core.bundle_members", "orders": "core.orders",
    "order_items": "core.order_items", "tax_rates": "core.tax_rates", "rated": "billing.rated_usage",
    "billed": "billing.invoice_lines", "document_lines": "ledger.document_lines", "voids": "ledger.voids",
    "finalized_months": "ledger.finalized_months", "coupons": "core.coupons",
    "coupon_products": "core.coupon_products", "coupon_redemptions": "core.coupon_redemptions",
    "settlement_inputs": "billing.settlement_inputs",
    "all_document_lines": None, "all_billed": None,
}
"""The input relations by name. ``all_document_lines`` and ``all_billed`` are the whole ledger and drafts the
go-live month is taken over (``settlement_months``), when ``document_lines``, ``billed`` (and ``rated``) hold only
the settled accounts' rows, as a shard's run passes them (pipelines/invoicing/run.py); by default the same."""


def _inputs(inputs: dict[str, str]) -> dict[str, str]:
    """The input relations by name: INPUT_DEFAULTS overridden by ``inputs`` (unknown names refused)."""
    if unknown := set(inputs) - set(INPUT_DEFAULTS):
        raise TypeError(f"unknown invoicing inputs: {sorted(unknown)}")
    i = {**INPUT_DEFAULTS, **inputs}
    return {**i, "all_document_lines": i["all_document_lines"] or i["document_lines"],
            "all_billed": i["all_billed"] or i["billed"]}


def _account_steps(con: duckdb.DuckDBPyConnection, month: str, i: dict[str, str], lookback_months: int,
                   credit_note_customer_types) -> dict[str, str]:
    """The first steps of a bill run: the accounts billed and the months it settles."""
    return {
        "billed_accounts": billed_accounts(month, live(con, i["accounts"]), live(con, i["customers"]),
                                           tuple(credit_note_customer_types)),
        "settlement_months": settlement_months(month, lookback_months, i["all_document_lines"], i["finalized_months"],
                                               i["all_billed"]),
    }


def _settlement_steps(con: duckdb.DuckDBPyConnection, month: str, inputs: dict[str, str], lookback_months: int,
                      credit_note_customer_types, resettled: str | None) -> dict[str, str]:
    """The named steps of a bill run, from what was issued to the routed, taxed lines."""
    i = _inputs(inputs)
    products, plans = live(con, i["products"]), live(con, i["plans"])
    return {
        **_account_steps(con, month, i, lookback_months, credit_note_customer_types),
        "settled_accounts": settled_accounts(month, resettled),
        "due_horizons": due_horizons(),
        "looked_at": looked_at(),
        "issued_lines": issued_lines(month, i["document_lines"], i["voids"], i["finalized_months"], i["billed"]),
        "voided_lines": voided_lines(i["document_lines"], i["voids"]),
        "account_tax_rates": account_tax_rates(live(con, i["tax_rates"])),
        "service_versions": service_versions(live(con, i["versions"])),
        "recurring_prices": recurring_prices(live(con, i["charges"])),
        "recurring_due": recurring_due(),
        "recurring_billed": recurring_billed(),
        "charge_period_pieces": charge_period_pieces(),
        "elementary_intervals": elementary_intervals(),
        "intervals_due": intervals_due(),
        "intervals_billed": intervals_billed(),
        "interval_states": interval_states(),
        "recurring_segments": recurring_segments(),
        "credited_lines": credited_lines(),
        "recurring_lines_priced": recurring_lines_priced(),
        "recurring_lines": recurring_lines(month, products, plans, live(con, i["bundles"]),
                                           live(con, i["bundle_members"])),
        "usage_owed": usage_owed(month, i["rated"], columns_of(con, i["rated"])),
        "usage_issued": usage_issued(),
        "usage_lines": usage_lines(month, products, plans),
        "one_time_owed": one_time_owed(live(con, i["orders"]), live(con, i["order_items"]), products),
        "one_time_issued": one_time_issued(),
        "one_time_lines": one_time_lines(month),
        "rounded_lines": rounded_lines(),
        "discounted_lines": discounted_lines(),
        **coupon_steps(con, month, coupons=i["coupons"], coupon_products=i["coupon_products"],
                       redemptions=i["coupon_redemptions"]),
        "taxed_lines": taxed_lines(),
        "routed_lines": routed_lines(),
    }


def _bill_run(con: duckdb.DuckDBPyConnection, billing_month: date, final, *, lookback_months: int = LOOKBACK_MONTHS,
              credit_note_customer_types=CREDIT_NOTE_CUSTOMER_TYPES, resettled: str | None = None,
              **inputs: str) -> duckdb.DuckDBPyRelation:
    """The bill run's steps composed with the step ``final(month)`` reading them."""
    month = month_literal(billing_month)
    steps = _settlement_steps(con, month, inputs, lookback_months, credit_note_customer_types, resettled)
    return con.sql(with_steps(steps, final(month)))


def build_settlement_lines(con: duckdb.DuckDBPyConnection, billing_month: date, **options) -> duckdb.DuckDBPyRelation:
    """Every difference the bill run of ``billing_month`` finds between what is owed and what was issued: the
    ``billing.invoice_lines`` columns plus ``beyond_lookback`` (true: older than the lookback, reported in
    settlement_review / billing_exceptions, never drafted; its invoice_id is NULL). Options as
    :func:`build_invoice_lines`, plus ``resettled``: a relation (account_id, resettle) from
    :func:`build_settlement_fingerprints`; an account whose resettle is false is settled from its current period
    (pipelines/invoicing/fingerprints.py), which finds the same differences. Without it every account is
    settled in full."""
    return _bill_run(con, billing_month, settled_line_rows, **options)


def build_settlement_fingerprints(con: duckdb.DuckDBPyConnection, billing_month: date, *,
                                  lookback_months: int = LOOKBACK_MONTHS,
                                  credit_note_customer_types=CREDIT_NOTE_CUSTOMER_TYPES,
                                  **inputs: str) -> duckdb.DuckDBPyRelation:
    """Per account billed by the run of ``billing_month``: period_start, period_end, inputs_hash and resettle
    (pipelines/invoicing/fingerprints.py), compared with ``settlement_inputs`` (billing.settlement_inputs, what
    earlier runs stored). Options as :func:`build_invoice_lines`."""
    month = month_literal(billing_month)
    i = _inputs(inputs)
    steps = {
        **_account_steps(con, month, i, lookback_months, credit_note_customer_types),
        "catalog_hashes": catalog_hashes(*(live(con, i[k]) for k in ("charges", "plans", "products", "bundles",
                                                                     "bundle_members", "coupons", "coupon_products"))),
        "account_inputs": account_inputs(*(live(con, i[k]) for k in ("accounts", "customers", "versions", "orders",
                                                                     "order_items", "coupon_redemptions")),
                                         i["document_lines"], i["voids"]),
        "rated_inputs": rated_inputs(month, i["rated"], lookback_months),
    }
    final = settlement_fingerprints(month, i["settlement_inputs"], i["finalized_months"],
                                    settlement_rules(lookback_months))
    return con.sql(with_steps(steps, final))


def build_invoice_lines(con: duckdb.DuckDBPyConnection, billing_month: date, **options) -> duckdb.DuckDBPyRelation:
    """Draft lines of the bill run ``billing_month`` (rows of ``billing.invoice_lines``): what is owed up to the
    run's period minus what was issued (ledger lines not voided + drafts of earlier unfinalized months), within
    the lookback. ``options``: ``lookback_months`` (default 12), ``credit_note_customer_types`` (default
    ("BUSINESS",)) and the input relations by name (keys of INPUT_DEFAULTS; defaults: the warehouse tables);
    soft-deleted rows of every input are ignored. See docs/billing.md "Settlement"."""
    return _bill_run(con, billing_month, invoice_line_rows, **options)


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
        "billed_accounts": billed_accounts(month, live(con, accounts), live(con, customers), ()),
        "invoice_totals": invoice_totals(month, lines),
    }
    return con.sql(with_steps(steps, invoice_header_rows(month)))
