"""Transaction price allocation by relative standalone selling price (docs/revenue.md "Allocation").

Two kinds of groups share one transaction price, each split over its components by relative SSP with
largest remainder (domain/allocation.py), so a group's allocations sum exactly to its price:

* BUNDLE (month to month): the RECURRING lines of one document, bundle and service start. Price = their
  net billed; a line's SSP = the catalog SSP (per unit and month) x quantity x months per billing interval,
  prorated like the line; without an SSP in force, its list price (the amount before discount).
* COMMITMENT: a NEW_SERVICE order with ``contract_term_months`` T. Price = the net billed of its goods and
  fees + for each service the expected consideration E (the recurring fee in force at inception, after
  the bundle discount then in force, x billing intervals in T months). SSPs: a good SSP x quantity, a
  service SSP x quantity x T, a fee 0 (not distinct: its consideration goes to the service). A good is
  allocated its share (a subsidized handset more than it bills: a contract asset); a fee 0; the service's
  regular lines (its plan, from inception, before the commitment's end) share the service's allocation A
  in proportion to what they bill, cumulatively: allocated through a line = round(A x billed through it /
  E) while billed <= E, then what is billed beyond E. When the commitment ends (a disconnect, a plan
  change, or the term's end) and billing has reached that day, the contract's remaining position
  (allocated - billed over its allocated lines) is reversed by a CONTRACT_END obligation on that day.

Every other line, and every line of a voided document, is alone: allocated its billed amount.
Named steps, SELECTs over ``line_obligations`` (pipelines/revenue/obligations.py) and the steps before them.
"""

from __future__ import annotations

from datetime import date

import duckdb

from domain.allocation import largest_remainder_sql
from domain.money import AMOUNT
from domain.periods import OPEN_END_DATE, OPEN_END_TIMESTAMP
from domain.sql import live
from pipelines.invoicing.engine import with_steps
from warehouse.tables import TABLES

__all__ = ["allocation_rows", "allocation_steps", "ALLOCATION_COLUMNS"]

ALLOCATION_COLUMNS = list(TABLES["revenue.allocations"].column_names)


def _ssp_in_force(ssp: str, product: str, currency: str, day: str) -> str:
    """Scalar SQL: the SSP of ``product`` in ``currency`` in force on ``day`` (the latest that started), or NULL."""
    return f"""(SELECT arg_max(sp.ssp_amount, sp.effective_from) FROM {ssp} sp
                WHERE sp.product_id = {product} AND sp.currency = {currency} AND sp.effective_from <= {day}
                  AND {day} < coalesce(sp.effective_to, {OPEN_END_DATE}))"""


def commitments(con: duckdb.DuckDBPyConnection) -> str:
    """Step: committed contracts: CONFIRMED NEW_SERVICE orders with a term, their inception (effective date),
    term and term end, in the account's currency."""
    return f"""
    SELECT 'ORD-' || CAST(o.order_id AS VARCHAR) AS contract_id, o.order_id, o.account_id, a.currency,
           o.effective_date AS inception, o.contract_term_months AS term_months,
           CAST(o.effective_date + to_months(o.contract_term_months) AS DATE) AS term_end
    FROM {live(con, "core.orders")} o
    JOIN {live(con, "core.billing_accounts")} a ON a.account_id = o.account_id
    WHERE o.status = 'CONFIRMED' AND o.order_type = 'NEW_SERVICE' AND o.contract_term_months > 0"""


def commitment_services(con: duckdb.DuckDBPyConnection) -> str:
    """Step: each service a committed order activated: its plan, quantity, the day it ends or first changes
    plan, its expected consideration E over the term (per recurring charge in force at inception:
    round(unit_price x quantity) less the bundle discount then in force, x T / months per billing
    interval) and its SSP (catalog SSP x quantity x T, else the undiscounted fee x intervals)."""
    in_force = "CAST(c.inception AS TIMESTAMP) >= {t}.{f} AND CAST(c.inception AS TIMESTAMP) < coalesce({t}.{e}, " \
               + OPEN_END_TIMESTAMP + ")"
    return f"""
    SELECT contract_id, currency, inception, term_months, term_end, subscription_id, product_id, plan_id, quantity,
           least(end_date, coalesce(changed_on, {OPEN_END_DATE})) AS service_end,
           CAST(sum(div_round((gross - discount) * term_months, interval_months, minor_unit(currency))) AS {AMOUNT})
             AS expected_consideration,
           CAST(sum(div_round(gross * term_months, interval_months, minor_unit(currency))) AS {AMOUNT}) AS list_price,
           any_value(ssp) AS ssp
    FROM (
        SELECT c.contract_id, c.currency, c.inception, c.term_months, c.term_end, oi.subscription_id, oi.product_id,
               oi.plan_id, oi.quantity, s.end_date,
               (SELECT min(v.valid_from) FROM {live(con, "core.subscription_versions")} v
                WHERE v.subscription_id = oi.subscription_id AND v.valid_from > s.start_date
                  AND v.change_kind <> 'ACTIVATE') AS changed_on,
               round_money(pc.unit_price * oi.quantity, c.currency) AS gross,
               round_money(round_money(pc.unit_price * oi.quantity, c.currency)
                           * coalesce((SELECT max(h.discount_pct) FROM {live(con, "core.bundles_history")} h
                                       WHERE h.bundle_id = oi.bundle_id AND {in_force.format(t="h", f="valid_from", e="valid_to")}
                                         AND EXISTS (SELECT 1 FROM {live(con, "core.bundle_members")} m
                                                     WHERE m.bundle_id = oi.bundle_id AND m.product_id = oi.product_id)), 0),
                           c.currency) AS discount,
               cycle_months(coalesce(pc.billing_interval, 'MONTHLY')) AS interval_months,
               {_ssp_in_force(live(con, "core.standalone_selling_prices"), "oi.product_id", "c.currency", "c.inception")}
                 AS ssp
        FROM commitments c
        JOIN {live(con, "core.order_items")} oi ON oi.order_id = c.order_id AND oi.subscription_id IS NOT NULL
        JOIN {live(con, "core.subscriptions")} s ON s.subscription_id = oi.subscription_id AND s.created_order_id = c.order_id
        JOIN {live(con, "core.plan_charges")} pc ON pc.plan_id = oi.plan_id AND pc.charge_type = 'RECURRING'
         AND {in_force.format(t="pc", f="effective_from", e="effective_to")}
    )
    GROUP BY ALL"""


def commitment_components(con: duckdb.DuckDBPyConnection) -> str:
    """Step: what a committed contract's price is allocated over: each service ('SERVICE-<subscription_id>',
    price E), each good and fee line of the order not voided (price its net amount: what it bills, or an
    estimate's expected price; ``billed_amount`` 0 for an estimate); SSPs by source; the transaction price
    (the sum of the component prices)."""
    ssp = live(con, "core.standalone_selling_prices")
    return f"""
    SELECT *, sum(component_price) OVER (PARTITION BY contract_id) AS transaction_price
    FROM (
        SELECT contract_id, currency, 'SERVICE-' || CAST(subscription_id AS VARCHAR) AS component,
               CAST(coalesce(round_money(ssp * quantity * term_months, currency), list_price) AS {AMOUNT}) AS ssp_amount,
               CASE WHEN ssp IS NULL THEN 'LIST_PRICE' ELSE 'CATALOG' END AS ssp_source,
               expected_consideration AS component_price, CAST(NULL AS {AMOUNT}) AS billed_amount
        FROM commitment_services
        UNION ALL
        SELECT c.contract_id, c.currency, o.line_id,
               CAST(CASE WHEN o.obligation_kind = 'FEE' THEN 0
                         ELSE coalesce(round_money(sp.ssp * o.quantity, c.currency),
                                       round_money(p.base_price * o.quantity, c.currency)) END AS {AMOUNT}),
               CASE WHEN o.obligation_kind = 'FEE' THEN 'NOT_DISTINCT' WHEN sp.ssp IS NULL THEN 'LIST_PRICE'
                    ELSE 'CATALOG' END,
               o.net_amount, o.billed_amount
        FROM line_obligations o
        JOIN commitments c ON c.contract_id = o.contract_id
        LEFT JOIN {live(con, "core.products")} p ON p.product_id = o.product_id,
        LATERAL (SELECT {_ssp_in_force(ssp, "o.product_id", "c.currency", "c.inception")} AS ssp) sp
        WHERE o.obligation_kind IN ('GOOD', 'FEE') AND o.line_type = 'ONE_TIME' AND o.voided_on IS NULL
    )"""


def component_allocations() -> str:
    """Step: each component's share of its contract's transaction price (largest remainder on SSP)."""
    return largest_remainder_sql("commitment_components", "contract_id", "ssp_amount", "transaction_price",
                                 "currency", "component", allocated="component_allocated")


def commitment_ends() -> str:
    """Step: per committed contract, the day its commitment ends: the first disconnect or plan change of its
    services before the term's end, else the term's end."""
    return """
    SELECT contract_id, least(any_value(term_end), min(service_end)) AS end_date
    FROM commitment_services GROUP BY contract_id"""


def commitment_service_lines() -> str:
    """Step: the regular lines of a committed service (RECURRING, its plan, not voided, from inception and
    before the commitment's end) with their share of the service's allocation A: cumulative over the
    service's lines in service order, round(A x billed through the line / E) while billed <= E, beyond E
    what is billed; the line gets the difference."""
    return f"""
    SELECT *, CAST(allocated_through - coalesce(lag(allocated_through) OVER w, 0) AS {AMOUNT}) AS allocated_amount
    FROM (
        SELECT *, CASE WHEN component_price > 0 AND billed_through <= component_price
                       THEN recognized_share(component_allocated, billed_through, component_price, currency)
                       ELSE component_allocated + billed_through - component_price END AS allocated_through
        FROM (
            SELECT o.line_id AS obligation_id, o.contract_id, o.subscription_id, o.service_start, o.net_amount,
                   a.currency, a.component, a.ssp_amount, a.ssp_source, a.transaction_price, a.component_price,
                   a.component_allocated,
                   sum(o.net_amount) OVER (PARTITION BY o.contract_id, o.subscription_id
                                           ORDER BY o.service_start, o.line_id) AS billed_through
            FROM line_obligations o
            JOIN commitment_services s ON s.contract_id = o.contract_id AND s.subscription_id = o.subscription_id
            JOIN commitment_ends e ON e.contract_id = o.contract_id
            JOIN component_allocations a
              ON a.contract_id = o.contract_id AND a.component = 'SERVICE-' || CAST(o.subscription_id AS VARCHAR)
            WHERE o.line_type = 'RECURRING' AND o.voided_on IS NULL AND o.plan_id = s.plan_id
              AND o.service_start >= s.inception AND o.service_start < e.end_date
        )
    )
    WINDOW w AS (PARTITION BY contract_id, subscription_id ORDER BY service_start, obligation_id)"""


def bundle_lines(con: duckdb.DuckDBPyConnection) -> str:
    """Step: the RECURRING lines of a bundle outside any commitment, grouped by document, bundle and service
    start (groups of two or more), with their SSP: the catalog SSP in force at service start x quantity x
    months per billing interval, prorated like the line (its days of its period); else the list price (the
    line's amount before discount). The group's transaction price is its net billed."""
    return f"""
    SELECT *, sum(net_amount) OVER (PARTITION BY allocation_group) AS transaction_price
    FROM (
        SELECT o.line_id AS obligation_id, o.contract_id, o.currency, o.net_amount,
               'BUNDLE-' || o.document_id || '-' || CAST(o.bundle_id AS VARCHAR) || '-' || CAST(o.service_start AS VARCHAR)
                 AS allocation_group,
               CAST(coalesce(round_money(prorated(sp.ssp * o.quantity * cycle_months(coalesce(pc.billing_interval, 'MONTHLY')),
                                                  o.days, o.period_days, o.days IS NULL OR o.period_days IS NULL),
                                         o.currency), o.amount) AS {AMOUNT}) AS ssp_amount,
               CASE WHEN sp.ssp IS NULL THEN 'LIST_PRICE' ELSE 'CATALOG' END AS ssp_source,
               count(*) OVER (PARTITION BY o.document_id, o.bundle_id, o.service_start) AS group_lines
        FROM line_obligations o
        LEFT JOIN {live(con, "core.plan_charges")} pc ON pc.price_id = o.price_id,
        LATERAL (SELECT {_ssp_in_force(live(con, "core.standalone_selling_prices"), "o.product_id", "o.currency",
                                       "o.service_start")} AS ssp) sp
        WHERE o.line_type = 'RECURRING' AND o.bundle_id IS NOT NULL AND o.voided_on IS NULL
          AND o.line_id NOT IN (SELECT obligation_id FROM commitment_service_lines)
    )
    WHERE group_lines > 1"""


def bundle_allocations() -> str:
    """Step: each bundle line's share of its group's transaction price (largest remainder on SSP)."""
    return largest_remainder_sql("bundle_lines", "allocation_group", "ssp_amount", "transaction_price", "currency",
                                 "obligation_id", allocated="allocated_amount")


def allocation_table() -> str:
    """Step: rows of revenue.allocations: bundle lines (each its own component), the goods and fees of
    committed contracts (idem) once their service has billed lines (so a group holds every component; before,
    a good or fee, estimated or invoiced, is alone) and their services' regular lines (component the service)."""
    return f"""
    SELECT allocation_group, obligation_id, contract_id, currency, 'RELATIVE_SSP' AS method, ssp_amount, ssp_source,
           CAST(transaction_price AS {AMOUNT}) AS transaction_price, net_amount AS billed_amount,
           obligation_id AS component, net_amount AS component_price, allocated_amount AS component_allocated,
           allocated_amount
    FROM bundle_allocations
    UNION ALL
    SELECT 'TERM-' || a.contract_id, a.component, a.contract_id, a.currency, 'COMMITMENT', a.ssp_amount, a.ssp_source,
           CAST(a.transaction_price AS {AMOUNT}), a.billed_amount, a.component, a.component_price,
           a.component_allocated, a.component_allocated
    FROM component_allocations a
    WHERE a.component NOT LIKE 'SERVICE-%' AND a.contract_id IN (SELECT contract_id FROM commitment_service_lines)
    UNION ALL
    SELECT 'TERM-' || contract_id, obligation_id, contract_id, currency, 'COMMITMENT', ssp_amount, ssp_source,
           CAST(transaction_price AS {AMOUNT}), net_amount, component, component_price, component_allocated,
           allocated_amount
    FROM commitment_service_lines"""


def contract_ends(con: duckdb.DuckDBPyConnection) -> str:
    """Step: the CONTRACT_END obligation of a committed contract whose commitment ended and whose service
    billing reached that day: allocated = -(allocated - billed) over the contract's allocated lines, so
    the contract's allocated total equals its billed total. Product: the contract's first service."""
    return f"""
    SELECT 'END-' || e.contract_id AS obligation_id, e.contract_id, c.account_id, c.currency, e.end_date,
           s.product_id, coalesce(p.category, 'UNCLASSIFIED') AS product_line,
           CAST(-(SELECT sum(t.allocated_amount - t.billed_amount) FROM allocation_table t
                  WHERE t.allocation_group = 'TERM-' || e.contract_id) AS {AMOUNT}) AS allocated_amount
    FROM commitment_ends e
    JOIN commitments c ON c.contract_id = e.contract_id
    JOIN (SELECT contract_id, arg_min(product_id, subscription_id) AS product_id FROM commitment_services
          GROUP BY contract_id) s ON s.contract_id = e.contract_id
    LEFT JOIN {live(con, "core.products")} p ON p.product_id = s.product_id
    WHERE e.end_date <= (SELECT max(o.service_end) FROM line_obligations o
                         WHERE o.contract_id = e.contract_id AND o.obligation_kind = 'SERVICE')
      AND (SELECT sum(t.allocated_amount - t.billed_amount) FROM allocation_table t
           WHERE t.allocation_group = 'TERM-' || e.contract_id) <> 0"""


def obligation_allocations() -> str:
    """Step: the allocated amount of each obligation in a group."""
    return "SELECT obligation_id, allocated_amount FROM allocation_table"


def allocation_steps(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The allocation's named steps, reading ``line_obligations``."""
    return {
        "commitments": commitments(con),
        "commitment_services": commitment_services(con),
        "commitment_components": commitment_components(con),
        "component_allocations": component_allocations(),
        "commitment_ends": commitment_ends(),
        "commitment_service_lines": commitment_service_lines(),
        "bundle_lines": bundle_lines(con),
        "bundle_allocations": bundle_allocations(),
        "allocation_table": allocation_table(),
        "obligation_allocations": obligation_allocations(),
        "contract_ends": contract_ends(con),
    }


def allocation_rows(con: duckdb.DuckDBPyConnection, first_open: date | None, unbilled: str | None = None) -> str:
    """SELECT of revenue.allocations (contract column order); ``first_open`` and ``unbilled`` bound the estimates of
    committed contracts and bundles as in pipelines/revenue/obligations.py obligation_steps."""
    from pipelines.revenue.obligations import obligation_steps  # obligations compose the allocation's steps

    return with_steps(obligation_steps(con, first_open, unbilled),
                      f"SELECT {', '.join(ALLOCATION_COLUMNS)} FROM allocation_table ORDER BY allocation_group, obligation_id")
