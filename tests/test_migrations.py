"""The warehouse migrates forward and never loses a row (warehouse/migrations.py).

A warehouse written by the previous version of the contract (tests/fixtures/warehouse_v1: written
before versioning, by the commit before this layer existed) is opened by the current code: it is
migrated, every row is still there, and a real bill cycle run on it gives the same invoices. A
synthetic later contract shows numbered migrations applied once, in order, each in one
transaction; a newer warehouse is refused; a contract change without its migration is named.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import pytest

from sources.entities import Column
from warehouse.connection import connect
from warehouse.contract import LEDGER, Table
from warehouse.migrations import (
    DROPPED_DERIVED_TABLES, MIGRATIONS, Migration, latest_version, SchemaMismatch, WarehouseTooNew, add_column, add_table, current_version, migrate, mismatches,
)
from warehouse.tables import TABLES

V1 = Path(__file__).parent / "fixtures" / "warehouse_v1"


def import_v1(path: Path) -> None:
    """The fixture as the warehouse file its code left: its tables, and the SQL macros that code stored in it
    (an export cannot carry those: re-importing it failed on them, which is why version 2 drops them)."""
    from domain import money, periods

    with duckdb.connect(str(path)) as con:
        con.execute(f"IMPORT DATABASE '{V1}'")
        for module in (money, periods):
            con.execute(module._MACROS.replace("CREATE OR REPLACE TEMP MACRO", "CREATE OR REPLACE MACRO"))


def stored_macros(con) -> int:
    return con.execute("SELECT count(*) FROM duckdb_functions() WHERE database_name = current_database() "
                       "AND function_type = 'macro' AND NOT internal").fetchone()[0]


def fingerprints(con, tables, columns: dict[str, list[str]] | None = None) -> dict[str, tuple[int, int]]:
    """Rows and an order-independent hash of every row (of ``columns[t]``, default all), per table."""
    def cols(t):
        return ", ".join(columns[t]) if columns else "*"
    return {t: con.execute(f"SELECT count(*), coalesce(sum(hash(x)::HUGEINT), 0) FROM (SELECT {cols(t)} FROM {t}) x").fetchone()
            for t in tables}


def columns_of(con, tables) -> dict[str, list[str]]:
    return {t: [c for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE {t})").fetchall()] for t in tables}


@pytest.fixture()
def v1(tmp_path) -> Path:
    path = tmp_path / "v1.duckdb"
    import_v1(path)
    return path


def test_a_warehouse_written_before_versioning_is_migrated_with_every_row(v1):
    with duckdb.connect(str(v1)) as con:
        old_tables = [t for (t,) in con.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables()").fetchall()]
        old_columns = columns_of(con, old_tables)
        before = fingerprints(con, old_tables, old_columns)
        assert "audit.schema_version" not in old_tables and current_version(con) == 1
        assert stored_macros(con) > 10
    assert sum(n for n, _ in before.values()) == 8294  # a real warehouse: raw, core, billing, revenue rows
    with connect(v1) as con:
        assert migrate(con) == latest_version() >= 5
        # every row and value of every table, unchanged, but the derived revenue tables version 5 replaced (their
        # successors recompute revenue from the ledger); a migration never drops anything else
        kept = [t for t in old_tables if t not in DROPPED_DERIVED_TABLES]
        assert set(old_tables) - set(kept) == set(DROPPED_DERIVED_TABLES)
        assert not any(t in TABLES for t in DROPPED_DERIVED_TABLES)
        assert fingerprints(con, kept, old_columns) == {t: before[t] for t in kept}
        assert mismatches(con) == []
        assert con.execute("SELECT version, description FROM audit.schema_version ORDER BY version").fetchall() == [
            (1, "baseline: written before schema versioning"), *((m.version, m.description) for m in MIGRATIONS)]
        assert stored_macros(con) == 0
        migrate(con)  # opening again changes nothing
        assert con.execute("SELECT count(*) FROM audit.schema_version").fetchone()[0] == latest_version()
    with connect(v1) as con:  # and the macros still work: each connection installs them
        assert con.execute("SELECT round_money(1.005, 'USD')").fetchone()[0] == __import__("decimal").Decimal("1.01")


def test_a_bill_cycle_on_a_migrated_warehouse_reproduces_its_invoices(v1, tmp_path):
    """Re-running January and February on the migrated v1 warehouse (written by the code before settlement)
    drafts the same 75 invoices (ids and draft numbers) with the same totals, except where the rules changed:
    * the tax point is the issue date (Feb 1 for January's invoices), no longer the day before: the 3 January
      invoices with US-WA lines take WA's 6.8 % in force from Feb 1 instead of 6.5 %, each line's tax
      round(net x 0.068) instead of round(net x 0.065). Every line has a rate: no billing exception."""
    from tests.pipeline import failed_checks, run_bill_cycle

    def invoices():
        with duckdb.connect(str(v1), read_only=True) as con:
            return {i: rest for i, *rest in con.execute(
                "SELECT invoice_id, invoice_number, total, tax_total FROM billing.invoices ORDER BY 1").fetchall()}

    before = invoices()
    result = run_bill_cycle(v1, tmp_path / "no-landing", date(2025, 1, 1), date(2025, 2, 1))
    assert result.success and failed_checks(result) == []
    after = invoices()
    assert len(before) == 75 and after.keys() == before.keys()
    assert {i: n for i, (n, *_) in after.items()} == {i: n for i, (n, *_) in before.items()}
    with duckdb.connect(str(v1), read_only=True) as con:
        wa_tax_change = dict(con.execute(
            "SELECT invoice_id, sum(round(net_amount * 0.068, 2) - round(net_amount * 0.065, 2)) FROM billing.invoice_lines "
            "WHERE billing_month = DATE '2025-01-01' AND tax_jurisdiction = 'US-WA' GROUP BY 1").fetchall())
        exceptions = con.execute("SELECT count(*) FROM billing.billing_exceptions").fetchone()[0]
    assert len(wa_tax_change) == 3
    changed = {i for i in before if after[i] != before[i]}
    assert changed == set(wa_tax_change)
    for i in changed:
        assert after[i][2] - before[i][2] == wa_tax_change[i] == after[i][1] - before[i][1] != 0  # tax and total
    assert exceptions == 0  # every line of the sample has a rate


# ------------------------------------------------------------------ a later contract, synthetically

NOTE = Column("internal_note", "VARCHAR", "A finance note on the invoice (added in version 2).")
HOLDS = Table("audit", "invoice_holds", LEDGER, ("invoice_id",), "one row per held invoice",
              "Invoices held back from sending (added in version 3).",
              (Column("invoice_id", "VARCHAR", "Held invoice.", False), Column("reason", "VARCHAR", "Why.")))


def later_contract() -> dict[str, Table]:
    tables = dict(TABLES)
    inv = tables["billing.invoices"]
    tables["billing.invoices"] = replace(inv, columns=(*inv.columns, NOTE))
    tables[HOLDS.qualified] = HOLDS
    return tables


V = latest_version()  # this code's version; the synthetic later contract adds V + 1 and V + 2
LATER = [
    *MIGRATIONS,
    Migration(V + 1, "billing.invoices.internal_note", add_column("billing.invoices", "internal_note")),
    Migration(V + 2, "audit.invoice_holds", add_table("audit.invoice_holds")),
]


def test_numbered_migrations_apply_once_in_order_and_keep_every_row(v1):
    contract = later_contract()
    with connect(v1) as con:
        kept = ["billing.invoices", "billing.invoice_lines", "raw.usage_records"]
        migrate(con)  # to this code's version first: the later contract's migrations are what is tested
        old_columns = columns_of(con, kept)
        before = fingerprints(con, kept, old_columns)
        invoices = con.execute("SELECT count(*) FROM billing.invoices").fetchone()[0]
        assert migrate(con, contract, LATER) == V + 2
        assert migrate(con, contract, LATER) == V + 2  # idempotent
        assert con.execute("SELECT version FROM audit.schema_version ORDER BY version").fetchall() == [
            (v,) for v in range(1, V + 3)]
        assert con.execute("SELECT count(*), count(internal_note) FROM billing.invoices").fetchone() == (invoices, 0)
        assert fingerprints(con, kept, old_columns) == before
        assert con.execute("SELECT comment FROM duckdb_tables() WHERE table_name = 'invoice_holds'").fetchone() == (
            "Invoices held back from sending (added in version 3).",)
        assert mismatches(con, contract) == []


def test_an_empty_database_is_created_at_the_latest_version(tmp_path):
    with connect(tmp_path / "new.duckdb") as con:
        assert migrate(con, later_contract(), LATER) == V + 2
        assert con.execute("SELECT version, description FROM audit.schema_version").fetchall() == [
            (V + 2, f"created at version {V + 2}")]
        assert mismatches(con, later_contract()) == []


def test_a_failing_migration_leaves_the_warehouse_as_it_was(v1):
    def half_done(con, tables):
        add_column("billing.invoices", "internal_note")(con, tables)
        raise RuntimeError("disk full")

    with connect(v1) as con:
        migrate(con)
        with pytest.raises(RuntimeError, match="disk full"):
            migrate(con, later_contract(), [*MIGRATIONS, Migration(V + 1, "breaks halfway", half_done)])
        assert current_version(con) == V
        assert "internal_note" not in con.sql("SELECT * FROM billing.invoices LIMIT 0").columns


def test_a_newer_warehouse_refuses_to_open(v1):
    with connect(v1) as con:
        migrate(con, later_contract(), LATER)
        with pytest.raises(WarehouseTooNew, match=f"schema version {V + 2}, newer than this code's {V}"):
            migrate(con)


def test_a_contract_change_without_its_migration_is_named(v1):
    with connect(v1) as con:
        with pytest.raises(SchemaMismatch, match=r"billing.invoices: has .* the contract declares .*internal_note"):
            migrate(con, later_contract(), MIGRATIONS)


def test_comments_follow_the_contract_without_a_version(v1):
    reworded = dict(TABLES)
    inv = reworded["billing.invoices"]
    reworded["billing.invoices"] = replace(inv, description="Draft invoices (reworded).")
    with connect(v1) as con:
        migrate(con, reworded)
        assert con.execute("SELECT comment FROM duckdb_tables() WHERE schema_name = 'billing' AND table_name = 'invoices'"
                           ).fetchone() == ("Draft invoices (reworded).",)
        assert current_version(con) == V
