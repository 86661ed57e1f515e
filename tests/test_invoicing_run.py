"""bill_month settles accounts in shards: the drafts, review and exceptions are the same whatever the shard size."""

from datetime import date

import duckdb
import pytest

from benchmarks.invoicing import MONTHS, fill_rated_usage, fill_state
from domain import install_macros
from pipelines.invoicing.run import bill_month, shard_ranges
from pipelines.ledger import finalize
from warehouse.migrations import migrate

TABLES = ("billing.invoice_lines", "billing.invoices", "billing.settlement_review", "billing.billing_exceptions")


@pytest.fixture(scope="module")
def con():
    con = install_macros(duckdb.connect())
    migrate(con)
    fill_state(con, 1_000)  # 1,000 accounts: monthly and quarterly, days 1 and 15, USD/EUR, bundles, annual plans
    for month in MONTHS:
        fill_rated_usage(con, month)
    return con


def month_rows(con, month: date) -> dict[str, list]:
    return {t: con.execute(f"SELECT * FROM {t} WHERE billing_month = ? ORDER BY ALL", [month]).fetchall() for t in TABLES}


def test_shard_ranges_split_the_accounts_into_contiguous_ranges(con):
    """1,000 accounts (ids 1..1000), at most 150 a shard: 7 ranges cut at the 1/7 .. 6/7 quantiles of the ids,
    every account in exactly one; a single shard takes every account."""
    ranges = shard_ranges(con, 150)
    sizes = [con.execute(f"SELECT count(*) FROM core.billing_accounts WHERE {r}").fetchone()[0] for r in ranges]
    assert len(ranges) == 7 and sum(sizes) == 1000 and max(sizes) <= 150
    assert ranges[0].startswith("account_id < ") and ranges[-1].startswith("account_id >= ")
    assert all(" AND " in r for r in ranges[1:-1]) and " AND " not in ranges[0] + ranges[-1]
    assert shard_ranges(con, 10**9) == ["true"]


def test_shards_give_the_same_drafts_as_one_statement(con):
    february, march = MONTHS
    whole = bill_month(con, february, accounts_per_shard=10**9)
    one = month_rows(con, february)
    sharded = bill_month(con, february, accounts_per_shard=150)  # 7 shards: account_id ranges
    assert sharded == whole and month_rows(con, february) == one
    assert whole["billing.invoices"] > 900 and whole["billing.invoice_lines"] > whole["billing.invoices"]
    # and a month settled against an issued one: March after February is finalized
    finalize(con, february)
    whole = bill_month(con, march, accounts_per_shard=10**9)
    one = month_rows(con, march)
    assert bill_month(con, march, accounts_per_shard=250) == whole and month_rows(con, march) == one
    assert whole["billing.invoices"] > 900  # March's invoices: the fees of April, March's usage


def test_revenue_over_the_benchmark_ledger_passes_every_check(con):
    """The revenue benchmark's work, small: February and March of the benchmark's 1,000 accounts finalized (quarterly,
    annual in advance, bundles, upgrades, disconnects), every revenue table recomputed, and every revenue check
    passes; each ledger line is an obligation."""
    from pipelines.revenue.checks import revenue_problems
    from pipelines.revenue.close import refresh

    february, march = MONTHS
    if not con.execute("SELECT count(*) FROM ledger.finalized_months WHERE billing_month = ?", [february]).fetchone()[0]:
        bill_month(con, february)
        finalize(con, february)
    bill_month(con, march)
    finalize(con, march)
    refresh(con, "test")
    assert {name: problems for name, problems in revenue_problems(con).items() if problems} == {}
    lines, obligations = con.execute("SELECT (SELECT count(*) FROM ledger.document_lines), "
                                     "count(*) FILTER (WHERE line_id IS NOT NULL) FROM revenue.performance_obligations").fetchone()
    assert lines == obligations > 5_000
