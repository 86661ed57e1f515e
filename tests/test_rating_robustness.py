"""One record must never stop a bill cycle (issue 7): the rating engine tolerates bad records.

Engine level, table-driven: a bad usage event is unrated with its reason while the others rate;
a price version outside the plan format (docs/rating.md, "Limits") is a catalog error, its events
unrated as ``charge misconfigured: ...``; a line whose amount or quantity would not fit the
``billing.rated_usage`` types is dropped and its events unrated (``amount out of range``), even
when every event is within bounds. Then once through the real Dagster jobs (ingest, bill cycle).
Expected amounts are worked out by hand in the comments (March 2025, a whole period, USD).
"""

from __future__ import annotations

import datetime as dt
import json
from datetime import date, datetime
from decimal import Decimal as D

import duckdb
import pytest

from domain import install_macros
from pipelines.rating import rate_usage
from pipelines.rating.inputs import create_inputs
from tests.extracts import DebeziumFile, write_usage
from tests.pipeline import failed_checks, run_bill_cycle, run_ingest
from tests.rating_examples import rate_example

MARCH = dt.date(2025, 3, 1)
Q_MAX = "999999999999"  # the largest whole quantity an event may carry (< 10^12)
Q_CELL = "10000000000"  # 10^10: x 90 = 9 x 10^11, a line within the limit (< 10^12)


def ev(q, t="2025-03-05 10:00:00", metric="m", sub=10, **kw):
    return {"subscription_id": sub, "metric": metric, "quantity": str(q), "event_time": t, **kw}


def charge(model, price_id=1, metric="m", **kw):
    return {"price_id": price_id, "metric": metric, "charge_model": model, **kw}


def reasons(unrated):
    return [(u["event_id"], u["reason"]) for u in unrated]


def usage_amounts(rated):
    return [(r["price_id"], r["amount"]) for r in rated if r["line_type"] == "USAGE"]


def rate(charges, usage, subscriptions=None):
    """Rate directly (the result carries ``catalog_errors``); rows as dicts."""
    con = install_macros(duckdb.connect())
    subs = subscriptions or [{"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-01-01"}]
    charges = [{"plan_id": 100, "charge_code": f"c{c['price_id']}", **c} for c in charges]
    names = create_inputs(con, "core", accounts=[{"account_id": 1, "currency": "USD"}], subscriptions=subs,
                          charges=charges, usage=usage)
    return con, names, rate_usage(con, MARCH, **names)


def rows(rel):
    return [dict(zip(rel.columns, r)) for r in rel.order("ALL").fetchall()]


# ---------------------------------------------------------------- one bad event
PER_UNIT = charge("PER_UNIT", unit_price="0.002")
DYNAMIC = charge("DYNAMIC")
UNIQUE = charge("PER_UNIT", unit_price="3", aggregation="UNIQUE_COUNT", properties={"unique_attribute": "device"})
MATRIX_ATTRIBUTE = charge("MATRIX", properties={"dimensions": ["destination"],
                                                "prices": [{"destination": "mobile", "unit_price": "0.07"}]})
MATRIX_BAND_ATTRIBUTE = charge("MATRIX", properties={"dimensions": ["time_band"],  # no time_bands: read from attributes
                                                     "prices": [{"time_band": "PEAK", "unit_price": "0.07"}]})

# (case, charge, good event, its amount, bad event, reason)
BAD_EVENTS = [
    # the data_mb record: 10^20 MB would be a 2 * 10^17 line; 1000 MB x 0.002 = 2.00
    ("quantity_10e20", PER_UNIT, ev(1000), "2.00", ev("100000000000000000000"), "quantity out of range"),
    ("quantity_10e12", PER_UNIT, ev(1000), "2.00", ev("1000000000000"), "quantity out of range"),
    ("negative_quantity", PER_UNIT, ev(1000), "2.00", ev(-5), "quantity out of range"),
    # the attributes: 2 x 1.50 = 3.00
    ("dynamic_attributes_not_json", DYNAMIC, ev(2, attributes={"unit_price": "1.50"}), "3.00",
     ev(1, attributes="{unit_price: 2.99"), "bad attributes: not valid JSON"),
    ("dynamic_attributes_not_json_literal", DYNAMIC, ev(2, attributes={"unit_price": "1.50"}), "3.00",
     ev(1, attributes="not-json"), "bad attributes: not valid JSON"),
    # one device seen x 3 = 3.00
    ("unique_count_attributes_not_json", UNIQUE, ev(1, attributes={"device": "a"}), "3.00",
     ev(1, attributes="not-json"), "bad attributes: not valid JSON"),
    # 10 x 0.07 = 0.70
    ("matrix_attribute_not_json", MATRIX_ATTRIBUTE, ev(10, attributes={"destination": "mobile"}), "0.70",
     ev(1, attributes="not-json"), "bad attributes: not valid JSON"),
    ("matrix_time_band_attribute_not_json", MATRIX_BAND_ATTRIBUTE, ev(10, attributes={"time_band": "PEAK"}), "0.70",
     ev(1, attributes="{oops"), "bad attributes: not valid JSON"),
    # the negative price was billed as a line of -475.06; it is rejected, 2 x 1.50 = 3.00 billed
    ("negative_dynamic_price", DYNAMIC, ev(2, attributes={"unit_price": "1.50"}), "3.00",
     ev("0.95012", attributes={"unit_price": "-500.00"}), "bad attributes: unit_price out of range"),
    ("dynamic_price_10e6", DYNAMIC, ev(2, attributes={"unit_price": "1.50"}), "3.00",
     ev(1, attributes={"unit_price": "1000000"}), "bad attributes: unit_price out of range"),
    # 11 decimal places would be rounded silently
    ("dynamic_price_11_decimals", DYNAMIC, ev(2, attributes={"unit_price": "1.50"}), "3.00",
     ev(1, attributes={"unit_price": "0.00000000001"}), "bad attributes: missing or invalid unit_price"),
    ("dynamic_price_not_a_number", DYNAMIC, ev(2, attributes={"unit_price": "1.50"}), "3.00",
     ev(1, attributes={"unit_price": "2,99"}), "bad attributes: missing or invalid unit_price"),
]


@pytest.mark.parametrize("case,price,good,amount,bad,reason", BAD_EVENTS, ids=[c[0] for c in BAD_EVENTS])
def test_a_bad_event_is_unrated_and_the_others_rate(case, price, good, amount, bad, reason):
    rated, unrated, _ = rate_example([price], [good, bad])
    assert reasons(unrated) == [("e000002", reason)]
    assert [(r["amount"], r["event_count"]) for r in rated if r["line_type"] == "USAGE"] == [(D(amount), 1)]


def test_attributes_are_only_checked_where_a_price_reads_them():
    # a per-unit SUM charge never reads attributes: 1000 x 0.002 = 2.00, whatever they hold
    rated, unrated, _ = rate_example([PER_UNIT], [ev(1000, attributes="not-json")])
    assert unrated == [] and usage_amounts(rated) == [(1, D("2.00"))]


# ---------------------------------------------------------------- one bad price version
TIERS = [{"up_to": "10", "unit_amount": "1"}, {"up_to": None, "unit_amount": "0.5"}]

# (case, price version on metric m, its config error)
BAD_CHARGES = [
    ("properties_not_json", charge("PER_UNIT", unit_price="1", properties="{oops"), "properties is not valid JSON"),
    ("properties_not_an_object", charge("PER_UNIT", unit_price="1", properties="[1, 2]"), "properties is not a JSON object"),
    ("properties_unknown_key", charge("PER_UNIT", unit_price="1", properties={"minimum_ammount": "10"}),
     "properties has unknown key minimum_ammount"),
    ("tiers_not_json", charge("GRADUATED", tiers="[{oops"), "tiers is not valid JSON"),
    ("tiers_not_an_array", charge("GRADUATED", tiers={"up_to": None}), "tiers is not a JSON array"),
    ("tier_not_an_object", charge("GRADUATED", tiers=[None]), "tiers: tier 1 is not a JSON object"),
    ("tier_unknown_key", charge("GRADUATED", tiers=[{"up_to": "10", "unit_amout": "1"}, TIERS[1]]),
     "tiers: tier 1 has unknown key unit_amout"),
    ("tier_negative_unit_amount", charge("GRADUATED", tiers=[{"up_to": "10", "unit_amount": "-1"}, TIERS[1]]),
     "tiers: tier 1 unit_amount must be >= 0 and < 10^6"),
    ("tier_negative_flat_amount", charge("VOLUME", tiers=[{**TIERS[0], "flat_amount": "-2"}, TIERS[1]]),
     "tiers: tier 1 flat_amount must be >= 0 and < 10^12"),
    ("tier_up_to_not_a_number", charge("VOLUME", tiers=[{"up_to": "ten", "unit_amount": "1"}, TIERS[1]]),
     "tiers: tier 1 up_to is not a decimal"),
    ("tier_rate_above_1", charge("GRADUATED_PERCENTAGE", tiers=[{"up_to": "10", "rate": "2"}, {"up_to": None, "rate": "0.5"}]),
     "tiers: tier 1 rate must be between 0 and 1"),
    ("negative_unit_price", charge("PER_UNIT", unit_price="-1"), "unit_price must be >= 0 and < 10^6"),
    ("unit_price_10e6", charge("PER_UNIT", unit_price="1000000"), "unit_price must be >= 0 and < 10^6"),
    ("negative_included_quantity", charge("PER_UNIT", unit_price="1", included_quantity="-5"),
     "included_quantity must be >= 0 and < 10^18"),
    ("proration_days_0", charge("PER_UNIT", unit_price="1", proration_days=0),
     "proration_days must be a whole number between 1 and 366"),
    ("rate_above_1", charge("PERCENTAGE", properties={"rate": "1.5"}), "properties.rate must be between 0 and 1"),
    ("negative_rate", charge("PERCENTAGE", properties={"rate": "-0.1"}), "properties.rate must be between 0 and 1"),
    ("rate_12_decimals", charge("PERCENTAGE", properties={"rate": "0.123456789012"}),
     "properties.rate has more than 10 decimal places"),
    ("negative_fixed_fee", charge("PERCENTAGE", properties={"rate": "0.02", "fixed_fee": "-0.10"}),
     "properties.fixed_fee must be >= 0 and < 10^12"),
    ("fixed_fee_not_a_number", charge("PERCENTAGE", properties={"rate": "0.02", "fixed_fee": "abc"}),
     "properties.fixed_fee is not a decimal"),
    ("negative_per_event_min", charge("PERCENTAGE", properties={"rate": "0.02", "per_event_min": "-1"}),
     "properties.per_event_min must be >= 0 and < 10^12"),
    ("per_event_min_above_max", charge("PERCENTAGE", properties={"rate": "0.02", "per_event_min": "5", "per_event_max": "1"}),
     "properties.per_event_min must not exceed properties.per_event_max"),
    ("free_events_not_whole", charge("PERCENTAGE", properties={"rate": "0.02", "free_events": "1.5"}),
     "properties.free_events must be a whole number >= 0 and < 10^12"),
    ("package_size_0", charge("PACKAGE", unit_price="5", properties={"package_size": "0"}), "PACKAGE needs package_size > 0"),
    ("negative_package_size", charge("PACKAGE", unit_price="5", properties={"package_size": "-10"}),
     "properties.package_size must be >= 0 and < 10^18"),
    ("negative_free_units", charge("PACKAGE", unit_price="5", properties={"package_size": "100", "free_units": "-1"}),
     "properties.free_units must be >= 0 and < 10^18"),
    ("negative_minimum", charge("PER_UNIT", unit_price="1", properties={"minimum_amount": "-1"}),
     "properties.minimum_amount must be >= 0 and < 10^12"),
    ("maximum_10e15", charge("PER_UNIT", unit_price="1", properties={"maximum_amount": "1e15"}),
     "properties.maximum_amount must be >= 0 and < 10^12"),
    ("minimum_above_maximum", charge("PER_UNIT", unit_price="1", properties={"minimum_amount": "10", "maximum_amount": "5"}),
     "properties.minimum_amount must not exceed properties.maximum_amount"),
    ("matrix_negative_cell_price", charge("MATRIX", properties={"dimensions": ["zone"], "prices": [{"zone": "EU", "unit_price": "-0.1"}]}),
     "properties.prices: cell 1 unit_price must be >= 0 and < 10^6"),
    ("matrix_cell_unknown_key", charge("MATRIX", properties={"dimensions": ["zone"], "prices": [{"zon": "EU", "unit_price": "0.1"}]}),
     "properties.prices: cell 1 has unknown key zon"),
    ("matrix_cell_without_price", charge("MATRIX", properties={"dimensions": ["zone"], "prices": [{"zone": "EU"}]}),
     "properties.prices: cell 1 needs unit_price"),
    ("matrix_prices_not_an_array", charge("MATRIX", properties={"dimensions": ["zone"], "prices": {"zone": "EU"}}),
     "properties.prices must be a JSON array"),
    ("matrix_negative_default", charge("MATRIX", properties={"dimensions": ["zone"], "default_unit_price": "-1"}),
     "properties.default_unit_price must be >= 0 and < 10^6"),
    ("matrix_dimension_with_quote", charge("MATRIX", properties={"dimensions": ['a"b']}),
     'properties.dimensions must be a non-empty name without " or \\'),
    ("matrix_band_fractional_hour", charge("MATRIX", properties={"dimensions": ["time_band"],
                                                                 "time_bands": [{"band": "P", "from_hour": 1.5, "to_hour": 3}]}),
     "properties.time_bands: each band needs a name, a whole from_hour 0..23 and a whole to_hour 0..24"),
    ("matrix_bands_not_an_array", charge("MATRIX", properties={"dimensions": ["time_band"], "time_bands": {"band": "P"}}),
     "properties.time_bands must be a JSON array"),
    ("dynamic_empty_price_attribute", charge("DYNAMIC", properties={"price_attribute": ""}),
     'properties.price_attribute must be a non-empty name without " or \\'),
    ("unique_attribute_with_quote", charge("PER_UNIT", unit_price="1", aggregation="UNIQUE_COUNT",
                                           properties={"unique_attribute": 'x"y'}),
     'properties.unique_attribute must be a non-empty name without " or \\'),
]


@pytest.mark.parametrize("case,price,error", BAD_CHARGES, ids=[c[0] for c in BAD_CHARGES])
def test_a_bad_price_version_is_a_catalog_error_and_the_others_rate(case, price, error):
    # the bad version prices metric m; a per-unit version prices x: 3 x 2 = 6.00
    other = charge("PER_UNIT", price_id=2, metric="x", unit_price="2")
    _, _, result = rate([price, other], [ev(1, zone="EU", attributes={"unit_price": "1"}), ev(3, metric="x")])
    assert result.catalog_errors == {1: error}
    assert reasons(rows(result.unrated)) == [("e000001", f"charge misconfigured: {error}")]
    assert usage_amounts(rows(result.rated)) == [(2, D("6.00"))]


def test_a_bad_price_version_of_an_unused_metric_changes_nothing():
    # the plan_charges record ("properties": "{oops") on a metric no event uses
    _, _, result = rate([charge("PER_UNIT", unit_price="2"), charge("PER_UNIT", price_id=2, metric="fax", properties="{oops")],
                        [ev(3)])
    assert result.catalog_errors == {2: "properties is not valid JSON"}
    assert rows(result.unrated) == []
    assert usage_amounts(rows(result.rated)) == [(1, D("6.00"))]  # 3 x 2


# ---------------------------------------------------------------- a line out of range
ZONES = {"dimensions": ["zone"], "prices": [{"zone": "A", "unit_price": "90"}, {"zone": "B", "unit_price": "90"}]}

# (case, price version on metric m, its events, unrated reasons in event order); a per-unit
# version on metric x rates 5 x 1 = 5.00 next to it every time
OUT_OF_RANGE = [
    # 999,999,999,999 x 1,000 = 999,999,999,999,000 >= 10^12, the line amount limit
    ("amount_above_decimal_18_4", charge("PER_UNIT", unit_price="1000"), [ev(Q_MAX)], ["amount out of range"]),
    # 3 x 999,999,999,999 x 999,999 = 2.99999699999700000 x 10^18: the product leaves DECIMAL(38,20)
    ("precise_product_overflow", charge("PER_UNIT", unit_price="999999"), [ev(Q_MAX)] * 3, ["amount out of range"] * 3),
    # each event 999,999,999,999 x 999,999 = 9.99998999999000001 x 10^17 is within bounds; three sum past 10^18
    ("dynamic_sum_overflow", charge("DYNAMIC"), [ev(Q_MAX, attributes={"unit_price": "999999"})] * 3,
     ["amount out of range"] * 3),
    # graduated: 10 x 1 + 999,999,999,999 + 10 x 999,999 + 999,999,999,999 = 2,000,009,999,998 >= 10^12
    ("graduated_flats", charge("GRADUATED", tiers=[{"up_to": "10", "unit_amount": "1", "flat_amount": "999999999999"},
                                                   {"up_to": None, "unit_amount": "999999", "flat_amount": "999999999999"}]),
     [ev(20)], ["amount out of range"]),
    # ceil(999,999,999,999 / 10^-10) = 9,999,999,999,990,000,000,000 packages x 999,999
    ("package_count", charge("PACKAGE", unit_price="999999", properties={"package_size": "0.0000000001"}), [ev(Q_MAX)],
     ["amount out of range"]),
    # cells A and B: 10,000,000,000 x 90 = 900,000,000,000 each (fits); the cap line 10 - 1,800,000,000,000
    # does not: the whole segment is out of range; C has no cell and keeps its own reason
    ("matrix_cap_line", charge("MATRIX", properties={**ZONES, "maximum_amount": "10"}),
     [ev(Q_CELL, zone="A"), ev(Q_CELL, zone="B"), ev(1, zone="C")],
     ["amount out of range", "amount out of range", 'bad attributes: no matrix price for {"zone":"C"}']),
    # a gauge of 999,999,999,999 over the 31 days (2,678,400,000 ms): the gauge-milliseconds leave the
    # exact division's range (10^18)
    ("time_weighted_gauge", charge("PER_UNIT", unit_price="1", aggregation="TIME_WEIGHTED_SUM"),
     [ev(Q_MAX, "2025-03-01 00:00:00")], ["quantity out of range"]),
]


@pytest.mark.parametrize("case,price,usage,expected", OUT_OF_RANGE, ids=[c[0] for c in OUT_OF_RANGE])
def test_a_line_out_of_range_is_unrated_and_the_others_rate(case, price, usage, expected):
    other = charge("PER_UNIT", price_id=2, metric="x", unit_price="1")
    rated, unrated, _ = rate_example([price, other], [*usage, ev(5, metric="x")])
    assert reasons(unrated) == [(f"e{i + 1:06d}", r) for i, r in enumerate(expected)]
    assert [(r["price_id"], r["line_type"], r["amount"]) for r in rated] == [(2, "USAGE", D("5.00"))]


def test_matrix_cells_within_range_are_rated():
    # the same cells without a cap: two lines of 10,000,000,000 x 90 = 900,000,000,000.00 each, both fit
    rated, unrated, _ = rate_example([charge("MATRIX", properties=ZONES)], [ev(Q_CELL, zone="A"), ev(Q_CELL, zone="B")])
    assert unrated == []
    assert [(r["dimensions"], r["amount"]) for r in rated] == [
        ('{"zone":"A"}', D("900000000000.00")), ('{"zone":"B"}', D("900000000000.00"))]


def test_many_bounded_events_summing_out_of_range():
    # 20,000 events of 1 unit at 50 %, each raised to the per-event minimum 999,999,999,999 (within the
    # amount bound): 19,999,999,999,980,000 in all, past the line limit 10^12 (the plain and the
    # ordered percentage path)
    minimum = {"rate": "0.5", "per_event_min": "999999999999"}
    con, names, _ = rate([charge("PERCENTAGE", properties=minimum),
                          charge("PERCENTAGE", price_id=2, metric="m2", properties={**minimum, "free_events": "1"}),
                          charge("PER_UNIT", price_id=3, metric="x", unit_price="1")], [ev(5, metric="x")])
    for metric in ("m", "m2"):
        con.execute(f"""INSERT INTO core.usage_events (event_id, subscription_id, metric, quantity, unit, event_time, is_deleted)
                        SELECT '{metric}-' || i, 10, '{metric}', 1, 'U', TIMESTAMP '2025-03-05' + to_seconds(i), false
                        FROM range(20000) t(i)""")
    result = rate_usage(con, MARCH, **names)
    assert result.unrated.aggregate("metric, reason, count(*)", "metric, reason").order("metric").fetchall() == [
        ("m", "amount out of range", 20000), ("m2", "amount out of range", 20000)]
    assert usage_amounts(rows(result.rated)) == [(3, D("5.00"))]


# ---------------------------------------------------------------- through the Dagster bill cycle
T0 = datetime(2024, 12, 1)
JAN = date(2025, 1, 1)
ACCOUNTS = (1, 2, 3, 4, 5, 6)
# plan 10: data 0.002 per MB, content at the price on the event, devices 3 each, roaming 999 per
# MB; prices 18 and 19 price metrics no event uses: 18 with a negative minimum (valid JSON, so
# ingest accepts it), 19 with the bad properties
PLAN_CHARGES = [
    dict(price_id=11, charge_code="data", metric="data_mb", aggregation="SUM", charge_model="PER_UNIT", unit_price=D("0.002")),
    dict(price_id=12, charge_code="content", metric="content_purchase", aggregation="SUM", charge_model="DYNAMIC"),
    dict(price_id=13, charge_code="devices", metric="device_seen", aggregation="UNIQUE_COUNT", charge_model="PER_UNIT",
         unit_price=D("3"), properties=json.dumps({"unique_attribute": "device_id"})),
    dict(price_id=14, charge_code="roaming", metric="roaming_mb", aggregation="SUM", charge_model="PER_UNIT",
         unit_price=D("999")),
    dict(price_id=18, charge_code="sms", metric="sms", aggregation="SUM", charge_model="PER_UNIT",
         unit_price=D("1"), properties=json.dumps({"minimum_amount": "-10"})),
    dict(price_id=19, charge_code="fax", metric="fax_pages", aggregation="SUM", charge_model="PER_UNIT",
         unit_price=D("1"), properties="{oops"),
]
# one bad record per account 2..6 (account, metric, quantity, attributes) and its reason at rating:
# the records (ingest may quarantine the first, second and fourth), its negative price,
# and 999,999,999,999 MB x 999 = 9.99 x 10^14, a line past the line amount limit (10^12)
BAD_USAGE = [
    ((2, "data_mb", "100000000000000000000", None), "quantity out of range"),
    ((3, "content_purchase", "1", "{unit_price: 2.99"), "bad attributes: not valid JSON"),
    ((4, "content_purchase", "0.95012", json.dumps({"unit_price": "-500.00"})), "bad attributes: unit_price out of range"),
    ((5, "device_seen", "1", "not-json"), "bad attributes: not valid JSON"),
    ((6, "roaming_mb", Q_MAX, None), "amount out of range"),
]


def _land(landing) -> list[str]:
    """The landing zone; returns the event ids of BAD_USAGE."""
    DebeziumFile("products").snapshot(1, T0, dict(product_id=1, sku="SVC", name="Service", category="MOBILE",
                                                  product_type="SUBSCRIPTION", base_price=D("0"), currency="USD",
                                                  status="ACTIVE")).write(landing, "products-2024-12-01.jsonl")
    DebeziumFile("price_plans").snapshot(2, T0, dict(plan_id=10, product_id=1, name="Plan", currency="USD", status="ACTIVE")) \
        .write(landing, "price_plans-2024-12-01.jsonl")
    charges = DebeziumFile("plan_charges")
    for lsn, c in enumerate(PLAN_CHARGES, start=3):
        charges.snapshot(lsn, T0, dict(plan_id=10, charge_type="USAGE", billing_timing="IN_ARREARS", prorate=True,
                                       effective_from=datetime(2024, 1, 1), **c))
    charges.write(landing, "plan_charges-2024-12-01.jsonl")
    DebeziumFile("tax_rates").snapshot(9, T0, dict(tax_rate_id=1, country="US", state="CA", tax_name="Tax", rate=D("0.10"),
                                                   effective_from=date(2024, 1, 1))).write(landing, "tax_rates-2024-12-01.jsonl")
    files = {e: DebeziumFile(e) for e in ("customers", "billing_accounts", "orders", "order_items")}
    for a in ACCOUNTS:
        files["customers"].create(10 + a, T0, dict(customer_id=a, name=f"Customer {a}", country="US", state="CA",
                                                   customer_type="BUSINESS", status="ACTIVE", created_at=T0))
        files["billing_accounts"].create(10 + a, T0, dict(account_id=100 + a, customer_id=a, account_number=f"AC{a}",
                                                          billing_cycle="MONTHLY", bill_cycle_day=1, payment_method="INVOICE",
                                                          payment_terms_days=30, currency="USD", status="ACTIVE", created_at=T0))
        files["orders"].create(10 + a, T0, dict(order_id=a, order_number=f"ORD-{a}", account_id=100 + a, order_type="NEW_SERVICE",
                                                status="CONFIRMED", effective_date=JAN, created_at=T0))
        files["order_items"].create(10 + a, T0, dict(order_item_id=a, order_id=a, product_id=1, plan_id=10,
                                                     subscription_id=500 + a, quantity=1))
    for entity, f in files.items():
        f.write(landing, f"{entity}-2024-12-15.jsonl")
    # every account: 20 x 50 MB (1,000 MB x 0.002 = 2.00), 2 content purchases at 1.50 (3.00), one device (3.00)
    rows = []
    for a in ACCOUNTS:
        rows += [(a, "data_mb", "50", None)] * 20 + [(a, "content_purchase", "1", json.dumps({"unit_price": "1.50"}))] * 2
        rows += [(a, "device_seen", "1", json.dumps({"device_id": f"d{a}"}))]
    rows += [record for record, _ in BAD_USAGE]  # 5 bad of 143 events: 3.5 %, under the 5 % that blocks invoicing
    write_usage(landing, "usage_records-2025-01-31.csv", [
        dict(op="I", seq=i + 1, event_id=f"e-{i + 1:03d}", subscription_id=500 + a, metric=m, quantity=q, unit="U",
             event_time=datetime(2025, 1, 2 + i % 20, 12), zone="US", attributes=attrs)
        for i, (a, m, q, attrs) in enumerate(rows)])
    return [f"e-{i + 1:03d}" for i in range(len(rows) - len(BAD_USAGE), len(rows))]  # e-139 .. e-143


def _q(warehouse, sql, params=None):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params).fetchall()


def test_one_bad_record_leaves_every_other_account_invoiced(tmp_path):
    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse.duckdb"
    bad_events = _land(landing)
    ingest = run_ingest(warehouse, landing)
    assert ingest.success and failed_checks(ingest) == []
    cycle = run_bill_cycle(warehouse, landing, JAN)
    assert cycle.success and failed_checks(cycle) == []
    # every account is invoiced: usage 2.00 + 3.00 + 3.00 = 8.00, tax 10 % per line: 0.20 + 0.30 + 0.30 -> total 8.80
    assert _q(warehouse, """SELECT account_id, sum(amount), sum(total_amount) FROM billing.invoice_lines
                            WHERE billing_month = ? GROUP BY 1 ORDER BY 1""", [JAN]) == \
        [(100 + a, D("8.00"), D("8.80")) for a in ACCOUNTS]
    # each bad record is listed with its reason: unrated by rating, or quarantined at ingest
    unrated = dict(_q(warehouse, "SELECT event_id, reason FROM billing.unrated_usage WHERE billing_month = ?", [JAN]))
    quarantined = [p for (p,) in _q(warehouse, "SELECT raw_payload FROM audit.quarantine WHERE entity = 'usage_records'")]
    for event_id, (_, reason) in zip(bad_events, BAD_USAGE):
        assert unrated.get(event_id) == reason or any(event_id in p for p in quarantined), (event_id, reason)
    assert set(unrated) <= set(bad_events) and {bad_events[2], bad_events[4]} <= set(unrated)  # ingest accepts these
    # the misconfigured price versions are listed by rating (19 may be quarantined at ingest instead)
    (rating,) = [e for e in cycle.get_asset_materialization_events() if e.asset_key.path == ["billing", "rated_usage"]]
    errors = rating.materialization.metadata["misconfigured_price_versions"].data
    charge_quarantined = _q(warehouse, "SELECT count(*) FROM audit.quarantine WHERE entity = 'plan_charges'")[0][0]
    assert {k: v for k, v in errors.items() if k != "19"} == {"18": "properties.minimum_amount must be >= 0 and < 10^12"}
    assert errors.get("19") == "properties is not valid JSON" or charge_quarantined == 1
