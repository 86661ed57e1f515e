"""Generator: determinism, faults, chunking, and every generated record read back and accounted for."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from domain.periods import add_months
from sources.entities import ENTITIES
from sources.generator import DEVICE as DEVICE_PRODUCT, generate_landing_zone, main
from sources.landing import discover
from sources.readers import read_extract

SMALL = dict(customers=120, start_month="2025-01", months=3, seed=7)
NAME = re.compile(r"^(?P<entity>[a-z_]+)-(?P<date>\d{4}-\d{2}-\d{2})(-\d{3})?(-redelivery)?\.(jsonl|parquet|csv)$")


@pytest.fixture(scope="module")
def zone(tmp_path_factory):
    out = tmp_path_factory.mktemp("landing")
    summary = generate_landing_zone(out, **SMALL, chunk_rows=500)
    return out, summary


@pytest.fixture(scope="module")
def read_all(zone):
    out, _ = zone
    results = {}
    for f in discover(out):
        assert f.entity is not None, f.relative_path
        results[f.relative_path] = read_extract(f.path, f.entity, out)
    return results


def _checksums(root: Path) -> dict[str, str]:
    return {f.relative_path: f.sha256 for f in discover(root)}


def test_deterministic(zone, tmp_path):
    out, summary = zone
    again = generate_landing_zone(tmp_path / "again", **SMALL, chunk_rows=500)
    assert again == summary
    assert _checksums(tmp_path / "again") == _checksums(out)
    other = generate_landing_zone(tmp_path / "other", **{**SMALL, "seed": 8}, chunk_rows=500)
    assert _checksums(tmp_path / "other") != _checksums(out) and other != summary


def test_layout(zone):
    out, _ = zone
    files = discover(out)
    for f in files:
        system, entity, name = f.relative_path.split("/")
        m = NAME.match(name)
        assert m and m["entity"] == entity and ENTITIES[entity].system == system, f.relative_path
    names = {f.relative_path for f in files}
    assert "catalog/products/products-2025-01-01.jsonl" in names  # snapshot batch
    assert "crm/customers/customers-2025-01-31.jsonl" in names
    assert "orders/orders/orders-2025-01-31-redelivery.jsonl" in names
    for entity in ENTITIES:
        assert any(f.entity_name == entity for f in files), entity


def test_every_record_read_and_accounted(zone, read_all):
    _, summary = zone
    total_lines = 0
    usage_rows = 0
    for rel, r in read_all.items():
        assert r.changes.height + r.rejects.height == r.records_read
        if rel.endswith(".jsonl"):
            total_lines += 0 if "redelivery" in rel else r.records_read
        else:
            usage_rows += r.records_read
    assert total_lines == summary["debezium_lines"]
    assert usage_rows == summary["usage_rows"]
    rejects = pl.concat([r.rejects for r in read_all.values()])
    non_redelivered = rejects.filter(~pl.col("_file").str.contains("redelivery"))
    assert non_redelivered.height == summary["malformed_records"]


def test_faults_present(zone, read_all):
    out, s = zone
    for key in ("duplicate_lines", "out_of_order_swaps", "redelivered_files", "usage_late_rows", "usage_duplicate_rows",
                "usage_unknown_subscription", "usage_unknown_metric", "deleted_customers", "malformed_invalid_json",
                "malformed_bad_enum", "malformed_missing_required", "malformed_unparsable_number", "malformed_bad_op",
                "malformed_out_of_range", "order_plan_currency_mismatch", "payments_refunded",
                "orders_backdated_disconnect", "orders_backdated_activation", "orders_reversed"):
        assert s[key] > 0, key
    reasons = " | ".join(pl.concat([r.rejects for r in read_all.values()])["reason"].to_list())
    for text in ("invalid JSON", "missing required column", "not in (ACTIVE, SUSPENDED, CLOSED)", "cannot parse",
                 "unknown op 'x'", "unknown op 'X'", "not in 1..31"):
        assert text in reasons, text
    # the redelivered file is an identical copy
    a = out / "orders/orders/orders-2025-01-31.jsonl"
    assert a.read_bytes() == (out / "orders/orders/orders-2025-01-31-redelivery.jsonl").read_bytes()
    cdc = pl.concat([r.changes.select("_op", "_position", "_row_hash", "_file", "_unavailable", "_record_no")
                     for rel, r in read_all.items() if rel.endswith(".jsonl") and "redelivery" not in rel])
    # duplicates: the same (position, hash) twice within a file
    assert cdc.group_by("_file", "_position", "_row_hash").len().filter(pl.col("len") > 1).height > 0
    # out of order: a file whose positions are not sorted in file order
    assert any(not g.sort("_record_no")["_position"].drop_nulls().is_sorted() for _, g in cdc.group_by("_file"))
    assert set(cdc["_op"].unique().to_list()) == {"c", "u", "d", "r", "t"}
    assert cdc.filter(pl.col("_unavailable").list.len() > 0).height > 0
    usage = pl.concat([r.changes for rel, r in read_all.items() if "usage_records" in rel])
    assert usage.group_by("event_id", "_position", "_row_hash").len().filter(pl.col("len") > 1).height > 0
    # late usage: a file of month N+1's batch with month N events
    late = [rel for rel, r in read_all.items() if "usage_records-2025-02-28" in rel
            and r.changes.height and r.changes["event_time"].max().month == 1]
    assert late
    assert usage.filter(pl.col("metric") == "video_min").height > 0
    assert usage.filter(pl.col("subscription_id") >= 99_000_000).height > 0


def test_usage_chunking_and_positions(zone, read_all):
    _, s = zone
    usage = {rel: r for rel, r in read_all.items() if "usage_records" in rel}
    assert s["usage_files_parquet"] >= 4 and s["usage_files_csv"] >= 3
    assert sum(1 for rel in usage if "2025-01-31" in rel and rel.endswith(".parquet")) >= 2
    for rel, r in usage.items():
        if rel.endswith(".parquet"):
            assert r.records_read <= 500 + 500 // 2000 + 1  # chunk + its duplicated rows
    # seq increases across files in write order
    seqs = pl.concat([r.changes.select("_position") for r in usage.values()])["_position"]
    assert seqs.n_unique() == seqs.len() - s["usage_duplicate_rows"]


def _changes(read_all, entity: str) -> pl.DataFrame:
    """Every change read for ``entity`` (redeliveries left out)."""
    return pl.concat([r.changes for rel, r in read_all.items() if f"/{entity}/" in rel and "redelivery" not in rel])


def _final(read_all, entity: str) -> pl.DataFrame:
    """Each key's last image (by position; tombstones dropped)."""
    key = list(ENTITIES[entity].key)
    return _changes(read_all, entity).filter(pl.col("_op") != "t").sort("_position").group_by(key).last()


def test_business_shape(zone, read_all):
    def changes(entity):
        return _changes(read_all, entity)

    orders = changes("orders")
    final = orders.sort("_position").group_by("order_id").last()
    statuses = Counter(final["status"].to_list())
    assert statuses["CONFIRMED"] > 0 and set(statuses) >= {"CONFIRMED"}
    assert set(final["order_type"].unique().to_list()) >= {"NEW_SERVICE", "DISCONNECT"}
    charges = changes("plan_charges")
    assert set(charges["charge_model"].to_list()) == {"FLAT", "PER_UNIT", "GRADUATED", "VOLUME", "PACKAGE", "PERCENTAGE",
                                                      "GRADUATED_PERCENTAGE", "MATRIX", "DYNAMIC"}
    assert set(charges["aggregation"].drop_nulls().to_list()) == {"SUM", "COUNT", "MAX", "UNIQUE_COUNT", "LATEST",
                                                                  "TIME_WEIGHTED_SUM"}
    props = [json.loads(p) for p in charges["properties"].drop_nulls().to_list()]
    for key in ("minimum_amount", "maximum_amount", "package_size", "free_units", "rate", "fixed_fee", "per_event_min",
                "per_event_max", "free_events", "dimensions", "time_bands", "prices", "default_unit_price",
                "unique_attribute", "price_attribute"):
        assert any(key in p for p in props), key
    tiers = json.loads(charges.filter(pl.col("charge_model") == "GRADUATED")["tiers"][0])
    assert tiers[-1]["up_to"] is None and all(isinstance(t["unit_amount"], str) for t in tiers)
    assert charges.filter(pl.col("effective_to").is_not_null()).height >= 1  # price change
    accounts = changes("billing_accounts")
    plans = changes("price_plans")
    assert set(accounts["currency"].unique().to_list()) <= set(plans["currency"].to_list())
    items = changes("order_items")
    assert items.filter(pl.col("bundle_id").is_not_null()).height > 0
    assert {9, 10} <= set(items["product_id"].to_list())  # Business Connect, IoT Connect subscriptions
    # every metric a plan prices is used, with the attributes its model reads
    usage = changes("usage_records").filter(pl.col("subscription_id") < 99_000_000)
    priced = set(charges["metric"].drop_nulls().to_list())
    assert set(usage["metric"].unique().to_list()) == priced | {"video_min"}
    attrs = usage.group_by("metric").agg(pl.col("attributes").drop_nulls().first(), pl.col("zone").unique())
    by_metric = {m: (json.loads(a) if a else None, set(z)) for m, a, z in attrs.iter_rows()}
    assert float(by_metric["content_purchase"][0]["unit_price"]) > 0
    assert by_metric["device_seen"][0]["device_id"].startswith("dev-")
    assert by_metric["voice_min"][0]["time_band"] in ("PEAK", "OFFPEAK")
    assert by_metric["voice_min"][1] == {"DOMESTIC", "ROAMING_EU", "ROAMING_WORLD"}
    # the time band attribute is the band of the event's UTC hour (PEAK 08-20)
    voice = usage.filter(pl.col("metric") == "voice_min").with_columns(
        pl.col("attributes").str.json_path_match("$.time_band").alias("band"))
    assert voice.filter((pl.col("band") == "PEAK") != pl.col("event_time").dt.hour().is_between(8, 19)).height == 0
    assert items.filter(pl.col("unit_price").is_not_null()).height > 0


def test_cli(tmp_path, capsys):
    main(["--out", str(tmp_path / "cli"), "--customers", "20", "--months", "1", "--seed", "3"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["customers"] == 20 and summary["files"] == len(discover(tmp_path / "cli"))


DOC = Path(__file__).resolve().parents[1] / "docs" / "cdc-extracts.md"


def test_doc_lists_every_entity_and_column():
    text = DOC.read_text()
    from sources.entities import CHANGE_LOG_COLUMNS

    for e in ENTITIES.values():
        section = text.split(f"### `{e.name}` (", 1)
        assert len(section) == 2, e.name
        body = section[1].split("\n### ", 1)[0]
        for c in e.columns:
            assert f"| `{c.name}` | {c.sql_type} |" in body, (e.name, c.name)
    for c in CHANGE_LOG_COLUMNS:
        assert f"| `{c.name}` | {c.sql_type} |" in text, c.name


def test_doc_examples_are_real(tmp_path):
    """The JSON and CSV examples in the doc are lines the default generator writes, and they read cleanly."""
    out = tmp_path / "default"
    generate_landing_zone(out)  # the documented default configuration
    written = set()
    for f in discover(out):
        if f.path.suffix in (".jsonl", ".csv"):
            written.update(f.path.read_text().splitlines())
    text = DOC.read_text()
    blocks = re.findall(r"```(json|csv)\n(.*?)```", text, flags=re.S)
    examples = [line for _, b in blocks for line in b.strip().splitlines()]
    assert len(examples) >= 9
    for line in examples:
        assert line in written, line[:80]
    ops = set()
    for _, b in blocks:
        for line in b.strip().splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                ops.add("t" if rec["value"] is None else rec["value"]["op"])
    assert ops == {"c", "u", "d", "r", "t"}
    assert "__debezium_unavailable_value" in text


def test_billing_intervals_and_the_catalog_changes(zone, read_all):
    charges = _final(read_all, "plan_charges")
    recurring = charges.filter(pl.col("charge_type") == "RECURRING")
    # every recurring charge states its interval; usage charges have none (rated per account period)
    assert recurring["billing_interval"].null_count() == 0
    assert set(recurring["billing_interval"]) == {"MONTHLY", "QUARTERLY", "ANNUAL"}
    assert charges.filter(pl.col("charge_type") == "USAGE")["billing_interval"].null_count() == \
        charges.filter(pl.col("charge_type") == "USAGE").height
    yearly = recurring.filter(pl.col("billing_interval") == "ANNUAL")
    assert sorted(yearly["plan_id"]) == [340, 341, 342]
    # ten monthly fees of Broadband 100 a year: 39.99 x 10 = 399.90 USD
    assert yearly.filter(pl.col("plan_id") == 340)["unit_price"].to_list() == [Decimal("399.90")]
    items = _final(read_all, "order_items")
    assert items.filter(pl.col("plan_id").is_in([340, 341, 342])).height > 0  # the yearly plan is sold
    # Triple Play's discount changes mid-sample (an update of the bundle)
    bundle_updates = _changes(read_all, "bundles").filter(pl.col("_op") == "u")
    assert bundle_updates.select("bundle_id", "discount_pct").rows() == [(2, Decimal("0.12"))]
    # a tax rate for every jurisdiction a customer lives in (OR: an explicit 0)
    rates = _final(read_all, "tax_rates")
    customers = _final(read_all, "customers").filter(pl.col("_op") != "d")
    places = customers.select("country", pl.when(pl.col("country") == "US").then(pl.col("state")).alias("state")).unique()
    assert places.join(rates, on=["country", "state"], how="anti", nulls_equal=True).height == 0
    assert rates.filter(pl.col("state") == "OR")["rate"].to_list() == [Decimal(0)]


def test_plans_match_their_account_currency_but_the_injected_fault(zone, read_all):
    _, summary = zone
    items = _final(read_all, "order_items").filter(pl.col("plan_id").is_not_null())
    orders = _final(read_all, "orders").filter(pl.col("status") == "CONFIRMED")
    accounts = _final(read_all, "billing_accounts").select("account_id", pl.col("currency").alias("account_currency"))
    plans = _final(read_all, "price_plans").select("plan_id", pl.col("currency").alias("plan_currency"))
    placed = items.join(orders.select("order_id", "account_id", "order_type"), on="order_id") \
        .join(accounts, on="account_id").join(plans, on="plan_id")
    mismatched = placed.filter(pl.col("plan_currency") != pl.col("account_currency"))
    assert mismatched.height == summary["order_plan_currency_mismatch"] == 1  # one per block of customers
    assert mismatched["order_type"].to_list() == ["CHANGE"]


def test_coupons_and_redemptions(zone, read_all):
    _, summary = zone
    coupons = _final(read_all, "coupons")
    assert coupons.select("code", "discount_type", "duration").sort("code").rows() == [
        ("LOYALTY-EUR", "FIXED", "FOREVER"), ("LOYALTY-GBP", "FIXED", "FOREVER"), ("LOYALTY-USD", "FIXED", "FOREVER"),
        ("MOBILEM25", "PERCENT", "REPEATING"), ("WELCOME20", "PERCENT", "ONCE")]
    assert _final(read_all, "coupon_products").select("coupon_id", "product_id").rows() == [(2, 2)]  # Mobile M only
    redemptions = _final(read_all, "coupon_redemptions")
    assert redemptions.height == summary["coupon_redemptions"] > 0
    accounts = _final(read_all, "billing_accounts").select("account_id", "currency")
    joined = redemptions.join(coupons.select("coupon_id", "discount_type", pl.col("currency").alias("coupon_currency")),
                              on="coupon_id").join(accounts, on="account_id")
    assert joined.height == redemptions.height  # every redemption names a known coupon and account
    fixed = joined.filter(pl.col("discount_type") == "FIXED")
    assert fixed.height > 0 and (fixed["coupon_currency"] == fixed["currency"]).all()  # in the account's currency


def test_a_mobile_m_coupon_names_its_mobile_m_line(tmp_path):
    out = tmp_path / "zone"
    generate_landing_zone(out, customers=600, months=1, seed=7, redeliver=False)
    read = {f.relative_path: read_extract(f.path, f.entity, out) for f in discover(out)
            if f.entity_name in ("coupon_redemptions", "order_items")}
    mobile_m = _final(read, "coupon_redemptions").filter(pl.col("coupon_id") == 2)
    lines = _final(read, "order_items").filter(pl.col("product_id") == 2).select("subscription_id", "order_id")
    assert mobile_m.height > 0
    assert mobile_m.join(lines, on=["subscription_id", "order_id"]).height == mobile_m.height


def _batch_month(col: str = "_file") -> pl.Expr:
    """The first day of the month of the batch a change was delivered in (its file's date)."""
    return pl.col(col).str.extract(r"-(\d{4}-\d{2})-\d{2}").str.to_date("%Y-%m").alias("batch_month")


def _keyed_a_month_late(read_all, order_type: str) -> pl.DataFrame:
    """Confirmed ``order_type`` orders (last image per batch) delivered in a batch after the month they take effect
    in: each one keyed in its batch's month, in every batch after the first, effective in the month before."""
    orders = _changes(read_all, "orders").with_columns(_batch_month()).sort("_position") \
        .group_by("order_id", "batch_month").last()
    late = orders.filter(pl.col("order_type") == order_type, pl.col("status") == "CONFIRMED",
                         pl.col("effective_date") < pl.col("batch_month"))
    assert set(late["batch_month"]) == {date(2025, 2, 1), date(2025, 3, 1)}
    assert (late["created_at"].dt.truncate("1mo").cast(pl.Date) == late["batch_month"]).all()
    assert (late["effective_date"] >= late["batch_month"].dt.offset_by("-1mo")).all()
    return late


def _used_after(read_all, subs: pl.DataFrame) -> pl.DataFrame:
    """Usage events of ``subs`` (subscription_id, until) at or after ``until``."""
    usage = _changes(read_all, "usage_records").select("subscription_id", "event_time")
    return usage.join(subs, on="subscription_id").filter(pl.col("event_time") >= pl.col("until"))


def test_backdated_disconnects_land_a_month_late(zone, read_all):
    _, summary = zone
    late = _keyed_a_month_late(read_all, "DISCONNECT")
    # one per batch after the first at least (one block), ~0.5 % of the active services
    assert late.height == summary["orders_backdated_disconnect"] >= SMALL["months"] - 1
    items = _final(read_all, "order_items").join(late.select("order_id", "effective_date"), on="order_id")
    assert items.height == late.height  # one service each
    # the service was active before its disconnect date and is not used from then on
    activated = _final(read_all, "order_items").join(
        _final(read_all, "orders").filter(pl.col("order_type") == "NEW_SERVICE", pl.col("status") == "CONFIRMED")
        .select("order_id", pl.col("effective_date").alias("activated")), on="order_id")
    assert items.join(activated.select("subscription_id", "activated"), on="subscription_id") \
        .filter(pl.col("activated") < pl.col("effective_date")).height == late.height
    until = items.select("subscription_id", pl.col("effective_date").cast(pl.Datetime("us")).alias("until"))
    assert _used_after(read_all, until).height == 0


def test_backdated_activations_are_keyed_the_month_after_they_take_effect(zone, read_all):
    _, summary = zone
    late = _keyed_a_month_late(read_all, "NEW_SERVICE")
    assert late.height == summary["orders_backdated_activation"] >= SMALL["months"] - 1
    # effective the day its customer joined, in the previous month's batch (the account landed a month earlier)
    accounts = _changes(read_all, "billing_accounts").filter(pl.col("_op") == "c") \
        .select("account_id", pl.col("created_at").alias("joined"), _batch_month().alias("account_batch"))
    placed = late.join(accounts, on="account_id")
    assert placed.height == late.height
    assert (placed["effective_date"] == placed["joined"].dt.date()).all()
    assert (placed["account_batch"] == placed["batch_month"].dt.offset_by("-1mo")).all()


def test_reversed_orders_fail_payment_in_the_next_batch(zone, read_all):
    _, summary = zone
    statuses = _changes(read_all, "orders").with_columns(_batch_month()).sort("_position").unique(
        ["order_id", "status"], keep="first", maintain_order=True).group_by("order_id", maintain_order=True) \
        .agg("status", "batch_month", pl.col("order_type", "account_id").first())
    reversed_ = statuses.filter(pl.col("status").list.get(-1) == "PAYMENT_FAILED", pl.col("status").list.len() == 3)
    assert reversed_.height == summary["orders_reversed"] >= SMALL["months"] - 1
    for status, batches, order_type in reversed_.select("status", "batch_month", "order_type").rows():
        assert status == ["CREATED", "CONFIRMED", "PAYMENT_FAILED"] and order_type == "NEW_SERVICE"
        assert batches[0] == batches[1] and batches[2] == add_months(batches[1], 1)  # failed in the next month's batch
    items = _final(read_all, "order_items").join(reversed_.select("order_id"), on="order_id")
    assert set(items.filter(pl.col("product_id") == DEVICE_PRODUCT)["order_id"]) == set(reversed_["order_id"])  # a phone each
    # the account has no other confirmed order, and its lines are not used after the reversal
    confirmed = _final(read_all, "orders").filter(pl.col("status") == "CONFIRMED")
    assert confirmed.join(reversed_.select("account_id"), on="account_id").height == 0
    failed_at = _changes(read_all, "orders").filter(pl.col("status") == "PAYMENT_FAILED") \
        .join(reversed_.select("order_id"), on="order_id").group_by("order_id").agg(pl.col("_source_ts").min().alias("until"))
    subs = items.filter(pl.col("subscription_id").is_not_null()).join(failed_at, on="order_id").select("subscription_id", "until")
    assert subs.height > 0 and _used_after(read_all, subs).height == 0


def test_changes_keyed_late_keep_their_share_per_block(tmp_path):
    """Per block and batch after the first at least one of each kind; overall about their share."""
    out = tmp_path / "zone"
    s = generate_landing_zone(out, customers=2000, months=2, seed=3, usage_events=2000, block_customers=500,
                              redeliver=False)
    read = {f.relative_path: read_extract(f.path, f.entity, out) for f in discover(out)
            if f.entity_name in ("orders", "order_items", "billing_accounts")}
    orders = _final(read, "orders")
    services = _final(read, "order_items").filter(pl.col("subscription_id").is_not_null()).join(
        orders.filter(pl.col("order_type") == "NEW_SERVICE", pl.col("status") == "CONFIRMED",
                      pl.col("effective_date") < date(2025, 2, 1)), on="order_id").height
    devices = _final(read, "order_items").filter(pl.col("product_id") == DEVICE_PRODUCT).join(
        orders.filter(pl.col("created_at") < datetime(2025, 2, 1)), on="order_id").height
    joined_in_january = _final(read, "billing_accounts").filter(pl.col("created_at") < datetime(2025, 2, 1)).height
    blocks = 4
    # ~0.5 % of ~2,800 services active in January; ~0.3 % of ~1,550 January customers; ~0.2 % of ~300 phones
    assert blocks <= s["orders_backdated_disconnect"] <= blocks + 2 * 0.005 * services
    assert blocks <= s["orders_backdated_activation"] <= blocks + 2 * 0.003 * joined_in_january
    assert blocks <= s["orders_reversed"] <= blocks + 2 * 0.002 * devices + 1


def test_standalone_selling_prices_per_product_and_currency_with_one_change(zone, read_all):
    ssp = _final(read_all, "standalone_selling_prices")
    products = _final(read_all, "products")
    # every product in every currency the sample sells in, in force from the sample's start
    opening = ssp.filter(pl.col("effective_from") == date(2025, 1, 1))
    assert opening.select("product_id", "currency").sort("product_id", "currency").rows() == sorted(
        (p, c) for p in products["product_id"] for c in ("USD", "GBP", "EUR"))
    usd = dict(opening.filter(pl.col("currency") == "USD").select("product_id", "ssp_amount").rows())
    assert usd[DEVICE_PRODUCT] == Decimal("599.00") and usd[8] == Decimal("25.00")  # the phone, the activation fee: list
    assert usd[1] == Decimal("19.99")  # Mobile S: its monthly fee
    assert usd[9] == Decimal("59.00")  # Business Connect per month: 49.00 + priority support 30.00 a quarter / 3
    # bundle members on their own: mobile a little above list, broadband a little below
    assert usd[2] == Decimal("31.49")  # Mobile M: 29.99 x 1.05 = 31.4895 -> 31.49
    assert usd[4] == Decimal("37.99")  # Broadband 100: 39.99 x 0.95 = 37.9905 -> 37.99
    assert usd[3] == Decimal("47.24") and usd[5] == Decimal("56.99")  # 44.99 x 1.05 = 47.2395; 59.99 x 0.95 = 56.9905
    # Mobile M (USD) re-estimated after its price change: the old version ends where the new one starts
    mobile_m = ssp.filter(pl.col("product_id") == 2, pl.col("currency") == "USD").sort("effective_from")
    assert mobile_m.select("ssp_id", "ssp_amount", "effective_from", "effective_to").rows() == [
        (5020, Decimal("31.49"), date(2025, 1, 1), date(2025, 2, 15)),
        (6020, Decimal("34.64"), date(2025, 2, 15), None),  # 32.99 x 1.05 = 34.6395 -> 34.64
    ]
    assert ssp.height == 10 * 3 + 1
    changes = _changes(read_all, "standalone_selling_prices").filter(pl.col("_op") != "r")
    assert changes.select("_op", "ssp_id", _batch_month()).rows() == [("u", 5020, date(2025, 2, 1)),
                                                                      ("c", 6020, date(2025, 2, 1))]


def test_committed_orders_and_subsidized_phones(zone, read_all):
    _, summary = zone
    orders = _final(read_all, "orders")
    items = _final(read_all, "order_items")
    committed = orders.filter(pl.col("contract_term_months").is_not_null())
    assert set(committed["order_type"]) == {"NEW_SERVICE"} and set(committed["contract_term_months"]) == {12, 24}
    ever_confirmed = _changes(read_all, "orders").filter(pl.col("status") == "CONFIRMED").select("order_id").unique()
    confirmed = committed.join(ever_confirmed, on="order_id")  # a reversed phone order ends PAYMENT_FAILED
    # the 120 customers of seed 7: 3 confirmed 12-month orders, 7 24-month ones, each of these selling a phone
    assert Counter(confirmed["contract_term_months"]) == {12: summary["orders_term_12_months"],
                                                          24: summary["orders_term_24_months"]} == {12: 3, 24: 7}
    phones = items.filter(pl.col("product_id") == DEVICE_PRODUCT).join(
        orders.select("order_id", "status", "contract_term_months"), on="order_id")
    subsidized = phones.filter(pl.col("unit_price") < Decimal("549.00"))  # below the cheapest list price (GBP)
    # a phone sold with a 24-month plan is subsidized, at 99.00 or 0.00 (USD; 79.20 GBP, 89.10 EUR), any other at list
    assert (subsidized["contract_term_months"] == 24).all()
    assert set(subsidized["unit_price"]) <= {Decimal(p) for p in ("99.00", "79.20", "89.10", "0.00")}
    assert phones.filter(pl.col("contract_term_months") == 24).height == subsidized.height
    assert subsidized.join(ever_confirmed, on="order_id").height == summary["orders_subsidized_device"] == 7
    assert subsidized.filter(pl.col("status") == "CONFIRMED").height == 5  # two of them reversed in the next batch
    assert set(subsidized["unit_price"]) >= {Decimal("0.00"), Decimal("99.00")}
    # month to month: most NEW_SERVICE orders; every CHANGE and DISCONNECT
    new_service = orders.filter(pl.col("order_type") == "NEW_SERVICE")
    assert new_service["contract_term_months"].null_count() > 0.9 * new_service.height
    assert orders.filter(pl.col("order_type") != "NEW_SERVICE")["contract_term_months"].null_count() == \
        orders.filter(pl.col("order_type") != "NEW_SERVICE").height
