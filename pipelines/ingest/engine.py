"""Landing zone → raw change logs, quarantine and the file ledger.

Each delivery is processed once: the ledger ``audit.ingested_files`` records it by (path, SHA-256)
and its size and modification time (docs/cdc-extracts.md, "Delivery rules"). Files are taken in
delivery order (modification time, then path). A file whose (path, size, modification time) is
a recorded delivery's is that delivery and is not read at all; any other is hashed. A delivery
already recorded (path, SHA-256) is skipped, its new stamp kept in the landing zone's checksum
cache (:data:`CHECKSUM_CACHE`) so it is not hashed again; the same content as a file already loaded
for the same entity is recorded as a DUPLICATE and loads nothing; new content under a path
already ingested is a new delivery of that path: it loads, and its ledger row names the
delivery it supersedes. Every delivery gets its own ``ingested_at``, later than any earlier
one (the state layer's tie-break at equal position prefers the later delivery). A file's raw
rows, quarantined records and ledger row are written in one transaction, so a crash never
leaves a half-loaded file: the next run loads it again whole.
"""

from __future__ import annotations

import json
import os
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
CHECKSUM_CACHE = ".tally-checksums.json"
"""Hidden file at the landing root (never listed by discover): path -> [size, mtime_ns, sha256] of files
hashed and found already recorded, whose own stamp the append-only ledger cannot take."""


@dataclass
class IngestSummary:
    files_seen: int = 0
    files_loaded: int = 0
    files_skipped: int = 0  # already in the ledger
    files_hashed: int = 0  # read to compute their checksum (new, changed, touched or recorded before mtime_ns)
    files_duplicate: int = 0  # same content under another name
    files_failed: int = 0  # unreadable, unsupported extension or outside a known entity folder
    first_delivery_at: datetime | None = None  # ingested_at of this run's first delivery (None: nothing new)
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
        rows = con.execute("SELECT file, entity, sha256, status, ingested_at, size_bytes, mtime_ns "
                           "FROM audit.ingested_files ORDER BY ingested_at").fetchall()
        self.seen: set[tuple[str, str]] = set()
        self.stamps: set[tuple[str, int, int]] = set()  # (file, size, mtime_ns) of deliveries recorded with their mtime
        self.first_loaded: dict[tuple[str | None, str], str] = {}  # (entity, sha256) -> file first loaded with it
        self.latest: dict[str, str] = {}  # file -> sha256 of its latest delivery
        self.last_at: datetime | None = None
        self.first_at: datetime | None = None  # the first delivery recorded by this run
        for file, entity, sha, status, at, size, mtime_ns in rows:
            self._record(file, entity, sha, status, at)
            if mtime_ns is not None:
                self.stamps.add((file, size, mtime_ns))

    def _record(self, file: str, entity: str | None, sha: str, status: str, at: datetime) -> None:
        self.seen.add((file, sha))
        if status == "LOADED":
            self.first_loaded.setdefault((entity, sha), file)
        self.latest[file] = sha
        self.last_at = at

    def record(self, f: LandedFile, status: str, at: datetime) -> None:
        self._record(f.relative_path, f.entity_name, f.sha256, status, at)
        self.stamps.add(f.stamp)
        self.first_at = self.first_at or at

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
            "size_bytes": f.size, "mtime_ns": f.mtime_ns, "status": status, "duplicate_of": duplicate_of, "records_read": read,
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


def _load_cache(root: Path) -> dict[str, list]:
    try:
        cache = json.loads((root / CHECKSUM_CACHE).read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _save_cache(root: Path, cache: dict[str, list]) -> None:
    """Replace the checksum cache atomically; an unwritable landing zone only costs hashing again next run."""
    path, tmp = root / CHECKSUM_CACHE, root / f"{CHECKSUM_CACHE}.tmp"
    try:
        if cache:
            tmp.write_text(json.dumps(cache, sort_keys=True))
            os.replace(tmp, path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def ingest_landing_zone(con: duckdb.DuckDBPyConnection, landing_root: Path) -> IngestSummary:
    """Load every new delivery under ``landing_root`` into ``raw.*``; return what happened.

    A file is hashed only when its (path, size, modification time) is neither a recorded
    delivery's nor, with a checksum the ledger holds for that path, in the checksum cache.
    """
    summary = IngestSummary()
    ledger = Ledger(con)
    root = Path(landing_root).resolve()
    cached, cache = _load_cache(root), {}
    for f in discover(root):
        summary.files_seen += 1
        if f.stamp in ledger.stamps:
            summary.files_skipped += 1
            continue
        hit = cached.get(f.relative_path)
        if (isinstance(hit, list) and len(hit) == 3 and hit[:2] == [f.size, f.mtime_ns]
                and (f.relative_path, hit[2]) in ledger.seen):
            cache[f.relative_path] = hit
            summary.files_skipped += 1
            continue
        summary.files_hashed += 1
        if (f.relative_path, f.sha256) in ledger.seen:  # touched, or recorded before mtime_ns: same delivery
            cache[f.relative_path] = [f.size, f.mtime_ns, f.sha256]
            summary.files_skipped += 1
            continue
        at = ledger.delivery_time()
        ledger.record(f, _ingest_file(con, f, root, ledger, at, summary), at)
    summary.first_delivery_at = ledger.first_at
    if cache != cached:
        _save_cache(root, cache)
    return summary


_COLUMNS = ["file", "deliveries", "records_read", "records_loaded", "records_quarantined", "raw_rows", "quarantine_rows"]


def accounting_violations(con: duckdb.DuckDBPyConnection, since: datetime | None = None) -> list[dict]:
    """File names whose records do not add up; empty when every record is accounted for.

    A name does not add up when a LOADED delivery of it has loaded + quarantined != read, or its
    raw / quarantine rows differ from the sums over its LOADED deliveries. What is checked costs
    what is new: every LOADED delivery's own sums (the ledger), each entity's raw rows and the
    quarantine's rows against the ledger's totals (row counts DuckDB keeps as metadata), and, for
    the deliveries ingested at or after ``since`` (this run's), their own raw and quarantine rows.
    Only when one of those fails are the tables scanned per file name, to name the files.
    """
    totals = con.execute(
        "SELECT entity, sum(records_loaded), sum(records_quarantined) FROM audit.ingested_files "
        "WHERE status = 'LOADED' GROUP BY entity").fetchall()
    loaded = {e: n for e, n, _ in totals}
    flagged = {f for (f,) in con.execute(
        "SELECT DISTINCT file FROM audit.ingested_files "
        "WHERE status = 'LOADED' AND records_loaded + records_quarantined <> records_read").fetchall()}
    suspects = {e for e in ENTITIES if con.execute(f"SELECT count(*) FROM raw.{e}").fetchone()[0] != loaded.get(e, 0)}
    if con.execute("SELECT count(*) FROM audit.quarantine").fetchone()[0] != sum(q for _, _, q in totals):
        suspects |= set(ENTITIES)
    if since is not None:
        flagged |= _deliveries_not_adding_up(con, since)
    if flagged:
        suspects |= {e for (e,) in con.execute(
            "SELECT DISTINCT entity FROM audit.ingested_files WHERE list_contains(?, file)", [sorted(flagged)]).fetchall()
            if e in ENTITIES}
    return _violations(con, sorted(suspects), sorted(flagged)) if suspects else []


def _deliveries_not_adding_up(con: duckdb.DuckDBPyConnection, since: datetime) -> set[str]:
    """Names of the LOADED deliveries ingested at or after ``since`` whose raw or quarantine rows (those of
    their ``_ingested_at`` / ``quarantined_at``) differ from their ledger row; rows of that time no
    delivery claims count too. Reads only the rows ingested since then (zone maps skip the rest)."""
    raw_n = " UNION ALL ".join(
        f"SELECT _file AS file, _ingested_at AS at, count(*) AS n FROM raw.{e} WHERE _ingested_at >= $since GROUP BY ALL"
        for e in ENTITIES
    )
    return {f for (f,) in con.execute(
        f"""
        WITH raw_n AS ({raw_n}),
             q_n AS (SELECT file, quarantined_at AS at, count(*) AS n FROM audit.quarantine
                     WHERE quarantined_at >= $since GROUP BY ALL),
             d AS (SELECT file, ingested_at AS at, records_loaded, records_quarantined FROM audit.ingested_files
                   WHERE status = 'LOADED' AND ingested_at >= $since)
        SELECT DISTINCT coalesce(d.file, r.file, q.file)
        FROM d FULL JOIN raw_n r ON r.file = d.file AND r.at = d.at
               FULL JOIN q_n q ON q.file = coalesce(d.file, r.file) AND q.at = coalesce(d.at, r.at)
        WHERE coalesce(r.n, 0) <> coalesce(d.records_loaded, 0) OR coalesce(q.n, 0) <> coalesce(d.records_quarantined, 0)
        """, {"since": since}).fetchall()}


def _violations(con: duckdb.DuckDBPyConnection, entities: list[str], flagged: list[str]) -> list[dict]:
    """Per file name of ``entities`` (scanning their raw tables): the names that do not add up, and ``flagged``."""
    raw_n = " UNION ALL ".join(f"SELECT _file AS file, count(*) AS n FROM raw.{e} GROUP BY _file" for e in entities)
    rows = con.execute(
        f"""
        WITH raw_n AS ({raw_n}),
             q_n AS (SELECT file, count(*) AS n FROM audit.quarantine WHERE list_contains($entities, entity) GROUP BY file),
             deliveries AS (
                 SELECT file, count(*) AS deliveries, sum(records_read) AS records_read,
                        sum(records_loaded) AS records_loaded, sum(records_quarantined) AS records_quarantined,
                        count(*) FILTER (WHERE records_loaded + records_quarantined <> records_read) AS not_adding_up
                 FROM audit.ingested_files WHERE status = 'LOADED' AND list_contains($entities, entity) GROUP BY file
             )
        SELECT coalesce(d.file, r.file, q.file) AS file, coalesce(d.deliveries, 0), coalesce(d.records_read, 0),
               coalesce(d.records_loaded, 0), coalesce(d.records_quarantined, 0),
               coalesce(r.n, 0) AS raw_rows, coalesce(q.n, 0) AS quarantine_rows
        FROM deliveries d
        FULL JOIN raw_n r USING (file) FULL JOIN q_n q ON q.file = coalesce(d.file, r.file)
        WHERE coalesce(d.not_adding_up, 0) > 0 OR coalesce(r.n, 0) <> coalesce(d.records_loaded, 0)
              OR coalesce(q.n, 0) <> coalesce(d.records_quarantined, 0) OR list_contains($flagged, coalesce(d.file, r.file, q.file))
        ORDER BY 1
        """, {"entities": entities, "flagged": flagged}
    ).fetchall()
    return [dict(zip(_COLUMNS, r)) for r in rows]
