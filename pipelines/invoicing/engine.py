"""The bill cycle engine: invoice lines and draft invoice headers (docs/billing.md).

Plain functions over DuckDB SQL, no Dagster imports. Each takes a connection on which
``domain.install_macros(con)`` was called, the names of its input relations
(warehouse tables by default; tests pass their own) and the billing month; each returns a
lazy ``DuckDBPyRelation`` whose columns match the target table by name.

Recurring fees are billed as a set difference over day coverage, computed on intervals
(never one row per day): per (subscription, price_id, quantity) and per window (the billing
period P and the next period N) the boundaries of every DUE segment and every already
BILLED segment cut the window into elementary intervals; each elementary interval is either
due-and-unbilled (charge), billed-but-no-longer-due (credit, referencing the line credited)
or settled; adjacent intervals of the same kind are merged back into segments
(gaps-and-islands). Running the same month twice on the same inputs gives the same rows.
"""

from __future__ import annotations

from datetime import date

import duckdb

from warehouse.tables import TABLES

__all__ = ["build_invoice_lines", "build_invoices", "tax_exceptions", "INVOICE_LINE_COLUMNS", "INVOICE_COLUMNS"]

MONEY = "DECIMAL(38,10)"
AMOUNT = "DECIMAL(18,4)"
RATE = "DECIMAL(9,6)"

INVOICE_LINE_COLUMNS = list(TABLES["billing.invoice_lines"].column_names)

INVOICE_COLUMNS = list(TABLES["billing.invoices"].column_names)

_OPEN_END = "DATE '9999-12-31'"


def _live(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """A subquery over ``name`` without soft-deleted rows (when it has ``is_deleted``)."""
    cols = con.sql(f"SELECT * FROM {name} LIMIT 0").columns
    if "is_deleted" in cols:
        return f"(SELECT * FROM {name} WHERE NOT coalesce(is_deleted, false))"
    return f"(SELECT * FROM {name})"


def _month(billing_month: date) -> str:
    if billing_month.day != 1:
        raise ValueError(f"billing_month must be the first day of a month, got {billing_month}")
    return f"DATE '{billing_month.isoformat()}'"


def _accounts_cte(con, bm: str, accounts: str, customers: str) -> str:
    """CTE ``acc``: accounts with a period ending in the month, their windows and jurisdiction."""
    return f"""
    acc AS (
        SELECT a.account_id, a.account_number, a.customer_id, a.currency, a.payment_terms_days,
               a.billing_cycle, a.bill_cycle_day,
               period_start_for(a.period_end, a.bill_cycle_day, a.billing_cycle) AS period_start,
               a.period_end,
               period_after(a.period_end, a.bill_cycle_day, a.billing_cycle) AS next_end,
               'INV-' || a.account_number || '-' || strftime(a.period_end, '%Y%m%d') AS invoice_id,
               c.country,
               nullif(trim(c.state), '') AS state,
               c.country || coalesce('-' || nullif(trim(c.state), ''), '') AS tax_jurisdiction,
               CAST(a.period_end - 1 AS DATE) AS tax_point
        FROM (SELECT *, CAST(period_end_in({bm}, bill_cycle_day, billing_cycle) AS DATE) AS period_end
              FROM {_live(con, accounts)}) a
        LEFT JOIN {_live(con, customers)} c ON c.customer_id = a.customer_id
        WHERE a.period_end IS NOT NULL
    )"""


def _tax_cte(con, tax_rates: str) -> str:
    """CTE ``acc_tax``: per billed account, the rate in force on its tax point (state beats country)."""
    return f"""
    acc_tax AS (
        SELECT a.account_id, r.tax_name, CAST(r.rate AS {RATE}) AS tax_rate
        FROM acc a
        JOIN {_live(con, tax_rates)} r
          ON r.country = a.country
         AND (nullif(trim(r.state), '') IS NULL OR trim(r.state) = a.state)
         AND r.effective_from <= a.tax_point
         AND (r.effective_to IS NULL OR a.tax_point < r.effective_to)
        QUALIFY row_number() OVER (
            PARTITION BY a.account_id
            ORDER BY (nullif(trim(r.state), '') IS NOT NULL) DESC, r.effective_from DESC, r.tax_rate_id DESC) = 1
    )"""


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
    ``billing_month`` itself. See docs/billing.md for every rule.
    """
    bm = _month(billing_month)
    ver = _live(con, versions)
    chg = _live(con, charges)
    prod = _live(con, products)
    pln = _live(con, plans)
    bnd = _live(con, bundles)
    key = "account_id, subscription_id, price_id, quantity, win"
    rated_cols = con.sql(f"SELECT * FROM {rated} LIMIT 0").columns
    rated_unit_price = "u.unit_price" if "unit_price" in rated_cols else "NULL"
    # how much usage a rated row saw: events, else raw quantity, else billable quantity
    usage_measure = next(f"u.{c}" for c in ("event_count", "quantity", "billable_quantity") if c in rated_cols or c == "billable_quantity")
    sql = f"""
    WITH {_accounts_cte(con, bm, accounts, customers)},
    {_tax_cte(con, tax_rates)},
    win AS (
        SELECT account_id, 'P' AS win, period_start AS w_start, period_end AS w_end FROM acc
        UNION ALL
        SELECT account_id, 'N' AS win, period_end AS w_start, next_end AS w_end FROM acc
    ),
    ver AS (
        SELECT subscription_id, account_id, product_id, plan_id, bundle_id,
               CAST(quantity AS {MONEY}) AS quantity,
               CAST(valid_from AS DATE) AS valid_from,
               CAST(coalesce(valid_to, {_OPEN_END}) AS DATE) AS valid_to
        FROM {ver}
    ),
    chg AS (
        SELECT price_id, plan_id, charge_code, charge_type, billing_timing, prorate,
               CAST(unit_price AS {MONEY}) AS unit_price, proration_days,
               CAST(effective_from AS DATE) AS eff_from,
               CAST(coalesce(effective_to, TIMESTAMP '9999-12-31') AS DATE) AS eff_to
        FROM {chg}
        WHERE charge_type = 'RECURRING'
    ),
    -- DUE: recurring coverage over P (every recurring charge) and N (charges billed in advance)
    due_raw AS (
        SELECT v.account_id, v.subscription_id, c.price_id, v.quantity, w.win, w.w_start, w.w_end,
               v.product_id, v.plan_id, v.bundle_id, c.prorate,
               greatest(v.valid_from, c.eff_from, w.w_start) AS s,
               least(v.valid_to, c.eff_to, w.w_end) AS t
        FROM ver v
        JOIN chg c ON c.plan_id = v.plan_id
        JOIN win w ON w.account_id = v.account_id
        WHERE w.win = 'P' OR coalesce(c.billing_timing, 'IN_ADVANCE') <> 'IN_ARREARS'
    ),
    due AS (  -- prorate = false: any day due in a window makes the whole window due (full price)
        SELECT {key},
               CASE WHEN prorate THEN s ELSE w_start END AS s,
               CASE WHEN prorate THEN t ELSE w_end END AS t,
               product_id, plan_id, bundle_id
        FROM due_raw WHERE s < t
    ),
    -- BILLED: recurring coverage on earlier invoices (+1 charge, -1 credit), clipped to the windows
    billed_lines AS (
        SELECT * FROM {billed}
        WHERE billing_month < {bm} AND line_type IN ('RECURRING', 'RECURRING_CREDIT')
    ),
    billed_raw AS (
        SELECT b.account_id, b.subscription_id, b.price_id, CAST(b.quantity AS {MONEY}) AS quantity, w.win,
               b.line_id, b.billing_month,
               CASE WHEN b.line_type = 'RECURRING' THEN 1 ELSE -1 END AS sgn,
               greatest(b.service_start, w.w_start) AS s,
               least(b.service_end, w.w_end) AS t
        FROM billed_lines b
        JOIN win w ON w.account_id = b.account_id
        WHERE greatest(b.service_start, w.w_start) < least(b.service_end, w.w_end)
    ),
    pts AS (
        SELECT {key}, s AS b FROM due UNION SELECT {key}, t FROM due
        UNION SELECT {key}, s FROM billed_raw UNION SELECT {key}, t FROM billed_raw
    ),
    elem AS (
        SELECT * FROM (
            SELECT {key}, b, lead(b) OVER (PARTITION BY {key} ORDER BY b) AS b_next FROM pts)
        WHERE b_next IS NOT NULL
    ),
    d_cov AS (
        SELECT e.account_id, e.subscription_id, e.price_id, e.quantity, e.win, e.b,
               max(d.product_id) AS product_id, max(d.plan_id) AS plan_id, max(d.bundle_id) AS bundle_id
        FROM elem e JOIN due d USING ({key})
        WHERE d.s <= e.b AND d.t >= e.b_next
        GROUP BY e.account_id, e.subscription_id, e.price_id, e.quantity, e.win, e.b
    ),
    b_cov AS (
        SELECT e.account_id, e.subscription_id, e.price_id, e.quantity, e.win, e.b,
               sum(r.sgn) AS c,
               arg_max(r.line_id, CAST(r.billing_month AS VARCHAR) || r.line_id) FILTER (WHERE r.sgn = 1) AS ref_line_id
        FROM elem e JOIN billed_raw r USING ({key})
        WHERE r.s <= e.b AND r.t >= e.b_next
        GROUP BY e.account_id, e.subscription_id, e.price_id, e.quantity, e.win, e.b
    ),
    elem_state AS (
        SELECT e.account_id, e.subscription_id, e.price_id, e.quantity, e.win, e.b AS s, e.b_next AS t,
               d.product_id, d.plan_id, d.bundle_id,
               CASE WHEN d.b IS NOT NULL AND coalesce(bc.c, 0) <= 0 THEN 'RECURRING'
                    WHEN d.b IS NULL AND coalesce(bc.c, 0) >= 1 THEN 'RECURRING_CREDIT' END AS line_type,
               CASE WHEN d.b IS NULL THEN bc.ref_line_id END AS ref_line_id
        FROM elem e
        LEFT JOIN d_cov d USING ({key}, b)
        LEFT JOIN b_cov bc USING ({key}, b)
    ),
    flagged AS (
        SELECT *,
               CASE WHEN lag(t) OVER w = s
                     AND lag(line_type) OVER w = line_type
                     AND coalesce(lag(ref_line_id) OVER w, '') = coalesce(ref_line_id, '')
                     AND coalesce(lag(bundle_id) OVER w, -1) = coalesce(bundle_id, -1)
                    THEN 0 ELSE 1 END AS new_island
        FROM elem_state
        WHERE line_type IS NOT NULL
        WINDOW w AS (PARTITION BY {key} ORDER BY s)
    ),
    islands AS (
        SELECT *, sum(new_island) OVER (PARTITION BY {key} ORDER BY s ROWS UNBOUNDED PRECEDING) AS island
        FROM flagged
    ),
    segs AS (
        SELECT {key}, island, any_value(line_type) AS line_type, any_value(ref_line_id) AS ref_line_id,
               any_value(product_id) AS product_id, any_value(plan_id) AS plan_id,
               any_value(bundle_id) AS bundle_id, min(s) AS s, max(t) AS t
        FROM islands
        GROUP BY {key}, island
    ),
    -- bundle of the version in force at the start of a credited line (credits carry its discount)
    ref_bundle AS (
        SELECT r.line_id, max(v.bundle_id) AS bundle_id
        FROM billed_lines r
        JOIN ver v ON v.subscription_id = r.subscription_id
                  AND r.service_start >= v.valid_from AND r.service_start < v.valid_to
        WHERE r.line_type = 'RECURRING'
        GROUP BY r.line_id
    ),
    rec_base AS (
        SELECT g.account_id, g.subscription_id, g.price_id, g.quantity, g.line_type, g.s, g.t, g.ref_line_id,
               CAST(g.t - g.s AS INTEGER) AS days,
               CAST(w.w_end - w.w_start AS INTEGER) AS actual_days,
               c.prorate,
               CASE WHEN g.line_type = 'RECURRING' THEN g.product_id ELSE r.product_id END AS product_id,
               CASE WHEN g.line_type = 'RECURRING' THEN c.plan_id ELSE coalesce(r.plan_id, c.plan_id) END AS plan_id,
               CASE WHEN g.line_type = 'RECURRING' THEN c.charge_code ELSE coalesce(r.charge_code, c.charge_code) END AS charge_code,
               CASE WHEN g.line_type = 'RECURRING' THEN c.unit_price
                    ELSE CAST(coalesce(r.unit_price, c.unit_price) AS {MONEY}) END AS unit_price,
               CASE WHEN g.line_type = 'RECURRING' THEN coalesce(c.proration_days, CAST(w.w_end - w.w_start AS INTEGER))
                    ELSE coalesce(r.period_days, c.proration_days, CAST(w.w_end - w.w_start AS INTEGER)) END AS period_days,
               CASE WHEN g.line_type = 'RECURRING' THEN g.bundle_id ELSE rb.bundle_id END AS bundle_id,
               r.service_start AS ref_start, r.service_end AS ref_end, r.amount_precise AS ref_amount_precise,
               r.tax_jurisdiction AS ref_jurisdiction, r.tax_name AS ref_tax_name, r.tax_rate AS ref_tax_rate
        FROM segs g
        JOIN win w USING (account_id, win)
        LEFT JOIN chg c ON c.price_id = g.price_id
        LEFT JOIN billed_lines r ON r.line_id = g.ref_line_id
        LEFT JOIN ref_bundle rb ON rb.line_id = g.ref_line_id
    ),
    rec AS (
        SELECT b.*,
               CASE
                 WHEN b.line_type = 'RECURRING_CREDIT' AND b.s = b.ref_start AND b.t = b.ref_end
                   THEN -CAST(b.ref_amount_precise AS {MONEY})
                 WHEN b.days = b.actual_days OR (b.line_type = 'RECURRING' AND NOT coalesce(b.prorate, true))
                   THEN CAST(b.unit_price * b.quantity AS {MONEY})
                 ELSE prorate(CAST(b.unit_price * b.quantity AS {MONEY}), least(b.days, b.period_days), b.period_days)
               END * CASE WHEN b.line_type = 'RECURRING_CREDIT' AND NOT (b.s = b.ref_start AND b.t = b.ref_end)
                          THEN -1 ELSE 1 END AS amount_precise
        FROM rec_base b
    ),
    rec_lines AS (
        SELECT a.invoice_id, r.account_id, r.subscription_id, r.line_type, r.product_id, r.plan_id, r.price_id,
               r.charge_code,
               CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN 'Credit: ' ELSE '' END
                 || coalesce(p.name, r.charge_code) || coalesce(' - ' || pl.name, '')
                 || ' ' || strftime(r.s, '%Y-%m-%d') || ' to ' || strftime(CAST(r.t - 1 AS DATE), '%Y-%m-%d') AS description,
               r.s AS service_start, r.t AS service_end, r.quantity, r.unit_price, r.days, r.period_days,
               r.amount_precise, bu.discount_pct,
               CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN coalesce(r.ref_jurisdiction, a.tax_jurisdiction)
                    ELSE a.tax_jurisdiction END AS tax_jurisdiction,
               CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN r.ref_tax_name ELSE t.tax_name END AS tax_name,
               CASE WHEN r.line_type = 'RECURRING_CREDIT' THEN r.ref_tax_rate ELSE t.tax_rate END AS tax_rate,
               a.currency,
               CAST(r.subscription_id AS VARCHAR) || '/' || CAST(r.price_id AS VARCHAR) AS source_ref,
               r.ref_line_id AS reference_line_id,
               r.line_type || '|' || CAST(r.subscription_id AS VARCHAR) || '|' || CAST(r.price_id AS VARCHAR) || '|'
                 || CAST(r.quantity AS VARCHAR) || '|' || CAST(r.s AS VARCHAR) || '|' || CAST(r.t AS VARCHAR) || '|'
                 || coalesce(r.ref_line_id, '') AS lineage
        FROM rec r
        JOIN acc a USING (account_id)
        LEFT JOIN acc_tax t USING (account_id)
        LEFT JOIN {prod} p ON p.product_id = r.product_id
        LEFT JOIN {pln} pl ON pl.plan_id = r.plan_id
        LEFT JOIN {bnd} bu ON bu.bundle_id = r.bundle_id
    ),
    usage_lines AS (
        SELECT a.invoice_id, u.account_id, u.subscription_id,
               CASE WHEN u.line_type IS NULL OR u.line_type = 'USAGE' THEN 'USAGE' ELSE u.line_type END AS line_type,
               pl.product_id, u.plan_id, u.price_id, u.charge_code,
               coalesce(p.name, 'Usage') || ' - ' || coalesce(u.metric, u.charge_code)
                 || CASE WHEN u.line_type IS NULL OR u.line_type = 'USAGE' THEN '' ELSE ' (' || u.line_type || ')' END
                 || ' ' || strftime(u.service_start, '%Y-%m-%d') || ' to '
                 || strftime(CAST(u.service_end - 1 AS DATE), '%Y-%m-%d') AS description,
               u.service_start, u.service_end,
               CAST(u.billable_quantity AS {MONEY}) AS quantity, CAST({rated_unit_price} AS {MONEY}) AS unit_price,
               CAST(NULL AS INTEGER) AS days, CAST(NULL AS INTEGER) AS period_days,
               CAST(u.amount_precise AS {MONEY}) AS amount_precise, CAST(NULL AS {RATE}) AS discount_pct,
               a.tax_jurisdiction, t.tax_name, t.tax_rate, a.currency,
               CAST(u.rated_line_id AS VARCHAR) AS source_ref, CAST(NULL AS VARCHAR) AS reference_line_id,
               'USAGE|' || CAST(u.rated_line_id AS VARCHAR) AS lineage,
               CAST(u.amount AS {AMOUNT}) AS rated_amount
        FROM {rated} u
        JOIN acc a ON a.account_id = u.account_id
        LEFT JOIN acc_tax t ON t.account_id = u.account_id
        LEFT JOIN {pln} pl ON pl.plan_id = u.plan_id
        LEFT JOIN {prod} p ON p.product_id = pl.product_id
        WHERE u.billing_month = {bm}
          AND NOT (coalesce(u.amount_precise, 0) = 0 AND coalesce(u.amount, 0) = 0
                   AND coalesce({usage_measure}, 0) = 0)  -- a usage charge with no usage at all
    ),
    onetime_lines AS (
        SELECT a.invoice_id, o.account_id, oi.subscription_id, 'ONE_TIME' AS line_type, oi.product_id,
               oi.plan_id, CAST(NULL AS BIGINT) AS price_id, p.sku AS charge_code,
               p.name || ' (order ' || o.order_number || ')' AS description,
               o.effective_date AS service_start, CAST(o.effective_date + 1 AS DATE) AS service_end,
               CAST(oi.quantity AS {MONEY}) AS quantity,
               CAST(coalesce(oi.unit_price, p.base_price) AS {MONEY}) AS unit_price,
               CAST(NULL AS INTEGER) AS days, CAST(NULL AS INTEGER) AS period_days,
               CAST(CAST(coalesce(oi.unit_price, p.base_price) AS {MONEY}) * CAST(oi.quantity AS {MONEY}) AS {MONEY}) AS amount_precise,
               CAST(NULL AS {RATE}) AS discount_pct,
               a.tax_jurisdiction, t.tax_name, t.tax_rate, a.currency,
               CAST(oi.order_item_id AS VARCHAR) AS source_ref, CAST(NULL AS VARCHAR) AS reference_line_id,
               'ONE_TIME|' || CAST(oi.order_item_id AS VARCHAR) AS lineage
        FROM {_live(con, order_items)} oi
        JOIN {_live(con, orders)} o ON o.order_id = oi.order_id
        JOIN {prod} p ON p.product_id = oi.product_id
        JOIN acc a ON a.account_id = o.account_id
        LEFT JOIN acc_tax t ON t.account_id = o.account_id
        WHERE o.status = 'CONFIRMED' AND p.product_type = 'ONE_TIME'
          AND o.effective_date >= a.period_start AND o.effective_date < a.period_end
          AND NOT EXISTS (SELECT 1 FROM {billed} x
                          WHERE x.billing_month < {bm} AND x.line_type = 'ONE_TIME'
                            AND x.source_ref = CAST(oi.order_item_id AS VARCHAR))
    ),
    all_lines AS (
        SELECT *, round_money(amount_precise, currency) AS amount FROM rec_lines
        UNION ALL BY NAME
        SELECT * EXCLUDE (rated_amount), rated_amount AS amount FROM usage_lines
        UNION ALL BY NAME
        SELECT *, round_money(amount_precise, currency) AS amount FROM onetime_lines
    ),
    priced AS (
        SELECT *,
               CAST(CASE WHEN discount_pct IS NULL THEN 0 ELSE -round_money(amount * discount_pct, currency) END AS {AMOUNT})
                 AS discount_amount
        FROM all_lines
    ),
    netted AS (
        SELECT *, CAST(amount + discount_amount AS {AMOUNT}) AS net_amount,
               CAST(coalesce(tax_rate, 0) AS {RATE}) AS tax_rate_
        FROM priced
    ),
    taxed AS (
        SELECT *, CAST(round_money(CAST(net_amount AS {MONEY}) * tax_rate_, currency) AS {AMOUNT}) AS tax_amount FROM netted
    )
    SELECT md5(invoice_id || '|' || lineage) AS line_id,
           invoice_id,
           {bm} AS billing_month,
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
           tax_jurisdiction, tax_name,
           tax_rate_ AS tax_rate,
           tax_amount,
           CAST(net_amount + tax_amount AS {AMOUNT}) AS total_amount,
           currency, source_ref, reference_line_id
    FROM taxed
    ORDER BY account_id, line_type, subscription_id NULLS LAST, service_start, line_id
    """
    return con.sql(sql)


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
    bm = _month(billing_month)
    sql = f"""
    WITH {_accounts_cte(con, bm, accounts, customers)},
    l AS (SELECT * FROM {lines} WHERE billing_month = {bm}),
    agg AS (
        SELECT invoice_id, any_value(account_id) AS account_id, count(*) AS line_count,
               sum(amount) AS subtotal, sum(discount_amount) AS discount_total, sum(net_amount) AS net_total,
               sum(tax_amount) AS tax_total
        FROM l GROUP BY invoice_id
    )
    SELECT g.invoice_id,
           'D-' || strftime({bm}, '%Y%m') || '-'
             || lpad(CAST(row_number() OVER (ORDER BY g.account_id, g.invoice_id) AS VARCHAR), 6, '0') AS invoice_number,
           CAST(g.account_id AS BIGINT) AS account_id,
           CAST(a.customer_id AS BIGINT) AS customer_id,
           {bm} AS billing_month,
           a.period_start, a.period_end,
           a.period_end AS invoice_date,
           CAST(a.period_end + coalesce(a.payment_terms_days, 0) AS DATE) AS due_date,
           a.currency,
           'DRAFT' AS status,
           CAST(g.line_count AS INTEGER) AS line_count,
           CAST(g.subtotal AS {AMOUNT}) AS subtotal,
           CAST(g.discount_total AS {AMOUNT}) AS discount_total,
           CAST(g.net_total AS {AMOUNT}) AS net_total,
           CAST(g.tax_total AS {AMOUNT}) AS tax_total,
           CAST(g.net_total + g.tax_total AS {AMOUNT}) AS total
    FROM agg g
    LEFT JOIN acc a ON a.account_id = g.account_id
    ORDER BY invoice_number
    """
    return con.sql(sql)


def tax_exceptions(con: duckdb.DuckDBPyConnection, billing_month: date, lines: str) -> duckdb.DuckDBPyRelation:
    """Lines of the month taxed at 0 because no rate was found for their jurisdiction.

    One row per (invoice, jurisdiction): ``billing_month, invoice_id, account_id,
    tax_jurisdiction, line_count, net_amount``. Empty when every line found a rate.
    """
    bm = _month(billing_month)
    return con.sql(f"""
        SELECT billing_month, invoice_id, account_id, tax_jurisdiction, count(*) AS line_count,
               CAST(sum(net_amount) AS {AMOUNT}) AS net_amount
        FROM {lines}
        WHERE billing_month = {bm} AND tax_name IS NULL
        GROUP BY ALL ORDER BY account_id, invoice_id
    """)
