"""``python -m pipelines.documents INV-2025-000001 [--out f.html] [--pdf f.pdf] [--warehouse path]``.

Writes the HTML of one ledger document (default ``<documents dir>/<issue year>/<number>.html``, see
:func:`pipelines.documents.documents_dir`) and, with ``--pdf``, prints it to PDF with headless Chromium.
Reads the warehouse read-only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.documents.files import document_path, documents_dir, write_html
from pipelines.documents.pdf import print_to_pdf
from pipelines.documents.render import Operator, document_sheet, render_sheet
from warehouse.connection import connect, default_warehouse_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.documents", description="Render one ledger invoice or credit note.")
    parser.add_argument("document_number", help="e.g. INV-2025-000001 or CN-2025-000001")
    parser.add_argument("--out", type=Path, help="HTML file to write (default: <documents dir>/<issue year>/<number>.html)")
    parser.add_argument("--pdf", type=Path, help="also print it to this PDF file (headless chromium)")
    parser.add_argument("--warehouse", type=Path, default=default_warehouse_path(), help="warehouse file ($TALLY_WAREHOUSE_PATH)")
    args = parser.parse_args(argv)
    with connect(args.warehouse, read_only=True) as con:
        try:
            sheet = document_sheet(con, args.document_number)
        except KeyError as missing:
            print(missing.args[0], file=sys.stderr)
            return 1
        text = render_sheet(sheet, Operator.from_env())
    out = args.out or document_path(documents_dir(args.warehouse), sheet.header["issue_year"], args.document_number)
    print(write_html(Path(out), text))
    if args.pdf:
        print(print_to_pdf(Path(out), args.pdf))
    return 0


if __name__ == "__main__":
    sys.exit(main())
