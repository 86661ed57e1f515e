"""Period close, step by step on given rows (pipelines/revenue/close.py, checks.py): what a closing month posts, the
hash it stores, the refusals, and each revenue check failing on a deliberately broken fixture.

The end-to-end close through the real Dagster jobs (close January, late changes, corrections in February) is
tests/test_revenue_pipeline.py.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from decimal import Decimal as D

import duckdb
import pytest

from domain import install_macros
from domain.periods import month_literal
from pipelines.revenue.checks import (allocation_sum_mismatches, changed_closed_months, month_hashes,
                                      revenue_outside_service_period, schedule_sum_mismatches)
from pipelines.revenue.close import close_refusal, closed_month_row, journal_line_rows, recognized_rows
from warehouse.ddl import create_tables
from warehouse.fixtures import create_table_with_rows
from warehouse.tables import TABLES

JAN, FEB, MAR = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)
AT, RUN = "TIMESTAMP '2025-03-02 08:00:00'", "'run-feb'"


@pytest.fixture
def con():
    c = install_macros(duckdb.connect())
    create_tables(c)  # every contract table, empty
    yield c
    c.close()


def fill(con, table, rows, **defaults):
    con.execute(f"DROP TABLE {table}")
    create_table_with_rows(con, table, rows, defaults)


def schedule(obligation, month, scheduled, posted, booked, **kw):
    return dict(obligation_id=obligation, contract_id="ORD-1", account_id=1, currency="USD", obligation_kind="SERVICE",
                product_line="MOBILE", service_month=month, scheduled_amount=scheduled, cumulative_amount=scheduled,
                posted_amount=posted, open_amount=D(scheduled) - D(posted), booked_month=booked, **kw)


def journal(line_id, month, account, debit, credit, concerns=None, currency="USD", entry="RECOGNITION", run="run-open"):
    return dict(journal_line_id=line_id, accounting_month=month, currency=currency, entry_type=entry, entry_id=f"E-{line_id}",
                account=account, account_type="ASSET", debit=debit, credit=credit, concerns_month=concerns or month,
                description="test line", run_id=run)


def posted(month, obligation, concerns, amount, currency="USD", run="run-jan"):
    return dict(accounting_month=month, obligation_id=obligation, contract_id="ORD-1", account_id=1, currency=currency,
                obligation_kind="SERVICE", product_line="MOBILE", concerns_month=concerns, amount=amount,
                is_correction=concerns < month, run_id=run)


# what closing a month posts --------------------------------------------------------------------------------

def test_closing_a_month_posts_the_open_amounts_booked_in_it_a_closed_month_concerned_flagged_a_correction(con):
    """F = February (January closed). O1 had 31.00 scheduled in January of which January posted 12.00: the 19.00
    left is booked in February as a correction concerning January; O1's February 5.00 is February's own; O2's March
    is booked in March; O3's February is fully posted already (open 0): nothing."""
    fill(con, "revenue.schedule", [
        schedule("O1", JAN, "31.00", "12.00", FEB),
        schedule("O1", FEB, "5.00", "0", FEB),
        schedule("O2", MAR, "7.00", "0", MAR),
        schedule("O3", FEB, "3.00", "3.00", FEB),
    ])
    rows = con.execute(f"SELECT * FROM ({recognized_rows(month_literal(FEB), RUN)}) ORDER BY ALL").fetchall()
    assert rows == [
        (FEB, "O1", "ORD-1", 1, "USD", "SERVICE", "MOBILE", JAN, D("19.00"), True, "run-feb"),
        (FEB, "O1", "ORD-1", 1, "USD", "SERVICE", "MOBILE", FEB, D("5.00"), False, "run-feb"),
    ]
    columns = [d[0] for d in con.sql(recognized_rows(month_literal(FEB), RUN)).description]
    assert columns == list(TABLES["revenue.recognized"].column_names)


def test_closing_a_month_posts_its_open_journal_lines_with_the_closing_run(con):
    fill(con, "revenue.open_journal_lines", [
        journal("J1", FEB, "DEFERRED_REVENUE", "10.00", "0"), journal("J2", FEB, "REVENUE:MOBILE", "0", "10.00"),
        journal("J3", MAR, "DEFERRED_REVENUE", "4.00", "0"),
    ])
    sql = journal_line_rows(month_literal(FEB), RUN)
    rows = con.execute(f"SELECT journal_line_id, accounting_month, debit, credit, run_id FROM ({sql}) ORDER BY 1").fetchall()
    assert rows == [("J1", FEB, D("10.00"), D("0"), "run-feb"), ("J2", FEB, D("0"), D("10.00"), "run-feb")]
    assert [d[0] for d in con.sql(sql).description] == list(TABLES["revenue.journal_lines"].column_names)


def test_the_closed_month_records_counts_totals_per_currency_and_the_hash_of_its_posted_rows(con):
    """February posted: USD revenue 25.00 + 5.00 = 30.00 for February and a correction of -4.00 concerning January;
    EUR 8.00 (no journal lines). Balances at February's end over every posted month through February."""
    fill(con, "revenue.recognized", [
        posted(JAN, "O1", JAN, "20.00"),
        posted(FEB, "O1", FEB, "25.00", run="run-feb"), posted(FEB, "O2", FEB, "5.00", run="run-feb"),
        posted(FEB, "O3", JAN, "-4.00", run="run-feb"), posted(FEB, "O4", FEB, "8.00", currency="EUR", run="run-feb"),
    ])
    fill(con, "revenue.journal_lines", [
        journal("A1", JAN, "AR", "100.00", "0", run="run-jan"), journal("A2", JAN, "DEFERRED_REVENUE", "0", "100.00", run="run-jan"),
        journal("A3", JAN, "DEFERRED_REVENUE", "20.00", "0", run="run-jan"), journal("A4", JAN, "REVENUE:MOBILE", "0", "20.00", run="run-jan"),
        journal("B1", FEB, "DEFERRED_REVENUE", "30.00", "0", run="run-feb"), journal("B2", FEB, "REVENUE:MOBILE", "0", "30.00", run="run-feb"),
        journal("B3", FEB, "CONTRA_REVENUE:MOBILE", "0", "4.00", JAN, run="run-feb"),
        journal("B4", FEB, "UNBILLED_AR", "4.00", "0", JAN, run="run-feb"),
        journal("B5", FEB, "CONTRACT_ASSET", "7.50", "0", run="run-feb"), journal("B6", FEB, "DEFERRED_REVENUE", "0", "7.50", run="run-feb"),
        journal("B7", FEB, "CASH", "60.00", "0", entry="PAYMENT", run="run-feb"), journal("B8", FEB, "AR", "0", "60.00", entry="PAYMENT", run="run-feb"),
    ])
    (row,) = con.execute(closed_month_row(month_literal(FEB), AT, RUN)).fetchall()
    month, recognized, lines, totals, content_hash, closed_at, run = row
    assert (month, recognized, lines, run) == (FEB, 4, 8, "run-feb")
    assert json.loads(totals) == {
        # deferred: credits (100.00 + 7.50) - debits (20.00 + 30.00) = 57.50; unbilled 4.00; contract asset 7.50;
        # AR 100.00 - 60.00 = 40.00
        "USD": {"revenue": "30.0000", "corrections": "-4.0000", "deferred_revenue": "57.5000", "unbilled_ar": "4.0000",
                "contract_assets": "7.5000", "ar": "40.0000"},
        "EUR": {"revenue": "8.0000", "corrections": "0.0000", "deferred_revenue": "0.0000", "unbilled_ar": "0.0000",
                "contract_assets": "0.0000", "ar": "0.0000"},
    }
    assert list(json.loads(totals)) == ["EUR", "USD"]  # by currency
    months = "(SELECT DATE '2025-02-01' AS accounting_month)"
    assert content_hash == con.execute(f"SELECT content_hash FROM ({month_hashes(months)})").fetchone()[0]
    assert [d[0] for d in con.sql(closed_month_row(month_literal(FEB), AT, RUN)).description] == list(
        TABLES["revenue.closed_months"].column_names)


# the content hash ------------------------------------------------------------------------------------------

def _hash(con, month):
    return con.execute(f"SELECT content_hash FROM ({month_hashes(f'(SELECT {month_literal(month)} AS accounting_month)')})").fetchone()[0]


def test_the_hash_covers_every_column_of_every_posted_row_of_the_month_and_nothing_else(con):
    rows = [posted(JAN, "O1", JAN, "20.00"), posted(JAN, "O2", JAN, "1.00"), posted(FEB, "O1", FEB, "9.00")]
    lines = [journal("A1", JAN, "AR", "21.00", "0"), journal("A2", JAN, "REVENUE:MOBILE", "0", "21.00")]
    fill(con, "revenue.recognized", rows)
    fill(con, "revenue.journal_lines", lines)
    january = _hash(con, JAN)
    fill(con, "revenue.recognized", list(reversed(rows)))  # the order rows were appended in does not matter
    fill(con, "revenue.journal_lines", list(reversed(lines)))
    assert _hash(con, JAN) == january
    fill(con, "revenue.recognized", [*rows[:2], posted(FEB, "O1", FEB, "9.01")])  # another month's row
    assert _hash(con, JAN) == january
    for changed in ({"amount": "20.01"}, {"run_id": "another run"}, {"concerns_month": FEB}, {"product_line": "TV"}):
        fill(con, "revenue.recognized", [{**rows[0], **changed}, *rows[1:]])
        assert _hash(con, JAN) != january, changed
    fill(con, "revenue.recognized", rows[1:])  # a row removed
    assert _hash(con, JAN) != january
    fill(con, "revenue.recognized", rows)
    fill(con, "revenue.journal_lines", [lines[0], {**lines[1], "description": "edited"}])
    assert _hash(con, JAN) != january
    # a month without rows: no rows and zero sums in either table
    assert _hash(con, MAR) == hashlib.sha256(b"0|0|0|0|0|0").hexdigest()


def test_closed_months_unchanged_finds_an_edited_or_removed_posted_row_and_rows_of_a_month_never_closed(con):
    rows = [posted(JAN, "O1", JAN, "20.00"), posted(JAN, "O2", JAN, "1.00")]
    fill(con, "revenue.recognized", rows)
    fill(con, "revenue.closed_months", [dict(accounting_month=JAN, recognized_rows=2, journal_lines=0, totals="{}",
                                             content_hash=_hash(con, JAN), closed_at="2025-02-02 08:00:00", run_id="run-jan")])
    assert changed_closed_months(con) == []
    stored = _hash(con, JAN)
    fill(con, "revenue.recognized", [{**rows[0], "amount": "2.00"}, rows[1]])
    assert changed_closed_months(con) == [f"2025-01: stored {stored}, recomputed {_hash(con, JAN)}"]
    fill(con, "revenue.recognized", rows[:1])
    assert len(changed_closed_months(con)) == 1
    fill(con, "revenue.recognized", [*rows, posted(FEB, "O1", FEB, "3.00")])
    fill(con, "revenue.journal_lines", [journal("B1", FEB, "AR", "1.00", "0")])
    assert changed_closed_months(con) == ["2025-02: posted rows in revenue.journal_lines, month not closed",
                                          "2025-02: posted rows in revenue.recognized, month not closed"]


# the checks, each failing on a broken fixture ----------------------------------------------------------------

def obligation(oid, allocated, start, end, **kw):
    return dict(obligation_id=oid, contract_id="ORD-1", account_id=1, currency="USD", obligation_kind="SERVICE",
                pattern="RATABLE", product_line="MOBILE", recognition_start=start, recognition_end=end,
                spread_days=(end - start).days, billed_month=FEB,
                billed_amount=allocated, allocated_amount=allocated, **kw)


def test_schedules_must_sum_to_their_obligation(con):
    """O1: 31.00 over [Jan 20, Feb 20): Jan 12/31 x 31.00 = 12.00, Feb 19.00: sums exactly. O2: 10.00 scheduled
    9.99. O3: allocated 5.00, no schedule at all. O9: scheduled, no obligation."""
    fill(con, "revenue.performance_obligations", [
        obligation("O1", "31.00", date(2025, 1, 20), date(2025, 2, 20)),
        obligation("O2", "10.00", JAN, FEB), obligation("O3", "5.00", JAN, FEB),
        obligation("O4", "0.00", JAN, FEB),  # nothing to recognize: no schedule rows needed
    ])
    fill(con, "revenue.schedule", [schedule("O1", JAN, "12.00", "0", FEB), schedule("O1", FEB, "19.00", "0", FEB),
                                   schedule("O2", JAN, "9.99", "0", FEB), schedule("O9", JAN, "1.00", "0", FEB)])
    assert schedule_sum_mismatches(con) == ["O2: allocated 10.0000, scheduled 9.9900", "O3: allocated 5.0000, scheduled 0.0000",
                                            "O9: scheduled, not an obligation"]


def test_no_revenue_outside_the_service_period(con):
    """O1's window [Jan 20, Feb 20) recognizes in January and February only: a March amount is outside, as is a
    posted December one; a zero amount outside is no revenue. Window [Jan 1, Feb 1) ends with January's last day."""
    fill(con, "revenue.performance_obligations", [obligation("O1", "31.00", date(2025, 1, 20), date(2025, 2, 20)),
                                                  obligation("O2", "10.00", JAN, FEB)])
    fill(con, "revenue.schedule", [schedule("O1", JAN, "12.00", "0", FEB), schedule("O1", FEB, "18.00", "0", FEB),
                                   schedule("O1", MAR, "1.00", "0", MAR), schedule("O2", JAN, "10.00", "0", FEB),
                                   schedule("O2", FEB, "0.00", "0", FEB)])
    fill(con, "revenue.recognized", [posted(JAN, "O1", date(2024, 12, 1), "2.00")])
    assert revenue_outside_service_period(con) == [
        "O1: posted 2025-01 2.0000 in 2024-12, window [2025-01-20, 2025-02-20)",
        "O1: scheduled 1.0000 in 2025-03, window [2025-01-20, 2025-02-20)",
    ]


def allocation(group, oid, tp, allocated, component=None, price=None, component_allocated=None):
    return dict(allocation_group=group, obligation_id=oid, contract_id="ORD-1", currency="USD", method="RELATIVE_SSP",
                ssp_amount="1.00", ssp_source="CATALOG", transaction_price=tp, billed_amount=price or allocated,
                component=component or oid, component_price=price or allocated,
                component_allocated=component_allocated or allocated, allocated_amount=allocated)


def test_allocations_must_sum_to_the_transaction_price(con):
    """TERM-1, a handset sold at 99.00 with a 24-month plan of 30.00 (E = 720.00): TP = 99.00 + 720.00 = 819.00,
    allocated G 371.95 + SERVICE-7 447.05 = 819.00; the service's two lines billed so far carry the component's
    447.05 and their own shares (447.05 x 30/720 = 18.627 -> 18.63; cumulative 447.05 x 60/720 = 37.254 -> 37.25,
    less 18.63 = 18.62). BUNDLE-2: 50.00 allocated 20.00 + 29.99 = 49.99. BUNDLE-3 sums, but obligation B3
    says 29.98 where its row says 30.00."""
    term = [allocation("TERM-1", "G", "819.00", "371.95", price="99.00"),
            allocation("TERM-1", "S1", "819.00", "18.63", "SERVICE-7", "720.00", "447.05"),
            allocation("TERM-1", "S2", "819.00", "18.62", "SERVICE-7", "720.00", "447.05")]
    fill(con, "revenue.allocations", [*term, allocation("BUNDLE-2", "M", "50.00", "20.00", price="25.00"),
                                      allocation("BUNDLE-2", "B", "50.00", "29.99", price="25.00"),
                                      allocation("BUNDLE-3", "M3", "50.00", "20.00"), allocation("BUNDLE-3", "B3", "50.00", "30.00")])
    fill(con, "revenue.performance_obligations", [obligation("G", "371.95", JAN, FEB), obligation("S1", "18.63", JAN, FEB),
                                                  obligation("B3", "29.98", JAN, FEB)])
    assert allocation_sum_mismatches(con) == [
        "B3: allocated 30.0000 in BUNDLE-3, the obligation 29.9800",
        "BUNDLE-2: transaction price 50.0000, components priced 50.0000, allocated 49.9900",
    ]
    fill(con, "revenue.allocations", [term[0], term[1], {**term[2], "component_allocated": "447.04"}])
    assert allocation_sum_mismatches(con) == [
        "TERM-1: transaction price 819.0000, components priced 819.0000, allocated 818.9900 (rows of one component disagree)"]


# refusals ------------------------------------------------------------------------------------------------------

def test_a_month_is_closed_once_in_order_after_its_billing_month_is_finalized_and_while_every_check_passes(con):
    assert close_refusal(con, JAN) == "2025-01 has nothing to close: no revenue activity yet"
    fill(con, "revenue.closed_months", [dict(accounting_month=JAN, recognized_rows=0, journal_lines=0, totals="{}",
                                             content_hash=_hash(con, JAN), closed_at="2025-02-02 08:00:00", run_id="run-jan")])
    fill(con, "ledger.finalized_months", [dict(billing_month=JAN, invoices=0, credit_notes=0, drafts_hash="h",
                                               finalized_at="2025-02-01 08:00:00")])
    assert close_refusal(con, JAN) == "2025-01 is already closed (at 2025-02-02 08:00 UTC, run run-jan)"
    assert close_refusal(con, date(2024, 12, 1)) == (
        "2024-12 is before the first open month 2025-02: nothing to close (no revenue activity before it)")
    assert close_refusal(con, MAR) == "2025-03 cannot be closed before 2025-02: close 2025-02 first (the first open month)"
    assert close_refusal(con, FEB) == (
        "2025-02 cannot be closed before its billing month is finalized: run the finalize job for 2025-02 first")
    con.execute("INSERT INTO ledger.finalized_months (billing_month, invoices, credit_notes, drafts_hash, finalized_at) "
                "VALUES (DATE '2025-02-01', 0, 0, 'h', TIMESTAMP '2025-03-01 08:00:00')")
    fill(con, "revenue.schedule", [schedule("O9", FEB, "1.00", "0", FEB)])  # a schedule of no obligation
    assert close_refusal(con, FEB) == (
        "2025-02 cannot be closed while revenue checks fail: schedules_sum_to_obligations (1, e.g. O9: scheduled, not an "
        "obligation): fix the cause and run revenue again")
    fill(con, "revenue.schedule", [])
    assert close_refusal(con, FEB) is None
