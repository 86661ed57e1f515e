"""Each step of the rating engine alone: given rows in its input tables, the step, expected rows.

Steps read and write temp tables ``{TAG}_<name>`` (pipelines/rating/engine.py lists them); a
test creates only the columns the step reads. Billing month March 2025: a calendar account's
period is [Mar 1, Apr 1), 31 days. Arithmetic in the comments.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import duckdb
import pytest

from domain import install_macros
from pipelines.rating.catalog import (
    build_accounts,
    build_catalog,
    build_islands,
    build_slots,
    build_subscriptions,
)
from pipelines.rating.engine import build_rated, drop_out_of_range, split_aggregates
from pipelines.rating.inputs import create_inputs
from pipelines.rating.limits import rounded_line_amount
from pipelines.rating.pricers import install_rating_macros
from pipelines.rating.scan import (
    IN_PLAN,
    MISSING_QUANTITY,
    NO_PLAN,
    OTHER_MONTH,
    Features,
    build_lookup,
    build_scan,
    build_timeline,
    scan_window,
    usage_source,
)
from tests.rating_examples import DEFAULT_ACCOUNTS, DEFAULT_SUBSCRIPTIONS

TAG = "t"
MARCH = dt.date(2025, 3, 1)
BM = "DATE '2025-03-01'"
OPEN = dt.date(9999, 12, 31)


def d(day: str) -> dt.date:
    return dt.date.fromisoformat(day)


def ts(t: str) -> dt.datetime:
    return dt.datetime.fromisoformat(t)


@pytest.fixture
def con():
    con = install_macros(duckdb.connect())
    install_rating_macros(con)
    return con


def given(con, name: str, columns: dict[str, str], rows: list[tuple]) -> None:
    """Temp table ``name`` with ``columns`` ({name: SQL type}) holding ``rows`` (cast by the column types)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} ({', '.join(f'{c} {t}' for c, t in columns.items())})")
    if rows:
        casts = ", ".join(f"CAST(? AS {t})" for t in columns.values())
        con.executemany(f"INSERT INTO {name} VALUES ({casts})", [[None if v is None else str(v) for v in r] for r in rows])


def rows(con, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


# ---------------------------------------------------------------- catalog
def test_accounts_and_the_period_each_bills_in_the_month(con):
    given(con, "accounts", {"account_id": "BIGINT", "currency": "VARCHAR", "bill_cycle_day": "INTEGER", "billing_cycle": "VARCHAR"},
          [(1, "usd", 1, "monthly"), (2, "EUR", 15, "MONTHLY"), (3, "USD", 15, "QUARTERLY"), (4, "USD", 31, "MONTHLY")])
    build_accounts(con, TAG, BM, "accounts")
    assert rows(con, f"SELECT account_id, currency, period_start, period_end FROM {TAG}_accounts ORDER BY 1") == [
        (1, "USD", d("2025-03-01"), d("2025-04-01")),  # calendar month
        (2, "EUR", d("2025-02-15"), d("2025-03-15")),  # bill cycle day 15: the period ending in March
        (3, "USD", None, None),                        # quarterly periods end Jan/Apr/Jul/Oct 15: none in March
        (4, "USD", d("2025-02-28"), d("2025-03-31")),  # day 31 clamped to February's last day
    ]


def test_versions_on_the_same_plan_merge_into_islands(con):
    given(con, "versions", {"subscription_id": "BIGINT", "plan_id": "BIGINT", "valid_from": "DATE", "valid_to": "DATE"}, [
        (10, 100, "2025-01-01", "2025-03-05"), (10, 100, "2025-03-05", "2025-03-10"),  # a quantity change: one island
        (10, 200, "2025-03-10", None),                                                 # open end
        (20, 100, "2025-01-01", "2025-02-01"), (20, 100, "2025-03-01", None),          # a gap: two islands
        (20, 100, "2025-02-10", "2025-02-10"),                                         # zero length: dropped
    ])
    build_islands(con, TAG, "versions")
    assert rows(con, f"SELECT * FROM {TAG}_islands ORDER BY ALL") == [
        (10, 100, d("2025-01-01"), d("2025-03-10")), (10, 200, d("2025-03-10"), OPEN),
        (20, 100, d("2025-01-01"), d("2025-02-01")), (20, 100, d("2025-03-01"), OPEN)]


def test_subscriptions_take_the_latest_account_and_its_window(con):
    given(con, f"{TAG}_accounts", {"account_id": "BIGINT", "currency": "VARCHAR", "period_start": "DATE", "period_end": "DATE"},
          [(1, "USD", "2025-02-15", "2025-03-15")])
    given(con, "versions", {"subscription_id": "BIGINT", "account_id": "BIGINT", "valid_from": "DATE"},
          [(10, 1, "2025-01-01"), (30, 1, "2025-01-01"), (30, 3, "2025-02-01")])  # 30 moved to account 3, unknown
    build_subscriptions(con, TAG, BM, "versions")
    assert rows(con, f"SELECT subscription_id, account_id, problem, window_start, window_end FROM {TAG}_subscriptions ORDER BY 1") == [
        (10, 1, None, ts("2025-02-15"), ts("2025-03-15")),  # the account's period
        (30, 3, "unknown billing account", ts("2025-03-01"), ts("2025-04-01")),  # the calendar month, unrated
    ]


def test_prices_parse_parameters_once_and_name_the_first_problem(con):
    bands = [{"band": "PEAK", "from_hour": 8, "to_hour": 20}, {"band": "OFFPEAK", "from_hour": 20, "to_hour": 8}]
    charges = [
        {"price_id": 1, "plan_id": 100, "metric": "m", "charge_model": "graduated",
         "tiers": [{"up_to": "10", "unit_amount": "1"}, {"up_to": None, "unit_amount": "0.5", "flat_amount": "2"}]},
        {"price_id": 2, "plan_id": 100, "metric": "v", "charge_model": "MATRIX",
         "properties": {"dimensions": ["zone", "time_band"], "time_bands": bands, "prices": []}},
        {"price_id": 3, "plan_id": 100, "metric": "x", "charge_model": "PER_UNIT", "unit_price": "1", "properties": "{oops"},
        {"price_id": 4, "plan_id": 100, "charge_type": "RECURRING", "charge_model": "FLAT", "unit_price": "10"},
    ]
    names = create_inputs(con, "core", accounts=DEFAULT_ACCOUNTS, subscriptions=DEFAULT_SUBSCRIPTIONS, charges=charges)
    build_catalog(con, MARCH, TAG, subscriptions=names["subscriptions"], accounts=names["accounts"], charges=names["charges"])
    # tier k covers (lower, upper]; a missing flat amount is 0
    assert rows(con, f"SELECT price_id, tier, lower, upper, unit_amount, flat_amount, tier_error FROM {TAG}_tiers ORDER BY 1, 2") == [
        (1, 1, D(0), D(10), D(1), D(0), None), (1, 2, D(10), None, D("0.5"), D(2), None)]
    # the recurring charge is not a usage price version; an hour's band index in 4 bits per hour
    peak_offpeak = sum((1 if 8 <= h < 20 else 2) << (4 * h) for h in range(24))
    assert rows(con, f"""SELECT price_id, charge_model, n_tiers, dim1_source, dim2_source, band_mask, config_error
                         FROM {TAG}_prices ORDER BY 1""") == [
        (1, "GRADUATED", 2, None, None, None, None),
        (2, "MATRIX", 0, 1, 2, peak_offpeak, None),  # zone column, time band by hour
        (3, "PER_UNIT", 0, None, None, None, "properties is not valid JSON"),
    ]


PRICE_COLUMNS = {"price_id": "BIGINT", "plan_id": "BIGINT", "metric": "VARCHAR", "effective_from": "TIMESTAMP",
                 "effective_to": "TIMESTAMP", "config_error": "VARCHAR", "prorate": "BOOLEAN", "proration_days": "INTEGER",
                 "charge_model": "VARCHAR", "included_quantity": "DECIMAL(38,10)", "free_units": "DECIMAL(38,10)",
                 "minimum_amount": "DECIMAL(38,10)", "maximum_amount": "DECIMAL(38,10)"}


def test_slots_cut_the_period_by_island_and_price_and_prorate(con):
    given(con, f"{TAG}_subscriptions", {"subscription_id": "BIGINT", "account_id": "BIGINT", "currency": "VARCHAR",
                                        "period_start": "DATE", "period_end": "DATE", "problem": "VARCHAR"},
          [(10, 1, "USD", "2025-03-01", "2025-04-01", None)])
    given(con, f"{TAG}_islands", {"subscription_id": "BIGINT", "plan_id": "BIGINT", "valid_from": "DATE", "valid_to": "DATE"},
          [(10, 100, "2025-03-11", "9999-12-31")])  # started Mar 11: 21 of 31 days
    start, end = "2000-01-01", "9999-12-31"
    given(con, f"{TAG}_prices", PRICE_COLUMNS, [
        (1, 100, "a", start, end, None, True, None, "PER_UNIT", "300", "10", "62", None),  # prorated
        (2, 100, "b", start, end, None, False, None, "PER_UNIT", "30", "0", None, "9"),    # prorate = false: whole
        (3, 100, "c", start, end, None, True, 10, "PER_UNIT", "30", "0", None, None),      # 21 days of a 10-day denominator
        (4, 100, "d", start, end, None, True, None, "MATRIX", "30", "0", None, None),      # no allowance for MATRIX
        (5, 100, "e", start, end, "bad", True, None, "PER_UNIT", "30", "0", None, None),   # misconfigured: not prorated
        (6, 100, "f", start, "2025-03-20", None, True, None, "PER_UNIT", "31", "0", None, None),  # price ends Mar 20
    ])
    build_slots(con, TAG)
    assert rows(con, f"""SELECT metric, segment_start, segment_end, segment_days, proration_factor, allowance,
                                minimum_prorated, maximum_prorated FROM {TAG}_slots ORDER BY metric""") == [
        # 21/31 = 0.6774193548 ; (300 + 10) x 21/31 = 210 ; 62 x 21/31 = 42
        ("a", ts("2025-03-11"), ts("2025-04-01"), 21, D("0.6774193548"), D(210), D(42), None),
        ("b", ts("2025-03-11"), ts("2025-04-01"), 21, D(1), D(30), None, D(9)),
        # never more than the whole: prorate(30, least(21, 10), 10) = 30
        ("c", ts("2025-03-11"), ts("2025-04-01"), 21, D(1), D(30), None, None),
        ("d", ts("2025-03-11"), ts("2025-04-01"), 21, D("0.6774193548"), D(0), None, None),
        ("e", ts("2025-03-11"), ts("2025-04-01"), 21, None, None, None, None),
        # Mar 11 - Mar 20: 9/31 = 0.2903225806 ; 31 x 9/31 = 9
        ("f", ts("2025-03-11"), ts("2025-03-20"), 9, D("0.2903225806"), D(9), None, None),
    ]


# ---------------------------------------------------------------- placement and scan
def test_timeline_tiles_the_scan_window_for_each_subscription(con):
    given(con, f"{TAG}_subscriptions", {"subscription_id": "BIGINT", "window_start": "TIMESTAMP", "window_end": "TIMESTAMP",
                                        "problem": "VARCHAR", "period_start": "DATE"}, [
        (10, "2025-03-01", "2025-04-01", None, "2025-03-01"),                          # billed in March
        (20, "2025-03-01", "2025-04-01", "unknown billing account", None),             # unknown account
        (30, None, None, None, None),                                                  # no period ends in March
    ])
    given(con, f"{TAG}_islands", {"subscription_id": "BIGINT", "plan_id": "BIGINT", "valid_from": "DATE", "valid_to": "DATE"},
          [(10, 100, "2025-03-10", "9999-12-31"), (20, 100, "2025-01-01", "9999-12-31"), (30, 100, "2025-01-01", "9999-12-31")])
    given(con, f"{TAG}_plan_index", {"plan_id": "BIGINT", "plan_index": "INTEGER"}, [(100, 1)])
    build_timeline(con, TAG, ("TIMESTAMP '2025-02-15'", "TIMESTAMP '2025-04-01'"))
    assert rows(con, f"SELECT subscription_id, starts_at, ends_at, kind, plan_index FROM {TAG}_timeline ORDER BY piece_id") == [
        (10, ts("2025-02-15"), ts("2025-03-01"), OTHER_MONTH, None),  # before its period: another month's usage
        (10, ts("2025-03-01"), ts("2025-03-10"), NO_PLAN, None),      # in the period, before the plan: unrated
        (10, ts("2025-03-10"), ts("2025-04-01"), IN_PLAN, 1),
        (20, ts("2025-02-15"), ts("2025-03-01"), OTHER_MONTH, None),
        (20, ts("2025-03-01"), ts("2025-04-01"), NO_PLAN, None),      # unknown account: the calendar month, unrated
        (30, ts("2025-02-15"), ts("2025-04-01"), OTHER_MONTH, None),
    ]


def _catalog(con, charges, usage, subscriptions=DEFAULT_SUBSCRIPTIONS):
    names = create_inputs(con, "core", accounts=DEFAULT_ACCOUNTS, subscriptions=subscriptions, charges=charges, usage=usage)
    build_catalog(con, MARCH, TAG, subscriptions=names["subscriptions"], accounts=names["accounts"], charges=names["charges"])
    return names


def test_scan_aggregates_per_slot_and_keeps_each_unrated_event_apart(con):
    subs = [{"subscription_id": 10, "account_id": 1, "plan_id": 100, "valid_from": "2025-03-10"}]
    charges = [{"price_id": 1, "plan_id": 100, "charge_code": "m", "metric": "m", "charge_model": "PER_UNIT", "unit_price": "1"}]
    ev = lambda q, t: {"subscription_id": 10, "metric": "m", "quantity": q, "event_time": t}  # noqa: E731
    usage = [ev("1.5", "2025-03-12 00:00:00"), ev("2", "2025-03-20 00:00:00"),  # rated: one group
             ev("4", "2025-03-05 00:00:00"),                                   # before the plan: unrated
             ev(None, "2025-03-21 00:00:00"),                                  # missing quantity: unrated
             ev("8", "2025-04-02 00:00:00")]                                   # April: not read
    names = _catalog(con, charges, usage, subs)
    features = Features.of(con, TAG)
    events, window = usage_source(con, names["usage"]), scan_window(con, TAG, BM)
    build_lookup(con, TAG, window)
    build_scan(con, TAG, events, window, features)
    assert rows(con, f"""SELECT slot_id, unrated_event_id, event_count, quantity_sum, first_event_at, unrated_event.problem
                         FROM {TAG}_aggregates ORDER BY ALL NULLS FIRST""") == [
        (None, "e000003", 1, D(4), ts("2025-03-05"), None),                       # no slot: no plan in force
        (1, None, 2, D("3.5"), ts("2025-03-12"), None),                           # 1.5 + 2
        (1, "e000004", 1, None, ts("2025-03-21"), MISSING_QUANTITY),              # placed, but not rateable
    ]


# ---------------------------------------------------------------- pricing
CELL_COLUMNS = {"slot_id": "INTEGER", "dim1_value": "VARCHAR", "dim2_value": "VARCHAR", "dim3_value": "VARCHAR",
                "event_count": "BIGINT", "quantity_sum": "DECIMAL(38,10)", "first_event_at": "TIMESTAMP",
                "last_event_at": "TIMESTAMP", "quantity_max": "DECIMAL(38,10)",
                "latest": "STRUCT(event_time TIMESTAMP, event_id VARCHAR, quantity DECIMAL(38,10))",
                "unique_count": "BIGINT", "time_weight_whole": "DECIMAL(38,0)", "time_weight_fraction": "DECIMAL(38,10)",
                "event_amount_whole": "DECIMAL(38,0)", "event_amount_fraction": "DECIMAL(38,20)",
                "ordered_events": "STRUCT(event_time TIMESTAMP, event_id VARCHAR, quantity DECIMAL(38,10))[]"}


def test_rated_lines_are_priced_from_the_cells_alone(con):
    # no usage at all: the cells are given. Slot 1: per-unit 0.2 with 10 included and a minimum of 10;
    # slot 2: graduated, up to 5 at 1 + flat 2, then 0.5; slot 3 (a cap of 1) has no cell: a zero line
    charges = [
        {"price_id": 1, "charge_code": "a", "metric": "a", "charge_model": "PER_UNIT", "unit_price": "0.2",
         "included_quantity": "10", "properties": {"minimum_amount": "10"}},
        {"price_id": 2, "charge_code": "b", "metric": "b", "charge_model": "GRADUATED",
         "tiers": [{"up_to": "5", "unit_amount": "1", "flat_amount": "2"}, {"up_to": None, "unit_amount": "0.5"}]},
        {"price_id": 3, "charge_code": "c", "metric": "c", "charge_model": "PER_UNIT", "unit_price": "1",
         "properties": {"maximum_amount": "1"}},
    ]
    _catalog(con, [{"plan_id": 100, **c} for c in charges], [])
    given(con, f"{TAG}_cells", CELL_COLUMNS, [
        (1, None, None, None, 3, "25", "2025-03-02", "2025-03-30", None, None, None, None, None, None, None, None),
        (2, None, None, None, 2, "12", "2025-03-03", "2025-03-04", None, None, None, None, None, None, None, None)])
    build_rated(con, TAG, BM, Features.of(con, TAG))
    assert rows(con, f"""SELECT charge_code, line_type, quantity, billable_quantity, unit_price, event_count, amount_precise, amount
                         FROM {TAG}_rated ORDER BY charge_code, line_type""") == [
        # (25 - 10) x 0.2 = 3.00 ; minimum 10 - 3 = 7 (quantity: the usage amount, unit price: the minimum)
        ("a", "MINIMUM_TRUE_UP", D(3), D(1), D(10), 0, D(7), D("7.00")),
        ("a", "USAGE", D(25), D(15), D("0.2"), 3, D(3), D("3.00")),
        # 5 x 1 + 2 + 7 x 0.5 = 10.5
        ("b", "USAGE", D(12), D(12), None, 2, D("10.5"), D("10.50")),
        ("c", "USAGE", D(0), D(0), D(1), 0, D(0), D("0.00")),
    ]


def test_a_slot_with_a_line_out_of_range_loses_all_its_lines(con):
    slot = {"subscription_id": "BIGINT", "price_id": "BIGINT", "segment_start": "TIMESTAMP", "segment_end": "TIMESTAMP"}
    given(con, f"{TAG}_slots", {"slot_id": "INTEGER", **slot},
          [(1, 10, 1, "2025-03-01", "2025-04-01"), (2, 10, 2, "2025-03-01", "2025-04-01"), (3, 10, 3, "2025-03-01", "2025-04-01")])
    given(con, f"{TAG}_rated", {**slot, "line_type": "VARCHAR", "quantity": "DECIMAL(38,10)", "amount": "DECIMAL(18,4)"}, [
        (10, 1, "2025-03-01", "2025-04-01", "USAGE", "5", None),             # amount out of range
        (10, 1, "2025-03-01", "2025-04-01", "MAXIMUM_CAP", "5", "-1"),       # goes with it
        (10, 2, "2025-03-01", "2025-04-01", "USAGE", None, None),            # the quantity does not fit
        (10, 3, "2025-03-01", "2025-04-01", "USAGE", "5", "5")])
    drop_out_of_range(con, TAG)
    assert rows(con, f"SELECT * FROM {TAG}_out_of_range ORDER BY 1") == [(1, "amount out of range"), (2, "quantity out of range")]
    assert rows(con, f"SELECT price_id, line_type FROM {TAG}_rated") == [(3, "USAGE")]


@pytest.mark.parametrize("precise,minor_unit,amount", [
    ("0.005", 2, "0.01"), ("-0.005", 2, "-0.01"),        # half away from zero
    ("2.5", 0, "3"), ("1.2345", 3, "1.235"), ("1.23456", 4, "1.2346"),
    ("999999999999.995", 2, "1000000000000.00"),        # below the line limit before rounding
    ("1000000000000", 2, None), ("-1000000000000", 2, None),  # at the line limit: out of range
])
def test_line_amount_is_round_minor_within_the_line_limit(con, precise, minor_unit, amount):
    (got,) = con.execute(f"SELECT {rounded_line_amount('x', 'mu')} FROM (SELECT CAST(? AS DECIMAL(38,10)) AS x, ? AS mu)",
                         [precise, minor_unit]).fetchone()
    assert got == (None if amount is None else D(amount))


def test_split_aggregates_decodes_time_bands_and_sets_unrated_groups_apart(con):
    given(con, f"{TAG}_slots", {"slot_id": "INTEGER", "price_id": "BIGINT"}, [(1, 7)])
    given(con, f"{TAG}_prices", {"price_id": "BIGINT", "dim1_source": "TINYINT", "dim2_source": "TINYINT",
                                 "dim3_source": "TINYINT", "band_names": "VARCHAR[]"}, [(7, 1, 2, None, None)])
    con.execute(f"UPDATE {TAG}_prices SET band_names = ['PEAK', 'OFFPEAK']")
    given(con, f"{TAG}_aggregates", {"slot_id": "INTEGER", "dim1_key": "VARCHAR", "dim2_key": "VARCHAR", "dim3_key": "VARCHAR",
                                     "unrated_event_id": "VARCHAR", **{c: t for c, t in CELL_COLUMNS.items() if c[:3] != "dim"
                                                                       and c != "slot_id"}},
          [(1, "EU", "2", None, None, 4, "10", None, None, None, None, None, None, None, None, None, None),
           (1, "EU", "0", None, "e9", 1, "1", None, None, None, None, None, None, None, None, None, None)])
    split_aggregates(con, TAG)
    # band index 2 is OFFPEAK (1-based in time_bands)
    assert rows(con, f"SELECT slot_id, dim1_value, dim2_value, dim3_value, event_count FROM {TAG}_cells") == [(1, "EU", "OFFPEAK", None, 4)]
    assert rows(con, f"SELECT unrated_event_id FROM {TAG}_unrated_groups") == [("e9",)]
