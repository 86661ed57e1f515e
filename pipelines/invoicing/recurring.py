"""Invoicing steps: recurring fees as DUE minus BILLED day coverage, in segments (docs/billing.md).

Per recurring key (account, subscription, price version, quantity) and billing window (P, N):

* ``recurring_due``: the days the service owes the charge;
* ``recurring_billed``: the days earlier invoices charged (+1) or credited (-1);
* ``elementary_intervals``: every boundary of either cuts the window into intervals (never days);
* ``intervals_due`` / ``intervals_billed`` / ``interval_states``: each interval is to charge
  (due, not billed), to credit (billed, no longer due, with the line it credits) or settled;
* ``recurring_segments``: consecutive intervals of the same state merged (gaps and islands).

Each function returns the SELECT of the step of that name; it reads the steps before it by name.
"""

from __future__ import annotations

from domain.money import MONEY
from domain.periods import OPEN_END_DATE, OPEN_END_TIMESTAMP

RECURRING_KEY = "account_id, subscription_id, price_id, quantity, billing_window"
_KEY_OF_INTERVAL = "i.account_id, i.subscription_id, i.price_id, i.quantity, i.billing_window, i.interval_start"


def service_versions(versions: str) -> str:
    """Subscription versions as day intervals [valid_from, valid_to) (open end 9999-12-31), quantity as money."""
    return f"""
    SELECT subscription_id, account_id, product_id, plan_id, bundle_id,
           CAST(quantity AS {MONEY}) AS quantity,
           CAST(valid_from AS DATE) AS valid_from,
           CAST(coalesce(valid_to, {OPEN_END_DATE}) AS DATE) AS valid_to
    FROM {versions}"""


def recurring_prices(charges: str) -> str:
    """RECURRING price versions, in force on the days [price_from, price_to) (timestamps truncated to days)."""
    return f"""
    SELECT price_id, plan_id, charge_code, billing_timing, prorate,
           CAST(unit_price AS {MONEY}) AS unit_price, proration_days,
           CAST(effective_from AS DATE) AS price_from,
           CAST(coalesce(effective_to, {OPEN_END_TIMESTAMP}) AS DATE) AS price_to
    FROM {charges}
    WHERE charge_type = 'RECURRING'"""


def recurring_due() -> str:
    """DUE: per key and window, the days of version x price version x window; in-arrears charges
    over P only. A charge not prorated is due over its whole window as soon as one day is."""
    return f"""
    SELECT {RECURRING_KEY},
           CASE WHEN prorate THEN due_from ELSE window_start END AS due_from,
           CASE WHEN prorate THEN due_to ELSE window_end END AS due_to,
           product_id, plan_id, bundle_id
    FROM (
        SELECT v.account_id, v.subscription_id, p.price_id, v.quantity, w.billing_window,
               w.window_start, w.window_end, v.product_id, v.plan_id, v.bundle_id, p.prorate,
               greatest(v.valid_from, p.price_from, w.window_start) AS due_from,
               least(v.valid_to, p.price_to, w.window_end) AS due_to
        FROM service_versions v
        JOIN recurring_prices p ON p.plan_id = v.plan_id
        JOIN billing_windows w ON w.account_id = v.account_id
        WHERE w.billing_window = 'P' OR coalesce(p.billing_timing, 'IN_ADVANCE') <> 'IN_ARREARS'
    )
    WHERE due_from < due_to"""


def earlier_recurring_lines(month: str, billed: str) -> str:
    """RECURRING and RECURRING_CREDIT lines of billing months before ``month``."""
    return f"""
    SELECT * FROM {billed}
    WHERE billing_month < {month} AND line_type IN ('RECURRING', 'RECURRING_CREDIT')"""


def recurring_billed() -> str:
    """BILLED: earlier recurring lines clipped to each window; ``coverage`` +1 for a charge, -1 for a credit."""
    return f"""
    SELECT b.account_id, b.subscription_id, b.price_id, CAST(b.quantity AS {MONEY}) AS quantity, w.billing_window,
           b.line_id, b.billing_month,
           CASE WHEN b.line_type = 'RECURRING' THEN 1 ELSE -1 END AS coverage,
           greatest(b.service_start, w.window_start) AS billed_from,
           least(b.service_end, w.window_end) AS billed_to
    FROM earlier_recurring_lines b
    JOIN billing_windows w ON w.account_id = b.account_id
    WHERE greatest(b.service_start, w.window_start) < least(b.service_end, w.window_end)"""


def elementary_intervals() -> str:
    """Every due and billed boundary of a key and window, and the interval up to the next boundary."""
    return f"""
    SELECT * FROM (
        SELECT {RECURRING_KEY}, boundary AS interval_start,
               lead(boundary) OVER (PARTITION BY {RECURRING_KEY} ORDER BY boundary) AS interval_end
        FROM (SELECT {RECURRING_KEY}, due_from AS boundary FROM recurring_due
              UNION SELECT {RECURRING_KEY}, due_to FROM recurring_due
              UNION SELECT {RECURRING_KEY}, billed_from FROM recurring_billed
              UNION SELECT {RECURRING_KEY}, billed_to FROM recurring_billed)
    )
    WHERE interval_end IS NOT NULL"""


def intervals_due() -> str:
    """The intervals a due row covers, with the product, plan and bundle of the versions due."""
    return f"""
    SELECT {_KEY_OF_INTERVAL},
           max(d.product_id) AS product_id, max(d.plan_id) AS plan_id, max(d.bundle_id) AS bundle_id
    FROM elementary_intervals i
    JOIN recurring_due d USING ({RECURRING_KEY})
    WHERE d.due_from <= i.interval_start AND d.due_to >= i.interval_end
    GROUP BY {_KEY_OF_INTERVAL}"""


def intervals_billed() -> str:
    """The intervals earlier lines cover: ``net_billed`` (charges - credits) and the latest charge line
    covering it (the line a credit references: latest billing month, then highest line_id)."""
    return f"""
    SELECT {_KEY_OF_INTERVAL},
           sum(b.coverage) AS net_billed,
           arg_max(b.line_id, CAST(b.billing_month AS VARCHAR) || b.line_id) FILTER (WHERE b.coverage = 1)
             AS latest_charge_line_id
    FROM elementary_intervals i
    JOIN recurring_billed b USING ({RECURRING_KEY})
    WHERE b.billed_from <= i.interval_start AND b.billed_to >= i.interval_end
    GROUP BY {_KEY_OF_INTERVAL}"""


def interval_states() -> str:
    """Each interval's ``line_type``: RECURRING (due, net billed <= 0), RECURRING_CREDIT (not due, net
    billed >= 1, ``credited_line_id`` set) or NULL (settled)."""
    return f"""
    SELECT i.account_id, i.subscription_id, i.price_id, i.quantity, i.billing_window,
           i.interval_start, i.interval_end, due.product_id, due.plan_id, due.bundle_id,
           CASE WHEN due.interval_start IS NOT NULL AND coalesce(billed.net_billed, 0) <= 0 THEN 'RECURRING'
                WHEN due.interval_start IS NULL AND coalesce(billed.net_billed, 0) >= 1 THEN 'RECURRING_CREDIT'
           END AS line_type,
           CASE WHEN due.interval_start IS NULL THEN billed.latest_charge_line_id END AS credited_line_id
    FROM elementary_intervals i
    LEFT JOIN intervals_due due USING ({RECURRING_KEY}, interval_start)
    LEFT JOIN intervals_billed billed USING ({RECURRING_KEY}, interval_start)"""


def recurring_segments() -> str:
    """Gaps and islands: adjacent intervals of the same line type, credited line and bundle merged
    into one segment [segment_start, segment_end); settled intervals dropped."""
    return f"""
    SELECT {RECURRING_KEY},
           any_value(line_type) AS line_type, any_value(credited_line_id) AS credited_line_id,
           any_value(product_id) AS product_id, any_value(plan_id) AS plan_id, any_value(bundle_id) AS bundle_id,
           min(interval_start) AS segment_start, max(interval_end) AS segment_end
    FROM (
        SELECT *, sum(starts_segment) OVER (PARTITION BY {RECURRING_KEY} ORDER BY interval_start
                                            ROWS UNBOUNDED PRECEDING) AS segment_no
        FROM (
            SELECT *,
                   CASE WHEN lag(interval_end) OVER previous = interval_start
                         AND lag(line_type) OVER previous = line_type
                         AND coalesce(lag(credited_line_id) OVER previous, '') = coalesce(credited_line_id, '')
                         AND coalesce(lag(bundle_id) OVER previous, -1) = coalesce(bundle_id, -1)
                        THEN 0 ELSE 1 END AS starts_segment
            FROM interval_states
            WHERE line_type IS NOT NULL
            WINDOW previous AS (PARTITION BY {RECURRING_KEY} ORDER BY interval_start)
        )
    )
    GROUP BY {RECURRING_KEY}, segment_no"""
