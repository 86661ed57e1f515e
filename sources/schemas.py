"""Pandera schemas: the asserted contract of every entity, derived from ``sources/entities.py``.

One :class:`pandera.polars.DataFrameSchema` per entity: the column dtypes (from the SQL types),
nullability, closed value sets (``Column.allowed`` → ``isin``) and a few domain checks
(bill cycle day 1..31, non-negative prices, standalone selling prices and quantities, a usage
quantity below ``MAX_USAGE_QUANTITY``, positive payment amounts and contract terms, ISO codes,
JSON columns that hold the JSON object or array the rating engine reads, effective ranges
(plan charges, tax rates, standalone selling prices) that do not end before they start,
coupons with a percent in (0, 1], a positive amount or number of periods, and the columns their
kind needs: percent_off for PERCENT, amount_off and currency for FIXED, duration_periods for REPEATING).

Every check carries an ``error`` text that completes a human reason, so a failure case of
column ``c`` with value ``v`` reads ``"c: v <error>"`` (``status: 'ACTVE' not in (ACTIVE,
SUSPENDED, CLOSED)``). :func:`failure_reasons` turns pandera's lazy ``SchemaErrors`` into one
reason per failing row index (pandera's polars backend reports row indices in
``failure_cases.index``).

The readers (``sources/readers.py``) type the columns first (a value that cannot be parsed is
rejected there), then validate with these schemas:

* inserts, updates and snapshot reads are validated with :func:`entity_schema` (every column);
* deletes and tombstones with :func:`key_schema` (only the key: a delete's before image may be
  partial, a tombstone carries only the key);
* in an update whose columns the source marked unavailable (unchanged), those columns may be
  null (:func:`entity_schema` with ``relax``).
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache

import duckdb
import pandera.polars as pa
import polars as pl

from sources.entities import ENTITIES

_DECIMAL = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")
# One usage event's quantity stays below this, so rated amounts fit the DECIMAL(18,4) line types.
MAX_USAGE_QUANTITY = Decimal(10**12)
_SHOWN_CHARS = 80  # a failing value longer than this is cut in its reason (the payload keeps it whole)


def polars_dtype(sql_type: str) -> pl.DataType:
    """The Polars dtype of a DuckDB SQL type used in ``entities.py``.

    BIGINT→Int64, INTEGER→Int32, VARCHAR→String, BOOLEAN→Boolean, DATE→Date,
    TIMESTAMP→Datetime('us') (naive, UTC), DECIMAL(p,s)→Decimal(p,s), VARCHAR[]→List(String).
    """
    t = sql_type.strip().upper()
    simple = {
        "BIGINT": pl.Int64(),
        "INTEGER": pl.Int32(),
        "VARCHAR": pl.String(),
        "BOOLEAN": pl.Boolean(),
        "DATE": pl.Date(),
        "TIMESTAMP": pl.Datetime("us"),
        "VARCHAR[]": pl.List(pl.String()),
    }
    if t in simple:
        return simple[t]
    m = _DECIMAL.match(t)
    if m:
        return pl.Decimal(int(m.group(1)), int(m.group(2)))
    raise ValueError(f"unsupported SQL type {sql_type!r}")


def _isin_error(allowed: tuple[str, ...]) -> str:
    return f"not in ({', '.join(allowed)})"


def _json_check(json_type: str) -> pa.Check:
    """The text, when present, is a JSON value of ``json_type`` (OBJECT, ARRAY), as DuckDB's JSON
    functions (the rating engine's) parse it."""

    def fn(data):
        values = data.lazyframe.select(pl.col(data.key).alias("v")).collect()  # noqa: F841 - scanned by DuckDB
        with duckdb.connect() as con:
            ok = con.sql(f"SELECT coalesce(CASE WHEN json_valid(v) THEN json_type(v) END = '{json_type}', v IS NULL) AS ok "
                         "FROM values").pl()
        return ok.lazy()

    return pa.Check(fn, error=f"is not a JSON {json_type.lower()}")


# Domain checks beyond type, nullability and closed sets: (entity or "*", column) → checks.
# ``"*"`` applies to that column name in every entity that has it.
def _domain_checks() -> dict[tuple[str, str], list[pa.Check]]:
    zero = Decimal(0)
    one = Decimal(1)
    return {
        ("*", "currency"): [pa.Check.str_matches(r"^[A-Z]{3}$", error="is not an ISO 4217 code (3 upper-case letters)")],
        ("*", "country"): [pa.Check.str_matches(r"^[A-Z]{2}$", error="is not an ISO 3166-1 alpha-2 code (2 upper-case letters)")],
        ("billing_accounts", "bill_cycle_day"): [pa.Check.in_range(1, 31, error="not in 1..31")],
        ("billing_accounts", "payment_terms_days"): [pa.Check.in_range(0, 366, error="not in 0..366")],
        ("billing_accounts", "credit_limit"): [pa.Check.ge(zero, error="is negative (must be >= 0)")],
        ("products", "base_price"): [pa.Check.ge(zero, error="is negative (must be >= 0)")],
        ("plan_charges", "unit_price"): [pa.Check.ge(zero, error="is negative (must be >= 0)")],
        ("plan_charges", "included_quantity"): [pa.Check.ge(zero, error="is negative (must be >= 0)")],
        ("plan_charges", "proration_days"): [pa.Check.in_range(1, 366, error="not in 1..366")],
        ("bundles", "discount_pct"): [pa.Check.in_range(zero, one, error="not in 0..1")],
        ("tax_rates", "rate"): [pa.Check.in_range(zero, one, error="not in 0..1")],
        ("order_items", "quantity"): [pa.Check.ge(1, error="is not positive (must be >= 1)")],
        ("order_items", "unit_price"): [pa.Check.ge(zero, error="is negative (must be >= 0)")],
        ("orders", "contract_term_months"): [pa.Check.ge(1, error="is not positive (must be >= 1)")],
        ("standalone_selling_prices", "ssp_amount"): [pa.Check.ge(zero, error="is negative (must be >= 0)")],
        ("payments", "amount"): [pa.Check.gt(zero, error="is not positive (must be > 0)")],
        ("coupons", "percent_off"): [pa.Check.in_range(zero, one, include_min=False, error="not in (0..1]")],
        ("coupons", "amount_off"): [pa.Check.gt(zero, error="is not positive (must be > 0)")],
        ("coupons", "duration_periods"): [pa.Check.ge(1, error="is not positive (must be >= 1)")],
        ("usage_records", "quantity"): [
            pa.Check.ge(zero, error="is negative (must be >= 0)"),
            pa.Check.lt(MAX_USAGE_QUANTITY, error=f"is too large (must be < {MAX_USAGE_QUANTITY} per event)"),
        ],
        ("usage_records", "attributes"): [_json_check("OBJECT")],
        ("plan_charges", "properties"): [_json_check("OBJECT")],
        ("plan_charges", "tiers"): [_json_check("ARRAY")],
        ("usage_records", "event_id"): [pa.Check.str_length(1, 200, error="is empty or longer than 200 characters")],
    }


def _range_check(start: str, end: str) -> pa.Check:
    """Row-level check: ``end`` is null or after ``start``."""

    def fn(data):
        return data.lazyframe.select(pl.col(end).is_null() | pl.col(start).is_null() | (pl.col(end) > pl.col(start)))

    return pa.Check(fn, error=f"{end} is not after {start}")


def _required_when(column: str, when: str, value: str) -> pa.Check:
    """Row-level check: ``column`` is present when ``when`` is ``value``."""

    def fn(data):
        return data.lazyframe.select(pl.col(column).is_not_null() | pl.col(when).ne_missing(pl.lit(value)))

    return pa.Check(fn, error=f"{column} is required when {when} is {value}")


def _frame_checks(entity_name: str) -> list[pa.Check]:
    """Checks across columns of a row: effective ranges, and the columns a coupon's kind needs."""
    ranges = {entity: [("effective_from", "effective_to")] for entity in ("plan_charges", "tax_rates", "standalone_selling_prices")}
    required = {"coupons": [("percent_off", "discount_type", "PERCENT"), ("amount_off", "discount_type", "FIXED"),
                            ("currency", "discount_type", "FIXED"), ("duration_periods", "duration", "REPEATING")]}
    return ([_range_check(a, b) for a, b in ranges.get(entity_name, [])]
            + [_required_when(*r) for r in required.get(entity_name, [])])


@lru_cache(maxsize=None)
def entity_schema(entity_name: str, relax: frozenset[str] = frozenset()) -> pa.DataFrameSchema:
    """The full-row schema of an entity; columns in ``relax`` may be null (unavailable values)."""
    entity = ENTITIES[entity_name]
    domain = _domain_checks()
    columns = {}
    for c in entity.columns:
        checks: list[pa.Check] = []
        if c.allowed:
            checks.append(pa.Check.isin(list(c.allowed), error=_isin_error(c.allowed)))
        checks += domain.get(("*", c.name), []) + domain.get((entity.name, c.name), [])
        columns[c.name] = pa.Column(
            polars_dtype(c.sql_type), checks=checks, nullable=c.nullable or c.name in relax,
            description=c.description,
        )
    return pa.DataFrameSchema(columns, checks=_frame_checks(entity.name), name=entity.name, strict=False, coerce=False)


@lru_cache(maxsize=None)
def key_schema(entity_name: str) -> pa.DataFrameSchema:
    """Deletes and tombstones: only the key columns are asserted (typed, non-null)."""
    entity = ENTITIES[entity_name]
    columns = {
        k: pa.Column(polars_dtype(entity.column(k).sql_type), nullable=False, description=entity.column(k).description)
        for k in entity.key
    }
    return pa.DataFrameSchema(columns, name=f"{entity.name}_key", strict=False, coerce=False)


def _shown(case: pl.Expr) -> pl.Expr:
    """A failing value as shown in a reason: numbers bare (trailing decimal zeros dropped), text
    quoted and cut to ``_SHOWN_CHARS`` characters."""
    cut = pl.when(case.str.len_chars() > _SHOWN_CHARS).then(case.str.slice(0, _SHOWN_CHARS) + pl.lit("…")).otherwise(case)
    return (
        pl.when(case.is_null()).then(pl.lit("null"))
        .when(case.str.contains(r"^-?\d+\.\d+$")).then(case.str.strip_chars_end("0").str.strip_chars_end("."))
        .when(case.str.contains(r"^-?\d+$")).then(case)
        .otherwise(pl.lit("'") + cut + pl.lit("'"))
    )


def failure_reasons(schema: pa.DataFrameSchema, frame: pl.DataFrame) -> pl.DataFrame:
    """Validate ``frame`` lazily; return one row per failing row: ``index`` (UInt32), ``reason``.

    The first failure of a row (in schema column order, frame-level checks last) becomes its
    reason; a frame-level check's reason is its error text alone. A failure pandera reports
    without a row index (a missing column, a wrong dtype) is a bug in the reader (it types every
    column before validating), so it raises.
    """
    empty = pl.DataFrame(schema={"index": pl.UInt32, "reason": pl.String})
    if frame.height == 0:
        return empty
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        fc = err.failure_cases
        if fc["index"].null_count():
            bad = fc.filter(pl.col("index").is_null())
            raise AssertionError(f"schema {schema.name}: failures without row index:\n{bad}") from err
        order = pl.DataFrame({"column": list(schema.columns), "rank": list(range(len(schema.columns)))},
                             schema={"column": pl.String, "rank": pl.Int64})
        case = pl.col("failure_case").cast(pl.String)
        return (
            fc.lazy()
            .join(order.lazy(), on="column", how="left")
            .with_columns(
                pl.col("rank").fill_null(len(order)),
                reason=pl.when(pl.col("column").is_null() | (pl.col("schema_context") == "DataFrameSchema")).then(pl.col("check"))
                .when(pl.col("check") == "not_nullable").then(pl.col("column") + pl.lit(": required value is null"))
                .otherwise(pl.col("column") + pl.lit(": ") + _shown(case) + pl.lit(" ") + pl.col("check")),
            )
            .sort("index", "rank", "check_number", nulls_last=True)
            .group_by("index", maintain_order=True).first()
            .select(pl.col("index").cast(pl.UInt32), "reason")
            .collect()
        )
    return empty
