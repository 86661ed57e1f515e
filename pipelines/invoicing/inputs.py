"""Typed invoicing inputs from plain Python rows: for library users' examples and tests.

``create_invoicing_inputs(con, "core", accounts=[...], versions=[...], charges=[...], ...)`` creates
the inputs of :func:`~pipelines.invoicing.engine.build_invoice_lines` in ``schema``, each
as its contract table (``warehouse/tables/``) holding the given rows (exact decimals, see
``warehouse.fixtures``), and returns the keyword arguments for ``build_invoice_lines``::

    kw = create_invoicing_inputs(con, accounts=[{"account_id": 1}], customers=[{"customer_id": 1}],
                                 plans=[{"plan_id": 100, "product_id": 10}],
                                 charges=[{"price_id": 1000, "plan_id": 100, "unit_price": "29.99"}],
                                 versions=[{"subscription_id": 1, "account_id": 1, "plan_id": 100,
                                            "valid_from": "2025-03-01"}])
    lines = build_invoice_lines(con, date(2025, 3, 1), **kw)

Every table is created, empty when no rows are given. Defaults (a row's own values win):

* accounts: ``account_number`` ``A0001`` for account 1, customer 1, MONTHLY on day 1, 30 days'
  terms, USD, ACTIVE; customers: US, INDIVIDUAL, ACTIVE;
* versions: the product of the version's plan (from ``plans``), quantity 1, open end
  9999-12-31, order 1, ACTIVATE;
* charges: a RECURRING FLAT fee, IN_ADVANCE, prorated, in force since 2000-01-01;
* products: SUBSCRIPTION in USD, ACTIVE; plans: USD, ACTIVE; bundles (``core.bundles_history``): ACTIVE,
  in force 2000-01-01 .. 9999-12-31; bundle members, coupons, coupon products and redemptions: live
  (redemptions ACTIVE); orders:
  NEW_SERVICE, CONFIRMED; order items: quantity 1; tax rates: in force since 2000-01-01;
* rated (``billing.rated_usage``): a USAGE line of a PER_UNIT charge in USD, its period and exact
  segment = its service dates, proration factor 1, nothing included, billable quantity = quantity;
* billed (``billing.invoice_lines``, the drafts) and document_lines (``ledger.document_lines``, an INVOICE's):
  RECURRING in USD, no discount, coupon or tax, net and total = amount, service month = billing month;
* voids (``ledger.voids``): an INVOICE, reason "test"; finalized months: zero counts;
* rows of tables with ``is_deleted``: live (false).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import duckdb

from warehouse.fixtures import create_table_with_rows

_LIVE = {"is_deleted": False}

# argument of build_invoice_lines -> (contract table, static defaults)
_INPUT_TABLES: dict[str, tuple[str, dict]] = {
    "accounts": ("core.billing_accounts", {
        **_LIVE, "customer_id": 1, "billing_cycle": "MONTHLY", "bill_cycle_day": 1, "payment_terms_days": 30,
        "currency": "USD", "status": "ACTIVE"}),
    "customers": ("core.customers", {**_LIVE, "country": "US", "customer_type": "INDIVIDUAL", "status": "ACTIVE"}),
    "versions": ("core.subscription_versions", {
        "quantity": 1, "valid_to": "9999-12-31", "order_id": 1, "change_kind": "ACTIVATE"}),
    "charges": ("core.plan_charges", {
        **_LIVE, "charge_code": "BASE_FEE", "charge_type": "RECURRING", "charge_model": "FLAT",
        "billing_timing": "IN_ADVANCE", "prorate": True, "effective_from": "2000-01-01 00:00:00"}),
    "products": ("core.products", {**_LIVE, "product_type": "SUBSCRIPTION", "currency": "USD", "status": "ACTIVE"}),
    "plans": ("core.price_plans", {**_LIVE, "currency": "USD", "status": "ACTIVE"}),
    "bundles": ("core.bundles_history", {
        **_LIVE, "status": "ACTIVE", "valid_from": "2000-01-01 00:00:00", "valid_to": "9999-12-31 00:00:00"}),
    "bundle_members": ("core.bundle_members", {**_LIVE}),
    "orders": ("core.orders", {**_LIVE, "order_type": "NEW_SERVICE", "status": "CONFIRMED"}),
    "order_items": ("core.order_items", {**_LIVE, "quantity": 1}),
    "tax_rates": ("core.tax_rates", {**_LIVE, "effective_from": "2000-01-01"}),
    "rated": ("billing.rated_usage", {
        "charge_model": "PER_UNIT", "line_type": "USAGE", "currency": "USD", "proration_factor": 1,
        "included_quantity": 0, "event_count": 1}),
    "billed": ("billing.invoice_lines", {
        "line_type": "RECURRING", "currency": "USD", "discount_amount": 0, "coupon_amount": 0, "tax_amount": 0}),
    "document_lines": ("ledger.document_lines", {
        "document_type": "INVOICE", "line_type": "RECURRING", "currency": "USD", "discount_amount": 0,
        "coupon_amount": 0, "tax_amount": 0}),
    "voids": ("ledger.voids", {"document_type": "INVOICE", "currency": "USD", "total": 0, "reason": "test"}),
    "finalized_months": ("ledger.finalized_months", {"invoices": 0, "credit_notes": 0, "drafts_hash": ""}),
    "coupons": ("core.coupons", {**_LIVE, "status": "ACTIVE"}),
    "coupon_products": ("core.coupon_products", {**_LIVE}),
    "coupon_redemptions": ("core.coupon_redemptions", {**_LIVE, "status": "ACTIVE"}),
}


def _derived(argument: str, row: Mapping, plan_products: Mapping) -> dict:
    """Defaults that depend on the row itself (or, for versions, on the plans given)."""
    if argument == "accounts":
        return {"account_number": f"A{int(row['account_id']):04d}"}
    if argument == "versions":
        return {"product_id": plan_products.get(row.get("plan_id"))}
    if argument == "rated":
        return {"period_start": row.get("service_start"), "period_end": row.get("service_end"),
                "segment_start": row.get("service_start"), "segment_end": row.get("service_end"),
                "billable_quantity": row.get("quantity")}
    if argument in ("billed", "document_lines"):
        return {"net_amount": row.get("amount"), "total_amount": row.get("amount"),
                "service_month": row.get("billing_month")}
    return {}


def create_invoicing_inputs(
    con: duckdb.DuckDBPyConnection,
    schema: str = "core",
    *,
    accounts: Sequence[Mapping] = (),
    customers: Sequence[Mapping] = (),
    versions: Sequence[Mapping] = (),
    charges: Sequence[Mapping] = (),
    products: Sequence[Mapping] = (),
    plans: Sequence[Mapping] = (),
    bundles: Sequence[Mapping] = (),
    orders: Sequence[Mapping] = (),
    order_items: Sequence[Mapping] = (),
    tax_rates: Sequence[Mapping] = (),
    rated: Sequence[Mapping] = (),
    billed: Sequence[Mapping] = (),
    bundle_members: Sequence[Mapping] = (),
    document_lines: Sequence[Mapping] = (),
    voids: Sequence[Mapping] = (),
    finalized_months: Sequence[Mapping] = (),
    coupons: Sequence[Mapping] = (),
    coupon_products: Sequence[Mapping] = (),
    coupon_redemptions: Sequence[Mapping] = (),
) -> dict[str, str]:
    """Create the invoicing inputs in ``schema``; return the keyword arguments for ``build_invoice_lines``."""
    given = {"accounts": accounts, "customers": customers, "versions": versions, "charges": charges,
             "products": products, "plans": plans, "bundles": bundles, "bundle_members": bundle_members,
             "orders": orders, "order_items": order_items, "tax_rates": tax_rates, "rated": rated, "billed": billed,
             "document_lines": document_lines, "voids": voids, "finalized_months": finalized_months,
             "coupons": coupons, "coupon_products": coupon_products, "coupon_redemptions": coupon_redemptions}
    plan_products = {p["plan_id"]: p.get("product_id") for p in plans}
    names = {}
    for argument, (qualified, defaults) in _INPUT_TABLES.items():
        rows = [{**_derived(argument, row, plan_products), **row} for row in given[argument]]
        names[argument] = create_table_with_rows(con, qualified, rows, defaults, schema=schema)
    return names
