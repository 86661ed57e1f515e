"""The landing zone: ``<landing>/<system>/<entity>/<file>``, as delivered by the extract jobs.

:func:`discover` lists the landed files with their entity, supported extension, size and
modification time, in delivery order: modification time, then path. It reads no file: a
:class:`LandedFile`'s SHA-256 is computed (streaming, so large Parquet files never sit in memory)
the first time it is asked for. The ingest layer recognizes a file it has recorded by (path,
size, modification time) without hashing it, hashes the others, records each delivery in
``audit.ingested_files`` by (path, checksum) and decides what to load (docs/cdc-extracts.md,
"Delivery rules").

A file outside a known entity folder is listed with ``entity = None``, one with an unsupported
extension with ``extension = None``, so the caller can report them. Hidden and temporary files
(:func:`hidden_or_temporary`: uploads in flight, editors' and desktops' files) are not listed at all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
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
    mtime_ns: int  # modification time, ns since the epoch: the delivery order
    extension: str | None = None  # supported extension (readers.extract_extension); None: unsupported

    @property
    def entity_name(self) -> str | None:
        return self.entity.name if self.entity else None

    @property
    def stamp(self) -> tuple[str, int, int]:
        """(relative path, size, modification time): what recognizes an unchanged file without reading it."""
        return self.relative_path, self.size, self.mtime_ns

    @cached_property
    def sha256(self) -> str:
        """Hex SHA-256 of the content, read from disk on first use (then kept)."""
        return sha256_file(self.path)


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

    Only lists (a ``stat`` per file): no file is read until its ``sha256`` is asked for.

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
        out.append(LandedFile(p, rel, entity_for_path(p, root), stat.st_size, stat.st_mtime_ns, extract_extension(p)))
    out.sort(key=lambda f: (f.mtime_ns, f.relative_path))
    return out
