"""The one partitions definition of a bill cycle run, ``billing_month`` (UTC calendar months), its keys, and what a
step reports on a month's partition.

Partition ``YYYY-MM`` runs the bill cycles whose billing period ends in that month (DESIGN.md, "Time";
:mod:`domain.periods`). The first month is configuration: ``TALLY_FIRST_BILLING_MONTH`` (default 2025-01).
Every key is built by :func:`month_key` and read by :func:`month_of_key`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import dagster as dg
import duckdb

# Check results tied to their month need a partitioned check spec, a deliberate choice; Dagster flags it as preview.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)

from domain.money import minor_unit
from pipelines.resources import Warehouse

FIRST_MONTH_ENV = "TALLY_FIRST_BILLING_MONTH"

billing_month = dg.MonthlyPartitionsDefinition(
    start_date=os.environ.get(FIRST_MONTH_ENV, "2025-01"), fmt="%Y-%m", timezone="UTC"
)


def month_key(month: date) -> str:
    """The partition key of billing month ``month`` (its first day): ``YYYY-MM``."""
    return f"{month:%Y-%m}"


def month_of_key(key: str) -> date:
    """The billing month (first day) of partition key ``YYYY-MM``."""
    return date.fromisoformat(key + "-01")


def first_billing_month() -> date:
    """The first ``billing_month`` partition: a bill cycle of it has no previous month to wait for."""
    return month_of_key(billing_month.get_first_partition_key())


def months_in_run(context: dg.AssetExecutionContext) -> list[date]:
    """The billing months (first days) this run covers, in order: one, or a backfill range."""
    return [month_of_key(k) for k in context.partition_keys]


def each_month_then_check(context: dg.AssetExecutionContext, warehouse: Warehouse, month_step: Callable, check: Callable) -> list:
    """Run ``month_step(context, con, month)`` for each month of the run, in order; return what
    ``check(con, first, last)`` finds wrong over the run's months (an empty list when nothing is)."""
    months = months_in_run(context)
    with warehouse.connection() as con:
        for month in months:
            month_step(context, con, month)
        return check(con, months[0], months[-1])


def run_months(months: list[date]) -> str:
    """The months a run judged, as partition keys (``2025-01, 2025-02``)."""
    return ", ".join(month_key(m) for m in months)


def month_check_result(context: dg.AssetExecutionContext, asset_key: dg.AssetKey, check_name: str,
                       problems: dict[date, list[str]]) -> dg.AssetCheckResult:
    """The check's result over the run's months, each month's verdict tied to its partition: a one-month run's
    result is tied by Dagster (the check spec is partitioned); a range run logs one evaluation per month, then
    returns the run's verdict (Dagster ties no partition to a range run's result), naming the months."""
    failed = {m: found for m, found in problems.items() if found}
    if not context.has_partition_key:
        for month, found in problems.items():
            context.log_event(dg.AssetCheckEvaluation(
                asset_key=asset_key, check_name=check_name, passed=not found, partition=month_key(month), blocking=True,
                description="; ".join(found) or "passed", metadata={"problems": len(found)}))
    description = "; ".join(f"{month_key(m)}: {p}" for m, found in failed.items() for p in found)
    return dg.AssetCheckResult(
        check_name=check_name, asset_key=asset_key, passed=not failed,
        description=description or f"passed: {run_months(list(problems))}",
        metadata={"months": run_months(list(problems)), "problems": sum(map(len, failed.values())),
                  "failed_months": run_months(list(failed)) or "none"})


ROW_COUNT = "dagster/row_count"


def row_count(con: duckdb.DuckDBPyConnection, qualified: str, month: date | None = None) -> dict[str, int]:
    """``{dagster/row_count: n}``: the rows of warehouse table ``qualified``, or, when ``month`` is given, the rows of
    that billing month (its ``billing_month`` column)."""
    where = "WHERE billing_month = ?" if month else ""
    return {ROW_COUNT: con.execute(f"SELECT count(*) FROM {qualified} {where}", [month] if month else []).fetchone()[0]}


def in_minor_units(amount: Decimal, currency: str) -> int:
    """``amount`` in the currency's minor units (cents for USD), an exact integer Dagster can plot: the amount
    rounded half away from zero to the minor unit, which every billed amount already is."""
    return int((amount * 10 ** minor_unit(currency)).to_integral_value(rounding=ROUND_HALF_UP))


def money_figures(figures: Mapping[str, Mapping[str, Decimal]]) -> dict[str, int]:
    """Money per figure and currency (``{"net": {"USD": Decimal}}``) as plottable metadata: one integer per figure
    and currency, in minor units, keyed ``<figure> <currency> (minor units)``."""
    return {f"{name} {cur} (minor units)": in_minor_units(amount, cur)
            for name, by_currency in figures.items() for cur, amount in by_currency.items()}


def markdown_table(header: tuple[str, ...], rows: list[tuple]) -> str:
    """A markdown table of ``rows`` (values as text, so decimals stay exact); ``(none)`` when there are none."""
    if not rows:
        return "(none)"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows])


def document_figures(con: duckdb.DuckDBPyConnection, documents: str, month: date) -> dict[str, int]:
    """The money of billing month ``month``'s documents in ``documents`` (billing.invoices or ledger.documents), per
    currency in minor units: net, tax and total, the invoices' total and the credit notes' (negative) total."""
    rows = con.execute(f"""
        SELECT currency, sum(net_total), sum(tax_total), sum(total),
               coalesce(sum(total) FILTER (WHERE document_type = 'INVOICE'), 0),
               coalesce(sum(total) FILTER (WHERE document_type = 'CREDIT_NOTE'), 0)
        FROM {documents} WHERE billing_month = ? GROUP BY 1 ORDER BY 1""", [month]).fetchall()
    names = ("net", "tax", "total", "invoiced", "credited")
    return money_figures({name: {row[0]: row[i + 1] for row in rows} for i, name in enumerate(names)})


def top_documents(con: duckdb.DuckDBPyConnection, documents: str, number: str, month: date, limit: int = 10) -> str:
    """Markdown: the ``limit`` largest invoices of billing month ``month`` in ``documents`` by total (``number``: the
    column that names them), with their exact amounts."""
    rows = con.execute(f"""
        SELECT {number}, account_id, currency, net_total, tax_total, total FROM {documents}
        WHERE billing_month = ? AND document_type = 'INVOICE' ORDER BY total DESC, {number} LIMIT {int(limit)}""",
                       [month]).fetchall()
    return markdown_table(("invoice", "account", "currency", "net", "tax", "total"), rows)
