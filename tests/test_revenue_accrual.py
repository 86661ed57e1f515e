"""Rendered and not yet invoiced (pipelines/revenue/accrual.py, docs/revenue.md "Estimates"): usage of a period in
progress and service days not invoiced yet are estimated at close by the real rating and settlement of the bill run
that will invoice them, and replaced when it does. The real engines end to end on one DuckDB: rate, bill, finalize
each billing month, then refresh revenue and close the accounting month. USD, no tax (a 0 % US rate)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from pipelines.invoicing.run import bill_month
from pipelines.ledger.finalize import finalize
from pipelines.rating.engine import rate_usage
from pipelines.revenue.checks import revenue_problems
from pipelines.revenue.close import DERIVED_TABLES, close_month, refresh
from tests.test_revenue_journals import books, lines
from tests.test_revenue_obligations import DEFAULTS as CORE
from warehouse.fixtures import create_table_with_rows
from warehouse.writer import write

JAN, FEB, MAR, APR = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1), date(2025, 4, 1)

DEFAULTS = {
    **CORE,
    "core.customers": {"is_deleted": False, "country": "US", "customer_type": "INDIVIDUAL", "status": "ACTIVE"},
    "core.price_plans": {"is_deleted": False, "currency": "USD", "status": "ACTIVE"},
    "core.tax_rates": {"is_deleted": False, "country": "US", "tax_name": "none", "rate": "0", "effective_from": "2000-01-01"},
    "core.subscription_versions": {**CORE["core.subscription_versions"], "product_id": 1},
    "core.subscriptions": {**CORE["core.subscriptions"], "product_id": 1},
}
CATALOG = {
    "core.customers": [{"customer_id": 1}],
    "core.tax_rates": [{"tax_rate_id": 1}],
    "core.products": [{"product_id": 1, "sku": "MOB", "name": "Mobile", "category": "MOBILE", "product_type": "SUBSCRIPTION"},
                      {"product_id": 2, "sku": "DATA", "name": "Data", "category": "MOBILE", "product_type": "SUBSCRIPTION"}],
    "core.price_plans": [{"plan_id": 100, "product_id": 1, "name": "Mobile M"}, {"plan_id": 200, "product_id": 2, "name": "Data"},
                         {"plan_id": 300, "product_id": 1, "name": "Mobile S"}],
    "core.plan_charges": [  # 30.00 a month in advance; data 0.01 per MB in arrears; 10.00 a month in advance
        {"price_id": 1000, "plan_id": 100, "charge_code": "BASE", "unit_price": "30.00", "charge_model": "FLAT"},
        {"price_id": 2000, "plan_id": 200, "charge_code": "DATA", "charge_type": "USAGE", "charge_model": "PER_UNIT",
         "metric": "data_mb", "aggregation": "SUM", "unit_price": "0.01", "billing_timing": "IN_ARREARS"},
        {"price_id": 3000, "plan_id": 300, "charge_code": "BASE", "unit_price": "10.00", "charge_model": "FLAT"}],
}


def given(con, table: str, rows: list[dict]) -> None:
    """Replace the rows of contract table ``table`` by ``rows`` (this module's defaults)."""
    name = create_table_with_rows(con, table, rows, DEFAULTS.get(table), schema="given")
    con.execute(f"DELETE FROM {table}; INSERT INTO {table} SELECT * FROM {name}; DROP TABLE {name}")


def warehouse(accounts: list[dict], services: list[dict], events: list[dict] = ()):
    """Every contract table; the catalog, ``accounts`` (customer 1), each service of ``services`` (subscription_id,
    account_id, plan_id, product_id, start: activated by order = its subscription_id) and the usage ``events``."""
    con = books()
    for table, rows in CATALOG.items():
        given(con, table, rows)
    given(con, "core.billing_accounts", [{"account_number": f"AC-{a['account_id']}", **a} for a in accounts])
    given(con, "core.orders", [{"order_id": s["subscription_id"], "account_id": s["account_id"], "effective_date": s["start"]}
                               for s in services])
    given(con, "core.subscriptions", [{"subscription_id": s["subscription_id"], "account_id": s["account_id"],
                                       "product_id": s["product_id"], "start_date": s["start"],
                                       "created_order_id": s["subscription_id"]} for s in services])
    given(con, "core.subscription_versions", [{"subscription_id": s["subscription_id"], "account_id": s["account_id"],
                                               "product_id": s["product_id"], "plan_id": s["plan_id"],
                                               "valid_from": s["start"], "order_id": s["subscription_id"]} for s in services])
    usage(con, events)
    return con


def usage(con, events) -> None:
    given(con, "core.usage_events", [{"event_id": f"e{n}", "metric": "data_mb", **e} for n, e in enumerate(events)])


def month_end(con, month: date) -> None:
    """The billing month ``month`` as the bill cycle and finalize jobs run it: rate, settle and draft, finalize."""
    rating = rate_usage(con, month)
    write(con, [("billing.rated_usage", rating.rated, "billing_month = ?"),
                ("billing.unrated_usage", rating.unrated, "billing_month = ?")], [month])
    bill_month(con, month)
    finalize(con, month)


def contract_revenue(con, contract_id: str) -> list[tuple]:
    """(obligation is an estimate, concerns month, accounting month, amount) posted for ``contract_id``."""
    return con.execute("""SELECT starts_with(obligation_id, 'ACCRUED-'), concerns_month, accounting_month, amount
                          FROM revenue.recognized WHERE contract_id = ? ORDER BY ALL""", [contract_id]).fetchall()


def derived(con) -> dict:
    return {t: con.execute(f"SELECT * EXCLUDE (run_id) FROM {t} ORDER BY ALL").fetchall() if t.endswith("journal_lines")
            else con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in DERIVED_TABLES}


def assert_books_agree(con) -> None:
    assert revenue_problems(con) == {name: [] for name in revenue_problems(con)}


def usage_in_progress(late_event: bool):
    """Account 1, bill cycle day 15, from Mar 15: ORD-10 data (0.01 per MB, in arrears), ORD-11 Mobile M (30.00 a
    month in advance). 600 MB used on Mar 20. March's run (Mar 15) bills ORD-11's [Mar 15, Apr 15) 30.00; the data
    of [Mar 15, Apr 15) is invoiced by April's run (Apr 15). March is closed in between; then (``late_event``:
    50 MB more on Mar 25, landed after the close) April is billed, finalized and refreshed."""
    con = warehouse([{"account_id": 1, "bill_cycle_day": 15}],
                    [{"subscription_id": 10, "account_id": 1, "plan_id": 200, "product_id": 2, "start": "2025-03-15"},
                     {"subscription_id": 11, "account_id": 1, "plan_id": 100, "product_id": 1, "start": "2025-03-15"}],
                    [{"subscription_id": 10, "quantity": "600", "event_time": "2025-03-20 10:00"}])
    month_end(con, MAR)
    march = close_month(con, MAR)
    refresh(con)
    closed = derived(con)
    temp_tables = "SELECT table_name FROM duckdb_tables() WHERE temporary ORDER BY 1"
    before = con.execute(temp_tables).fetchall()  # the bill runs' own ratings (month_end)
    refresh(con)  # a re-run changes nothing
    assert derived(con) == closed
    # and leaves nothing behind: the estimate's rating, fingerprints and settlement are dropped (drop_rating)
    assert con.execute(temp_tables).fetchall() == before
    if late_event:
        usage(con, [{"subscription_id": 10, "quantity": "600", "event_time": "2025-03-20 10:00"},
                    {"subscription_id": 10, "quantity": "50", "event_time": "2025-03-25 10:00"}])
    month_end(con, APR)
    refresh(con)
    return con, march


def test_usage_of_a_period_in_progress_is_revenue_of_the_month_consumed_as_unbilled_ar():
    # The estimate: April's run rated over the events before Apr 1: 600 x 0.01 = 6.00 over [Mar 15, Apr 15), all of
    # it consumed in March. ORD-11: 30.00 x 17/31 = 16.4516 -> 16.45 (Mar 15..31). March: 16.45 + 6.00 = 22.45;
    # ORD-10 billed 0, recognized 6.00: unbilled AR 6.00; ORD-11 30.00 - 16.45 = 13.55 deferred; AR 30.00.
    con, march = usage_in_progress(late_event=False)
    assert march["totals"]["USD"] == {"revenue": "22.4500", "corrections": "0.0000", "deferred_revenue": "13.5500",
                                      "unbilled_ar": "6.0000", "contract_assets": "0.0000", "ar": "30.0000"}
    # April's invoice bills the data 6.00: the estimate's 6.00 posted for March is booked back (-6.00) and the line
    # books its 6.00 for March: 0, no entry concerning March; UNBILLED_AR 6.00 moves to AR.
    assert lines(con, "concerns_month = DATE '2025-03-01'") == []
    assert con.execute("""SELECT starts_with(obligation_id, 'ACCRUED-'), scheduled_amount, posted_amount, open_amount,
                                 booked_month FROM revenue.schedule
                          WHERE contract_id = 'ORD-10' AND service_month = ? ORDER BY 1""", [MAR]).fetchall() == [
        (False, D("6.00"), D("0"), D("6.00"), APR), (True, D("0"), D("6.00"), D("-6.00"), APR)]
    assert_books_agree(con)
    close_month(con, APR)
    refresh(con)
    assert contract_revenue(con, "ORD-10") == [(False, MAR, APR, D("6.00")), (True, MAR, MAR, D("6.00")),
                                               (True, MAR, APR, D("-6.00"))]
    assert_books_agree(con)


def test_a_late_event_invoiced_after_the_close_is_a_correction_of_the_difference():
    # April's run rates 650 MB: 6.50. Booked in April concerning March: 6.50 - 6.00 = 0.50 (REVENUE:MOBILE).
    con, _ = usage_in_progress(late_event=True)
    assert lines(con, "concerns_month = DATE '2025-03-01'") == [
        (APR, "RECOGNITION", "DEFERRED_REVENUE", D("0.50"), 0, MAR), (APR, "RECOGNITION", "REVENUE:MOBILE", 0, D("0.50"), MAR)]
    assert_books_agree(con)
    close_month(con, APR)
    assert con.execute("SELECT sum(amount) FROM revenue.recognized WHERE accounting_month = ? AND is_correction",
                       [APR]).fetchone() == (D("0.50"),)


def test_service_days_before_a_first_invoice_are_recognized_in_the_months_rendered():
    """Account 2 (quarterly, bill cycle day 1): Mobile M 30.00 a month in advance from Jan 10, first invoiced Apr 1 by
    March's run (charge periods of a month: [Jan 10, Feb 1), [Feb 1, Mar 1), [Mar 1, Apr 1) and, in advance, April to
    June). Account 1 (monthly, day 1, 10.00 a month from Jan 1) gives January its activity. Each close estimates
    account 2's periods started by the end of the latest month computed (January's run issues Feb 1: L = February)."""
    con = warehouse([{"account_id": 1}, {"account_id": 2, "billing_cycle": "QUARTERLY"}],
                    [{"subscription_id": 10, "account_id": 1, "plan_id": 300, "product_id": 1, "start": "2025-01-01"},
                     {"subscription_id": 20, "account_id": 2, "plan_id": 100, "product_id": 1, "start": "2025-01-10"}])
    for month in (JAN, FEB):
        month_end(con, month)
        close_month(con, month)
    refresh(con)
    # January: 30.00 x 22/31 (Jan 10..31 of a 31-day charge period) = 21.2903 -> 21.29. February: 28/28 of 30.00.
    # Both estimated at January's close (lines started before Mar 1); February's close books February's 30.00.
    assert contract_revenue(con, "ORD-20") == [(True, JAN, JAN, D("21.29")), (True, FEB, FEB, D("30.00"))]
    # At February's end (L = March): March's days too, provisional ([Mar 1, Apr 1) 30.00, 31/31) in the open month.
    assert con.execute("""SELECT service_month, open_amount FROM revenue.schedule WHERE contract_id = 'ORD-20'
                          AND open_amount <> 0""").fetchall() == [(MAR, D("30.00"))]
    # Unbilled AR at Feb 28: ORD-20 billed 0, recognized 21.29 + 30.00 = 51.29.
    assert con.execute("SELECT unbilled_ar FROM revenue.contract_balances WHERE contract_id = 'ORD-20' AND "
                       "accounting_month = ?", [FEB]).fetchone() == (D("51.29"),)
    assert_books_agree(con)
    closed = derived(con)
    refresh(con)
    assert derived(con) == closed
    # March's run issues the Apr 1 invoice at the estimated amounts: the estimates are booked back and the invoiced
    # lines book the same for January and February: no correction, nothing concerning a closed month in the journal.
    month_end(con, MAR)
    close_month(con, MAR)
    refresh(con)
    assert con.execute("""SELECT concerns_month, sum(amount) FROM revenue.recognized WHERE contract_id = 'ORD-20'
                          AND accounting_month = ? GROUP BY 1 ORDER BY 1""", [MAR]).fetchall() == [
        (JAN, D("0.00")), (FEB, D("0.00")), (MAR, D("30.00"))]
    assert con.execute("SELECT count(*) FROM revenue.journal_lines WHERE concerns_month < accounting_month "
                       "AND entry_type = 'RECOGNITION'").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM revenue.performance_obligations WHERE contract_id = 'ORD-20' "
                       "AND starts_with(obligation_id, 'ACCRUED-')").fetchone() == (0,)
    # Each estimate was 'ACCRUED-' || the id of the line that invoiced it (the settlement line's, kept when issued).
    assert con.execute("""SELECT DISTINCT obligation_id FROM revenue.recognized WHERE contract_id = 'ORD-20'
                          AND starts_with(obligation_id, 'ACCRUED-') ORDER BY 1""").fetchall() == con.execute(
        """SELECT 'ACCRUED-' || line_id FROM ledger.document_lines WHERE account_id = 2 AND service_start < ?
           ORDER BY 1""", [MAR]).fetchall()
    assert_books_agree(con)
