"""The billing ledger's decisions: finalizing a billing month (numbers, hashes), voiding a document, and the
checks that nothing issued changed (docs/billing.md "Finalization"). Plain functions, no Dagster."""

from pipelines.ledger.checks import changed_documents, number_gaps
from pipelines.ledger.finalize import FinalizeRefused, document_hash, finalize
from pipelines.ledger.voids import VoidRefused, void

__all__ = ["FinalizeRefused", "VoidRefused", "changed_documents", "document_hash", "finalize", "number_gaps", "void"]
