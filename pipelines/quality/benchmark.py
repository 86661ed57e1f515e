"""Time the quality gates on a 1M-line month table: ``python -m pipelines.quality.benchmark [rows] [--dir DIR]``.

Builds ``billing.invoice_lines`` (``rows`` lines over three billing months, 4 lines per invoice) and its
``billing.invoices`` with SQL in a scratch DuckDB file, then times each part of the checks over the whole table and
over one month's window: the exact SQL invariants, the sample and its pandera schema, the GX suite (import apart).
The figures are in docs/quality.md ("Cost").
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb

from pipelines.quality import expectations
from pipelines.quality.invariants import violations
from pipelines.quality.rules import rules
from pipelines.quality.schemas import sample, schema_failures
from warehouse.ddl import create_tables

LINES_PER_INVOICE = 4
MONTHS = 3

LINES_SQL = f"""
INSERT INTO billing.invoice_lines BY NAME
SELECT md5(CAST(i AS VARCHAR)) AS line_id, 'INV-' || CAST(i // {LINES_PER_INVOICE} AS VARCHAR) AS invoice_id,
       CAST(DATE '2025-01-01' + to_months(CAST((i // {LINES_PER_INVOICE}) % {MONTHS} AS INTEGER)) AS DATE) AS billing_month,
       i // 40 AS account_id, ['RECURRING', 'USAGE', 'ONE_TIME', 'RECURRING_CREDIT'][i % 4 + 1] AS line_type,
       CAST(10.50 AS DECIMAL(18,4)) AS amount, CAST(0 AS DECIMAL(18,4)) AS discount_amount,
       CAST(0 AS DECIMAL(18,4)) AS coupon_amount, CAST(10.50 AS DECIMAL(18,4)) AS net_amount,
       CAST(0.76 AS DECIMAL(18,4)) AS tax_amount, CAST(11.26 AS DECIMAL(18,4)) AS total_amount, 'USD' AS currency,
       CAST(0.0725 AS DECIMAL(9,6)) AS tax_rate
FROM range(?) r(i)"""

INVOICES_SQL = """
INSERT INTO billing.invoices BY NAME
SELECT invoice_id, 'D' AS invoice_number, min(account_id) AS account_id, min(billing_month) AS billing_month,
       min(billing_month) AS period_start, CAST(min(billing_month) + INTERVAL 1 MONTH AS DATE) AS period_end,
       CAST(min(billing_month) + INTERVAL 1 MONTH AS DATE) AS invoice_date,
       CAST(min(billing_month) + INTERVAL 1 MONTH AS DATE) AS due_date, 'USD' AS currency, 'DRAFT' AS status,
       count(*) AS line_count, sum(amount) AS subtotal, sum(discount_amount) AS discount_total,
       sum(coupon_amount) AS coupon_total, sum(net_amount) AS net_total, sum(tax_amount) AS tax_total,
       sum(total_amount) AS total, 'INVOICE' AS document_type
FROM billing.invoice_lines GROUP BY invoice_id"""


def build(path: Path, rows: int) -> None:
    """The scratch warehouse: ``rows`` lines and their invoices."""
    with duckdb.connect(str(path)) as con:
        create_tables(con, ["billing.invoice_lines", "billing.invoices"])
        con.execute(LINES_SQL, [rows])
        con.execute(INVOICES_SQL)


def timed(fn, *args):
    started = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - started


def measure(path: Path) -> list[str]:
    """One line per table and window: rows, and the seconds of each part."""
    _, import_seconds = timed(__import__, "great_expectations")
    out = [f"great_expectations import: {import_seconds:.2f}s (once per process)"]
    with duckdb.connect(str(path), read_only=True) as con:
        for table in ("billing.invoice_lines", "billing.invoices"):
            r = rules(table)
            for window in (None, (date(2025, 2, 1), date(2025, 3, 1))):
                found, sql_s = timed(violations, con, r, window)
                sampled, sample_s = timed(sample, con, r, window)
                failures, pandera_s = timed(schema_failures, sampled, table)
                outcome, gx_s = timed(expectations.validate, con, table, window)
                assert found.passed and not failures and outcome.passed, (found, failures, outcome)
                out.append(f"{table} {'whole table' if window is None else 'one month'}: {found.rows:,} rows; "
                           f"SQL invariants {sql_s:.2f}s, sample of {sampled.height:,} {sample_s:.2f}s, "
                           f"pandera {pandera_s:.2f}s, GX suite on {outcome.sample_rows:,} + exact sums {gx_s:.2f}s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="where the scratch warehouse goes (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        path = Path(scratch) / "quality-benchmark.duckdb"
        _, build_seconds = timed(build, path, args.rows)
        print(f"built {args.rows:,} lines in {build_seconds:.1f}s")
        for line in measure(path):
            print(line)


if __name__ == "__main__":
    main()
