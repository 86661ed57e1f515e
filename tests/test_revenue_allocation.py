"""Transaction price allocation by relative SSP (docs/revenue.md "Allocation"): a bundle in one period, a
handset bundled with a 24-month plan (the contract asset and its run-off), a mid-term upgrade. Every
number is worked out in the comments and matches docs/revenue.md."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from domain.periods import add_months
from domain.recognition import recognized_share
from pipelines.revenue.allocation import ALLOCATION_COLUMNS, allocation_rows
from tests.test_revenue_obligations import books, estimate_id, line, obligations

JAN = date(2025, 1, 1)


def allocations(con) -> dict[tuple[str, str], dict]:
    rel = con.sql(allocation_rows(con, JAN))
    assert rel.columns == ALLOCATION_COLUMNS
    return {(r[0], r[1]): dict(zip(rel.columns, r)) for r in rel.fetchall()}


def assert_groups_sum_to_their_price(rows: dict) -> None:
    """Per group: Σ component_price = Σ component_allocated (one per component) = transaction_price."""
    groups: dict[str, dict] = {}
    for (group, _), r in rows.items():
        groups.setdefault(group, {})[r["component"]] = r
    for components in groups.values():
        price = {r["transaction_price"] for r in components.values()}
        assert len(price) == 1
        assert sum(r["component_price"] for r in components.values()) == price.pop() \
            == sum(r["component_allocated"] for r in components.values())


def _bundle_books(with_ssp: bool):
    """Mobile M 29.99 and Broadband 100 39.99 in bundle 1 (10 % off) on one invoice, a full month each:
    nets 29.99 - 3.00 = 26.99 and 39.99 - 4.00 = 35.99, transaction price 62.98."""
    kw = dict(document_id="INV-B", days=31, period_days=31, quantity=1)
    mobile = line("RECURRING", "26.99", JAN, date(2025, 2, 1), subscription_id=30, product_id=1, price_id=1001,
                  unit_price="29.99", amount="29.99", **kw)
    broadband = line("RECURRING", "35.99", JAN, date(2025, 2, 1), subscription_id=31, product_id=2, price_id=1002,
                     unit_price="39.99", amount="39.99", **kw)
    ssp = [{"ssp_id": 1, "product_id": 1, "ssp_amount": "25.00"}, {"ssp_id": 2, "product_id": 2, "ssp_amount": "45.00"}]
    con = books(ledger__document_lines=[mobile, broadband],
                core__subscriptions=[{"subscription_id": s, "product_id": p, "bundle_id": 1, "start_date": JAN,
                                      "created_order_id": 60} for s, p in ((30, 1), (31, 2))],
                core__plan_charges=[{"price_id": 1001, "plan_id": 110, "charge_code": "fee", "unit_price": "29.99"},
                                    {"price_id": 1002, "plan_id": 120, "charge_code": "fee", "unit_price": "39.99"}],
                core__standalone_selling_prices=ssp if with_ssp else [])
    return con, mobile["line_id"], broadband["line_id"]


def test_bundle_in_one_period_is_allocated_by_relative_ssp():
    """SSP mobile 25.00, broadband 45.00 (per month, x 1 month x 31/31 days): 62.98 x 25/70 = 22.4928... and
    62.98 x 45/70 = 40.4871...: floors 22.49 + 40.48 = 62.97, the cent left to the larger remainder
    (.71 > .28): 22.49 and 40.49 (Σ 62.98). The obligations carry these allocations."""
    con, mobile, broadband = _bundle_books(with_ssp=True)
    rows = allocations(con)
    group = "BUNDLE-INV-B-1-2025-01-01"
    assert {k: (r["ssp_amount"], r["ssp_source"], r["billed_amount"], r["allocated_amount"]) for k, r in rows.items()} == {
        (group, mobile): (D("25.00"), "CATALOG", D("26.99"), D("22.49")),
        (group, broadband): (D("45.00"), "CATALOG", D("35.99"), D("40.49")),
    }
    assert_groups_sum_to_their_price(rows)
    o = obligations(con)
    assert (o[mobile]["allocated_amount"], o[broadband]["allocated_amount"]) == (D("22.49"), D("40.49"))


def test_bundle_without_ssp_uses_list_prices_so_the_discount_is_spread_proportionally():
    """No SSP in force: weights are the list amounts 29.99 and 39.99: 62.98 x 29.99/69.98 = 26.9904... and
    62.98 x 39.99/69.98 = 35.9895...: floors 26.99 + 35.98, the cent to the larger remainder: 26.99 and
    35.99, what was billed (the 10 % discount already fell proportionally)."""
    con, mobile, broadband = _bundle_books(with_ssp=False)
    rows = allocations(con)
    assert {k[1]: (r["ssp_source"], r["allocated_amount"]) for k, r in rows.items()} == {
        mobile: ("LIST_PRICE", D("26.99")), broadband: ("LIST_PRICE", D("35.99"))}


def handset_books(upgrade_on: date | None = None, device_invoiced: bool = True, billed_months: int = 24):
    """Order 50 on 2025-01-01, 24-month term: Phone X (SSP 599.00) sold at 99.00 and Mobile M on plan 100
    (30.00 a month, SSP 30.00 a month), billed monthly in advance (the first ``billed_months``). With
    ``upgrade_on``, the service moves to plan 101 (40.00 a month) that day and the months from it are billed
    at 40.00. Without ``device_invoiced``, the phone is delivered and not invoiced yet."""
    device = line("ONE_TIME", "99.00", JAN, date(2025, 1, 2), product_id=7, source_ref="700", document_id="INV-0",
                  quantity=1, unit_price="99.00")
    months = [add_months(JAN, k) for k in range(billed_months if upgrade_on is None else 12)]
    services = [line("RECURRING", "30.00" if upgrade_on is None or m < upgrade_on else "40.00", m, add_months(m, 1),
                     subscription_id=20, product_id=1, plan_id=100 if upgrade_on is None or m < upgrade_on else 101,
                     price_id=1000, document_id=f"INV-{m:%Y%m}", quantity=1, days=1, period_days=1)
                for m in months]
    versions = [{"subscription_id": 20, "product_id": 1, "plan_id": 100, "valid_from": JAN, "order_id": 50,
                 "valid_to": upgrade_on or "9999-12-31"}]
    if upgrade_on:
        versions.append({"subscription_id": 20, "product_id": 1, "plan_id": 101, "valid_from": upgrade_on,
                         "order_id": 51, "change_kind": "UPGRADE"})
    con = books(
        ledger__document_lines=[device, *services] if device_invoiced else services,
        core__orders=[{"order_id": 50, "order_number": "O-50", "effective_date": JAN, "contract_term_months": 24}],
        core__order_items=[{"order_item_id": 700, "order_id": 50, "product_id": 7, "unit_price": "99.00"},
                           {"order_item_id": 701, "order_id": 50, "product_id": 1, "plan_id": 100, "subscription_id": 20}],
        core__subscriptions=[{"subscription_id": 20, "product_id": 1, "start_date": JAN, "created_order_id": 50}],
        core__subscription_versions=versions,
        core__plan_charges=[{"price_id": 1000, "plan_id": 100, "charge_code": "fee", "unit_price": "30.00"},
                            {"price_id": 1010, "plan_id": 101, "charge_code": "fee", "unit_price": "40.00"}],
        core__standalone_selling_prices=[{"ssp_id": 1, "product_id": 7, "ssp_amount": "599.00"},
                                         {"ssp_id": 2, "product_id": 1, "ssp_amount": "30.00"}])
    return con, device["line_id"], [s["line_id"] for s in services]


def test_handset_with_a_24_month_plan_allocates_more_to_the_device_than_it_bills():
    """Transaction price = 99.00 billed + E = 30.00 x 24 intervals = 720.00 -> 819.00. SSPs: device 599.00 x 1,
    service 30.00 x 1 x 24 = 720.00, Σ 1319.00. 819 x 599/1319 = 371.9302... -> 371.93; 819 x 720/1319 =
    447.0697... -> 447.07 (Σ 819.00). Service line k (30.00 each) is allocated round(447.07 x 30k/720) minus
    the line before: k=1 447.07 x 1/24 = 18.6279 -> 18.63; k=2 37.2558 -> 37.26 - 18.63 = 18.63; k=3 55.8838
    -> 55.88 - 37.26 = 18.62; the 24 lines sum to 447.07."""
    con, device, services = handset_books()
    rows = allocations(con)
    assert_groups_sum_to_their_price(rows)
    good = rows[("TERM-ORD-50", device)]
    assert (good["method"], good["ssp_amount"], good["transaction_price"], good["billed_amount"],
            good["allocated_amount"]) == ("COMMITMENT", D("599.00"), D("819.00"), D("99.00"), D("371.93"))
    service = [rows[("TERM-ORD-50", s)] for s in services]
    assert {(r["component"], r["ssp_amount"], r["component_price"], r["component_allocated"]) for r in service} == \
        {("SERVICE-20", D("720.00"), D("720.00"), D("447.07"))}
    assert [r["allocated_amount"] for r in service[:3]] == [D("18.63"), D("18.63"), D("18.62")]
    assert [r["allocated_amount"] for r in service] == [
        recognized_share(D("447.07"), D(30 * k), D(720), "USD") - recognized_share(D("447.07"), D(30 * (k - 1)), D(720), "USD")
        for k in range(1, 25)]
    assert sum(r["allocated_amount"] for r in service) == D("447.07")
    o = obligations(con)
    assert not any(k.startswith("END-") for k in o)  # the term runs to its end: nothing to reverse
    assert sum(r["allocated_amount"] for r in o.values()) == sum(r["billed_amount"] for r in o.values()) == D("819.00")


def test_an_estimated_handset_is_allocated_as_the_invoiced_one():
    """The phone delivered Jan 1 and not invoiced yet, three months of service billed: its estimate (the January
    run's line for item 700, on draft INV-AC-1-20250201) brings the order's price 99.00 into the transaction price and is allocated as the invoiced phone above:
    819.00 x 599/1319 -> 371.93, billed 0 (a contract asset); the service lines 18.63, 18.63, 18.62."""
    con, _, services = handset_books(device_invoiced=False, billed_months=3)
    rows = allocations(con)
    assert_groups_sum_to_their_price(rows)
    phone = estimate_id("INV-AC-1-20250201", "ONE_TIME|700")
    good = rows[("TERM-ORD-50", phone)]
    assert (good["component_price"], good["transaction_price"], good["billed_amount"], good["allocated_amount"]) == \
        (D("99.00"), D("819.00"), D("0"), D("371.93"))
    assert [rows[("TERM-ORD-50", s)]["allocated_amount"] for s in services] == [D("18.63"), D("18.63"), D("18.62")]
    o = obligations(con)[phone]
    assert (o["obligation_kind"], o["billed_amount"], o["allocated_amount"]) == ("GOOD", D("0"), D("371.93"))


def test_mid_term_upgrade_is_prospective():
    """The plan changes to 101 on 2025-07-01 (month 7). January-June keep their allocations (18.63, 18.63,
    18.62, ...: through June round(447.07 x 6/24) = round(111.7675) = 111.77); the lines from July (plan 101,
    40.00) are alone: allocated what they bill. The commitment ends on Jul 1: the contract's remaining position
    (371.93 - 99.00) + (111.77 - 180.00) = 272.93 - 68.23 = 204.70 is reversed by END-ORD-50, POINT_IN_TIME on
    Jul 1, allocated -204.70, so the contract allocates exactly what it bills."""
    con, device, services = handset_books(upgrade_on=date(2025, 7, 1))
    base, _, base_services = handset_books()
    o, before = obligations(con), obligations(base)
    assert [o[s]["allocated_amount"] for s in services[:6]] == [before[s]["allocated_amount"] for s in base_services[:6]]
    assert sum(o[s]["allocated_amount"] for s in services[:6]) == D("111.77")
    assert [o[s]["allocated_amount"] for s in services[6:]] == [D("40.00")] * 6
    end = o["END-ORD-50"]
    assert (end["obligation_kind"], end["pattern"], end["recognition_start"], end["recognition_end"],
            end["billed_amount"], end["allocated_amount"], end["product_line"]) == \
        ("CONTRACT_END", "POINT_IN_TIME", date(2025, 7, 1), date(2025, 7, 2), D("0.00"), D("-204.70"), "MOBILE")
    assert sum(r["allocated_amount"] for r in o.values()) == sum(r["billed_amount"] for r in o.values()) \
        == D("99.00") + 6 * D("30.00") + 6 * D("40.00")
