"""The record contract: every entity the operational systems hand to Tally.

One place states each entity's columns, types, key and meaning. The readers, the pandera
schemas, the raw/core warehouse DDL and docs/cdc-extracts.md are all derived from it.

Types are DuckDB SQL types; money is DECIMAL, never floating point. ``TIMESTAMP`` values are
UTC. The landing zone holds one folder per entity: ``<landing>/<system>/<entity>/<file>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.money import AMOUNT, MONEY, RATE  # precise amounts and prices, rounded amounts, rates


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    description: str
    nullable: bool = True
    allowed: tuple[str, ...] | None = None  # closed set of values (validated on ingest)
    personal: str | None = None  # the personal data it holds, masked in the analysts' snapshot (warehouse/snapshot.py MASKS)


@dataclass(frozen=True)
class Entity:
    name: str
    system: str  # crm | catalog | orders | payments | usage
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    description: str
    format: str = "debezium"  # "debezium" (JSON lines) or "table" (Parquet/CSV with op + seq)
    extra: dict = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _c(name, sql_type, description, nullable=True, allowed=None, personal=None):
    return Column(name, sql_type, description, nullable, tuple(allowed) if allowed else None, personal)


CUSTOMER_STATUS = ("ACTIVE", "SUSPENDED", "CLOSED")

ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in [
        Entity(
            "customers", "crm", ("customer_id",),
            (
                _c("customer_id", "BIGINT", "CRM customer id.", False),
                _c("name", "VARCHAR", "Person or company name.", False, personal="name"),
                _c("email", "VARCHAR", "Billing contact e-mail.", personal="email"),
                _c("phone", "VARCHAR", "Contact phone number.", personal="phone"),
                _c("address_line", "VARCHAR", "Street address.", personal="address"),
                _c("city", "VARCHAR", "City."),
                _c("state", "VARCHAR", "State or province code (tax jurisdiction within the country)."),
                _c("postal_code", "VARCHAR", "Postal code."),
                _c("country", "VARCHAR", "ISO 3166-1 alpha-2 country code (tax jurisdiction).", False),
                _c("customer_type", "VARCHAR", "INDIVIDUAL or BUSINESS.", False, ("INDIVIDUAL", "BUSINESS")),
                _c("status", "VARCHAR", "ACTIVE, SUSPENDED or CLOSED.", False, CUSTOMER_STATUS),
                _c("created_at", "TIMESTAMP", "When the customer was created in the CRM (UTC)."),
            ),
            "A person or company the operator serves.",
        ),
        Entity(
            "billing_accounts", "crm", ("account_id",),
            (
                _c("account_id", "BIGINT", "CRM billing account id.", False),
                _c("customer_id", "BIGINT", "Owning customer.", False),
                _c("account_number", "VARCHAR", "Human-facing account number.", False),
                _c("billing_cycle", "VARCHAR", "MONTHLY, QUARTERLY or ANNUAL.", False, ("MONTHLY", "QUARTERLY", "ANNUAL")),
                _c("bill_cycle_day", "INTEGER", "Day of month periods end on (1..31, clamped; 1 = calendar months).", False),
                _c("payment_method", "VARCHAR", "CARD, DIRECT_DEBIT, BANK_TRANSFER or INVOICE.", True,
                   ("CARD", "DIRECT_DEBIT", "BANK_TRANSFER", "INVOICE")),
                _c("payment_terms_days", "INTEGER", "Days from invoice date to due date.", False),
                _c("credit_limit", AMOUNT, "Credit limit in the account currency."),
                _c("currency", "VARCHAR", "ISO 4217 currency of every charge on the account.", False),
                _c("status", "VARCHAR", "ACTIVE, SUSPENDED or CLOSED.", False, CUSTOMER_STATUS),
                _c("created_at", "TIMESTAMP", "When the account was opened (UTC)."),
            ),
            "The account invoices are issued to; carries the bill cycle and currency.",
        ),
        Entity(
            "products", "catalog", ("product_id",),
            (
                _c("product_id", "BIGINT", "Catalog product id.", False),
                _c("sku", "VARCHAR", "Stock keeping unit.", False),
                _c("name", "VARCHAR", "Product name shown on invoices.", False),
                _c("category", "VARCHAR", "MOBILE, BROADBAND, TV, DEVICE, FEE or ADDON.", False),
                _c("product_type", "VARCHAR", "SUBSCRIPTION, ONE_TIME or USAGE.", False, ("SUBSCRIPTION", "ONE_TIME", "USAGE")),
                _c("base_price", MONEY, "List price (recurring fee per period, or one-time price).", False),
                _c("currency", "VARCHAR", "ISO 4217 currency of base_price.", False),
                _c("status", "VARCHAR", "ACTIVE or RETIRED.", False, ("ACTIVE", "RETIRED")),
            ),
            "What the operator sells.",
        ),
        Entity(
            "price_plans", "catalog", ("plan_id",),
            (
                _c("plan_id", "BIGINT", "Price plan id.", False),
                _c("product_id", "BIGINT", "The subscription product this plan prices.", False),
                _c("name", "VARCHAR", "Plan name.", False),
                _c("currency", "VARCHAR", "ISO 4217 currency of all its charges.", False),
                _c("status", "VARCHAR", "ACTIVE or RETIRED.", False, ("ACTIVE", "RETIRED")),
            ),
            "A price plan: a set of charges (plan_charges) for a subscription product.",
        ),
        Entity(
            "plan_charges", "catalog", ("price_id",),
            (
                _c("price_id", "BIGINT", "Id of this price version of a charge.", False),
                _c("plan_id", "BIGINT", "Plan the charge belongs to.", False),
                _c("charge_code", "VARCHAR", "Stable name of the charge within the plan, shared by its price versions.", False),
                _c("charge_type", "VARCHAR", "RECURRING or USAGE.", False, ("RECURRING", "USAGE")),
                _c("metric", "VARCHAR", "Usage metric priced (USAGE charges), e.g. data_mb, voice_min, sms."),
                _c("aggregation", "VARCHAR", "SUM, COUNT, MAX, UNIQUE_COUNT, LATEST or TIME_WEIGHTED_SUM (USAGE charges).", True,
                   ("SUM", "COUNT", "MAX", "UNIQUE_COUNT", "LATEST", "TIME_WEIGHTED_SUM")),
                _c("charge_model", "VARCHAR",
                   "FLAT, PER_UNIT, GRADUATED, VOLUME, PACKAGE, PERCENTAGE, GRADUATED_PERCENTAGE, MATRIX or DYNAMIC.", False,
                   ("FLAT", "PER_UNIT", "GRADUATED", "VOLUME", "PACKAGE", "PERCENTAGE", "GRADUATED_PERCENTAGE", "MATRIX", "DYNAMIC")),
                _c("billing_timing", "VARCHAR", "IN_ADVANCE or IN_ARREARS.", False, ("IN_ADVANCE", "IN_ARREARS")),
                _c("prorate", "BOOLEAN", "Whether partial periods are prorated by day.", False),
                _c("unit_price", MONEY, "FLAT: amount per period; PER_UNIT: price per unit; otherwise see properties."),
                _c("included_quantity", MONEY, "Allowance included per full period before the charge applies (prorated by days)."),
                _c("tiers", "VARCHAR", 'JSON list of tiers [{"up_to": "100" | null, "unit_amount": "0.01", "flat_amount": "0"}].'),
                _c("properties", "VARCHAR", "JSON object of model-specific parameters (docs/rating.md)."),
                _c("proration_days", "INTEGER", "Fixed proration denominator (e.g. 30); NULL = actual days of the period."),
                _c("effective_from", "TIMESTAMP", "Price version applies to usage and service from this instant (UTC).", False),
                _c("effective_to", "TIMESTAMP", "Price version stops applying at this instant (exclusive); NULL = open."),
                _c("billing_interval", "VARCHAR", "RECURRING charges: MONTHLY, QUARTERLY or ANNUAL, the period unit_price is for "
                   "(aligned to the account's bill cycle day); NULL = MONTHLY.", True, ("MONTHLY", "QUARTERLY", "ANNUAL")),
            ),
            "A charge of a price plan, effective-dated: each price change is a new price_id.",
        ),
        Entity(
            "bundles", "catalog", ("bundle_id",),
            (
                _c("bundle_id", "BIGINT", "Bundle id.", False),
                _c("name", "VARCHAR", "Bundle name.", False),
                _c("discount_pct", RATE, "Discount on the recurring fees of the bundle's services, as a fraction (0.100000 = 10 %).", False),
                _c("status", "VARCHAR", "ACTIVE or RETIRED.", False, ("ACTIVE", "RETIRED")),
            ),
            "A bundle of products sold together at a discount.",
        ),
        Entity(
            "bundle_members", "catalog", ("bundle_member_id",),
            (
                _c("bundle_member_id", "BIGINT", "Membership row id.", False),
                _c("bundle_id", "BIGINT", "Bundle.", False),
                _c("product_id", "BIGINT", "Member product.", False),
            ),
            "The products that make up each bundle.",
        ),
        Entity(
            "coupons", "catalog", ("coupon_id",),
            (
                _c("coupon_id", "BIGINT", "Coupon id.", False),
                _c("code", "VARCHAR", "Promotion code customers quote.", False),
                _c("name", "VARCHAR", "Name printed on the invoice.", False),
                _c("discount_type", "VARCHAR", "PERCENT (percent_off of the lines covered) or FIXED (amount_off per invoice).", False,
                   ("PERCENT", "FIXED")),
                _c("percent_off", RATE, "PERCENT coupons: the discount as a fraction (0.200000 = 20 %)."),
                _c("amount_off", AMOUNT, "FIXED coupons: the discount per invoice, in currency (never more than the lines covered)."),
                _c("currency", "VARCHAR", "FIXED coupons: ISO 4217 currency of amount_off (applies to accounts in that currency only)."),
                _c("duration", "VARCHAR", "ONCE (the first invoice), REPEATING (duration_periods invoices) or FOREVER.", False,
                   ("ONCE", "REPEATING", "FOREVER")),
                _c("duration_periods", "INTEGER", "REPEATING coupons: how many billing periods it applies to."),
                _c("status", "VARCHAR", "ACTIVE or RETIRED (no new redemptions; redemptions in force keep it).", False, ("ACTIVE", "RETIRED")),
            ),
            "A coupon or promotion: a discount applied before tax, optionally limited to some products (coupon_products).",
        ),
        Entity(
            "coupon_products", "catalog", ("coupon_product_id",),
            (
                _c("coupon_product_id", "BIGINT", "Row id.", False),
                _c("coupon_id", "BIGINT", "Coupon.", False),
                _c("product_id", "BIGINT", "Product whose lines the coupon covers (no rows: every product).", False),
            ),
            "The products a coupon is limited to.",
        ),
        Entity(
            "coupon_redemptions", "orders", ("redemption_id",),
            (
                _c("redemption_id", "BIGINT", "Redemption id.", False),
                _c("coupon_id", "BIGINT", "Coupon redeemed.", False),
                _c("account_id", "BIGINT", "Billing account it applies to.", False),
                _c("subscription_id", "BIGINT", "Service it is limited to (NULL: every service of the account)."),
                _c("order_id", "BIGINT", "Order it was redeemed with, if any."),
                _c("starts_on", "DATE", "First day of service the coupon covers.", False),
                _c("status", "VARCHAR", "ACTIVE or REVOKED (a revoked redemption is never applied).", False, ("ACTIVE", "REVOKED")),
            ),
            "A coupon redeemed by a billing account.",
        ),
        Entity(
            "standalone_selling_prices", "catalog", ("ssp_id",),
            (
                _c("ssp_id", "BIGINT", "Id of this standalone selling price version.", False),
                _c("product_id", "BIGINT", "Product priced.", False),
                _c("currency", "VARCHAR", "ISO 4217 currency of ssp_amount.", False),
                _c("ssp_amount", MONEY, "Standalone selling price: per unit for ONE_TIME products; per unit and MONTH of "
                   "service for SUBSCRIPTION products (what the product sells for on its own).", False),
                _c("effective_from", "DATE", "First day the price applies (an obligation takes the price in force on "
                   "its contract's inception).", False),
                _c("effective_to", "DATE", "Day the price stops applying (exclusive); NULL = open."),
            ),
            "Effective-dated standalone selling prices (SSP) for revenue allocation (docs/revenue.md).",
        ),
        Entity(
            "tax_rates", "catalog", ("tax_rate_id",),
            (
                _c("tax_rate_id", "BIGINT", "Tax rate id.", False),
                _c("country", "VARCHAR", "ISO 3166-1 alpha-2 country.", False),
                _c("state", "VARCHAR", "State or province; NULL = the whole country."),
                _c("tax_name", "VARCHAR", "Name printed on the invoice (e.g. 'CA sales tax', 'VAT').", False),
                _c("rate", RATE, "Rate as a fraction (0.072500 = 7.25 %).", False),
                _c("effective_from", "DATE", "First day the rate applies.", False),
                _c("effective_to", "DATE", "Day the rate stops applying (exclusive); NULL = open."),
            ),
            "Effective-dated tax rates by jurisdiction (country, optionally state).",
        ),
        Entity(
            "orders", "orders", ("order_id",),
            (
                _c("order_id", "BIGINT", "Order id.", False),
                _c("order_number", "VARCHAR", "Human-facing order number.", False),
                _c("account_id", "BIGINT", "Billing account ordering.", False),
                _c("order_type", "VARCHAR", "NEW_SERVICE, CHANGE or DISCONNECT.", False, ("NEW_SERVICE", "CHANGE", "DISCONNECT")),
                _c("status", "VARCHAR", "CREATED, CONFIRMED, PAYMENT_FAILED, FAILED or CANCELLED; only CONFIRMED orders change services.",
                   False, ("CREATED", "CONFIRMED", "PAYMENT_FAILED", "FAILED", "CANCELLED")),
                _c("effective_date", "DATE", "Day the order takes effect on the services (UTC).", False),
                _c("created_at", "TIMESTAMP", "When the order was placed (UTC)."),
                _c("contract_term_months", "INTEGER", "NEW_SERVICE orders: the committed term in months (e.g. 24 for a "
                   "handset sold with a 24-month plan); NULL = month to month, no commitment."),
            ),
            "Orders from order management.",
        ),
        Entity(
            "order_items", "orders", ("order_item_id",),
            (
                _c("order_item_id", "BIGINT", "Order item id.", False),
                _c("order_id", "BIGINT", "Order.", False),
                _c("product_id", "BIGINT", "Product ordered.", False),
                _c("plan_id", "BIGINT", "Price plan for SUBSCRIPTION products (new plan for CHANGE orders)."),
                _c("bundle_id", "BIGINT", "Bundle the item was sold in, if any."),
                _c("subscription_id", "BIGINT", "Service created (NEW_SERVICE), changed (CHANGE) or ended (DISCONNECT)."),
                _c("quantity", "INTEGER", "Quantity ordered.", False),
                _c("unit_price", MONEY, "Agreed unit price for ONE_TIME items (devices, activation fees)."),
            ),
            "Order lines: subscriptions to start, change or end, and one-time items.",
        ),
        Entity(
            "payments", "payments", ("payment_id",),
            (
                _c("payment_id", "BIGINT", "Payment id.", False),
                _c("account_id", "BIGINT", "Paying billing account.", False),
                _c("invoice_number", "VARCHAR", "Invoice the payer referenced, if any."),
                _c("amount", AMOUNT, "Amount received (positive), in currency.", False),
                _c("currency", "VARCHAR", "ISO 4217 currency.", False),
                _c("status", "VARCHAR", "SUCCEEDED, FAILED, PENDING or REFUNDED.", False, ("SUCCEEDED", "FAILED", "PENDING", "REFUNDED")),
                _c("method", "VARCHAR", "CARD, DIRECT_DEBIT or BANK_TRANSFER."),
                _c("received_at", "TIMESTAMP", "When the payment was received (UTC).", False),
            ),
            "Payments received from the payment provider.",
        ),
        Entity(
            "usage_records", "usage", ("event_id",),
            (
                _c("event_id", "VARCHAR", "Mediation event id (unique per event).", False),
                _c("subscription_id", "BIGINT", "Service the usage belongs to.", False),
                _c("metric", "VARCHAR", "What was used: data_mb, voice_min, sms, ...", False),
                _c("quantity", MONEY, "Amount used, in unit.", False),
                _c("unit", "VARCHAR", "Unit of quantity (MB, MIN, EVENT).", False),
                _c("event_time", "TIMESTAMP", "When the usage happened (UTC).", False),
                _c("zone", "VARCHAR", "Destination or roaming zone (matrix pricing)."),
                _c("attributes", "VARCHAR", "JSON object of further event attributes (time band, price for DYNAMIC charges)."),
            ),
            "Rated-to-be usage events from mediation.",
            format="table",
        ),
    ]
}

# Metadata columns every raw change-log row carries (canonical change-log shape).
CHANGE_LOG_COLUMNS: tuple[Column, ...] = (
    _c("_op", "VARCHAR", "Change operation: c (create), u (update), d (delete), r (snapshot read), t (tombstone).", False),
    _c("_position", "BIGINT", "Source log position (Debezium source.lsn or the extract's sequence); orders changes."),
    _c("_source_ts", "TIMESTAMP", "When the change happened in the source (source.ts_ms; usage: event_time)."),
    _c("_file", "VARCHAR", "Landing file the record came from, relative to the landing root.", False),
    _c("_record_no", "BIGINT", "1-based record number within the file.", False),
    _c("_row_hash", "VARCHAR", "Hash of the row image; with key and position it identifies a duplicate delivery.", False),
    _c("_unavailable", "VARCHAR[]", "Columns the source marked unchanged-and-omitted (e.g. __debezium_unavailable_value)."),
)
