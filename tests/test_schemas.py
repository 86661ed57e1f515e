"""Pandera domain checks (sources/schemas.py): values a single record must not carry into a bill cycle."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import polars as pl

from sources.entities import ENTITIES
from sources.schemas import MAX_USAGE_QUANTITY, entity_schema, failure_reasons, polars_dtype


def _frame(entity: str, rows: list[dict]) -> pl.DataFrame:
    """Typed rows of ``entity`` (every column, in contract order)."""
    cols = ENTITIES[entity].columns
    return pl.DataFrame([{c.name: r.get(c.name) for c in cols} for r in rows],
                        schema={c.name: polars_dtype(c.sql_type) for c in cols})


def _reasons(entity: str, rows: list[dict]) -> dict[int, str]:
    fr = failure_reasons(entity_schema(entity), _frame(entity, rows))
    return dict(zip(fr["index"].to_list(), fr["reason"].to_list()))


def _usage(**over) -> dict:
    return dict(event_id="e1", subscription_id=5, metric="data_mb", quantity=Decimal("1"), unit="MB",
                event_time=datetime(2025, 1, 3), zone="DOMESTIC", attributes=None) | over


def _charge(**over) -> dict:
    return dict(price_id=1, plan_id=1, charge_code="data", charge_type="USAGE", metric="data_mb", aggregation="SUM",
                charge_model="GRADUATED", billing_timing="IN_ARREARS", prorate=False, unit_price=None,
                included_quantity=None, tiers=None, properties=None, proration_days=None,
                effective_from=datetime(2025, 1, 1), effective_to=None) | over


def test_usage_quantity_has_an_upper_bound():
    """10^12 units at even 0.0001 a unit are 10^8: far inside DECIMAL(18,4); 10^20 (issue 7) is not."""
    assert MAX_USAGE_QUANTITY == Decimal(10**12)
    rows = [_usage(quantity=Decimal("999999999999.9999999999")), _usage(quantity=Decimal(10**12)),
            _usage(quantity=Decimal(10**20)), _usage(quantity=Decimal("200000000000000003.5"))]
    assert _reasons("usage_records", rows) == {
        1: "quantity: 1000000000000 is too large (must be < 1000000000000 per event)",
        2: "quantity: 100000000000000000000 is too large (must be < 1000000000000 per event)",
        3: "quantity: 200000000000000003.5 is too large (must be < 1000000000000 per event)",
    }


def test_usage_attributes_must_be_a_json_object():
    rows = [_usage(attributes='{"unit_price":"2.99"}'), _usage(attributes=None), _usage(attributes="{unit_price: 2.99"),
            _usage(attributes="not-json"), _usage(attributes='["a"]'), _usage(attributes='"text"'),
            _usage(attributes='{"a":1} trailing'), _usage(attributes="{}")]
    assert _reasons("usage_records", rows) == {
        2: "attributes: '{unit_price: 2.99' is not a JSON object",
        3: "attributes: 'not-json' is not a JSON object",
        4: "attributes: '[\"a\"]' is not a JSON object",
        5: "attributes: '\"text\"' is not a JSON object",
        6: "attributes: '{\"a\":1} trailing' is not a JSON object",
    }


def test_plan_charge_properties_are_an_object_and_tiers_an_array():
    tiers = '[{"up_to":"100","unit_amount":"0.01"},{"up_to":null,"unit_amount":"0.005"}]'
    rows = [_charge(tiers=tiers, properties='{"minimum_amount":"10.00"}'), _charge(properties="{oops"),
            _charge(tiers='{"up_to":"100"}'), _charge(tiers="[1,"), _charge(properties="[]")]
    assert _reasons("plan_charges", rows) == {
        1: "properties: '{oops' is not a JSON object",
        2: "tiers: '{\"up_to\":\"100\"}' is not a JSON array",
        3: "tiers: '[1,' is not a JSON array",
        4: "properties: '[]' is not a JSON object",
    }


def test_a_long_failing_value_is_cut_in_its_reason():
    value = "x" * 1_000_000  # a 1 MB string
    (reason,) = _reasons("usage_records", [_usage(attributes=value)]).values()
    assert reason == "attributes: '" + "x" * 80 + "…' is not a JSON object"


def _coupon(**over) -> dict:
    return dict(coupon_id=1, code="WELCOME20", name="Welcome", discount_type="PERCENT", percent_off=Decimal("0.2"),
                amount_off=None, currency=None, duration="ONCE", duration_periods=None, status="ACTIVE") | over


def test_a_coupon_carries_what_its_kind_needs():
    fixed = dict(discount_type="FIXED", percent_off=None, amount_off=Decimal("5"), currency="USD")
    rows = [_coupon(), _coupon(**fixed), _coupon(duration="REPEATING", duration_periods=3),
            _coupon(percent_off=None),                           # PERCENT without a percent
            _coupon(**{**fixed, "amount_off": None}),            # FIXED without an amount
            _coupon(**{**fixed, "currency": None}),              # FIXED without its currency
            _coupon(duration="REPEATING"),                       # REPEATING for how many periods?
            _coupon(percent_off=Decimal("1.5")), _coupon(percent_off=Decimal(0)),
            _coupon(**{**fixed, "amount_off": Decimal("-5")}), _coupon(duration="REPEATING", duration_periods=0),
            _coupon(duration="TWICE")]
    assert _reasons("coupons", rows) == {
        3: "percent_off is required when discount_type is PERCENT",
        4: "amount_off is required when discount_type is FIXED",
        5: "currency is required when discount_type is FIXED",
        6: "duration_periods is required when duration is REPEATING",
        7: "percent_off: 1.5 not in (0..1]",
        8: "percent_off: 0 not in (0..1]",
        9: "amount_off: -5 is not positive (must be > 0)",
        10: "duration_periods: 0 is not positive (must be >= 1)",
        11: "duration: 'TWICE' not in (ONCE, REPEATING, FOREVER)",
    }


def test_an_effective_range_ends_after_it_starts():
    rows = [_charge(effective_to=datetime(2025, 2, 1)), _charge(effective_to=datetime(2025, 1, 1))]
    assert _reasons("plan_charges", rows) == {1: "effective_to is not after effective_from"}


def test_a_standalone_selling_price_is_not_negative_and_its_range_ends_after_it_starts():
    ssp = dict(ssp_id=1, product_id=2, currency="USD", ssp_amount=Decimal("31.49"), effective_from=date(2025, 1, 1),
               effective_to=None)
    rows = [ssp, {**ssp, "ssp_amount": Decimal(0), "effective_to": date(2025, 2, 15)},  # a free product, a closed range
            {**ssp, "ssp_amount": Decimal("-1.50")}, {**ssp, "effective_to": date(2025, 1, 1)},
            {**ssp, "currency": "usd"}, {**ssp, "ssp_amount": None}]
    assert _reasons("standalone_selling_prices", rows) == {
        2: "ssp_amount: -1.5 is negative (must be >= 0)",
        3: "effective_to is not after effective_from",
        4: "currency: 'usd' is not an ISO 4217 code (3 upper-case letters)",
        5: "ssp_amount: required value is null",
    }


def test_a_contract_term_is_at_least_a_month_when_set():
    order = dict(order_id=1, order_number="O1", account_id=7, order_type="NEW_SERVICE", status="CONFIRMED",
                 effective_date=date(2025, 1, 6), created_at=datetime(2025, 1, 5), contract_term_months=None)
    rows = [order, {**order, "contract_term_months": 24}, {**order, "contract_term_months": 0},
            {**order, "contract_term_months": -12}]
    assert _reasons("orders", rows) == {2: "contract_term_months: 0 is not positive (must be >= 1)",
                                        3: "contract_term_months: -12 is not positive (must be >= 1)"}
