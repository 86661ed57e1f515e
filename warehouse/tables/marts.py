"""``marts``: the analysts' tables, one question each, recomputed whole from the ledger, receivables and revenue.

Computed by pipelines/marts/ (plain SQL steps) and written by the ``marts`` asset; every mart is derived and reads
tables that already hold the rules (issued documents, document status, balances, aging, the revenue schedule,
posted revenue, the roll-forward and the waterfall): a mart aggregates and never re-decides. Months are first days.

The recurring revenue spine (``marts.customer_mrr``) follows mrr-playbook: one row per customer, currency and month
from the customer's first month with MRR through the month after its last one (or the latest billed month).
"""

from domain.money import AMOUNT, RATE
from sources.entities import Column
from warehouse.contract import DERIVED, Table
from warehouse.contract import column as _c

MRR_RULE = (
    "MRR of a customer in a month and currency: the monthly run rate of its recurring service on the month's last "
    "day, from the issued ledger lines (RECURRING and RECURRING_CREDIT lines of documents not voided, net of bundle "
    "and coupon discounts) whose service period covers that day, each normalised to the month as "
    "net_amount x days of the month / days of the line, rounded to the currency's minor unit (a quarterly or annual "
    "fee counts its share of one month, a prorated first period its full monthly rate, a credit of the remaining days "
    "cancels it), summed; a negative sum counts as 0. Months run through the latest finalized billing month "
    "(ledger.finalized_months), whose documents bill the service in force on its last day."
)
MOVEMENTS = ("NEW (first month with MRR), REACTIVATION (MRR again after a month without), EXPANSION (MRR up), "
             "CONTRACTION (MRR down, still above 0), CHURN (MRR back to 0), UNCHANGED, INACTIVE (no MRR before nor now)")

_MONTH = _c("month", "DATE", "Month (first day).", False)
_CURRENCY = _c("currency", "VARCHAR", "ISO 4217 currency (amounts are never converted).", False)
_ACCOUNTING_MONTH = _c("accounting_month", "DATE", "Accounting month (first day).", False)
_MONTH_STATUS = _c("month_status", "VARCHAR", "CLOSED (posted, immutable) or OPEN (provisional, recomputed by every run).", False)
_CUSTOMER_TYPE = _c("customer_type", "VARCHAR", "INDIVIDUAL or BUSINESS (core.customers).")


def _money(name: str, description: str) -> Column:
    return _c(name, AMOUNT, description, False)


TABLES = (
    Table(
        "marts", "customer_mrr", DERIVED, ("month", "customer_id", "currency"),
        "one row per customer, currency and month of its MRR spine",
        "Monthly recurring revenue per customer (mrr-playbook's spine): one row per customer, currency and month from the "
        "customer's first month with MRR through the month after its last (or the latest finalized billing month); "
        f"key (month, customer_id, currency). {MRR_RULE} Movements: {MOVEMENTS}; mrr_change = mrr - previous_mrr.",
        (
            _MONTH,
            _c("customer_id", "BIGINT", "Customer (core.customers) owning the billing accounts.", False),
            _CURRENCY,
            _CUSTOMER_TYPE,
            _money("mrr", "Monthly recurring revenue at the month's end (the rule in the table description)."),
            _money("arr", "Annual run rate: mrr x 12."),
            _money("previous_mrr", "mrr of the month before (0 in the customer's first month)."),
            _money("mrr_change", "mrr - previous_mrr: the movement's amount."),
            _c("movement", "VARCHAR", f"The month's movement: {MOVEMENTS}.", False),
            _c("is_active", "BOOLEAN", "mrr > 0.", False),
            _c("first_active_month", "DATE", "The customer's first month with MRR in this currency.", False),
        ),
    ),
    Table(
        "marts", "mrr_movements", DERIVED, ("month", "currency"), "one row per month and currency",
        "MRR and ARR by month and currency with their movements, the sums of marts.customer_mrr: "
        "previous_mrr + new_mrr + reactivation_mrr + expansion_mrr + contraction_mrr + churned_mrr = mrr, and "
        "previous_mrr is the month before's mrr.",
        (
            _MONTH, _CURRENCY,
            _money("mrr", "MRR at the month's end."),
            _money("arr", "mrr x 12."),
            _money("previous_mrr", "MRR at the end of the month before."),
            _money("new_mrr", "MRR of customers in their first month (NEW)."),
            _money("reactivation_mrr", "MRR of customers back after months without (REACTIVATION)."),
            _money("expansion_mrr", "Increases of customers whose MRR went up (EXPANSION)."),
            _money("contraction_mrr", "Decreases (negative) of customers whose MRR went down, still above 0 (CONTRACTION)."),
            _money("churned_mrr", "MRR lost (negative) from customers whose MRR went to 0 (CHURN)."),
            _money("net_change", "mrr - previous_mrr: the sum of the five movements."),
            _c("active_customers", "BIGINT", "Customers with MRR at the month's end.", False),
        ),
    ),
    Table(
        "marts", "customer_churn", DERIVED, ("month", "currency"), "one row per month and currency",
        "Customer churn and ARPU by month and currency, counted on marts.customer_mrr (a customer is active in a month "
        "when its MRR is above 0): customers_at_start + new_customers + reactivated_customers - churned_customers = "
        "customers_at_end.",
        (
            _MONTH, _CURRENCY,
            _c("customers_at_start", "BIGINT", "Customers active at the end of the month before.", False),
            _c("new_customers", "BIGINT", "Customers active for the first time (NEW).", False),
            _c("reactivated_customers", "BIGINT", "Customers active again after months without (REACTIVATION).", False),
            _c("churned_customers", "BIGINT", "Customers active the month before and no longer (CHURN).", False),
            _c("customers_at_end", "BIGINT", "Customers active at the month's end.", False),
            _c("churn_rate", RATE, "churned_customers / customers_at_start, rounded to 6 decimals; NULL when none at start."),
            _c("mrr", AMOUNT, "MRR at the month's end (marts.mrr_movements).", False),
            _c("arpu", AMOUNT, "Average revenue per active customer: mrr / customers_at_end, rounded to the minor unit; "
                               "NULL when none is active."),
        ),
    ),
    Table(
        "marts", "revenue_by_product", DERIVED, ("accounting_month", "currency", "product_line", "product_id", "customer_type"),
        "one row per accounting month, currency, product and customer type with revenue",
        "Revenue booked per accounting month by product and customer type (ASC 606, from the revenue tables): closed "
        "months as posted (revenue.recognized), open months as the schedule books them (revenue.schedule open_amount "
        "by booked_month) through the latest month of the books (the forward schedule is in marts.revenue_waterfall), so per month and currency revenue + corrections equals the trial balance's revenue and "
        "contra-revenue accounts. Product from revenue.performance_obligations; for an estimate a closed month posted "
        "that is no longer an obligation, the product of the line it estimated (issued or drafted), NULL (product_line "
        "kept) when that line is gone.",
        (
            _ACCOUNTING_MONTH, _CURRENCY,
            _c("product_line", "VARCHAR", "Revenue account: the product category (MOBILE, BROADBAND, TV, DEVICE, FEE, ADDON).", False),
            _c("product_id", "BIGINT", "Product (core.products); NULL (unknown) for a posted estimate whose line is gone."),
            _c("product_name", "VARCHAR", "Product name (core.products)."),
            _CUSTOMER_TYPE,
            _money("revenue", "Revenue booked in the month for the month itself (and later months' estimates)."),
            _money("corrections", "Revenue booked in the month for earlier, closed months (late usage, backdated changes)."),
            _c("accounts", "BIGINT", "Billing accounts with revenue in the row.", False),
            _MONTH_STATUS,
        ),
        unknown_in_key=("product_id",),
    ),
    Table(
        "marts", "deferred_revenue_rollforward", DERIVED, ("accounting_month", "currency"), "one row per accounting month and currency",
        "Deferred revenue roll-forward per month and currency (revenue.deferred_rollforward, docs/revenue.md "
        "\"Roll-forward\"): opening_net_deferred + billings - recognized - corrections = closing_net_deferred, and "
        "closing_net_deferred = deferred_revenue - unbilled_ar - contract_assets.",
        (
            _ACCOUNTING_MONTH, _CURRENCY,
            _money("opening_net_deferred", "Net deferred revenue at the start of the month (the month before's closing)."),
            _money("billings", "Net billed in the month (documents issued, less voids)."),
            _money("recognized", "Revenue booked in the month for the month itself and later months."),
            _money("corrections", "Revenue booked in the month for earlier (closed) months."),
            _money("closing_net_deferred", "opening_net_deferred + billings - recognized - corrections."),
            _money("net_change", "closing_net_deferred - opening_net_deferred."),
            _money("deferred_revenue", "Contract liabilities at month end: contracts billed more than recognized."),
            _money("unbilled_ar", "Unbilled receivables at month end: month-to-month contracts recognized more than billed."),
            _money("contract_assets", "Contract assets at month end: committed contracts recognized more than billed."),
            _MONTH_STATUS,
        ),
    ),
    Table(
        "marts", "revenue_waterfall", DERIVED, ("billed_month", "recognition_month", "currency"),
        "one row per billing month, recognition month and currency",
        "Revenue waterfall (revenue.waterfall) with its running totals: what the obligations billed in billed_month "
        "recognize in each recognition_month, how much of it is recognized by then and how much remains; per billed "
        "month and currency the amounts sum to billed_total and the last row's remaining_amount is 0.",
        (
            _c("billed_month", "DATE", "Accounting month the obligations were billed in.", False),
            _c("recognition_month", "DATE", "Accounting month the revenue is (or will be) booked in.", False),
            _CURRENCY,
            _c("months_after", "INTEGER", "Months from billed_month to recognition_month (negative: recognized before billed).", False),
            _money("amount", "Revenue of the billed month's obligations booked in recognition_month."),
            _money("cumulative_amount", "Recognized through recognition_month."),
            _money("billed_total", "Everything the billed month's obligations recognize, over all months."),
            _money("remaining_amount", "billed_total - cumulative_amount: still to recognize after recognition_month."),
            _c("is_scheduled", "BOOLEAN", "True for a recognition month after the latest month with activity (the forward schedule).", False),
        ),
    ),
    Table(
        "marts", "ar_aging", DERIVED, ("month", "currency", "customer_type"), "one row per month end, currency and customer type",
        "Accounts receivable aging at each billing month's end by currency and customer type: the sums of billing.ar_aging "
        "(open invoice amounts by days past due); open_ar = current_amount + the four overdue buckets.",
        (
            _MONTH, _CURRENCY, _CUSTOMER_TYPE,
            _c("as_of", "DATE", "Aging date: the month's last day.", False),
            _c("accounts", "BIGINT", "Accounts with an open balance or account credit.", False),
            _money("current_amount", "Open on invoices not yet due."),
            _money("days_1_30", "Open 1-30 days past due."),
            _money("days_31_60", "Open 31-60 days past due."),
            _money("days_61_90", "Open 61-90 days past due."),
            _money("days_over_90", "Open more than 90 days past due."),
            _money("open_ar", "Sum of the buckets."),
            _money("account_credit", "Unapplied account credit."),
            _c("overdue_share", RATE, "(open_ar - current_amount) / open_ar, rounded to 6 decimals; NULL when nothing is open."),
        ),
    ),
    Table(
        "marts", "customer_360", DERIVED, ("account_id",), "one row per billing account",
        "Customer 360: one row per billing account with its customer, its services in force, open invoices, balance and "
        "last payment, as of the last day of the latest finalized billing month (as_of). Balances from "
        "billing.account_balances and billing.document_status (the ledger as of the latest applications).",
        (
            _c("account_id", "BIGINT", "Billing account (core.billing_accounts).", False),
            _c("account_number", "VARCHAR", "Human-facing account number."),
            _c("customer_id", "BIGINT", "Customer owning the account.", False),
            _c("customer_name", "VARCHAR", "Person or company name.", personal="name"),
            _c("email", "VARCHAR", "Billing contact e-mail.", personal="email"),
            _CUSTOMER_TYPE,
            _c("country", "VARCHAR", "Customer country (ISO 3166-1 alpha-2)."),
            _c("customer_status", "VARCHAR", "ACTIVE, SUSPENDED or CLOSED."),
            _c("account_status", "VARCHAR", "ACTIVE, SUSPENDED or CLOSED."),
            _c("billing_cycle", "VARCHAR", "MONTHLY, QUARTERLY or ANNUAL."),
            _c("currency", "VARCHAR", "Account currency."),
            _c("as_of", "DATE", "The day the services and MRR are taken on: the latest finalized billing month's last day.", False),
            _c("active_services", "BIGINT", "Services (core.subscriptions) in force on as_of.", False),
            _c("active_products", "VARCHAR", "Names of the products of those services, sorted, comma separated."),
            _money("mrr", "The account's MRR on as_of (the rule of marts.customer_mrr)."),
            _c("open_invoices", "BIGINT", "Issued invoices with an open amount (billing.document_status).", False),
            _money("open_ar", "Open on invoices."),
            _money("account_credit", "Unapplied account credit."),
            _money("balance", "open_ar - account_credit: what the customer owes (negative: what the operator owes)."),
            _c("over_credit_limit", "BOOLEAN", "balance > credit_limit."),
            _money("lifetime_billed", "Invoiced minus credited over the account's life (issued, not voided)."),
            _c("first_invoice_date", "DATE", "Issue date of the account's first invoice (NULL: none yet)."),
            _c("last_invoice_date", "DATE", "Issue date of its latest invoice."),
            _c("last_payment_at", "TIMESTAMP", "Latest succeeded payment received."),
            _c("last_payment_amount", AMOUNT, "Amount of that payment."),
        ),
    ),
)
