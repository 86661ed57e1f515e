"""`make demo`: the sample runs month by month through the billing lifecycle as its batches land.

Usage: ``python -m pipelines.demo [--customers 2000] [--months 3] [--start 2025-01] [--seed 42] [--deliveries DIR]``.
Paths come from ``TALLY_LANDING_DIR`` and ``TALLY_WAREHOUSE_PATH`` (see README); the Dagster
instance from ``DAGSTER_HOME``, so the runs show in ``make ui`` afterwards.

The generator writes every batch into a deliveries folder (default: ``deliveries`` next to the
landing zone). For each month M: M's batch lands (copied with its modification times, the delivery
order), then the jobs finance runs at month end: ``ingest``, ``bill_cycle`` for M, ``finalize`` for
M, ``apply_payments``, ``revenue`` and ``close_month`` for M (docs/operations.md, "Month end"). A month
already finalized and closed is skipped, so a second demo adds nothing. Then the first month's bill
cycle is re-run, to show that nothing issued or closed changes, and the summary is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from datetime import date
from pathlib import Path

import dagster as dg

from domain.money import minor_unit
from domain.periods import add_months
from pipelines.documents import documents_dir
from pipelines.documents.files import document_path
from pipelines.ledger import changed_documents, number_gaps
from pipelines.partitions import month_key, month_of_key
from pipelines.recover import recover_dead_runs, worker_tags
from pipelines.revenue.checks import changed_closed_months
from warehouse.connection import connect, default_landing_dir, default_warehouse_path, snapshot_path

BATCH_DATE = re.compile(r"-(\d{4})-(\d{2})-\d{2}")  # <entity>-<YYYY-MM-DD>[-NNN]...: the extract's batch date

SUMMARY_SQL = """
WITH months AS (SELECT unnest($months::DATE[]) AS billing_month),
inv AS (
    SELECT billing_month, currency, count(*) AS invoices, sum(net_total) AS billed, sum(tax_total) AS tax, sum(total) AS total
    FROM billing.invoices GROUP BY ALL
),
rev AS (
    SELECT accounting_month AS billing_month, currency, recognized + corrections AS recognized_in_month, deferred_revenue
    FROM revenue.deferred_rollforward
),
cur AS (SELECT billing_month, currency FROM inv UNION SELECT billing_month, currency FROM rev)
SELECT strftime(m.billing_month, '%Y-%m') AS month, c.currency,
       coalesce(i.invoices, 0) AS invoices, coalesce(i.billed, 0) AS billed_net, coalesce(i.tax, 0) AS tax,
       coalesce(i.total, 0) AS billed_total, coalesce(r.recognized_in_month, 0) AS revenue_recognized,
       coalesce(r.deferred_revenue, 0) AS deferred_at_month_end
FROM months m JOIN cur c USING (billing_month)
LEFT JOIN inv i USING (billing_month, currency) LEFT JOIN rev r USING (billing_month, currency)
ORDER BY 1, 2
"""

# Per month and currency: documents issued by the month's finalization, adjustment lines on them, payments
# received in the month (applications of payments, net of refunds), failed or rejected payments, and the
# receivables at the month end (billing.ar_aging).
LEDGER_SQL = """
WITH months AS (SELECT unnest($months::DATE[]) AS billing_month),
docs AS (
    SELECT billing_month, currency,
           count(*) FILTER (WHERE document_type = 'INVOICE') AS invoices,
           coalesce(sum(total) FILTER (WHERE document_type = 'INVOICE'), 0) AS invoiced,
           count(*) FILTER (WHERE document_type = 'CREDIT_NOTE') AS credit_notes,
           coalesce(sum(total) FILTER (WHERE document_type = 'CREDIT_NOTE'), 0) AS credited
    FROM ledger.documents GROUP BY ALL
),
adj AS (
    SELECT billing_month, currency, count(*) AS adjustment_lines, sum(net_amount) AS adjustments
    FROM ledger.document_lines WHERE adjustment_reason IS NOT NULL GROUP BY ALL
),
paid AS (
    SELECT CAST(date_trunc('month', applied_on) AS DATE) AS billing_month, currency,
           count(DISTINCT payment_id) FILTER (WHERE entry_type <> 'REFUND') AS payments, sum(amount) AS received
    FROM ledger.payment_applications WHERE entry_type IN ('PAYMENT', 'OVERPAYMENT', 'REFUND') GROUP BY ALL
),
failed AS (
    SELECT CAST(date_trunc('month', received_at) AS DATE) AS billing_month, currency, count(*) AS failed
    FROM ledger.payment_events WHERE outcome IN ('FAILED', 'REJECTED') GROUP BY ALL
),
ar AS (SELECT billing_month, currency, sum(open_ar) AS open_ar, sum(account_credit) AS account_credit FROM billing.ar_aging GROUP BY ALL),
cur AS (
    SELECT billing_month, currency FROM docs UNION SELECT billing_month, currency FROM paid
    UNION SELECT billing_month, currency FROM failed UNION SELECT billing_month, currency FROM ar
)
SELECT strftime(m.billing_month, '%Y-%m') AS month, c.currency,
       coalesce(d.invoices, 0), coalesce(d.credit_notes, 0), coalesce(a.adjustment_lines, 0),
       coalesce(p.payments, 0), coalesce(f.failed, 0),
       coalesce(d.invoiced, 0), coalesce(d.credited, 0), coalesce(a.adjustments, 0), coalesce(p.received, 0),
       coalesce(r.open_ar, 0), coalesce(r.account_credit, 0)
FROM months m JOIN cur c USING (billing_month)
LEFT JOIN docs d USING (billing_month, currency) LEFT JOIN adj a USING (billing_month, currency)
LEFT JOIN paid p USING (billing_month, currency) LEFT JOIN failed f USING (billing_month, currency)
LEFT JOIN ar r USING (billing_month, currency)
ORDER BY 1, 2
"""

# Lines of issued documents correcting an earlier period, by reason.
ADJUSTMENTS_SQL = """
SELECT strftime(billing_month, '%Y-%m'), adjustment_reason, currency, count(*), sum(net_amount)
FROM ledger.document_lines WHERE adjustment_reason IS NOT NULL AND billing_month IN (SELECT unnest($months::DATE[]))
GROUP BY ALL ORDER BY ALL
"""

# Numbers per series and year: gapless when they are exactly 1..n.
NUMBERS_SQL = """
SELECT series, issue_year, count(*), count(*) = max(sequence_no) AND min(sequence_no) = 1 AND count(DISTINCT sequence_no) = count(*)
FROM ledger.document_numbers GROUP BY ALL ORDER BY ALL
"""

# Per finalized month: invoices and credit notes issued, with their first and last numbers.
# One closed month, per currency: its deferred revenue roll-forward and its trial balance (posted).
ROLLFORWARD_SQL = """
SELECT currency, opening_net_deferred, billings, recognized, corrections, closing_net_deferred, deferred_revenue, unbilled_ar,
       contract_assets
FROM revenue.deferred_rollforward WHERE accounting_month = $month ORDER BY currency
"""
TRIAL_BALANCE_SQL = """
SELECT currency, account, opening_balance, debits, credits, closing_balance
FROM revenue.trial_balance WHERE accounting_month = $month AND (opening_balance <> 0 OR debits <> 0 OR credits <> 0)
ORDER BY currency, account
"""

FINALIZED_SQL = """
SELECT f.billing_month, list((kind, n, first, last) ORDER BY kind DESC)
FROM ledger.finalized_months f
CROSS JOIN (VALUES ('invoices', 'INVOICE'), ('credit notes', 'CREDIT_NOTE')) k(kind, document_type)
LEFT JOIN LATERAL (
    SELECT count(*) AS n, min(document_number) AS first, max(document_number) AS last
    FROM ledger.documents d WHERE d.billing_month = f.billing_month AND d.document_type = k.document_type
) ON true
GROUP BY f.billing_month
"""

# Quarantined records and unrated events per month: a landed file belongs to the month in its name.
EXCEPTIONS_SQL = """
WITH months AS (SELECT unnest($months::DATE[]) AS billing_month),
q AS (
    SELECT CAST(strptime(regexp_extract(file, '(\\d{4}-\\d{2})-\\d{2}', 1), '%Y-%m') AS DATE) AS billing_month, count(*) AS n
    FROM audit.quarantine GROUP BY 1
),
u AS (SELECT billing_month, count(*) AS n FROM billing.unrated_usage GROUP BY 1)
SELECT strftime(m.billing_month, '%Y-%m'), coalesce(q.n, 0), coalesce(u.n, 0)
FROM months m LEFT JOIN q USING (billing_month) LEFT JOIN u USING (billing_month) ORDER BY 1
"""

# The example document: an issued invoice with adjustment lines, of an account that paid (then the latest, the lowest number).
EXAMPLE_INVOICE_SQL = """
WITH adjusted AS (
    SELECT document_id, count(*) FILTER (WHERE adjustment_reason IS NOT NULL) AS adjustments FROM ledger.document_lines GROUP BY ALL
)
SELECT d.document_number, d.issue_year, d.account_id
FROM ledger.documents d JOIN adjusted USING (document_id)
WHERE d.document_type = 'INVOICE'
ORDER BY adjustments > 0 DESC, d.account_id IN (SELECT account_id FROM ledger.payment_applications WHERE entry_type = 'PAYMENT') DESC,
         d.billing_month DESC, d.document_number
LIMIT 1
"""

HISTORY_SQL = """
SELECT 'document' AS entry, d.issue_date AS on_date, d.document_number, d.document_type AS what, d.currency, d.total AS amount,
       concat_ws(', ', s.status || coalesce(' ' || strftime(s.paid_date, '%Y-%m-%d'), ''), 'due ' || strftime(d.due_date, '%Y-%m-%d'),
                 d.line_count || ' lines' || coalesce(' (' || nullif((SELECT count(*) FROM ledger.document_lines l
                     WHERE l.document_id = d.document_id AND l.adjustment_reason IS NOT NULL), 0) || ' for earlier periods)', '')) AS note
FROM ledger.documents d LEFT JOIN billing.document_status s USING (document_id) WHERE d.account_id = $account
UNION ALL
SELECT 'application', applied_on, coalesce(document_number, 'account credit'), entry_type, currency, amount,
       coalesce('payment ' || payment_id, 'from ' || source_document_id, '')
FROM ledger.payment_applications WHERE account_id = $account
ORDER BY on_date, entry DESC, document_number
"""

# What re-running a finalized month must leave as it was: every issued document (number, content hash), the
# lines issued, the months finalized, the months closed (their content hashes), and the month's drafts (a
# finalized month's drafts are never rewritten).
RERUN_FINGERPRINT_SQL = """
SELECT (SELECT count(*) FROM ledger.documents), (SELECT count(*) FROM ledger.document_lines),
       (SELECT md5(coalesce(string_agg(document_number || ':' || content_hash, ',' ORDER BY document_number), '')) FROM ledger.documents),
       (SELECT count(*) FROM ledger.finalized_months),
       (SELECT md5(coalesce(string_agg(accounting_month || ':' || content_hash, ',' ORDER BY accounting_month), '')) FROM revenue.closed_months),
       (SELECT md5(coalesce(string_agg(line_id || ':' || total_amount, ',' ORDER BY line_id), '')) FROM billing.invoice_lines WHERE billing_month = $month)
"""


def sample_stamp(args: argparse.Namespace) -> dict:
    """What made the sample: the options and a hash of the generator and the record contract."""
    root = Path(__file__).resolve().parents[1]
    code = hashlib.sha256(b"".join((root / f).read_bytes() for f in ("sources/generator.py", "sources/entities.py")))
    return {"customers": args.customers, "months": args.months, "start": args.start, "seed": args.seed,
            "generator_sha256": code.hexdigest()}


def check_sample_stamp(path: Path, stamp: dict, deliveries: Path, landing: Path) -> None:
    """Refuse to go on with a sample made by another generator version or other options (it would mix two samples)."""
    made = any(p.is_file() for d in (deliveries, landing) if d.exists() for p in d.rglob("*"))
    if not made:
        return
    previous = json.loads(path.read_text()) if path.exists() else None
    if previous != stamp:
        why = "no record of how it was made" if previous is None else ", ".join(
            f"{k} {previous.get(k)} -> {v}" for k, v in stamp.items() if previous.get(k) != v)
        raise SystemExit(f"The demo data in {path.parent} was made by another generator or other options ({why}).\n"
                         f"Start over with `make clean demo` (this deletes the demo's warehouse and Dagster history).")


def batches_by_month(deliveries: Path) -> dict[date, list[Path]]:
    """The delivered files by the month of their batch date (the snapshot, dated the first day, lands with its month)."""
    by_month: dict[date, list[Path]] = {}
    for path in sorted(p for p in deliveries.rglob("*") if p.is_file()):
        if found := BATCH_DATE.search(path.name):
            by_month.setdefault(date(int(found[1]), int(found[2]), 1), []).append(path)
    return by_month


def land(files: list[Path], deliveries: Path, landing: Path) -> int:
    """Copy the files not yet landed into the landing zone, keeping their modification times (the delivery
    order), each under a hidden name first and renamed when complete; return how many landed."""
    landed = 0
    for path in files:
        target = landing / path.relative_to(deliveries)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name("." + target.name)
        shutil.copy2(path, partial)
        os.replace(partial, target)
        landed += 1
    return landed


def _rows_if_table(warehouse: Path, schema: str, table: str, sql: str) -> list[tuple]:
    """The rows of ``sql`` when the warehouse exists and has ``schema.table`` (a warehouse before its migration may not)."""
    if not warehouse.exists():
        return []
    with connect(warehouse, read_only=True) as con:
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?", [schema, table]).fetchone()[0]:
            return []
        return con.execute(sql).fetchall()


def finalized_months(warehouse: Path) -> dict[date, str]:
    """Billing months already finalized, with what each issued: e.g. "40 invoices (INV-2025-000038 … INV-2025-000077), 2 credit notes (…)"."""
    return {month: ", ".join(f"{n} {kind}" + (f" ({first} … {last})" if n else "") for kind, n, first, last in issued)
            for month, issued in _rows_if_table(warehouse, "ledger", "finalized_months", FINALIZED_SQL)}


def closed_months(warehouse: Path) -> dict[date, str]:
    """Accounting months already closed, with what each posted: e.g. "1,234 revenue rows, 56 journal lines"."""
    rows = _rows_if_table(warehouse, "revenue", "closed_months",
                          "SELECT accounting_month, recognized_rows, journal_lines FROM revenue.closed_months")
    return {month: f"{recognized:,} revenue rows, {lines:,} journal lines" for month, recognized, lines in rows}


def rerun_finalized_month(month: date, instance: dg.DagsterInstance, warehouse: Path) -> None:
    """Re-run ``month``'s bill cycle after it was finalized and closed: nothing issued or posted, and none of its
    drafts, may change."""
    with connect(warehouse, read_only=True) as con:
        before = con.execute(RERUN_FINGERPRINT_SQL, {"month": month}).fetchone()
    _run("bill_cycle", instance, month)
    with connect(warehouse, read_only=True) as con:
        after = con.execute(RERUN_FINGERPRINT_SQL, {"month": month}).fetchone()
        problems = changed_documents(con) + number_gaps(con) + changed_closed_months(con)
    if after != before or problems:
        sys.exit(f"re-running bill_cycle for {month:%Y-%m} changed what was issued or closed: {before} -> {after}; {problems}")
    print(f"Re-ran bill_cycle for {month:%Y-%m} (finalized): its drafts and the {before[0]} documents issued "
          f"({before[1]} lines) are unchanged, content hashes recomputed, numbers gapless; the months closed are "
          f"unchanged (their hashes recomputed)")


def _root_cause(error) -> str:
    """The message of the exception that started a step failure (Dagster wraps it)."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def _run(job_name: str, instance: dg.DagsterInstance, partition: date | None = None, ops: dict | None = None) -> None:
    """Run a job in this process (``ops``: its ops' config); a failed run or a failed ERROR check stops the demo, a
    failed WARN check is shown."""
    from pipelines.definitions import defs

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}, "ops": ops or {}}
    result = defs.resolve_job_def(job_name).execute_in_process(  # this process is the run's worker (pipelines/recover.py)
        instance=instance, raise_on_error=False, run_config=quiet, tags=worker_tags(),
        partition_key=month_key(partition) if partition else None,
    )
    what = f"{job_name}" + (f" for {month_key(partition)}" if partition else "")
    failed = [e.asset_check_evaluation_data for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed]
    blocking = [f"{c.asset_key.to_user_string()} {c.check_name}: {c.description or ''} {({k: m.value for k, m in c.metadata.items()})}"
                for c in failed if c.severity == dg.AssetCheckSeverity.ERROR]
    if blocking:
        sys.exit(f"run of {what}: asset checks failed (run {result.run_id}): " + "; ".join(blocking))
    if not result.success:
        errors = [_root_cause(e.step_failure_data.error) for e in result.all_events if e.is_step_failure]
        sys.exit(f"run of {what} failed (run {result.run_id}): " + ("; ".join(errors) or "see the run's log"))
    for c in failed:
        print(f"         warning: check {c.check_name} of {c.asset_key.to_user_string()} failed ({what})")


def run_month(month: date, instance: dg.DagsterInstance, warehouse: Path) -> None:
    """Month end for ``month``: ingest what landed, bill, finalize, apply the payments received, then close it."""
    for job, partition in (("ingest", None), ("bill_cycle", month), ("finalize", month), ("apply_payments", None)):
        _run(job, instance, partition)
    print(f"         finalized: {finalized_months(warehouse)[month]}")
    close(month, instance, warehouse)


def close(month: date, instance: dg.DagsterInstance, warehouse: Path) -> None:
    """Recompute revenue from the ledger as it now stands, then close accounting ``month`` (its billing month is finalized)."""
    _run("revenue", instance)
    _run("close_month", instance, ops={"revenue_close": {"config": {"month": month_key(month)}}})
    print(f"         closed:    {closed_months(warehouse)[month]}")


def _money(amount, cur: str) -> str:
    return f"{amount:,.{minor_unit(cur)}f}"  # exact Decimal formatting


def print_summary(warehouse: Path, months: list[date]) -> None:
    with connect(warehouse, read_only=True) as con:
        rows = con.execute(SUMMARY_SQL, {"months": months}).fetchall()
        ledger = con.execute(LEDGER_SQL, {"months": months}).fetchall()
        corrections = con.execute(ADJUSTMENTS_SQL, {"months": months}).fetchall()
        numbers = con.execute(NUMBERS_SQL).fetchall()
        exceptions = con.execute(EXCEPTIONS_SQL, {"months": months}).fetchall()
        files = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'LOADED'), count(*) FILTER (WHERE status = 'DUPLICATE'), "
            "coalesce(sum(records_read), 0), coalesce(sum(records_quarantined), 0) FROM audit.ingested_files"
        ).fetchone()
    head = f"{'month':<8} {'cur':<4} {'drafts':>8} {'billed (net)':>14} {'tax':>12} {'billed total':>14} {'revenue recog.':>15} {'deferred at end':>16}"
    print("\nBill cycle summary (the month's drafts, as finalized)")
    print(head)
    print("-" * len(head))
    for month, cur, n, *amounts in rows:
        net, tax, total, rec, deferred = (_money(a, cur) for a in amounts)
        print(f"{month:<8} {cur:<4} {n:>8} {net:>14} {tax:>12} {total:>14} {rec:>15} {deferred:>16}")
    head = (f"{'month':<8} {'cur':<4} {'inv.':>5} {'CN':>4} {'adj.':>5} {'paym.':>6} {'failed':>6} {'invoiced':>13} {'credited':>11} "
            f"{'adjustments':>12} {'received':>13} {'open AR':>13} {'acct credit':>12}")
    print("\nLedger summary: documents issued by each month's finalization, adjustment lines (earlier periods) on them,")
    print("payments received (applied, net of refunds), failed or rejected payments, receivables at the month end")
    print(head)
    print("-" * len(head))
    for month, cur, inv, cn, adj, paym, failed, *amounts in ledger:
        invoiced, credited, adjustments, received, open_ar, credit = (_money(a, cur) for a in amounts)
        print(f"{month:<8} {cur:<4} {inv:>5} {cn:>4} {adj:>5} {paym:>6} {failed:>6} {invoiced:>13} {credited:>11} "
              f"{adjustments:>12} {received:>13} {open_ar:>13} {credit:>12}")
    print("\nAdjustment lines (corrections of earlier periods) on the documents issued, by reason")
    print(f"{'month':<8} {'adjustment reason':<18} {'cur':<4} {'lines':>5} {'net amount':>12}")
    for month, reason, cur, n, net in corrections:
        print(f"{month:<8} {reason:<18} {cur:<4} {n:>5} {_money(net, cur):>12}")
    print("\nDocument numbers: " + ("; ".join(
        f"{series}-{year} 000001 … {n:06d} ({'gapless' if gapless else 'GAPS'})" for series, year, n, gapless in numbers
    ) or "none issued"))
    print(f"\n{'month':<8} {'records quarantined':>20} {'usage events unrated':>21}")
    for month, q, u in exceptions:
        print(f"{month:<8} {q:>20} {u:>21}")
    print(f"\nFiles seen {files[0]} (loaded {files[1]}, duplicate deliveries skipped {files[2]}); "
          f"records read {files[3]}, quarantined {files[4]} (audit.quarantine).")


def print_closed_month(warehouse: Path) -> None:
    """The latest closed month, per currency: its deferred revenue roll-forward and its trial balance."""
    with connect(warehouse, read_only=True) as con:
        (month,) = con.execute("SELECT max(accounting_month) FROM revenue.closed_months").fetchone()
        if month is None:
            return
        rollforward = con.execute(ROLLFORWARD_SQL, {"month": month}).fetchall()
        balances = con.execute(TRIAL_BALANCE_SQL, {"month": month}).fetchall()
    head = (f"{'cur':<4} {'opening':>13} {'billings':>13} {'recognized':>13} {'corrections':>12} {'closing':>13} "
            f"{'deferred rev.':>14} {'unbilled AR':>12} {'contract ast.':>13}")
    print(f"\nDeferred revenue roll-forward, {month:%Y-%m} (closed): opening + billings - recognized - corrections = closing "
          "net deferred\n(= deferred revenue - unbilled AR - contract assets)")
    print(head)
    print("-" * len(head))
    for cur, *amounts in rollforward:
        opening, billings, recognized, corrections, closing, deferred, unbilled, assets = (_money(a, cur) for a in amounts)
        print(f"{cur:<4} {opening:>13} {billings:>13} {recognized:>13} {corrections:>12} {closing:>13} {deferred:>14} "
              f"{unbilled:>12} {assets:>13}")
    head = f"{'cur':<4} {'account':<24} {'opening':>14} {'debits':>14} {'credits':>14} {'closing':>14}"
    print(f"\nTrial balance, {month:%Y-%m} (closed; balances debit positive, each currency's closing sums to 0)")
    print(head)
    print("-" * len(head))
    for cur, account, *amounts in balances:
        opening, debits, credits, closing = (_money(a, cur) for a in amounts)
        print(f"{cur:<4} {account:<24} {opening:>14} {debits:>14} {credits:>14} {closing:>14}")


def print_example(warehouse: Path) -> None:
    """One invoice (its HTML file) and its account's ledger history."""
    with connect(warehouse, read_only=True) as con:
        example = con.execute(EXAMPLE_INVOICE_SQL).fetchone()
        if example is None:
            return
        number, year, account = example
        history = con.execute(HISTORY_SQL, {"account": account}).fetchall()
        credit_note = con.execute(
            "SELECT document_number, issue_year FROM ledger.documents WHERE document_type = 'CREDIT_NOTE' ORDER BY document_number LIMIT 1"
        ).fetchone()
    directory = documents_dir(warehouse)
    print(f"\nAn invoice:    {document_path(directory, year, number)}")
    if credit_note:
        print(f"A credit note: {document_path(directory, credit_note[1], credit_note[0])}")
    print(f"PDF of one:    .venv/bin/python -m pipelines.documents {number} --pdf {number}.pdf")
    print(f"\nLedger history of account {account}")
    for entry, on_date, doc, what, cur, amount, note in history:
        print(f"  {on_date:%Y-%m-%d}  {entry:<11} {what:<14} {doc:<16} {_money(amount, cur):>12} {cur}  {note}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--start", default="2025-01")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--deliveries", type=Path, default=None,
                        help="where the generated batches wait to land (default: 'deliveries' next to the landing zone)")
    args = parser.parse_args(argv)

    landing, warehouse = default_landing_dir(), default_warehouse_path()
    deliveries = (args.deliveries or landing.parent / "deliveries").resolve()
    first = month_of_key(args.start)
    months = [add_months(first, i) for i in range(args.months)]

    stamp = sample_stamp(args)
    check_sample_stamp(landing.parent / "sample.json", stamp, deliveries, landing)
    if any(p.is_file() for p in deliveries.rglob("*")):
        print(f"Using the sample deliveries in {deliveries}")
    elif landing.exists() and any(landing.iterdir()):
        print(f"Using the landing zone in {landing} (no deliveries in {deliveries}: everything has landed)")
    else:
        from sources.generator import generate_landing_zone

        print(f"Generating the sample deliveries in {deliveries} ({args.customers} customers, {args.months} months, seed {args.seed})")
        generate_landing_zone(deliveries, customers=args.customers, start_month=args.start, months=args.months, seed=args.seed)
        (landing.parent / "sample.json").write_text(json.dumps(stamp, indent=1) + "\n")
    batches = batches_by_month(deliveries) if deliveries.exists() else {}

    instance = dg.DagsterInstance.get()
    for recovered in recover_dead_runs(instance):  # a killed earlier run never blocks this one
        print(recovered)
    print(f"Month by month: the batch lands in {landing}, then ingest, bill_cycle, finalize, apply_payments, revenue, close_month")
    for month in months:
        landed = land(batches.get(month, []), deliveries, landing)
        if done := finalized_months(warehouse).get(month):
            if month in closed_months(warehouse):
                print(f"{month:%Y-%m}:  {landed} files landed; finalized already ({done}; closed): skipped")
                continue
            print(f"{month:%Y-%m}:  {landed} files landed; finalized already ({done})")
            close(month, instance, warehouse)
            continue
        print(f"{month:%Y-%m}:  {landed} files landed")
        run_month(month, instance, warehouse)

    rerun_finalized_month(months[0], instance, warehouse)
    print_summary(warehouse, months)
    print_closed_month(warehouse)
    print_example(warehouse)
    print(f"""
Open the UI:            make ui   (Dagster webserver + daemon on http://127.0.0.1:3000, same warehouse)
Query the warehouse:    .venv/bin/python -c "import duckdb; print(duckdb.connect('{snapshot_path(warehouse)}', read_only=True).sql('FROM ledger.documents LIMIT 5'))"
                        (the read-only snapshot; the tables are described in docs/warehouse.md)
Month-end runbook:      docs/operations.md""")


if __name__ == "__main__":
    main()
