"""The warehouse's schema version, migrated forward, never rebuilt (DESIGN.md "Architecture").

A warehouse records the versions applied to it in ``audit.schema_version``. Opening it for
writing (:func:`migrate`):

* an empty database gets every table of the contract, at the latest version;
* an older warehouse gets the numbered :data:`MIGRATIONS` it lacks, each in its own
  transaction with its version row (a failing migration leaves the warehouse as it was); a
  warehouse written before versioning started (tables, no ``audit.schema_version``) is version 1;
* a warehouse of a newer version than this code refuses to open (:class:`WarehouseTooNew`);
* then the warehouse must match the contract exactly, every table, column and type
  (:class:`SchemaMismatch` names what differs: a contract change without its migration), and
  table and column comments are brought up to date (they are documentation, not data).

A migration is explicit: :func:`add_table` and :func:`add_column` apply additive changes of the
contract in place; anything else is SQL written in the migration, and ledger rows are never
rewritten. docs/architecture.md ("Changing the warehouse") shows how to add one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb

from warehouse.contract import DERIVED, Table
from warehouse.ddl import comment_sql, create_schemas, create_table_sql
from warehouse.tables import TABLES

VERSION_TABLE = "audit.schema_version"


class WarehouseTooNew(Exception):
    """The warehouse was migrated by a newer version of Tally than this code."""


class SchemaMismatch(Exception):
    """The warehouse's tables differ from the contract's (a change declared without its migration)."""


@dataclass(frozen=True)
class Migration:
    version: int  # 2, 3, ...: the version the warehouse has once it is applied
    description: str
    apply: Callable[[duckdb.DuckDBPyConnection, Mapping[str, Table]], None]


def add_table(name: str) -> Callable[[duckdb.DuckDBPyConnection, Mapping[str, Table]], None]:
    """A step creating the contract's table ``name`` (with its comments)."""
    def step(con: duckdb.DuckDBPyConnection, tables: Mapping[str, Table]) -> None:
        con.execute(create_table_sql(tables[name]))
        con.execute(comment_sql(tables[name]))
    return step


def add_column(name: str, column: str) -> Callable[[duckdb.DuckDBPyConnection, Mapping[str, Table]], None]:
    """A step adding the contract's nullable ``column`` to table ``name`` (existing rows get NULL)."""
    def step(con: duckdb.DuckDBPyConnection, tables: Mapping[str, Table]) -> None:
        c = tables[name].column(column)
        assert c.nullable, f"{name}.{column}: a NOT NULL column needs a migration that fills it"
        con.execute(f"ALTER TABLE {name} ADD COLUMN {c.name} {c.sql_type}")
    return step


def drop_stored_macros(con: duckdb.DuckDBPyConnection, tables: Mapping[str, Table]) -> None:
    """Drop the SQL macros earlier versions stored in the warehouse file: they are installed per
    connection now (TEMP), and stored ones made ``IMPORT DATABASE`` of an export fail."""
    for db, schema, name, kind in con.execute("""
            SELECT DISTINCT database_name, schema_name, function_name, function_type FROM duckdb_functions()
            WHERE database_name = current_database() AND NOT internal AND function_type IN ('macro', 'table_macro')""").fetchall():
        # fully qualified: a TEMP macro of the same name would otherwise be the one dropped
        con.execute(f"DROP {'MACRO TABLE' if kind == 'table_macro' else 'MACRO'} {db}.{schema}.{name}")


def drop_table(name: str) -> Callable[[duckdb.DuckDBPyConnection, Mapping[str, Table]], None]:
    """A step dropping a DERIVED table the contract no longer has (ledger tables are never dropped)."""
    def step(con: duckdb.DuckDBPyConnection, tables: Mapping[str, Table]) -> None:
        assert name not in tables, f"{name} is still in the contract"
        con.execute(f"DROP TABLE IF EXISTS {name}")
    return step


def recreate_derived(name: str) -> Callable[[duckdb.DuckDBPyConnection, Mapping[str, Table]], None]:
    """A step recreating the DERIVED table ``name`` with the contract's columns, empty: its rows are recomputed whole
    by the next run of its asset (whether an earlier migration created it at an older or at the current contract)."""
    def step(con: duckdb.DuckDBPyConnection, tables: Mapping[str, Table]) -> None:
        assert tables[name].kind == DERIVED, f"{name} is not DERIVED: its rows cannot be recomputed"
        con.execute(f"DROP TABLE IF EXISTS {name}")
        add_table(name)(con, tables)
    return step


# Version 1 is the baseline: the contract as it stood when versioning started.
def steps(*parts: Callable[[duckdb.DuckDBPyConnection, Mapping[str, Table]], None]) -> Callable[[duckdb.DuckDBPyConnection, Mapping[str, Table]], None]:
    """One migration made of several steps, applied in order (in the migration's transaction)."""
    def apply(con: duckdb.DuckDBPyConnection, tables: Mapping[str, Table]) -> None:
        for part in parts:
            part(con, tables)
    return apply


LEDGER_TABLES = ("ledger.documents", "ledger.document_lines", "ledger.document_numbers", "ledger.finalized_months",
                 "ledger.voids", "ledger.payment_events", "ledger.payment_applications")
RECEIVABLES_TABLES = ("billing.rating_runs", "billing.settlement_review", "billing.billing_exceptions", "billing.document_status",
                      "billing.account_balances", "billing.ar_aging")
DRAFT_LINE_COLUMNS = ("service_month", "discount_pct", "coupon_id", "coupon_amount", "tax_point",
                      "reference_document_number", "adjustment_reason")
DRAFT_HEADER_COLUMNS = ("document_type", "coupon_total", "tax_point")
DROPPED_DERIVED_TABLES = ("revenue.recognition", "revenue.deferred_balances")
"""Derived tables a migration dropped (recomputed by their successors from the ledger; no ledger row is ever dropped)."""
REVENUE_TABLES = ("revenue.performance_obligations", "revenue.allocations", "revenue.schedule", "revenue.recognized",
                  "revenue.journal_lines", "revenue.open_journal_lines", "revenue.trial_balance", "revenue.deferred_rollforward",
                  "revenue.waterfall", "revenue.contract_balances", "revenue.closed_months")

MART_TABLES = ("marts.customer_mrr", "marts.mrr_movements", "marts.customer_churn", "marts.revenue_by_product",
               "marts.deferred_revenue_rollforward", "marts.revenue_waterfall", "marts.ar_aging", "marts.customer_360")

MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "SQL macros are installed per connection, no longer stored in the warehouse", drop_stored_macros),
    Migration(3, "the billing ledger: issued documents, numbers, finalized months, voids, payments; settlement review, "
                 "exceptions and receivables; draft lines carry service month, discounts, coupons, tax point and corrections",
              steps(*(add_table(t) for t in LEDGER_TABLES + RECEIVABLES_TABLES),
                    *(add_column("billing.invoice_lines", c) for c in DRAFT_LINE_COLUMNS),
                    *(add_column("billing.invoices", c) for c in DRAFT_HEADER_COLUMNS))),
    Migration(4, "coupons and promotions (coupons, coupon_products, coupon_redemptions); plan_charges.billing_interval",
              steps(*(add_table(f"{schema}.{name}") for name in ("coupons", "coupon_products", "coupon_redemptions")
                      for schema in ("raw",)),
                    *(add_table(f"core.{name}{suffix}") for name in ("coupons", "coupon_products", "coupon_redemptions")
                      for suffix in ("_history", "")),
                    *(add_column(t, "billing_interval") for t in ("raw.plan_charges", "core.plan_charges_history",
                                                                    "core.plan_charges")))),
    Migration(5, "revenue recognition to ASC 606: obligations, allocations, schedule, posted revenue and journals, "
                 "roll-forward, waterfall, contract balances, trial balance, closed months; standalone selling prices; "
                 "orders.contract_term_months",
              steps(*(drop_table(t) for t in DROPPED_DERIVED_TABLES),
                    *(add_table(t) for t in REVENUE_TABLES),
                    add_table("raw.standalone_selling_prices"), add_table("core.standalone_selling_prices_history"),
                    add_table("core.standalone_selling_prices"),
                    *(add_column(t, "contract_term_months") for t in ("raw.orders", "core.orders_history", "core.orders")))),
    Migration(6, "incremental settlement: billing.settlement_inputs (what each bill run settled per account)",
              add_table("billing.settlement_inputs")),
    Migration(7, "estimates of what is rendered and not yet invoiced: performance obligations carry their line's "
                 "subscription and price version (the usage a consumption estimate is recognized by)",
              recreate_derived("revenue.performance_obligations")),
    Migration(8, "the analysts' marts: MRR and its movements, churn and ARPU, revenue by product, deferred revenue "
                 "roll-forward, revenue waterfall, AR aging, customer 360",
              steps(*(add_table(t) for t in MART_TABLES))),
    Migration(9, "incremental state and ingest: audit.state_applied (what of each change log core.* has applied), "
                 "audit.ingested_files.mtime_ns (an unchanged landed file is recognized without re-reading it)",
              steps(add_table("audit.state_applied"), add_column("audit.ingested_files", "mtime_ns"))),
)


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return max((m.version for m in migrations), default=1)


def contract_hash(tables: Mapping[str, Table] = TABLES) -> str:
    """Fingerprint of the contract: every table's DDL and comments."""
    text = "\n".join(create_table_sql(t) + comment_sql(t) for t in tables.values())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _existing_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str, str | None]]]:
    rows = con.execute("""
        SELECT schema_name || '.' || table_name, column_name, data_type, comment FROM duckdb_columns()
        WHERE database_name = current_database() AND NOT internal ORDER BY schema_name, table_name, column_index""").fetchall()
    out: dict[str, list] = {}
    for table, column, data_type, comment in rows:
        out.setdefault(table, []).append((column, data_type, comment))
    return out


def current_version(con: duckdb.DuckDBPyConnection, tables: Mapping[str, Table] = TABLES) -> int | None:
    """The warehouse's version; None for an empty database."""
    existing = _existing_columns(con)
    if VERSION_TABLE in existing:
        return con.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone()[0]
    return 1 if any(name in existing for name in tables) else None


def _record(con: duckdb.DuckDBPyConnection, version: int, description: str, tables: Mapping[str, Table]) -> None:
    con.execute(f"INSERT INTO {VERSION_TABLE} VALUES (?, ?, ?, ?)",
                [version, description, contract_hash(tables), datetime.now(timezone.utc).replace(tzinfo=None)])


def _in_transaction(con: duckdb.DuckDBPyConnection, work: Callable[[], None]) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        work()
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def mismatches(con: duckdb.DuckDBPyConnection, tables: Mapping[str, Table] = TABLES) -> list[str]:
    """How the warehouse's tables differ from the contract (empty when they match)."""
    existing = _existing_columns(con)
    problems = []
    for name, t in tables.items():
        # Compared as sets: a migration appends the columns it adds, and every writer inserts by name.
        have = sorted((c, typ) for c, typ, _ in existing.get(name, []))
        want = sorted((c.name, c.sql_type) for c in t.columns)
        if not have:
            problems.append(f"{name}: missing")
        elif have != want:
            problems.append(f"{name}: has {have}, the contract declares {want}")
    return problems


def _refresh_comments(con: duckdb.DuckDBPyConnection, tables: Mapping[str, Table]) -> None:
    existing = _existing_columns(con)
    stale = [t for name, t in tables.items()
             if [comment for _, _, comment in existing[name]] != [c.description for c in t.columns]]
    comments = dict(con.execute("SELECT schema_name || '.' || table_name, comment FROM duckdb_tables() "
                                "WHERE database_name = current_database()").fetchall())
    stale += [t for name, t in tables.items() if comments.get(name) != t.description and t not in stale]
    for t in stale:
        con.execute(comment_sql(t))


def migrate(con: duckdb.DuckDBPyConnection, tables: Mapping[str, Table] = TABLES,
            migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the warehouse on ``con`` to the latest version of ``tables``; return that version."""
    latest = latest_version(migrations)
    version = current_version(con, tables)
    if version is not None and version > latest:
        raise WarehouseTooNew(
            f"This warehouse is at schema version {version}, newer than this code's {latest}: it was migrated by a "
            "newer Tally. Run that version (or newer); this one would misread its tables.")
    create_schemas(con)
    if version is None:
        def create() -> None:
            for t in tables.values():
                con.execute(create_table_sql(t))
                con.execute(comment_sql(t))
            _record(con, latest, f"created at version {latest}", tables)
        _in_transaction(con, create)
    else:
        if VERSION_TABLE not in _existing_columns(con):
            _in_transaction(con, lambda: (add_table(VERSION_TABLE)(con, tables),
                                          _record(con, 1, "baseline: written before schema versioning", tables)))
        for m in sorted(migrations, key=lambda m: m.version):
            if m.version > version:
                _in_transaction(con, lambda m=m: (m.apply(con, tables), _record(con, m.version, m.description, tables)))
    if problems := mismatches(con, tables):
        raise SchemaMismatch("The warehouse does not match the table contract (a change without its migration?): "
                             + "; ".join(problems))
    _refresh_comments(con, tables)
    return latest
