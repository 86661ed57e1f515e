"""Invoicing steps: recurring fees settled as OWED minus ISSUED day coverage per charge period (docs/billing.md).

A RECURRING charge has a billing interval (MONTHLY, QUARTERLY, ANNUAL; NULL = MONTHLY) and its price is per
that interval; its charge periods are the account's period grid for that interval (bill cycle day aligned).
Per recurring key (account, subscription, price version, quantity) and charge period:

* ``recurring_due``: the days the service owes in the charge periods due in this run (in advance: periods
  starting before the next period's end; in arrears: periods ending by the billed period's end);
* ``recurring_billed``: the days issued lines charged (+1) or credited (-1), and voided lines (0);
* ``charge_period_pieces``: both cut by the charge periods they fall in;
* ``elementary_intervals``: every boundary cuts a charge period into intervals (never days);
* ``intervals_due`` / ``intervals_billed`` / ``interval_states``: each interval is to charge (due, not
  billed), to credit (billed, no longer due, with the line it credits) or settled;
* ``recurring_segments``: consecutive intervals of the same state merged (gaps and islands).

Each function returns the SELECT of the step of that name; it reads the steps before it by name.
"""

from __future__ import annotations

from domain.money import MONEY
from domain.periods import OPEN_END_DATE, OPEN_END_TIMESTAMP
from pipelines.invoicing.accounts import looked_at_from

RECURRING_KEY = "account_id, subscription_id, price_id, quantity, charge_start"
_KEY_OF_INTERVAL = "i.account_id, i.subscription_id, i.price_id, i.quantity, i.charge_start, i.interval_start"


def service_versions(versions: str) -> str:
    """Subscription versions as day intervals [valid_from, valid_to) (open end 9999-12-31), quantity as money."""
    return f"""
    SELECT subscription_id, account_id, product_id, plan_id, bundle_id,
           CAST(quantity AS {MONEY}) AS quantity,
           CAST(valid_from AS DATE) AS valid_from,
           CAST(coalesce(valid_to, {OPEN_END_DATE}) AS DATE) AS valid_to
    FROM {versions}"""


def recurring_prices(charges: str) -> str:
    """RECURRING price versions, in force on the days [price_from, price_to) (timestamps truncated to days),
    with their billing interval (NULL = MONTHLY)."""
    return f"""
    SELECT price_id, plan_id, charge_code, billing_timing, prorate,
           CAST(unit_price AS {MONEY}) AS unit_price, proration_days,
           coalesce(billing_interval, 'MONTHLY') AS billing_interval,
           CAST(effective_from AS DATE) AS price_from,
           CAST(coalesce(effective_to, {OPEN_END_TIMESTAMP}) AS DATE) AS price_to
    FROM {charges}
    WHERE charge_type = 'RECURRING'"""


def _horizon(timing: str) -> str:
    """SQL: the due horizon (``h`` = due_horizons) for a charge of billing timing ``timing``."""
    return f"CASE WHEN coalesce({timing}, 'IN_ADVANCE') = 'IN_ARREARS' THEN h.arrears_to ELSE h.advance_to END"


def recurring_due() -> str:
    """DUE spans: per key, the days of version x price version from the first day looked at
    (:func:`~pipelines.invoicing.accounts.looked_at_from`) up to the due horizon of the charge's interval and timing."""
    return f"""
    SELECT * FROM (
        SELECT v.account_id, v.subscription_id, p.price_id, v.quantity, v.product_id, v.plan_id, v.bundle_id,
               p.billing_interval, p.prorate, a.bill_cycle_day,
               greatest(v.valid_from, p.price_from, {looked_at_from()}) AS span_from,
               least(v.valid_to, p.price_to, {_horizon('p.billing_timing')}) AS span_to
        FROM service_versions v
        JOIN recurring_prices p ON p.plan_id = v.plan_id
        JOIN settled_accounts a ON a.account_id = v.account_id
        JOIN due_horizons h ON h.bill_cycle_day = a.bill_cycle_day AND h.billing_cycle = a.billing_cycle
                           AND h.billing_interval = p.billing_interval
    )
    WHERE span_from < span_to"""


def recurring_billed() -> str:
    """BILLED spans: issued RECURRING (+1) and RECURRING_CREDIT (-1) lines of the billed accounts, and lines of
    voided documents (0, ``voided``), clipped to what this run looks at (:func:`~pipelines.invoicing.accounts.looked_at_from` to the due
    horizon of the line's price)."""
    return f"""
    SELECT * FROM (
        SELECT b.account_id, b.subscription_id, b.price_id, CAST(b.quantity AS {MONEY}) AS quantity,
               b.line_id, b.billing_month, b.document_number, b.voided,
               CASE WHEN b.voided THEN 0 WHEN b.line_type = 'RECURRING' THEN 1 ELSE -1 END AS coverage,
               coalesce(p.billing_interval, 'MONTHLY') AS billing_interval, a.bill_cycle_day,
               greatest(b.service_start, {looked_at_from()}) AS span_from,
               least(b.service_end, {_horizon('p.billing_timing')}) AS span_to
        FROM (SELECT * FROM issued_lines UNION ALL SELECT * FROM voided_lines) b
        JOIN settled_accounts a ON a.account_id = b.account_id
        LEFT JOIN recurring_prices p ON p.price_id = b.price_id
        JOIN due_horizons h ON h.bill_cycle_day = a.bill_cycle_day AND h.billing_cycle = a.billing_cycle
                           AND h.billing_interval = coalesce(p.billing_interval, 'MONTHLY')
        WHERE b.line_type IN ('RECURRING', 'RECURRING_CREDIT')
    )
    WHERE span_from < span_to"""


def _in_charge_periods(spans: str, columns: str) -> str:
    """SQL: each span of ``spans`` cut by the charge periods [charge_start, charge_end) of its interval on the
    account's bill cycle day (period ends e_k = the k-th end after the one containing span_from). The periods
    depend only on (span_from, span_to, bill cycle day, interval): computed once per distinct one, then joined."""
    return f"""
        SELECT {columns}, c.charge_start, c.charge_end,
               greatest(s.span_from, c.charge_start) AS piece_from, least(s.span_to, c.charge_end) AS piece_to
        FROM {spans} s
        JOIN (
            SELECT span_from, span_to, bill_cycle_day, billing_interval, charge_start, charge_end
            FROM (
                SELECT *, period_start_for(charge_end, bill_cycle_day, billing_interval) AS charge_start
                FROM (
                    SELECT *, anchor_date(CAST(date_trunc('month', first_end)
                                               + to_months(k * cycle_months(billing_interval)) AS DATE),
                                          bill_cycle_day) AS charge_end
                    FROM (SELECT *, period_end_containing(span_from, bill_cycle_day, billing_interval) AS first_end
                          FROM (SELECT DISTINCT span_from, span_to, bill_cycle_day, billing_interval FROM {spans})),
                         unnest(range(0, CAST(datediff('month', first_end, span_to) // cycle_months(billing_interval)
                                              AS BIGINT) + 2)) AS t(k)
                )
            )
            WHERE charge_start < span_to AND charge_end > span_from
        ) c USING (span_from, span_to, bill_cycle_day, billing_interval)"""


def charge_period_pieces() -> str:
    """DUE and BILLED spans cut by charge periods. A charge not prorated is due over its whole charge period
    as soon as one day is."""
    due = _in_charge_periods("recurring_due", "account_id, subscription_id, price_id, quantity, product_id, "
                                               "plan_id, bundle_id, prorate")
    billed = _in_charge_periods("recurring_billed", "account_id, subscription_id, price_id, quantity, line_id, "
                                                    "billing_month, document_number, voided, coverage")
    return f"""
    SELECT 'DUE' AS kind, * REPLACE (
               CASE WHEN coalesce(prorate, true) THEN piece_from ELSE charge_start END AS piece_from,
               CASE WHEN coalesce(prorate, true) THEN piece_to ELSE charge_end END AS piece_to)
    FROM ({due})
    UNION ALL BY NAME
    SELECT 'BILLED' AS kind, * FROM ({billed})"""


def elementary_intervals() -> str:
    """Every piece boundary of a key and charge period (and the lookback's first day, so no interval
    straddles it), and the interval up to the next boundary: per key and charge period, the sorted distinct
    boundaries, paired with their successors."""
    inside = "a.bill_from > p.piece_from AND a.bill_from < p.piece_to"
    return f"""
    SELECT {RECURRING_KEY}, charge_end,
           unnest(list_slice(boundaries, 1, -2)) AS interval_start,
           unnest(list_slice(boundaries, 2, -1)) AS interval_end
    FROM (
        SELECT {RECURRING_KEY}, charge_end,
               list_sort(list_distinct(flatten(list(
                   [p.piece_from, p.piece_to] || CASE WHEN {inside} THEN [a.bill_from] ELSE [] END)))) AS boundaries
        FROM charge_period_pieces p LEFT JOIN settled_accounts a USING (account_id)
        GROUP BY {RECURRING_KEY}, charge_end
    )"""


def intervals_due() -> str:
    """The intervals a due piece covers, with the product, plan and bundle of the versions due."""
    return f"""
    SELECT {_KEY_OF_INTERVAL},
           max(d.product_id) AS product_id, max(d.plan_id) AS plan_id, max(d.bundle_id) AS bundle_id
    FROM elementary_intervals i
    JOIN charge_period_pieces d USING ({RECURRING_KEY})
    WHERE d.kind = 'DUE' AND d.piece_from <= i.interval_start AND d.piece_to >= i.interval_end
    GROUP BY {_KEY_OF_INTERVAL}"""


def intervals_billed() -> str:
    """The intervals issued lines cover: ``net_billed`` (charges - credits), the latest charge line covering it
    (the line a credit references: latest billing month, then highest line_id) with its document, and whether
    a voided document covered it."""
    return f"""
    SELECT * EXCLUDE (latest_charge), latest_charge.line_id AS latest_charge_line_id,
           latest_charge.document_number AS latest_charge_document
    FROM (
    SELECT {_KEY_OF_INTERVAL},
           sum(b.coverage) AS net_billed,
           arg_max({{'line_id': b.line_id, 'document_number': b.document_number}},
                   CAST(b.billing_month AS VARCHAR) || b.line_id) FILTER (WHERE b.coverage = 1) AS latest_charge,
           bool_or(b.voided) AS voided
    FROM elementary_intervals i
    JOIN charge_period_pieces b USING ({RECURRING_KEY})
    WHERE b.kind = 'BILLED' AND b.piece_from <= i.interval_start AND b.piece_to >= i.interval_end
    GROUP BY {_KEY_OF_INTERVAL}
    )"""


def interval_states() -> str:
    """Each interval's ``line_type``: RECURRING (due, net billed <= 0), RECURRING_CREDIT (not due, net
    billed >= 1, ``credited_line_id`` set) or NULL (settled); ``beyond_lookback`` before bill_from."""
    return f"""
    SELECT i.account_id, i.subscription_id, i.price_id, i.quantity, i.charge_start, i.charge_end,
           i.interval_start, i.interval_end, due.product_id, due.plan_id, due.bundle_id,
           CASE WHEN due.interval_start IS NOT NULL AND coalesce(billed.net_billed, 0) <= 0 THEN 'RECURRING'
                WHEN due.interval_start IS NULL AND coalesce(billed.net_billed, 0) >= 1 THEN 'RECURRING_CREDIT'
           END AS line_type,
           CASE WHEN due.interval_start IS NULL THEN billed.latest_charge_line_id END AS credited_line_id,
           CASE WHEN due.interval_start IS NULL THEN billed.latest_charge_document END AS credited_document_number,
           coalesce(billed.voided, false) AS rebills_voided,
           i.interval_start < a.bill_from AS beyond_lookback
    FROM elementary_intervals i
    JOIN settled_accounts a USING (account_id)
    LEFT JOIN intervals_due due USING ({RECURRING_KEY}, interval_start)
    LEFT JOIN intervals_billed billed USING ({RECURRING_KEY}, interval_start)"""


def recurring_segments() -> str:
    """Gaps and islands: adjacent intervals of the same line type, credited line, bundle, void and lookback
    state merged into one segment [segment_start, segment_end) within its charge period; settled intervals
    dropped."""
    return f"""
    SELECT {RECURRING_KEY},
           any_value(charge_end) AS charge_end,
           any_value(line_type) AS line_type, any_value(credited_line_id) AS credited_line_id,
           any_value(credited_document_number) AS credited_document_number,
           any_value(product_id) AS product_id, any_value(plan_id) AS plan_id, any_value(bundle_id) AS bundle_id,
           any_value(rebills_voided) AS rebills_voided, any_value(beyond_lookback) AS beyond_lookback,
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
                         AND lag(rebills_voided) OVER previous = rebills_voided
                         AND lag(beyond_lookback) OVER previous = beyond_lookback
                        THEN 0 ELSE 1 END AS starts_segment
            FROM interval_states
            WHERE line_type IS NOT NULL
            WINDOW previous AS (PARTITION BY {RECURRING_KEY} ORDER BY interval_start)
        )
    )
    GROUP BY {RECURRING_KEY}, segment_no"""
