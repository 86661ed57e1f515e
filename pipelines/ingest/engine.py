"""Landing zone → raw change logs, quarantine and the file ledger.

Each delivery is processed once: the ledger ``audit.ingested_files`` records it by (path, SHA-256)
(docs/cdc-extracts.md, "Delivery rules"). Files are taken in delivery order (modification time,
then path). A delivery already recorded is skipped; the same content as a file already loaded
for the same entity is recorded as a DUPLICATE and loads nothing; new content under a path
already ingested is a new delivery of that path: it loads, and its ledger row names the
delivery it supersedes. Every delivery gets its own ``ingested_at``, later than any earlier
one (the state layer's tie-break at equal position prefers the later delivery). A file's raw
rows, quarantined records and ledger row are written in one transaction, so a crash never
leaves a half-loaded file: the next run loads it again whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl

from sources.entities import ENTITIES
from sources.landing import LandedFile, discover
from sources.readers import COMPRESSED_EXTENSIONS, EXTENSIONS, read_extract
from warehouse.writer import write

UNKNOWN_FOLDER = "not under a known <system>/<entity>/ folder"


@dataclass
class IngestSummary:
    files_seen: int = 0
    files_loaded: int = 0
    files_skipped: int = 0  # already in the ledger
    files_duplicate: int = 0  # same content under another name
    files_failed: int = 0  # unreadable, unsupported extension or outside a known entity folder
    records_read: dict[str, int] = field(default_factory=dict)
    records_loaded: dict[str, int] = field(default_factory=dict)
    records_quarantined: dict[str, int] = field(default_factory=dict)

    def add(self, entity: str, read: int, loaded: int, quarantined: int) -> None:
        for counter, n in ((self.records_read, read), (self.records_loaded, loaded), (self.records_quarantined, quarantined)):
            counter[entity] = counter.get(entity, 0) + n


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Ledger:
    """What ``audit.ingested_files`` already holds, kept current while a run records deliveries."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        rows = con.execute("SELECT file, entity, sha256, status, ingested_at FROM audit.ingested_files ORDER BY ingested_at").fetchall()
        self.seen: set[tuple[str, str]] = set()
        self.first_loaded: dict[tuple[str | None, str], str] = {}  # (entity, sha256) -> file first loaded with it
        self.latest: dict[str, str] = {}  # file -> sha256 of its latest delivery
        self.last_at: datetime | None = None
        for file, entity, sha, status, at in rows:
            self._record(file, entity, sha, status, at)

    def _record(self, file: str, entity: str | None, sha: str, status: str, at: datetime) -> None:
        self.seen.add((file, sha))
        if status == "LOADED":
            self.first_loaded.setdefault((entity, sha), file)
        self.latest[file] = sha
        self.last_at = at

    def record(self, f: LandedFile, status: str, at: datetime) -> None:
        self._record(f.relative_path, f.entity_name, f.sha256, status, at)

    def delivery_time(self) -> datetime:
        """Now (UTC), but strictly after every delivery recorded: one time per delivery, increasing."""
        now = _now()
        if self.last_at is not None and now <= self.last_at:
            now = self.last_at + timedelta(microseconds=1)
        return now

    def supersedes(self, f: LandedFile) -> str | None:
        """For new content under a path already ingested: the note naming the delivery it supersedes."""
        earlier = self.latest.get(f.relative_path)
        return f"new delivery of this file name; supersedes the delivery with sha256 {earlier}" if earlier else None


def _ledger_row(f: LandedFile, at: datetime, status: str, read=0, loaded=0, quarantined=0, duplicate_of=None, error=None) -> pl.DataFrame:
    return pl.DataFrame(
        [{
            "file": f.relative_path, "entity": f.entity_name, "sha256": f.sha256,
            "size_bytes": f.size, "status": status, "duplicate_of": duplicate_of, "records_read": read,
            "records_loaded": loaded, "records_quarantined": quarantined, "error": error, "ingested_at": at,
        }],
        schema_overrides={"entity": pl.String, "duplicate_of": pl.String, "error": pl.String},
    )


def _quarantine_frame(entity: str, rejects: pl.DataFrame, at: datetime) -> pl.DataFrame:
    return rejects.select(
        pl.lit(entity).alias("entity"),
        pl.col("_file").alias("file"),
        pl.col("_record_no").alias("record_no"),
        pl.col("_position").alias("position"),
        pl.col("reason"),
        pl.col("raw_payload"),
        pl.lit(at).alias("quarantined_at"),
    )


def _not_an_extract(f: LandedFile) -> tuple[str, str] | None:
    """(status, reason) for a file that is no extract of a known entity; None for one to read."""
    if f.entity is None:
        return "UNKNOWN_ENTITY", UNKNOWN_FOLDER
    if f.extension is None:
        ext = Path(f.relative_path).suffix or "(none)"
        return "UNSUPPORTED_EXTENSION", f"unsupported extension {ext} (supported: {', '.join(EXTENSIONS + COMPRESSED_EXTENSIONS)})"
    return None


def _ingest_file(con: duckdb.DuckDBPyConnection, f: LandedFile, landing_root: Path, ledger: Ledger,
                 at: datetime, summary: IngestSummary) -> str:
    """Record (and load) one new delivery in one transaction; return its ledger status."""
    if rejected := _not_an_extract(f):
        summary.files_failed += 1
        write(con, [("audit.ingested_files", _ledger_row(f, at, rejected[0], error=rejected[1]), None)])
        return rejected[0]
    if original := ledger.first_loaded.get((f.entity.name, f.sha256)):
        summary.files_duplicate += 1
        write(con, [("audit.ingested_files", _ledger_row(f, at, "DUPLICATE", duplicate_of=original), None)])
        return "DUPLICATE"
    try:
        result = read_extract(f.path, f.entity, landing_root)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is recorded, never fatal
        summary.files_failed += 1
        write(con, [("audit.ingested_files", _ledger_row(f, at, "UNREADABLE", error=f"{type(exc).__name__}: {exc}"), None)])
        return "UNREADABLE"
    name = f.entity.name
    loaded, quarantined = result.changes.height, result.rejects.height
    writes = [(f"raw.{name}", result.changes.with_columns(pl.lit(at).alias("_ingested_at")), None)]
    if quarantined:
        writes.append(("audit.quarantine", _quarantine_frame(name, result.rejects, at), None))
    writes.append(("audit.ingested_files",
                   _ledger_row(f, at, "LOADED", result.records_read, loaded, quarantined, error=ledger.supersedes(f)), None))
    write(con, writes)
    summary.files_loaded += 1
    summary.add(name, result.records_read, loaded, quarantined)
    return "LOADED"


def ingest_landing_zone(con: duckdb.DuckDBPyConnection, landing_root: Path) -> IngestSummary:
    """Load every new delivery under ``landing_root`` into ``raw.*``; return what happened."""
    summary = IngestSummary()
    ledger = Ledger(con)
    for f in discover(landing_root):
        summary.files_seen += 1
        if (f.relative_path, f.sha256) in ledger.seen:
            summary.files_skipped += 1
            continue
        at = ledger.delivery_time()
        ledger.record(f, _ingest_file(con, f, landing_root, ledger, at, summary), at)
    return summary


def accounting_violations(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """File names whose records do not add up: a LOADED delivery whose loaded + quarantined != read,
    or raw / quarantine rows of the name that differ from the sums over its LOADED deliveries.
    Empty when every record is accounted for."""
    raw_counts = " UNION ALL ".join(
        f"SELECT _file AS file, count(*) AS n FROM raw.{e} GROUP BY _file" for e in ENTITIES
    )
    rows = con.execute(
        f"""
        WITH raw_n AS ({raw_counts}),
             q_n AS (SELECT file, count(*) AS n FROM audit.quarantine GROUP BY file),
             deliveries AS (
                 SELECT file, count(*) AS deliveries, sum(records_read) AS records_read,
                        sum(records_loaded) AS records_loaded, sum(records_quarantined) AS records_quarantined,
                        count(*) FILTER (WHERE records_loaded + records_quarantined <> records_read) AS not_adding_up
                 FROM audit.ingested_files WHERE status = 'LOADED' GROUP BY file
             )
        SELECT d.file, d.deliveries, d.records_read, d.records_loaded, d.records_quarantined,
               coalesce(r.n, 0) AS raw_rows, coalesce(q.n, 0) AS quarantine_rows
        FROM deliveries d
        LEFT JOIN raw_n r USING (file) LEFT JOIN q_n q USING (file)
        WHERE d.not_adding_up > 0 OR coalesce(r.n, 0) <> d.records_loaded OR coalesce(q.n, 0) <> d.records_quarantined
        ORDER BY d.file
        """
    ).fetchall()
    cols = ["file", "deliveries", "records_read", "records_loaded", "records_quarantined", "raw_rows", "quarantine_rows"]
    return [dict(zip(cols, r)) for r in rows]
