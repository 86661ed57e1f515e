"""``revenue``: ASC 606 / IFRS 15 — obligations, allocations, schedules, journals and closed months (docs/revenue.md).

Obligations come from the ledger (issued documents and voids), never from drafts. Months are *accounting*
months (first day). An accounting month is OPEN until ``close_month`` closes it; closing appends the month's
recognized revenue (``revenue.recognized``) and journal (``revenue.journal_lines``) to LEDGER tables and records
their hash in ``revenue.closed_months``: a closed month is never rewritten, later changes are booked in the
first open month as corrections that reference the month they concern. The DERIVED tables are recomputed from
the ledger and the closed months on every run; for a closed month they show what was posted.
"""

from warehouse.contract import DERIVED, LEDGER, Table
from warehouse.contract import column as _c

AMOUNT, RATE = "DECIMAL(18,4)", "DECIMAL(9,6)"

ACCOUNTS = ("AR", "UNBILLED_AR", "CONTRACT_ASSET", "DEFERRED_REVENUE", "REVENUE:<product line>",
            "CONTRA_REVENUE:<product line>", "TAX_PAYABLE", "CASH", "CUSTOMER_CREDIT")

_MONTH = _c('accounting_month', 'DATE', 'Accounting month (first day).', False)
_CURRENCY = _c('currency', 'VARCHAR', 'ISO 4217 currency (amounts are never converted).', False)
_STATUS = _c('month_status', 'VARCHAR', 'CLOSED (posted, immutable: revenue.closed_months) or OPEN (provisional, recomputed by every run).', False)

_OBLIGATION_REF = (
    _c('obligation_id', 'VARCHAR', 'Obligation.', False),
    _c('contract_id', 'VARCHAR', 'Contract.', False),
    _c('account_id', 'BIGINT', 'Billing account.', False),
    _CURRENCY,
    _c('obligation_kind', 'VARCHAR', 'As in revenue.performance_obligations.', False),
    _c('product_line', 'VARCHAR', 'As in revenue.performance_obligations.', False),
)
"""The obligation a schedule or posted row belongs to, as in revenue.performance_obligations."""

_JOURNAL_COLUMNS = (
    _c('journal_line_id', 'VARCHAR', 'Deterministic id: md5 of (accounting_month, entry_type, entry_id, account, concerns_month).', False),
    _MONTH,
    _CURRENCY,
    _c('entry_type', 'VARCHAR', 'BILLING (a document issued), VOID (a document voided), RECOGNITION (revenue recognized), '
       'CONTRACT_BALANCE (month-end reclass of contract positions between DEFERRED_REVENUE, UNBILLED_AR and CONTRACT_ASSET), '
       'PAYMENT (a payment application: cash, AR, customer credit).', False),
    _c('entry_id', 'VARCHAR', 'The balanced entry this line belongs to (its debits equal its credits): BILLING-<document_id>, '
       'VOID-<document_id>, PAYMENT-<application_id>, RECOGNITION-<YYYY-MM>-<currency>-<product line>-<concerns YYYY-MM>, '
       'CONTRACT_BALANCE-<YYYY-MM>-<currency>.', False),
    _c('account', 'VARCHAR', 'Chart of accounts: ' + ', '.join(ACCOUNTS) + '.', False),
    _c('account_type', 'VARCHAR', 'ASSET, LIABILITY, REVENUE or CONTRA_REVENUE.', False),
    _c('debit', AMOUNT, 'Debit amount (>= 0; 0 when the line is a credit).', False),
    _c('credit', AMOUNT, 'Credit amount (>= 0; 0 when the line is a debit).', False),
    _c('concerns_month', 'DATE', 'Accounting month the amount belongs to; earlier than accounting_month for a correction of a closed month.', False),
    _c('source_id', 'VARCHAR', 'What the line books, so that it is booked once: the document_id (BILLING, VOID), the application_id (PAYMENT); NULL for the month\'s aggregated RECOGNITION and CONTRACT_BALANCE entries.'),
    _c('document_id', 'VARCHAR', 'Ledger document (BILLING, VOID; PAYMENT: the invoice applied to, else the credit note applied from).'),
    _c('payment_id', 'BIGINT', 'Payment (PAYMENT entries).'),
    _c('description', 'VARCHAR', 'What the line records, for a reader of the journal.', False),
)

TABLES = (
    Table(
        'revenue', 'performance_obligations', DERIVED, ("obligation_id",), 'one row per performance obligation',
        'Performance obligations (docs/revenue.md "Obligations"): one row per line of an issued document (a service period, '
        'a usage charge, a good, a fee, a credit or an adjustment), per line of a voided document (its reversal), and per '
        'committed contract ended early (its remaining contract asset), and per line the bill runs still to come will invoice for '
        'what is rendered by the end of the latest month computed (an estimate: usage of a period in progress, service days, '
        'one-time items delivered; replaced by its invoiced line). Recognized by pattern over '
        '[recognition_start, recognition_end); its schedule sums exactly to allocated_amount.',
        (
            _c('obligation_id', 'VARCHAR', "The ledger line_id; 'VOID-' || line_id for a voided line's reversal; 'END-' || contract_id for the remaining contract asset of a commitment that ended early; 'ACCRUED-' || the settlement line id (its draft line_id) for the estimate of a line rendered and not yet invoiced (docs/revenue.md \"Estimates\").", False),
            _c('contract_id', 'VARCHAR', "'ORD-<order_id>': the order that activated the line's service or sold its item; 'ACC-<account_id>' for lines traced to no order.", False),
            _c('account_id', 'BIGINT', 'Billing account.', False),
            _CURRENCY,
            _c('document_id', 'VARCHAR', 'Ledger document of the line (NULL for END- and ACCRUED- obligations).'),
            _c('line_id', 'VARCHAR', 'Ledger line (ledger.document_lines) the obligation comes from (NULL for END- and ACCRUED- obligations).'),
            _c('reference_line_id', 'VARCHAR', 'The line a credit, adjustment or void reversal corrects.'),
            _c('obligation_kind', 'VARCHAR', 'SERVICE (recurring service and its credits), USAGE (rated usage, true-ups, caps, usage adjustments), GOOD (devices), FEE (activation and other one-time fees) or CONTRACT_END.', False),
            _c('pattern', 'VARCHAR', 'RATABLE (by day over the window, cumulative rounding), CONSUMPTION (by event time: each month its share of the rated quantity) or POINT_IN_TIME (at recognition_start).', False),
            _c('product_id', 'BIGINT', 'Product of the line.'),
            _c('product_line', 'VARCHAR', 'Revenue account the obligation credits: the product category (MOBILE, BROADBAND, TV, DEVICE, FEE, ADDON).', False),
            _c('recognition_start', 'DATE', 'First day of the recognition window (inclusive); delivery day for POINT_IN_TIME.', False),
            _c('recognition_end', 'DATE', 'End of the window (exclusive); recognition_start + 1 day for POINT_IN_TIME.', False),
            _c('spread_days', 'INTEGER', 'RATABLE: the days the amount is spread over at an even daily rate; the window\'s length, '
               'except for a fee whose expected service term outlives its service: the term\'s days, the rest recognized on '
               'the window\'s last day. The window\'s length for the other patterns.', False),
            _c('billed_month', 'DATE', 'Accounting month the billing is booked in: the month of the document\'s issue date (of the void date for a reversal), or the first open month if that month is closed; for an estimate (nothing billed), the month its recognition starts.', False),
            _c('billed_amount', AMOUNT, 'Net amount billed for it (the line\'s net_amount, negative for credits; 0 for CONTRACT_END and estimates).', False),
            _c('allocated_amount', AMOUNT, 'Transaction price allocated to it (revenue.allocations): what its schedule recognizes in total. '
               'An estimate: the net amount of the settlement line it estimates, or its allocation.', False),
            _c('subscription_id', 'BIGINT', 'Subscription of the line (its service): a CONSUMPTION obligation is recognized by the usage events of this subscription.'),
            _c('price_id', 'BIGINT', 'Price version of the line (its charge): the metric and aggregation of a CONSUMPTION obligation\'s events.'),
        ),
    ),
    Table(
        'revenue', 'allocations', DERIVED, ("allocation_group", "obligation_id"), 'one row per obligation of an allocation group',
        'Transaction price allocation by relative standalone selling price (docs/revenue.md "Allocation"): one row per obligation '
        'of a group that shares one transaction price (the lines of a bundle in one document and period; the goods, fees and '
        'service of a committed contract). Largest-remainder rounding: the allocated amounts of a group sum exactly to its '
        'transaction price. Obligations alone in their group are allocated their billed amount and have no row.',
        (
            _c('allocation_group', 'VARCHAR', "The group: 'BUNDLE-<document_id>-<bundle_id>-<service_start>' or 'TERM-<contract_id>'.", False),
            _c('obligation_id', 'VARCHAR', 'Obligation (revenue.performance_obligations).', False),
            _c('contract_id', 'VARCHAR', 'Contract of the group.', False),
            _CURRENCY,
            _c('method', 'VARCHAR', 'RELATIVE_SSP (bundle in one period) or COMMITMENT (committed contract: goods and service over the term).', False),
            _c('ssp_amount', AMOUNT, "The component's standalone selling price in the group (SSP x quantity, x months of service).", False),
            _c('ssp_source', 'VARCHAR', 'CATALOG (core.standalone_selling_prices), LIST_PRICE (no SSP in force: the undiscounted amount) '
               'or NOT_DISTINCT (a fee of a committed contract: SSP 0, its consideration goes to the service).', False),
            _c('transaction_price', AMOUNT, 'Transaction price of the whole group (the same on each of its rows).', False),
            _c('billed_amount', AMOUNT, 'Net billed for the obligation.', False),
            _c('component', 'VARCHAR', "What the transaction price is allocated to: the obligation itself (a bundle line, a good, a fee), "
               "or 'SERVICE-<subscription_id>' for the service lines of a committed contract (one component over the term).", False),
            _c('component_price', AMOUNT, 'Consideration the component brings into the transaction price: its billed amount, or the '
               "service's expected consideration over the term (recurring fee in force at inception x billing intervals in the term). "
               'Per group, the sum over its components is transaction_price.', False),
            _c('component_allocated', AMOUNT, 'Transaction price allocated to the component: transaction_price x ssp_amount / '
               'sum(ssp_amount) over the components, largest remainder. Per group, the sum over its components is transaction_price.', False),
            _c('allocated_amount', AMOUNT, "Allocated to the obligation: the component's allocation; a committed service's line its "
               'share of the service\'s allocation in proportion to what it bills (cumulative rounding over the term).', False),
        ),
    ),
    Table(
        'revenue', 'schedule', DERIVED, ("obligation_id", "service_month"), 'one row per obligation and month it recognizes in',
        'Recognition schedule (docs/revenue.md "Recognition"): obligation x service month. scheduled_amount is the month\'s '
        'share by the obligation\'s pattern (cumulative rounding: a schedule sums exactly to allocated_amount); posted_amount '
        'what closed months already booked for it; open_amount = scheduled_amount - posted_amount is booked in booked_month '
        '= the later of service_month and the first open month (a correction when booked after service_month). '
        'A day grain is available on request: pipelines.revenue.schedule.daily_schedule.',
        (
            *_OBLIGATION_REF,
            _c('service_month', 'DATE', 'Month the revenue belongs to (the days or the consumption it is for).', False),
            _c('scheduled_amount', AMOUNT, "The month's share: cumulative through the month end minus cumulative through the previous month end.", False),
            _c('cumulative_amount', AMOUNT, 'Scheduled through the end of service_month.', False),
            _c('posted_amount', AMOUNT, 'Booked for this obligation and service month by closed months (revenue.recognized).', False),
            _c('open_amount', AMOUNT, 'scheduled_amount - posted_amount: what is still to be booked.', False),
            _c('booked_month', 'DATE', 'Accounting month the open amount is booked in: greatest(service_month, first open month).', False),
        ),
    ),
    Table(
        'revenue', 'recognized', LEDGER, ("accounting_month", "obligation_id", "concerns_month"), 'one row per obligation, accounting month and month concerned',
        'Posted revenue (docs/revenue.md "Period close"): appended when an accounting month closes, never changed. One row per '
        'obligation and month its amount concerns; a row whose concerns_month is earlier than accounting_month is a correction '
        'of a closed month (late usage, a backdated change, a late document).',
        (
            _MONTH,
            *_OBLIGATION_REF,
            _c('concerns_month', 'DATE', 'Service month the revenue belongs to.', False),
            _c('amount', AMOUNT, 'Revenue booked (negative for credits and reversals).', False),
            _c('is_correction', 'BOOLEAN', 'concerns_month < accounting_month: booked after its month closed.', False),
            _c('run_id', 'VARCHAR', 'Dagster run that closed the month.'),
        ),
    ),
    Table(
        'revenue', 'journal_lines', LEDGER, ("journal_line_id",), 'one row per posted journal line',
        'Posted double-entry journal (docs/revenue.md "Journals"): appended when an accounting month closes, never changed. '
        'Every entry_id balances (debits = credits) and so does every month and currency.',
        (*_JOURNAL_COLUMNS, _c('run_id', 'VARCHAR', 'Dagster run that closed the month.')),
    ),
    Table(
        'revenue', 'open_journal_lines', DERIVED, ("journal_line_id",), 'one row per provisional journal line of an open month',
        'The journal of the open accounting months, as it stands (recomputed on every run); close_month appends a month\'s '
        'lines to revenue.journal_lines. Same columns as revenue.journal_lines.',
        (*_JOURNAL_COLUMNS, _c('run_id', 'VARCHAR', 'Dagster run that computed the line.')),
    ),
    Table(
        'revenue', 'trial_balance', DERIVED, ("accounting_month", "currency", "account"), 'one row per accounting month, currency and account',
        'Trial balance per accounting month and currency over the posted (closed) and provisional (open) journal: opening '
        'balance, debits, credits, closing balance (debit positive). Per month and currency the closing balances sum to 0.',
        (
            _MONTH, _CURRENCY,
            _c('account', 'VARCHAR', 'Account (see revenue.journal_lines).', False),
            _c('account_type', 'VARCHAR', 'ASSET, LIABILITY, REVENUE or CONTRA_REVENUE.', False),
            _c('opening_balance', AMOUNT, 'Balance at the start of the month (debits - credits of earlier months).', False),
            _c('debits', AMOUNT, 'Debits of the month.', False),
            _c('credits', AMOUNT, 'Credits of the month.', False),
            _c('closing_balance', AMOUNT, 'opening_balance + debits - credits.', False),
            _STATUS,
        ),
    ),
    Table(
        'revenue', 'deferred_rollforward', DERIVED, ("accounting_month", "currency"), 'one row per accounting month and currency',
        'Deferred revenue roll-forward (docs/revenue.md "Roll-forward"): opening_net_deferred + billings - recognized - '
        'corrections = closing_net_deferred, where net deferred = deferred_revenue - unbilled_ar - contract_assets (the '
        'contracts\' positions, netted per contract).',
        (
            _MONTH, _CURRENCY,
            _c('opening_net_deferred', AMOUNT, 'Closing net deferred of the month before.', False),
            _c('billings', AMOUNT, 'Net billed in the month (documents issued, less voids): what the obligations were billed.', False),
            _c('recognized', AMOUNT, 'Revenue booked in the month for the month itself and later months.', False),
            _c('corrections', AMOUNT, 'Revenue booked in the month for earlier (closed) months.', False),
            _c('closing_net_deferred', AMOUNT, 'opening_net_deferred + billings - recognized - corrections.', False),
            _c('deferred_revenue', AMOUNT, 'Contract liabilities at month end: contracts billed more than recognized.', False),
            _c('unbilled_ar', AMOUNT, 'Unbilled receivables at month end: month-to-month contracts recognized more than billed (usage consumed, not yet invoiced).', False),
            _c('contract_assets', AMOUNT, 'Contract assets at month end: committed contracts recognized more than billed (a subsidized handset).', False),
            _STATUS,
        ),
    ),
    Table(
        'revenue', 'waterfall', DERIVED, ("billed_month", "recognition_month", "currency"), 'one row per billing month, recognition month and currency',
        'Revenue waterfall: what the obligations billed in billed_month recognize in each recognition_month (booked, or '
        'scheduled for months not yet reached).',
        (
            _c('billed_month', 'DATE', 'Accounting month the obligations were billed in.', False),
            _c('recognition_month', 'DATE', 'Accounting month the revenue is (or will be) booked in.', False),
            _CURRENCY,
            _c('amount', AMOUNT, 'Revenue.', False),
            _c('is_scheduled', 'BOOLEAN', 'True for a recognition month after the latest month with activity (the forward schedule).', False),
        ),
    ),
    Table(
        'revenue', 'contract_balances', DERIVED, ("accounting_month", "contract_id"), 'one row per accounting month and contract with a position',
        'Contract balances at month end (ASC 606-10-45): per contract, billed to date minus recognized to date; a net credit is '
        'a contract liability (deferred revenue), a net debit an unbilled receivable (month to month) or a contract asset '
        '(committed contract). Contracts with a zero position and no activity in the month are omitted.',
        (
            _MONTH,
            _c('contract_id', 'VARCHAR', 'Contract.', False),
            _c('account_id', 'BIGINT', 'Billing account.', False),
            _CURRENCY,
            _c('billed_to_date', AMOUNT, 'Net billed through the month end.', False),
            _c('recognized_to_date', AMOUNT, 'Revenue booked through the month end.', False),
            _c('contract_liability', AMOUNT, 'greatest(billed_to_date - recognized_to_date, 0).', False),
            _c('unbilled_ar', AMOUNT, 'greatest(recognized_to_date - billed_to_date, 0) of a contract without commitment.', False),
            _c('contract_asset', AMOUNT, 'greatest(recognized_to_date - billed_to_date, 0) of a committed contract.', False),
        ),
    ),
    Table(
        'revenue', 'closed_months', LEDGER, ("accounting_month",), 'one row per closed accounting month',
        'Closed accounting months (docs/revenue.md "Period close"): appended by close_month, never changed. content_hash is the '
        'hash of the month\'s posted revenue.recognized and revenue.journal_lines rows; the check closed_months_unchanged '
        'recomputes it.',
        (
            _MONTH,
            _c('recognized_rows', 'BIGINT', 'Rows appended to revenue.recognized.', False),
            _c('journal_lines', 'BIGINT', 'Rows appended to revenue.journal_lines.', False),
            _c('totals', 'VARCHAR', 'JSON: per currency, revenue, corrections, deferred revenue, unbilled AR, contract assets and AR at month end.', False),
            _c('content_hash', 'VARCHAR', 'sha256 of the month\'s posted rows: per table (revenue.recognized, revenue.journal_lines) its row count '
               'and the sums of the two 64-bit halves of each row\'s sha256 over every column (pipelines/revenue/checks.py month_hashes; '
               'independent of row order, as the ledger\'s document hash).', False),
            _c('closed_at', 'TIMESTAMP', 'When the month was closed (UTC).', False),
            _c('run_id', 'VARCHAR', 'Dagster run that closed it.'),
        ),
    ),
)
