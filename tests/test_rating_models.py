"""Table-driven tests: one table per charge model, expectations computed by hand in the comments.

Defaults (tests/rating_examples.py): account 1 in USD on calendar months,
subscription 10 on plan 100 since 2025-01-01, billing month March 2025 = [Mar 1, Apr 1), 31 days.
"""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from tests.rating_examples import rate_example


def ev(q, t="2025-03-05 10:00:00", metric="m", sub=10, **kw):
    return {"subscription_id": sub, "metric": metric, "quantity": str(q), "event_time": t, **kw}


def usage_lines(rated):
    return [r for r in rated if r["line_type"] == "USAGE"]


def one_line(charge, usage, **kw):
    rated, unrated, _ = rate_example([charge], usage, **kw)
    lines = usage_lines(rated)
    assert len(lines) == 1, lines
    assert unrated == []
    return lines[0], rated


def price(model, **kw):
    return {"price_id": 1, "metric": "m", "charge_model": model, **kw}


# ---------------------------------------------------------------- PER_UNIT (+ included allowance)
PER_UNIT = [
    # (id, charge params, quantities, expected billable, expected precise, expected rounded)
    ("zero usage", {}, [], "0", "0", "0.00"),
    ("simple", {}, ["12.5"], "12.5", "2.5", "2.50"),  # 12.5 x 0.2
    ("two events summed", {}, ["1", "2.25"], "3.25", "0.65", "0.65"),  # 3.25 x 0.2
    ("included below usage", {"included_quantity": "10"}, ["25"], "15", "3", "3.00"),  # (25-10) x 0.2
    ("free units larger than usage", {"included_quantity": "100"}, ["25"], "0", "0", "0.00"),
    ("half away from zero", {"unit_price": "0.005"}, ["1"], "1", "0.005", "0.01"),  # 0.005 -> 0.01, not 0.00
    ("ten-decimal unit price", {"unit_price": "0.3333333333"}, ["3"], "3", "0.9999999999", "1.00"),
]


@pytest.mark.parametrize("name,params,qs,billable,precise,rounded", PER_UNIT, ids=[p[0] for p in PER_UNIT])
def test_per_unit(name, params, qs, billable, precise, rounded):
    line, _ = one_line(price("PER_UNIT", **{"unit_price": "0.2", **params}), [ev(q) for q in qs])
    assert line["billable_quantity"] == D(billable)
    assert line["amount_precise"] == D(precise)
    assert line["amount"] == D(rounded)
    assert line["event_count"] == len(qs)


def test_per_unit_zero_decimal_currency():
    # JPY has no minor unit: 1 x 0.5 = 0.5 -> 1 (half away from zero)
    line, _ = one_line(price("PER_UNIT", unit_price="0.5"), [ev(1)],
                       accounts=[{"account_id": 1, "currency": "JPY"}])
    assert line["amount"] == D(1) and line["currency"] == "JPY"


# ---------------------------------------------------------------- GRADUATED / VOLUME
TIERS = [{"up_to": "5", "unit_amount": "1.00", "flat_amount": "2"},
         {"up_to": "10", "unit_amount": "0.50"},
         {"up_to": None, "unit_amount": "0.25"}]

GRADUATED = [
    # quantity, precise, slices [(tier, quantity)]
    ("0", "2", [(1, "0")]),  # first tier's flat at zero usage
    ("5", "7", [(1, "5")]),  # exactly on the edge: 5 x 1 + 2, tier 2 not reached
    ("5.001", "7.0005", [(1, "5"), (2, "0.001")]),  # 7 + 0.001 x 0.5
    ("12", "10", [(1, "5"), (2, "5"), (3, "2")]),  # 5 + 2 + 5 x 0.5 + 2 x 0.25
]


@pytest.mark.parametrize("q,precise,slices", GRADUATED, ids=[g[0] for g in GRADUATED])
def test_graduated(q, precise, slices):
    line, _ = one_line(price("GRADUATED", tiers=TIERS), [ev(q)] if q != "0" else [])
    assert line["amount_precise"] == D(precise)
    got = [(s["tier"], D(s["quantity"])) for s in json.loads(line["tier_slices"])]
    assert got == [(t, D(x)) for t, x in slices]
    assert sum(D(s["amount"]) for s in json.loads(line["tier_slices"])) == D(precise)


VOLUME = [
    ("0", "2", 1),  # tier 1 at zero usage: 0 x 1 + 2
    ("5", "7", 1),  # on the edge: still tier 1, 5 x 1 + 2
    ("5.001", "2.5005", 2),  # just above: every unit at tier 2, 5.001 x 0.5
    ("12", "3", 3),  # 12 x 0.25
]


@pytest.mark.parametrize("q,precise,tier", VOLUME, ids=[v[0] for v in VOLUME])
def test_volume(q, precise, tier):
    line, _ = one_line(price("VOLUME", tiers=TIERS), [ev(q)] if q != "0" else [])
    assert line["amount_precise"] == D(precise)
    slices = json.loads(line["tier_slices"])
    assert [s["tier"] for s in slices] == [tier]


def test_volume_rounding_half_away():
    # 5.001 x 0.5 = 2.5005 -> 2.50 ; 5.01 x 0.5 = 2.505 -> 2.51
    line, _ = one_line(price("VOLUME", tiers=TIERS), [ev("5.01")])
    assert line["amount_precise"] == D("2.505") and line["amount"] == D("2.51")


def test_graduated_with_included_allowance():
    # usage 17, included 5 -> billable 12 -> 10 (see GRADUATED "12")
    line, _ = one_line(price("GRADUATED", tiers=TIERS, included_quantity="5"), [ev(17)])
    assert line["included_quantity"] == D(5) and line["billable_quantity"] == D(12)
    assert line["amount_precise"] == D(10)


# ---------------------------------------------------------------- PACKAGE
PACKAGE = [
    ("0", "0"),
    ("50", "0"),  # all within the 50 free units
    ("51", "5"),  # ceil(1 / 100) = 1 package x 5
    ("250", "10"),  # ceil(200 / 100) = 2
    ("250.5", "15"),  # ceil(200.5 / 100) = 3
]


@pytest.mark.parametrize("q,precise", PACKAGE, ids=[p[0] for p in PACKAGE])
def test_package(q, precise):
    line, _ = one_line(price("PACKAGE", unit_price="5", properties={"package_size": "100", "free_units": "50"}),
                       [ev(q)] if q != "0" else [])
    assert line["amount_precise"] == D(precise)
    assert line["included_quantity"] == D(50)


def test_package_free_units_larger_than_usage():
    line, _ = one_line(price("PACKAGE", unit_price="5", properties={"package_size": "10", "free_units": "1000"}),
                       [ev(30)])
    assert line["billable_quantity"] == 0 and line["amount_precise"] == 0


# ---------------------------------------------------------------- PERCENTAGE
PCT = {"rate": "0.02", "fixed_fee": "0.10", "per_event_min": "0.50", "per_event_max": "5"}
THREE = [ev(10, "2025-03-02 00:00:00"), ev(100, "2025-03-03 00:00:00"), ev(1000, "2025-03-04 00:00:00")]
PERCENTAGE = [
    ("zero usage", PCT, [], "0"),
    # per event: 10 x 2% = 0.2 -> min 0.5 ; 100 x 2% = 2 ; 1000 x 2% = 20 -> max 5 ; + 3 x 0.10
    ("per-event min and max", PCT, THREE, "7.8"),
    # first event free (no rate, no fee): 2 + 5 + 2 x 0.10
    ("free events", {**PCT, "free_events": 1}, THREE, "7.2"),
    # no min/max: (1110 - 150) x 2% + 3 x 0.10 = 19.2 + 0.3
    ("free units", {"rate": "0.02", "fixed_fee": "0.10", "free_units": "150"}, THREE, "19.5"),
    # free units with min/max, in event order: 10 and 100 fully free (no min), 1000 -> 960 bear the
    # rate: 19.2 -> max 5 ; + 3 x 0.10
    ("free units then per-event max", {**PCT, "free_units": "150"}, THREE, "5.3"),
    # free units larger than usage: only the fixed fees remain
    ("free units larger than usage", {**PCT, "free_units": "5000"}, THREE, "0.3"),
    ("rate only", {"rate": "0.029"}, [ev("33.33")], "0.96657"),  # 33.33 x 2.9 %
    # a minimum alone: 0.2 -> 0.5 ; 2 ; 20 (no maximum) = 22.5
    ("per-event min alone", {"rate": "0.02", "per_event_min": "0.50"}, THREE, "22.5"),
    # a maximum alone: 0.2 ; 2 ; 20 -> 5 = 7.2
    ("per-event max alone", {"rate": "0.02", "per_event_max": "5"}, THREE, "7.2"),
    # a minimum alone, first event free (the ordered path): 2 -> 3 ; 20 = 23
    ("per-event min alone, free events", {"rate": "0.02", "per_event_min": "3", "free_events": 1}, THREE, "23"),
]


@pytest.mark.parametrize("name,props,usage,precise", PERCENTAGE, ids=[p[0] for p in PERCENTAGE])
def test_percentage(name, props, usage, precise):
    line, _ = one_line(price("PERCENTAGE", properties=props), usage)
    assert line["amount_precise"] == D(precise)


def test_percentage_order_independent_of_insertion():
    props = {**PCT, "free_events": 1}
    line, _ = one_line(price("PERCENTAGE", properties=props), list(reversed(THREE)))
    assert line["amount_precise"] == D("7.2")


def test_graduated_percentage():
    # 1500 of payments: first 1000 at 3 % = 30, the next 500 at 1 % = 5, + flat 0.25 of tier 1
    tiers = [{"up_to": "1000", "rate": "0.03", "flat_amount": "0.25"}, {"up_to": None, "rate": "0.01"}]
    line, _ = one_line(price("GRADUATED_PERCENTAGE", tiers=tiers), [ev(700), ev(800)])
    assert line["amount_precise"] == D("35.25")


# ---------------------------------------------------------------- MATRIX
MATRIX_PROPS = {
    "dimensions": ["zone", "time_band"],
    "time_bands": [{"band": "PEAK", "from_hour": 8, "to_hour": 20}, {"band": "OFFPEAK", "from_hour": 20, "to_hour": 8}],
    "prices": [{"zone": "EU", "time_band": "PEAK", "unit_price": "0.10"},
               {"zone": "EU", "time_band": "OFFPEAK", "unit_price": "0.05"},
               {"zone": "US", "time_band": "*", "unit_price": "0.20"}],
}


def test_matrix_zone_by_time_band_with_default():
    usage = [ev(10, "2025-03-05 10:00:00", zone="EU"),   # EU/PEAK 10 x 0.10 = 1.00
             ev(10, "2025-03-05 22:00:00", zone="EU"),   # EU/OFFPEAK
             ev(4, "2025-03-06 07:59:59", zone="EU"),    # EU/OFFPEAK: 14 x 0.05 = 0.70
             ev(3, "2025-03-06 12:00:00", zone="US"),    # US/* 3 x 0.20 = 0.60
             ev(1, "2025-03-06 12:00:00", zone="ASIA")]  # no cell: default 1 x 0.50
    rated, unrated, _ = rate_example(
        [price("MATRIX", properties={**MATRIX_PROPS, "default_unit_price": "0.50"})], usage)
    got = {r["dimensions"]: (r["quantity"], r["amount_precise"]) for r in usage_lines(rated)}
    assert got == {
        '{"zone":"EU","time_band":"PEAK"}': (D(10), D("1")),
        '{"zone":"EU","time_band":"OFFPEAK"}': (D(14), D("0.7")),
        '{"zone":"US","time_band":"PEAK"}': (D(3), D("0.6")),
        '{"zone":"ASIA","time_band":"PEAK"}': (D(1), D("0.5")),
    }
    assert unrated == []


def test_matrix_without_default_and_bad_attributes_go_unrated():
    usage = [ev(10, "2025-03-05 10:00:00", zone="EU"),
             ev(1, "2025-03-06 12:00:00", zone="ASIA"),  # no cell, no default
             ev(2, "2025-03-06 12:00:00")]  # zone missing
    rated, unrated, _ = rate_example([price("MATRIX", properties=MATRIX_PROPS)], usage)
    assert [(r["dimensions"], r["amount_precise"]) for r in usage_lines(rated)] == [('{"zone":"EU","time_band":"PEAK"}', D(1))]
    reasons = sorted((u["event_id"], u["reason"]) for u in unrated)
    assert reasons == [("e000002", 'bad attributes: no matrix price for {"zone":"ASIA","time_band":"PEAK"}'),
                       ("e000003", "bad attributes: missing zone")]


def test_matrix_attribute_dimension():
    props = {"dimensions": ["destination"], "prices": [{"destination": "mobile", "unit_price": "0.07"}],
             "default_unit_price": "0.01"}
    usage = [ev(10, attributes={"destination": "mobile"}), ev(5, attributes={"destination": "fixed"})]
    rated, unrated, _ = rate_example([price("MATRIX", properties=props)], usage)
    assert sorted(r["amount_precise"] for r in usage_lines(rated)) == [D("0.05"), D("0.7")]


# ---------------------------------------------------------------- DYNAMIC
def test_dynamic_price_on_the_event():
    usage = [ev(100, attributes={"unit_price": "0.015"}),  # 1.5
             ev(10, attributes={"unit_price": "0.02"}),    # 0.2
             ev(3, attributes={"other": 1})]               # no price: unrated
    rated, unrated, _ = rate_example([price("DYNAMIC")], usage)
    (line,) = usage_lines(rated)
    assert line["amount_precise"] == D("1.7") and line["quantity"] == D(110) and line["event_count"] == 2
    assert [(u["event_id"], u["reason"]) for u in unrated] == [("e000003", "bad attributes: missing or invalid unit_price")]


# ---------------------------------------------------------------- aggregations
AGGREGATIONS = [
    ("COUNT", {}, [ev(3), ev(7), ev(5)], "3"),
    ("MAX", {}, [ev(3), ev(7), ev(5)], "7"),
    ("UNIQUE_COUNT", {"unique_attribute": "device"},
     [ev(1, attributes={"device": "a"}), ev(1, attributes={"device": "b"}), ev(1, attributes={"device": "a"})], "2"),
    ("LATEST", {}, [ev(3, "2025-03-02 00:00:00"), ev(9, "2025-03-20 00:00:00"), ev(5, "2025-03-10 00:00:00")], "9"),
    # gauge: +10 from Mar 1 (31 days), +20 from Mar 16 (16 days): (310 + 320) / 31 = 20.3225806452
    ("TIME_WEIGHTED_SUM", {}, [ev(10, "2025-03-01 00:00:00"), ev(20, "2025-03-16 00:00:00")], "20.3225806452"),
]


@pytest.mark.parametrize("agg,props,usage,quantity", AGGREGATIONS, ids=[a[0] for a in AGGREGATIONS])
def test_aggregations(agg, props, usage, quantity):
    line, _ = one_line(price("PER_UNIT", unit_price="1", aggregation=agg, properties=props or None), usage)
    assert line["quantity"] == D(quantity)
    assert line["amount_precise"] == D(quantity)


# ---------------------------------------------------------------- commitments
def test_minimum_commitment_true_up():
    # usage 20 x 0.1 = 2 ; minimum 10 -> true-up 8
    rated, _, _ = rate_example([price("PER_UNIT", unit_price="0.1", properties={"minimum_amount": "10"})], [ev(20)])
    by_type = {r["line_type"]: r for r in rated}
    assert by_type["USAGE"]["amount"] == D(2)
    assert by_type["MINIMUM_TRUE_UP"]["amount"] == D(8)
    assert sum(r["amount"] for r in rated) == D(10)


def test_maximum_cap_is_a_negative_discount_line():
    # usage 100 x 0.1 = 10 ; cap 5 -> discount -5
    rated, _, _ = rate_example([price("PER_UNIT", unit_price="0.1", properties={"maximum_amount": "5"})], [ev(100)])
    by_type = {r["line_type"]: r for r in rated}
    assert by_type["MAXIMUM_CAP"]["amount"] == D(-5)
    assert sum(r["amount"] for r in rated) == D(5)


def test_commitment_not_triggered_inside_bounds():
    rated, _, _ = rate_example(
        [price("PER_UNIT", unit_price="0.1", properties={"minimum_amount": "1", "maximum_amount": "5"})], [ev(20)])
    assert [r["line_type"] for r in rated] == ["USAGE"]


def test_minimum_commitment_with_zero_usage():
    rated, _, _ = rate_example([price("PER_UNIT", unit_price="0.1", properties={"minimum_amount": "10"})], [])
    assert {r["line_type"]: r["amount"] for r in rated} == {"USAGE": 0, "MINIMUM_TRUE_UP": D(10)}


def test_flat_is_not_a_usage_model():
    # FLAT USAGE charges are a catalog error: their events are unrated with the reason.
    rated, unrated, _ = rate_example([price("FLAT", unit_price="10")], [ev(1)])
    assert rated == []
    assert unrated[0]["reason"] == "charge misconfigured: FLAT is a RECURRING charge model (billed by invoicing)"


def test_recurring_charges_are_not_rated():
    charges = [{"price_id": 9, "charge_type": "RECURRING", "charge_model": "FLAT", "unit_price": "30", "metric": None},
               price("PER_UNIT", unit_price="1")]
    rated, _, _ = rate_example(charges, [ev(2)])
    assert [(r["price_id"], r["amount"]) for r in rated] == [(1, D(2))]
