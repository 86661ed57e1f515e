"""Period close through the real Dagster jobs (the issue's scenario): close January, land late changes concerning
January, bill and finalize February, and see them booked in February as corrections while January never moves.

The sample is tests/test_lifecycle.py's five accounts (USD, CA 7.25 %; Mobile S 20.00 a month in advance, data
0.01 per MB, Broadband 40.00, a phone 300.00). January's documents are issued Feb 1: January's revenue is recognized
in January (service rendered, consumption) and billed in February, so at Jan 31 it is all unbilled AR.
  January: A (1001) Mobile S 20.00 + 1000 MB = 10.00; D (1002) Mobile S 20.00 + the phone 300.00 (delivered Jan 15);
  B (1003) Mobile S 20.00 + Broadband 40.00; F (1005) Broadband 40.00: revenue 30 + 320 + 60 + 40 = 450.00.
Batch 2 (in February) concerns January: 500 MB used Jan 25 (late usage), B's Mobile S disconnected from Jan 20
(backdated, on a credit note: B is a business), C's (1004) service from Jan 10 (backdated activation), D's phone
order failed (credited on a credit note), F's January invoice voided on Feb 12 and billed again.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal as D

import dagster as dg
import duckdb
import pytest

from tests.pipeline import (failed_checks, run_apply_payments, run_bill_cycle, run_close_month, run_finalize, run_ingest,
                            run_revenue, run_void, step_failures)
from tests.test_lifecycle import A, B, C, D_, F, FEB, JAN, MAR, land_batch_1, land_batch_2

POSTED = {"revenue.recognized": "accounting_month, obligation_id, concerns_month", "revenue.journal_lines": "journal_line_id",
          "revenue.closed_months": "accounting_month"}
TAMPER = ("UPDATE revenue.recognized SET amount = amount {} 1 WHERE accounting_month = DATE '2025-01-01' "
          "AND account_id = 1001 AND obligation_kind = 'USAGE'")


class Scenario:
    def __init__(self, warehouse, landing):
        self.w, self.l = warehouse, landing
        self.instance = dg.DagsterInstance.ephemeral()
        self.runs: dict[str, dg.ExecuteInProcessResult] = {}
        self.posted: dict[str, dict[str, list]] = {}

    def run(self, name, result):
        self.runs[name] = result
        return result

    def read(self, sql, params=None):
        with duckdb.connect(str(self.w), read_only=True) as con:
            return con.execute(sql, params).fetchall()

    def execute(self, sql):
        with duckdb.connect(str(self.w)) as con:
            con.execute(sql)

    def snapshot(self, name):
        self.posted[name] = {t: self.read(f"SELECT * FROM {t} WHERE accounting_month = ? ORDER BY {order}", [JAN])
                             for t, order in POSTED.items()}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("revenue_close")
    s = Scenario(tmp / "warehouse.duckdb", tmp / "landing")
    w, l, i = s.w, s.l, s.instance
    land_batch_1(l)
    s.run("ingest 1", run_ingest(w, l, i))
    s.run("bill 2025-01", run_bill_cycle(w, l, JAN, instance=i))
    s.run("finalize 2025-01", run_finalize(w, l, JAN, i))
    s.run("apply payments 1", run_apply_payments(w, l, i))
    s.run("revenue 1", run_revenue(w, l, i))
    s.run("close a month misspelt", run_close_month(w, l, "Jan 2025", i))
    s.run("close 2025-02 before 2025-01", run_close_month(w, l, FEB, i))
    s.run("close 2025-01", run_close_month(w, l, JAN, i))
    s.snapshot("january closed")
    s.run("close 2025-01 again", run_close_month(w, l, "2025-01", i))
    s.run("close 2025-02 not finalized", run_close_month(w, l, FEB, i))

    land_batch_2(l)
    s.run("ingest 2", run_ingest(w, l, i))
    s.run("apply payments 2a", run_apply_payments(w, l, i))
    s.run("void INV-2025-000004", run_void(w, l, "INV-2025-000004", "billed to the wrong customer", i, voided_on=date(2025, 2, 12)))
    s.run("bill 2025-02", run_bill_cycle(w, l, FEB, instance=i))
    s.run("finalize 2025-02", run_finalize(w, l, FEB, i))
    s.run("apply payments 2b", run_apply_payments(w, l, i))
    s.run("revenue 2", run_revenue(w, l, i))
    s.snapshot("february finalized")
    s.schedule = s.read("""
        SELECT o.account_id, o.obligation_kind, s.open_amount FROM revenue.schedule s JOIN revenue.performance_obligations o
        USING (obligation_id) WHERE s.service_month = ? AND s.booked_month = ? AND s.open_amount <> 0 ORDER BY ALL""", [JAN, FEB])

    s.execute(TAMPER.format("+"))  # someone edits a posted row by hand
    s.run("close 2025-02 tampered", run_close_month(w, l, FEB, i))
    s.execute(TAMPER.format("-"))  # ... and puts it back
    s.run("close 2025-02", run_close_month(w, l, FEB, i))
    s.snapshot("february closed")
    s.run("revenue 3", run_revenue(w, l, i))
    s.snapshot("after re-run")
    return s


REFUSED = {"close a month misspelt", "close 2025-02 before 2025-01", "close 2025-01 again", "close 2025-02 not finalized", "close 2025-02 tampered"}


def refusal(s, name):
    (message,) = step_failures(s.runs[name])
    return message.split("close_month refused: ", 1)[1].strip()


def test_every_run_succeeds_with_every_check_passing_except_the_refused_closes(scenario):
    outcome = {name: (r.success, failed_checks(r)) for name, r in scenario.runs.items()}
    assert outcome == {name: (name not in REFUSED, []) for name in scenario.runs}


def test_january_closes_once_after_its_billing_month_is_finalized_in_month_order(scenario):
    assert refusal(scenario, "close 2025-02 before 2025-01") == (
        "2025-02 cannot be closed before 2025-01: close 2025-01 first (the first open month)")
    closed_at, run_id = scenario.read("SELECT closed_at, run_id FROM revenue.closed_months WHERE accounting_month = ?", [JAN])[0]
    assert run_id == scenario.runs["close 2025-01"].run_id
    assert refusal(scenario, "close 2025-01 again") == f"2025-01 is already closed (at {closed_at:%Y-%m-%d %H:%M} UTC, run {run_id})"
    assert refusal(scenario, "close 2025-02 not finalized") == (
        "2025-02 cannot be closed before its billing month is finalized: run the finalize job for 2025-02 first")


def test_the_month_to_close_is_config_checked_before_anything_runs(scenario):
    (message,) = step_failures(scenario.runs["close a month misspelt"])
    assert "close_month: month must be YYYY-MM (an accounting month), not 'Jan 2025'" in message


def test_january_posts_its_revenue_and_records_its_totals_and_hash(scenario):
    """January's revenue: 450.00 (module docstring), none of it billed by Jan 31 (the invoices are dated Feb 1):
    unbilled AR 450.00, deferred revenue 0, AR 0."""
    january = scenario.posted["january closed"]
    assert sorted((r[3], r[5], r[8]) for r in january["revenue.recognized"]) == [  # account, kind, amount
        (A, "SERVICE", D("20.00")), (A, "USAGE", D("10.00")), (D_, "GOOD", D("300.00")), (D_, "SERVICE", D("20.00")),
        (B, "SERVICE", D("20.00")), (B, "SERVICE", D("40.00")), (F, "SERVICE", D("40.00"))]
    assert {r[9] for r in january["revenue.recognized"]} == {False}  # no correction in the first month
    (closed,) = january["revenue.closed_months"]
    assert closed[1:3] == (7, len(january["revenue.journal_lines"]))
    assert json.loads(closed[3]) == {"USD": {"revenue": "450.0000", "corrections": "0.0000", "deferred_revenue": "0.0000",
                                             "unbilled_ar": "450.0000", "contract_assets": "0.0000", "ar": "0.0000"}}


def test_closed_january_never_moves_while_later_changes_land_are_billed_and_february_closes(scenario):
    """Its posted revenue, journal and closed-month row (with its hash) are row for row what January's close wrote."""
    january = scenario.posted["january closed"]
    assert sum(len(rows) for rows in january.values()) == 7 + len(january["revenue.journal_lines"]) + 1
    for later in ("february finalized", "february closed", "after re-run"):
        assert scenario.posted[later] == january, later


def test_the_late_changes_concerning_january_are_booked_in_february_as_corrections(scenario):
    """Open after February's finalize (schedule: service month January, booked in February), then posted by February's
    close with concerns_month January and is_correction:
      A: 500 late MB x 0.01 = +5.00; B: Mobile S credited from Jan 20: -20.00 x 12/31 = -7.7419 -> -7.74;
      C: Mobile S from Jan 10: 20.00 x 22/31 = 14.1935 -> +14.19; D: the phone credited: -300.00;
      F: January's Broadband reversed by the void (-40.00) and billed again on February's invoice (+40.00)."""
    corrections = [(A, "USAGE", D("5.00")), (B, "SERVICE", D("-7.74")), (C, "SERVICE", D("14.19")),
                   (D_, "GOOD", D("-300.00")), (F, "SERVICE", D("-40.00")), (F, "SERVICE", D("40.00"))]
    assert scenario.schedule == sorted(corrections)
    posted = scenario.read("""SELECT account_id, obligation_kind, amount, is_correction FROM revenue.recognized
                              WHERE accounting_month = ? AND concerns_month = ? ORDER BY ALL""", [FEB, JAN])
    assert posted == sorted((*c, True) for c in corrections)


def test_corrections_reach_the_journal_of_february_referencing_january(scenario):
    """February's RECOGNITION entries for January, per product line, the reversals gross in contra revenue (never
    netted with the positive corrections): DEVICE -300.00, MOBILE -7.74 (B's credit) and BROADBAND -40.00 (the void):
    Dr CONTRA_REVENUE, Cr DEFERRED_REVENUE; MOBILE 5.00 + 14.19 = 19.19 and BROADBAND +40.00 (billed again):
    Dr DEFERRED_REVENUE, Cr REVENUE."""
    lines = scenario.read("""SELECT account, debit, credit FROM revenue.journal_lines
                             WHERE accounting_month = ? AND entry_type = 'RECOGNITION' AND concerns_month = ? ORDER BY ALL""",
                          [FEB, JAN])
    assert lines == [("CONTRA_REVENUE:BROADBAND", D("40.00"), D("0")), ("CONTRA_REVENUE:DEVICE", D("300.00"), D("0")),
                     ("CONTRA_REVENUE:MOBILE", D("7.74"), D("0")),
                     ("DEFERRED_REVENUE", D("0"), D("7.74")), ("DEFERRED_REVENUE", D("0"), D("40.00")),
                     ("DEFERRED_REVENUE", D("0"), D("300.00")), ("DEFERRED_REVENUE", D("19.19"), D("0")),
                     ("DEFERRED_REVENUE", D("40.00"), D("0")),
                     ("REVENUE:BROADBAND", D("0"), D("40.00")), ("REVENUE:MOBILE", D("0"), D("19.19"))]
    (totals,) = scenario.read("SELECT totals FROM revenue.closed_months WHERE accounting_month = ?", [FEB])[0]
    assert json.loads(totals)["USD"]["corrections"] == "-288.5500"  # 5.00 - 7.74 + 14.19 - 300.00 - 40.00 + 40.00


def test_a_posted_row_edited_by_hand_fails_the_check_and_blocks_the_close(scenario):
    """A's January usage edited from 10.00 to 11.00: January's rows no longer hash to the stored hash."""
    message = refusal(scenario, "close 2025-02 tampered")
    assert message.startswith("2025-02 cannot be closed while revenue checks fail: ")
    assert "closed_months_unchanged (1, e.g. 2025-01: stored " in message
    assert message.endswith(": fix the cause and run revenue again")
    assert scenario.runs["close 2025-02"].success  # once put back, February closes


def test_the_trial_balance_shows_the_closed_months_closed_and_balances(scenario):
    status = scenario.read("SELECT DISTINCT accounting_month, month_status FROM revenue.trial_balance ORDER BY 1")
    assert status[:2] == [(JAN, "CLOSED"), (FEB, "CLOSED")] and {s for _, s in status[2:]} == {"OPEN"}
    assert status[2][0] == MAR
    assert scenario.read("""SELECT accounting_month, currency, sum(closing_balance) FROM revenue.trial_balance
                            GROUP BY ALL HAVING sum(closing_balance) <> 0""") == []
    assert scenario.read("SELECT accounting_month FROM revenue.closed_months ORDER BY 1") == [(JAN,), (FEB,)]
