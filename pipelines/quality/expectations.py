"""The Great Expectations 1.x suite on invoices, lines, payments and revenue (docs/quality.md).

Each suite runs on a bounded sample of the table's window, pulled from DuckDB into pandas with exact decimals
(Arrow decimals become ``decimal.Decimal``, never float): not-null and unique keys, the value sets of
:mod:`pipelines.quality.rules`, each row's own sums (a line's total = net + tax) and each header's sums (a
document's totals = the sums of its lines, computed in DuckDB for the sampled headers only). The same sums are
then counted exactly over the whole window in SQL (:func:`exact_mismatches`): the sample shows GX's report, the
SQL count decides nothing is missed.

GX is imported inside :func:`validate` (it takes seconds to import): loading the Dagster definitions stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

from domain.sql import quote_ident
from pipelines.quality.invariants import Window, sample_sql, window_filter
from pipelines.quality.rules import TableRules, rules

SAMPLE_ROWS = 5_000
UNEXPECTED_SHOWN = 3


@dataclass(frozen=True)
class HeaderSums:
    """A header table whose columns are the sums of its lines' columns (``count`` for the number of lines)."""

    lines: str  # the lines table
    key: str  # the header's key, the column of the lines naming their header
    sums: dict[str, str]  # header column -> line column summed, or "count"


_DOCUMENT_SUMS = {"line_count": "count", "subtotal": "amount", "discount_total": "discount_amount",
                  "coupon_total": "coupon_amount", "net_total": "net_amount", "tax_total": "tax_amount",
                  "total": "total_amount"}
_LINE_IDENTITIES = {"total_amount": "net_amount + tax_amount",
                    "net_amount": "amount + discount_amount + coalesce(coupon_amount, 0)"}
_DOCUMENT_IDENTITIES = {"total": "net_total + tax_total",
                        "net_total": "subtotal + discount_total + coalesce(coupon_total, 0)"}

HEADER_SUMS: dict[str, HeaderSums] = {
    "billing.invoices": HeaderSums("billing.invoice_lines", "invoice_id", _DOCUMENT_SUMS),
    "ledger.documents": HeaderSums("ledger.document_lines", "document_id", _DOCUMENT_SUMS),
    "revenue.performance_obligations": HeaderSums("revenue.schedule", "obligation_id",
                                                  {"allocated_amount": "scheduled_amount"}),
}
"""Header → its lines: every obligation's schedule sums to its allocated amount, every document's totals to its lines."""

ROW_IDENTITIES: dict[str, dict[str, str]] = {
    "billing.invoice_lines": _LINE_IDENTITIES,
    "ledger.document_lines": _LINE_IDENTITIES,
    "billing.invoices": _DOCUMENT_IDENTITIES,
    "ledger.documents": _DOCUMENT_IDENTITIES,
}
"""Table → column → the SQL expression of the same row it equals."""

SUITE_TABLES = ("billing.invoices", "billing.invoice_lines", "ledger.documents", "ledger.document_lines",
                "ledger.payment_events", "ledger.payment_applications", "revenue.performance_obligations",
                "revenue.schedule")
"""The tables with a GX suite: invoices and their lines (drafts and issued), payments, revenue."""


def lines_column(header_column: str) -> str:
    """The sample column holding the sum of the header's lines for ``header_column``."""
    return f"lines_{header_column}"


def expected_column(column: str) -> str:
    """The sample column holding what ``column`` must equal (its row identity)."""
    return f"{column}_expected"


def _sums_sql(qualified: str, headers: str) -> tuple[str, str]:
    """The lines' sums of the headers of relation ``headers``: (the CTE, the select list joining it)."""
    h = HEADER_SUMS.get(qualified)
    if h is None:
        return "", "h.*"
    key = quote_ident(h.key)
    aggregates = ", ".join(
        f"{'count(*)' if line == 'count' else f'sum({quote_ident(line)})'} AS {quote_ident(lines_column(col))}"
        for col, line in h.sums.items())
    cte = (f", line_sums AS (SELECT {key}, {aggregates} FROM {h.lines} "
           f"WHERE {key} IN (SELECT {key} FROM {headers}) GROUP BY {key})")
    columns = ", ".join(f"coalesce(s.{quote_ident(lines_column(col))}, 0) AS {quote_ident(lines_column(col))}"
                        for col in h.sums)
    return cte, f"h.*, {columns}"


def suite_sample(con: duckdb.DuckDBPyConnection, qualified: str, window: Window | None,
                 rows: int = SAMPLE_ROWS) -> pd.DataFrame:
    """At most ``rows`` rows of the window, with each row identity's expected value and, for a header, its lines'
    sums: a pandas frame of exact decimals."""
    identities = "".join(f", {expr} AS {quote_ident(expected_column(col))}"
                         for col, expr in ROW_IDENTITIES.get(qualified, {}).items())
    sampled, params = sample_sql(rules(qualified), window, rows, identities)
    cte, select = _sums_sql(qualified, "sampled")
    h = HEADER_SUMS.get(qualified)
    join = f"LEFT JOIN line_sums s USING ({quote_ident(h.key)})" if h else ""
    sql = f"WITH sampled AS ({sampled}){cte} SELECT {select} FROM sampled h {join}"
    return con.execute(sql, params).fetch_arrow_table().to_pandas()


def suite(qualified: str):
    """The expectation suite of ``qualified`` (a ``great_expectations.ExpectationSuite``)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    r = rules(qualified)
    s = gx.ExpectationSuite(name=qualified)
    for column in r.key:
        s.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    if len(r.key) == 1:
        s.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=r.key[0]))
    elif r.key:
        s.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(r.key)))
    for column, values in r.value_sets.items():
        s.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(values)))
    for column in ROW_IDENTITIES.get(qualified, {}):
        s.add_expectation(gxe.ExpectColumnPairValuesToBeEqual(column_A=column, column_B=expected_column(column)))
    if h := HEADER_SUMS.get(qualified):
        for column in h.sums:
            s.add_expectation(gxe.ExpectColumnPairValuesToBeEqual(column_A=column, column_B=lines_column(column)))
    return s


@dataclass(frozen=True)
class SuiteResult:
    """A suite's outcome: the sample's size, each failed expectation (with a few unexpected values) and the exact
    mismatch counts over the window."""

    sample_rows: int
    failed: list[str]
    exact: dict[str, int]

    @property
    def passed(self) -> bool:
        return not self.failed and not self.exact


def _describe(result) -> str:
    """A failed expectation: its type and columns, how many values were unexpected, and a few of them."""
    config, found = result.expectation_config, result.result or {}
    columns = ", ".join(f"{k}={v}" for k, v in config.kwargs.items() if k in ("column", "column_A", "column_B", "column_list"))
    shown = found.get("partial_unexpected_list", [])[:UNEXPECTED_SHOWN]
    return f"{config.type}({columns}): {found.get('unexpected_count')} unexpected, e.g. {shown}"


def validate(con: duckdb.DuckDBPyConnection, qualified: str, window: Window | None = None) -> SuiteResult:
    """Run the suite of ``qualified`` on a sample of ``window`` in an ephemeral GX context, then the exact SQL sums."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    frame = suite_sample(con, qualified, window)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("tally").add_dataframe_asset(qualified)
             .add_batch_definition_whole_dataframe("sample").get_batch(batch_parameters={"dataframe": frame}))
    outcome = batch.validate(suite(qualified), result_format="SUMMARY")
    failed = [_describe(result) for result in outcome.results if not result.success]
    return SuiteResult(len(frame), failed, exact_mismatches(con, rules(qualified), window))


def exact_mismatches(con: duckdb.DuckDBPyConnection, r: TableRules, window: Window | None) -> dict[str, int]:
    """Over every row of the window: how many rows break each row identity, and how many headers differ from the sums
    of their lines (only the non-zero counts)."""
    qualified = r.table.qualified
    where, params = window_filter(r, window)
    counts = {f"{col} <> {expr}": f"count(*) FILTER (WHERE {quote_ident(col)} <> {expr})"
              for col, expr in ROW_IDENTITIES.get(qualified, {}).items()}
    cte, _ = _sums_sql(qualified, "window_rows")
    if h := HEADER_SUMS.get(qualified):
        differs = " OR ".join(f"h.{quote_ident(col)} <> coalesce(s.{quote_ident(lines_column(col))}, 0)" for col in h.sums)
        counts[f"{qualified} <> sums of {h.lines}"] = f"count(*) FILTER (WHERE {differs})"
        source = f"window_rows h LEFT JOIN line_sums s USING ({quote_ident(h.key)})"
    else:
        source = "window_rows h"
    if not counts:
        return {}
    selects = ", ".join(f"{expr} AS {quote_ident(name)}" for name, expr in counts.items())
    cursor = con.execute(f"WITH window_rows AS (SELECT * FROM {qualified} {where}){cte} SELECT {selects} FROM {source}",
                         params)
    names = [d[0] for d in cursor.description]
    return {name: n for name, n in zip(names, cursor.fetchone()) if n}
