"""Revenue recognition engine (ASC 606 / IFRS 15, docs/revenue.md; no Dagster imports).

Obligations, allocation and the recognition schedule (:mod:`.obligations`, :mod:`.allocation`, :mod:`.schedule`);
the journals and reports (:mod:`.journals`, :mod:`.reports`); the derived tables refreshed and a month closed
(:mod:`.close`); the checks (:mod:`.checks`).
"""

from pipelines.revenue.allocation import allocation_rows
from pipelines.revenue.checks import CHECKS, revenue_problems
from pipelines.revenue.close import DERIVED_TABLES, CloseRefused, close_month, close_refusal, refresh
from pipelines.revenue.journals import journal_rows
from pipelines.revenue.obligations import obligation_rows
from pipelines.revenue.reports import contract_balance_rows, rollforward_rows, trial_balance_rows, waterfall_rows
from pipelines.revenue.schedule import daily_schedule, first_open_month, schedule_rows

__all__ = ["obligation_rows", "allocation_rows", "schedule_rows", "daily_schedule", "first_open_month", "journal_rows",
           "contract_balance_rows", "rollforward_rows", "waterfall_rows", "trial_balance_rows", "DERIVED_TABLES",
           "refresh", "close_refusal", "close_month", "CloseRefused", "CHECKS", "revenue_problems"]
