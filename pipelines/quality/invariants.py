"""The exact invariants of a table's written rows, in DuckDB SQL: no NULL in a NOT NULL column, every value in
its set, no key twice; and the window and sample every check reads.

They read every row of the window (a bill cycle run's months, or the whole table when it is not partitioned) in
two aggregate scans, so they stay exact on tables of millions of rows (docs/quality.md, "Cost").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb

from domain.sql import quote_ident, quote_literal
from pipelines.quality.rules import TableRules

Window = tuple[date, date]  # [first day, end day): the billing months of a run
SAMPLE_SEED = 11  # the checks that sample draw the same rows from the same table: a failure can be reproduced


@dataclass(frozen=True)
class Violations:
    """What a table's rows break: ``found`` maps each broken rule to the number of rows (keys) breaking it."""

    rows: int
    found: dict[str, int]

    @property
    def passed(self) -> bool:
        return not self.found


def window_filter(rules: TableRules, window: Window | None) -> tuple[str, list]:
    """The WHERE clause (and its parameters) restricting ``rules.table`` to ``window``; no filter for a table
    without a partition column or a run without a window."""
    column = rules.table.partition
    if window is None or column is None:
        return "", []
    return f"WHERE {quote_ident(column)} >= ? AND {quote_ident(column)} < ?", list(window)


def sample_sql(rules: TableRules, window: Window | None, rows: int, extra_columns: str = "") -> tuple[str, list]:
    """The SQL (and parameters) of at most ``rows`` rows of the window, with ``extra_columns`` (``, expr AS name``),
    drawn reproducibly: reservoir sampling, one pass in bounded memory, the same rows from the same table."""
    where, params = window_filter(rules, window)
    return (f"SELECT *{extra_columns} FROM (SELECT * FROM {rules.table.qualified} {where}) "
            f"USING SAMPLE reservoir({int(rows)} ROWS) REPEATABLE ({SAMPLE_SEED})", params)


def describe(window: Window | None) -> str:
    """A window as the check results show it."""
    return "whole table" if window is None else f"billing months {window[0]} to {window[1]} (exclusive)"


def null_rule(column: str) -> str:
    return f"{column} is null"


def outside_set_rule(column: str) -> str:
    return f"{column} outside its value set"


def duplicate_key_rule(rules: TableRules) -> str:
    return f"key ({', '.join(rules.key)}) not unique"


def _value_counts_sql(rules: TableRules, where: str) -> str:
    """One scan: the row count, the NULLs of each required column and the values outside each set."""
    counts = [f"count(*) FILTER (WHERE {quote_ident(c)} IS NULL) AS {quote_ident(null_rule(c))}" for c in rules.required]
    counts += [
        f"count(*) FILTER (WHERE {quote_ident(c)} NOT IN ({', '.join(quote_literal(v) for v in values)})) "
        f"AS {quote_ident(outside_set_rule(c))}"
        for c, values in rules.value_sets.items()
    ]
    return f"SELECT {', '.join(['count(*) AS rows', *counts])} FROM {rules.table.qualified} {where}"


def _duplicate_keys_sql(rules: TableRules, where: str) -> str:
    """The number of key values held by more than one row."""
    key = ", ".join(quote_ident(c) for c in rules.key)
    return f"SELECT count(*) FROM (SELECT 1 FROM {rules.table.qualified} {where} GROUP BY {key} HAVING count(*) > 1)"


def violations(con: duckdb.DuckDBPyConnection, rules: TableRules, window: Window | None = None) -> Violations:
    """Every rule of ``rules`` broken by the rows of ``window``, with how many rows (or key values) break it."""
    where, params = window_filter(rules, window)
    cursor = con.execute(_value_counts_sql(rules, where), params)
    names = [d[0] for d in cursor.description]
    counts = dict(zip(names, cursor.fetchone()))
    rows = counts.pop("rows")
    if rules.key:
        counts[duplicate_key_rule(rules)] = con.execute(_duplicate_keys_sql(rules, where), params).fetchone()[0]
    return Violations(rows, {rule: n for rule, n in counts.items() if n})
