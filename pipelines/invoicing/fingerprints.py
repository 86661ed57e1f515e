"""Invoicing steps: which billed accounts a bill run settles in full (docs/billing.md "Incremental settlement").

A bill run settles each account's service within the lookback against what was issued. For an account whose
earlier periods cannot have changed, a full settlement finds nothing before its current period, so the run
settles it from there: per charge interval, from the charge period containing the first day of the period
billed (usage and one-time items: from that day). An account is settled from its current period when its
previous bill run (the one that billed the period ending where this one starts)

* is in a finalized month (everything it drafted is issued),
* drafted every difference it found (``settled_clean``: nothing beyond the lookback), and
* fingerprinted the same inputs: :func:`settlement_fingerprints` hashes, per account, its account and
  customer rows, subscription versions, orders and their items, coupon redemptions, the catalog rows these
  reference (each plan's row and charges, products, each bundle's history and members, each coupon and its
  products), its rated usage of the months settled before this run, its voided documents, and
  :data:`SETTLEMENT_RULES` (the engine's code, DuckDB's version and the lookback).

Any other account (a change landed, late usage re-rated, a void, a first bill) is settled in full. Tax rates
and names are not fingerprinted: they apply only to the lines a run drafts, which both ways compute alike.

Each function but :func:`settlement_rules` returns the SELECT of the step of its name (``catalog_hashes`` →
``account_inputs``, ``rated_inputs`` → ``settlement_fingerprints``), after the engine's ``billed_accounts`` and
``settlement_months``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

_RULE_SOURCES = sorted([*Path(__file__).parent.glob("*.py"), *(Path(__file__).parents[2] / "domain").glob("*.py")])


def settlement_rules(lookback_months: int) -> str:
    """sha256 of the settlement engine's sources (pipelines/invoicing, domain), DuckDB's version and the lookback:
    when any changes, every account is settled in full once."""
    digest = hashlib.sha256(f"duckdb {duckdb.__version__} lookback {lookback_months}".encode())
    for path in _RULE_SOURCES:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def catalog_hashes(charges: str, plans: str, products: str, bundles: str, bundle_members: str, coupons: str,
                   coupon_products: str) -> str:
    """Per catalog key (kind PLAN, PRODUCT, BUNDLE or COUPON, and its id): the sum of the hashes of its rows (a plan:
    its row and its charges; a bundle: its history and members; a coupon: its row and products)."""
    return f"""
    SELECT kind, key_id, sum(h) AS h FROM (
        SELECT 'PLAN' AS kind, plan_id AS key_id, hash(c) AS h FROM {charges} c
        UNION ALL SELECT 'PLAN', plan_id, hash(p) FROM {plans} p
        UNION ALL SELECT 'PRODUCT', product_id, hash(p) FROM {products} p
        UNION ALL SELECT 'BUNDLE', bundle_id, hash(b) FROM {bundles} b
        UNION ALL SELECT 'BUNDLE', bundle_id, hash(m) FROM {bundle_members} m
        UNION ALL SELECT 'COUPON', coupon_id, hash(c) FROM {coupons} c
        UNION ALL SELECT 'COUPON', coupon_id, hash(p) FROM {coupon_products} p
    ) GROUP BY kind, key_id"""


def account_inputs(accounts: str, customers: str, versions: str, orders: str, order_items: str, redemptions: str,
                   document_lines: str, voids: str) -> str:
    """Per billed account, the sum of the hashes of its state rows, the catalog rows they reference and its voided
    documents."""
    billed = "IN (SELECT account_id FROM billed_accounts)"
    return f"""
    SELECT account_id, sum(h) AS h FROM (
        SELECT x.account_id, hash(x) AS h FROM {accounts} x WHERE x.account_id {billed}
        UNION ALL
        SELECT a.account_id, hash(c) FROM billed_accounts a JOIN {customers} c ON c.customer_id = a.customer_id
        UNION ALL
        SELECT v.account_id, hash(v) + coalesce(pl.h, 0) + coalesce(pr.h, 0) + coalesce(b.h, 0)
        FROM {versions} v
        LEFT JOIN catalog_hashes pl ON pl.kind = 'PLAN' AND pl.key_id = v.plan_id
        LEFT JOIN catalog_hashes pr ON pr.kind = 'PRODUCT' AND pr.key_id = v.product_id
        LEFT JOIN catalog_hashes b ON b.kind = 'BUNDLE' AND b.key_id = v.bundle_id
        WHERE v.account_id {billed}
        UNION ALL
        SELECT o.account_id, hash(o) FROM {orders} o WHERE o.account_id {billed}
        UNION ALL
        SELECT o.account_id, hash(oi) + coalesce(pr.h, 0) + coalesce(pl.h, 0)
        FROM {order_items} oi JOIN {orders} o ON o.order_id = oi.order_id
        LEFT JOIN catalog_hashes pr ON pr.kind = 'PRODUCT' AND pr.key_id = oi.product_id
        LEFT JOIN catalog_hashes pl ON pl.kind = 'PLAN' AND pl.key_id = oi.plan_id
        WHERE o.account_id {billed}
        UNION ALL
        SELECT r.account_id, hash(r) + coalesce(c.h, 0)
        FROM {redemptions} r LEFT JOIN catalog_hashes c ON c.kind = 'COUPON' AND c.key_id = r.coupon_id
        WHERE r.account_id {billed}
        UNION ALL
        SELECT d.account_id, hash(v)
        FROM {voids} v
        JOIN (SELECT DISTINCT document_id, account_id FROM {document_lines}
              WHERE document_id IN (SELECT document_id FROM {voids}) AND account_id {billed}) d
          ON d.document_id = v.document_id
    ) GROUP BY account_id"""


def rated_inputs(month: str, rated: str, lookback_months: int) -> str:
    """Per billed account, the sum of the hashes of its rated lines: ``settled_h`` of the billing months this run
    would settle before its own (from report_from_month), ``carried_h`` of those the account's next run
    (the month of its next period end) will (its report_from_month up to this month included)."""
    next_from = (f"greatest(s.go_live, CAST(date_trunc('month', a.next_period_end) - to_months({2 * lookback_months})"
                 " AS DATE))")
    return f"""
    SELECT u.account_id,
           sum(hash(u)) FILTER (WHERE u.billing_month >= s.report_from_month AND u.billing_month < {month}) AS settled_h,
           sum(hash(u)) FILTER (WHERE u.billing_month >= {next_from}) AS carried_h
    FROM {rated} u JOIN billed_accounts a ON a.account_id = u.account_id CROSS JOIN settlement_months s
    WHERE u.billing_month <= {month} AND u.billing_month >= least(s.report_from_month, {next_from})
    GROUP BY u.account_id"""


def settlement_fingerprints(month: str, stored: str, finalized_months: str, rules: str) -> str:
    """Per billed account: ``inputs_hash`` (what the next run compares), ``resettle`` (settle every period: not
    fingerprinted alike by a clean, finalized previous run that billed the period ending at this one's start)."""
    def fingerprint(rated: str) -> str:
        return f"hash('{rules}', coalesce(i.h, 0), coalesce(r.{rated}, 0))"
    return f"""
    SELECT a.account_id, a.period_start, a.period_end, {fingerprint('carried_h')} AS inputs_hash,
           NOT coalesce(p.settled_clean AND p.period_end = a.period_start
                        AND p.inputs_hash = {fingerprint('settled_h')}
                        AND p.billing_month IN (SELECT billing_month FROM {finalized_months}), false) AS resettle
    FROM billed_accounts a
    LEFT JOIN account_inputs i ON i.account_id = a.account_id
    LEFT JOIN rated_inputs r ON r.account_id = a.account_id
    LEFT JOIN (SELECT * FROM {stored}
               WHERE billing_month < {month} AND account_id IN (SELECT account_id FROM billed_accounts)
               QUALIFY row_number() OVER (PARTITION BY account_id ORDER BY billing_month DESC) = 1) p
      ON p.account_id = a.account_id"""
