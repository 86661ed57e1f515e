"""Where customer documents are written: ``<TALLY_DOCUMENTS_DIR or <warehouse dir>/documents>/<issue year>/<number>.html``."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import duckdb

from pipelines.documents.render import Operator, render_month

DOCUMENTS_DIR_ENV = "TALLY_DOCUMENTS_DIR"


def documents_dir(warehouse_path: Path | str) -> Path:
    """``$TALLY_DOCUMENTS_DIR``, or ``documents/`` next to the warehouse file."""
    configured = os.environ.get(DOCUMENTS_DIR_ENV)
    return Path(configured).resolve() if configured else Path(warehouse_path).resolve().parent / "documents"


def document_path(directory: Path, issue_year: int, document_number: str) -> Path:
    """``<directory>/<issue year>/<document number>.html``."""
    if not document_number or any(c in document_number for c in "/\\") or document_number.startswith("."):
        raise ValueError(f"not a document number: {document_number!r}")
    return Path(directory) / str(issue_year) / f"{document_number}.html"


def write_html(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a reader never sees half a document)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path


def write_month_documents(con: duckdb.DuckDBPyConnection, billing_month: date, directory: Path,
                          operator: Operator | None = None) -> tuple[int, tuple[dict, Path] | None]:
    """Write the HTML of every document finalized for ``billing_month``; how many, and the first (header, path) by number."""
    written, first = 0, None
    for h, text in render_month(con, billing_month, operator):
        path = write_html(document_path(directory, h["issue_year"], h["document_number"]), text)
        first = first or (h, path)
        written += 1
    return written, first
