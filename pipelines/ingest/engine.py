"""Landing zone → raw change logs, quarantine and the file ledger.

Each landed file is processed once: the ledger ``audit.ingested_files`` records it by path and
SHA-256. A file already recorded is skipped; the same content under a new name is recorded as a
DUPLICATE and loads nothing. A file's raw rows, quarantined records and ledger row are written in
one transaction, so a crash never leaves a half-loaded file: the next run loads it again whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import polars as pl

from sources.landing import LandedFile, discover
from sources.readers import read_extract
from warehouse.writer import write


@dataclass
class IngestSummary:
    files_seen: int = 0
    files_loaded: int = 0
    files_skipped: int = 0  # already in the ledger
    files_duplicate: int = 0  # same content under another name
    files_failed: int = 0  # unreadable or outside a known entity folder
    records_read: dict[str, int] = field(default_factory=dict)
    records_loaded: dict[str, int] = field(default_factory=dict)
    records_quarantined: dict[str, int] = field(default_factory=dict)

    def add(self, entity: str, read: int, loaded: int, quarantined: int) -> None:
        for counter, n in ((self.records_read, read), (self.records_loaded, loaded), (self.records_quarantined, quarantined)):
            counter[entity] = counter.get(entity, 0) + n


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _ledger_row(f: LandedFile, status: str, read=0, loaded=0, quarantined=0, duplicate_of=None, error=None) -> pl.DataFrame:
    return pl.DataFrame(
        [{
            "file": f.relative_path, "entity": f.entity.name if f.entity else None, "sha256": f.sha256,
            "size_bytes": f.size, "status": status, "duplicate_of": duplicate_of, "records_read": read,
            "records_loaded": loaded, "records_quarantined": quarantined, "error": error, "ingested_at": _now(),
        }],
        schema_overrides={"entity": pl.String, "duplicate_of": pl.String, "error": pl.String},
    )


def _quarantine_frame(entity: str, rejects: pl.DataFrame) -> pl.DataFrame:
    return rejects.select(
        pl.lit(entity).alias("entity"),
        pl.col("_file").alias("file"),
        pl.col("_record_no").alias("record_no"),
        pl.col("_position").alias("position"),
        pl.col("reason"),
        pl.col("raw_payload"),
        pl.lit(_now()).alias("quarantined_at"),
    )


def ingest_landing_zone(con: duckdb.DuckDBPyConnection, landing_root: Path) -> IngestSummary:
    """Load every new file under ``landing_root`` into ``raw.*``; return what happened."""
    summary = IngestSummary()
    seen = set(con.execute("SELECT file, sha256 FROM audit.ingested_files").fetchall())
    first_by_sha = dict(
        con.execute(
            "SELECT sha256, arg_min(file, ingested_at) FROM audit.ingested_files WHERE status = 'LOADED' GROUP BY sha256"
        ).fetchall()
    )
    for f in discover(landing_root):
        summary.files_seen += 1
        if (f.relative_path, f.sha256) in seen:
            summary.files_skipped += 1
            continue
        if f.entity is None:
            summary.files_failed += 1
            write(con, [("audit.ingested_files", _ledger_row(f, "UNKNOWN_ENTITY", error="not under a known <system>/<entity>/ folder"), None)])
            continue
        if f.sha256 in first_by_sha:
            summary.files_duplicate += 1
            write(con, [("audit.ingested_files", _ledger_row(f, "DUPLICATE", duplicate_of=first_by_sha[f.sha256]), None)])
            continue
        try:
            result = read_extract(f.path, f.entity, landing_root)
        except Exception as exc:  # noqa: BLE001 - an unreadable file is recorded, never fatal
            summary.files_failed += 1
            write(con, [("audit.ingested_files", _ledger_row(f, "UNREADABLE", error=f"{type(exc).__name__}: {exc}"), None)])
            continue
        name = f.entity.name
        loaded, quarantined = result.changes.height, result.rejects.height
        writes = [(f"raw.{name}", result.changes.with_columns(pl.lit(_now()).alias("_ingested_at")), None)]
        if quarantined:
            writes.append(("audit.quarantine", _quarantine_frame(name, result.rejects), None))
        writes.append(("audit.ingested_files", _ledger_row(f, "LOADED", result.records_read, loaded, quarantined), None))
        write(con, writes)
        first_by_sha[f.sha256] = f.relative_path
        summary.files_loaded += 1
        summary.add(name, result.records_read, loaded, quarantined)
    return summary


def accounting_violations(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Files whose records do not add up: loaded + quarantined != read, or the ledger disagrees
    with what raw and quarantine actually hold for the file. Empty when every record is accounted for."""
    from sources.entities import ENTITIES

    raw_counts = " UNION ALL ".join(
        f"SELECT _file AS file, count(*) AS n FROM raw.{e} GROUP BY _file" for e in ENTITIES
    )
    rows = con.execute(
        f"""
        WITH raw_n AS ({raw_counts}),
             q_n AS (SELECT file, count(*) AS n FROM audit.quarantine GROUP BY file)
        SELECT f.file, f.records_read, f.records_loaded, f.records_quarantined,
               coalesce(r.n, 0) AS raw_rows, coalesce(q.n, 0) AS quarantine_rows
        FROM audit.ingested_files f
        LEFT JOIN raw_n r USING (file) LEFT JOIN q_n q USING (file)
        WHERE f.status = 'LOADED'
          AND (f.records_loaded + f.records_quarantined <> f.records_read
               OR coalesce(r.n, 0) <> f.records_loaded OR coalesce(q.n, 0) <> f.records_quarantined)
        ORDER BY f.file
        """
    ).fetchall()
    cols = ["file", "records_read", "records_loaded", "records_quarantined", "raw_rows", "quarantine_rows"]
    return [dict(zip(cols, r)) for r in rows]
