"""The landing zone: ``<landing>/<system>/<entity>/<file>``, as delivered by the extract jobs.

:func:`discover` lists every file under the landing root with its entity, size and SHA-256
(computed streaming, so large Parquet files never sit in memory). A file is ingested once,
recorded by its checksum (``audit.ingested_files``): a redelivered copy under another name has
the same checksum and is skipped by the ingest layer.

Files that are not extracts of a known entity (wrong folder, unknown extension, stray files)
are listed with ``entity = None`` so the caller can quarantine or report them; hidden files
(``.``-prefixed, e.g. ``.DS_Store``, partial uploads ``.name.tmp``) are listed too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sources.entities import Entity
from sources.readers import entity_for_path, extract_extension

__all__ = ["LandedFile", "discover", "sha256_file"]


@dataclass(frozen=True)
class LandedFile:
    path: Path  # absolute path
    relative_path: str  # posix path relative to the landing root (the `_file` of its records)
    entity: Entity | None  # None: not an extract of a known entity (caller quarantines/reports)
    size: int  # bytes
    sha256: str  # hex digest of the content

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


def discover(landing_root: Path) -> list[LandedFile]:
    """Every file under ``landing_root``, sorted by entity name then relative path.

    A file belongs to an entity when it sits at ``<system>/<entity>/<file>`` for a known entity
    of that system and has one of the extensions ``.jsonl``, ``.json``, ``.parquet``, ``.csv``;
    any other file is listed with ``entity=None`` (sorted after the known ones).
    """
    root = Path(landing_root).resolve()
    if not root.exists():
        return []
    out: list[LandedFile] = []
    for p in root.rglob("*"):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        entity = entity_for_path(p, root) if extract_extension(p) else None
        out.append(LandedFile(p, rel, entity, p.stat().st_size, sha256_file(p)))
    out.sort(key=lambda f: (f.entity is None, f.entity.name if f.entity else "", f.relative_path))
    return out
