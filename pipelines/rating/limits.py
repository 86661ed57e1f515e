"""What rating accepts: every range rule of the plan format and of usage values, in one place.

docs/rating.md ("Limits") lists them. The bounds keep the exact arithmetic inside its types: an
event's quantity (< 10^12) times a unit price (< 10^6) fits DECIMAL(38,20), the type of the
product of two DECIMAL(38,10); a line amount must stay below :data:`LINE_AMOUNT_LIMIT` (10^12), so an invoice's
lines, discounts and tax fit DECIMAL(18,4). Sums of many events are not bounded by the per-event rules: a line whose
arithmetic leaves its types is caught where it is computed (engine.py) and its events are unrated
(:data:`AMOUNT_OUT_OF_RANGE`, :data:`QUANTITY_OUT_OF_RANGE`).

``catalog.py`` turns the price-version rules into ``config_error`` (the version's events unrated
as ``charge misconfigured: ...``); ``scan.py`` turns the per-event rules into unrated reasons.
Every function here returns SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.money import MONEY

# The exact product of two MONEY values; it also holds every bounded value below 10^18 exactly
# to 20 decimals (the check that a written decimal has at most 10 places).
PRODUCT = "DECIMAL(38,20)"


@dataclass(frozen=True)
class Bound:
    """``lo <= x < hi`` (``<= hi`` when ``closed``), optionally whole numbers only."""

    lo: int
    hi: int
    text: str  # the rule as a reason states it
    closed: bool = False
    whole: bool = False


# A rated line's amount: |amount| < 10^12, so that an invoice's lines with their discounts and tax
# (at most 100 % each) stay far inside the invoice money type, DECIMAL(18,4) (< 10^14).
LINE_AMOUNT_LIMIT = 10**12

QUANTITY = Bound(0, 10**12, ">= 0 and < 10^12")  # an event's quantity
PRICE = Bound(0, 10**6, ">= 0 and < 10^6")  # unit prices: unit_price, tier unit amounts, matrix cells, dynamic prices
RATE = Bound(0, 1, "between 0 and 1", closed=True)  # PERCENTAGE rate, GRADUATED_PERCENTAGE tier rates
AMOUNT = Bound(0, LINE_AMOUNT_LIMIT, ">= 0 and < 10^12")  # flat amounts, fees, per-event min/max, commitments
PLAN_QUANTITY = Bound(0, 10**18, ">= 0 and < 10^18")  # included_quantity, free_units, package_size, tier up_to
COUNT = Bound(0, 10**12, "a whole number >= 0 and < 10^12", whole=True)  # free_events
PRORATION_DAYS = Bound(1, 366, "a whole number between 1 and 366", closed=True, whole=True)

# properties keys holding a decimal, and their bounds; the other keys documented in docs/rating.md
DECIMAL_PROPERTIES = {
    "package_size": PLAN_QUANTITY, "free_units": PLAN_QUANTITY, "rate": RATE, "fixed_fee": AMOUNT,
    "per_event_min": AMOUNT, "per_event_max": AMOUNT, "free_events": COUNT, "default_unit_price": PRICE,
    "minimum_amount": AMOUNT, "maximum_amount": AMOUNT,
}
PROPERTIES = (*DECIMAL_PROPERTIES, "dimensions", "time_bands", "prices", "price_attribute", "unique_attribute")
TIER_KEYS = ("up_to", "unit_amount", "flat_amount", "rate")

QUANTITY_OUT_OF_RANGE = "quantity out of range"
AMOUNT_OUT_OF_RANGE = "amount out of range"


def rounded_line_amount(x: str, minor_unit: str = "minor_unit") -> str:
    """SQL: a line's ``amount``: the precise amount ``x`` rounded to the currency's minor unit
    (``round_minor``, domain/money.py, with the currency's ``minor_unit`` resolved once per
    currency), NULL (the line is out of range) unless ``|x| <`` :data:`LINE_AMOUNT_LIMIT`. ``x`` is a
    DECIMAL(38,10): an amount below 10^8 is rounded as DECIMAL(18,10) (64-bit; the same value, so the
    same result, at a thirtieth of the cost of rounding a 128-bit decimal), a larger one as it is."""
    return (f"CASE WHEN abs({x}) < {LINE_AMOUNT_LIMIT} THEN coalesce(round_minor(TRY_CAST({x} AS DECIMAL(18,10)), {minor_unit}), "
            f"round_minor({x}, {minor_unit})) END")


def within(x: str, b: Bound) -> str:
    """SQL: the decimal ``x`` satisfies ``b`` (NULL when ``x`` is)."""
    hi = f"{x} <= {b.hi}" if b.closed else f"{x} < {b.hi}"
    whole = f" AND {x} = trunc({x})" if b.whole else ""
    return f"({x} >= {b.lo} AND {hi}{whole})"


def decimal_error(label: str, text: str, b: Bound) -> str:
    """SQL: why the text ``text`` (a JSON value) is not an exact decimal within ``b``, NULL if it is
    or is NULL. ``label`` is SQL text naming it (a literal or an expression)."""
    x = f"TRY_CAST({text} AS {MONEY})"
    return (f"CASE WHEN {text} IS NULL THEN NULL "
            f"WHEN {x} IS NULL THEN {label} || ' is not a decimal' "
            f"WHEN NOT {within(x, b)} THEN {label} || ' must be {b.text}' "
            f"WHEN TRY_CAST({text} AS {PRODUCT}) <> {x} THEN {label} || ' has more than 10 decimal places' END")


def value_error(label: str, x: str, b: Bound) -> str:
    """SQL: why the typed value ``x`` is not within ``b``, NULL if it is or is NULL."""
    return f"CASE WHEN NOT {within(x, b)} THEN {label} || ' must be {b.text}' END"


def name_error(label: str, name: str) -> str:
    """SQL: why ``name`` cannot name an event attribute (it becomes a JSON path), NULL if it can."""
    return (f"CASE WHEN {name} = '' OR contains({name}, '\"') OR contains({name}, '\\') "
            f"THEN {label} || ' must be a non-empty name without \" or \\' END")


def unknown_key_error(label: str, obj: str, keys: tuple[str, ...]) -> str:
    """SQL: names the first key of the JSON object ``obj`` not in ``keys``, NULL if none."""
    known = ", ".join(f"'{k}'" for k in keys)
    return (f"{label} || ' has unknown key ' || "
            f"list_filter(json_keys({obj}), k -> NOT list_contains([{known}], k))[1]")


def event_price_ok(price: str, text: str) -> str:
    """SQL: a dynamic price read from the event (``price`` = ``TRY_CAST(text AS DECIMAL(38,10))``) is
    exact (at most 10 decimal places); its range is checked apart (:func:`within` ``PRICE``)."""
    return f"TRY_CAST({text} AS {PRODUCT}) = {price}"
