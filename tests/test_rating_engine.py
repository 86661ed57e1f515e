"""Engine behaviour: periods and partitions, plan and price changes, proration, lineage, unrated
reasons, the unrated share. Expectations computed by hand in the comments."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import duckdb

from domain import install_macros
from pipelines.rating import RATED_COLUMNS, UNRATED_COLUMNS, rate_usage, unrated_share
from pipelines.rating.inputs import create_inputs
from tests.rating_examples import rate_example
from warehouse.ddl import create_tables
from warehouse.tables import TABLES

MARCH = dt.date(2025, 3, 1)


def ev(q, t="2025-03-05 10:00:00", metric="m", sub=10, **kw):
    return {"subscription_id": sub, "metric": metric, "quantity": str(q), "event_time": t, **kw}


def per_unit(price_id=1, plan_id=100, **kw):
    return {"price_id": price_id, "plan_id": plan_id, "metric": "m", "charge_model": "PER_UNIT", "unit_price": "1",
            "charge_code": "m", **kw}


def test_columns_match_the_contract():
    rated, unrated, con = rate_example([per_unit()], [ev(1), ev(1, sub=99)])
    assert tuple(rated[0]) == RATED_COLUMNS
    assert tuple(unrated[0]) == UNRATED_COLUMNS
    create_tables(con, ["billing.rated_usage", "billing.unrated_usage"])
    assert tuple(c for c, *_ in con.execute("DESCRIBE billing.rated_usage").fetchall()) == RATED_COLUMNS
    assert tuple(c for c, *_ in con.execute("DESCRIBE billing.unrated_usage").fetchall()) == UNRATED_COLUMNS
    # every column is commented
    missing = con.execute("""SELECT table_name, column_name FROM duckdb_columns()
                             WHERE schema_name = 'billing' AND (comment IS NULL OR comment = '')""").fetchall()
    assert missing == []


def test_inputs_are_the_contract_tables():
    con = install_macros(duckdb.connect())
    names = create_inputs(con, "example", accounts=[{"account_id": 1}], charges=[{"price_id": 1, "unit_price": "0.1"}],
                          subscriptions=[{"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-01-01"}],
                          usage=[{"subscription_id": 10, "quantity": "0.3333333333", "event_time": "2025-03-05 10:00:00"}])
    contract = {"accounts": "core.billing_accounts", "subscriptions": "core.subscription_versions",
                "charges": "core.plan_charges", "usage": "core.usage_events"}
    for arg, table in contract.items():
        described = [(c, t) for c, t, *_ in con.execute(f"DESCRIBE {names[arg]}").fetchall()]
        assert described == [(c.name, c.sql_type) for c in TABLES[table].columns], table
    # decimals exact, defaults filled in, events numbered
    assert con.execute(f"SELECT event_id, quantity, unit FROM {names['usage']}").fetchall() == [("e000001", D("0.3333333333"), "EVENT")]
    assert con.execute(f"SELECT currency, bill_cycle_day FROM {names['accounts']}").fetchall() == [("USD", 1)]
    assert con.execute(f"SELECT valid_to, change_kind FROM {names['subscriptions']}").fetchall() == [(dt.date(9999, 12, 31), "ACTIVATE")]


def test_lineage_of_a_line():
    rated, _, _ = rate_example([per_unit()], [ev(2, "2025-03-03 01:00:00"), ev(3, "2025-03-09 02:00:00")])
    (line,) = rated
    assert (line["account_id"], line["subscription_id"], line["plan_id"], line["price_id"], line["charge_code"]) == (1, 10, 100, 1, "m")
    assert (line["period_start"], line["period_end"]) == (dt.date(2025, 3, 1), dt.date(2025, 4, 1))
    assert (line["service_start"], line["service_end"]) == (dt.date(2025, 3, 1), dt.date(2025, 4, 1))
    assert line["proration_factor"] == 1 and line["event_count"] == 2
    assert line["first_event_at"] == dt.datetime(2025, 3, 3, 1) and line["last_event_at"] == dt.datetime(2025, 3, 9, 2)
    assert line["billing_month"] == MARCH and len(line["rated_line_id"]) == 32


def test_bill_cycle_day_period_and_partitioning():
    # bcd 15: the period billed in March is [Feb 15, Mar 15); a quarterly bcd-15 account (ends Jan/Apr/Jul/Oct 15) bills nothing in March.
    accounts = [{"account_id": 1, "currency": "USD", "bill_cycle_day": 15},
                {"account_id": 2, "currency": "USD", "bill_cycle_day": 15, "billing_cycle": "QUARTERLY"}]
    subs = [{"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-01-01"},
            {"subscription_id": 20, "account_id": 2, "plan_id": 100, "valid_from": "2025-01-01"}]
    usage = [ev(1, "2025-02-14 23:59:59"), ev(2, "2025-02-15 00:00:00"), ev(4, "2025-03-14 23:59:59"),
             ev(8, "2025-03-15 00:00:00"), ev(16, "2025-03-05 00:00:00", sub=20)]
    rated, unrated, _ = rate_example([per_unit()], usage, accounts=accounts, subscriptions=subs)
    assert [(r["subscription_id"], r["period_start"], r["period_end"], r["quantity"]) for r in rated] == [
        (10, dt.date(2025, 2, 15), dt.date(2025, 3, 15), D(6))]
    assert unrated == []  # other periods' usage is neither rated nor unrated here


def test_mid_period_plan_change_splits_and_prorates_the_allowance():
    # Plan 100 until Mar 11, plan 200 from Mar 11: segments of 10 and 21 days of 31.
    subs = [{"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-01-01", "valid_to": "2025-03-11"},
            {"subscription_id": 10, "account_id": 1, "plan_id": 200, "valid_from": "2025-03-11"}]
    charges = [per_unit(1, 100, unit_price="0.10", included_quantity="310", properties={"minimum_amount": "62"}),
               per_unit(2, 200, unit_price="0.05", included_quantity="620")]
    usage = [ev(150, "2025-03-02 00:00:00"), ev(50, "2025-03-10 23:59:59"), ev(1000, "2025-03-11 00:00:00")]
    rated, _, _ = rate_example(charges, usage, subscriptions=subs)
    assert [(r["price_id"], r["line_type"]) for r in rated] == [(1, "MINIMUM_TRUE_UP"), (1, "USAGE"), (2, "USAGE")]
    true_up, u1, u2 = rated
    # segment 1: factor 10/31 ; allowance 310 x 10/31 = 100 ; billable 200 - 100 = 100 ; 100 x 0.10 = 10
    assert (u1["service_start"], u1["service_end"]) == (dt.date(2025, 3, 1), dt.date(2025, 3, 11))
    assert u1["proration_factor"] == D("0.3225806452")
    assert (u1["quantity"], u1["included_quantity"], u1["billable_quantity"], u1["amount"]) == (D(200), D(100), D(100), D(10))
    # minimum 62 x 10/31 = 20 ; usage amount 10 -> true-up 10
    assert (true_up["unit_price"], true_up["quantity"], true_up["amount"]) == (D(20), D(10), D(10))
    # segment 2: 21 days ; allowance 620 x 21/31 = 420 ; billable 1000 - 420 = 580 x 0.05 = 29
    assert (u2["service_start"], u2["service_end"], u2["plan_id"]) == (dt.date(2025, 3, 11), dt.date(2025, 4, 1), 200)
    assert (u2["included_quantity"], u2["billable_quantity"], u2["amount"]) == (D(420), D(580), D(29))
    assert u2["proration_factor"] == D("0.6774193548")


def test_version_gap_same_plan_versions_and_a_metric_priced_twice():
    # Versions: plan 100 Jan 1 - Mar 5, plan 100 again Mar 5 - Mar 10 (a quantity change: one island),
    # nothing Mar 10 - Mar 20, plan 100 from Mar 20. Plan 100 prices metric m twice (a usage fee and a
    # network fee), so each rated event counts in both charges.
    subs = [{"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-01-01", "valid_to": "2025-03-05"},
            {"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-03-05", "valid_to": "2025-03-10",
             "quantity": 2},
            {"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-03-20"}]
    charges = [per_unit(1, unit_price="1", charge_code="usage"), per_unit(2, unit_price="0.1", charge_code="network")]
    usage = [ev(1, "2025-03-02 00:00:00"), ev(2, "2025-03-07 00:00:00"),   # island 1 (Mar 1 - Mar 10)
             ev(4, "2025-03-15 00:00:00"),                                   # the gap: unrated
             ev(8, "2025-03-25 00:00:00")]                                   # island 2 (Mar 20 - Apr 1)
    rated, unrated, _ = rate_example(charges, usage, subscriptions=subs)
    got = [(r["charge_code"], r["service_start"].day, r["service_end"].day, r["quantity"], r["amount"]) for r in rated]
    assert sorted(got) == [("network", 1, 10, D(3), D("0.30")), ("network", 20, 1, D(8), D("0.80")),
                           ("usage", 1, 10, D(3), D(3)), ("usage", 20, 1, D(8), D(8))]
    assert [(u["event_id"], u["reason"]) for u in unrated] == [("e000003", "no active subscription at event time")]


def test_prorated_minimum_commitment_true_up():
    subs = [{"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-03-11"}]
    # active Mar 11..Apr 1 = 21 of 31 days ; minimum 31 -> 21 ; usage 5 x 1 = 5 -> true-up 16
    rated, _, _ = rate_example([per_unit(properties={"minimum_amount": "31"})], [ev(5, "2025-03-20 00:00:00")],
                               subscriptions=subs)
    assert [(r["line_type"], r["amount"]) for r in rated] == [("MINIMUM_TRUE_UP", D(16)), ("USAGE", D(5))]


def test_fixed_proration_days_and_prorate_off():
    subs = [{"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-03-17"}]  # 15 days
    charges = [per_unit(1, included_quantity="30", proration_days=30, charge_code="a"),  # 30 x 15/30 = 15
               per_unit(2, included_quantity="30", prorate=False, charge_code="b")]  # no proration: 30
    rated, _, _ = rate_example(charges, [ev(40, "2025-03-20 00:00:00")], subscriptions=subs)
    got = {r["charge_code"]: (r["proration_factor"], r["included_quantity"], r["amount"]) for r in rated}
    assert got == {"a": (D("0.5"), D(15), D(25)), "b": (D(1), D(30), D(10))}


def test_price_change_mid_period_uses_the_price_in_force_at_event_time():
    charges = [per_unit(1, unit_price="1", effective_to="2025-03-10 12:00:00"),
               per_unit(2, unit_price="2", effective_from="2025-03-10 12:00:00")]
    usage = [ev(1, "2025-03-10 11:59:59"), ev(1, "2025-03-10 12:00:00"), ev(1, "2025-03-30 00:00:00")]
    rated, _, _ = rate_example(charges, usage)
    assert [(r["price_id"], r["quantity"], r["amount"], r["segment_start"]) for r in rated] == [
        (1, D(1), D(1), dt.datetime(2025, 3, 1)), (2, D(2), D(4), dt.datetime(2025, 3, 10, 12))]


def test_time_weighted_sum_carries_the_gauge_across_a_plan_change():
    subs = [{"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-01-01", "valid_to": "2025-03-16"},
            {"subscription_id": 10, "account_id": 1, "plan_id": 200, "valid_from": "2025-03-16"}]
    charges = [per_unit(1, 100, aggregation="TIME_WEIGHTED_SUM"), per_unit(2, 200, aggregation="TIME_WEIGHTED_SUM")]
    usage = [ev(10, "2025-03-01 00:00:00"), ev(20, "2025-03-16 00:00:00")]
    rated, _, _ = rate_example(charges, usage, subscriptions=subs)
    # segment 1: 10 x 15 days / 31 ; segment 2: (10 carried + 20) x 16 days / 31
    assert [r["quantity"] for r in rated] == [D("4.8387096774"), D("15.4838709677")]


def test_unrated_reasons():
    accounts = [{"account_id": 1, "currency": "USD"}]
    subs = [{"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-03-10"},
            {"subscription_id": 30, "account_id": 3, "plan_id": 100, "valid_from": "2025-01-01"}]  # account 3 unknown
    charges = [per_unit(1), per_unit(2, metric="late_metric", charge_code="x", effective_from="2025-03-20 00:00:00"),
               per_unit(3, plan_id=999, metric="other_plan_metric", charge_code="y")]
    usage = [ev(1, "2025-03-05 00:00:00"),                      # before the subscription starts
             ev(1, "2025-03-12 00:00:00", sub=77),              # unknown subscription
             ev(1, "2025-03-12 00:00:00", metric="nope"),       # unknown metric
             ev(1, "2025-03-12 00:00:00", metric="other_plan_metric"),  # not priced by plan 100
             ev(1, "2025-03-12 00:00:00", metric="late_metric"),        # its price starts Mar 20
             ev(1, "2025-03-12 00:00:00", sub=30),              # account unknown
             {**ev(0, "2025-03-12 00:00:00"), "quantity": None},  # missing quantity
             ev(5, "2025-03-12 00:00:00"),                      # rated
             ev(5, "2025-03-13 00:00:00", is_deleted=True),     # deleted: ignored
             ev(1, "2025-04-12 00:00:00", sub=77)]              # unknown subscription, April: not this month
    rated, unrated, _ = rate_example(charges, usage, accounts=accounts, subscriptions=subs)
    assert sorted((u["event_id"], u["reason"]) for u in unrated) == [
        ("e000001", "no active subscription at event time"),
        ("e000002", "unknown subscription"),
        ("e000003", "unknown metric"),
        ("e000004", "metric not priced by plan"),
        ("e000005", "no price in effect at event time"),
        ("e000006", "unknown billing account"),
        ("e000007", "missing quantity"),
    ]
    assert [(r["price_id"], r["quantity"]) for r in rated if r["event_count"]] == [(1, D(5))]


def test_sharded_scan_gives_the_same_lines(monkeypatch):
    """Large months scan usage in subscription shards; forcing one shard per slot must not change
    a single line or unrated row (ids included)."""
    import pipelines.rating.scan as scan

    accounts = [{"account_id": 1, "currency": "USD"}, {"account_id": 2, "currency": "EUR", "bill_cycle_day": 15}]
    subs = [{"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-01-01", "valid_to": "2025-03-16"},
            {"subscription_id": 10, "account_id": 1, "plan_id": 200, "valid_from": "2025-03-16"},
            {"subscription_id": 11, "account_id": 2, "plan_id": 100, "valid_from": "2025-03-03"},
            {"subscription_id": 12, "account_id": 3, "plan_id": 100, "valid_from": "2025-01-01"}]  # account 3 unknown
    voice = {"price_id": 3, "metric": "voice", "charge_code": "voice", "charge_model": "MATRIX",
             "properties": {"dimensions": ["zone"], "default_unit_price": "0.5", "prices": [{"zone": "EU", "unit_price": "0.1"}]}}
    charges = [per_unit(1), per_unit(2, plan_id=200, unit_price="2"), voice, {**voice, "price_id": 4, "plan_id": 200}]
    usage = [ev(q, f"2025-03-{d:02d} 10:00:00", sub=s, metric=m, zone=z)
             for q, d, s, m, z in [(1, 5, 10, "m", None), (2, 20, 10, "m", None), (3, 5, 10, "voice", "EU"),
                                   (4, 20, 10, "voice", "US"), (5, 4, 11, "m", None), (6, 14, 11, "voice", "EU"),
                                   (7, 16, 11, "m", None), (8, 2, 11, "m", None), (9, 5, 12, "m", None),
                                   (1, 5, 77, "m", None), (1, 5, 10, "nope", None)]]
    whole = rate_example(charges, usage, accounts=accounts, subscriptions=subs)[:2]
    monkeypatch.setattr(scan, "SLOTS_PER_SHARD", 1)
    sharded = rate_example(charges, usage, accounts=accounts, subscriptions=subs)[:2]
    assert sharded == whole
    rated, unrated = whole
    # sub 11 bills Feb 15 - Mar 15: its Mar 16 event belongs to April, its Mar 2 event precedes it (unrated);
    # unrated also: sub 12 (unknown account), sub 77 (unknown), metric "nope"
    assert sum(r["event_count"] for r in rated) == 6
    assert sorted(u["reason"] for u in unrated) == ["no active subscription at event time", "unknown billing account",
                                                    "unknown metric", "unknown subscription"]


def _con_with(charges, usage, **kw):
    con = install_macros(duckdb.connect())
    names = create_inputs(con, "core", accounts=kw.get("accounts", [{"account_id": 1, "currency": "USD"}]),
                          subscriptions=kw.get("subscriptions", [{"subscription_id": 10, "account_id": 1, "plan_id": 100,
                                                                  "valid_from": "2025-01-01"}]),
                          charges=charges, usage=usage)
    create_tables(con, ["billing.rated_usage", "billing.unrated_usage"])
    return con, names


def test_unrated_share_and_limit():
    con, names = _con_with([per_unit()], [ev(1), ev(1), ev(1), ev(1, sub=5)])
    r = rate_usage(con, MARCH, **names, unrated_share_limit=0.2)
    assert r.unrated_share == D(1) / D(4) and not r.within_limit
    con.execute(f"INSERT INTO billing.rated_usage BY NAME SELECT * FROM {r.tag}_rated")
    con.execute(f"INSERT INTO billing.unrated_usage BY NAME SELECT * FROM {r.tag}_unrated")
    assert unrated_share(con, MARCH) == D("0.25")
    assert rate_usage(con, MARCH, **names, unrated_share_limit="0.25").within_limit


def test_same_inputs_same_lines_and_ids():
    charges = [per_unit(), {"price_id": 2, "plan_id": 100, "metric": "v", "charge_code": "v", "charge_model": "GRADUATED",
                            "tiers": [{"up_to": "3", "unit_amount": "1"}, {"up_to": None, "unit_amount": "0.5"}]}]
    usage = [ev(1), ev(2, metric="v"), ev(7, "2025-03-20 00:00:00", metric="v")]
    a, _, _ = rate_example(charges, usage)
    b, _, _ = rate_example(charges, list(reversed(usage)))
    assert a == b
