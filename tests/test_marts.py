"""The marts over a warehouse built by the real Dagster jobs: tests/test_lifecycle.py's five accounts billed, finalized
and paid for January and February (January closed), then the ``marts`` asset materialized.

January: A, D, B on Mobile S (20.00 a month, in advance), B and F on Broadband (40.00); C's service from Jan 10 and B's
Mobile S disconnect backdated to Jan 20 land in February; D is disconnected on Feb 1 (its phone order fails); F's
January invoice is voided and billed again. So January's MRR at month end is A 20 + D 20 + B 40 (its Mobile S credited
from Jan 20) + C 20 + F 40 = 140.00, and February's A 20 + B 40 + C 20 + F 40 = 120.00 (D churned).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal as D
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.assets.marts import marts
from pipelines.marts import CHECKS, MART_ROWS, mart_problems
from pipelines.resources import LandingZone, Warehouse
from tests.pipeline import (failed_checks, run_apply_payments, run_bill_cycle, run_close_month, run_finalize, run_ingest,
                            run_revenue)
from tests.extracts import write_usage
from tests.test_lifecycle import A, B, C, D_, F, FEB, JAN, _usage, land_batch_1, land_batch_2
from warehouse.tables import TABLES

MALFORMED_CUSTOMER = '{"payload": {"after": {"customer_id": 99, "name": "Quarantined Person", "email": "quarantined@example.org"'
"""A customers record cut short (invalid JSON): quarantined with its raw payload, which carries personal data."""


UNRATED_ALLOWED = {"ops": {"rating": {"config": {"max_unrated_share": 0.5}}}}
"""January's one event of an unknown service is half its usage: let it through (unrated usage has an example query)."""


def build_warehouse(tmp: Path) -> tuple[Path, dict[str, dg.ExecuteInProcessResult]]:
    """Land, ingest, bill, finalize, pay, recognize and close as finance would (January closed, February finalized),
    then materialize the marts; return the warehouse and every run."""
    w, l = tmp / "warehouse.duckdb", tmp / "landing"
    i = dg.DagsterInstance.ephemeral()
    land_batch_1(l)
    bad = l / "crm" / "customers" / "customers-2024-12-16.jsonl"
    bad.write_text(MALFORMED_CUSTOMER + "\n")
    write_usage(l, "usage_records-2025-01-30.parquet", [_usage(2, "x-1", 9999, "5", datetime(2025, 1, 6))])  # no such service
    runs = {"ingest 1": run_ingest(w, l, i), "bill 2025-01": run_bill_cycle(w, l, JAN, instance=i, run_config=UNRATED_ALLOWED),
            "finalize 2025-01": run_finalize(w, l, JAN, i), "payments 1": run_apply_payments(w, l, i),
            "revenue 1": run_revenue(w, l, i), "close 2025-01": run_close_month(w, l, JAN, i)}
    land_batch_2(l)
    runs |= {"ingest 2": run_ingest(w, l, i), "bill 2025-02": run_bill_cycle(w, l, FEB, instance=i),
             "finalize 2025-02": run_finalize(w, l, FEB, i), "payments 2": run_apply_payments(w, l, i),
             "revenue 2": run_revenue(w, l, i)}
    runs["marts"] = dg.materialize([marts], resources={"warehouse": Warehouse(path=str(w)), "landing": LandingZone(path=str(l))},
                                   instance=i, raise_on_error=False)
    return w, runs


_BUILT: list[tuple[Path, dict[str, dg.ExecuteInProcessResult]]] = []


def built_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dg.ExecuteInProcessResult]]:
    """The warehouse built once per test session (the marts, snapshot and example tests share it; they only read it)."""
    if not _BUILT:
        _BUILT.append(build_warehouse(tmp_path_factory.mktemp("marts")))
    return _BUILT[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return built_once(tmp_path_factory)


@pytest.fixture(scope="module")
def con(built):
    with duckdb.connect(str(built[0]), read_only=True) as con:
        yield con


def rows(con, sql, params=None):
    return con.execute(sql, params).fetchall()


def test_every_run_succeeds_and_every_mart_check_passes(built):
    _, runs = built
    assert {name: (r.success, failed_checks(r)) for name, r in runs.items()} == {name: (True, []) for name in runs}
    evaluated = {e.asset_check_evaluation_data.check_name for e in runs["marts"].all_events
                 if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert evaluated == set(CHECKS)


def test_every_mart_has_rows_and_its_declared_key_is_unique(con):
    for table in MART_ROWS:
        key = ", ".join(TABLES[table].key)
        count, keys = rows(con, f"SELECT count(*), count(DISTINCT ({key})) FROM {table}")[0]
        assert count > 0 and keys == count, table


def test_mrr_spine_per_customer_with_its_movements(con):
    # customers 1..5 own accounts A, D, B, C, F
    got = rows(con, "SELECT month, customer_id, mrr, previous_mrr, movement FROM marts.customer_mrr ORDER BY ALL")
    assert got == [
        (JAN, 1, D("20.0000"), D("0"), "NEW"), (JAN, 2, D("20.0000"), D("0"), "NEW"), (JAN, 3, D("40.0000"), D("0"), "NEW"),
        (JAN, 4, D("20.0000"), D("0"), "NEW"), (JAN, 5, D("40.0000"), D("0"), "NEW"),
        (FEB, 1, D("20.0000"), D("20.0000"), "UNCHANGED"), (FEB, 2, D("0"), D("20.0000"), "CHURN"),
        (FEB, 3, D("40.0000"), D("40.0000"), "UNCHANGED"), (FEB, 4, D("20.0000"), D("20.0000"), "UNCHANGED"),
        (FEB, 5, D("40.0000"), D("40.0000"), "UNCHANGED"),
    ]


def test_mrr_movements_sum_to_the_month_over_month_change(con):
    got = rows(con, """SELECT month, mrr, arr, previous_mrr, new_mrr, churned_mrr, net_change, active_customers
                       FROM marts.mrr_movements ORDER BY month""")
    assert got == [(JAN, D("140"), D("1680"), D("0"), D("140"), D("0"), D("140"), 5),
                   (FEB, D("120"), D("1440"), D("140"), D("0"), D("-20"), D("-20"), 4)]
    # independently of the mart check: per month the movements add up to the change of the customers' MRR
    (bad,) = rows(con, """
        SELECT count(*) FROM marts.mrr_movements m
        JOIN (SELECT month, currency, sum(mrr) AS mrr FROM marts.customer_mrr GROUP BY ALL) c USING (month, currency)
        WHERE m.previous_mrr + m.new_mrr + m.reactivation_mrr + m.expansion_mrr + m.contraction_mrr + m.churned_mrr
              <> c.mrr""")[0]
    assert bad == 0


def test_customer_churn_and_arpu(con):
    got = rows(con, """SELECT month, customers_at_start, new_customers, churned_customers, customers_at_end, churn_rate, arpu
                       FROM marts.customer_churn ORDER BY month""")
    assert got == [(JAN, 0, 5, 0, 5, None, D("28.0000")), (FEB, 5, 0, 1, 4, D("0.200000"), D("30.0000"))]


def test_revenue_by_product_matches_the_trial_balance_revenue(con):
    by_month = dict(rows(con, "SELECT accounting_month, sum(revenue + corrections) FROM marts.revenue_by_product GROUP BY 1"))
    books = dict(rows(con, """SELECT accounting_month, sum(credits - debits) FROM revenue.trial_balance
                              WHERE account LIKE 'REVENUE:%' OR account LIKE 'CONTRA_REVENUE:%' GROUP BY 1"""))
    assert by_month == books and by_month[JAN] == D("450.0000")  # docs of tests/test_revenue_pipeline.py: Jan 450.00
    types = {t for (t,) in rows(con, "SELECT DISTINCT customer_type FROM marts.revenue_by_product")}
    assert types == {"INDIVIDUAL", "BUSINESS"}


def test_deferred_rollforward_opening_plus_billings_minus_recognized_is_closing(con):
    got = rows(con, """SELECT accounting_month, opening_net_deferred + billings - recognized - corrections - closing_net_deferred,
                              month_status FROM marts.deferred_revenue_rollforward ORDER BY 1""")
    assert [(m, diff) for m, diff, _ in got][:2] == [(JAN, 0), (FEB, 0)] and got[0][2] == "CLOSED"
    chained = rows(con, """SELECT count(*) FROM marts.deferred_revenue_rollforward f JOIN marts.deferred_revenue_rollforward p
                           ON p.currency = f.currency AND p.accounting_month = f.accounting_month - INTERVAL 1 MONTH
                           WHERE f.opening_net_deferred <> p.closing_net_deferred""")
    assert chained == [(0,)]


def test_waterfall_recognizes_each_billed_month_in_full(con):
    got = rows(con, """SELECT billed_month, sum(amount), any_value(billed_total), arg_max(remaining_amount, recognition_month)
                       FROM marts.revenue_waterfall GROUP BY 1 ORDER BY 1""")
    assert all(total == billed and remaining == 0 for _, total, billed, remaining in got) and got
    source = dict(rows(con, "SELECT billed_month, sum(amount) FROM revenue.waterfall GROUP BY 1"))
    assert {m: total for m, total, _, _ in got} == source


def test_ar_aging_totals_are_billing_ar_aging(con):
    mart = rows(con, "SELECT month, sum(open_ar), sum(accounts) FROM marts.ar_aging GROUP BY 1 ORDER BY 1")
    source = rows(con, "SELECT billing_month, sum(open_ar), count(*) FROM billing.ar_aging GROUP BY 1 ORDER BY 1")
    assert mart == source and mart
    assert rows(con, """SELECT count(*) FROM marts.ar_aging
                        WHERE open_ar <> current_amount + days_1_30 + days_31_60 + days_61_90 + days_over_90""") == [(0,)]


def test_customer_360_one_row_per_account_with_services_invoices_balance_and_payment(con):
    got = {r[0]: r[1:] for r in rows(con, """
        SELECT account_id, as_of, active_services, active_products, mrr, balance, open_ar - account_credit
        FROM marts.customer_360""")}
    assert set(got) == {A, D_, B, C, F}
    assert got[D_][:4] == (date(2025, 2, 28), 0, None, D("0"))  # disconnected Feb 1
    assert got[B][1:4] == (1, "Broadband", D("40.0000"))  # Mobile S ended Jan 20
    assert all(balance == net for *_, balance, net in got.values())
    balances = dict(rows(con, "SELECT account_id, balance FROM billing.account_balances"))
    assert {a: v[4] for a, v in got.items() if a in balances} == balances
    (payment,) = rows(con, "SELECT last_payment_at, last_payment_amount FROM marts.customer_360 WHERE account_id = ?", [A])
    assert payment == rows(con, """SELECT received_at, amount FROM ledger.payment_events WHERE account_id = ?
                                   AND status = 'SUCCEEDED' ORDER BY received_at DESC LIMIT 1""", [A])[0]


def test_a_broken_invariant_is_reported_by_its_check(built, tmp_path):
    copy = tmp_path / "broken.duckdb"
    copy.write_bytes(built[0].read_bytes())
    with duckdb.connect(str(copy)) as con:
        con.execute("UPDATE marts.mrr_movements SET new_mrr = new_mrr + 1 WHERE month = ?", [JAN])
        con.execute("UPDATE marts.revenue_by_product SET revenue = revenue + 1 WHERE accounting_month = ?", [FEB])
        problems = mart_problems(con)
    assert {name for name, bad in problems.items() if bad} == {"mrr_movements_add_up", "revenue_matches_the_books"}
