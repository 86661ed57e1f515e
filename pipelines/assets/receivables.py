"""Receivables: payments and credit notes applied to ledger invoices; document status, account balances, AR aging."""

import dagster as dg

from pipelines.assets.policy import WAREHOUSE_STEP, table_key
from pipelines.assets.reporting import money_figures, row_count
from pipelines.receivables import account_balances, apply_payments, document_status, month_end_aging
from pipelines.receivables.balances import over_applied_documents, receivables_imbalances
from pipelines.resources import Warehouse
from warehouse.writer import write

EVENTS = table_key("ledger.payment_events")
APPLICATIONS = table_key("ledger.payment_applications")
STATUS = table_key("billing.document_status")
BALANCES = table_key("billing.account_balances")
AGING = table_key("billing.ar_aging")


@dg.multi_asset(
    name="receivables",
    specs=[
        dg.AssetSpec(EVENTS, deps=[table_key("core.payments"), table_key("core.billing_accounts")],
                     description="Payments processed, once per status: applied, failed (nothing applied), refunded (reversed) or rejected, with the reason."),
        dg.AssetSpec(APPLICATIONS, deps=[EVENTS, table_key("ledger.documents"), table_key("ledger.voids")],
                     description="Money moved from payments, credit notes and account credit to invoices or to account credit; refunds and voids reversed."),
        dg.AssetSpec(STATUS, deps=[APPLICATIONS],
                     description="Every ledger document's applied and open amounts, status (OPEN, PARTIALLY_PAID, PAID, VOID) and paid date."),
        dg.AssetSpec(BALANCES, deps=[STATUS],
                     description="Per account and currency: invoiced, credited, paid, open AR, account credit, balance and the credit limit flag."),
        dg.AssetSpec(AGING, deps=[APPLICATIONS, table_key("ledger.finalized_months")],
                     description="AR aging at the end of every finalized billing month: open amounts by days past due, and account credit."),
    ],
    check_specs=[
        dg.AssetCheckSpec("receivables_balance", asset=BALANCES, blocking=True,
                          description="Per account and currency: invoiced - credited = paid_net + open_ar - account_credit."),
        dg.AssetCheckSpec("applications_within_totals", asset=STATUS, blocking=True,
                          description="No invoice applied beyond its total, no credit note beyond what it credits, no open amount of the wrong sign."),
    ],
    **WAREHOUSE_STEP,
)
def receivables(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Apply the payments not yet processed, credit notes and account credit; rebuild status, balances and aging."""
    with warehouse.connection() as con:
        summary = apply_payments(con, run_id=context.run_id)
        counts = write(con, [
            ("billing.document_status", document_status(con), "true"),
            ("billing.account_balances", account_balances(con), "true"),
            ("billing.ar_aging", month_end_aging(con), "true"),
        ])
        imbalances = receivables_imbalances(con)
        over_applied = over_applied_documents(con)
        balances = con.execute("""
            SELECT currency, sum(invoiced), sum(credited), sum(paid_net), sum(open_ar), sum(account_credit),
                   count(*) FILTER (WHERE over_credit_limit)
            FROM billing.account_balances GROUP BY 1 ORDER BY 1""").fetchall()
        over_limit = [r[0] for r in con.execute(
            "SELECT account_id FROM billing.account_balances WHERE over_credit_limit ORDER BY 1 LIMIT 20").fetchall()]
        statuses = dict(con.execute("SELECT status, count(*) FROM billing.document_status GROUP BY 1 ORDER BY 1").fetchall())
        rows = {key: row_count(con, ".".join(key.path)) for key in (EVENTS, APPLICATIONS, STATUS, BALANCES, AGING)}
    by_currency = {cur: {"open_ar": str(ar), "account_credit": str(credit), "accounts_over_credit_limit": over}
                   for cur, _, _, _, ar, credit, over in balances}
    money = money_figures({name: {row[0]: row[i + 1] for row in balances}
                           for i, name in enumerate(("invoiced", "credited", "paid", "open AR", "account credit"))})
    yield dg.MaterializeResult(asset_key=EVENTS, metadata={**rows[EVENTS], "payments": summary["payments"]})
    yield dg.MaterializeResult(asset_key=APPLICATIONS, metadata={**rows[APPLICATIONS], "applications": summary["applications"]})
    yield dg.MaterializeResult(asset_key=STATUS, metadata={**rows[STATUS], "documents": counts["billing.document_status"],
                                                           "by_status": statuses,
                                                           **{f"documents {status}": n for status, n in statuses.items()}})
    yield dg.MaterializeResult(asset_key=BALANCES, metadata={**rows[BALANCES], "accounts": counts["billing.account_balances"],
                                                             "by_currency": by_currency, **money,
                                                             "over_credit_limit": str(over_limit)})
    yield dg.MaterializeResult(asset_key=AGING, metadata={**rows[AGING], "rows": counts["billing.ar_aging"]})
    yield dg.AssetCheckResult(check_name="receivables_balance", asset_key=BALANCES, passed=not imbalances,
                              metadata={"accounts_not_balancing": len(imbalances), "first": str(imbalances[:5])})
    yield dg.AssetCheckResult(check_name="applications_within_totals", asset_key=STATUS, passed=not over_applied,
                              metadata={"documents_over_applied": len(over_applied), "first": str(over_applied[:5])})


defs = dg.Definitions(assets=[receivables])
