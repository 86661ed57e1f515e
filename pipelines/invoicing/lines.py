"""Invoicing steps: from segments, rated usage and orders to priced, discounted and taxed lines (docs/billing.md).

* ``credited_line_bundles``, ``recurring_lines_priced``, ``recurring_lines``: recurring segments
  priced (the proration rule, ``prorated``) and described;
* ``usage_lines``: the month's rated usage; ``one_time_lines``: confirmed one-time order items;
* ``rounded_lines``: every line rounded to the minor unit (usage keeps the rated amount);
* ``discounted_lines``: the bundle discount; ``taxed_lines``: net, tax and total per line;
* :func:`invoice_line_rows`: the rows of ``billing.invoice_lines`` (ids, contract types, order).

Each function returns the SELECT of the step of that name; it reads the steps before it by name.
Lines before rounding share the columns invoice_id, account_id, subscription_id, line_type,
product_id, plan_id, price_id, charge_code, description, service_start, service_end, quantity,
unit_price, days, period_days, amount_precise, discount_pct, tax_jurisdiction, tax_name, tax_rate,
currency, source_ref, reference_line_id and lineage (what the line id is the hash of).
"""

from __future__ import annotations

from domain.money import AMOUNT, MONEY, RATE


def credited_line_bundles() -> str:
    """Per earlier RECURRING line, the bundle of the version in force at its start (a credit of it carries that discount)."""
    return """
    SELECT r.line_id, max(v.bundle_id) AS bundle_id
    FROM earlier_recurring_lines r
    JOIN service_versions v ON v.subscription_id = r.subscription_id
                     AND r.service_start >= v.valid_from AND r.service_start < v.valid_to
    WHERE r.line_type = 'RECURRING'
    GROUP BY r.line_id"""


def recurring_lines_priced() -> str:
    """Each segment priced. A charge takes its price version; a credit the credited line's price, period
    days, bundle and tax. ``amount_precise`` = prorated(unit_price x quantity, days, period_days, whole
    period or not prorated), negated for credits; a credit of a whole line is exactly minus that line."""
    return f"""
    SELECT *,
           CASE WHEN credits_whole_line THEN -CAST(credited_amount_precise AS {MONEY})
                ELSE prorated(CAST(unit_price * quantity AS {MONEY}), days, period_days,
                              days = window_days OR (line_type = 'RECURRING' AND NOT coalesce(prorate, true)))
                     * CASE WHEN line_type = 'RECURRING_CREDIT' THEN -1 ELSE 1 END
           END AS amount_precise
    FROM (
        SELECT s.account_id, s.subscription_id, s.price_id, s.quantity, s.line_type,
               s.segment_start AS service_start, s.segment_end AS service_end, s.credited_line_id,
               CAST(s.segment_end - s.segment_start AS INTEGER) AS days,
               CAST(w.window_end - w.window_start AS INTEGER) AS window_days,
               p.prorate,
               CASE WHEN s.line_type = 'RECURRING' THEN s.product_id ELSE c.product_id END AS product_id,
               CASE WHEN s.line_type = 'RECURRING' THEN p.plan_id ELSE coalesce(c.plan_id, p.plan_id) END AS plan_id,
               CASE WHEN s.line_type = 'RECURRING' THEN p.charge_code
                    ELSE coalesce(c.charge_code, p.charge_code) END AS charge_code,
               CASE WHEN s.line_type = 'RECURRING' THEN p.unit_price
                    ELSE CAST(coalesce(c.unit_price, p.unit_price) AS {MONEY}) END AS unit_price,
               CASE WHEN s.line_type = 'RECURRING'
                    THEN coalesce(p.proration_days, CAST(w.window_end - w.window_start AS INTEGER))
                    ELSE coalesce(c.period_days, p.proration_days, CAST(w.window_end - w.window_start AS INTEGER))
               END AS period_days,
               CASE WHEN s.line_type = 'RECURRING' THEN s.bundle_id ELSE cb.bundle_id END AS bundle_id,
               coalesce(s.line_type = 'RECURRING_CREDIT'
                        AND s.segment_start = c.service_start AND s.segment_end = c.service_end, false)
                 AS credits_whole_line,
               c.amount_precise AS credited_amount_precise, c.tax_jurisdiction AS credited_tax_jurisdiction,
               c.tax_name AS credited_tax_name, c.tax_rate AS credited_tax_rate
        FROM recurring_segments s
        JOIN billing_windows w USING (account_id, billing_window)
        LEFT JOIN recurring_prices p ON p.price_id = s.price_id
        LEFT JOIN earlier_recurring_lines c ON c.line_id = s.credited_line_id
        LEFT JOIN credited_line_bundles cb ON cb.line_id = s.credited_line_id
    )"""


def recurring_lines(products: str, plans: str, bundles: str) -> str:
    """Priced segments as invoice lines: description, bundle discount rate, tax (a credit reverses the
    credited line's jurisdiction, name and rate), lineage."""
    return f"""
    SELECT a.invoice_id, r.account_id, r.subscription_id, r.line_type, r.product_id, r.plan_id, r.price_id,
           r.charge_code,
           CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN 'Credit: ' ELSE '' END
             || coalesce(p.name, r.charge_code) || coalesce(' - ' || pl.name, '')
             || ' ' || strftime(r.service_start, '%Y-%m-%d')
             || ' to ' || strftime(CAST(r.service_end - 1 AS DATE), '%Y-%m-%d') AS description,
           r.service_start, r.service_end, r.quantity, r.unit_price, r.days, r.period_days,
           r.amount_precise, b.discount_pct,
           CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN coalesce(r.credited_tax_jurisdiction, a.tax_jurisdiction)
                ELSE a.tax_jurisdiction END AS tax_jurisdiction,
           CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN r.credited_tax_name ELSE t.tax_name END AS tax_name,
           CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN r.credited_tax_rate ELSE t.tax_rate END AS tax_rate,
           a.currency,
           CAST(r.subscription_id AS VARCHAR) || '/' || CAST(r.price_id AS VARCHAR) AS source_ref,
           r.credited_line_id AS reference_line_id,
           r.line_type || '|' || CAST(r.subscription_id AS VARCHAR) || '|' || CAST(r.price_id AS VARCHAR)
             || '|' || CAST(r.quantity AS VARCHAR) || '|' || CAST(r.service_start AS VARCHAR)
             || '|' || CAST(r.service_end AS VARCHAR) || '|' || coalesce(r.credited_line_id, '') AS lineage
    FROM recurring_lines_priced r
    JOIN billed_accounts a USING (account_id)
    LEFT JOIN account_tax_rates t USING (account_id)
    LEFT JOIN {products} p ON p.product_id = r.product_id
    LEFT JOIN {plans} pl ON pl.plan_id = r.plan_id
    LEFT JOIN {bundles} b ON b.bundle_id = r.bundle_id"""


def usage_lines(month: str, rated: str, products: str, plans: str, rated_columns: set[str]) -> str:
    """The month's rated rows of billed accounts, amounts as rated (``amount`` already rounded). A row of a
    charge with no usage at all (no events, or no quantity when ``rated`` has no event count) and a zero
    amount is left out. ``unit_price`` is the rated one when ``rated`` has the column."""
    unit_price = "u.unit_price" if "unit_price" in rated_columns else "NULL"
    usage_seen = next((f"u.{c}" for c in ("event_count", "quantity") if c in rated_columns), "u.billable_quantity")
    return f"""
    SELECT a.invoice_id, u.account_id, u.subscription_id,
           CASE WHEN u.line_type IS NULL OR u.line_type = 'USAGE' THEN 'USAGE' ELSE u.line_type END AS line_type,
           pl.product_id, u.plan_id, u.price_id, u.charge_code,
           coalesce(p.name, 'Usage') || ' - ' || coalesce(u.metric, u.charge_code)
             || CASE WHEN u.line_type IS NULL OR u.line_type = 'USAGE' THEN '' ELSE ' (' || u.line_type || ')' END
             || ' ' || strftime(u.service_start, '%Y-%m-%d') || ' to '
             || strftime(CAST(u.service_end - 1 AS DATE), '%Y-%m-%d') AS description,
           u.service_start, u.service_end,
           CAST(u.billable_quantity AS {MONEY}) AS quantity, CAST({unit_price} AS {MONEY}) AS unit_price,
           CAST(NULL AS INTEGER) AS days, CAST(NULL AS INTEGER) AS period_days,
           CAST(u.amount_precise AS {MONEY}) AS amount_precise, CAST(NULL AS {RATE}) AS discount_pct,
           a.tax_jurisdiction, t.tax_name, t.tax_rate, a.currency,
           CAST(u.rated_line_id AS VARCHAR) AS source_ref, CAST(NULL AS VARCHAR) AS reference_line_id,
           'USAGE|' || CAST(u.rated_line_id AS VARCHAR) AS lineage,
           CAST(u.amount AS {AMOUNT}) AS amount
    FROM {rated} u
    JOIN billed_accounts a ON a.account_id = u.account_id
    LEFT JOIN account_tax_rates t ON t.account_id = u.account_id
    LEFT JOIN {plans} pl ON pl.plan_id = u.plan_id
    LEFT JOIN {products} p ON p.product_id = pl.product_id
    WHERE u.billing_month = {month}
      AND NOT (coalesce(u.amount_precise, 0) = 0 AND coalesce(u.amount, 0) = 0
               AND coalesce({usage_seen}, 0) = 0)"""


def one_time_lines(month: str, orders: str, order_items: str, products: str, billed: str) -> str:
    """ONE_TIME items of CONFIRMED orders effective in P, at the agreed unit price (else the product's
    base price), unless an earlier month already billed the item."""
    return f"""
    SELECT a.invoice_id, o.account_id, oi.subscription_id, 'ONE_TIME' AS line_type, oi.product_id,
           oi.plan_id, CAST(NULL AS BIGINT) AS price_id, p.sku AS charge_code,
           p.name || ' (order ' || o.order_number || ')' AS description,
           o.effective_date AS service_start, CAST(o.effective_date + 1 AS DATE) AS service_end,
           CAST(oi.quantity AS {MONEY}) AS quantity,
           CAST(coalesce(oi.unit_price, p.base_price) AS {MONEY}) AS unit_price,
           CAST(NULL AS INTEGER) AS days, CAST(NULL AS INTEGER) AS period_days,
           CAST(CAST(coalesce(oi.unit_price, p.base_price) AS {MONEY}) * CAST(oi.quantity AS {MONEY}) AS {MONEY})
             AS amount_precise,
           CAST(NULL AS {RATE}) AS discount_pct,
           a.tax_jurisdiction, t.tax_name, t.tax_rate, a.currency,
           CAST(oi.order_item_id AS VARCHAR) AS source_ref, CAST(NULL AS VARCHAR) AS reference_line_id,
           'ONE_TIME|' || CAST(oi.order_item_id AS VARCHAR) AS lineage
    FROM {order_items} oi
    JOIN {orders} o ON o.order_id = oi.order_id
    JOIN {products} p ON p.product_id = oi.product_id
    JOIN billed_accounts a ON a.account_id = o.account_id
    LEFT JOIN account_tax_rates t ON t.account_id = o.account_id
    WHERE o.status = 'CONFIRMED' AND p.product_type = 'ONE_TIME'
      AND o.effective_date >= a.period_start AND o.effective_date < a.period_end
      AND NOT EXISTS (SELECT 1 FROM {billed} x
                      WHERE x.billing_month < {month} AND x.line_type = 'ONE_TIME'
                        AND x.source_ref = CAST(oi.order_item_id AS VARCHAR))"""


def rounded_lines() -> str:
    """Every line with ``amount`` = round_money(amount_precise); usage lines keep the rated amount."""
    return """
    SELECT *, round_money(amount_precise, currency) AS amount FROM recurring_lines
    UNION ALL BY NAME
    SELECT * FROM usage_lines
    UNION ALL BY NAME
    SELECT *, round_money(amount_precise, currency) AS amount FROM one_time_lines"""


def discounted_lines() -> str:
    """``discount_amount`` = -round_money(amount x discount_pct) on lines with a bundle discount, else 0."""
    return f"""
    SELECT *,
           CAST(CASE WHEN discount_pct IS NULL THEN 0 ELSE -round_money(amount * discount_pct, currency) END
                AS {AMOUNT}) AS discount_amount
    FROM rounded_lines"""


def taxed_lines() -> str:
    """``net_amount`` = amount + discount_amount; ``tax_amount`` = round_money(net_amount x tax_rate) (rate 0
    when none was found); ``total_amount`` = net_amount + tax_amount."""
    return f"""
    SELECT *, CAST(net_amount + tax_amount AS {AMOUNT}) AS total_amount
    FROM (
        SELECT *, CAST(round_money(CAST(net_amount AS {MONEY}) * tax_rate, currency) AS {AMOUNT}) AS tax_amount
        FROM (
            SELECT * REPLACE (CAST(coalesce(tax_rate, 0) AS {RATE}) AS tax_rate),
                   CAST(amount + discount_amount AS {AMOUNT}) AS net_amount
            FROM discounted_lines
        )
    )"""


def invoice_line_rows(month: str) -> str:
    """The rows of ``billing.invoice_lines``: ``line_id`` = md5(invoice_id | lineage), contract types, in
    invoice order (account, line type, subscription, service start)."""
    return f"""
    SELECT md5(invoice_id || '|' || lineage) AS line_id,
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
           currency, source_ref, reference_line_id
    FROM taxed_lines
    ORDER BY account_id, line_type, subscription_id NULLS LAST, service_start, line_id"""
