"""Deterministic sample landing zone of a telecom BSS (catalog, CRM, orders, usage, payments).

``python -m sources.generator --out DIR --customers 2000 --start 2025-01 --months 3 --seed 42``

Same arguments ⇒ byte-identical files: every random draw comes from a seeded
``numpy.random.Generator`` keyed by (seed, stream, block, month), no wall-clock time is read and
every output is written in a stable order.

Layout (``docs/cdc-extracts.md``)::

    <out>/<system>/<entity>/<entity>-<YYYY-MM-DD>[-NNN].<ext>

* the snapshot batch, dated the first day of the start month: the catalog as ``op: r`` (plans
  with monthly, quarterly and yearly recurring charges, bundles, tax rates, coupons, standalone
  selling prices);
* one batch per month, dated the month's last day: every change of that month (Debezium JSON
  lines for crm / catalog / orders / payments; Parquet + CSV for usage, ``-NNN`` numbered):
  customers, orders (a few committed for 12 or 24 months, some of those with a subsidized phone),
  coupon redemptions, payments (some refunded), catalog changes, usage.

Scale: customers are simulated in blocks (``block_customers``), usage is generated vectorised in
chunks of at most ``chunk_rows`` events, one file per chunk, so memory stays bounded for 1M
customers / 100M events. Debezium ``source.lsn`` increases monotonically per system across
batches (``lsn = (batch + 1) · 2^40 + block · 2^32 + rank · 8``).

Faults real extracts carry, counted in the returned summary: duplicated Debezium lines and
usage rows, one file redelivered under a second name, out-of-order lines within a file, late
usage (month N events in month N+1's batch), events for unknown subscriptions and metrics, and
malformed records of every kind (invalid JSON, missing required field, bad enum, unparsable
number, bad op, out-of-range value), per block one plan change to a plan in another currency
than the account's, and changes keyed a month late: backdated disconnects and activations
(effective in the previous month) and device orders reversed CONFIRMED → PAYMENT_FAILED.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl

from domain.periods import add_months
from sources.entities import ENTITIES

__all__ = ["generate_landing_zone", "main"]

EPOCH = datetime(1970, 1, 1)
MINUTE, HOUR, DAY = 60_000_000, 3_600_000_000, 86_400_000_000  # in microseconds, the unit of every timestamp here
UNAVAILABLE = "__debezium_unavailable_value"
CURRENCIES = ("USD", "GBP", "EUR")
REDELIVERY_DELAY_S = 60  # the redelivered copy lands this much after its original (modification time)

# ---------------------------------------------------------------------------------------------
# Catalog

# product_id, sku, name, category, product_type, {currency: price}
PRODUCTS = [
    (1, "MOB-S", "Mobile S", "MOBILE", "SUBSCRIPTION", {"USD": "19.99", "GBP": "15.99", "EUR": "17.99"}),
    (2, "MOB-M", "Mobile M", "MOBILE", "SUBSCRIPTION", {"USD": "29.99", "GBP": "24.99", "EUR": "27.99"}),
    (3, "MOB-L", "Mobile L", "MOBILE", "SUBSCRIPTION", {"USD": "44.99", "GBP": "37.99", "EUR": "41.99"}),
    (4, "BB-100", "Broadband 100", "BROADBAND", "SUBSCRIPTION", {"USD": "39.99", "GBP": "29.99", "EUR": "34.99"}),
    (5, "BB-1G", "Broadband 1G", "BROADBAND", "SUBSCRIPTION", {"USD": "59.99", "GBP": "49.99", "EUR": "54.99"}),
    (6, "TV-BASIC", "TV Basic", "TV", "SUBSCRIPTION", {"USD": "14.99", "GBP": "11.99", "EUR": "12.99"}),
    (7, "DEV-PHONE-X", "Phone X 128 GB", "DEVICE", "ONE_TIME", {"USD": "599.00", "GBP": "549.00", "EUR": "579.00"}),
    (8, "FEE-ACT", "Activation fee", "FEE", "ONE_TIME", {"USD": "25.00", "GBP": "20.00", "EUR": "25.00"}),
    (9, "BIZ-CONNECT", "Business Connect", "MOBILE", "SUBSCRIPTION", {"USD": "49.00", "GBP": "39.00", "EUR": "45.00"}),
    (10, "IOT-M2M", "IoT Connect", "MOBILE", "SUBSCRIPTION", {"USD": "9.99", "GBP": "7.99", "EUR": "8.99"}),
]
SUBSCRIPTION_PRODUCTS = [p for p in PRODUCTS if p[4] == "SUBSCRIPTION"]
MOBILE = (1, 2, 3)
BUSINESS, IOT = 9, 10  # Business Connect (business customers), IoT Connect (M2M SIMs)
DEVICE, ACTIVATION = 7, 8
# Usage profile of each subscription product: 0 = consumer mobile, 1 = business, 2 = IoT / M2M.
USAGE_KIND = {1: 0, 2: 0, 3: 0, BUSINESS: 1, IOT: 2}
# Mobile allowances (MB of data included per month) and tiers of data beyond it.
DATA_INCLUDED = {1: "5120", 2: "20480", 3: "51200"}
DATA_TIERS = [("1024", "0.0100000000"), ("10240", "0.0050000000"), (None, "0.0020000000")]
# Prices are set in USD and converted at these catalog rates (GBP, EUR price lists).
FX = {"USD": Decimal("1"), "GBP": Decimal("0.8"), "EUR": Decimal("0.9")}
# Voice: MATRIX by destination zone × time band (from the event's UTC hour, docs/rating.md);
# ROAMING_WORLD (no cell) falls to the default price. (zone, band, USD price per minute).
TIME_BANDS = [{"band": "PEAK", "from_hour": 8, "to_hour": 20}, {"band": "OFFPEAK", "from_hour": 20, "to_hour": 8}]
VOICE_CELLS = {
    "consumer": ([("DOMESTIC", "PEAK", "0.0500"), ("DOMESTIC", "OFFPEAK", "0.0200"), ("ROAMING_EU", "*", "0.1500")], "0.9900"),
    "business": ([("DOMESTIC", "PEAK", "0.0300"), ("DOMESTIC", "OFFPEAK", "0.0150"), ("ROAMING_EU", "*", "0.1000")], "0.6900"),
}
SMS_BUNDLE = ("1.00", "100", {1: "0", 2: "10", 3: "25"})  # USD per 100 SMS, package size, free SMS per plan
TOPUP = dict(rate="0.015", fixed_fee="0.10", per_event_min="0.25", per_event_max="1.00", free_events="1")
CARD_TIERS = [("5000", "0.029"), (None, "0.019")]  # card acceptance: 2.9 % up to 5,000 a month, 1.9 % beyond
BIZ_DATA = ("0.0100", "1024", "10.00")  # per MB beyond the included MB, minimum commitment per month
BIZ_DEVICE, BIZ_SEAT = "2.00", "4.00"  # per distinct device seen, per licensed seat (latest count)
IOT_TIERS = [("500", "0.0200"), ("5000", "0.0100"), (None, "0.0050")]  # VOLUME, per MB
IOT_CAP, IOT_SESSION, IOT_STORAGE = "15.00", "0.25", "0.10"  # data cap, per peak session, per GB-month
CONTENT_PRICES = ("0.99", "1.99", "2.99", "4.99")  # premium content, price carried on the event
# price change at the start of month 2: (product, currency) → new monthly fee
PRICE_CHANGE = {(2, "USD"): "32.99"}
BUNDLES = [(1, "Mobile + Broadband", "0.100000", (2, 4)), (2, "Triple Play", "0.150000", (3, 5, 6))]
BUNDLE_CHANGE = (2, "0.120000")  # Triple Play's discount becomes 12 % on day 15 of month 2
# Broadband 100 is also sold on a yearly plan: ten monthly fees a year, billed in advance (billing_interval ANNUAL)
YEARLY_PRODUCT, YEARLY_MONTHS_CHARGED, YEARLY_SHARE = 4, 10, 0.30  # share of stand-alone Broadband 100 sales
QUARTERLY_CHARGE = ("priority_support", BUSINESS, "30.00")  # Business Connect support, USD per quarter, in advance
ADDED_PRICE_BASE = 7000  # price ids of the yearly fee and priority support: 7000 + product·10 + currency
# Standalone selling prices (revenue allocation, docs/revenue.md), one per product and currency from the sample's start:
# a one-time product's list price; a service's per month (Business Connect: its monthly fee plus priority support's
# monthly equivalent, a third of the quarterly fee). Sold on their own, the bundles' mobile lines fetch a little more
# than list and their broadband a little less (factor on the list price), so a relative-SSP allocation moves bundle
# revenue from broadband to mobile. ids 5000 + product·10 + currency.
SSP_BASE, SSP_FACTOR = 5000, {2: Decimal("1.05"), 3: Decimal("1.05"), 4: Decimal("0.95"), 5: Decimal("0.95")}
# Mobile M (USD)'s SSP follows its price change: a new version (id 6000 + product·10 + currency) from day 15 of month 2,
# keyed on day 10 (the old version gets effective_to).
SSP_CHANGE = (2, "USD", 6000)
# coupon_id, code, name, discount_type, percent_off, (currency, amount_off), duration, duration_periods, products
COUPONS = [
    (1, "WELCOME20", "Welcome offer: 20 % off your first bill", "PERCENT", "0.200000", None, "ONCE", None, ()),
    (2, "MOBILEM25", "Mobile M: 25 % off for 3 months", "PERCENT", "0.250000", None, "REPEATING", 3, (2,)),
    (3, "LOYALTY-USD", "Loyalty discount", "FIXED", None, ("USD", "5.00"), "FOREVER", None, ()),
    (4, "LOYALTY-GBP", "Loyalty discount", "FIXED", None, ("GBP", "4.00"), "FOREVER", None, ()),
    (5, "LOYALTY-EUR", "Loyalty discount", "FIXED", None, ("EUR", "4.50"), "FOREVER", None, ()),
]
WELCOME_COUPON, MOBILE_M_COUPON, LOYALTY_COUPON = 1, 2, {"USD": 3, "GBP": 4, "EUR": 5}
WELCOME_SHARE, MOBILE_M_SHARE, LOYALTY_MONTHLY = 0.02, 0.03, 0.01  # new customers; new Mobile M lines; customers a month
# Changes keyed a month late, in each batch after the first (and, per block, at least one of each kind a batch):
# a share of the active services disconnected with an effective date in the previous month, of the new customers'
# NEW_SERVICE orders keyed in the month after the one they take effect in, of the previous month's confirmed
# device orders reversed to PAYMENT_FAILED.
BACKDATED_DISCONNECT_SHARE, BACKDATED_ACTIVATION_SHARE, REVERSED_ORDER_SHARE = 0.005, 0.003, 0.002
# Per customer and batch, uniform draws for them: [0] activation keyed late?, [1] the day it is keyed, [2] order
# reversed?, [3] the day a change is keyed, [4] the disconnect's effective day, [5:] each service disconnected?
LATE_DRAWS, LATE_SERVICE = 10, 5
# Committed contracts (orders.contract_term_months; NULL = month to month): a phone sold with a mobile package is on a
# 24-month plan at a subsidized price for SUBSIDIZED_PHONE_SHARE of those customers (and, per block, for the first of
# them joining each month), at one of SUBSIDIZED_PHONE_PRICES (USD, converted like the catalog); of the other new
# customers TERM_SHARES commit to 12 or 24 months. Two uniform draws per customer decide it, a stream of their own.
SUBSIDIZED_PHONE_SHARE, SUBSIDIZED_PHONE_PRICES = 0.15, ("99.00", "0.00")
TERM_SHARES = ((12, 0.02), (24, 0.02))
# tax_rate_id, country, state, name, rate
TAX_RATES = [
    (1, "US", "CA", "CA sales tax", "0.072500"), (2, "US", "NY", "NY sales tax", "0.040000"),
    (3, "US", "TX", "TX sales tax", "0.062500"), (4, "US", "WA", "WA sales tax", "0.065000"),
    (5, "US", "FL", "FL sales tax", "0.060000"), (6, "US", "IL", "IL sales tax", "0.062500"),
    (7, "GB", None, "VAT", "0.200000"), (8, "DE", None, "MwSt", "0.190000"),
    (10, "US", "OR", "OR: no sales tax", "0.000000"),
]
TAX_CHANGE = (4, "0.068000")  # WA rate changes at the start of month 2 (new row id 9)
US_STATES = ("CA", "NY", "TX", "WA", "FL", "IL", "OR")
US_STATE_P = (0.30, 0.20, 0.20, 0.12, 0.10, 0.05, 0.03)
CITIES = {
    "CA": ("San Francisco", "941"), "NY": ("New York", "100"), "TX": ("Austin", "787"), "WA": ("Seattle", "981"),
    "FL": ("Miami", "331"), "IL": ("Chicago", "606"), "OR": ("Portland", "972"), "GB": ("London", "EC1A "),
    "DE": ("Berlin", "10"),
}
FIRST = ("James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
         "Oliver", "Amelia", "Lukas", "Emma", "Noah", "Sofia", "Liam", "Mia", "Jonas", "Hannah")
LAST = ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Taylor", "Wilson",
        "Evans", "Walker", "Muller", "Schmidt", "Fischer", "Weber", "Lopez", "Clark", "Lewis", "Young")
STREETS = ("Main St", "Oak Ave", "Maple Dr", "High Street", "Station Rd", "Hauptstrasse", "Park Lane", "Cedar Blvd")

# packages sold with a NEW_SERVICE order: (weight, [(product, bundle)])
PACKAGES = [
    (0.12, [(1, None)]), (0.15, [(2, None)]), (0.08, [(3, None)]),
    (0.15, [(4, None)]), (0.05, [(5, None)]),
    (0.20, [(2, 1), (4, 1)]),
    (0.10, [(3, 2), (5, 2), (6, 2)]),
    (0.07, [(2, None), (6, None)]),
    (0.08, [(2, None), (1, None)]),
]

CUSTOMER_BASE, ACCOUNT_BASE, SUB_BASE = 10_000_000, 20_000_000, 30_000_000
ORDER_BASE, ITEM_BASE, PAYMENT_BASE, REDEMPTION_BASE = 40_000_000, 50_000_000, 60_000_000, 70_000_000
UNKNOWN_SUB_BASE = 99_000_000
LSN_BATCH, LSN_BLOCK, LSN_STEP = 1 << 40, 1 << 32, 8
# Each entity's number in its LSNs and fault stream: the first sample's entities in name order, the ones added later
# after them, so adding an entity moves no other entity's records. At most 16 (an entity's LSN range is LSN_BLOCK / 16).
ADDED_ENTITIES = ("standalone_selling_prices",)
ENTITY_NO = {name: no for no, name in enumerate([*sorted(set(ENTITIES) - set(ADDED_ENTITIES)), *ADDED_ENTITIES])}
assert set(ENTITY_NO) == set(ENTITIES) and len(ENTITY_NO) <= 16


def _plan_id(product_id: int, currency: str) -> int:
    return 100 + product_id * 10 + CURRENCIES.index(currency)


def _yearly_plan_id(product_id: int, currency: str) -> int:
    return 300 + product_id * 10 + CURRENCIES.index(currency)


def _us(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def _iso_ts(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%SZ") if us % 1_000_000 == 0 else \
        (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _days(d: date) -> int:
    return (d - date(1970, 1, 1)).days


# ---------------------------------------------------------------------------------------------
# Change events


@dataclass
class _Change:
    ts: int  # microseconds since epoch (UTC)
    entity: str
    op: str  # c u d r t
    key: dict
    before: dict | None
    after: dict | None
    unavailable: tuple[str, ...] = ()


@dataclass
class _Ctx:
    out: Path
    start: date
    months: int
    seed: int
    chunk_rows: int
    events_per_sub_month: float
    summary: dict = field(default_factory=lambda: defaultdict(int))
    files: list = field(default_factory=list)
    usage_seq: int = 0
    n_blocks: int = 1
    established: float = 0.0  # share of customers already with the operator at the start (they join on its first day)

    def month_bounds(self, k: int) -> tuple[int, int]:
        return _us(datetime.combine(add_months(self.start, k), datetime.min.time())), \
            _us(datetime.combine(add_months(self.start, k + 1), datetime.min.time()))

    def batch_date(self, k: int) -> date:
        """Batch k (0-based month) is extracted on the month's last day; k = -1 is the snapshot."""
        if k < 0:
            return self.start
        return add_months(self.start, k + 1) - timedelta(days=1)

    def month_of(self, ts: int) -> int:
        for k in range(self.months):
            lo, hi = self.month_bounds(k)
            if lo <= ts < hi:
                return k
        return -2

    def rng(self, *tag: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *tag])


def _envelope(ch: _Change, system: str, lsn: int, encode) -> str:
    if ch.op == "t":
        return json.dumps({"key": ch.key, "value": None}, separators=(",", ":"))
    ts_ms = ch.ts // 1000
    source = {
        "version": "2.7.3.Final", "connector": "postgresql", "name": system, "ts_ms": ts_ms,
        "snapshot": "true" if ch.op == "r" else "false", "db": system, "schema": "public",
        "table": ch.entity, "txId": lsn // 4096, "lsn": lsn,
    }
    after = encode(ch.entity, ch.after, ch.unavailable) if ch.after is not None else None
    before = encode(ch.entity, ch.before, ()) if ch.before is not None else None
    value = {"before": before, "after": after, "op": ch.op, "source": source, "ts_ms": ts_ms + 7}
    return json.dumps({"key": ch.key, "value": value}, separators=(",", ":"))


def _encoder(iso: bool):
    """Row image → JSON values per the connector settings (decimals as strings; dates/timestamps
    as integers (io.debezium.time.Date / MicroTimestamp) or ISO strings when ``iso``)."""

    def encode(entity: str, row: dict, unavailable) -> dict:
        out = {}
        for c in ENTITIES[entity].columns:
            v = row.get(c.name)
            if c.name in unavailable:
                out[c.name] = UNAVAILABLE
            elif v is None:
                out[c.name] = None
            elif c.sql_type == "TIMESTAMP":
                out[c.name] = _iso_ts(v) if iso else v
            elif c.sql_type == "DATE":
                out[c.name] = (date(1970, 1, 1) + timedelta(days=v)).isoformat() if iso else v
            else:
                out[c.name] = v
        return out

    return encode


ISO_SYSTEMS = {"catalog", "payments"}  # these connectors emit ISO strings; crm/orders integers


def _write_debezium(ctx: _Ctx, batch: int, block: int, entity: str, changes: list[_Change],
                    faults: bool, name_suffix: str = "") -> Path | None:
    if not changes:
        return None
    e = ENTITIES[entity]
    rng = ctx.rng(7, batch + 1, block, ENTITY_NO[entity])
    changes = sorted(changes, key=lambda c: (c.ts, c.op == "t"))
    encode = _encoder(e.system in ISO_SYSTEMS)
    base = (batch + 1) * LSN_BATCH + block * LSN_BLOCK + ENTITY_NO[entity] * (LSN_BLOCK // 16)
    lines = []
    for i, ch in enumerate(changes):
        lines.append(_envelope(ch, e.system, base + (i + 1) * LSN_STEP, encode))
    s = ctx.summary
    if faults and len(lines) >= 4:
        # out-of-order: swap ~1% of adjacent pairs (at least one)
        n_swap = max(1, len(lines) // 100)
        for j in sorted(rng.choice(len(lines) - 1, size=min(n_swap, len(lines) - 1), replace=False).tolist()):
            lines[j], lines[j + 1] = lines[j + 1], lines[j]
        s["out_of_order_swaps"] += n_swap
        # duplicates: ~0.5% of lines repeated later in the file (at least one)
        n_dup = min(max(1, len(lines) // 200), len(lines))
        src = rng.choice(len(lines), size=n_dup, replace=False)
        gap = rng.integers(0, 5, size=n_dup)
        extra: dict[int, list[str]] = defaultdict(list)  # position → repeated lines inserted after it
        for j, g in sorted(zip(src.tolist(), gap.tolist())):
            extra[min(len(lines) - 1, j + g)].append(lines[j])
        lines = [x for pos, line in enumerate(lines) for x in [line, *extra.get(pos, ())]]
        s["duplicate_lines"] += n_dup
        lines = _malform(ctx, entity, lines, rng)
    d = ctx.batch_date(batch).isoformat()
    num = f"-{block + 1:03d}" if ctx.n_blocks > 1 else ""
    path = ctx.out / e.system / entity / f"{entity}-{d}{num}{name_suffix}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ctx.files.append(path)
    s["debezium_lines"] += len(lines)
    return path


# one malformed record of each listed kind per monthly file of the entity
MALFORMED = {
    "customers": ("invalid_json", "bad_enum"),
    "billing_accounts": ("out_of_range",),
    "orders": ("missing_required",),
    "order_items": ("bad_op",),
    "payments": ("unparsable_number",),
    "coupon_redemptions": ("bad_enum",),
}


def _malform(ctx: _Ctx, entity: str, lines: list[str], rng) -> list[str]:
    kinds = MALFORMED.get(entity, ())
    for kind in kinds:
        start = int(rng.integers(0, len(lines)))
        for step in range(len(lines)):
            j = (start + step) % len(lines)
            rec = json.loads(lines[j])
            if rec.get("value") and rec["value"].get("op") == "c":
                break
        else:
            continue
        after = rec["value"]["after"]
        if kind == "invalid_json":
            bad = lines[j][: len(lines[j]) // 2]  # truncated line
        elif kind == "bad_enum":
            after["status"] = "ACTVE"
            bad = json.dumps(rec, separators=(",", ":"))
        elif kind == "out_of_range":
            after["bill_cycle_day"] = 42
            bad = json.dumps(rec, separators=(",", ":"))
        elif kind == "missing_required":
            after.pop("account_id", None)
            bad = json.dumps(rec, separators=(",", ":"))
        elif kind == "bad_op":
            rec["value"]["op"] = "x"
            bad = json.dumps(rec, separators=(",", ":"))
        elif kind == "unparsable_number":
            after["amount"] = "12,50"
            bad = json.dumps(rec, separators=(",", ":"))
        else:  # pragma: no cover
            continue
        lines.insert(j + 1, bad)  # an extra, malformed record next to a good one
        ctx.summary[f"malformed_{kind}"] += 1
        ctx.summary["malformed_records"] += 1
    return lines


# ---------------------------------------------------------------------------------------------
# Catalog


def _px(usd: str, cur: str) -> str:
    """A USD catalog price in ``cur``, at the catalog rate, to the USD price's decimals."""
    return str((Decimal(usd) * FX[cur]).quantize(Decimal(usd)))


def _uc(code, metric, aggregation, model, *, unit_price=None, included=None, tiers=None, props=None, prorate=True):
    return dict(charge_code=code, charge_type="USAGE", metric=metric, aggregation=aggregation, charge_model=model,
                billing_timing="IN_ARREARS", prorate=prorate, unit_price=unit_price, included_quantity=included,
                tiers=json.dumps(tiers, separators=(",", ":")) if tiers is not None else None,
                properties=json.dumps(props, separators=(",", ":")) if props is not None else None)


def _voice_matrix(kind: str, cur: str) -> dict:
    cells, default = VOICE_CELLS[kind]
    return {"dimensions": ["zone", "time_band"], "time_bands": TIME_BANDS,
            "prices": [{"zone": z, "time_band": b, "unit_price": _px(p, cur)} for z, b, p in cells],
            "default_unit_price": _px(default, cur)}


def _usage_charges(pid: int, cur: str) -> list[dict]:
    """USAGE charges of a plan: every charge model and aggregation of docs/rating.md appears somewhere."""
    if pid in MOBILE:
        price, size, free = SMS_BUNDLE
        return [
            _uc("data", "data_mb", "SUM", "GRADUATED", included=DATA_INCLUDED[pid],
                   tiers=[{"up_to": u, "unit_amount": a, "flat_amount": "0"} for u, a in DATA_TIERS]),
            _uc("voice", "voice_min", "SUM", "MATRIX", props=_voice_matrix("consumer", cur), prorate=False),
            _uc("sms", "sms", "COUNT", "PACKAGE", unit_price=_px(price, cur),
                   props={"package_size": size, "free_units": free[pid]}),
            _uc("content", "content_purchase", "SUM", "DYNAMIC", props={"price_attribute": "unit_price"}),
            _uc("topup_fee", "wallet_topup", "SUM", "PERCENTAGE",
                   props={**TOPUP, **{k: _px(TOPUP[k], cur) for k in ("fixed_fee", "per_event_min", "per_event_max")}}),
        ]
    if pid == BUSINESS:
        per_mb, included, minimum = BIZ_DATA
        return [
            _uc("data", "data_mb", "SUM", "PER_UNIT", unit_price=_px(per_mb, cur), included=included,
                   props={"minimum_amount": _px(minimum, cur)}),
            _uc("voice", "voice_min", "SUM", "MATRIX", props=_voice_matrix("business", cur), prorate=False),
            _uc("card_acceptance", "card_payment", "SUM", "GRADUATED_PERCENTAGE",
                   tiers=[{"up_to": _px(u, cur) if u else None, "rate": r, "flat_amount": "0"} for u, r in CARD_TIERS]),
            _uc("devices", "device_seen", "UNIQUE_COUNT", "PER_UNIT", unit_price=_px(BIZ_DEVICE, cur),
                   props={"unique_attribute": "device_id"}),
            _uc("seats", "seats", "LATEST", "PER_UNIT", unit_price=_px(BIZ_SEAT, cur)),
        ]
    if pid == IOT:
        return [
            _uc("data", "data_mb", "SUM", "VOLUME",
                   tiers=[{"up_to": u, "unit_amount": _px(a, cur), "flat_amount": "0"} for u, a in IOT_TIERS],
                   props={"maximum_amount": _px(IOT_CAP, cur)}),
            _uc("sessions", "sessions", "MAX", "PER_UNIT", unit_price=_px(IOT_SESSION, cur)),
            _uc("storage", "storage_gb", "TIME_WEIGHTED_SUM", "PER_UNIT", unit_price=_px(IOT_STORAGE, cur)),
        ]
    return []


class _CatalogChanges:
    """The catalog's changes by batch (-1 = the snapshot, read an hour before the start)."""

    def __init__(self, ctx: _Ctx):
        self.ctx = ctx
        self.snap_ts = ctx.month_bounds(0)[0] - HOUR
        self.by_batch: dict[int, list[_Change]] = defaultdict(list)

    def add(self, batch: int, ts: int, entity: str, op: str, before: dict | None, after: dict | None) -> None:
        key = ENTITIES[entity].key[0]
        self.by_batch[batch].append(_Change(ts, entity, op, {key: (after or before)[key]}, before, after))

    def snapshot(self, entity: str, row: dict) -> None:
        self.add(-1, self.snap_ts, entity, "r", None, row)


def _catalog(ctx: _Ctx) -> dict[int, list[_Change]]:
    """Catalog changes by batch (-1 = snapshot)."""
    cat = _CatalogChanges(ctx)
    for pid, sku, name, category, ptype, prices in PRODUCTS:
        cat.snapshot("products", dict(product_id=pid, sku=sku, name=name, category=category, product_type=ptype,
                                      base_price=prices["USD"], currency="USD", status="ACTIVE"))
    _plans(cat)
    _bundles(cat)
    _tax_rates(cat)
    _coupons(cat)
    _standalone_selling_prices(cat)
    return cat.by_batch


def _recurring(code: str, unit_price: str, interval: str) -> dict:
    """A RECURRING FLAT charge billed in advance, prorated, ``unit_price`` per ``interval``."""
    return dict(charge_code=code, charge_type="RECURRING", metric=None, aggregation=None, charge_model="FLAT",
                billing_timing="IN_ADVANCE", prorate=True, unit_price=unit_price, included_quantity=None, tiers=None,
                properties=None, billing_interval=interval)


def _plans(cat: _CatalogChanges) -> None:
    """One plan per subscription product and currency (monthly fee, usage charges), the Mobile M price
    change, then the charges added later: the yearly Broadband 100 plans and Business Connect's quarterly
    priority support (price ids ``ADDED_PRICE_BASE + product·10 + currency``)."""
    ctx, since = cat.ctx, _us(datetime(2024, 1, 1))
    price_ids = itertools.count(1001)

    def charge(plan: int, ch: dict, price_id: int) -> dict:
        row = dict(price_id=price_id, plan_id=plan, proration_days=None, effective_from=since, effective_to=None, **ch)
        cat.snapshot("plan_charges", row)
        return row

    for pid, _, name, _, _, prices in SUBSCRIPTION_PRODUCTS:
        for cur in CURRENCIES:
            plan = _plan_id(pid, cur)
            cat.snapshot("price_plans", dict(plan_id=plan, product_id=pid, name=f"{name} ({cur})", currency=cur, status="ACTIVE"))
            fee = charge(plan, _recurring("monthly_fee", prices[cur], "MONTHLY"), next(price_ids))
            for ch in _usage_charges(pid, cur):
                charge(plan, ch, next(price_ids))
            if (pid, cur) in PRICE_CHANGE and ctx.months >= 2:
                m2 = ctx.month_bounds(1)[0]
                ts = ctx.month_bounds(0)[0] + 19 * DAY + 9 * HOUR  # day 20, 09:00
                cat.add(0, ts, "plan_charges", "u", fee, {**fee, "effective_to": m2})
                cat.add(0, ts + 1_000_000, "plan_charges", "c", None, {
                    **fee, "price_id": 9000 + pid * 10 + CURRENCIES.index(cur),
                    "unit_price": PRICE_CHANGE[(pid, cur)], "effective_from": m2, "effective_to": None})
    for cur in CURRENCIES:
        name, monthly = PRODUCTS[YEARLY_PRODUCT - 1][2], Decimal(PRODUCTS[YEARLY_PRODUCT - 1][5][cur])
        plan = _yearly_plan_id(YEARLY_PRODUCT, cur)
        cat.snapshot("price_plans", dict(plan_id=plan, product_id=YEARLY_PRODUCT, name=f"{name} yearly ({cur})",
                                         currency=cur, status="ACTIVE"))
        charge(plan, _recurring("yearly_fee", str(monthly * YEARLY_MONTHS_CHARGED), "ANNUAL"),
               ADDED_PRICE_BASE + YEARLY_PRODUCT * 10 + CURRENCIES.index(cur))
    code, pid, usd = QUARTERLY_CHARGE
    for cur in CURRENCIES:
        charge(_plan_id(pid, cur), _recurring(code, _px(usd, cur), "QUARTERLY"), ADDED_PRICE_BASE + pid * 10 + CURRENCIES.index(cur))


def _bundles(cat: _CatalogChanges) -> None:
    """The bundles and their members; Triple Play's discount changes on day 15 of month 2 (the history
    dates it: a line priced before that day keeps the old rate)."""
    for bid, name, pct, members in BUNDLES:
        row = dict(bundle_id=bid, name=name, discount_pct=pct, status="ACTIVE")
        cat.snapshot("bundles", row)
        for i, pid in enumerate(members):
            cat.snapshot("bundle_members", dict(bundle_member_id=bid * 100 + i + 1, bundle_id=bid, product_id=pid))
        if bid == BUNDLE_CHANGE[0] and cat.ctx.months >= 2:
            cat.add(1, cat.ctx.month_bounds(1)[0] + 14 * DAY, "bundles", "u", row, {**row, "discount_pct": BUNDLE_CHANGE[1]})


def _tax_rates(cat: _CatalogChanges) -> None:
    """A rate for every jurisdiction the sample uses (OR: an explicit 0); WA's changes at the start of month 2."""
    ctx, since = cat.ctx, _days(date(2024, 1, 1))
    for tid, country, state, name, rate in TAX_RATES:
        row = dict(tax_rate_id=tid, country=country, state=state, tax_name=name, rate=rate, effective_from=since,
                   effective_to=None)
        cat.snapshot("tax_rates", row)
        if tid == TAX_CHANGE[0] and ctx.months >= 2:
            ts = ctx.month_bounds(0)[0] + 14 * DAY + 10 * HOUR  # day 15, 10:00
            m2d = _days(add_months(ctx.start, 1))
            cat.add(0, ts, "tax_rates", "u", row, {**row, "effective_to": m2d})
            cat.add(0, ts + 1_000_000, "tax_rates", "c", None,
                    {**row, "tax_rate_id": 9, "rate": TAX_CHANGE[1], "effective_from": m2d})


def _coupons(cat: _CatalogChanges) -> None:
    """The coupons (COUPONS) and the products they are limited to."""
    for coupon_id, code, name, kind, percent, amount, duration, periods, products in COUPONS:
        currency, amount_off = amount if amount else (None, None)
        cat.snapshot("coupons", dict(coupon_id=coupon_id, code=code, name=name, discount_type=kind, percent_off=percent,
                                     amount_off=amount_off, currency=currency, duration=duration, duration_periods=periods,
                                     status="ACTIVE"))
        for i, pid in enumerate(products):
            cat.snapshot("coupon_products", dict(coupon_product_id=coupon_id * 100 + i + 1, coupon_id=coupon_id, product_id=pid))


def _ssp(product_id: int, list_price: str) -> str:
    """A product's standalone selling price per unit (and month, for a service) at ``list_price`` (SSP_FACTOR)."""
    return str((Decimal(list_price) * SSP_FACTOR.get(product_id, Decimal(1))).quantize(Decimal("0.01")))


def _standalone_selling_prices(cat: _CatalogChanges) -> None:
    """An SSP per product and currency in force from the sample's start; Mobile M (USD)'s re-estimated in month 2
    after its price change (SSP_CHANGE)."""
    ctx, since = cat.ctx, _days(cat.ctx.start)
    _, support_product, quarterly_usd = QUARTERLY_CHARGE
    for pid, _, _, _, _, prices in PRODUCTS:
        for cur in CURRENCIES:
            monthly = Decimal(prices[cur]) + (Decimal(_px(quarterly_usd, cur)) / 3 if pid == support_product else 0)
            row = dict(ssp_id=SSP_BASE + pid * 10 + CURRENCIES.index(cur), product_id=pid, currency=cur,
                       ssp_amount=_ssp(pid, str(monthly)), effective_from=since, effective_to=None)
            cat.snapshot("standalone_selling_prices", row)
            if (pid, cur) == SSP_CHANGE[:2] and ctx.months >= 2:
                ts, changed = ctx.month_bounds(1)[0] + 9 * DAY + 9 * HOUR, _days(add_months(ctx.start, 1)) + 14
                cat.add(1, ts, "standalone_selling_prices", "u", row, {**row, "effective_to": changed})
                cat.add(1, ts + 1_000_000, "standalone_selling_prices", "c", None, {
                    **row, "ssp_id": SSP_CHANGE[2] + pid * 10 + CURRENCIES.index(cur),
                    "ssp_amount": _ssp(pid, PRICE_CHANGE[(pid, cur)]), "effective_from": changed})


# ---------------------------------------------------------------------------------------------
# CRM + orders + payments: simulated per customer, in blocks


@dataclass
class _Seg:
    sub_id: int
    product_id: int
    start: int
    end: int | None  # exclusive, None = open


# A block's subscriptions that generate usage, as arrays: sub_id, start, end (µs), intensity, usage kind.
UsageSegments = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class _Block:
    """The changes and usage segments of one block of customers, as they are simulated."""

    ctx: _Ctx
    changes: dict[tuple[int, str], list[_Change]] = field(default_factory=lambda: defaultdict(list))
    segs: list[_Seg] = field(default_factory=list)
    orders_placed: int = 0  # numbers the block's order ids
    currency_mismatch_due: bool = True  # the block's first plan change picks a plan in another currency (a fault)
    injected: set = field(default_factory=set)  # (fault, batch) the block injected at least once

    def inject(self, fault: str, batch: int, draw: float, share: float) -> bool:
        """Whether a candidate for ``fault`` in ``batch`` gets it: a ``share`` of the candidates and the block's
        first candidate of the batch (counted in the summary)."""
        if draw < share or (fault, batch) not in self.injected:
            self.injected.add((fault, batch))
            self.ctx.summary[fault] += 1
            return True
        return False

    def emit(self, ts, entity, op, key_col, before, after, unavailable=()):
        """Record a change in its month's batch (a change outside the simulated months is dropped)."""
        k = self.ctx.month_of(ts)
        if k < 0:
            return
        img = after if after is not None else before
        self.changes[(k, entity)].append(_Change(ts, entity, op, {key_col: img[key_col]}, before, after, tuple(unavailable)))


@dataclass
class _Customer:
    """One simulated customer: its draws, its current rows and its services."""

    n: int  # customer number (0-based) in the run
    join_month: int
    joined: int  # µs
    r: np.ndarray  # 12 uniform draws deciding its account, orders and devices
    late: np.ndarray  # (months, LATE_DRAWS) uniform draws deciding the changes keyed late, per batch
    offer: np.ndarray  # 2 uniform draws deciding its contract term and its phone's subsidy
    package: list[tuple[int, int | None]]  # (product, bundle) of its NEW_SERVICE order
    currency: str
    is_biz: bool
    first_name: str
    last_name: str
    postal_prefix: str
    customer: dict  # the customers row as last changed
    account: dict  # the billing_accounts row as created
    subs: list[list] = field(default_factory=list)  # [subscription_id, product_id, bundle_id, plan_id]
    redemptions: list[dict] = field(default_factory=list)  # coupon_redemptions rows as last changed
    open_segs: dict[int, _Seg] = field(default_factory=dict)  # subscription_id → usage segment still open
    activated: int = 0  # day (µs) its services take effect
    ordered: int = 0  # when (µs) its confirmed NEW_SERVICE order was keyed: its services are known from then
    device_order: dict | None = None  # that order's row as confirmed, when it sold a phone
    term: int | None = None  # its NEW_SERVICE orders' contract_term_months (None: month to month)
    phone_price: str | None = None  # the phone's agreed unit price when subsidized (None: its list price)
    confirmed_orders: int = 0
    changed: set[int] = field(default_factory=set)  # subscriptions a CHANGE order was placed for
    closed: bool = False


@dataclass
class _BlockDraws:
    """Vectorised draws for the customers of a block, in the order the random stream gives them."""

    country: np.ndarray
    state: np.ndarray
    business: np.ndarray
    join_month: np.ndarray
    join_offset: np.ndarray
    established: np.ndarray  # joins on the first day of the first month (the base at go-live)
    first_n: np.ndarray
    last_n: np.ndarray
    pkg: np.ndarray
    u: np.ndarray  # (count, 12) uniform draws: _Customer.r
    late: np.ndarray  # (count, months, LATE_DRAWS) uniform draws: _Customer.late (a stream of their own)
    offer: np.ndarray  # (count, 2) uniform draws: _Customer.offer (a stream of their own)

    @classmethod
    def draw(cls, ctx: _Ctx, block: int, count: int) -> _BlockDraws:
        rng = ctx.rng(1, block)
        pkg_w = np.array([w for w, _ in PACKAGES])
        return cls(
            country=rng.choice(["US", "GB", "DE"], size=count, p=[0.85, 0.08, 0.07]),
            state=rng.choice(US_STATES, size=count, p=US_STATE_P),
            business=rng.random(count) < 0.10,
            join_month=np.where(rng.random(count) < 0.55, 0, rng.integers(0, ctx.months, size=count)),
            join_offset=rng.random(count),
            # a stream of its own, so the other draws are the same whatever the share
            established=ctx.rng(11, block).random(count) < ctx.established,
            first_n=rng.integers(0, len(FIRST), size=count),
            last_n=rng.integers(0, len(LAST), size=count),
            pkg=rng.choice(len(PACKAGES), size=count, p=pkg_w / pkg_w.sum()),
            u=rng.random((count, 12)),
            late=ctx.rng(9, block).random((count, ctx.months, LATE_DRAWS)),
            offer=ctx.rng(10, block).random((count, 2)),
        )


def _simulate_block(ctx: _Ctx, block: int, first: int, count: int, n_total: int):
    """Customers first..first+count-1 → changes by (batch, entity) and mobile usage segments."""
    draws = _BlockDraws.draw(ctx, block, count)
    b = _Block(ctx)
    for i in range(count):
        c = _new_customer(b, draws, i, first + i)
        _first_orders(b, c)
        _life(b, c)
        _payments(b, c)
    _mistaken_customers(b, block, count, n_total)
    ctx.summary["customers"] += count
    return b.changes, b.segs


def _new_customer(b: _Block, d: _BlockDraws, i: int, n: int) -> _Customer:
    """Customer ``n`` (the block's ``i``-th) and its billing account, created when it joins."""
    join_month = 0 if d.established[i] else int(d.join_month[i])
    lo, hi = b.ctx.month_bounds(join_month)
    span = DAY if d.established[i] else hi - lo - DAY
    joined = lo + int(d.join_offset[i] * span) // 1_000_000 * 1_000_000
    ctry = str(d.country[i])
    st = str(d.state[i]) if ctry == "US" else None
    city, pc = CITIES[st or ctry]
    cur = {"US": "USD", "GB": "GBP", "DE": "EUR"}[ctry]
    fn, ln = FIRST[d.first_n[i]], LAST[d.last_n[i]]
    is_biz = bool(d.business[i])
    name = f"{ln} {'Inc' if ctry == 'US' else 'Ltd' if ctry == 'GB' else 'GmbH'}" if is_biz else f"{fn} {ln}"
    cust = dict(customer_id=CUSTOMER_BASE + n + 1, name=name, email=f"{fn}.{ln}.{n + 1}@example.com".lower(),
                phone=f"+1555{n + 1:07d}" if ctry == "US" else f"+44 20 7{n + 1:07d}" if ctry == "GB" else f"+49 30 {n + 1:08d}",
                address_line=f"{(n * 7) % 990 + 10} {STREETS[n % len(STREETS)]}", city=city,
                state=st, postal_code=f"{pc}{(n % 89) + 10:02d}", country=ctry,
                customer_type="BUSINESS" if is_biz else "INDIVIDUAL", status="ACTIVE", created_at=joined)
    b.emit(joined, "customers", "c", "customer_id", None, cust)
    r = d.u[i]
    cycle = "QUARTERLY" if r[0] < 0.04 else "MONTHLY"
    bcd = 1 if (cycle == "QUARTERLY" or r[1] < 0.80) else 15 if r[1] < 0.92 else int(28 + (r[2] * 4) // 1)
    method = "INVOICE" if is_biz else ("CARD", "DIRECT_DEBIT", "BANK_TRANSFER")[int(r[3] * 3) % 3]
    acct = dict(account_id=ACCOUNT_BASE + n + 1, customer_id=cust["customer_id"], account_number=f"AC-{n + 1:08d}",
                billing_cycle=cycle, bill_cycle_day=bcd, payment_method=method, payment_terms_days=30 if is_biz else 14,
                credit_limit="5000.0000" if is_biz else "500.0000", currency=cur, status="ACTIVE",
                created_at=joined + MINUTE)
    b.emit(joined + MINUTE, "billing_accounts", "c", "account_id", None, acct)
    return _Customer(n=n, join_month=join_month, joined=joined, r=r, late=d.late[i], offer=d.offer[i],
                     package=PACKAGES[d.pkg[i]][1], currency=cur, is_biz=is_biz, first_name=fn, last_name=ln, postal_prefix=pc, customer=cust, account=acct)


def _place_order(b: _Block, c: _Customer, ts: int, otype: str, items: list[dict], final_status: str, effective_ts: int) -> dict:
    """An order CREATED at ``ts`` with its items, then moved to ``final_status`` 40 to 100 minutes later; its row.
    A NEW_SERVICE order carries the customer's contract term."""
    b.orders_placed += 1
    oid = ORDER_BASE + c.n * 20 + b.orders_placed
    o = dict(order_id=oid, order_number=f"ORD-{oid}", account_id=c.account["account_id"], order_type=otype, status="CREATED",
             effective_date=(effective_ts // DAY), created_at=ts,
             contract_term_months=c.term if otype == "NEW_SERVICE" else None)
    b.emit(ts, "orders", "c", "order_id", None, o)
    for j, it in enumerate(items):
        row = dict(order_item_id=ITEM_BASE + (oid - ORDER_BASE) * 10 + j + 1, order_id=oid, **it)
        b.emit(ts + (j + 1) * 1000, "order_items", "c", "order_item_id", None, row)
    final = {**o, "status": final_status}
    b.emit(ts + 40 * MINUTE + int(c.r[4] * HOUR), "orders", "u", "order_id", o, final)
    c.confirmed_orders += final_status == "CONFIRMED"
    return final


def _service_item(sub: list) -> dict:
    """The order item of a service ``[subscription_id, product_id, bundle_id, plan_id]``."""
    subscription_id, product_id, bundle_id, plan_id = sub
    return dict(product_id=product_id, plan_id=plan_id, bundle_id=bundle_id, subscription_id=subscription_id,
                quantity=1, unit_price=None)


def _one_time_item(product_id: int, currency: str, unit_price: str | None = None) -> dict:
    """One unit of a one-time product at ``unit_price`` (default: its list price in ``currency``)."""
    return dict(product_id=product_id, plan_id=None, bundle_id=None, subscription_id=None, quantity=1,
                unit_price=PRODUCTS[product_id - 1][5][currency] if unit_price is None else unit_price)


def _package_subs(c: _Customer, first_no: int) -> list[list]:
    """The package's services, numbered from ``first_no``: a stand-alone Broadband 100 is on the
    yearly plan for ``YEARLY_SHARE`` of the customers, every other service on its monthly plan."""
    def plan(pid: int, bundle: int | None) -> int:
        yearly = (pid, bundle) == (YEARLY_PRODUCT, None) and c.r[10] < YEARLY_SHARE
        return _yearly_plan_id(pid, c.currency) if yearly else _plan_id(pid, c.currency)

    return [[SUB_BASE + c.n * 20 + no, pid, bundle, plan(pid, bundle)] for no, (pid, bundle) in enumerate(c.package, start=first_no)]


def _sells_phone(c: _Customer) -> bool:
    """A phone is sold with a quarter of the mobile packages."""
    return any(p in MOBILE for p, _ in c.package) and c.r[5] < 0.25


def _new_service_items(c: _Customer, subs: list[list]) -> list[dict]:
    """The services' items, a phone for a quarter of mobile packages (at the customer's price), and the activation fee."""
    items = [_service_item(s) for s in subs]
    if _sells_phone(c):
        items.append(_one_time_item(DEVICE, c.currency, c.phone_price))
    items.append(_one_time_item(ACTIVATION, c.currency))
    return items


def _contract_offer(b: _Block, c: _Customer) -> None:
    """The customer's term and phone price (SUBSIDIZED_PHONE_SHARE, TERM_SHARES), counted in the summary by the
    orders confirmed with them: ``orders_subsidized_device``, ``orders_term_<n>_months``."""
    term_draw, price_draw = c.offer
    if _sells_phone(c):
        if b.inject("orders_subsidized_device", c.join_month, term_draw, SUBSIDIZED_PHONE_SHARE):
            c.term = 24
            c.phone_price = _px(SUBSIDIZED_PHONE_PRICES[int(price_draw * len(SUBSIDIZED_PHONE_PRICES))], c.currency)
    else:
        shares = np.cumsum([share for _, share in TERM_SHARES])
        pick = int(np.searchsorted(shares, term_draw, side="right"))
        c.term = TERM_SHARES[pick][0] if pick < len(TERM_SHARES) else None
    if c.term:
        b.ctx.summary[f"orders_term_{c.term}_months"] += 1


def _first_orders(b: _Block, c: _Customer) -> None:
    """A failed attempt for one customer in ten, then the confirmed NEW_SERVICE order, both on the customer's
    contract offer; a few of them keyed early in the next month, effective the day the customer joined (a
    backdated activation)."""
    t_order = c.joined + 5 * MINUTE
    _contract_offer(b, c)
    if c.r[6] < 0.10:  # a failed attempt first: never creates services
        status = ("PAYMENT_FAILED", "FAILED", "CANCELLED")[int(c.r[7] * 3) % 3]
        _place_order(b, c, t_order, "NEW_SERVICE", _new_service_items(c, _package_subs(c, 15)), status, t_order)
        t_order += 3 * HOUR
    # business customers take Business Connect; some customers an IoT Connect SIM (trackers, meters)
    extra = [pid for pid, yes in ((BUSINESS, c.is_biz), (IOT, c.r[9] < (0.6 if c.is_biz else 0.03))) if yes]
    subs = _package_subs(c, 1) + [[SUB_BASE + c.n * 20 + 10 + j, pid, None, _plan_id(pid, c.currency)]
                                  for j, pid in enumerate(extra)]
    eff = t_order + int(c.r[8] * 2) * DAY  # takes effect the same or the next day
    c.activated = used_from = eff // DAY * DAY
    keyed_in = c.join_month + 1
    if keyed_in < b.ctx.months and b.inject("orders_backdated_activation", keyed_in, c.late[keyed_in, 0],
                                            BACKDATED_ACTIVATION_SHARE):
        c.activated = c.joined // DAY * DAY
        t_order = used_from = _keyed_on(b.ctx, keyed_in, c.late[keyed_in, 1])  # the lines are used once known
    items = _new_service_items(c, subs)
    order = _place_order(b, c, t_order, "NEW_SERVICE", items, "CONFIRMED", c.activated)
    c.ordered = t_order
    c.device_order = order if any(it["product_id"] == DEVICE for it in items) else None
    c.subs = subs
    c.open_segs = {s[0]: _Seg(s[0], s[1], used_from, None) for s in c.subs}
    _welcome_coupon(b, c, t_order + 2 * MINUTE, order["order_id"])


def _keyed_on(ctx: _Ctx, batch: int, draw: float) -> int:
    """A moment on days 2 to 10 of ``batch``'s month (whole seconds): when a change of the month before is keyed."""
    return (ctx.month_bounds(batch)[0] + int((1 + draw * 9) * DAY)) // 1_000_000 * 1_000_000


def _keyed_late(b: _Block, c: _Customer, k: int) -> None:
    """What month ``k``'s batch brings for the month before: the customer's device order reversed (its payment
    failed: every service it created ends), else some of its services disconnected with a backdated date."""
    if not _reverse_device_order(b, c, k):
        _backdated_disconnects(b, c, k)


def _reverse_device_order(b: _Block, c: _Customer, k: int) -> bool:
    """The previous month's confirmed NEW_SERVICE order with a phone, the customer's only confirmed order, updated
    CONFIRMED → PAYMENT_FAILED: its phone and services are credited, its lines stop being used."""
    x = c.late[k]
    if c.device_order is None or c.closed or c.confirmed_orders != 1 or b.ctx.month_of(c.ordered) != k - 1 \
            or not b.inject("orders_reversed", k, x[2], REVERSED_ORDER_SHARE):
        return False
    t = _keyed_on(b.ctx, k, x[3])
    b.emit(t, "orders", "u", "order_id", c.device_order, {**c.device_order, "status": "PAYMENT_FAILED"})
    for seg in c.open_segs.values():
        seg.end = t
        b.segs.append(seg)
    c.open_segs, c.subs, c.device_order = {}, [], None  # nothing left to change, disconnect or pay for
    return True


def _backdated_disconnects(b: _Block, c: _Customer, k: int) -> None:
    """Services active in the previous month (never changed) disconnected by an order keyed in month ``k``,
    effective on a day of the previous month after their activation: their lines are not used after it."""
    x = c.late[k]
    prev, month_start = b.ctx.month_bounds(k - 1)[0], b.ctx.month_bounds(k)[0]
    first_day = max(prev, c.activated + DAY)
    days = (month_start - first_day) // DAY
    if c.ordered >= month_start or days < 1:
        return
    effective = first_day + int(x[4] * days) * DAY
    for j, s in enumerate(c.subs):
        if s[0] in c.open_segs and s[0] not in c.changed and \
                b.inject("orders_backdated_disconnect", k, x[LATE_SERVICE + j], BACKDATED_DISCONNECT_SHARE):
            _place_order(b, c, _keyed_on(b.ctx, k, x[3]) + j * HOUR, "DISCONNECT", [_service_item(s)], "CONFIRMED", effective)
            seg = c.open_segs.pop(s[0])
            seg.end = effective
            b.segs.append(seg)


def _life(b: _Block, c: _Customer) -> None:
    """One moment a month after activation: maybe a profile update, a plan change, a loyalty coupon, the
    customer leaving (the loyalty draws have a stream of their own)."""
    ctx = b.ctx
    crng, loyalty = ctx.rng(2, c.n), ctx.rng(8, c.n)
    for k in range(ctx.month_of(c.ordered), ctx.months):
        mlo, mhi = ctx.month_bounds(k)
        if k > 0:
            _keyed_late(b, c, k)
        earliest = max(mlo, c.activated + DAY, c.ordered)
        when = (earliest + int(crng.random() * max(DAY, mhi - earliest - 2 * DAY))) // 1_000_000 * 1_000_000
        if when >= mhi:
            continue
        x = crng.random(6)
        _profile_update(b, c, when, x[0])
        if x[1] < 0.08:
            _plan_change(b, c, when, mhi, x)
        if loyalty.random() < LOYALTY_MONTHLY and not c.closed and not c.redemptions:
            _redeem(b, c, when + 3 * HOUR, LOYALTY_COUPON[c.currency], None, None, (when + 3 * HOUR) // DAY + 1)
        if not c.closed and x[5] < 0.03:
            _leave(b, c, when, mhi)
    b.segs.extend(c.open_segs.values())


def _profile_update(b: _Block, c: _Customer, when: int, x: float) -> None:
    """6 %: a new e-mail, address unchanged (TOASTed → unavailable); 3 %: a move to a new address."""
    n, cust = c.n, c.customer
    if x < 0.06:
        new = {**cust, "email": f"{c.first_name}.{c.last_name}.{n + 1}@mail.example.org".lower()}
        b.emit(when, "customers", "u", "customer_id", cust, new, unavailable=("address_line",))
        c.customer = new
    elif x < 0.09:
        new = {**cust, "address_line": f"{(n * 13) % 990 + 10} {STREETS[(n + 3) % len(STREETS)]}",
               "postal_code": f"{c.postal_prefix}{(n % 83) + 11:02d}"}
        b.emit(when, "customers", "u", "customer_id", cust, new)
        c.customer = new


def _plan_change(b: _Block, c: _Customer, when: int, month_end: int, x: np.ndarray) -> None:
    """A mid-month plan change on a non-bundled mobile line (one in ten cancelled), effective the next day.

    The block's first confirmed change picks the new product's plan in another currency than the
    account's (an order-entry fault): it is an order exception (PLAN_CURRENCY_MISMATCH) and the line
    stays as it was."""
    mob = [s for s in c.subs if s[1] in MOBILE and s[2] is None and s[0] in c.open_segs]
    if not mob:
        return
    s = mob[int(x[2] * len(mob)) % len(mob)]
    new_pid = s[1] + 1 if s[1] < 3 and (x[3] < 0.6 or s[1] == 1) else s[1] - 1
    t = when + 2 * HOUR
    status = "CONFIRMED" if x[4] < 0.9 else "CANCELLED"
    effective = (t // DAY + 1) * DAY
    if effective >= month_end:
        return
    mismatch = status == "CONFIRMED" and b.currency_mismatch_due
    currency = CURRENCIES[(CURRENCIES.index(c.currency) + 1) % len(CURRENCIES)] if mismatch else c.currency
    _place_order(b, c, t, "CHANGE", [_service_item([s[0], new_pid, None, _plan_id(new_pid, currency)])], status, effective)
    c.changed.add(s[0])
    if mismatch:
        b.currency_mismatch_due = False
        b.ctx.summary["order_plan_currency_mismatch"] += 1
    elif status == "CONFIRMED":
        s[1], s[3] = new_pid, _plan_id(new_pid, c.currency)  # usage segment continues (same subscription)


def _leave(b: _Block, c: _Customer, when: int, month_end: int) -> None:
    """The customer leaves: every open service disconnected the next day, customer and account closed."""
    t = when + 4 * HOUR
    effective = (t // DAY + 1) * DAY
    if effective >= month_end or not c.open_segs:
        return
    items = [_service_item(s) for s in c.subs if s[0] in c.open_segs]
    _place_order(b, c, t, "DISCONNECT", items, "CONFIRMED", effective)
    for i, r in enumerate(c.redemptions):  # the coupons of a leaving customer are revoked
        c.redemptions[i] = {**r, "status": "REVOKED"}
        b.emit(effective + HOUR + 2000, "coupon_redemptions", "u", "redemption_id", r, c.redemptions[i])
        b.ctx.summary["coupon_redemptions_revoked"] += 1
    for seg in c.open_segs.values():
        seg.end = effective
        b.segs.append(seg)
    c.open_segs = {}
    b.emit(effective + HOUR, "customers", "u", "customer_id", c.customer, {**c.customer, "status": "CLOSED"})
    b.emit(effective + HOUR + 1000, "billing_accounts", "u", "account_id", c.account, {**c.account, "status": "CLOSED"})
    c.closed = True


def _payments(b: _Block, c: _Customer) -> None:
    """For every month the account was billed, a payment early in the next month: some late,
    partial, failed or over-paid."""
    ctx, cur = b.ctx, c.currency
    prng = ctx.rng(3, c.n)
    method = c.account["payment_method"]
    billed_from = ctx.month_of(c.ordered)
    for k in range(billed_from + 1, ctx.months):
        if c.closed and k > c.join_month + 2:
            break
        mlo, _ = ctx.month_bounds(k)
        y = prng.random(4)
        with_tax = Decimal("1.07") if c.customer["country"] == "US" else Decimal("1.2")
        amount = _recurring_fees(c, first=k == billed_from + 1) * with_tax
        if not amount:  # a yearly plan alone, paid in advance: nothing due this month
            continue
        status, when = "SUCCEEDED", mlo + int((2 + y[1] * 8) * DAY)
        if y[0] < 0.05:  # late
            when = mlo + int((20 + y[1] * 7) * DAY)
        elif y[0] < 0.09:  # partial
            amount *= Decimal(50 + int(y[2] * 40)) / 100
        elif y[0] < 0.13:  # failed
            status = "FAILED"
        elif y[0] < 0.15:  # over-payment
            amount += 10 + int(y[2] * 10)
        pay_id = PAYMENT_BASE + c.n * 20 + k
        payment = dict(payment_id=pay_id, account_id=c.account["account_id"], invoice_number=None,
                       amount=str(amount.quantize(Decimal("0.01"))), currency=cur,
                       status=status, method=("CARD" if method in ("CARD", "INVOICE") else method),
                       received_at=when // 1_000_000 * 1_000_000)
        b.emit(payment["received_at"], "payments", "c", "payment_id", None, payment)
        ctx.summary["payments"] += 1
        if status == "SUCCEEDED" and y[3] < 0.02:  # refunded 3 to 7 days later (a dispute upheld)
            b.emit(payment["received_at"] + (3 + int(y[3] * 250)) * DAY, "payments", "u", "payment_id", payment,
                   {**payment, "status": "REFUNDED"})
            ctx.summary["payments_refunded"] += 1


def _recurring_fees(c: _Customer, first: bool) -> Decimal:
    """What a month's invoice bills the services in recurring fees, roughly: the monthly fees, and the
    yearly fee on the first invoice."""
    def fee(sub: list) -> Decimal:
        monthly = Decimal(PRODUCTS[sub[1] - 1][5][c.currency])
        if sub[3] == _yearly_plan_id(sub[1], c.currency):
            return monthly * YEARLY_MONTHS_CHARGED if first else Decimal(0)
        return monthly
    return sum((fee(s) for s in c.subs), Decimal(0))


def _welcome_coupon(b: _Block, c: _Customer, ts: int, order_id: int) -> None:
    """Some new customers quote WELCOME20 with their first order; some new Mobile M lines get MOBILEM25."""
    mobile_m = [s for s in c.subs if s[1] == 2]
    if c.r[11] < WELCOME_SHARE:
        _redeem(b, c, ts, WELCOME_COUPON, None, order_id, c.activated // DAY)
    elif mobile_m and c.r[11] < WELCOME_SHARE + MOBILE_M_SHARE:
        _redeem(b, c, ts, MOBILE_M_COUPON, mobile_m[0][0], order_id, c.activated // DAY)


def _redeem(b: _Block, c: _Customer, ts: int, coupon_id: int, subscription_id: int | None, order_id: int | None,
            starts_on: int) -> None:
    """A coupon redemption of the customer's account from day ``starts_on`` (days since the epoch)."""
    row = dict(redemption_id=REDEMPTION_BASE + c.n * 20 + len(c.redemptions) + 1, coupon_id=coupon_id,
               account_id=c.account["account_id"], subscription_id=subscription_id, order_id=order_id,
               starts_on=starts_on, status="ACTIVE")
    b.emit(ts, "coupon_redemptions", "c", "redemption_id", None, row)
    c.redemptions.append(row)
    b.ctx.summary["coupon_redemptions"] += 1


def _mistaken_customers(b: _Block, block: int, count: int, n_total: int) -> None:
    """A few customers created by mistake: created, deleted, then the tombstone."""
    ctx = b.ctx
    for j in range(max(1, count // 500)):
        cid = CUSTOMER_BASE + n_total + block * 1000 + j + 1
        lo, hi = ctx.month_bounds(0 if ctx.months == 1 else 1)
        t = lo + (j + 2) * DAY
        c = dict(customer_id=cid, name=f"Duplicate entry {cid}", email=None, phone=None, address_line=None, city=None,
                 state=None, postal_code=None, country="US", customer_type="INDIVIDUAL", status="ACTIVE", created_at=t)
        b.emit(t, "customers", "c", "customer_id", None, c)
        b.emit(t + HOUR, "customers", "d", "customer_id", c, None)
        b.emit(t + HOUR + 1, "customers", "t", "customer_id", c, None)
        ctx.summary["deleted_customers"] += 1


# ---------------------------------------------------------------------------------------------
# Usage: vectorised, chunked


# Usage metrics: (metric, unit); each usage profile draws its events' metrics from these with
# USAGE_MIX[kind] (every metric a profile draws is priced by its plans, so none is unrated by design).
METRICS = [("data_mb", "MB"), ("voice_min", "MIN"), ("sms", "EVENT"), ("content_purchase", "EVENT"),
           ("wallet_topup", "AMOUNT"), ("card_payment", "AMOUNT"), ("device_seen", "EVENT"), ("seats", "SEAT"),
           ("sessions", "SESSION"), ("storage_gb", "GB")]
USAGE_MIX = np.array([
    [0.50, 0.24, 0.17, 0.04, 0.05, 0.00, 0.00, 0.00, 0.00, 0.00],  # consumer mobile
    [0.40, 0.25, 0.00, 0.00, 0.00, 0.20, 0.10, 0.05, 0.00, 0.00],  # business
    [0.60, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.25, 0.15],  # IoT / M2M
])
USAGE_RATE = np.array([50.0, 45.0, 60.0])  # events per subscription-month (× the default scale), per profile
TOPUP_AMOUNTS = np.array([5, 10, 20, 50, 100], dtype=np.int64)


def _usage_frame(rng, sub, lo, hi, n_events, events: int, kind) -> pl.DataFrame:
    """``events`` events spread over the subscriptions' active windows [lo, hi) with counts n_events;
    ``kind`` is each subscription's usage profile (USAGE_KIND)."""
    rep = np.repeat(np.arange(len(sub)), n_events)
    t = lo[rep] + (rng.random(events) * (hi[rep] - lo[rep])).astype(np.int64)
    t = t // 1000 * 1000  # millisecond precision, as mediation stamps events
    kind_e = kind[rep]
    cdf = np.cumsum(USAGE_MIX, axis=1)
    cdf[:, -1] = 1.0
    metric_i = (rng.random(events)[:, None] >= cdf[kind_e]).sum(axis=1)
    metric_i = np.minimum(metric_i, len(METRICS) - 1)
    data_kb = np.round(rng.lognormal(mean=np.where(kind_e == 2, 2.5, 3.2), sigma=1.3, size=events) * 1000).astype(np.int64)  # MB × 1000
    voice = np.round(rng.lognormal(mean=0.6, sigma=0.9, size=events) * 1000 / 100).astype(np.int64) * 100  # MIN × 1000, 0.1 min
    topup = TOPUP_AMOUNTS[rng.integers(0, len(TOPUP_AMOUNTS), size=events)] * 1000
    card = np.maximum(np.round(rng.lognormal(mean=4.0, sigma=1.0, size=events) * 100).astype(np.int64), 100) * 10  # cents
    seats = (3 + (sub[rep] * 7) % 23 + rng.integers(0, 3, size=events)) * 1000  # licensed seats reported, drifting
    sessions = (1 + rng.poisson(5.0, size=events)) * 1000  # peak concurrent sessions in the reporting interval
    storage = rng.integers(100, 2000, size=events)  # GB × 1000 added to the stored volume (a gauge increment)
    qty_milli = np.select(
        [metric_i == 0, metric_i == 1, metric_i == 4, metric_i == 5, metric_i == 7, metric_i == 8, metric_i == 9],
        [data_kb, np.maximum(voice, 100), topup, card, seats, sessions, storage], default=1000)
    zone_i = np.where(metric_i <= 2, rng.choice(3, size=events, p=[0.92, 0.06, 0.02]), 0)  # roaming: network usage only
    aux = rng.integers(0, 1 << 30, size=events)  # content price / device draws
    frame = pl.DataFrame({
        "subscription_id": sub[rep].astype(np.int64),
        "metric_i": metric_i.astype(np.int8),
        "q": qty_milli,
        "event_time": t,
        "zone_i": zone_i.astype(np.int8),
        "aux": aux,
    })
    hour = (pl.col("event_time") // HOUR) % 24
    m = pl.col("metric_i")
    band = pl.when(hour.is_between(8, 19)).then(pl.lit('{"time_band":"PEAK"}')).otherwise(pl.lit('{"time_band":"OFFPEAK"}'))
    price = pl.col("aux") % len(CONTENT_PRICES)
    content = (pl.lit('{"unit_price":"') + price.replace_strict(dict(enumerate(CONTENT_PRICES)), return_dtype=pl.String)
               + pl.lit('","category":"') + price.replace_strict({0: "RINGTONE", 1: "GAME", 2: "VIDEO", 3: "MUSIC"}, return_dtype=pl.String)
               + pl.lit('"}'))
    device = pl.lit('{"device_id":"dev-') + pl.col("subscription_id").cast(pl.String) + pl.lit("-") \
        + (pl.col("aux") % 6).cast(pl.String) + pl.lit('"}')
    return frame.select(
        "subscription_id",
        m.replace_strict({i: x for i, (x, _) in enumerate(METRICS)}, return_dtype=pl.String).alias("metric"),
        (pl.col("q") // 1000).cast(pl.String).add(pl.lit(".")).add((pl.col("q") % 1000).cast(pl.String).str.zfill(3))
        .cast(pl.Decimal(38, 10)).alias("quantity"),
        m.replace_strict({i: u for i, (_, u) in enumerate(METRICS)}, return_dtype=pl.String).alias("unit"),
        pl.col("event_time").cast(pl.Datetime("us")),
        pl.col("zone_i").replace_strict({0: "DOMESTIC", 1: "ROAMING_EU", 2: "ROAMING_WORLD"}, return_dtype=pl.String).alias("zone"),
        pl.when(m <= 2).then(band)
        .when(m == 3).then(content)
        .when(m == 4).then(pl.lit('{"channel":"MOBILE_MONEY"}'))
        .when(m == 5).then(pl.lit('{"channel":"CARD_PRESENT"}'))
        .when(m == 6).then(device)
        .otherwise(pl.lit(None, dtype=pl.String)).alias("attributes"),
    ).sort("event_time", "subscription_id", maintain_order=True)


def _write_usage(ctx: _Ctx, batch: int, frame: pl.DataFrame, counter: list[int], fmt: str, faults: bool) -> Path:
    """Assign ids/seq and write one usage file of batch ``batch``."""
    rng = ctx.rng(5, batch + 1, counter[0])
    frame = _with_event_ids(ctx, frame)
    if faults and frame.height >= 10:
        frame = _usage_faults(ctx, frame, rng)
    frame = frame.select(["op", "seq"] + ENTITIES["usage_records"].column_names)
    counter[0] += 1
    path = ctx.out / "usage" / "usage_records" / f"usage_records-{ctx.batch_date(batch).isoformat()}-{counter[0]:03d}.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        frame.write_parquet(path, compression="zstd", statistics=True)
    else:
        frame = frame.with_columns(pl.col("event_time").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")).cast(pl.String)
        if faults and frame.height >= 10:
            frame = _malformed_csv_rows(ctx, frame)
        frame.write_csv(path)
    ctx.files.append(path)
    ctx.summary["usage_rows"] += frame.height
    ctx.summary[f"usage_files_{fmt}"] += 1
    return path


def _with_event_ids(ctx: _Ctx, frame: pl.DataFrame) -> pl.DataFrame:
    """Inserts (``op`` I) numbered by the run's usage sequence, with event ids ``ev-<seed>-<seq>``."""
    n, seq0 = frame.height, ctx.usage_seq
    ctx.usage_seq += n
    return frame.with_columns(
        pl.lit("I").alias("op"),
        pl.int_range(seq0 + 1, seq0 + n + 1, dtype=pl.Int64).alias("seq"),
        (pl.lit(f"ev-{ctx.seed}-") + pl.int_range(seq0 + 1, seq0 + n + 1, dtype=pl.Int64).cast(pl.String).str.zfill(12)).alias("event_id"),
    )


def _usage_faults(ctx: _Ctx, frame: pl.DataFrame, rng) -> pl.DataFrame:
    """Events for unknown subscriptions and metrics (rating reports them unrated), and duplicate
    deliveries of some rows (same seq, same content)."""
    n, s = frame.height, ctx.summary
    k_sub, k_met = max(1, n // 500), max(1, n // 1000)
    pick = rng.choice(n, size=k_sub + k_met, replace=False)
    unk_sub = np.zeros(n, dtype=bool)
    unk_sub[pick[:k_sub]] = True
    unk_met = np.zeros(n, dtype=bool)
    unk_met[pick[k_sub:]] = True
    frame = frame.with_columns(
        pl.when(pl.Series(unk_sub)).then(pl.lit(UNKNOWN_SUB_BASE) + pl.col("seq") % 1000).otherwise(pl.col("subscription_id")).alias("subscription_id"),
        pl.when(pl.Series(unk_met)).then(pl.lit("video_min")).otherwise(pl.col("metric")).alias("metric"),
        pl.when(pl.Series(unk_met)).then(pl.lit("MIN")).otherwise(pl.col("unit")).alias("unit"),
    )
    s["usage_unknown_subscription"] += k_sub
    s["usage_unknown_metric"] += k_met
    k_dup = max(1, n // 2000)
    dup_idx = np.sort(rng.choice(n, size=k_dup, replace=False))
    order = np.concatenate([np.arange(n), dup_idx])
    s["usage_duplicate_rows"] += k_dup
    return frame[order[np.argsort(order, kind="stable")]]


def _malformed_csv_rows(ctx: _Ctx, text: pl.DataFrame) -> pl.DataFrame:
    """Three malformed rows in the middle of a CSV: a bad op, an unparsable quantity, a missing subscription id."""
    bad = text.head(3).with_columns(
        pl.Series("op", ["X", "I", "I"]),
        pl.Series("quantity", [text["quantity"][0], "abc", text["quantity"][2]]),
        pl.Series("subscription_id", [text["subscription_id"][0], text["subscription_id"][1], None], dtype=pl.String),
        (pl.col("event_id") + pl.lit("-bad")).alias("event_id"),
    )
    s = ctx.summary
    s["malformed_bad_op"] += 1
    s["malformed_unparsable_number"] += 1
    s["malformed_missing_required"] += 1
    s["malformed_records"] += 3
    return pl.concat([text.head(text.height // 2), bad, text.tail(text.height - text.height // 2)])


def _usage(ctx: _Ctx, segs_by_block: list[UsageSegments]):
    """Usage per month: Parquet chunks (domestic mediation) and a CSV (roaming partners); late events
    of month N are held back and delivered in month N+1's batch."""
    late: pl.DataFrame | None = None
    for k in range(ctx.months):
        mlo, mhi = ctx.month_bounds(k)
        counter = [0]
        held: list[pl.DataFrame] = []
        roaming: list[pl.DataFrame] = []
        if late is not None and late.height:
            _write_usage(ctx, k, late, counter, "csv", faults=False)
            ctx.summary["usage_late_rows"] += late.height
        for b, (sub, start, end, intensity, kind) in enumerate(segs_by_block):
            rng = ctx.rng(4, b, k)
            lo = np.maximum(start, mlo)
            hi = np.minimum(end, mhi)
            active = hi > lo
            sub_a, lo_a, hi_a, w, kind_a = sub[active], lo[active], hi[active], intensity[active], kind[active]
            frac = (hi_a - lo_a) / (mhi - mlo)
            counts = rng.poisson(ctx.events_per_sub_month * USAGE_RATE[kind_a] / USAGE_RATE[0] * w * frac)
            # chunks of at most chunk_rows events (whole subscriptions per chunk)
            csum = np.concatenate([[0], np.cumsum(counts)])
            prev = 0
            while prev < len(counts):
                cb = int(np.searchsorted(csum, csum[prev] + ctx.chunk_rows, side="right")) - 1
                cb = min(max(cb, prev + 1), len(counts))
                sl = slice(prev, cb)
                prev = cb
                n_ev = int(counts[sl].sum())
                if n_ev == 0:
                    continue
                frame = _usage_frame(rng, sub_a[sl], lo_a[sl], hi_a[sl], counts[sl], n_ev, kind_a[sl])
                if k < ctx.months - 1:  # ~1% of the month's events arrive a batch late
                    hold = rng.random(frame.height) < 0.01
                    held.append(frame.filter(pl.Series(hold)))
                    frame = frame.filter(~pl.Series(hold))
                roam = frame.get_column("zone") != "DOMESTIC"
                roaming.append(frame.filter(roam))
                domestic = frame.filter(~roam)
                for off in range(0, domestic.height, ctx.chunk_rows):  # a heavy line may exceed a chunk alone
                    _write_usage(ctx, k, domestic.slice(off, ctx.chunk_rows), counter, "parquet", faults=True)
                while sum(r.height for r in roaming) >= ctx.chunk_rows:
                    pending = pl.concat(roaming)
                    _write_usage(ctx, k, pending.head(ctx.chunk_rows), counter, "csv", faults=True)
                    roaming = [pending.slice(ctx.chunk_rows)]
        if roaming and sum(r.height for r in roaming):
            _write_usage(ctx, k, pl.concat(roaming), counter, "csv", faults=True)
        late = pl.concat(held) if held else None


# ---------------------------------------------------------------------------------------------


def generate_landing_zone(out: Path, customers: int = 2000, start_month: str = "2025-01", months: int = 3,
                          seed: int = 42, usage_events: int | None = None, *, chunk_rows: int = 1_000_000,
                          block_customers: int = 50_000, redeliver: bool = True, established: float = 0.0) -> dict:
    """Write a sample landing zone under ``out``; return summary counts.

    ``usage_events``: approximate total number of usage events (default ≈ 50 per consumer mobile
    subscription-month). ``chunk_rows``: at most this many events per usage file.
    ``block_customers``: customers simulated per block (bounds memory). ``established``: the share of
    customers already with the operator at the start (they join on the first day of the first month, so every
    month bills about the same base; the benchmark's steady months); the rest join over the months as usual.
    """
    out = Path(out)
    y, m = (int(x) for x in start_month.split("-"))
    ctx = _Ctx(out=out, start=date(y, m, 1), months=months, seed=seed, chunk_rows=chunk_rows, events_per_sub_month=float(USAGE_RATE[0]), established=established)
    for system in {e.system for e in ENTITIES.values()}:
        shutil.rmtree(out / system, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    _write_catalog(ctx)
    segs_by_block = _write_customers(ctx, customers, block_customers)
    if usage_events is not None:
        ctx.events_per_sub_month = _events_per_sub_month(segs_by_block, usage_events)
    _usage(ctx, segs_by_block)
    if redeliver and months >= 1:
        _redeliver_first_orders(ctx)
    summary = dict(sorted(ctx.summary.items()))
    summary["files"] = len(ctx.files)
    return summary


def _write_catalog(ctx: _Ctx) -> None:
    """The catalog snapshot and its monthly changes, one file per entity and batch."""
    for batch, chs in sorted(_catalog(ctx).items()):
        by_entity = defaultdict(list)
        for ch in chs:
            by_entity[ch.entity].append(ch)
        for entity in sorted(by_entity):
            _write_debezium(ctx, batch, 0, entity, by_entity[entity], faults=False)


def _write_customers(ctx: _Ctx, customers: int, block_customers: int) -> list[UsageSegments]:
    """Simulate the customers block by block, write their changes; return each block's usage segments."""
    segs_by_block = []
    n_blocks = ctx.n_blocks = max(1, -(-customers // block_customers))
    for b in range(n_blocks):
        first = b * block_customers
        count = min(block_customers, customers - first)
        changes, segs = _simulate_block(ctx, b, first, count, customers)
        for (k, entity) in sorted(changes):
            _write_debezium(ctx, k, b, entity, changes[(k, entity)], faults=True)
        segs_by_block.append(_usage_segments(ctx, b, segs))
    return segs_by_block


def _usage_segments(ctx: _Ctx, block: int, segs: list[_Seg]) -> UsageSegments:
    """Arrays of the block's subscriptions that generate usage, with a heavy-tailed intensity (mean ≈ 1)."""
    range_hi = ctx.month_bounds(ctx.months - 1)[1]
    mob = [s for s in segs if s.product_id in USAGE_KIND]
    irng = ctx.rng(6, block)
    s = ctx.summary
    s["mobile_subscriptions"] += sum(1 for x in mob if x.product_id in MOBILE)
    s["business_subscriptions"] += sum(1 for x in mob if x.product_id == BUSINESS)
    s["iot_subscriptions"] += sum(1 for x in mob if x.product_id == IOT)
    s["subscriptions"] += len(segs)
    return (
        np.array([x.sub_id for x in mob], dtype=np.int64),
        np.array([x.start for x in mob], dtype=np.int64),
        np.array([x.end if x.end is not None else range_hi for x in mob], dtype=np.int64),
        irng.lognormal(mean=-0.5, sigma=1.0, size=len(mob)),
        np.array([USAGE_KIND[x.product_id] for x in mob], dtype=np.int64),
    )


def _events_per_sub_month(segs_by_block: list[UsageSegments], usage_events: int) -> float:
    """The consumer events per subscription-month that give about ``usage_events`` events in all."""
    sub_months = 0.0
    for sub, start, end, _, kind in segs_by_block:
        sub_months += float(((end - start) / (30.4 * DAY) * USAGE_RATE[kind] / USAGE_RATE[0]).sum())  # float ok: event volume scaling
    return max(0.01, usage_events / max(sub_months, 1.0))


def _redeliver_first_orders(ctx: _Ctx) -> None:
    """The orders extract of the first month delivered twice (identical copy, second name)."""
    src = sorted((ctx.out / "orders" / "orders").glob(f"orders-{ctx.batch_date(0).isoformat()}*.jsonl"))
    if src:
        dst = src[0].with_name(src[0].stem + "-redelivery.jsonl")
        shutil.copyfile(src[0], dst)
        _deliver_later(src[0], dst)
        ctx.files.append(dst)
        ctx.summary["redelivered_files"] += 1


def _deliver_later(original: Path, copy: Path, seconds: int = REDELIVERY_DELAY_S) -> None:
    """Give the redelivered copy a modification time ``seconds`` after its original's: the landing
    zone is ingested in modification-time order, so the original is loaded and the copy is the
    DUPLICATE, even on filesystems with coarse timestamps (FAT: 2 s)."""
    later = original.stat().st_mtime_ns + seconds * 1_000_000_000
    os.utime(copy, ns=(later, later))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sources.generator", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="landing root to write")
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--start", default="2025-01", help="first month, YYYY-MM")
    ap.add_argument("--months", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--usage-events", type=int, default=None, help="approximate total usage events")
    ap.add_argument("--chunk-rows", type=int, default=1_000_000, help="max events per usage file")
    ap.add_argument("--established", type=float, default=0.0,
                    help="share of customers already with the operator at the start (they join on its first day)")
    args = ap.parse_args(argv)
    summary = generate_landing_zone(args.out, args.customers, args.start, args.months, args.seed, args.usage_events,
                                    chunk_rows=args.chunk_rows, established=args.established)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
