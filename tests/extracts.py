"""Write hand-built CDC extracts in the contract's formats (docs/cdc-extracts.md), for tests.

``DebeziumFile`` writes Kafka-record JSON lines ``{"key": ..., "value": envelope | null}``;
``write_usage`` writes a usage extract (Parquet or CSV) with ``op`` and ``seq`` columns.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import polars as pl

from sources.entities import ENTITIES


def _jsonable(v):
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime):
        return v.replace(tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(v, date):
        return v.isoformat()
    return v


def _ms(ts: datetime) -> int:
    return int(ts.replace(tzinfo=timezone.utc).timestamp() * 1000)


class DebeziumFile:
    """Collects change events for one entity and writes them as one landed file."""

    def __init__(self, entity: str):
        self.entity = ENTITIES[entity]
        self.lines: list[str] = []

    def _row(self, row: dict) -> dict:
        full = {c: None for c in self.entity.column_names}
        full.update(row)
        return {k: _jsonable(v) for k, v in full.items()}

    def _key(self, row: dict) -> dict:
        return {k: row[k] for k in self.entity.key}

    def event(self, op: str, lsn: int, ts: datetime, after: dict | None = None, before: dict | None = None) -> "DebeziumFile":
        row = after if after is not None else before
        value = {
            "before": self._row(before) if before else None,
            "after": self._row(after) if after else None,
            "op": op,
            "source": {"lsn": lsn, "ts_ms": _ms(ts), "table": self.entity.name, "connector": "postgresql"},
            "ts_ms": _ms(ts) + 5,
        }
        self.lines.append(json.dumps({"key": self._key(row), "value": value}))
        return self

    def snapshot(self, lsn: int, ts: datetime, row: dict) -> "DebeziumFile":
        return self.event("r", lsn, ts, after=row)

    def create(self, lsn: int, ts: datetime, row: dict) -> "DebeziumFile":
        return self.event("c", lsn, ts, after=row)

    def update(self, lsn: int, ts: datetime, before: dict, after: dict) -> "DebeziumFile":
        return self.event("u", lsn, ts, after=after, before=before)

    def delete(self, lsn: int, ts: datetime, before: dict) -> "DebeziumFile":
        return self.event("d", lsn, ts, before=before)

    def tombstone(self, key: dict) -> "DebeziumFile":
        self.lines.append(json.dumps({"key": key, "value": None}))
        return self

    def raw(self, line: str) -> "DebeziumFile":
        self.lines.append(line)
        return self

    def write(self, landing: Path, name: str) -> Path:
        path = landing / self.entity.system / self.entity.name / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n")
        return path


def write_usage(landing: Path, name: str, rows: list[dict]) -> Path:
    """Usage extract: rows carry op (I/U/D), seq and the usage_records columns; Parquet or CSV by suffix."""
    entity = ENTITIES["usage_records"]
    cols = ["op", "seq"] + entity.column_names
    data = {c: [_jsonable(r.get(c)) if not isinstance(r.get(c), (int,)) else r.get(c) for r in rows] for c in cols}
    frame = pl.DataFrame({c: [None if v is None else str(v) for v in vals] for c, vals in data.items()}, schema={c: pl.String for c in cols})
    path = landing / entity.system / entity.name / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".csv"):
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    return path
