"""Discovery of the landing zone (sources/landing.py): order, entity, extension, hidden and temporary files skipped."""

from __future__ import annotations

import os
from pathlib import Path

from sources.entities import ENTITIES
from sources.generator import generate_landing_zone
from sources.landing import discover

T0 = 1_735_700_000  # an mtime (seconds since the epoch)


def land(root: Path, rel: str, content: bytes = b"", mtime: int | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def listed(root: Path) -> list[str]:
    return [f.relative_path for f in discover(root)]


def test_files_are_listed_by_modification_time_then_name(tmp_path):
    land(tmp_path, "orders/orders/orders-2025-01-31-redelivery.jsonl", b"x", mtime=T0 + 60)  # sorts first by name
    land(tmp_path, "orders/orders/orders-2025-01-31.jsonl", b"x", mtime=T0)
    land(tmp_path, "crm/customers/customers-2025-01-31.jsonl", b"y", mtime=T0 + 30)
    land(tmp_path, "crm/customers/customers-2025-01-01.jsonl", b"z", mtime=T0 + 30)  # same mtime: by name
    assert listed(tmp_path) == [
        "orders/orders/orders-2025-01-31.jsonl",
        "crm/customers/customers-2025-01-01.jsonl",
        "crm/customers/customers-2025-01-31.jsonl",
        "orders/orders/orders-2025-01-31-redelivery.jsonl",
    ]


def test_generator_redelivery_is_discovered_after_its_original(tmp_path):
    generate_landing_zone(tmp_path, customers=10, start_month="2025-01", months=1, seed=1)
    original = tmp_path / "orders/orders/orders-2025-01-31.jsonl"
    redelivery = tmp_path / "orders/orders/orders-2025-01-31-redelivery.jsonl"
    assert redelivery.read_bytes() == original.read_bytes()
    # later by whole seconds, so the order holds on filesystems with coarse timestamps (FAT: 2 s)
    assert redelivery.stat().st_mtime - original.stat().st_mtime >= 2
    names = [n for n in listed(tmp_path) if n.startswith("orders/orders/orders-2025-01-31")]
    assert names == ["orders/orders/orders-2025-01-31.jsonl", "orders/orders/orders-2025-01-31-redelivery.jsonl"]


def test_entity_and_extension_are_classified_separately(tmp_path):
    land(tmp_path, "crm/customers/customers-2025-01-31.jsonl")
    land(tmp_path, "crm/customers/notes.txt")
    land(tmp_path, "crm/customers/customers-2025-02-28.jsonl.gz")
    land(tmp_path, "usage/usage_records/usage_records-2025-01-31.csv.gz")
    land(tmp_path, "crm/customers/customers-2025-03-31.JSONL")
    land(tmp_path, "crm/leads/leads-2025-01-31.jsonl")        # unknown entity
    land(tmp_path, "catalog/customers/customers-2025-01-31.jsonl")  # entity of another system
    land(tmp_path, "customers-2025-01-31.jsonl")              # not in a folder at all
    got = {f.relative_path: (f.entity_name, f.extension) for f in discover(tmp_path)}
    assert got == {
        "crm/customers/customers-2025-01-31.jsonl": ("customers", ".jsonl"),
        "crm/customers/notes.txt": ("customers", None),
        "crm/customers/customers-2025-02-28.jsonl.gz": ("customers", ".jsonl.gz"),
        "usage/usage_records/usage_records-2025-01-31.csv.gz": ("usage_records", ".csv.gz"),
        "crm/customers/customers-2025-03-31.JSONL": ("customers", ".jsonl"),
        "crm/leads/leads-2025-01-31.jsonl": (None, ".jsonl"),
        "catalog/customers/customers-2025-01-31.jsonl": (None, ".jsonl"),
        "customers-2025-01-31.jsonl": (None, ".jsonl"),
    }
    assert next(f for f in discover(tmp_path) if f.extension == ".jsonl.gz").entity is ENTITIES["customers"]


def test_hidden_and_temporary_files_are_not_listed(tmp_path):
    kept = land(tmp_path, "crm/customers/customers-2025-01-31.jsonl", b"{}\n")
    for rel in (
        "crm/customers/.customers-2025-02-28.jsonl",        # hidden: an upload in flight
        "crm/customers/~customers-2025-02-28.jsonl",
        "crm/customers/.DS_Store",
        "crm/customers/customers-2025-02-28.jsonl.part",
        "crm/customers/customers-2025-02-28.jsonl.tmp",
        "crm/customers/customers-2025-02-28.jsonl.partial",
        "crm/customers/customers-2025-02-28.jsonl.crdownload",
        "crm/customers/customers-2025-02-28.jsonl.filepart",
        "crm/customers/customers-2025-02-28.jsonl.swp",
        "crm/customers/customers-2025-02-28.jsonl.PART",
        "crm/.staging/customers-2025-02-28.jsonl",          # inside a hidden folder
        ".uploads/crm/customers/customers-2025-02-28.jsonl",
    ):
        land(tmp_path, rel, b'{"key": {"customer_id": 1}, "val')
    assert listed(tmp_path) == [kept.relative_to(tmp_path).as_posix()]


def test_discover_reads_no_file_and_a_checksum_is_computed_once_when_asked(tmp_path, monkeypatch):
    import hashlib

    import sources.landing as landing_module

    hashed = []
    real = landing_module.sha256_file
    monkeypatch.setattr(landing_module, "sha256_file", lambda path: hashed.append(path) or real(path))
    land(tmp_path, "crm/customers/customers-2025-01-31.jsonl", b"{}\n", mtime=T0)
    land(tmp_path, "usage/usage_records/usage_records-2025-01-31.csv", b"op,seq\n", mtime=T0 + 1)
    files = discover(tmp_path)
    assert [(f.size, f.mtime_ns) for f in files] == [(3, T0 * 10**9), (7, (T0 + 1) * 10**9)]
    assert files[0].stamp == ("crm/customers/customers-2025-01-31.jsonl", 3, T0 * 10**9)
    assert hashed == []  # listing is a stat per file
    assert files[0].sha256 == files[0].sha256 == hashlib.sha256(b"{}\n").hexdigest()
    assert hashed == [files[0].path]  # once, on first use
