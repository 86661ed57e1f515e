"""The one partitions definition of a bill cycle run: ``billing_month`` (UTC calendar months).

Partition ``YYYY-MM-01`` runs the bill cycles whose billing period ends in that month
(DESIGN.md, "Time"; :mod:`domain.periods`). The first month is configuration:
``TALLY_FIRST_BILLING_MONTH`` (default 2025-01).
"""

from __future__ import annotations

import os
import warnings
from datetime import date

import dagster as dg

# Single-run backfills of a month range are a deliberate choice (DESIGN.md "Architecture");
# Dagster flags the parameter as beta on every import, which only clutters run output.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

FIRST_MONTH_ENV = "TALLY_FIRST_BILLING_MONTH"

billing_month = dg.MonthlyPartitionsDefinition(
    start_date=os.environ.get(FIRST_MONTH_ENV, "2025-01") + "-01", timezone="UTC", fmt="%Y-%m-%d"
)


def months_in_run(context: dg.AssetExecutionContext) -> list[date]:
    """The billing months (first days) this run covers, in order: one, or a backfill range."""
    return [date.fromisoformat(k) for k in context.partition_keys]
