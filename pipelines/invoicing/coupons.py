"""Invoicing steps: coupons and promotions, applied after the bundle discount and before tax (docs/billing.md
"Coupons and promotions").

* ``coupons_in_force``: per billed account, the redemptions that apply to the period billed P;
* ``coupon_covered_lines``: the current period's charge lines each coupon covers (one coupon per line);
* ``coupon_totals``: per invoice and redemption, the discount (PERCENT rounded, FIXED capped);
* ``coupon_shares``: the discount allocated over the lines it covers by largest remainder, in minor units;
* ``coupon_allocations``: every line with ``coupon_id`` and ``coupon_amount`` (a credit reverses the credited
  line's share pro rata).

Each function returns the SELECT of the step of that name; it reads the steps before it by name
(``billed_accounts``, ``discounted_lines`` and the coupon steps). :func:`coupon_steps` gives the five steps in
order, over the live rows of the coupon inputs, for ``with_steps``.
"""

from __future__ import annotations

import duckdb

from domain.money import AMOUNT, MONEY
from domain.sql import live

__all__ = [
    "coupon_steps", "coupons_in_force", "coupon_covered_lines", "coupon_totals", "coupon_shares",
    "coupon_allocations",
]


def _minor_units(amount: str, currency: str) -> str:
    """``amount`` (rounded to the currency's minor unit) as an exact integer count of minor units."""
    return f"CAST({amount} * CAST(pow(10, minor_unit({currency})) AS BIGINT) AS HUGEINT)"


def _from_minor_units(units: str, currency: str) -> str:
    """An integer count of minor units back to an amount, exactly."""
    return (f"CAST(div_round(CAST({units} AS {MONEY}), CAST(pow(10, minor_unit({currency})) AS BIGINT), "
            f"minor_unit({currency})) AS {AMOUNT})")


def coupon_steps(con: duckdb.DuckDBPyConnection, month: str, *, coupons: str = "core.coupons",
                 coupon_products: str = "core.coupon_products",
                 redemptions: str = "core.coupon_redemptions") -> dict[str, str]:
    """The coupon steps in order (after ``discounted_lines``), reading the live rows of the inputs."""
    return {
        "coupons_in_force": coupons_in_force(live(con, coupons), live(con, coupon_products), live(con, redemptions)),
        "coupon_covered_lines": coupon_covered_lines(month),
        "coupon_totals": coupon_totals(),
        "coupon_shares": coupon_shares(),
        "coupon_allocations": coupon_allocations(),
    }


def coupons_in_force(coupons: str, coupon_products: str, redemptions: str) -> str:
    """Per billed account, the ACTIVE redemptions whose coupon applies to P, one row per product the coupon is
    limited to (``product_id`` NULL: every product). Period 1 is the account period containing ``starts_on``
    (``period_end_containing``); P is period ``period_number`` = months from period 1's end to P's end / the
    cycle's months + 1. ONCE: period 1; REPEATING: periods 1..duration_periods; FOREVER: every period from 1.
    PERCENT needs ``percent_off`` > 0; FIXED needs ``amount_off`` > 0 and the account's currency."""
    return f"""
    SELECT * EXCLUDE (duration, duration_periods)
    FROM (
        SELECT a.account_id, r.redemption_id, r.coupon_id, r.subscription_id, cp.product_id,
               c.code AS coupon_code, c.name AS coupon_name, c.discount_type, c.percent_off, c.amount_off,
               c.duration, c.duration_periods,
               CAST(date_diff('month', period_end_containing(r.starts_on, a.bill_cycle_day, a.billing_cycle),
                              a.period_end) // cycle_months(a.billing_cycle) + 1 AS INTEGER) AS period_number
        FROM billed_accounts a
        JOIN {redemptions} r ON r.account_id = a.account_id
        JOIN {coupons} c ON c.coupon_id = r.coupon_id
        LEFT JOIN {coupon_products} cp ON cp.coupon_id = c.coupon_id
        WHERE r.status = 'ACTIVE' AND r.starts_on < a.period_end
          AND ((c.discount_type = 'PERCENT' AND c.percent_off > 0)
               OR (c.discount_type = 'FIXED' AND c.amount_off > 0 AND c.currency = a.currency))
    )
    WHERE CASE duration WHEN 'ONCE' THEN period_number = 1
                        WHEN 'REPEATING' THEN coalesce(period_number <= duration_periods, false)
                        ELSE true END"""


def coupon_covered_lines(month: str) -> str:
    """The charge lines of the current period (``service_month`` = the run's month, ``amount`` > 0, base =
    amount + discount_amount > 0) with the coupon covering each: the account's redemption limited to the
    line's subscription (or none) and product (or none). A line covered by several takes one: the lowest
    coupon_id, then the lowest redemption_id."""
    return f"""
    SELECT l.invoice_id, l.lineage, l.currency, c.redemption_id, c.coupon_id, c.discount_type, c.percent_off,
           c.amount_off, CAST(l.amount + l.discount_amount AS {AMOUNT}) AS base
    FROM discounted_lines l
    JOIN coupons_in_force c
      ON c.account_id = l.account_id
     AND (c.subscription_id IS NULL OR c.subscription_id = l.subscription_id)
     AND (c.product_id IS NULL OR c.product_id = l.product_id)
    WHERE l.service_month = {month} AND l.amount > 0 AND l.amount + l.discount_amount > 0
    QUALIFY row_number() OVER (PARTITION BY l.invoice_id, l.lineage ORDER BY c.coupon_id, c.redemption_id) = 1"""


def coupon_totals() -> str:
    """Per invoice and redemption, the discount over the lines it covers: PERCENT round_money(Σ base x
    percent_off); FIXED round_money(least(amount_off, Σ base)), never more than the lines."""
    return f"""
    SELECT invoice_id, redemption_id, currency, CAST(sum(base) AS {AMOUNT}) AS base_total,
           CAST(CASE discount_type WHEN 'PERCENT' THEN round_money(sum(base) * percent_off, currency)
                                   ELSE round_money(least(amount_off, sum(base)), currency) END AS {AMOUNT})
             AS coupon_total
    FROM coupon_covered_lines
    GROUP BY invoice_id, redemption_id, currency, discount_type, percent_off, amount_off"""


def coupon_shares() -> str:
    """Each covered line's share of its coupon total, by largest remainder in minor units (exact integers): the
    floor of total x base / Σ base, then the units left go one each to the largest remainders (ties: lineage),
    so the shares sum to the total exactly. ``coupon_amount`` = -share."""
    return f"""
    SELECT invoice_id, lineage, coupon_id,
           -{_from_minor_units("floor_units + CASE WHEN rank_by_remainder <= units_left THEN 1 ELSE 0 END",
                               "currency")} AS coupon_amount
    FROM (
        SELECT *,
               row_number() OVER (PARTITION BY invoice_id, redemption_id ORDER BY remainder DESC, lineage)
                 AS rank_by_remainder,
               total_units - sum(floor_units) OVER (PARTITION BY invoice_id, redemption_id) AS units_left
        FROM (
            SELECT *, total_units * base_units // base_total_units AS floor_units,
                   total_units * base_units % base_total_units AS remainder
            FROM (
                SELECT l.invoice_id, l.lineage, l.coupon_id, l.redemption_id, l.currency,
                       {_minor_units("t.coupon_total", "t.currency")} AS total_units,
                       {_minor_units("l.base", "l.currency")} AS base_units,
                       {_minor_units("t.base_total", "t.currency")} AS base_total_units
                FROM coupon_covered_lines l
                JOIN coupon_totals t USING (invoice_id, redemption_id)
            )
        )
    )"""


def coupon_allocations() -> str:
    """Every line of ``discounted_lines`` with ``coupon_id`` and ``coupon_amount``: a covered line its share; a
    credit (amount < 0) of a line that had a coupon (``credited_coupon_id``, ``credited_coupon_amount``,
    ``credited_amount`` > 0) that coupon and round_money(credited_coupon_amount x amount / credited_amount),
    so a credit of the whole line reverses its share exactly; every other line NULL and 0. Only the lines of
    accounts with a coupon in force are looked up in the shares (a join of every line costs more than the rest)."""
    credits_coupon = "l.amount < 0 AND l.credited_coupon_id IS NOT NULL AND l.credited_amount > 0"
    columns = f"""l.*,
           CASE WHEN s.coupon_id IS NOT NULL THEN s.coupon_id
                WHEN {credits_coupon} THEN l.credited_coupon_id END AS coupon_id,
           CAST(CASE WHEN s.coupon_id IS NOT NULL THEN s.coupon_amount
                     WHEN {credits_coupon}
                     THEN div_round(l.credited_coupon_amount * l.amount
                                      * CAST(pow(10, minor_unit(l.currency)) AS BIGINT),
                                    {_minor_units("l.credited_amount", "l.currency")}, minor_unit(l.currency))
                     ELSE 0 END AS {AMOUNT}) AS coupon_amount"""
    return f"""
    SELECT {columns}
    FROM discounted_lines l
    LEFT JOIN coupon_shares s ON s.invoice_id = l.invoice_id AND s.lineage = l.lineage
    WHERE l.account_id IN (SELECT account_id FROM coupons_in_force)
    UNION ALL
    SELECT {columns}
    FROM discounted_lines l, (SELECT CAST(NULL AS BIGINT) AS coupon_id, CAST(NULL AS {AMOUNT}) AS coupon_amount) s
    WHERE l.account_id NOT IN (SELECT account_id FROM coupons_in_force)"""
