"""bill_month settles accounts in shards: the drafts, review and exceptions are the same whatever the shard size."""

from datetime import date

import duckdb
import pytest

from benchmarks.invoicing import MONTHS, fill_rated_usage, fill_state
from domain import install_macros
from pipelines.invoicing.run import bill_month
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


def test_shards_give_the_same_drafts_as_one_statement(con):
    february, march = MONTHS
    whole = bill_month(con, february, accounts_per_shard=10**9)
    one = month_rows(con, february)
    sharded = bill_month(con, february, accounts_per_shard=150)  # 7 shards: account_id % 7
    assert sharded == whole and month_rows(con, february) == one
    assert whole["billing.invoices"] > 900 and whole["billing.invoice_lines"] > whole["billing.invoices"]
    # and a month settled against an issued one: March after February is finalized
    finalize(con, february)
    whole = bill_month(con, march, accounts_per_shard=10**9)
    one = month_rows(con, march)
    assert bill_month(con, march, accounts_per_shard=250) == whole and month_rows(con, march) == one
    assert whole["billing.invoices"] > 900  # March's invoices: the fees of April, March's usage
