"""Printing a document to PDF with Debian's headless Chromium (no downloaded browser)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

DEBIAN_CHROMIUM = "/usr/bin/chromium"


class ChromiumMissing(RuntimeError):
    """Debian's ``chromium`` is not installed on this machine."""


def chromium_binary() -> str:
    """The ``chromium`` on PATH, else Debian's /usr/bin/chromium; ChromiumMissing when neither exists."""
    found = shutil.which("chromium") or (DEBIAN_CHROMIUM if Path(DEBIAN_CHROMIUM).exists() else None)
    if found is None:
        raise ChromiumMissing("Debian's chromium is not installed: `.ci/run` installs it (apt-get install -y chromium poppler-utils).")
    return found


def print_to_pdf(html_path: Path, pdf_path: Path, timeout_seconds: float = 120) -> Path:
    """Print ``html_path`` to ``pdf_path`` as Chromium prints it (A4 from the document's @page, no browser header or footer)."""
    pdf_path = Path(pdf_path).resolve()
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tally-chromium-") as profile:
        done = subprocess.run(
            [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
             f"--user-data-dir={profile}", f"--print-to-pdf={pdf_path}", Path(html_path).resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout_seconds,
        )
    if done.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
        raise RuntimeError(f"chromium could not print {html_path} (exit {done.returncode}): {done.stderr[-2000:]}")
    return pdf_path
