"""``raw``: the append-only change log of every entity, exactly as received (derived from sources/entities.py).

A change-log row carries the entity's columns and the change-log columns; every column is
nullable here (a delete may carry only the key, a tombstone nothing else), whatever the record
contract requires of a create or an update.
"""

from dataclasses import replace

from sources.entities import CHANGE_LOG_COLUMNS, ENTITIES, Column, Entity
from warehouse.contract import LEDGER, Table

INGESTED_AT = Column("_ingested_at", "TIMESTAMP", "When Tally loaded the record (UTC).", False)


def nullable(columns) -> tuple[Column, ...]:
    """The columns with no NOT NULL constraint (history and change-log tables keep partial images)."""
    return tuple(replace(c, nullable=True, allowed=None) for c in columns)


def entity_key(entity: Entity) -> str:
    return ", ".join(entity.key)


def change_log(entity: Entity) -> Table:
    return Table(
        "raw", entity.name, LEDGER, (), "one row per change record received (file x record)",
        f"{entity.description} Append-only change log: one row per change record received "
        f"(grain: file x record). Key in the source: {entity_key(entity)}.",
        nullable((*entity.columns, *CHANGE_LOG_COLUMNS, INGESTED_AT)),
    )


TABLES = tuple(change_log(e) for e in ENTITIES.values())
