"""Subscriptions from confirmed orders (pipelines/state/subscriptions.py, ``build_services``).

In-memory DuckDB; the current-state inputs (entities.py columns + is_deleted) are small
hand-written tables; every expected row is written out by hand. The steps of the chain are
tested one by one in tests/test_services_steps.py.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import duckdb
import pytest

from domain import install_macros
from pipelines.state import subscriptions as subs
from sources.entities import ENTITIES

OPEN = date(9999, 12, 31)
D = date


def make_current(con, entity_name, rows):
    """core.<entity>-shaped table (entity columns + is_deleted) named ``cur_<entity>``."""
    entity = ENTITIES[entity_name]
    cols = entity.columns
    con.execute(f"CREATE TABLE cur_{entity_name} ({', '.join(f'{c.name} {c.sql_type}' for c in cols)}, is_deleted BOOLEAN)")
    names = [*entity.column_names, "is_deleted"]
    for r in rows:
        r = {"is_deleted": False, **r}
        con.execute(f"INSERT INTO cur_{entity_name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                    [r.get(n) for n in names])


def account(aid, bcd=1, cycle="MONTHLY"):
    return dict(account_id=aid, customer_id=aid, account_number=f"A{aid}", billing_cycle=cycle, bill_cycle_day=bcd,
                payment_terms_days=14, currency="USD", status="ACTIVE")


def product(pid, ptype="SUBSCRIPTION"):
    return dict(product_id=pid, sku=f"S{pid}", name=f"P{pid}", category="MOBILE", product_type=ptype,
                base_price=Decimal("1"), currency="USD", status="ACTIVE")


def charge(price_id, plan_id, price, frm=datetime(2020, 1, 1), to=None, ctype="RECURRING"):
    return dict(price_id=price_id, plan_id=plan_id, charge_code="base", charge_type=ctype, charge_model="FLAT",
                billing_timing="IN_ADVANCE", prorate=True, unit_price=Decimal(price), effective_from=frm, effective_to=to)


class World:
    """Catalog + accounts shared by the tests; orders are added per test."""

    def __init__(self, con):
        self.con = con
        self.orders: list[dict] = []
        self.items: list[dict] = []

    def order(self, oid, otype, eff, items, account_id=1, status="CONFIRMED", is_deleted=False):
        self.orders.append(dict(order_id=oid, order_number=f"O{oid}", account_id=account_id, order_type=otype,
                                status=status, effective_date=eff, created_at=datetime(2025, 1, 1), is_deleted=is_deleted))
        for n, it in enumerate(items, 1):
            self.items.append({"quantity": 1, **it, "order_item_id": oid * 10 + n, "order_id": oid})
        return self

    def build(self):
        con = self.con
        make_current(con, "billing_accounts", [account(1, 1), account(2, 15), account(3, 1, "QUARTERLY")])
        make_current(con, "products", [product(10), product(11), product(20, "ONE_TIME")])
        make_current(con, "price_plans", [
            dict(plan_id=p, product_id=prod, name=f"plan{p}", currency=cur, status="ACTIVE")
            for p, prod, cur in [(100, 10, "USD"), (101, 10, "USD"), (102, 10, "USD"), (103, 10, "USD"), (110, 11, "USD"),
                                 (120, 10, "GBP"), (130, 10, "USD")]
        ])
        make_current(con, "plan_charges", [
            charge(1, 100, "20"),
            dict(charge(2, 100, "0.01", ctype="USAGE"), charge_model="PER_UNIT", metric="data_mb"),  # not compared
            charge(3, 101, "40"),
            charge(4, 102, "10", to=datetime(2025, 6, 1)),   # price change: 10 until June, then 50
            charge(5, 102, "50", frm=datetime(2025, 6, 1)),
            charge(6, 103, "20"),
            charge(7, 110, "30"),
            charge(8, 120, "30"),
            dict(charge(9, 130, "200"), billing_interval="ANNUAL"),  # 200 a year: cheaper than plan 100's 20 a month
        ])
        make_current(con, "orders", self.orders)
        make_current(con, "order_items", self.items)
        return self

    def _kw(self):
        return dict(orders="cur_orders", order_items="cur_order_items", products="cur_products",
                    plan_charges="cur_plan_charges", accounts="cur_billing_accounts", plans="cur_price_plans")

    def services(self) -> subs.Services:
        return subs.build_services(self.con, **self._kw())

    def versions(self):
        return self.services().versions.order("subscription_id, valid_from").fetchall()

    def subscriptions(self):
        return self.services().subscriptions.order("subscription_id").fetchall()

    def exceptions(self):
        return self.services().exceptions.select("order_item_id, reason").order("order_item_id").fetchall()


@pytest.fixture
def world():
    con = duckdb.connect()
    install_macros(con)
    yield World(con)
    con.close()


def new(sub, plan=100, product=10, qty=1, bundle=None):
    return dict(subscription_id=sub, product_id=product, plan_id=plan, bundle_id=bundle, quantity=qty)


def chg(sub, plan, product=10, qty=1):
    return dict(subscription_id=sub, product_id=product, plan_id=plan, quantity=qty)


def disc(sub, product=10):
    return dict(subscription_id=sub, product_id=product, plan_id=None)


def test_columns(world):
    world.build()
    services = world.services()
    assert services.versions.columns == list(subs.VERSION_COLUMNS)
    assert services.subscriptions.columns == list(subs.SUBSCRIPTION_COLUMNS)
    assert services.exceptions.columns == list(subs.EXCEPTION_COLUMNS)
    types = [str(t) for t in services.versions.types]
    assert types == ["BIGINT"] * 5 + ["INTEGER", "DATE", "DATE", "BIGINT", "VARCHAR"]


def test_activate_ignores_one_time_items(world):
    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [
        new(1000, bundle=5, qty=2),
        dict(subscription_id=None, product_id=20, plan_id=None, unit_price=Decimal("199")),  # device: one-time
    ]).build()
    assert world.versions() == [(1000, 1, 10, 100, 5, 2, D(2025, 3, 5), OPEN, 1, "ACTIVATE")]
    assert world.subscriptions() == [(1000, 1, 10, 5, D(2025, 3, 5), OPEN, "ACTIVE", 1, None)]
    assert world.exceptions() == []


def test_mid_month_upgrade_is_immediate(world):
    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [new(1000)])
    world.order(2, "CHANGE", D(2025, 3, 20), [chg(1000, 101, qty=3)]).build()
    assert world.versions() == [
        (1000, 1, 10, 100, None, 1, D(2025, 3, 5), D(2025, 3, 20), 1, "ACTIVATE"),
        (1000, 1, 10, 101, None, 3, D(2025, 3, 20), OPEN, 2, "UPGRADE"),
    ]


def test_downgrade_deferred_to_period_end_calendar_account(world):
    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [new(1000)])
    world.order(2, "CHANGE", D(2025, 3, 20), [chg(1000, 102)]).build()
    assert world.versions() == [
        (1000, 1, 10, 100, None, 1, D(2025, 3, 5), D(2025, 4, 1), 1, "ACTIVATE"),
        (1000, 1, 10, 102, None, 1, D(2025, 4, 1), OPEN, 2, "DOWNGRADE"),
    ]


def test_a_yearly_plan_cheaper_per_year_is_a_downgrade(world):
    """Plan 130 costs 200 a year, plan 100 20 a month = 240 a year: 200 < 240, a downgrade at period
    end (its unit price 200 > 20 is for another interval); and back is an immediate upgrade."""
    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [new(1000)])
    world.order(2, "CHANGE", D(2025, 3, 20), [chg(1000, 130)])
    world.order(3, "CHANGE", D(2025, 5, 10), [chg(1000, 100)]).build()
    assert world.versions() == [
        (1000, 1, 10, 100, None, 1, D(2025, 3, 5), D(2025, 4, 1), 1, "ACTIVATE"),
        (1000, 1, 10, 130, None, 1, D(2025, 4, 1), D(2025, 5, 10), 2, "DOWNGRADE"),
        (1000, 1, 10, 100, None, 1, D(2025, 5, 10), OPEN, 3, "UPGRADE"),
    ]


def test_downgrade_deferred_to_period_end_bill_cycle_day_15(world):
    # account 2: periods [.. 15th, next 15th)
    world.order(1, "NEW_SERVICE", D(2025, 3, 1), [new(2001), new(2002), new(2003)], account_id=2)
    world.order(2, "CHANGE", D(2025, 3, 10), [chg(2001, 102)], account_id=2)  # period [Feb 15, Mar 15)
    world.order(3, "CHANGE", D(2025, 3, 15), [chg(2002, 102)], account_id=2)  # period [Mar 15, Apr 15)
    world.order(4, "CHANGE", D(2025, 3, 20), [chg(2003, 102)], account_id=2)
    world.build()
    assert world.versions() == [
        (2001, 2, 10, 100, None, 1, D(2025, 3, 1), D(2025, 3, 15), 1, "ACTIVATE"),
        (2001, 2, 10, 102, None, 1, D(2025, 3, 15), OPEN, 2, "DOWNGRADE"),
        (2002, 2, 10, 100, None, 1, D(2025, 3, 1), D(2025, 4, 15), 1, "ACTIVATE"),
        (2002, 2, 10, 102, None, 1, D(2025, 4, 15), OPEN, 3, "DOWNGRADE"),
        (2003, 2, 10, 100, None, 1, D(2025, 3, 1), D(2025, 4, 15), 1, "ACTIVATE"),
        (2003, 2, 10, 102, None, 1, D(2025, 4, 15), OPEN, 4, "DOWNGRADE"),
    ]


def test_downgrade_deferred_quarterly_account(world):
    world.order(1, "NEW_SERVICE", D(2025, 1, 10), [new(3001)], account_id=3)
    world.order(2, "CHANGE", D(2025, 2, 10), [chg(3001, 102)], account_id=3).build()  # quarter [Jan 1, Apr 1)
    assert world.versions() == [
        (3001, 3, 10, 100, None, 1, D(2025, 1, 10), D(2025, 4, 1), 1, "ACTIVATE"),
        (3001, 3, 10, 102, None, 1, D(2025, 4, 1), OPEN, 2, "DOWNGRADE"),
    ]


def test_equal_price_is_immediate_change_and_price_in_force_on_effective_date(world):
    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [new(1000)])
    world.order(2, "CHANGE", D(2025, 3, 10), [chg(1000, 103, qty=2)])   # 20 -> 20: CHANGE
    world.order(3, "CHANGE", D(2025, 6, 10), [chg(1000, 102)])          # 102 costs 50 from June: UPGRADE
    world.build()
    assert world.versions() == [
        (1000, 1, 10, 100, None, 1, D(2025, 3, 5), D(2025, 3, 10), 1, "ACTIVATE"),
        (1000, 1, 10, 103, None, 2, D(2025, 3, 10), D(2025, 6, 10), 2, "CHANGE"),
        (1000, 1, 10, 102, None, 1, D(2025, 6, 10), OPEN, 3, "UPGRADE"),
    ]


def test_disconnect(world):
    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [new(1000, bundle=7)])
    world.order(2, "DISCONNECT", D(2025, 5, 10), [disc(1000)]).build()
    assert world.versions() == [(1000, 1, 10, 100, 7, 1, D(2025, 3, 5), D(2025, 5, 10), 1, "ACTIVATE")]
    assert world.subscriptions() == [(1000, 1, 10, 7, D(2025, 3, 5), D(2025, 5, 10), "ENDED", 1, 2)]
    assert world.exceptions() == []


def test_change_and_disconnect_same_day(world):
    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [new(1000)])
    world.order(2, "CHANGE", D(2025, 4, 10), [chg(1000, 101)])
    world.order(3, "DISCONNECT", D(2025, 4, 10), [disc(1000)]).build()
    assert world.versions() == [(1000, 1, 10, 100, None, 1, D(2025, 3, 5), D(2025, 4, 10), 1, "ACTIVATE")]
    assert world.subscriptions() == [(1000, 1, 10, None, D(2025, 3, 5), D(2025, 4, 10), "ENDED", 1, 3)]


def test_activate_and_disconnect_same_day_keeps_the_service_without_versions(world):
    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [new(1000)])
    world.order(2, "DISCONNECT", D(2025, 3, 5), [disc(1000)]).build()
    assert world.versions() == []
    assert world.subscriptions() == [(1000, 1, 10, None, D(2025, 3, 5), D(2025, 3, 5), "ENDED", 1, 2)]


def test_pending_downgrade_superseded_by_later_upgrade(world):
    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [new(1000)])
    world.order(2, "CHANGE", D(2025, 3, 10), [chg(1000, 102)])  # downgrade, pending until Apr 1
    world.order(3, "CHANGE", D(2025, 3, 20), [chg(1000, 101)])  # upgrade vs 102: immediate, cancels it
    world.build()
    assert world.versions() == [
        (1000, 1, 10, 100, None, 1, D(2025, 3, 5), D(2025, 3, 20), 1, "ACTIVATE"),
        (1000, 1, 10, 101, None, 1, D(2025, 3, 20), OPEN, 3, "UPGRADE"),
    ]


def test_pending_downgrade_overtaken_by_disconnect(world):
    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [new(1000)])
    world.order(2, "CHANGE", D(2025, 3, 10), [chg(1000, 102)])  # would take effect Apr 1
    world.order(3, "DISCONNECT", D(2025, 3, 25), [disc(1000)]).build()
    assert world.versions() == [(1000, 1, 10, 100, None, 1, D(2025, 3, 5), D(2025, 3, 25), 1, "ACTIVATE")]


def test_same_day_orders_apply_in_order_id_order(world):
    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [new(1000)])
    world.order(2, "CHANGE", D(2025, 3, 5), [chg(1000, 101)]).build()  # same day: activation version has zero length
    assert world.versions() == [(1000, 1, 10, 101, None, 1, D(2025, 3, 5), OPEN, 2, "UPGRADE")]
    assert world.subscriptions() == [(1000, 1, 10, None, D(2025, 3, 5), OPEN, "ACTIVE", 1, None)]


def test_non_confirmed_and_deleted_orders_ignored(world):
    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [new(1000)])
    world.order(2, "CHANGE", D(2025, 3, 10), [chg(1000, 101)], status="CREATED")
    world.order(3, "DISCONNECT", D(2025, 3, 11), [disc(1000)], status="CANCELLED")
    world.order(4, "DISCONNECT", D(2025, 3, 12), [disc(1000)], status="PAYMENT_FAILED")
    world.order(5, "NEW_SERVICE", D(2025, 3, 12), [new(1001)], status="FAILED")
    world.order(6, "DISCONNECT", D(2025, 3, 13), [disc(1000)], is_deleted=True)
    world.build()
    assert world.versions() == [(1000, 1, 10, 100, None, 1, D(2025, 3, 5), OPEN, 1, "ACTIVATE")]
    assert world.exceptions() == []


def test_every_exception_reason(world):
    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [new(1000)])
    world.order(2, "NEW_SERVICE", D(2025, 3, 5), [new(1001)], account_id=99)          # 21
    world.order(3, "NEW_SERVICE", D(2025, 3, 5), [
        new(1002, product=999),                                                       # 31 unknown product
        dict(new(None), subscription_id=None),                                        # 32
        new(1003, plan=999),                                                          # 33
        new(1004, plan=None),                                                         # 34
        new(1005, plan=110),                                                          # 35 plan prices product 11
        new(1006, qty=0),                                                             # 36
        new(1008, plan=120),                                                          # 37 GBP plan, USD account
    ])
    world.order(4, "NEW_SERVICE", D(2025, 3, 6), [new(1000)])                         # 41 reuses 1000
    world.order(5, "CHANGE", D(2025, 3, 7), [chg(5555, 101)])                         # 51 never activated
    world.order(6, "DISCONNECT", D(2025, 3, 1), [disc(1007)])                         # 61 before its activation
    world.order(7, "NEW_SERVICE", D(2025, 3, 2), [new(1007)])
    world.order(8, "DISCONNECT", D(2025, 3, 8), [disc(1000)], account_id=2)           # 81 other account
    world.order(9, "CHANGE", D(2025, 3, 8), [chg(1000, 120)])                         # 91 GBP plan, USD account
    world.order(10, "CHANGE", D(2025, 3, 9), [chg(1000, 110, product=10)])            # 101 plan of product 11
    world.order(11, "DISCONNECT", D(2025, 4, 1), [disc(1000)])
    world.order(12, "CHANGE", D(2025, 4, 2), [chg(1000, 101)])                        # 121 ended
    world.order(13, "DISCONNECT", D(2025, 4, 3), [disc(1000)])                        # 131 ended
    world.build()
    assert world.exceptions() == [
        (21, "ACCOUNT_NOT_FOUND"),
        (31, "UNKNOWN_PRODUCT"),
        (32, "MISSING_SUBSCRIPTION_ID"),
        (33, "UNKNOWN_PLAN"),
        (34, "UNKNOWN_PLAN"),
        (35, "PLAN_PRODUCT_MISMATCH"),
        (36, "INVALID_QUANTITY"),
        (37, "PLAN_CURRENCY_MISMATCH"),
        (41, "DUPLICATE_SUBSCRIPTION"),
        (51, "SUBSCRIPTION_NOT_FOUND"),
        (61, "SUBSCRIPTION_NOT_FOUND"),
        (81, "ACCOUNT_MISMATCH"),
        (91, "PLAN_CURRENCY_MISMATCH"),
        (101, "PLAN_PRODUCT_MISMATCH"),
        (121, "SUBSCRIPTION_ENDED"),
        (131, "SUBSCRIPTION_ENDED"),
    ]
    assert set(r[1] for r in world.exceptions()) == set(subs.REASONS)
    # rejected items changed nothing: 1000 runs from its activation to the valid disconnect on plan 100
    # (the GBP plan of order 9 never applies to the USD account), 1008 is never activated
    assert world.versions() == [
        (1000, 1, 10, 100, None, 1, D(2025, 3, 5), D(2025, 4, 1), 1, "ACTIVATE"),
        (1007, 1, 10, 100, None, 1, D(2025, 3, 2), OPEN, 7, "ACTIVATE"),
    ]
    assert world.subscriptions() == [
        (1000, 1, 10, None, D(2025, 3, 5), D(2025, 4, 1), "ENDED", 1, 11),
        (1007, 1, 10, None, D(2025, 3, 2), OPEN, "ACTIVE", 7, None),
    ]
    full = world.services().exceptions.filter("order_item_id = 121").fetchall()
    assert full == [(12, 121, 1000, "CHANGE", D(2025, 4, 2), "SUBSCRIPTION_ENDED")]


def test_ddl_comments_every_column_and_accepts_the_relations(world):
    from warehouse.ddl import create_tables

    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [new(1000)])
    world.order(2, "CHANGE", D(2025, 3, 20), [chg(1000, 102)])
    world.order(3, "CHANGE", D(2025, 3, 21), [chg(4242, 102)]).build()
    con = world.con
    create_tables(con, ["core.subscriptions", "core.subscription_versions", "core.order_exceptions"])
    for table in ("subscriptions", "subscription_versions", "order_exceptions"):
        assert con.sql(f"SELECT comment FROM duckdb_tables() WHERE schema_name = 'core' AND table_name = '{table}'").fetchone()[0]
        missing = con.sql(f"""SELECT column_name FROM duckdb_columns()
                             WHERE schema_name = 'core' AND table_name = '{table}' AND coalesce(comment, '') = ''""").fetchall()
        assert missing == []
    services = world.services()
    for table, rel in [("subscriptions", services.subscriptions),
                       ("subscription_versions", services.versions),
                       ("order_exceptions", services.exceptions)]:
        cols = con.sql(f"SELECT * FROM core.{table}").columns
        assert rel.columns == cols
        con.execute(f"INSERT INTO core.{table} BY NAME {rel.sql_query()}")
    assert con.sql("SELECT count(*) FROM core.subscription_versions").fetchone()[0] == 2
    assert con.sql("SELECT reason FROM core.order_exceptions").fetchall() == [("SUBSCRIPTION_NOT_FOUND",)]


def test_the_chain_is_computed_once_per_run(world):
    """build_services stores the chain in temp tables: its outputs no longer read the inputs, and
    a later run on the same connection (here without the disconnect) leaves them as they were;
    each run keeps only its three output tables."""
    world.order(1, "NEW_SERVICE", D(2025, 3, 5), [new(1000)])
    world.order(2, "DISCONNECT", D(2025, 5, 10), [disc(1000)]).build()
    first = world.services()
    world.con.execute("DELETE FROM cur_order_items WHERE order_id = 2")
    second = world.services()
    world.con.execute("DROP TABLE cur_orders")
    world.con.execute("DROP TABLE cur_order_items")
    assert first.subscriptions.fetchall() == [(1000, 1, 10, None, D(2025, 3, 5), D(2025, 5, 10), "ENDED", 1, 2)]
    assert first.versions.fetchall() == [(1000, 1, 10, 100, None, 1, D(2025, 3, 5), D(2025, 5, 10), 1, "ACTIVATE")]
    assert second.subscriptions.fetchall() == [(1000, 1, 10, None, D(2025, 3, 5), OPEN, "ACTIVE", 1, None)]
    assert second.versions.fetchall() == [(1000, 1, 10, 100, None, 1, D(2025, 3, 5), OPEN, 1, "ACTIVATE")]
    assert first.exceptions.fetchall() == second.exceptions.fetchall() == []
    temp = world.con.sql("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()[0]
    assert temp == 2 * 3
