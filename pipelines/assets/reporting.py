"""What a step reports on its partition, as Dagster metadata finance reads (docs/billing.md "What a bill cycle
reports"): row counts, money per currency as exact integers in minor units (what Dagster plots), markdown previews."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal

import duckdb

from domain.money import minor_unit, round_money

ROW_COUNT = "dagster/row_count"


def row_count(con: duckdb.DuckDBPyConnection, qualified: str, month: date | None = None) -> dict[str, int]:
    """``{dagster/row_count: n}``: the rows of warehouse table ``qualified``, or, when ``month`` is given, the rows of
    that billing month (its ``billing_month`` column)."""
    where = "WHERE billing_month = ?" if month else ""
    return {ROW_COUNT: con.execute(f"SELECT count(*) FROM {qualified} {where}", [month] if month else []).fetchone()[0]}


def in_minor_units(amount: Decimal, currency: str) -> int:
    """``amount`` in the currency's minor units (cents for USD), an exact integer Dagster can plot: the amount
    rounded half away from zero to the minor unit, which every billed amount already is."""
    return int(round_money(amount, currency).scaleb(minor_unit(currency)))


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
