"""The steps of the services chain (pipelines/state/subscriptions.py), each alone on given rows.

Unit-test style of jaffle-shop: each test creates the step's input tables with given rows (only
the columns the step reads), runs the step and compares its rows with the expected ones; the
rule that gives each expected value is stated next to it. The whole chain is tested end to end
in tests/test_subscriptions.py.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import duckdb
import pytest

from domain import install_macros
from pipelines.state import subscriptions as subs
from warehouse.fixtures import create_table_with_rows

D = date
OPEN = date(9999, 12, 31)


@pytest.fixture
def con():
    with install_macros(duckdb.connect()) as connection:
        yield connection


def given(con, name: str, columns: str, *rows: tuple) -> str:
    """Table ``name`` with ``columns`` (SQL column definitions) holding ``rows``."""
    con.execute(f"CREATE TABLE {name} ({columns})")
    if rows:
        con.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(rows[0]))})", list(rows))
    return name


def rows(rel: duckdb.DuckDBPyRelation, columns: str, order: str) -> list[tuple]:
    return rel.select(columns).order(order).fetchall()


def test_subscription_items_keeps_confirmed_subscription_items_in_sequence(con):
    orders = create_table_with_rows(con, "core.orders", [
        dict(order_id=1, account_id=1, order_type="NEW_SERVICE", status="CONFIRMED", effective_date=D(2025, 3, 9)),
        dict(order_id=2, account_id=1, order_type="CHANGE", status="CONFIRMED", effective_date=D(2025, 3, 5)),
        dict(order_id=3, account_id=7, order_type="NEW_SERVICE", status="CONFIRMED", effective_date=D(2025, 3, 5)),
        dict(order_id=4, account_id=1, order_type="DISCONNECT", status="CANCELLED", effective_date=D(2025, 3, 6)),
        dict(order_id=5, account_id=1, order_type="DISCONNECT", status="CONFIRMED", effective_date=D(2025, 3, 6),
             is_deleted=True),
    ])
    items = create_table_with_rows(con, "core.order_items", [
        dict(order_item_id=11, order_id=1, product_id=10, plan_id=100, subscription_id=1000, quantity=1),
        dict(order_item_id=12, order_id=1, product_id=20, quantity=1),               # a device: ONE_TIME
        dict(order_item_id=21, order_id=2, product_id=10, plan_id=900, subscription_id=1000, quantity=1),
        dict(order_item_id=31, order_id=3, product_id=99, plan_id=100, subscription_id=1001, quantity=1),
        dict(order_item_id=41, order_id=4, product_id=10, subscription_id=1000),     # order cancelled
        dict(order_item_id=51, order_id=5, product_id=10, subscription_id=1000),     # order deleted
    ])
    products = create_table_with_rows(con, "core.products", [
        dict(product_id=10, product_type="SUBSCRIPTION"), dict(product_id=20, product_type="ONE_TIME")])
    accounts = create_table_with_rows(con, "core.billing_accounts", [
        dict(account_id=1, bill_cycle_day=15, billing_cycle="MONTHLY", currency="GBP")])
    plans = create_table_with_rows(con, "core.price_plans", [dict(plan_id=100, product_id=10, currency="USD")])
    rel = subs.subscription_items(con, orders, items, products, accounts, plans)
    # sequence: (effective_date, order_id, order_item_id): order 2 and 3 on Mar 5 before order 1 on Mar 9
    assert rows(rel, "order_item_id, product_type, account_found, bill_cycle_day, account_currency, plan_found, "
                "plan_product_id, plan_currency, sequence_no", "sequence_no") == [
        (21, "SUBSCRIPTION", True, 15, "GBP", False, None, None, 1),   # plan 900 unknown
        (31, None, False, None, None, True, 10, "USD", 2),             # product 99 unknown (kept: an exception), account 7 unknown
        (11, "SUBSCRIPTION", True, 15, "GBP", True, 10, "USD", 3),
    ]


def test_static_checks_give_the_first_failing_check(con):
    cols = ("order_item_id INT, order_type VARCHAR, account_found BOOLEAN, product_type VARCHAR, subscription_id BIGINT, "
            "plan_found BOOLEAN, plan_product_id BIGINT, product_id BIGINT, quantity INT, plan_currency VARCHAR, "
            "account_currency VARCHAR")
    items = given(con, "items", cols,
                  (1, "NEW_SERVICE", True, "SUBSCRIPTION", 1000, True, 10, 10, 1, "USD", "USD"),
                  (2, "NEW_SERVICE", False, None, None, False, None, 99, 0, None, None),  # every check fails: the first wins
                  (3, "CHANGE", True, None, 1000, True, 10, 99, 1, "USD", "USD"),
                  (4, "CHANGE", True, "SUBSCRIPTION", None, True, 10, 10, 1, "USD", "USD"),
                  (5, "CHANGE", True, "SUBSCRIPTION", 1000, False, None, 10, 1, None, "USD"),
                  (6, "CHANGE", True, "SUBSCRIPTION", 1000, True, 11, 10, 1, "GBP", "USD"),  # product checked first
                  (7, "NEW_SERVICE", True, "SUBSCRIPTION", 1000, True, 10, 10, 1, "USD", "GBP"),  # USD plan, GBP account
                  (8, "NEW_SERVICE", True, "SUBSCRIPTION", 1000, True, 10, 10, None, "USD", "USD"),
                  (9, "DISCONNECT", True, "SUBSCRIPTION", 1000, False, None, 10, None, None, "USD"))  # no plan, no quantity: fine
    assert rows(subs.static_checks(con, items), "order_item_id, static_reason", "order_item_id") == [
        (1, None), (2, "ACCOUNT_NOT_FOUND"), (3, "UNKNOWN_PRODUCT"), (4, "MISSING_SUBSCRIPTION_ID"),
        (5, "UNKNOWN_PLAN"), (6, "PLAN_PRODUCT_MISMATCH"), (7, "PLAN_CURRENCY_MISMATCH"), (8, "INVALID_QUANTITY"), (9, None),
    ]


CHECKED = ("subscription_id BIGINT, sequence_no BIGINT, order_type VARCHAR, static_reason VARCHAR, account_id BIGINT, "
           "product_id BIGINT, bundle_id BIGINT, order_id BIGINT, effective_date DATE")


def test_activations_are_the_first_valid_new_service_of_each_subscription(con):
    checked = given(con, "checked", CHECKED,
                    (1000, 1, "NEW_SERVICE", "INVALID_QUANTITY", 1, 10, None, 1, D(2025, 3, 1)),  # rejected: not it
                    (1000, 2, "NEW_SERVICE", None, 1, 10, 5, 2, D(2025, 3, 2)),                  # the activation
                    (1000, 3, "NEW_SERVICE", None, 1, 10, None, 3, D(2025, 3, 3)),               # a reuse
                    (1001, 4, "CHANGE", None, 1, 10, None, 4, D(2025, 3, 4)))                    # never activated
    assert subs.activations(con, checked).fetchall() == [(1000, 2, 1, 10, 5, 2, D(2025, 3, 2))]


def test_lifecycle_links_reject_reuse_missing_service_and_other_account(con):
    checked = given(con, "checked", "order_item_id INT, " + CHECKED,
                    (11, 1000, 2, "NEW_SERVICE", None, 1, 10, 5, 1, D(2025, 3, 2)),
                    (21, 1000, 3, "NEW_SERVICE", None, 1, 10, None, 2, D(2025, 3, 3)),
                    (31, 1000, 1, "CHANGE", None, 1, 10, None, 3, D(2025, 3, 1)),     # before the activation
                    (41, 1001, 4, "DISCONNECT", None, 1, 10, None, 4, D(2025, 3, 4)),  # never activated
                    (51, 1000, 5, "CHANGE", None, 2, 10, None, 5, D(2025, 3, 5)),      # account 2, service of account 1
                    (61, 1000, 6, "CHANGE", "UNKNOWN_PLAN", 1, 10, None, 6, D(2025, 3, 6)),
                    (71, 1000, 7, "DISCONNECT", None, 1, 10, None, 7, D(2025, 3, 7)))
    activations = given(con, "activations", "subscription_id BIGINT, activation_no BIGINT, account_id BIGINT, "
                        "product_id BIGINT, bundle_id BIGINT, order_id BIGINT, effective_date DATE",
                        (1000, 2, 1, 10, 5, 1, D(2025, 3, 2)))
    rel = subs.lifecycle_links(con, checked, activations)
    assert rows(rel, "order_item_id, activation_no, service_account_id, service_bundle_id, lifecycle_reason", "order_item_id") == [
        (11, 2, 1, 5, None),
        (21, 2, 1, 5, "DUPLICATE_SUBSCRIPTION"),
        (31, 2, 1, 5, "SUBSCRIPTION_NOT_FOUND"),
        (41, None, None, None, "SUBSCRIPTION_NOT_FOUND"),
        (51, 2, 1, 5, "ACCOUNT_MISMATCH"),
        (61, 2, 1, 5, "UNKNOWN_PLAN"),   # a static reason comes first
        (71, 2, 1, 5, None),
    ]


LINKED = "subscription_id BIGINT, sequence_no BIGINT, order_type VARCHAR, lifecycle_reason VARCHAR, order_id BIGINT, effective_date DATE"


def test_disconnects_are_the_first_valid_disconnect(con):
    linked = given(con, "linked", LINKED,
                   (1000, 3, "DISCONNECT", "ACCOUNT_MISMATCH", 3, D(2025, 4, 1)),  # rejected: does not end it
                   (1000, 5, "DISCONNECT", None, 5, D(2025, 5, 1)),                # ends it
                   (1000, 6, "DISCONNECT", None, 6, D(2025, 4, 15)),               # later in sequence: not the end
                   (1001, 7, "CHANGE", None, 7, D(2025, 5, 1)))
    assert subs.disconnects(con, linked).fetchall() == [(1000, 5, D(2025, 5, 1), 5)]


def test_classified_items_end_the_service_at_its_disconnect(con):
    linked = given(con, "linked", "order_item_id INT, " + LINKED,
                   (11, 1000, 1, "NEW_SERVICE", None, 1, D(2025, 3, 1)),
                   (41, 1000, 4, "DISCONNECT", None, 4, D(2025, 4, 1)),
                   (51, 1000, 5, "CHANGE", None, 5, D(2025, 4, 2)),               # after the disconnect
                   (61, 1000, 6, "DISCONNECT", None, 6, D(2025, 4, 3)),           # after the disconnect
                   (71, 1000, 7, "NEW_SERVICE", "DUPLICATE_SUBSCRIPTION", 7, D(2025, 4, 4)),
                   (81, 1001, 8, "CHANGE", None, 8, D(2025, 4, 4)))               # 1001 never disconnected
    disconnects = given(con, "disconnects", "subscription_id BIGINT, disconnect_no BIGINT, end_date DATE, ended_order_id BIGINT",
                        (1000, 4, D(2025, 4, 1), 4))
    assert rows(subs.classified_items(con, linked, disconnects), "order_item_id, reason", "order_item_id") == [
        (11, None), (41, None), (51, "SUBSCRIPTION_ENDED"), (61, "SUBSCRIPTION_ENDED"),
        (71, "DUPLICATE_SUBSCRIPTION"), (81, None),
    ]


def test_applied_changes_carry_the_plan_they_replace(con):
    classified = given(con, "classified", "subscription_id BIGINT, sequence_no BIGINT, order_type VARCHAR, reason VARCHAR, plan_id BIGINT",
                       (1000, 1, "NEW_SERVICE", None, 100),
                       (1000, 2, "CHANGE", "UNKNOWN_PLAN", 999),  # rejected: neither applied nor replaced
                       (1000, 3, "CHANGE", None, 102),
                       (1000, 4, "CHANGE", None, 101),
                       (1000, 5, "DISCONNECT", None, None),       # not a plan change
                       (1001, 6, "NEW_SERVICE", None, 110))
    assert rows(subs.applied_changes(con, classified), "subscription_id, sequence_no, plan_id, previous_plan_id",
                "sequence_no") == [
        (1000, 1, 100, None), (1000, 3, 102, 100), (1000, 4, 101, 102), (1001, 6, 110, None)]


def test_priced_changes_sum_a_year_of_the_recurring_charges_in_force(con):
    applied = given(con, "applied", "sequence_no BIGINT, plan_id BIGINT, previous_plan_id BIGINT, effective_date DATE",
                    (1, 100, None, D(2025, 3, 5)),
                    (2, 102, 100, D(2025, 5, 31)),
                    (3, 100, 102, D(2025, 6, 1)),
                    (4, 103, 100, D(2025, 6, 1)),
                    (5, 104, 100, D(2025, 6, 1)))
    charges = create_table_with_rows(con, "core.plan_charges", [
        dict(price_id=1, plan_id=100, charge_type="RECURRING", unit_price="20", effective_from=datetime(2020, 1, 1)),
        dict(price_id=2, plan_id=100, charge_type="RECURRING", unit_price="5.5", effective_from=datetime(2020, 1, 1)),
        dict(price_id=3, plan_id=100, charge_type="USAGE", unit_price="0.01", effective_from=datetime(2020, 1, 1)),
        dict(price_id=4, plan_id=102, charge_type="RECURRING", unit_price="10", effective_from=datetime(2020, 1, 1),
             effective_to=datetime(2025, 6, 1)),
        dict(price_id=5, plan_id=102, charge_type="RECURRING", unit_price="50", effective_from=datetime(2025, 6, 1)),
        dict(price_id=6, plan_id=103, charge_type="RECURRING", unit_price="99", effective_from=datetime(2020, 1, 1),
             is_deleted=True),
        dict(price_id=7, plan_id=104, charge_type="RECURRING", unit_price="250", billing_interval="ANNUAL",
             effective_from=datetime(2020, 1, 1)),
        dict(price_id=8, plan_id=104, charge_type="RECURRING", unit_price="15", billing_interval="QUARTERLY",
             effective_from=datetime(2020, 1, 1)),
    ])
    assert rows(subs.priced_changes(con, applied, charges), "sequence_no, new_recurring_per_year, previous_recurring_per_year",
                "sequence_no") == [
        (1, Decimal("306"), None),               # (20 + 5.5) x 12 (monthly; usage not counted); no previous plan
        (2, Decimal("120"), Decimal("306")),     # 102 costs 10 a month until June 1 (exclusive): 120 a year
        (3, Decimal("306"), Decimal("600")),     # from June 1, 102 costs 50 a month: 600 a year
        (4, None, Decimal("306")),               # 103's only charge is deleted: no price
        (5, Decimal("310"), Decimal("306")),     # 250 a year + 15 a quarter x 4 = 310 > 306: dearer per year
    ]


def test_change_kinds_compare_recurring_charges_per_year(con):
    priced = given(con, "priced", "sequence_no BIGINT, order_type VARCHAR, new_recurring_per_year DECIMAL(38,10), "
                   "previous_recurring_per_year DECIMAL(38,10)",
                   (1, "NEW_SERVICE", 20, None),
                   (2, "CHANGE", 40, 20),
                   (3, "CHANGE", 10, 20),
                   (4, "CHANGE", 20, 20),
                   (5, "CHANGE", None, 5),     # no price counts 0: 0 < 5
                   (6, "CHANGE", None, None))  # 0 = 0
    assert rows(subs.change_kinds(con, priced), "sequence_no, change_kind", "sequence_no") == [
        (1, "ACTIVATE"), (2, "UPGRADE"), (3, "DOWNGRADE"), (4, "CHANGE"), (5, "DOWNGRADE"), (6, "CHANGE")]


def test_timing_defers_a_downgrade_to_the_end_of_its_period(con):
    kinded = given(con, "kinded", "subscription_id BIGINT, sequence_no BIGINT, order_id BIGINT, plan_id BIGINT, quantity INT, "
                   "change_kind VARCHAR, service_account_id BIGINT, product_id BIGINT, service_bundle_id BIGINT, "
                   "effective_date DATE, bill_cycle_day INT, billing_cycle VARCHAR",
                   (1000, 1, 1, 100, 1, "ACTIVATE", 2, 10, 5, D(2025, 3, 1), 15, "MONTHLY"),
                   (1000, 2, 2, 102, 1, "DOWNGRADE", 2, 10, 5, D(2025, 3, 10), 15, "MONTHLY"),  # period [Feb 15, Mar 15)
                   (1000, 3, 3, 102, 1, "DOWNGRADE", 2, 10, 5, D(2025, 3, 15), 15, "MONTHLY"),  # Mar 15 starts [Mar 15, Apr 15)
                   (1000, 4, 4, 101, 2, "UPGRADE", 2, 11, 5, D(2025, 3, 20), 15, "MONTHLY"),    # immediate, new product
                   (3000, 5, 5, 102, 1, "DOWNGRADE", 3, 10, None, D(2025, 2, 10), 1, "QUARTERLY"))  # quarter [Jan 1, Apr 1)
    disconnects = given(con, "disconnects", "subscription_id BIGINT, disconnect_no BIGINT, end_date DATE, ended_order_id BIGINT",
                        (1000, 6, D(2025, 5, 2), 6))
    assert rows(subs.timing(con, kinded, disconnects), "*", "sequence_no") == [
        (1000, 1, 1, 100, 1, "ACTIVATE", 2, 10, 5, D(2025, 3, 1)),
        (1000, 2, 2, 102, 1, "DOWNGRADE", 2, 10, 5, D(2025, 3, 15)),
        (1000, 3, 3, 102, 1, "DOWNGRADE", 2, 10, 5, D(2025, 4, 15)),
        (1000, 4, 4, 101, 2, "UPGRADE", 2, 11, 5, D(2025, 3, 20)),
        (3000, 5, 5, 102, 1, "DOWNGRADE", 3, 10, None, D(2025, 4, 1)),
        (1000, 6, 6, None, None, "DISCONNECT", None, None, None, D(2025, 5, 2)),
    ]


def test_effective_items_drop_the_superseded(con):
    timed = given(con, "timed", "subscription_id BIGINT, sequence_no BIGINT, takes_effect DATE",
                  (1000, 1, D(2025, 3, 5)),
                  (1000, 2, D(2025, 4, 1)),   # a downgrade pending until Apr 1, overtaken by item 3 (Mar 20 <= Apr 1)
                  (1000, 3, D(2025, 3, 20)),
                  (1000, 4, D(2025, 5, 1)),   # changed and disconnected the same day: zero length
                  (1000, 5, D(2025, 5, 1)),
                  (2000, 6, D(2025, 3, 5)))
    assert rows(subs.effective_items(con, timed), "sequence_no", "sequence_no") == [(1,), (3,), (5,), (6,)]


def test_versions_run_to_the_next_survivor(con):
    effective = given(con, "effective", "subscription_id BIGINT, sequence_no BIGINT, order_id BIGINT, plan_id BIGINT, "
                      "quantity INT, change_kind VARCHAR, account_id BIGINT, product_id BIGINT, bundle_id BIGINT, takes_effect DATE",
                      (1000, 1, 1, 100, 1, "ACTIVATE", 1, 10, 5, D(2025, 3, 5)),
                      (1000, 3, 3, 101, 2, "UPGRADE", 1, 10, 5, D(2025, 3, 20)),
                      (1000, 5, 5, None, None, "DISCONNECT", None, None, None, D(2025, 5, 1)),
                      (2000, 6, 6, 100, 1, "ACTIVATE", 1, 10, None, D(2025, 3, 5)))
    rel = subs.versions(con, effective)
    assert rel.columns == list(subs.VERSION_COLUMNS)
    assert rel.order("subscription_id, valid_from").fetchall() == [
        (1000, 1, 10, 100, 5, 1, D(2025, 3, 5), D(2025, 3, 20), 1, "ACTIVATE"),
        (1000, 1, 10, 101, 5, 2, D(2025, 3, 20), D(2025, 5, 1), 3, "UPGRADE"),  # ends at the disconnect
        (2000, 1, 10, 100, None, 1, D(2025, 3, 5), OPEN, 6, "ACTIVATE"),
    ]


def test_service_rows_from_activations_and_disconnects(con):
    activations = given(con, "activations", "subscription_id BIGINT, activation_no BIGINT, account_id BIGINT, "
                        "product_id BIGINT, bundle_id BIGINT, order_id BIGINT, effective_date DATE",
                        (1000, 1, 1, 10, 5, 1, D(2025, 3, 5)), (1001, 2, 1, 10, None, 2, D(2025, 3, 6)))
    disconnects = given(con, "disconnects", "subscription_id BIGINT, disconnect_no BIGINT, end_date DATE, ended_order_id BIGINT",
                        (1000, 4, D(2099, 1, 1), 4))  # ordered, dated in the future: already ENDED (as of the data)
    rel = subs.service_rows(con, activations, disconnects)
    assert rel.columns == list(subs.SUBSCRIPTION_COLUMNS)
    assert rel.order("subscription_id").fetchall() == [
        (1000, 1, 10, 5, D(2025, 3, 5), D(2099, 1, 1), "ENDED", 1, 4),
        (1001, 1, 10, None, D(2025, 3, 6), OPEN, "ACTIVE", 2, None),
    ]


def test_exception_rows_are_the_items_with_a_reason(con):
    classified = given(con, "classified", "order_id BIGINT, order_item_id BIGINT, subscription_id BIGINT, order_type VARCHAR, "
                       "effective_date DATE, reason VARCHAR",
                       (1, 11, 1000, "NEW_SERVICE", D(2025, 3, 5), None),
                       (2, 21, None, "CHANGE", D(2025, 3, 6), "MISSING_SUBSCRIPTION_ID"))
    rel = subs.exception_rows(con, classified)
    assert rel.columns == list(subs.EXCEPTION_COLUMNS)
    assert rel.fetchall() == [(2, 21, None, "CHANGE", D(2025, 3, 6), "MISSING_SUBSCRIPTION_ID")]
