"""Test helper: rate a small example in a fresh in-memory DuckDB, rows as dicts.

Defaults: account 1 in USD on calendar months, subscription 10 on plan 100 since 2025-01-01,
billing month March 2025 = [Mar 1, Apr 1), 31 days; charges on plan 100 with charge code
``c<price_id>`` unless given.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from domain import install_macros
from pipelines.rating import rate_usage
from pipelines.rating.inputs import create_inputs

MARCH = dt.date(2025, 3, 1)
DEFAULT_ACCOUNTS = [{"account_id": 1, "currency": "USD", "bill_cycle_day": 1, "billing_cycle": "MONTHLY"}]
DEFAULT_SUBSCRIPTIONS = [{"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-01-01"}]


def rows(rel: duckdb.DuckDBPyRelation) -> list[dict]:
    """A relation's rows as dicts."""
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]


def rate_example(
    charges: list[dict],
    usage: list[dict],
    *,
    billing_month: dt.date = MARCH,
    accounts: list[dict] | None = None,
    subscriptions: list[dict] | None = None,
):
    """Rate ``usage`` under ``charges``; returns ``(rated, unrated, con)``, rated lines ordered by
    subscription, metric, charge, segment, line type and matrix cell, unrated by event id."""
    con = install_macros(duckdb.connect())
    charges = [{"plan_id": 100, "charge_code": f"c{c['price_id']}", **c} for c in charges]
    kw = create_inputs(con, "core", accounts=accounts or DEFAULT_ACCOUNTS,
                       subscriptions=subscriptions or DEFAULT_SUBSCRIPTIONS, charges=charges, usage=usage)
    result = rate_usage(con, billing_month, **kw)
    rated = result.rated.order("subscription_id, metric, charge_code, segment_start, line_type, dimensions")
    return rows(rated), rows(result.unrated.order("event_id")), con
