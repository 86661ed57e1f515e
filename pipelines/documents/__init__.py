"""Customer documents: any ledger invoice or credit note as printable HTML, and as PDF through headless Chromium.

No Dagster here: the asset ``customer_documents`` (pipelines/assets/documents.py) writes a finalized month's
documents; ``python -m pipelines.documents <number> [--out f.html] [--pdf f.pdf]`` writes one.
"""

from pipelines.documents.files import documents_dir, write_month_documents
from pipelines.documents.pdf import print_to_pdf
from pipelines.documents.render import Operator, render_document

__all__ = ["Operator", "documents_dir", "print_to_pdf", "render_document", "write_month_documents"]
