"""Typed rating inputs from plain Python rows: for tests, examples and the benchmark.

``create_inputs(con, schema, accounts=[...], subscriptions=[...], charges=[...], usage=[...])``
creates ``<schema>.billing_accounts``, ``<schema>.subscription_versions``,
``<schema>.plan_charges`` and ``<schema>.usage_events`` with the warehouse's column types
(sources/entities.py), defaults filled in, so the engine can be called with
``usage=f"{schema}.usage_events"`` etc. Not used by the pipeline itself.
"""

from __future__ import annotations

import json
from decimal import Decimal

import duckdb

from sources.entities import ENTITIES

SUBSCRIPTION_VERSION_COLUMNS = (
    ("subscription_id", "BIGINT"), ("account_id", "BIGINT"), ("product_id", "BIGINT"), ("plan_id", "BIGINT"),
    ("bundle_id", "BIGINT"), ("quantity", "INTEGER"), ("valid_from", "DATE"), ("valid_to", "DATE"),
)

_DEFAULTS = {
    "billing_accounts": {"customer_id": 1, "account_number": "A", "billing_cycle": "MONTHLY", "bill_cycle_day": 1,
                         "payment_terms_days": 30, "currency": "USD", "status": "ACTIVE"},
    "plan_charges": {"charge_type": "USAGE", "aggregation": "SUM", "billing_timing": "IN_ARREARS", "prorate": True,
                     "included_quantity": 0, "effective_from": "2000-01-01 00:00:00"},
    "usage_records": {"unit": "EVENT"},
    "subscription_versions": {"product_id": 1, "bundle_id": None, "quantity": 1, "valid_to": "9999-12-31"},
}


def _cols(entity: str) -> list[tuple[str, str]]:
    if entity == "subscription_versions":
        return list(SUBSCRIPTION_VERSION_COLUMNS)
    return [(c.name, c.sql_type) for c in ENTITIES[entity].columns]


def _literal(v) -> object:
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(Decimal(str(v)))
    return v


def create_table(con: duckdb.DuckDBPyConnection, name: str, entity: str, rows: list[dict], extra=()) -> None:
    """Create ``name`` with ``entity``'s columns (+ ``extra`` (name, type)) and insert ``rows``."""
    cols = _cols(entity) + list(extra)
    con.execute(f"CREATE OR REPLACE TABLE {name} ({', '.join(f'{c} {t}' for c, t in cols)})")
    if not rows:
        return
    defaults = _DEFAULTS.get(entity, {})
    values = []
    for r in rows:
        unknown = set(r) - {c for c, _ in cols}
        if unknown:
            raise KeyError(f"{entity}: unknown columns {sorted(unknown)}")
        values.append([_literal(r.get(c, defaults.get(c))) for c, _ in cols])
    # VARCHAR in, cast by the table's column types: exact decimals, no float round trip.
    placeholders = ", ".join(f"CAST(? AS {t})" if t != "VARCHAR" else "?" for _, t in cols)
    con.executemany(f"INSERT INTO {name} VALUES ({placeholders})",
                    [[None if v is None else (v if isinstance(v, bool) else str(v)) for v in row] for row in values])


def create_inputs(
    con: duckdb.DuckDBPyConnection,
    schema: str = "core",
    *,
    accounts: list[dict] = (),
    subscriptions: list[dict] = (),
    charges: list[dict] = (),
    usage: list[dict] = (),
) -> dict[str, str]:
    """Create the four rating inputs in ``schema``; returns the keyword arguments for ``rate_usage``."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    deleted = [("is_deleted", "BOOLEAN")]
    create_table(con, f"{schema}.billing_accounts", "billing_accounts", list(accounts), deleted)
    create_table(con, f"{schema}.subscription_versions", "subscription_versions", list(subscriptions))
    create_table(con, f"{schema}.plan_charges", "plan_charges", list(charges), deleted)
    for i, u in enumerate(usage):
        u.setdefault("event_id", f"e{i + 1:06d}")
    create_table(con, f"{schema}.usage_events", "usage_records", list(usage),
                 deleted + [("_position", "BIGINT"), ("_file", "VARCHAR")])
    return {"usage": f"{schema}.usage_events", "subscriptions": f"{schema}.subscription_versions",
            "accounts": f"{schema}.billing_accounts", "charges": f"{schema}.plan_charges"}


DEFAULT_ACCOUNTS = [{"account_id": 1, "currency": "USD", "bill_cycle_day": 1, "billing_cycle": "MONTHLY"}]
DEFAULT_SUBSCRIPTIONS = [{"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-01-01"}]


def rate_example(
    charges: list[dict],
    usage: list[dict],
    *,
    billing_month=None,
    accounts: list[dict] | None = None,
    subscriptions: list[dict] | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
):
    """Rate a small example in a fresh in-memory DuckDB (defaults: account 1 in USD on calendar
    months, subscription 10 on plan 100 since 2025-01-01, billing month March 2025).
    Returns ``(rated, unrated, con)`` with rows as lists of dicts."""
    import datetime as dt

    from domain import install_macros
    from pipelines.rating.engine import rate_usage

    con = con or install_macros(duckdb.connect())
    charges = [{"plan_id": 100, "charge_code": f"c{c['price_id']}", **c} for c in charges]
    kw = create_inputs(con, "core", accounts=accounts or DEFAULT_ACCOUNTS,
                       subscriptions=subscriptions or DEFAULT_SUBSCRIPTIONS, charges=charges,
                       usage=[dict(u) for u in usage])
    result = rate_usage(con, billing_month or dt.date(2025, 3, 1), **kw)
    rated = result.rated.order("subscription_id, metric, charge_code, segment_start, line_type, dimensions")
    return _rows(rated), _rows(result.unrated.order("event_id")), con


def _rows(rel: duckdb.DuckDBPyRelation) -> list[dict]:
    cols = rel.columns
    return [dict(zip(cols, r)) for r in rel.fetchall()]
