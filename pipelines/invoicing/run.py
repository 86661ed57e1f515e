"""One bill run's invoicing step, written: what the invoicing asset and the benchmark call (docs/billing.md).

:func:`bill_month` settles ``month`` (``build_settlement_lines``, computed once) and writes its drafts (lines and
headers), its review and its exceptions in one transaction, replacing the month's; a finalized month is left
as it is. Settlement is per account, so it runs over shards of at most :data:`ACCOUNTS_PER_SHARD` accounts
(contiguous account_id ranges): memory stays bounded whatever the number of accounts. Each shard first
fingerprints its accounts (``build_settlement_fingerprints``): an account nothing changed for since its previous
run is settled from its current period (docs/billing.md "Incremental settlement"); what each account's run
settled is written to billing.settlement_inputs. No Dagster imports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import duckdb

from pipelines.invoicing.engine import (
    CREDIT_NOTE_CUSTOMER_TYPES,
    INPUT_DEFAULTS,
    LOOKBACK_MONTHS,
    build_invoices,
    build_settlement_fingerprints,
    build_settlement_lines,
)
from pipelines.invoicing.review import billing_exceptions, settlement_review
from warehouse.writer import write


def is_finalized(con: duckdb.DuckDBPyConnection, month: date) -> bool:
    """``month`` is in ledger.finalized_months."""
    return con.execute("SELECT count(*) FROM ledger.finalized_months WHERE billing_month = ?", [month]).fetchone()[0] > 0


ACCOUNTS_PER_SHARD = 200_000
"""Accounts settled together: at 1M accounts, one statement over all of them would not fit a 4 GB DuckDB."""


def shard_ranges(con: duckdb.DuckDBPyConnection, accounts_per_shard: int, accounts: str = "core.billing_accounts") -> list[str]:
    """SQL conditions on ``account_id``, one per shard of at most about ``accounts_per_shard`` accounts: contiguous
    ranges (split at quantiles of ``accounts``), so a shard's ledger and draft lines, written shard by
    shard, sit in few row groups that the next run's shard reads and the others skip (zone maps)."""
    n = con.execute(f"SELECT count(*) FROM {accounts}").fetchone()[0]
    shards = max(1, -(-n // accounts_per_shard))
    if shards == 1:
        return ["true"]
    cuts = con.execute(f"SELECT quantile_disc(account_id, ?) FROM {accounts}",
                       [[k / shards for k in range(1, shards)]]).fetchone()[0]
    lows, highs = [None, *cuts], [*cuts, None]
    return [" AND ".join([f"account_id >= {lo}"] * (lo is not None) + [f"account_id < {hi}"] * (hi is not None))
            for lo, hi in zip(lows, highs)]


SHARD_RESTRICTED = ("document_lines", "billed", "rated", "settlement_inputs")
"""The per-account inputs a shard reads through a filter on its account range (so the scans of the ledger, the
drafts, the rated usage and the earlier runs' fingerprints skip the other shards' rows instead of every shard
reading all of them); the go-live month is still taken over the whole ledger and drafts (``all_document_lines``,
``all_billed``)."""


@contextmanager
def settled(con: duckdb.DuckDBPyConnection, month: date, accounts_per_shard: int = ACCOUNTS_PER_SHARD,
            incremental: bool = True, **options) -> Iterator[tuple[str, str]]:
    """``build_settlement_lines`` of ``month`` evaluated shard by shard (:func:`shard_ranges`) into one temp table,
    and what it settled per account (the rows of billing.settlement_inputs) into another: their names. With
    ``incremental`` false every account is settled in full (the fingerprints are still written). ``options``: the
    engine's (lookback, input relations by name)."""
    temps = ("_month_settlement", "_month_settlement_inputs", "_shard_fingerprints", "_month_fingerprints")
    all_accounts = options.pop("accounts", "core.billing_accounts")
    whole = {name: options.get(name, INPUT_DEFAULTS[name]) for name in SHARD_RESTRICTED}
    try:
        for shard, accounts in enumerate(shard_ranges(con, accounts_per_shard, all_accounts)):
            con.execute(f"CREATE OR REPLACE TEMP VIEW _settling_accounts AS SELECT * FROM {all_accounts} "
                        f"WHERE {accounts}")
            for name, relation in whole.items():  # the shard's rows only: a range filter the scans apply
                con.execute(f"CREATE OR REPLACE TEMP VIEW _shard_{name} AS SELECT * FROM {relation} WHERE {accounts}")
            shard_options = {**options, **{name: f"_shard_{name}" for name in whole},
                             "all_document_lines": whole["document_lines"], "all_billed": whole["billed"]}
            fingerprints = build_settlement_fingerprints(con, month, accounts="_settling_accounts", **shard_options)
            in_full = "" if incremental else " REPLACE (true AS resettle)"
            con.execute(f"CREATE OR REPLACE TEMP TABLE _shard_fingerprints AS SELECT *{in_full} "
                        f"FROM ({fingerprints.sql_query()})")
            lines = build_settlement_lines(con, month, accounts="_settling_accounts", resettled="_shard_fingerprints",
                                           **shard_options)
            lines.create_view("_settling_shard", replace=True)
            into = "CREATE TEMP TABLE {} AS" if shard == 0 else "INSERT INTO {}"
            con.execute(f"{into.format('_month_settlement')} SELECT * FROM _settling_shard")
            con.execute(f"{into.format('_month_fingerprints')} SELECT * FROM _shard_fingerprints")
        con.execute("""CREATE TEMP TABLE _month_settlement_inputs AS
            SELECT CAST(? AS DATE) AS billing_month, f.account_id, f.period_start, f.period_end, f.inputs_hash,
                   f.resettle AS resettled, b.account_id IS NULL AS settled_clean
            FROM _month_fingerprints f
            LEFT JOIN (SELECT DISTINCT account_id FROM _month_settlement WHERE beyond_lookback) b USING (account_id)""",
                    [month])
        yield temps[0], temps[1]
    finally:
        con.execute("DROP VIEW IF EXISTS _settling_shard")
        con.execute("DROP VIEW IF EXISTS _settling_accounts")
        for name in SHARD_RESTRICTED:
            con.execute(f"DROP VIEW IF EXISTS _shard_{name}")
        for table in temps:
            con.execute(f"DROP TABLE IF EXISTS {table}")


def bill_month(con: duckdb.DuckDBPyConnection, month: date, *, lookback_months: int = LOOKBACK_MONTHS,
               credit_note_customer_types=CREDIT_NOTE_CUSTOMER_TYPES,
               accounts_per_shard: int = ACCOUNTS_PER_SHARD, incremental: bool = True) -> dict[str, int] | None:
    """Settle and write ``month``: rows written per table, or None when the month is finalized (nothing written).
    ``incremental`` false settles every account in full (the same drafts, more work)."""
    if is_finalized(con, month):
        return None
    with settled(con, month, accounts_per_shard, incremental, lookback_months=lookback_months,
                 credit_note_customer_types=credit_note_customer_types) as (differences, settlement_inputs):
        drafted = f"(SELECT * EXCLUDE (beyond_lookback) FROM {differences} WHERE NOT beyond_lookback)"
        return write(con, [
            ("billing.invoice_lines", con.sql(f"SELECT * FROM {drafted}"), "billing_month = ?"),
            ("billing.invoices", build_invoices(con, month, drafted), "billing_month = ?"),
            ("billing.settlement_review", settlement_review(con, month, differences), "billing_month = ?"),
            ("billing.billing_exceptions", billing_exceptions(con, month, differences), "billing_month = ?"),
            ("billing.settlement_inputs", con.sql(f"SELECT * FROM {settlement_inputs}"), "billing_month = ?"),
        ], [month])
