"""Property tests (hypothesis) of the rating engine.

Each example rates many quantities in one engine call (one subscription per quantity), so the
properties are checked over whole families of quantities at modest example counts.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.rating_examples import rate_example

SETTINGS = settings(max_examples=30, deadline=None)

money = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False)
qty = st.decimals(min_value=0, max_value=10_000, places=3, allow_nan=False, allow_infinity=False)


@st.composite
def tier_lists(draw):
    n = draw(st.integers(min_value=1, max_value=5))
    edges = sorted(draw(st.sets(st.decimals(min_value=1, max_value=5000, places=2, allow_nan=False), min_size=n - 1,
                                max_size=n - 1)))
    tiers = [{"up_to": str(e), "unit_amount": str(draw(money)), "flat_amount": str(draw(money))} for e in edges]
    tiers.append({"up_to": None, "unit_amount": str(draw(money)), "flat_amount": str(draw(money))})
    return tiers


def _rate_quantities(model, tiers, quantities):
    """Rate each quantity on its own subscription; returns the USAGE lines in input order."""
    subs = [{"subscription_id": i + 1, "account_id": 1, "plan_id": 100, "valid_from": "2025-01-01"}
            for i in range(len(quantities))]
    usage = [{"subscription_id": i + 1, "metric": "m", "quantity": str(q), "event_time": "2025-03-10 00:00:00"}
             for i, q in enumerate(quantities) if q > 0]
    rated, unrated, _ = rate_example([{"price_id": 1, "metric": "m", "charge_model": model, "tiers": tiers}], usage,
                                     subscriptions=subs)
    assert unrated == []
    by_sub = {r["subscription_id"]: r for r in rated if r["line_type"] == "USAGE"}
    return [by_sub[i + 1] for i in range(len(quantities))]


@SETTINGS
@given(tiers=tier_lists(), quantities=st.lists(qty, min_size=2, max_size=12))
def test_graduated_never_decreases_and_slices_add_up(tiers, quantities):
    quantities = sorted(quantities)
    lines = _rate_quantities("GRADUATED", tiers, quantities)
    amounts = [line["amount_precise"] for line in lines]
    assert amounts == sorted(amounts), "a graduated charge never decreases as quantity grows"
    for q, line in zip(quantities, lines):
        slices = json.loads(line["tier_slices"])
        assert sum(D(s["quantity"]) for s in slices) == q, "tier slices add up to the quantity"
        assert [s["tier"] for s in slices] == list(range(1, len(slices) + 1)), "tiers reached in order"


@SETTINGS
@given(tiers=tier_lists(), quantities=st.lists(qty, min_size=1, max_size=12))
def test_volume_uses_exactly_one_tier(tiers, quantities):
    lines = _rate_quantities("VOLUME", tiers, quantities)
    for q, line in zip(quantities, lines):
        (s,) = json.loads(line["tier_slices"])
        lower = D(tiers[s["tier"] - 2]["up_to"]) if s["tier"] > 1 else D(0)
        upper = tiers[s["tier"] - 1]["up_to"]
        assert (q > lower or s["tier"] == 1) and (upper is None or q <= D(upper)), "the tier the total falls in"
        t = tiers[s["tier"] - 1]
        assert line["amount_precise"] == q * D(t["unit_amount"]) + D(t["flat_amount"])


events = st.lists(
    st.tuples(st.integers(min_value=1, max_value=3),  # subscription
              st.sampled_from(["m", "v", "x"]),  # metric (x is priced by no plan)
              st.decimals(min_value=0, max_value=500, places=2, allow_nan=False),
              st.integers(min_value=0, max_value=40 * 24 - 1)),  # hour from Feb 20
    min_size=1, max_size=40)


@SETTINGS
@given(evs=events, seed=st.integers(min_value=0, max_value=10_000))
def test_same_usage_in_any_order_gives_the_same_lines(evs, seed):
    import datetime as dt

    base = dt.datetime(2025, 2, 20)
    usage = [{"event_id": f"e{i}", "subscription_id": s, "metric": m, "quantity": str(q),
              "event_time": str(base + dt.timedelta(hours=h))} for i, (s, m, q, h) in enumerate(evs)]
    subs = [{"subscription_id": 1, "account_id": 1, "plan_id": 100, "valid_from": "2025-01-01", "valid_to": "2025-03-12"},
            {"subscription_id": 1, "account_id": 1, "plan_id": 200, "valid_from": "2025-03-12"},
            {"subscription_id": 2, "account_id": 1, "plan_id": 100, "valid_from": "2025-03-05"}]  # 3 is unknown
    tiers = [{"up_to": "100", "unit_amount": "0.1", "flat_amount": "1"}, {"up_to": None, "unit_amount": "0.05"}]
    charges = [{"price_id": 1, "plan_id": 100, "metric": "m", "charge_model": "GRADUATED", "tiers": tiers,
                "included_quantity": "50", "properties": {"minimum_amount": "3"}},
               {"price_id": 2, "plan_id": 100, "metric": "v", "charge_model": "PERCENTAGE",
                "properties": {"rate": "0.03", "fixed_fee": "0.1", "per_event_min": "0.2", "free_events": 2}},
               {"price_id": 3, "plan_id": 200, "metric": "m", "charge_model": "VOLUME", "tiers": tiers}]
    shuffled = list(usage)
    random.Random(seed).shuffle(shuffled)
    a = rate_example(charges, usage, subscriptions=subs)
    b = rate_example(charges, shuffled, subscriptions=subs)
    c = rate_example(charges, usage, subscriptions=subs)
    assert a[0] == b[0] == c[0], "rated lines (ids included) do not depend on row order or repetition"
    assert a[1] == b[1] == c[1]
    # nothing is dropped: every March event is rated or unrated
    march = [u for u in usage if u["event_time"] >= "2025-03-01"]
    rated_events = sum(r["event_count"] for r in a[0])
    assert rated_events + len(a[1]) == len(march)
