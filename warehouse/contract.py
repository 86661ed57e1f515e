"""The table contract: how every warehouse table is declared (``warehouse/tables/``).

One :class:`Table` per table, in the same form as the record contract (``sources/entities.py``):
its columns (name, DuckDB type, meaning, nullability), key, grain, description and kind. From
these declarations come the DDL and its comments (:mod:`warehouse.ddl`), the migrations
(:mod:`warehouse.migrations`), ``docs/warehouse.md`` (:mod:`warehouse.docs`), the engines'
column lists, the writer's type check (:mod:`warehouse.writer`) and the column schema shown on
every Dagster asset (``pipelines/assets/policy.py``).

Two kinds of tables (DESIGN.md "Architecture"):

* ``DERIVED``: recomputed from its inputs and replaced by partition window (or whole); re-running
  gives identical rows.
* ``LEDGER``: what was received, issued or decided (raw change logs, the ingest ledger,
  quarantine, the schema history, and the billing ledger): rows are appended, never updated or
  deleted, and no migration rebuilds them.

A column holding personal data (a name, an e-mail address, a phone number, a street address, or a raw
payload that may carry them) says so (``Column.personal``): the analysts' snapshot masks it
(:mod:`warehouse.snapshot`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sources.entities import Column

DERIVED = "derived"
LEDGER = "ledger"
KINDS = (DERIVED, LEDGER)


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    kind: str  # DERIVED or LEDGER
    key: tuple[str, ...]  # the columns that identify a row; () when no subset does (a change log)
    grain: str  # one row per ...
    description: str  # the table comment
    columns: tuple[Column, ...]
    partition: str | None = None  # the column a bill cycle run replaces by window (billing_month)
    unknown_in_key: tuple[str, ...] = ()  # key columns where NULL is a value of the grain (unknown), grouped as one

    def __post_init__(self):
        names = self.column_names
        assert self.kind in KINDS, (self.qualified, self.kind)
        assert len(set(names)) == len(names), f"{self.qualified}: a column is declared twice"
        missing = [c for c in (*self.key, *([self.partition] if self.partition else [])) if c not in names]
        missing += [c for c in self.unknown_in_key if c not in self.key]
        assert not missing, f"{self.qualified}: key or partition column {missing} is not a column"

    @property
    def qualified(self) -> str:
        """``schema.name``: how SQL names the table."""
        return f"{self.schema}.{self.name}"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def column(name: str, sql_type: str, description: str, nullable: bool = True, personal: str | None = None) -> Column:
    """A column of a table (the record contract's :class:`~sources.entities.Column`); ``personal`` names the personal
    data it holds (a kind of :data:`warehouse.snapshot.MASKS`: masked in the analysts' snapshot)."""
    return Column(name, sql_type, description, nullable, personal=personal)
