"""Incremental settlement (pipelines/invoicing/fingerprints.py): an account nothing changed for since its previous,
finalized, clean bill run is settled from its current period, and that finds exactly what a full settlement finds.
The bill run's own settlement (pipelines/invoicing/run.py ``settled``) over the test inputs of test_invoicing."""

from __future__ import annotations

import random
from datetime import date, datetime
from decimal import Decimal as D

import duckdb
import pytest

from domain import install_macros
from pipelines.invoicing.run import settled
from tests.test_invoicing import (
    BASIC,
    BILLED,
    INPUTS,
    JAN,
    JANUARY_USAGE,
    MONTHS,
    PLUS,
    _history,
    _ins,
    _state_as_known_at,
    account,
    finalize,
    given,
    replace_versions,
    version,
)
from warehouse.ddl import create_tables

FEB, MAR, APR = date(2025, 2, 1), date(2025, 3, 1), date(2025, 4, 1)


@pytest.fixture
def con():
    c = install_macros(duckdb.connect())
    create_tables(c, ["billing.settlement_inputs"])
    yield c
    c.close()


def bill_run(con, month, *, incremental=True, lookback_months=12):
    """A bill run's settlement of ``month`` over the test inputs, as bill_month does it: the drafts replace the
    month's in core.invoice_lines, what it settled per account replaces the month's billing.settlement_inputs.
    Returns (the lines as dicts, sorted; {account_id: resettled})."""
    with settled(con, month, 2, incremental, lookback_months=lookback_months, **INPUTS) as (lines, inputs):
        rel = con.sql(f"SELECT * FROM {lines} ORDER BY ALL")
        rows = [dict(zip(rel.columns, r)) for r in rel.fetchall()]
        con.execute(f"DELETE FROM {BILLED} WHERE billing_month = ?", [month])
        con.execute(f"INSERT INTO {BILLED} BY NAME SELECT * EXCLUDE (beyond_lookback) FROM {lines} "
                    "WHERE NOT beyond_lookback")
        con.execute("DELETE FROM billing.settlement_inputs WHERE billing_month = ?", [month])
        con.execute(f"INSERT INTO billing.settlement_inputs BY NAME SELECT * FROM {inputs}")
        resettled = dict(con.execute(f"SELECT account_id, resettled FROM {inputs}").fetchall())
    return rows, resettled


def both_ways(con, month, **options):
    """The month settled in full, then incrementally (stored): both line sets, and who was resettled."""
    full, _ = bill_run(con, month, incremental=False, **options)
    # the full run stored its fingerprints as resettled; the incremental one replaces them
    incremental, resettled = bill_run(con, month, **options)
    return full, incremental, resettled


def test_an_unchanged_account_is_settled_from_its_current_period(con):
    """Basic (29.99, monthly in advance) from Jan 1, billed and finalized in January: February's run finds the
    account unchanged (its January run billed the period ending Feb 1, was clean and is finalized) and settles it
    from Feb 1: March in advance, 29.99, as a full settlement does. An upgrade to Plus from Feb 15 landing before
    the March run changes its versions: March settles it in full (credit Basic 15 Feb - 31 Mar, charge Plus)."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, JAN)])
    _, resettled = bill_run(con, JAN)
    assert resettled == {1: True}  # a first bill: nothing to compare
    finalize(con, JAN)
    full, incremental, resettled = both_ways(con, FEB)
    assert resettled == {1: False} and incremental == full
    assert [(r["line_type"], r["service_start"], r["amount"]) for r in incremental] == [("RECURRING", MAR, D("29.99"))]
    finalize(con, FEB)
    replace_versions(con, version(1, 1, BASIC, JAN, date(2025, 2, 15)), version(2, 1, PLUS, date(2025, 2, 15)))
    full, incremental, resettled = both_ways(con, MAR)
    assert resettled == {1: True} and incremental == full
    assert {r["line_type"] for r in incremental} == {"RECURRING", "RECURRING_CREDIT"}


def test_a_previous_run_not_finalized_or_a_void_settles_in_full(con):
    """January billed, not finalized: February settles account 1 in full. January finalized, then its invoice
    voided: February settles in full again and bills January again (reason VOIDED), as a full settlement does."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, JAN)])
    bill_run(con, JAN)
    full, incremental, resettled = both_ways(con, FEB)
    assert resettled == {1: True} and incremental == full
    finalize(con, JAN)
    assert both_ways(con, FEB)[2] == {1: False}
    (document_id, number) = con.execute("SELECT DISTINCT document_id, document_number FROM core.document_lines").fetchone()
    _ins(con, "core.voids", document_id=document_id, document_number=number, document_type="INVOICE", account_id=1,
         currency="USD", total=D("0"), reason="issued in error", voided_on=FEB, voided_at=datetime(2025, 2, 3))
    full, incremental, resettled = both_ways(con, FEB)
    assert resettled == {1: True} and incremental == full
    assert ("RECURRING", JAN, D("29.99"), "VOIDED") in {
        (r["line_type"], r["service_start"], r["amount"], r["adjustment_reason"]) for r in incremental}


def test_late_usage_rerated_for_a_finalized_month_settles_in_full(con):
    """Usage r1 of January (5.00) billed and finalized; re-rated to 7.00 before February's run (late events):
    the account's rated lines of the months settled changed, so February settles it in full and adjusts
    January by 7.00 - 5.00 = 2.00 (LATE_USAGE), as a full settlement does."""
    given(con, accounts=[account(1)], versions=[version(1, 1, BASIC, JAN)], rated=[JANUARY_USAGE])
    bill_run(con, JAN)
    finalize(con, JAN)
    assert both_ways(con, FEB)[2] == {1: False}
    con.execute("UPDATE core.rated_usage SET amount_precise = 7, amount = 7.00, quantity = 700 WHERE rated_line_id = 'r1'")
    full, incremental, resettled = both_ways(con, FEB)
    assert resettled == {1: True} and incremental == full
    assert [(r["amount"], r["adjustment_reason"]) for r in incremental if r["line_type"] == "USAGE_ADJUSTMENT"] == [
        (D("2.00"), "LATE_USAGE")]


def test_incremental_settlement_equals_full_settlement_for_random_histories():
    """8 random histories (test_invoicing's: services started, changed and ended late or backdated, orders
    confirmed then failing payment, usage rated then, for a quarter of the lines, re-rated month after month),
    their facts landing month by month, some months finalized: every month, settling unchanged accounts from their
    current period drafts exactly the lines of a full settlement; and it did settle some accounts that way (the
    test would see a difference)."""
    settled_from_current_period = 0
    for seed in range(8):
        rng = random.Random(seed)
        history = _history(rng)
        for u in history[3]:  # most rated lines keep their first amount
            if rng.random() < 0.75:
                first = next(a for a in u["amounts"] if a is not None)
                u["amounts"] = [None if a is None else first for a in u["amounts"]]
        finalize_through = rng.randrange(-1, len(MONTHS))
        c = install_macros(duckdb.connect())
        create_tables(c, ["billing.settlement_inputs"])
        given(c, accounts=history[0])
        for i, month in enumerate(MONTHS):
            _state_as_known_at(c, i, *history)
            incremental, resettled = bill_run(c, month)
            if not all(resettled.values()):  # some account settled from its current period: compare with a full run
                full, _ = bill_run(c, month, incremental=False)
                assert incremental == full, (seed, month)
                settled_from_current_period += sum(not r for r in resettled.values())
            if i <= finalize_through:
                finalize(c, month)
        c.close()
    assert settled_from_current_period >= 4
