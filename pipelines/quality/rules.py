"""What each warehouse table must hold: the contract's columns and key, and the closed value sets.

Types, nullability and the key come from the table contract (``warehouse/tables``). A value set is taken from
where the rule that produces the values states it, never copied: the record contract's ``allowed`` values
(``sources/entities.py``) for the ``core`` tables of an entity and the columns copied from an entity, and the
domain modules' constants for what the engines write (line types, document types and series, adjustment
reasons, charge models, order exception reasons).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.documents.render import REASONS as ADJUSTMENT_REASONS
from pipelines.ledger.finalize import SERIES
from pipelines.rating.catalog import AGGREGATIONS, USAGE_MODELS
from pipelines.rating.engine import LINE_TYPES as RATED_LINE_TYPES
from pipelines.revenue.obligations import CONSUMPTION_TYPES, ONE_TIME_TYPES, RECURRING_TYPES
from pipelines.state.subscriptions import REASONS as ORDER_EXCEPTION_REASONS
from sources.entities import ENTITIES
from warehouse.contract import DERIVED, Table
from warehouse.tables import TABLES

DOCUMENT_TYPES = tuple(SERIES)
DOCUMENT_SERIES = tuple(SERIES.values())
# A draft or issued line: recurring and one-time items with their credits, usage and its adjustments, and the
# rated line types a month's usage is billed under.
LINE_TYPES = tuple(dict.fromkeys((*RECURRING_TYPES, *ONE_TIME_TYPES, *CONSUMPTION_TYPES, *RATED_LINE_TYPES)))


def _entity_sets(entity: str, *columns: str) -> dict[str, tuple[str, ...]]:
    """The record contract's value sets of ``columns`` of ``entity`` (every column with one when none are named)."""
    e = ENTITIES[entity]
    return {c.name: c.allowed for c in e.columns if c.allowed and (not columns or c.name in columns)}


_LINE_SETS = {"line_type": LINE_TYPES, "adjustment_reason": tuple(ADJUSTMENT_REASONS)}

VALUE_SETS: dict[str, dict[str, tuple[str, ...]]] = {
    **{f"core.{e}{suffix}": _entity_sets(e) for e in ENTITIES for suffix in ("", "_history") if _entity_sets(e)},
    "core.order_exceptions": {"reason": tuple(ORDER_EXCEPTION_REASONS), **_entity_sets("orders", "order_type")},
    "billing.rated_usage": {"line_type": RATED_LINE_TYPES, "charge_model": USAGE_MODELS, "aggregation": AGGREGATIONS,
                            **_entity_sets("plan_charges", "billing_timing")},
    "billing.invoice_lines": _LINE_SETS,
    "billing.invoices": {"document_type": DOCUMENT_TYPES},
    "billing.settlement_review": {"document_type": DOCUMENT_TYPES},
    "ledger.documents": {"document_type": DOCUMENT_TYPES, "series": DOCUMENT_SERIES},
    "ledger.document_lines": {**_LINE_SETS, "document_type": DOCUMENT_TYPES},
    "ledger.document_numbers": {"series": DOCUMENT_SERIES},
    "ledger.payment_events": _entity_sets("payments", "status"),
}
"""``schema.name`` → column → the values it may hold (NULL aside: nullability is the contract's)."""


@dataclass(frozen=True)
class TableRules:
    """What :mod:`~pipelines.quality.invariants` and :mod:`~pipelines.quality.schemas` assert on one table."""

    table: Table
    required: tuple[str, ...]  # columns never NULL: the contract's NOT NULL columns and a derived table's key
    value_sets: dict[str, tuple[str, ...]]

    @property
    def key(self) -> tuple[str, ...]:
        return self.table.key


def rules(qualified: str) -> TableRules:
    """The rules of warehouse table ``schema.name`` (a KeyError when it is not in the contract)."""
    t = TABLES[qualified]
    # a derived row is identified by its key (a NULL only where the grain has an unknown); ledger rows are as received
    key = tuple(c for c in t.key if c not in t.unknown_in_key) if t.kind == DERIVED else ()
    required = tuple(c.name for c in t.columns if not c.nullable or c.name in key)
    return TableRules(t, required, VALUE_SETS.get(qualified, {}))


def _check_value_sets() -> None:
    """Every value set names a table and a column of the contract (so a renamed column cannot silently drop a rule)."""
    for qualified, sets in VALUE_SETS.items():
        missing = set(sets) - set(TABLES[qualified].column_names)
        assert not missing, f"{qualified}: value sets for columns the contract does not have: {sorted(missing)}"


_check_value_sets()
