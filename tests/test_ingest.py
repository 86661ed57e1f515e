"""Ingestion through the real Dagster assets: each file once, every record accounted for, faults quarantined."""

from __future__ import annotations

import gzip
import os
import shutil
from datetime import date, datetime
from decimal import Decimal

import duckdb
import pytest

from pipelines.ingest.engine import accounting_violations
from tests.extracts import DebeziumFile, write_usage
from tests.pipeline import failed_checks, run_ingest

T = datetime(2025, 1, 5, 12)


def customer(cid, email, state="CA", status="ACTIVE"):
    return dict(customer_id=cid, name=f"C{cid}", email=email, phone=None, address_line="1 Main St", city="X", state=state,
                postal_code="1", country="US", customer_type="INDIVIDUAL", status=status, created_at=T)


def query(warehouse, sql, params=None):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params).fetchall()


@pytest.fixture()
def zone(tmp_path):
    return tmp_path / "landing", tmp_path / "w.duckdb"


def test_redelivered_file_loads_nothing_twice(zone):
    landing, warehouse = zone
    f = DebeziumFile("customers").create(10, T, customer(1, "a@x")).write(landing, "customers-2025-01-05.jsonl")
    assert run_ingest(warehouse, landing).success
    shutil.copyfile(f, f.with_name("customers-2025-01-05-redelivery.jsonl"))  # same bytes, new name
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    assert run_ingest(warehouse, landing).success  # and a third run sees nothing new at all
    assert query(warehouse, "SELECT count(*) FROM raw.customers") == [(1,)]
    assert query(warehouse, "SELECT file, status, duplicate_of FROM audit.ingested_files ORDER BY file") == [
        ("crm/customers/customers-2025-01-05-redelivery.jsonl", "DUPLICATE", "crm/customers/customers-2025-01-05.jsonl"),
        ("crm/customers/customers-2025-01-05.jsonl", "LOADED", None),
    ]


def test_duplicates_out_of_order_deletes_and_tombstones(zone):
    landing, warehouse = zone
    v1, v2, v3 = customer(1, "old@x"), customer(1, "new@x"), customer(1, "newest@x")
    (DebeziumFile("customers")
        .update(30, datetime(2025, 1, 3), v2, v3)   # arrives first, happened last (position 30)
        .create(10, datetime(2025, 1, 1), v1)
        .update(20, datetime(2025, 1, 2), v1, v2)
        .update(20, datetime(2025, 1, 2), v1, v2)   # duplicate delivery of the same event
        .create(40, T, customer(2, "two@x"))
        .delete(50, T, customer(2, "two@x"))
        .tombstone({"customer_id": 2})
        .write(landing, "customers-2025-01-05.jsonl"))
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    assert query(warehouse, "SELECT count(*) FROM raw.customers") == [(7,)]  # raw keeps everything as received
    assert query(warehouse, "SELECT customer_id, email, is_deleted FROM core.customers ORDER BY 1") == [
        (1, "newest@x", False), (2, "two@x", True),
    ]
    assert query(warehouse, "SELECT email, valid_from, valid_to FROM core.customers_history WHERE customer_id = 1 ORDER BY _position") == [
        ("old@x", datetime(2025, 1, 1), datetime(2025, 1, 2)),
        ("new@x", datetime(2025, 1, 2), datetime(2025, 1, 3)),
        ("newest@x", datetime(2025, 1, 3), datetime(9999, 12, 31)),
    ]


def test_malformed_records_are_quarantined_with_reasons_and_the_run_succeeds(zone):
    landing, warehouse = zone
    (DebeziumFile("customers")
        .create(10, T, customer(1, "ok@x"))
        .raw('{"key": {"customer_id": 2}, "value": {"op": "c", "after": {"customer_id": 2, ')  # truncated JSON
        .create(12, T, customer(3, "bad@x", status="ACTVE"))                                 # not an allowed value
        .create(13, T, {**customer(4, "x@x"), "name": None})                                  # required column missing
        .write(landing, "customers-2025-01-05.jsonl"))
    write_usage(landing, "usage_records-2025-01-31.csv", [
        dict(op="I", seq=1, event_id="e1", subscription_id=1, metric="data_mb", quantity="12.5", unit="MB", event_time=T),
        dict(op="I", seq=2, event_id="e2", subscription_id=1, metric="data_mb", quantity="abc", unit="MB", event_time=T),
        dict(op="X", seq=3, event_id="e3", subscription_id=1, metric="data_mb", quantity="1", unit="MB", event_time=T),
    ])
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    assert query(warehouse, "SELECT file, records_read, records_loaded, records_quarantined FROM audit.ingested_files ORDER BY 1") == [
        ("crm/customers/customers-2025-01-05.jsonl", 4, 1, 3),
        ("usage/usage_records/usage_records-2025-01-31.csv", 3, 1, 2),
    ]
    reasons = query(warehouse, "SELECT entity, record_no, reason FROM audit.quarantine ORDER BY entity, record_no")
    assert [(e, n) for e, n, _ in reasons] == [("customers", 2), ("customers", 3), ("customers", 4), ("usage_records", 2), ("usage_records", 3)]
    text = " | ".join(r for _, _, r in reasons).lower()
    for expected in ("json", "status", "name", "quantity", "op"):
        assert expected in text, f"no reason mentions {expected!r}: {text}"
    assert query(warehouse, "SELECT event_id, quantity FROM core.usage_events") == [("e1", __import__("decimal").Decimal("12.5"))]


def test_unreadable_and_unknown_files_are_recorded_not_fatal(zone):
    landing, warehouse = zone
    bad = landing / "usage" / "usage_records" / "usage_records-2025-01-31.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PAR1 this is not parquet")
    stray = landing / "crm" / "leads" / "leads-2025-01-01.jsonl"
    stray.parent.mkdir(parents=True)
    stray.write_text("{}\n")
    result = run_ingest(warehouse, landing)
    assert result.success
    assert query(warehouse, "SELECT file, status FROM audit.ingested_files ORDER BY file") == [
        ("crm/leads/leads-2025-01-01.jsonl", "UNKNOWN_ENTITY"),
        ("usage/usage_records/usage_records-2025-01-31.parquet", "UNREADABLE"),
    ]


def payment(pid, amount, account=7):
    return dict(payment_id=pid, account_id=account, invoice_number=None, amount=Decimal(amount), currency="USD",
                status="SUCCEEDED", method="CARD", received_at=T)


PAYMENTS = "payments-2025-02-28-x86.jsonl"
PAYMENTS_REL = "payments/payments/" + PAYMENTS


def test_corrected_reextract_under_the_same_name_is_a_new_delivery(zone):
    landing, warehouse = zone
    first = DebeziumFile("payments").create(10, T, payment(1, "100.00")).create(11, T, payment(2, "50.00"))
    first.write(landing, PAYMENTS)
    assert run_ingest(warehouse, landing).success
    # the extract job re-runs and overwrites the file: payment 2 corrected (same position), payment 3 added
    second = (DebeziumFile("payments").create(10, T, payment(1, "100.00")).create(11, T, payment(2, "55.00"))
              .create(12, T, payment(3, "20.00")))
    second.write(landing, PAYMENTS)
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    ledger = query(warehouse, "SELECT sha256, status, records_read, records_loaded, error, ingested_at FROM audit.ingested_files "
                              "WHERE file = ? ORDER BY ingested_at", [PAYMENTS_REL])
    assert [(s, r, n) for _, s, r, n, _, _ in ledger] == [("LOADED", 2, 2), ("LOADED", 3, 3)]
    (sha1, *_, note1, at1), (sha2, *_, note2, at2) = ledger
    assert note1 is None and sha1 in note2 and "supersedes" in note2
    # one _ingested_at per delivery, the ledger's, increasing
    assert query(warehouse, "SELECT _ingested_at, count(*) FROM raw.payments GROUP BY 1 ORDER BY 1") == [(at1, 2), (at2, 3)]
    assert at2 > at1
    # the corrected amount wins; the unchanged payment 1 is one version
    assert query(warehouse, "SELECT payment_id, amount FROM core.payments ORDER BY 1") == [
        (1, Decimal("100.00")), (2, Decimal("55.00")), (3, Decimal("20.00")),
    ]
    assert query(warehouse, "SELECT sum(amount) FROM core.payments") == [(Decimal("100.00") + Decimal("55.00") + Decimal("20.00"),)]
    # the superseded image stays in the history, zero-length: no point-in-time lookup matches it
    assert query(warehouse, "SELECT payment_id, amount, valid_from = valid_to FROM core.payments_history ORDER BY 1, valid_to") == [
        (1, Decimal("100.00"), False), (2, Decimal("50.00"), True), (2, Decimal("55.00"), False), (3, Decimal("20.00"), False),
    ]
    again = run_ingest(warehouse, landing)  # a further run is clean and loads nothing
    assert again.success and failed_checks(again) == []
    assert query(warehouse, "SELECT count(*) FROM audit.ingested_files") == [(2,)]
    assert query(warehouse, "SELECT count(*) FROM raw.payments") == [(5,)]


def test_accounting_check_sums_the_deliveries_of_a_name(zone):
    landing, warehouse = zone
    DebeziumFile("payments").create(10, T, payment(1, "100.00")).raw("not json").write(landing, PAYMENTS)
    assert run_ingest(warehouse, landing).success
    DebeziumFile("payments").create(10, T, payment(1, "100.00")).create(11, T, payment(2, "5")).write(landing, PAYMENTS)
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    with duckdb.connect(str(warehouse)) as con:
        assert accounting_violations(con) == []
        con.execute("DELETE FROM raw.payments WHERE payment_id = 2")  # a record lost after the fact
        assert accounting_violations(con) == [dict(file=PAYMENTS_REL, deliveries=2, records_read=4, records_loaded=3,
                                                   records_quarantined=1, raw_rows=2, quarantine_rows=1)]


def test_original_is_loaded_and_its_later_copy_is_the_duplicate(zone):
    landing, warehouse = zone
    original = DebeziumFile("orders").create(10, T, dict(
        order_id=1, order_number="O1", account_id=7, order_type="NEW_SERVICE", status="CREATED", effective_date=T.date(),
    )).write(landing, "orders-2025-01-31.jsonl")
    copy = shutil.copyfile(original, original.with_name("orders-2025-01-31-redelivery.jsonl"))  # sorts first by name
    os.utime(original, (1_735_700_000, 1_735_700_000))
    os.utime(copy, (1_735_700_060, 1_735_700_060))
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    assert query(warehouse, "SELECT file, status, duplicate_of FROM audit.ingested_files ORDER BY ingested_at") == [
        ("orders/orders/orders-2025-01-31.jsonl", "LOADED", None),
        ("orders/orders/orders-2025-01-31-redelivery.jsonl", "DUPLICATE", "orders/orders/orders-2025-01-31.jsonl"),
    ]


def test_same_content_is_a_duplicate_only_within_its_entity(zone):
    landing, warehouse = zone
    for rel in ("payments/payments/payments-2025-01-31.jsonl", "crm/customers/customers-2025-01-31.jsonl",
                "payments/payments/payments-2025-02-28.jsonl"):
        (landing / rel).parent.mkdir(parents=True, exist_ok=True)
        (landing / rel).write_bytes(b"")  # zero-byte extracts: one checksum
        os.utime(landing / rel, None)
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    assert query(warehouse, "SELECT file, entity, status, duplicate_of, records_read FROM audit.ingested_files ORDER BY file") == [
        ("crm/customers/customers-2025-01-31.jsonl", "customers", "LOADED", None, 0),
        ("payments/payments/payments-2025-01-31.jsonl", "payments", "LOADED", None, 0),
        ("payments/payments/payments-2025-02-28.jsonl", "payments", "DUPLICATE", "payments/payments/payments-2025-01-31.jsonl", 0),
    ]


def test_unsupported_extension_in_a_known_folder_says_so(zone):
    landing, warehouse = zone
    for rel in ("crm/customers/notes.txt", "crm/customers/customers-2025-01-31.jsonl.bz2", "crm/leads/leads-2025-01-31.jsonl"):
        (landing / rel).parent.mkdir(parents=True, exist_ok=True)
        (landing / rel).write_text("{}\n")
    DebeziumFile("customers").create(10, T, customer(1, "a@x")).write(landing, "customers-2025-01-31.jsonl")
    gz = landing / "crm/customers/customers-2025-02-28.jsonl.gz"
    gz.write_bytes(gzip.compress(DebeziumFile("customers").create(11, T, customer(2, "b@x")).lines[0].encode() + b"\n"))
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    rows = {f: (e, s, err) for f, e, s, err in query(warehouse, "SELECT file, entity, status, error FROM audit.ingested_files")}
    assert rows["crm/customers/notes.txt"][:2] == ("customers", "UNSUPPORTED_EXTENSION")
    assert rows["crm/customers/notes.txt"][2].startswith("unsupported extension .txt (supported: .jsonl, ")
    assert rows["crm/customers/customers-2025-01-31.jsonl.bz2"][:2] == ("customers", "UNSUPPORTED_EXTENSION")
    assert "unsupported extension .bz2" in rows["crm/customers/customers-2025-01-31.jsonl.bz2"][2]
    assert rows["crm/leads/leads-2025-01-31.jsonl"] == (None, "UNKNOWN_ENTITY", "not under a known <system>/<entity>/ folder")
    assert rows["crm/customers/customers-2025-01-31.jsonl"][1] == "LOADED"
    # gzip-compressed JSON lines are an extract of the entity, handed to the reader (never "unsupported")
    assert rows["crm/customers/customers-2025-02-28.jsonl.gz"][:2] in {("customers", "LOADED"), ("customers", "UNREADABLE")}


def test_hidden_upload_in_flight_is_neither_ingested_nor_recorded(zone):
    landing, warehouse = zone
    DebeziumFile("customers").create(10, T, customer(1, "a@x")).write(landing, "customers-2025-01-31.jsonl")
    DebeziumFile("customers").raw('{"key": {"customer_id": 2}, "value": {"op": "c", ').write(landing, ".customers-2025-02-28.jsonl")
    DebeziumFile("customers").raw('{"key": {"customer_id": 3}, "value": {"op": "c", ').write(landing, "customers-2025-02-28.jsonl.part")
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    assert query(warehouse, "SELECT file, status FROM audit.ingested_files") == [("crm/customers/customers-2025-01-31.jsonl", "LOADED")]
    assert query(warehouse, "SELECT count(*) FROM audit.quarantine") == [(0,)]


def test_bill_cycle_refuses_to_invoice_when_landed_records_are_unaccounted_for(zone):
    """If raw lost records the ledger says were loaded, the bill cycle would invoice from stale state:
    the blocking check landing_zone_accounted_for stops it before invoicing."""
    from sources.generator import generate_landing_zone
    from tests.pipeline import run_bill_cycle

    landing, warehouse = zone
    generate_landing_zone(landing, customers=30, start_month="2025-01", months=1, seed=7)
    assert run_ingest(warehouse, landing).success
    with duckdb.connect(str(warehouse)) as con:
        con.execute("DELETE FROM raw.customers WHERE customer_id = (SELECT min(customer_id) FROM raw.customers)")
    result = run_bill_cycle(warehouse, landing, date(2025, 1, 1))
    assert "landing_zone_accounted_for" in failed_checks(result)
    assert query(warehouse, "SELECT count(*) FROM billing.invoices") == [(0,)]
    assert query(warehouse, "SELECT count(*) > 0 FROM billing.rated_usage") == [(True,)]  # rating ran; invoicing did not


def test_coupons_and_redemptions_ingest_and_a_bad_coupon_is_quarantined(zone):
    landing, warehouse = zone
    welcome = dict(coupon_id=1, code="WELCOME20", name="Welcome", discount_type="PERCENT", percent_off=Decimal("0.2"),
                   duration="ONCE", status="ACTIVE")
    loyalty = dict(coupon_id=2, code="LOYALTY-USD", name="Loyalty", discount_type="FIXED", amount_off=Decimal("5.00"),
                   currency="USD", duration="FOREVER", status="ACTIVE")
    (DebeziumFile("coupons").snapshot(1, T, welcome).snapshot(2, T, loyalty)
        .snapshot(3, T, {**loyalty, "coupon_id": 3, "currency": None})                  # FIXED without its currency
        .update(4, datetime(2025, 1, 20), welcome, {**welcome, "status": "RETIRED"})
        .write(landing, "coupons-2025-01-05.jsonl"))
    DebeziumFile("coupon_products").snapshot(1, T, dict(coupon_product_id=11, coupon_id=1, product_id=7)) \
        .write(landing, "coupon_products-2025-01-05.jsonl")
    redemption = dict(redemption_id=100, coupon_id=2, account_id=5, starts_on=date(2025, 1, 6), status="ACTIVE")
    (DebeziumFile("coupon_redemptions").create(10, T, redemption)
        .update(11, datetime(2025, 2, 1), redemption, {**redemption, "status": "REVOKED"})
        .create(12, T, {**redemption, "redemption_id": 101, "status": "USED"})           # not an allowed value
        .write(landing, "coupon_redemptions-2025-01-31.jsonl"))
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    assert query(warehouse, "SELECT entity, record_no, reason FROM audit.quarantine ORDER BY entity") == [
        ("coupon_redemptions", 3, "status: 'USED' not in (ACTIVE, REVOKED)"),
        ("coupons", 3, "currency is required when discount_type is FIXED"),
    ]
    assert query(warehouse, "SELECT coupon_id, code, discount_type, percent_off, amount_off, currency, status "
                            "FROM core.coupons ORDER BY 1") == [
        (1, "WELCOME20", "PERCENT", Decimal("0.2"), None, None, "RETIRED"),
        (2, "LOYALTY-USD", "FIXED", None, Decimal("5"), "USD", "ACTIVE"),
    ]
    assert query(warehouse, "SELECT coupon_id, product_id FROM core.coupon_products") == [(1, 7)]
    assert query(warehouse, "SELECT redemption_id, status, valid_from, valid_to FROM core.coupon_redemptions_history "
                            "ORDER BY valid_from") == [
        (100, "ACTIVE", T, datetime(2025, 2, 1)), (100, "REVOKED", datetime(2025, 2, 1), datetime(9999, 12, 31)),
    ]


def test_a_plan_in_another_currency_than_the_account_is_an_order_exception(zone):
    """A GBP account ordering a USD plan: no service, an order exception with the reason."""
    landing, warehouse = zone
    DebeziumFile("billing_accounts").create(1, T, dict(
        account_id=5, customer_id=1, account_number="A5", billing_cycle="MONTHLY", bill_cycle_day=1,
        payment_terms_days=14, currency="GBP", status="ACTIVE")).write(landing, "billing_accounts-2025-01-05.jsonl")
    DebeziumFile("products").snapshot(1, T, dict(product_id=1, sku="MOB", name="Mobile", category="MOBILE",
                                                 product_type="SUBSCRIPTION", base_price=Decimal("30"), currency="USD",
                                                 status="ACTIVE")).write(landing, "products-2025-01-05.jsonl")
    DebeziumFile("price_plans").snapshot(1, T, dict(plan_id=10, product_id=1, name="Mobile (USD)", currency="USD",
                                                    status="ACTIVE")).write(landing, "price_plans-2025-01-05.jsonl")
    DebeziumFile("orders").create(1, T, dict(order_id=7, order_number="O7", account_id=5, order_type="NEW_SERVICE",
                                             status="CONFIRMED", effective_date=date(2025, 1, 6))) \
        .write(landing, "orders-2025-01-05.jsonl")
    DebeziumFile("order_items").create(1, T, dict(order_item_id=71, order_id=7, product_id=1, plan_id=10,
                                                  subscription_id=700, quantity=1)).write(landing, "order_items-2025-01-05.jsonl")
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    assert query(warehouse, "SELECT order_item_id, reason FROM core.order_exceptions") == [(71, "PLAN_CURRENCY_MISMATCH")]
    assert query(warehouse, "SELECT count(*) FROM core.subscriptions") == [(0,)]
    assert query(warehouse, "SELECT count(*) FROM core.subscription_versions") == [(0,)]


def ssp(ssp_id, amount, effective_from, effective_to=None, product_id=2):
    return dict(ssp_id=ssp_id, product_id=product_id, currency="USD", ssp_amount=Decimal(amount),
                effective_from=effective_from, effective_to=effective_to)


def test_standalone_selling_prices_land_with_their_versions_and_a_bad_one_is_quarantined(zone):
    landing, warehouse = zone
    old = ssp(5020, "31.49", date(2025, 1, 1))
    (DebeziumFile("standalone_selling_prices")
        .snapshot(1, T, old).snapshot(2, T, ssp(5070, "599.00", date(2025, 1, 1), product_id=7))
        .snapshot(3, T, ssp(5080, "-25.00", date(2025, 1, 1), product_id=8))                  # a negative price
        .update(4, datetime(2025, 2, 10), old, {**old, "effective_to": date(2025, 2, 15)})     # the old version ends
        .create(5, datetime(2025, 2, 10), ssp(6020, "34.64", date(2025, 2, 15)))              # where the new one starts
        .create(6, datetime(2025, 2, 10), ssp(6021, "34.64", date(2025, 2, 15), date(2025, 2, 15)))  # an empty range
        .write(landing, "standalone_selling_prices-2025-02-28.jsonl"))
    result = run_ingest(warehouse, landing)
    assert result.success and failed_checks(result) == []
    assert query(warehouse, "SELECT entity, record_no, reason FROM audit.quarantine ORDER BY record_no") == [
        ("standalone_selling_prices", 3, "ssp_amount: -25 is negative (must be >= 0)"),
        ("standalone_selling_prices", 6, "effective_to is not after effective_from"),
    ]
    # the current catalog: one row per SSP version, effective-dated
    assert query(warehouse, "SELECT ssp_id, product_id, ssp_amount, effective_from, effective_to "
                            "FROM core.standalone_selling_prices ORDER BY ssp_id") == [
        (5020, 2, Decimal("31.49"), date(2025, 1, 1), date(2025, 2, 15)),
        (5070, 7, Decimal("599.00"), date(2025, 1, 1), None),
        (6020, 2, Decimal("34.64"), date(2025, 2, 15), None),
    ]
    # the history keeps the version of 5020 that was open until the update
    assert query(warehouse, "SELECT effective_to, valid_from, valid_to FROM core.standalone_selling_prices_history "
                            "WHERE ssp_id = 5020 ORDER BY _position") == [
        (None, T, datetime(2025, 2, 10)), (date(2025, 2, 15), datetime(2025, 2, 10), datetime(9999, 12, 31)),
    ]


def test_the_sample_lands_its_ssp_and_contract_terms_in_core(zone):
    """The generator's catalog SSPs and committed orders reach core exactly as delivered."""
    from sources.generator import generate_landing_zone

    landing, warehouse = zone
    summary = generate_landing_zone(landing, customers=40, start_month="2025-01", months=2, seed=7, redeliver=False)
    assert run_ingest(warehouse, landing).success
    # 10 products x 3 currencies, and Mobile M (USD)'s second version from 2025-02-15
    assert query(warehouse, "SELECT count(*), count(*) FILTER (WHERE effective_to IS NOT NULL) "
                            "FROM core.standalone_selling_prices") == [(31, 1)]
    terms = query(warehouse, "SELECT o.contract_term_months, count(*) FROM core.orders o "
                             "WHERE o.order_type = 'NEW_SERVICE' AND o.order_id IN "
                             "(SELECT order_id FROM core.orders_history WHERE status = 'CONFIRMED') GROUP BY 1")
    assert dict(terms).get(12, 0) == summary.get("orders_term_12_months", 0)
    assert dict(terms)[24] == summary["orders_term_24_months"] > 0
    assert query(warehouse, "SELECT count(*) FROM core.orders WHERE order_type <> 'NEW_SERVICE' "
                            "AND contract_term_months IS NOT NULL") == [(0,)]
    # the phones of the 24-month orders, subsidized
    assert query(warehouse, "SELECT count(*), max(i.unit_price) < 549 FROM core.order_items i "
                            "JOIN core.orders o USING (order_id) WHERE i.product_id = 7 AND o.contract_term_months = 24 "
                            "AND o.order_id IN (SELECT order_id FROM core.orders_history WHERE status = 'CONFIRMED')") == [
        (summary["orders_subsidized_device"], True)]


# --- Recognizing an unchanged file without reading it (docs/cdc-extracts.md, "Delivery rules" 1) -----------------

CUSTOMERS_REL = "crm/customers/customers-2025-01-31.jsonl"


def ingest_counting(warehouse, landing):
    """A real ingest (the engine, without Dagster); returns its summary and the landed files it hashed."""
    import sources.landing as landing_module
    from pipelines.ingest.engine import ingest_landing_zone
    from warehouse.connection import connect
    from warehouse.migrations import migrate

    hashed, real = [], landing_module.sha256_file
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(landing_module, "sha256_file", lambda path: hashed.append(path.relative_to(landing).as_posix()) or real(path))
        with connect(warehouse) as con:
            migrate(con)
            summary = ingest_landing_zone(con, landing)
            assert accounting_violations(con, since=summary.first_delivery_at) == []
    return summary, hashed


def _touch(path, seconds=60):
    later = path.stat().st_mtime_ns + seconds * 10**9
    os.utime(path, ns=(later, later))


def _rewrite_same_size(path, keep_mtime):
    stat = path.stat()
    path.write_bytes(path.read_bytes().replace(b"a@x", b"b@x"))
    assert path.stat().st_size == stat.st_size
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    else:
        _touch(path)


def _forget_mtimes(warehouse, landing):  # a ledger recorded before schema version 9
    with duckdb.connect(str(warehouse)) as con:
        con.execute("UPDATE audit.ingested_files SET mtime_ns = NULL")


@pytest.mark.parametrize("change, hashed_next, ledger_next", [
    # nothing changed: recognized by (path, size, mtime), never read
    (lambda f, w, l: None, [], [("LOADED", None)]),
    # touched (new mtime, same bytes): hashed once, already seen, nothing recorded; the checksum cache spares the next run
    (lambda f, w, l: _touch(f), [CUSTOMERS_REL], [("LOADED", None)]),
    # rewritten with new content of the same size: a new delivery that supersedes
    (lambda f, w, l: _rewrite_same_size(f, keep_mtime=False), [CUSTOMERS_REL], [("LOADED", None), ("LOADED", "supersedes")]),
    # rewritten in place keeping size and mtime: not noticed (the quick check's contract, as rsync's)
    (lambda f, w, l: _rewrite_same_size(f, keep_mtime=True), [], [("LOADED", None)]),
    # recorded before version 9 (mtime_ns NULL): hashed once more, recognized by (path, sha256)
    (lambda f, w, l: _forget_mtimes(w, l), [CUSTOMERS_REL], [("LOADED", None)]),
    # the same bytes under another name: hashed, a DUPLICATE
    (lambda f, w, l: shutil.copy2(f, f.with_name("customers-2025-01-31-redelivery.jsonl")),
     ["crm/customers/customers-2025-01-31-redelivery.jsonl"], [("LOADED", None), ("DUPLICATE", None)]),
], ids=["unchanged", "touched", "rewritten", "rewritten-same-size-and-mtime", "recorded-before-v9", "copy"])
def test_only_new_or_changed_files_are_hashed(tmp_path, change, hashed_next, ledger_next):
    landing, warehouse = tmp_path.resolve() / "landing", tmp_path / "w.duckdb"
    f = DebeziumFile("customers").create(10, T, customer(1, "a@x")).write(landing, "customers-2025-01-31.jsonl")
    summary, hashed = ingest_counting(warehouse, landing)
    assert hashed == [CUSTOMERS_REL] and summary.files_loaded == 1
    change(f, warehouse, landing)
    summary, hashed = ingest_counting(warehouse, landing)
    assert hashed == hashed_next and summary.files_hashed == len(hashed_next)
    ledger = query(warehouse, "SELECT status, error, mtime_ns FROM audit.ingested_files ORDER BY ingested_at")
    assert [(s, e and "supersedes" if e else None) for s, e, _ in ledger] == ledger_next
    assert all(m is not None for *_, m in ledger[1:])  # every delivery recorded now carries its mtime
    summary, hashed = ingest_counting(warehouse, landing)  # and the run after reads nothing
    assert hashed == [] and summary.files_loaded == 0 and summary.files_skipped == summary.files_seen


def test_a_delivery_records_its_files_mtime(zone):
    landing, warehouse = zone
    f = DebeziumFile("customers").create(10, T, customer(1, "a@x")).write(landing, "customers-2025-01-31.jsonl")
    ingest_counting(warehouse, landing.resolve())
    assert query(warehouse, "SELECT file, size_bytes, mtime_ns FROM audit.ingested_files") == [
        (CUSTOMERS_REL, f.stat().st_size, f.stat().st_mtime_ns)]


def test_the_checksum_cache_is_only_a_cache(tmp_path):
    """An entry is trusted only with a checksum the ledger holds for its path: a stale cache never loads wrong bytes."""
    from pipelines.ingest.engine import CHECKSUM_CACHE

    landing, warehouse = tmp_path.resolve() / "landing", tmp_path / "w.duckdb"
    f = DebeziumFile("customers").create(10, T, customer(1, "a@x")).write(landing, "customers-2025-01-31.jsonl")
    stat = f.stat()
    (landing / CHECKSUM_CACHE).write_text(f'{{"{CUSTOMERS_REL}": [{stat.st_size}, {stat.st_mtime_ns}, "{"0" * 64}"]}}')
    summary, hashed = ingest_counting(warehouse, landing)
    assert hashed == [CUSTOMERS_REL] and summary.files_loaded == 1
    assert query(warehouse, "SELECT sha256 <> repeat('0', 64) FROM audit.ingested_files") == [(True,)]
    _touch(f)
    assert ingest_counting(warehouse, landing)[1] == [CUSTOMERS_REL]
    (landing / CHECKSUM_CACHE).unlink()  # lost: the touched file is hashed once more, nothing else changes
    assert ingest_counting(warehouse, landing)[1] == [CUSTOMERS_REL]
    assert ingest_counting(warehouse, landing)[1] == []
    assert query(warehouse, "SELECT count(*) FROM audit.ingested_files") == [(1,)]


def test_accounting_checks_this_runs_deliveries_and_the_totals(zone):
    """A record moved from one delivery's name to another's leaves every total equal: only the check of the run's
    deliveries (``since``) sees it; the totals see a record lost anywhere."""
    landing, warehouse = zone
    DebeziumFile("payments").create(10, T, payment(1, "100.00")).write(landing, "payments-2025-01-31.jsonl")
    DebeziumFile("payments").create(11, T, payment(2, "5")).write(landing, PAYMENTS)
    summary, _ = ingest_counting(warehouse, landing.resolve())
    with duckdb.connect(str(warehouse)) as con:
        con.execute("UPDATE raw.payments SET _file = 'payments/payments/payments-2025-01-31.jsonl' WHERE payment_id = 2")
        assert accounting_violations(con) == []  # the totals add up
        assert [v["file"] for v in accounting_violations(con, since=summary.first_delivery_at)] == [
            "payments/payments/payments-2025-01-31.jsonl", PAYMENTS_REL]
        con.execute("DELETE FROM raw.payments WHERE payment_id = 2")  # lost: raw.payments no longer has the ledger's total
        assert accounting_violations(con) == [dict(file=PAYMENTS_REL, deliveries=1,
                                                   records_read=1, records_loaded=1, records_quarantined=0, raw_rows=0,
                                                   quarantine_rows=0)]
