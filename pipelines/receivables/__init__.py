"""Payments and receivables: payments and credit notes applied to ledger invoices, document status, account
balances and AR aging (docs/billing.md "Payments and receivables"). Plain DuckDB SQL, no Dagster."""

from pipelines.receivables.aging import ar_aging, month_end_aging
from pipelines.receivables.balances import account_balances, document_status
from pipelines.receivables.payments import apply_payments

__all__ = ["apply_payments", "document_status", "account_balances", "ar_aging", "month_end_aging"]
