"""The analysts' copy: a read-only, masked snapshot of the warehouse, published incrementally after every run.

DuckDB lets one process write a file; while Dagster writes, nobody else can open it. Analysts open the snapshot
instead, which nothing locks::

    duckdb -readonly data/warehouse.snapshot.duckdb

Layout, next to the warehouse (``data/warehouse.duckdb``):

* ``warehouse.snapshot/<schema>.<table>/<publication>-<n>.parquet``: the published rows, masked. Each table is
  published by partition (:func:`partition_sql`: its contract partition, or for a few large tables the month in
  :data:`PUBLISH_PARTITIONS`; one partition ``all`` otherwise) and a partition is one or more Parquet files, never
  modified once written.
* ``warehouse.snapshot.duckdb``: a small DuckDB file holding, per contract table, a view of the same name over its
  current Parquet files (listed by absolute path: moving the folders breaks the views until the next publish), with
  the table's and columns' comments. It is built as a new file and renamed into place, so a reader always sees one
  complete publication.
* ``warehouse.snapshot/manifest.json``: what is published (per partition: row count, fingerprint, files), read by
  the next publish; written atomically.

A publish fingerprints every partition in DuckDB (``count(*)``, ``sum`` and ``bit_xor`` of ``hash`` of its row: a
scan, no write) and writes only the partitions whose fingerprint (or the table's shape: columns, types, masks)
changed. A ``LEDGER`` table only grows: when the rows it held at the last publish (``rowid`` below the published
watermark) still fingerprint as published, only the new rows are written, as one more file of their partition
(a partition of more than :data:`MAX_FILES` files is rewritten whole). Files referenced by neither the current nor
the previous publication are deleted, so a reader with the previous views file open keeps working for one publish.

Personal data is masked: every contract column declaring ``personal`` (warehouse/tables/, from the record
contract's customers) is written through its kind's mask in :data:`MASKS`; the unmasked values are never written to
any published file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from functools import reduce
from operator import xor
from pathlib import Path

import duckdb

from domain.sql import quote_literal
from sources.entities import ENTITIES
from warehouse.connection import connect, snapshot_dir, snapshot_path
from warehouse.contract import LEDGER, Table
from warehouse.tables import SCHEMAS, TABLES

PERSONAL_ENTITIES = tuple(sorted(e.name for e in ENTITIES.values() if any(c.personal for c in e.columns)))
"""Entities with personal columns: their quarantined raw payloads are masked whole."""

MASKS: dict[str, str] = {
    "name": "'customer-' || customer_id",
    "email": "'customer-' || customer_id || '@masked.invalid'",
    "phone": "'masked'",
    "address": "'masked'",
    "payload": "CASE WHEN entity IN ({entities}) THEN '(masked: personal data)' ELSE {column} END",
}
"""How each kind of personal data reads in the snapshot (NULL stays NULL): a name becomes ``customer-<customer_id>``,
an e-mail ``customer-<customer_id>@masked.invalid``, a phone number and a street address ``masked``; a quarantined
raw payload of an entity with personal columns is replaced whole (it may be malformed, so it is not parsed)."""

PUBLISH_PARTITIONS: dict[str, str] = {
    "raw.usage_records": "strftime(event_time, '%Y-%m')",
    "core.usage_events": "strftime(event_time, '%Y-%m')",
    "ledger.documents": "billing_month",
    "ledger.document_lines": "billing_month",
    "revenue.performance_obligations": "billed_month",
    "revenue.schedule": "service_month",
    "revenue.recognized": "accounting_month",
    "revenue.journal_lines": "accounting_month",
}
"""How the large tables without a contract partition are published by partition (SQL of their rows' partition key):
by month, the unit a run appends or replaces."""

FORMAT = 1
"""The manifest's format: a publish finding another republishes everything."""

MAX_FILES = 16
"""A partition published as more files than this (a ledger's appends) is rewritten as one."""

MANIFEST = "manifest.json"
STAGING = ".staging"
KEY = re.compile(r"[0-9A-Za-z_.-]+")


def masked(t: Table, column: str) -> str:
    """SQL: the value of ``t``'s ``column`` as the snapshot holds it (its mask, or the column itself)."""
    kind = t.column(column).personal
    if kind is None:
        return column
    entities = ", ".join(f"'{e}'" for e in PERSONAL_ENTITIES)
    mask = MASKS[kind].format(entities=entities, column=column)
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE {mask} END AS {column}"


def partition_sql(t: Table) -> str:
    """SQL: the key (VARCHAR, path-safe) of the published partition a row of ``t`` belongs to."""
    expr = t.partition or PUBLISH_PARTITIONS.get(t.qualified)
    return f"coalesce(CAST({expr} AS VARCHAR), 'null')" if expr else "'all'"


def shape(t: Table) -> str:
    """A digest of how ``t`` is published (columns, types, masks, partitioning): when it changes, all is rewritten."""
    spec = [FORMAT, [(c.name, c.sql_type, masked(t, c.name)) for c in t.columns], partition_sql(t)]
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Publication:
    """What one publish did: the views file, and what it wrote."""

    path: Path
    tables_rewritten: int
    partitions_rewritten: int
    bytes_written: int
    bytes_total: int
    seconds: float


def read_manifest(folder: Path) -> dict:
    """The last publish's manifest, or an empty one (none yet, another format, or a file it lists is gone)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {"tables": {}}
    if manifest.get("format") != FORMAT:
        return {"tables": {}}
    for entry in manifest["tables"].values():  # a partition whose files are gone is not published
        entry["partitions"] = {k: p for k, p in entry["partitions"].items() if all((folder / f).is_file() for f in p["files"])}
    return manifest


def fingerprints(con: duckdb.DuckDBPyConnection, t: Table, watermark: int) -> tuple[dict[str, dict], int]:
    """Per partition of ``t``: the fingerprints of its rows below ``watermark`` (``rowid``) and of the others; and the
    next watermark (one past the largest rowid)."""
    row_hash = f"hash({', '.join(t.column_names)})"
    rows = con.execute(f"""
        SELECT {partition_sql(t)} AS k, rowid >= {watermark} AS new, count(*), CAST(sum({row_hash}) AS VARCHAR),
               bit_xor({row_hash}), max(rowid)
        FROM {t.qualified} GROUP BY ALL""").fetchall()
    out: dict[str, dict] = {}
    for key, new, n, total, bits, _ in rows:
        assert KEY.fullmatch(key), (t.qualified, key)
        out.setdefault(key, {})["new" if new else "old"] = {"rows": n, "sum": total, "xor": bits}
    return out, max((r[5] for r in rows), default=-1) + 1


def combine(*fps: dict | None) -> dict:
    """The fingerprint of the union of row sets."""
    fps = [f for f in fps if f]
    return {"rows": sum(f["rows"] for f in fps), "sum": str(sum(int(f["sum"]) for f in fps)),
            "xor": reduce(xor, (f["xor"] for f in fps), 0)}


def plan(t: Table, live: dict[str, dict], published: dict) -> tuple[dict[str, dict], set[str], set[str]]:
    """The partitions of ``t`` after this publish (fingerprint and the files kept), the keys to rewrite whole, and
    the keys whose new rows (a ledger's appends) to add as a file."""
    same_shape = published.get("shape") == shape(t)
    before = published.get("partitions", {}) if same_shape else {}
    after, rewrite, append = {}, set(), set()
    for key, fp in live.items():
        total, old = combine(fp.get("old"), fp.get("new")), fp.get("old")
        was = before.get(key)
        if was and {k: was[k] for k in ("rows", "sum", "xor")} == total:
            after[key] = was  # unchanged
        elif t.kind == LEDGER and fp.get("new") and was and old and len(was["files"]) < MAX_FILES \
                and {k: was[k] for k in ("rows", "sum", "xor")} == old:
            after[key] = {**total, "files": list(was["files"])}
            append.add(key)
        else:
            after[key] = {**total, "files": []}
            rewrite.add(key)
    return after, rewrite, append


def in_list(keys: set[str]) -> str:
    """SQL: the items of an ``IN`` list of ``keys`` (NULL, matching nothing, when there are none)."""
    return ", ".join(quote_literal(k) for k in sorted(keys)) or "NULL"


def write_partitions(con: duckdb.DuckDBPyConnection, t: Table, folder: Path, publication: str, rewrite: set[str],
                     append: set[str], watermark: int) -> dict[str, list[str]]:
    """Write ``t``'s rows of the ``rewrite`` partitions and its new rows (``rowid >= watermark``) of the ``append``
    ones, masked, one COPY; return the new files (relative to ``folder``) by partition key."""
    staging = folder / STAGING / t.qualified
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    key = partition_sql(t)
    where = f"{key} IN ({in_list(rewrite)}) OR (rowid >= {watermark} AND {key} IN ({in_list(append)}))"
    columns = ", ".join(masked(t, c) for c in t.column_names)
    con.execute(f"COPY (SELECT {columns}, {key} AS __part FROM {t.qualified} WHERE {where}) TO {quote_literal(str(staging))} "
                "(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (__part))")
    target = folder / t.qualified
    target.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {}
    for n, file in enumerate(sorted(staging.glob("__part=*/*.parquet"))):
        name = f"{publication}-{n}.parquet"
        os.replace(file, target / name)
        written.setdefault(file.parent.name.removeprefix("__part="), []).append(f"{t.qualified}/{name}")
    shutil.rmtree(staging, ignore_errors=True)
    return written


def view_sql(t: Table, folder: Path, files: list[str], types: dict[str, str]) -> str:
    """``CREATE VIEW`` of ``t`` over its Parquet ``files`` (no rows, typed as the warehouse's, when there are none)."""
    if not files:
        cols = ", ".join(f"CAST(NULL AS {types[c]}) AS {c}" for c in t.column_names)
        return f"CREATE VIEW {t.qualified} AS SELECT {cols} WHERE false"
    paths = ", ".join(quote_literal(str(folder / f)) for f in files)
    return f"CREATE VIEW {t.qualified} AS SELECT {', '.join(t.column_names)} FROM read_parquet([{paths}])"


def comments_sql(t: Table) -> list[str]:
    """The table's and its columns' comments, on its view."""
    return [f"COMMENT ON VIEW {t.qualified} IS {quote_literal(t.description)}"] + [
        f"COMMENT ON COLUMN {t.qualified}.{c.name} IS {quote_literal(c.description)}" for c in t.columns]


def write_views(target: Path, folder: Path, tables: dict[str, dict], types: dict[str, dict[str, str]]) -> None:
    """Build the views file as a new file and atomically rename it to ``target``."""
    tmp = target.with_name(target.name + ".tmp")
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)
    stmts = ["BEGIN TRANSACTION", *(f"CREATE SCHEMA {schema}" for schema in SCHEMAS)]
    for q, t in TABLES.items():
        files = [f for p in sorted(tables[q]["partitions"]) for f in tables[q]["partitions"][p]["files"]]
        stmts += [view_sql(t, folder, files, types[q]), *comments_sql(t)]
    with duckdb.connect(str(tmp)) as con:
        con.execute(";\n".join([*stmts, "COMMIT"]))
    os.replace(tmp, target)


def write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
    os.replace(tmp, path)


def referenced(tables: dict[str, dict]) -> set[str]:
    return {f for entry in tables.values() for p in entry["partitions"].values() for f in p["files"]}


def publish(warehouse: Path) -> Publication:
    """Publish what changed in ``warehouse`` since the last publish (Parquet), then its views file; see the module.

    It runs while this connection holds the warehouse's lock, so no other process (another Dagster instance's run or
    publish) writes the warehouse or the snapshot meanwhile."""
    started = time.monotonic()
    target, folder = snapshot_path(warehouse), snapshot_dir(warehouse)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(folder)
    publication = f"{manifest.get('publication', 0) + 1:06d}-{secrets.token_hex(3)}"
    tables: dict[str, dict] = {}
    types: dict[str, dict[str, str]] = {}  # the warehouse's column types, for the views of empty tables
    written: list[str] = []
    partitions_rewritten = tables_rewritten = 0
    with connect(warehouse) as con:
        con.execute("BEGIN TRANSACTION")  # every table read as of one moment
        for q, t in TABLES.items():
            published = manifest["tables"].get(q, {})
            watermark = published.get("watermark", 0) if t.kind == LEDGER and published.get("shape") == shape(t) else 0
            live, next_watermark = fingerprints(con, t, watermark)
            partitions, rewrite, append = plan(t, live, published)
            if rewrite or append:
                for key, files in write_partitions(con, t, folder, publication, rewrite, append, watermark).items():
                    partitions[key]["files"] += files
                    written += files
                partitions_rewritten += len(rewrite | append)
                tables_rewritten += 1
            tables[q] = {"shape": shape(t), "watermark": next_watermark, "partitions": partitions}
        for q, column, typ in con.execute("SELECT schema_name || '.' || table_name, column_name, data_type FROM "
                                          "duckdb_columns() WHERE database_name = current_database()").fetchall():
            types.setdefault(q, {})[column] = typ
        con.execute("COMMIT")
        previous = sorted(referenced(manifest["tables"]))
        write_views(target, folder, tables, types)
        write_json(folder / MANIFEST, {"format": FORMAT, "publication": manifest.get("publication", 0) + 1,
                                       "tables": tables, "previous_files": previous})
    keep = referenced(tables) | set(previous)
    for file in folder.glob("*/*.parquet"):  # neither the current nor the previous publication reads it
        if str(file.relative_to(folder)) not in keep:
            file.unlink()
    shutil.rmtree(folder / STAGING, ignore_errors=True)
    size = lambda fs: sum((folder / f).stat().st_size for f in fs)  # noqa: E731
    views, manifest_bytes = target.stat().st_size, (folder / MANIFEST).stat().st_size
    return Publication(target, tables_rewritten, partitions_rewritten, size(written) + views + manifest_bytes,
                       size(referenced(tables)) + views + manifest_bytes, time.monotonic() - started)

