"""Invoicing steps: from segments, rated usage and orders to priced, discounted and taxed lines (docs/billing.md).

* ``credited_lines``, ``recurring_lines_priced``, ``recurring_lines``: recurring segments priced (the
  proration rule, ``prorated``, on the charge period) and described; credits take the credited line's price,
  discount, coupon share and tax;
* ``usage_owed``, ``usage_issued``, ``usage_lines``: rated usage settled per rated line;
* ``one_time_owed``, ``one_time_issued``, ``one_time_lines``: confirmed one-time items settled per item;
* ``rounded_lines``: every line rounded to the minor unit (usage keeps the rated amount);
* ``discounted_lines``: the bundle discount; then the coupon steps (pipelines/invoicing/coupons.py, ending with
  ``coupon_allocations``); ``taxed_lines``: net, tax and total per line; ``routed_lines``: the draft document of each line;
* :func:`settled_line_rows`: every difference with the contract's line columns, ``beyond_lookback`` and
  ``is_correction``; :func:`invoice_line_rows`: the rows of ``billing.invoice_lines``.

Each function returns the SELECT of the step of that name; it reads the steps before it by name.
Lines before rounding share the columns account_id, subscription_id, line_type, product_id, plan_id,
price_id, charge_code, description, service_start, service_end, service_month, quantity, unit_price, days,
period_days, amount_precise, discount_pct, tax_jurisdiction, tax_name, tax_rate, tax_point, currency,
source_ref, reference_line_id, reference_document_number, adjustment_reason, beyond_lookback,
reversed_discount (a whole-line credit's exact discount), credited_coupon_id, credited_coupon_amount,
credited_amount (what a credit's coupon share is computed from) and lineage (what the line id is the hash of).
"""

from __future__ import annotations

from domain.money import AMOUNT, MONEY, RATE
from pipelines.invoicing.accounts import with_service_month

CORRECTION_TYPES = ("RECURRING_CREDIT", "USAGE_ADJUSTMENT", "ONE_TIME_CREDIT")
_NOT_USAGE = "('RECURRING', 'RECURRING_CREDIT', 'ONE_TIME', 'ONE_TIME_CREDIT')"


def _held_pieces() -> str:
    """SQL: per issued line a segment credits, the contiguous pieces of days it still bills: phase HELD (before
    this run: the intervals it is the latest charge of, net billed) and KEPT (after it: those still due), with
    the days of its charge period."""
    return """
        SELECT line_id, phase, min(interval_start) AS piece_start, max(interval_end) AS piece_end,
               any_value(charge_days) AS charge_days
        FROM (
            SELECT *, sum(starts_piece) OVER (PARTITION BY line_id, phase ORDER BY interval_start
                                              ROWS UNBOUNDED PRECEDING) AS piece_no
            FROM (
                SELECT *, CASE WHEN lag(interval_end) OVER (PARTITION BY line_id, phase ORDER BY interval_start)
                                    = interval_start THEN 0 ELSE 1 END AS starts_piece
                FROM (SELECT b.latest_charge_line_id AS line_id, s.interval_start, s.interval_end,
                             CAST(s.charge_end - s.charge_start AS INTEGER) AS charge_days, phase.phase
                      FROM intervals_billed b
                      JOIN interval_states s
                        USING (account_id, subscription_id, price_id, quantity, charge_start, interval_start),
                           (VALUES ('HELD'), ('KEPT')) AS phase(phase)
                      WHERE b.net_billed >= 1
                        AND (phase.phase = 'HELD' OR s.line_type IS NULL)
                        AND b.latest_charge_line_id IN (SELECT credited_line_id FROM recurring_segments
                                                        WHERE line_type = 'RECURRING_CREDIT'))
            )
        )
        GROUP BY line_id, phase, piece_no"""


def credited_lines() -> str:
    """Issued RECURRING lines a segment credits, with what the credit reverses (price, days, discount rate and
    amount, coupon, tax) and what the line bills net of its credits, amount and bundle discount: ``held_*``
    before this run, ``kept_*`` after it. Each contiguous piece of days a line still bills counts the line's
    rounded charge over those days (the whole line: its own amount and discount), so the credits of this run
    are the exact complement: line + all its credits = what one run bills for the days kept."""
    whole = "(p.piece_start = c.service_start AND p.piece_end = c.service_end)"
    days = "CAST(p.piece_end - p.piece_start AS INTEGER)"
    piece_amount = (f"CASE WHEN {whole} THEN c.amount ELSE round_money(prorated(CAST(c.unit_price * c.quantity "
                    f"AS {MONEY}), {days}, c.period_days, {days} = p.charge_days), c.currency) END")
    return f"""
    SELECT c.*, h.held_amount, h.kept_amount, h.held_discount, h.kept_discount
    FROM issued_lines c
    JOIN (
        SELECT line_id,
               sum(piece_amount) FILTER (WHERE phase = 'HELD') AS held_amount,
               coalesce(sum(piece_amount) FILTER (WHERE phase = 'KEPT'), 0) AS kept_amount,
               sum(piece_discount) FILTER (WHERE phase = 'HELD') AS held_discount,
               coalesce(sum(piece_discount) FILTER (WHERE phase = 'KEPT'), 0) AS kept_discount
        FROM (
            SELECT p.line_id, p.phase, {piece_amount} AS piece_amount,
                   CASE WHEN {whole} THEN c.discount_amount WHEN c.discount_pct IS NULL THEN 0
                        ELSE -round_money({piece_amount} * c.discount_pct, c.currency) END AS piece_discount
            FROM ({_held_pieces()}) p
            JOIN issued_lines c USING (line_id)
        )
        GROUP BY line_id
    ) h USING (line_id)"""


def recurring_lines_priced() -> str:
    """Each segment priced. A charge takes its price version, the charge period's days as denominator (or the
    plan's proration_days): ``amount_precise`` = prorated(unit_price x quantity, days, period_days, whole charge
    period or not prorated). A credit takes the credited line's price and period days and is the exact
    complement of what the line keeps: the credits of one line in this run total kept_amount - held_amount, the
    last (latest start) taking what its own rounded share -round_money(prorated(...)) leaves of that total, and
    likewise for the bundle discount (``reversed_discount``). Only credits go through the windows over the
    credits of a line (charges have no credited line: one partition of every charge, sorted for nothing)."""
    charged = f"""
            SELECT *,
                   CASE WHEN line_type = 'RECURRING_CREDIT' THEN round_money(amount_charged, credited_currency)
                   END AS own_credit,
                   CASE WHEN line_type = 'RECURRING_CREDIT'
                        THEN coalesce(round_money(round_money(amount_charged, credited_currency)
                                                  * credited_discount_pct, credited_currency), 0)
                   END AS own_discount
            FROM (
                SELECT *, prorated(CAST(unit_price * quantity AS {MONEY}), days, period_days,
                                   days = charge_days OR (line_type = 'RECURRING' AND NOT coalesce(prorate, true)))
                            AS amount_charged
                FROM (
        SELECT s.account_id, s.subscription_id, s.price_id, s.quantity, s.line_type,
               s.segment_start AS service_start, s.segment_end AS service_end, s.credited_line_id,
               s.credited_document_number, s.rebills_voided, s.beyond_lookback,
               CAST(s.segment_end - s.segment_start AS INTEGER) AS days,
               CAST(s.charge_end - s.charge_start AS INTEGER) AS charge_days,
               p.prorate,
               CASE WHEN s.line_type = 'RECURRING' THEN s.product_id ELSE c.product_id END AS product_id,
               CASE WHEN s.line_type = 'RECURRING' THEN p.plan_id ELSE coalesce(c.plan_id, p.plan_id) END AS plan_id,
               CASE WHEN s.line_type = 'RECURRING' THEN p.charge_code
                    ELSE coalesce(c.charge_code, p.charge_code) END AS charge_code,
               CASE WHEN s.line_type = 'RECURRING' THEN p.unit_price
                    ELSE CAST(coalesce(c.unit_price, p.unit_price) AS {MONEY}) END AS unit_price,
               CASE WHEN s.line_type = 'RECURRING'
                    THEN coalesce(p.proration_days, CAST(s.charge_end - s.charge_start AS INTEGER))
                    ELSE coalesce(c.period_days, p.proration_days, CAST(s.charge_end - s.charge_start AS INTEGER))
               END AS period_days,
               s.bundle_id,
               c.amount AS credited_amount, c.currency AS credited_currency,
               c.held_amount, c.kept_amount, c.held_discount, c.kept_discount,
               c.discount_pct AS credited_discount_pct,
               c.coupon_id AS credited_coupon_id, c.coupon_amount AS credited_coupon_amount,
               c.tax_jurisdiction AS credited_tax_jurisdiction, c.tax_name AS credited_tax_name,
               c.tax_rate AS credited_tax_rate, c.tax_point AS credited_tax_point
        FROM recurring_segments s
        LEFT JOIN recurring_prices p ON p.price_id = s.price_id
        LEFT JOIN credited_lines c ON c.line_id = s.credited_line_id
                )
            )"""
    return f"""
    SELECT * EXCLUDE (own_credit, own_discount, last_credit, other_credits, other_discounts),
           CAST(CASE WHEN line_type = 'RECURRING' THEN amount_charged
                     WHEN last_credit THEN CAST(kept_amount - held_amount + other_credits AS {MONEY})
                     ELSE CAST(-own_credit AS {MONEY}) END AS {MONEY}) AS amount_precise,
           CASE WHEN line_type = 'RECURRING_CREDIT' AND last_credit
                THEN kept_discount - held_discount - other_discounts END AS reversed_discount
    FROM (
        SELECT *,
               row_number() OVER latest_first = 1 AS last_credit,
               sum(own_credit) OVER credits_of_line - own_credit AS other_credits,
               sum(own_discount) OVER credits_of_line - own_discount AS other_discounts
        FROM ({charged})
        WHERE line_type = 'RECURRING_CREDIT'
        WINDOW credits_of_line AS (PARTITION BY credited_line_id),
               latest_first AS (PARTITION BY credited_line_id ORDER BY service_start DESC)
        UNION ALL BY NAME
        SELECT * FROM ({charged}) WHERE line_type = 'RECURRING'
    )"""


def _catalog_change() -> str:
    """SQL: the segment ``r`` is corrected in the opposite direction under another price version of the same
    plan (the plan of that segment's price) over overlapping days: a price change, not a service change."""
    return """EXISTS (SELECT 1 FROM recurring_segments o JOIN recurring_prices op ON op.price_id = o.price_id
                      WHERE o.subscription_id = r.subscription_id AND o.price_id <> r.price_id
                        AND op.plan_id = r.plan_id AND o.line_type <> r.line_type
                        AND o.segment_start < r.service_end AND o.segment_end > r.service_start)"""


def recurring_lines(month: str, products: str, plans: str, bundle_history: str, bundle_members: str) -> str:
    """Priced segments as invoice lines: description, the bundle discount rate (charges: in force on the
    service start, member products only; credits: the credited line's), tax (a credit reverses the credited
    line's jurisdiction, name, rate and tax point), service month, reason, references, lineage."""
    return f"""
    SELECT r.account_id, r.subscription_id, r.line_type, r.product_id, r.plan_id, r.price_id, r.charge_code,
           CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN 'Credit: ' ELSE '' END
             || coalesce(p.name, r.charge_code) || coalesce(' - ' || pl.name, '')
             || ' ' || strftime(r.service_start, '%Y-%m-%d')
             || ' to ' || strftime(CAST(r.service_end - 1 AS DATE), '%Y-%m-%d') AS description,
           r.service_start, r.service_end, r.service_month, r.quantity, r.unit_price, r.days, r.period_days,
           r.amount_precise,
           CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN r.credited_discount_pct
                ELSE (SELECT CAST(max(h.discount_pct) AS {RATE}) FROM {bundle_history} h
                      WHERE h.bundle_id = r.bundle_id
                        AND CAST(r.service_start AS TIMESTAMP) >= h.valid_from
                        AND CAST(r.service_start AS TIMESTAMP) < coalesce(h.valid_to, TIMESTAMP '9999-12-31')
                        AND EXISTS (SELECT 1 FROM {bundle_members} m
                                    WHERE m.bundle_id = r.bundle_id AND m.product_id = r.product_id))
           END AS discount_pct,
           r.reversed_discount,
           CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN r.credited_coupon_id END AS credited_coupon_id,
           r.credited_coupon_amount, r.credited_amount,
           CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN coalesce(r.credited_tax_jurisdiction, a.tax_jurisdiction)
                ELSE a.tax_jurisdiction END AS tax_jurisdiction,
           CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN r.credited_tax_name ELSE t.tax_name END AS tax_name,
           CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN r.credited_tax_rate ELSE t.tax_rate END AS tax_rate,
           CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN coalesce(r.credited_tax_point, a.tax_point)
                ELSE a.tax_point END AS tax_point,
           a.currency,
           CAST(r.subscription_id AS VARCHAR) || '/' || CAST(r.price_id AS VARCHAR) AS source_ref,
           r.credited_line_id AS reference_line_id,
           r.credited_document_number AS reference_document_number,
           CASE WHEN r.service_month = {month} THEN NULL
                WHEN r.line_type = 'RECURRING' AND r.rebills_voided THEN 'VOIDED'
                WHEN {_catalog_change()} THEN 'CATALOG_CHANGE'
                ELSE 'BACKDATED_CHANGE' END AS adjustment_reason,
           r.beyond_lookback,
           r.line_type || '|' || CAST(r.subscription_id AS VARCHAR) || '|' || CAST(r.price_id AS VARCHAR)
             || '|' || CAST(r.quantity AS VARCHAR) || '|' || CAST(r.service_start AS VARCHAR)
             || '|' || CAST(r.service_end AS VARCHAR) || '|' || coalesce(r.credited_line_id, '') AS lineage
    FROM {with_service_month('recurring_lines_priced', 'service_start', month)} r
    JOIN billed_accounts a USING (account_id)
    LEFT JOIN account_tax_rates t USING (account_id)
    LEFT JOIN {products} p ON p.product_id = r.product_id
    LEFT JOIN {plans} pl ON pl.plan_id = r.plan_id"""


def usage_owed(month: str, rated: str, rated_columns: set[str]) -> str:
    """Rated lines of the billed accounts, billing months from their usage_from_month (report_from_month, or
    ``month`` for an account settled from its current period) to ``month``. A line of a
    charge with no usage at all (no events, or no quantity when ``rated`` has no event count) and a zero
    amount is left out. ``unit_price`` is the rated one when ``rated`` has the column."""
    unit_price = "u.unit_price" if "unit_price" in rated_columns else "NULL"
    usage_seen = next((f"u.{c}" for c in ("event_count", "quantity") if c in rated_columns), "u.billable_quantity")
    return f"""
    SELECT u.rated_line_id, u.billing_month AS rated_month, u.account_id, u.subscription_id, u.plan_id, u.price_id,
           u.charge_code, u.metric, coalesce(u.line_type, 'USAGE') AS rated_line_type, u.service_start, u.service_end,
           CAST(u.billable_quantity AS {MONEY}) AS quantity, CAST({unit_price} AS {MONEY}) AS unit_price,
           CAST(u.amount_precise AS {MONEY}) AS amount_precise, CAST(u.amount AS {AMOUNT}) AS amount
    FROM {rated} u
    JOIN settled_accounts a ON a.account_id = u.account_id
    WHERE u.billing_month <= {month}
      AND u.billing_month >= a.usage_from_month
      AND NOT (coalesce(u.amount_precise, 0) = 0 AND coalesce(u.amount, 0) = 0
               AND coalesce({usage_seen}, 0) = 0)"""


def usage_issued() -> str:
    """Per rated line (source_ref) issued to a billed account since its usage_from_month: the sums issued and the
    latest issued line (what an adjustment references and, for a credit, whose tax it reverses)."""
    return f"""
    SELECT * EXCLUDE (latest), latest.line_id AS latest_line_id, latest.document_number AS latest_document_number,
           latest.tax_jurisdiction, latest.tax_name, latest.tax_rate, latest.tax_point
    FROM (
    SELECT source_ref, any_value(account_id) AS account_id,
           max(coalesce(service_month, billing_month)) AS rated_month,
           sum(amount_precise) AS amount_precise, sum(amount) AS amount, sum(quantity) AS quantity,
           arg_max({{'line_id': line_id, 'document_number': document_number, 'tax_jurisdiction': tax_jurisdiction,
                    'tax_name': tax_name, 'tax_rate': tax_rate, 'tax_point': tax_point}},
                   CAST(billing_month AS VARCHAR) || line_id) AS latest,
           any_value(subscription_id) AS subscription_id, any_value(plan_id) AS plan_id,
           any_value(price_id) AS price_id, any_value(charge_code) AS charge_code,
           any_value(product_id) AS product_id,
           min(service_start) AS service_start, max(service_end) AS service_end
    FROM issued_lines
    WHERE line_type NOT IN {_NOT_USAGE}
    GROUP BY source_ref
    )"""


def usage_lines(month: str, products: str, plans: str) -> str:
    """Usage owed minus issued, per rated line. Month ``month``'s lines keep the rated line type (a 0.00 line
    within an allowance included); a difference on an earlier month's line is a USAGE_ADJUSTMENT (LATE_USAGE,
    VOIDED when a voided document held it, BACKDATED_CHANGE when the rated line no longer exists: reversed in
    full) referencing the latest issued line. A charge is taxed now, a credit at the issued line's tax."""
    return f"""
    SELECT *, CAST(d_amount_precise AS {MONEY}) AS amount_precise, CAST(d_amount AS {AMOUNT}) AS amount
    FROM (
        SELECT coalesce(o.account_id, i.account_id) AS account_id,
               coalesce(o.subscription_id, i.subscription_id) AS subscription_id,
               CASE WHEN coalesce(o.rated_month, i.rated_month) = {month}
                    THEN CASE WHEN o.rated_line_type = 'USAGE' THEN 'USAGE' ELSE o.rated_line_type END
                    ELSE 'USAGE_ADJUSTMENT' END AS line_type,
               coalesce(pl.product_id, i.product_id) AS product_id,
               coalesce(o.plan_id, i.plan_id) AS plan_id, coalesce(o.price_id, i.price_id) AS price_id,
               coalesce(o.charge_code, i.charge_code) AS charge_code,
               CASE WHEN coalesce(o.rated_month, i.rated_month) < {month} THEN 'Adjustment: ' ELSE '' END
                 || coalesce(p.name, 'Usage') || ' - ' || coalesce(o.metric, o.charge_code, i.charge_code)
                 || CASE WHEN o.rated_line_type IS NULL OR o.rated_line_type = 'USAGE' THEN ''
                         ELSE ' (' || o.rated_line_type || ')' END
                 || ' ' || strftime(coalesce(o.service_start, i.service_start), '%Y-%m-%d') || ' to '
                 || strftime(CAST(coalesce(o.service_end, i.service_end) - 1 AS DATE), '%Y-%m-%d') AS description,
               coalesce(o.service_start, i.service_start) AS service_start,
               coalesce(o.service_end, i.service_end) AS service_end,
               coalesce(o.rated_month, i.rated_month) AS service_month,
               CAST(coalesce(o.quantity, 0) - coalesce(i.quantity, 0) AS {MONEY}) AS quantity, o.unit_price,
               CAST(NULL AS INTEGER) AS days, CAST(NULL AS INTEGER) AS period_days,
               coalesce(o.amount_precise, 0) - coalesce(i.amount_precise, 0) AS d_amount_precise,
               coalesce(o.amount, 0) - coalesce(i.amount, 0) AS d_amount,
               CAST(NULL AS {RATE}) AS discount_pct,
               CASE WHEN i.source_ref IS NOT NULL AND coalesce(o.amount, 0) < i.amount THEN i.tax_jurisdiction
                    ELSE a.tax_jurisdiction END AS tax_jurisdiction,
               CASE WHEN i.source_ref IS NOT NULL AND coalesce(o.amount, 0) < i.amount THEN i.tax_name ELSE t.tax_name END AS tax_name,
               CASE WHEN i.source_ref IS NOT NULL AND coalesce(o.amount, 0) < i.amount THEN i.tax_rate ELSE t.tax_rate END AS tax_rate,
               CASE WHEN i.source_ref IS NOT NULL AND coalesce(o.amount, 0) < i.amount THEN coalesce(i.tax_point, a.tax_point)
                    ELSE a.tax_point END AS tax_point,
               a.currency,
               coalesce(o.rated_line_id, i.source_ref) AS source_ref,
               i.latest_line_id AS reference_line_id, i.latest_document_number AS reference_document_number,
               CASE WHEN coalesce(o.rated_month, i.rated_month) = {month} THEN NULL
                    WHEN o.rated_line_id IS NULL THEN 'BACKDATED_CHANGE'
                    WHEN i.source_ref IS NULL
                     AND o.rated_line_id IN (SELECT source_ref FROM voided_lines) THEN 'VOIDED'
                    ELSE 'LATE_USAGE' END AS adjustment_reason,
               coalesce(o.rated_month, i.rated_month) < (SELECT bill_from_month FROM settlement_months)
                 AS beyond_lookback,
               CASE WHEN coalesce(o.rated_month, i.rated_month) = {month} THEN 'USAGE|'
                    ELSE 'USAGE_ADJUSTMENT|' || coalesce(i.latest_line_id, '') || '|' END
                 || coalesce(o.rated_line_id, i.source_ref) AS lineage,
               i.source_ref IS NOT NULL AS was_issued
        FROM usage_owed o
        FULL JOIN usage_issued i ON i.source_ref = o.rated_line_id
        JOIN billed_accounts a ON a.account_id = coalesce(o.account_id, i.account_id)
        LEFT JOIN account_tax_rates t ON t.account_id = a.account_id
        LEFT JOIN {plans} pl ON pl.plan_id = coalesce(o.plan_id, i.plan_id)
        LEFT JOIN {products} p ON p.product_id = coalesce(pl.product_id, i.product_id)
    )
    WHERE d_amount <> 0 OR d_amount_precise <> 0 OR (NOT was_issued AND service_month = {month})"""


ONE_TIME_UNIT_PRICE = "coalesce(oi.unit_price, p.base_price)"
"""The price of a one-time order item (alias ``oi``, its product ``p``): the agreed unit price, else the product's base
price."""


def one_time_owed(orders: str, order_items: str, products: str) -> str:
    """ONE_TIME items of CONFIRMED orders of the billed accounts effective from their items_from (report_from, or
    P's start for an account settled from its current period) up to P's end, at
    the agreed unit price (else the product's base price)."""
    return f"""
    SELECT oi.order_item_id, o.account_id, oi.subscription_id, oi.product_id, oi.plan_id, p.sku AS charge_code,
           p.name || ' (order ' || o.order_number || ')' AS description, o.effective_date,
           CAST(oi.quantity AS {MONEY}) AS quantity,
           CAST({ONE_TIME_UNIT_PRICE} AS {MONEY}) AS unit_price
    FROM {order_items} oi
    JOIN {orders} o ON o.order_id = oi.order_id
    JOIN {products} p ON p.product_id = oi.product_id
    JOIN settled_accounts a ON a.account_id = o.account_id
    WHERE o.status = 'CONFIRMED' AND p.product_type = 'ONE_TIME'
      AND o.effective_date >= a.items_from AND o.effective_date < a.period_end"""


def one_time_issued() -> str:
    """Per order item issued to a billed account since its items_from: net count issued (ONE_TIME - ONE_TIME_CREDIT)
    and the latest ONE_TIME line, whose values a reversal negates exactly."""
    return """
    SELECT i.source_ref, sum(CASE WHEN i.line_type = 'ONE_TIME' THEN 1 ELSE -1 END) AS net_issued,
           arg_max(i.line_id, CAST(i.billing_month AS VARCHAR) || i.line_id) FILTER (WHERE i.line_type = 'ONE_TIME')
             AS latest_line_id
    FROM issued_lines i
    WHERE i.line_type IN ('ONE_TIME', 'ONE_TIME_CREDIT')
    GROUP BY i.source_ref"""


def one_time_lines(month: str) -> str:
    """ONE_TIME for an owed item not issued (an earlier period's: BACKDATED_CHANGE, or VOIDED when a voided
    document held it); ONE_TIME_CREDIT (ORDER_REVERSED) for an issued item no longer owed: the issued line
    negated, at its tax."""
    not_issued = """(SELECT o.* FROM one_time_owed o
                     LEFT JOIN one_time_issued i ON i.source_ref = CAST(o.order_item_id AS VARCHAR)
                     WHERE coalesce(i.net_issued, 0) <= 0)"""
    no_longer_owed = """(SELECT l.* EXCLUDE (service_month) FROM one_time_issued i JOIN issued_lines l ON l.line_id = i.latest_line_id
                         WHERE i.net_issued >= 1
                           AND NOT EXISTS (SELECT 1 FROM one_time_owed o
                                           WHERE CAST(o.order_item_id AS VARCHAR) = i.source_ref))"""
    bill_from_month = "(SELECT bill_from_month FROM settlement_months)"
    return f"""
    SELECT o.account_id, o.subscription_id, 'ONE_TIME' AS line_type, o.product_id, o.plan_id,
           CAST(NULL AS BIGINT) AS price_id, o.charge_code, o.description,
           o.effective_date AS service_start, CAST(o.effective_date + 1 AS DATE) AS service_end, o.service_month,
           o.quantity, o.unit_price, CAST(NULL AS INTEGER) AS days, CAST(NULL AS INTEGER) AS period_days,
           CAST(o.unit_price * o.quantity AS {MONEY}) AS amount_precise, CAST(NULL AS {RATE}) AS discount_pct,
           a.tax_jurisdiction, t.tax_name, t.tax_rate, a.tax_point, a.currency,
           CAST(o.order_item_id AS VARCHAR) AS source_ref,
           CAST(NULL AS VARCHAR) AS reference_line_id, CAST(NULL AS VARCHAR) AS reference_document_number,
           CASE WHEN o.service_month = {month} THEN NULL
                WHEN CAST(o.order_item_id AS VARCHAR) IN (SELECT source_ref FROM voided_lines
                                                          WHERE line_type = 'ONE_TIME') THEN 'VOIDED'
                ELSE 'BACKDATED_CHANGE' END AS adjustment_reason,
           o.service_month < {bill_from_month} AS beyond_lookback,
           'ONE_TIME|' || CAST(o.order_item_id AS VARCHAR) AS lineage
    FROM {with_service_month(not_issued, 'effective_date', month)} o
    JOIN billed_accounts a ON a.account_id = o.account_id
    LEFT JOIN account_tax_rates t ON t.account_id = o.account_id
    UNION ALL BY NAME
    SELECT l.account_id, l.subscription_id, 'ONE_TIME_CREDIT' AS line_type, l.product_id, l.plan_id, l.price_id,
           l.charge_code, 'Credit: ' || coalesce(l.description, l.charge_code, '') AS description,
           l.service_start, l.service_end, l.service_month,
           l.quantity, l.unit_price, l.days, l.period_days, -l.amount_precise AS amount_precise, l.discount_pct,
           -l.discount_amount AS reversed_discount, l.coupon_id AS credited_coupon_id,
           l.coupon_amount AS credited_coupon_amount, l.amount AS credited_amount,
           l.tax_jurisdiction, l.tax_name, l.tax_rate, l.tax_point, a.currency, l.source_ref,
           l.line_id AS reference_line_id, l.document_number AS reference_document_number,
           'ORDER_REVERSED' AS adjustment_reason,
           l.service_month < {bill_from_month} AS beyond_lookback,
           'ONE_TIME_CREDIT|' || l.source_ref || '|' || l.line_id AS lineage
    FROM {with_service_month(no_longer_owed, 'service_start', month)} l
    JOIN billed_accounts a ON a.account_id = l.account_id"""


def rounded_lines() -> str:
    """Every line with ``amount`` = round_money(amount_precise) (usage lines keep the rated amount) and the
    account's invoice draft id (a credit note draft takes it later: ``routed_lines``)."""
    return """
    SELECT l.*, a.invoice_id
    FROM (SELECT *, round_money(amount_precise, currency) AS amount FROM recurring_lines
          UNION ALL BY NAME
          SELECT * EXCLUDE (d_amount_precise, d_amount, was_issued) FROM usage_lines
          UNION ALL BY NAME
          SELECT *, round_money(amount_precise, currency) AS amount FROM one_time_lines) l
    JOIN billed_accounts a USING (account_id)"""


def discounted_lines() -> str:
    """``discount_amount`` = -round_money(amount x discount_pct) on lines with a bundle discount, else 0; a credit
    of a whole line reverses its discount exactly."""
    return f"""
    SELECT *,
           CAST(coalesce(reversed_discount,
                         CASE WHEN discount_pct IS NULL THEN 0 ELSE -round_money(amount * discount_pct, currency) END)
                AS {AMOUNT}) AS discount_amount
    FROM rounded_lines"""


def taxed_lines() -> str:
    """``net_amount`` = amount + discount_amount + coupon_amount; ``tax_amount`` = round_money(net_amount x
    tax_rate), 0 when the line has no rate (tax_rate stays NULL: a NO_TAX_RATE exception);
    ``total_amount`` = net_amount + tax_amount."""
    return f"""
    SELECT *, CAST(net_amount + tax_amount AS {AMOUNT}) AS total_amount
    FROM (
        SELECT *, CAST(coalesce(round_money(CAST(net_amount AS {MONEY}) * tax_rate, currency), 0) AS {AMOUNT})
                    AS tax_amount
        FROM (
            SELECT * REPLACE (CAST(tax_rate AS {RATE}) AS tax_rate),
                   CAST(amount + discount_amount + coupon_amount AS {AMOUNT}) AS net_amount
            FROM coupon_allocations
        )
    )"""


def routed_lines() -> str:
    """The draft document of each line within the lookback: a correction that credits (negative, referencing
    an issued line) goes to the credit note draft when the customer takes credit notes; an invoice draft whose
    lines would total below zero goes to the credit note draft whole. Lines beyond the lookback: no document.
    (The invoice draft's total is a group-by joined back: a window over the wide lines costs more.)"""
    to_credit_note = (f"t.line_type IN {CORRECTION_TYPES} AND t.amount < 0 AND t.reference_line_id IS NOT NULL "
                      "AND a.takes_credit_notes")
    return f"""
    SELECT * EXCLUDE (credit_note_draft_id, invoice_total) REPLACE (
               CASE WHEN beyond_lookback THEN NULL
                    WHEN to_credit_note OR invoice_total < 0 THEN credit_note_draft_id
                    ELSE invoice_id END AS invoice_id)
    FROM (
        SELECT t.*, a.credit_note_id AS credit_note_draft_id, {to_credit_note} AS to_credit_note
        FROM taxed_lines t JOIN billed_accounts a USING (account_id)
    )
    JOIN (
        SELECT t.account_id,
               sum(CASE WHEN ({to_credit_note}) OR t.beyond_lookback THEN 0 ELSE t.total_amount END) AS invoice_total
        FROM taxed_lines t JOIN billed_accounts a USING (account_id)
        GROUP BY t.account_id
    ) USING (account_id)"""


def _line_columns(month: str) -> str:
    """SQL: the ``billing.invoice_lines`` columns of a ``routed_lines`` row, in contract order and types."""
    return f"""
           md5(coalesce(invoice_id, 'BEYOND_LOOKBACK') || '|' || lineage) AS line_id,
           invoice_id,
           {month} AS billing_month,
           CAST(account_id AS BIGINT) AS account_id,
           CAST(subscription_id AS BIGINT) AS subscription_id,
           line_type,
           CAST(product_id AS BIGINT) AS product_id,
           CAST(plan_id AS BIGINT) AS plan_id,
           CAST(price_id AS BIGINT) AS price_id,
           charge_code, description,
           CAST(service_start AS DATE) AS service_start,
           CAST(service_end AS DATE) AS service_end,
           CAST(quantity AS {MONEY}) AS quantity,
           CAST(unit_price AS {MONEY}) AS unit_price,
           CAST(days AS INTEGER) AS days,
           CAST(period_days AS INTEGER) AS period_days,
           CAST(amount_precise AS {MONEY}) AS amount_precise,
           CAST(amount AS {AMOUNT}) AS amount,
           discount_amount, net_amount,
           tax_jurisdiction, tax_name, tax_rate, tax_amount, total_amount,
           currency, source_ref, reference_line_id,
           CAST(service_month AS DATE) AS service_month,
           CAST(discount_pct AS {RATE}) AS discount_pct,
           CAST(coupon_id AS BIGINT) AS coupon_id,
           CAST(coupon_amount AS {AMOUNT}) AS coupon_amount,
           CAST(tax_point AS DATE) AS tax_point,
           reference_document_number, adjustment_reason"""


def settled_line_rows(month: str) -> str:
    """Every difference the run found, as line rows plus ``beyond_lookback`` (not drafted: reported); unordered
    (its readers write, group or look it up: sorting every line of a shard is not free)."""
    return f"""
    SELECT {_line_columns(month)}, beyond_lookback
    FROM routed_lines"""


def invoice_line_rows(month: str) -> str:
    """The rows of ``billing.invoice_lines``: ``line_id`` = md5(invoice_id | lineage), contract types, in
    invoice order (account, line type, subscription, service start); differences beyond the lookback left out."""
    return f"""
    SELECT {_line_columns(month)}
    FROM routed_lines
    WHERE NOT beyond_lookback
    ORDER BY account_id, line_type, subscription_id NULLS LAST, service_start, line_id"""
