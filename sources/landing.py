"""The landing zone: ``<landing>/<system>/<entity>/<file>``, as delivered by the extract jobs.

:func:`discover` lists the landed files with their entity, supported extension, size,
modification time and SHA-256 (computed streaming, so large Parquet files never sit in memory),
in delivery order: modification time, then path. The ingest layer records each delivery in
``audit.ingested_files`` by (path, checksum) and decides what to load (docs/cdc-extracts.md,
"Delivery rules").

A file outside a known entity folder is listed with ``entity = None``, one with an unsupported
extension with ``extension = None``, so the caller can report them. Hidden and temporary files
(:func:`hidden_or_temporary`: uploads in flight, editors' and desktops' files) are not listed at all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sources.entities import Entity
from sources.readers import entity_for_path, extract_extension

__all__ = ["LandedFile", "discover", "hidden_or_temporary", "sha256_file"]

# Names an upload tool gives a file until it is complete (and editors' swap files).
TEMPORARY_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".filepart", ".swp")
HIDDEN_PREFIXES = (".", "~")


@dataclass(frozen=True)
class LandedFile:
    path: Path  # absolute path
    relative_path: str  # posix path relative to the landing root (the `_file` of its records)
    entity: Entity | None  # None: not under a known <system>/<entity>/ folder
    size: int  # bytes
    sha256: str  # hex digest of the content
    extension: str | None = None  # supported extension (readers.extract_extension); None: unsupported
    mtime_ns: int = 0  # modification time, ns since the epoch: the delivery order

    @property
    def entity_name(self) -> str | None:
        return self.entity.name if self.entity else None


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def hidden_or_temporary(relative_path: str) -> bool:
    """A hidden or temporary file, or one in a hidden folder (an upload in flight): never ingested.

    Hidden: a path part starting with ``.`` or ``~``; temporary: a name ending in one of
    ``TEMPORARY_SUFFIXES`` (case-insensitive).
    """
    parts = relative_path.split("/")
    return any(p.startswith(HIDDEN_PREFIXES) for p in parts) or parts[-1].lower().endswith(TEMPORARY_SUFFIXES)


def discover(landing_root: Path) -> list[LandedFile]:
    """Every landed file under ``landing_root``, but hidden or temporary ones, by modification time, then path.

    A file belongs to an entity when it sits at ``<system>/<entity>/<file>`` for a known entity
    of that system (``entity``), whatever its extension; ``extension`` is the supported
    extension its name ends with (``.jsonl`` … ``.csv.gz``), None for any other.
    """
    root = Path(landing_root).resolve()
    if not root.exists():
        return []
    out: list[LandedFile] = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if not p.is_file() or hidden_or_temporary(rel):
            continue
        stat = p.stat()
        out.append(LandedFile(p, rel, entity_for_path(p, root), stat.st_size, sha256_file(p),
                              extract_extension(p), stat.st_mtime_ns))
    out.sort(key=lambda f: (f.mtime_ns, f.relative_path))
    return out
