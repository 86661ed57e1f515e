"""Exact money arithmetic (DESIGN.md, "Money").

Amounts are DECIMAL end to end. DuckDB's ``round`` on DECIMAL already rounds half away from
zero, but ``DECIMAL / x`` yields DOUBLE, so every division goes through ``div_round``, which
works on the unscaled HUGEINT value and never leaves exact arithmetic.

SQL macros (installed on a connection by :func:`install_money_macros`):

* ``minor_unit(currency)``: ISO 4217 exponent (JPY 0, KWD 3, most 2).
* ``div_round(n, d, s)``: ``n / d`` rounded half away from zero to ``s`` decimals (0..10),
  exact, as DECIMAL(38,10). ``n`` is a DECIMAL with at most 10 decimals, ``d`` a positive integer.
* ``round_minor(x, mu)``: ``x`` (a DECIMAL) rounded half away from zero to ``mu`` decimals (a
  minor unit: 0, 2, 3 or 4), as DECIMAL(18,4). DuckDB's ``round`` on DECIMAL rounds half away
  from zero; each scale is its own CASE branch cast on its own (DuckDB would merge branches of
  different DECIMAL scales to scale 0). Engines that round millions of lines resolve ``mu`` once
  per currency and call this directly.
* ``round_money(x, currency)``: ``round_minor(x, minor_unit(currency))``.
* ``prorate(amount, days, period_days)``: ``amount * days / period_days`` kept to 10 decimals.
* ``prorated(amount, days, period_days, whole)``: the proration rule of a charge over part of a
  period (DESIGN.md "Proration"): the whole ``amount`` when ``whole`` (the segment is the whole
  period, or the charge is not prorated), else ``prorate(amount, least(days, period_days),
  period_days)`` (a fixed denominator never charges more than the full amount).

Python twins (:func:`minor_unit`, :func:`div_round`, :func:`round_money`, :func:`prorate`,
:func:`prorated`) state the same rules for tests and small computations.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import duckdb

MONEY = "DECIMAL(38,10)"  # precise amounts and unit prices: up to 10 decimal places
AMOUNT = "DECIMAL(18,4)"  # rounded amounts: any ISO 4217 minor unit fits
RATE = "DECIMAL(9,6)"  # percentages as fractions (0.072500 = 7.25 %)

# ISO 4217 currencies whose minor unit is not 2 decimals.
_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}


def minor_unit(currency: str) -> int:
    """ISO 4217 exponent of ``currency`` (2 unless listed otherwise)."""
    return _EXPONENTS.get(currency.upper(), 2)


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round half away from zero to the currency's minor unit."""
    return amount.quantize(Decimal(1).scaleb(-minor_unit(currency)), rounding=ROUND_HALF_UP)


def div_round(numerator: Decimal, denominator: int, scale: int) -> Decimal:
    """``numerator / denominator`` rounded half away from zero to ``scale`` decimals, exactly."""
    from fractions import Fraction

    q = Fraction(numerator) / denominator * (10**scale)
    magnitude = (abs(q.numerator) * 2 + q.denominator) // (2 * q.denominator)
    sign = -1 if q < 0 else 1
    return Decimal(sign * magnitude).scaleb(-scale)


def prorate(amount: Decimal, days: int, period_days: int) -> Decimal:
    """``amount * days / period_days`` rounded half away from zero to 10 decimals."""
    return div_round(Decimal(amount) * days, period_days, 10)


def prorated(amount: Decimal, days: int, period_days: int, whole: bool) -> Decimal:
    """A charge over ``days`` of a period: all of it when ``whole``, else prorated (never above it)."""
    return Decimal(amount) if whole else prorate(amount, min(days, period_days), period_days)


def _exponent_case() -> str:
    """SQL: the exponent of currency ``c``, one CASE branch per listed currency (a constant comparison each: an IN
    list this long is planned as a join per call, about twice the cost)."""
    whens = " ".join(f"WHEN '{cur}' THEN {exp}" for cur, exp in sorted(_EXPONENTS.items()))
    return f"CASE upper(c) {whens} ELSE 2 END"


_MACROS = f"""
CREATE OR REPLACE TEMP MACRO minor_unit(c) AS ({_exponent_case()});
CREATE OR REPLACE TEMP MACRO _unscaled(n) AS CAST(CAST(n AS {MONEY}) * 10000000000 AS HUGEINT);
CREATE OR REPLACE TEMP MACRO _pow10(k) AS CAST(pow(10, k) AS HUGEINT);
CREATE OR REPLACE TEMP MACRO div_round(n, d, s) AS
    CAST(
        sign(_unscaled(n)) * (
            (abs(_unscaled(n)) * 2 + CAST(d AS HUGEINT) * _pow10(10 - s))
            // (2 * CAST(d AS HUGEINT) * _pow10(10 - s))
        ) AS DECIMAL(38,0)
    ) * CAST(('1e-' || CAST(s AS VARCHAR)) AS {MONEY});
CREATE OR REPLACE TEMP MACRO round_minor(x, mu) AS CASE mu
    WHEN 2 THEN CAST(round(x, 2) AS {AMOUNT}) WHEN 0 THEN CAST(round(x, 0) AS {AMOUNT})
    WHEN 3 THEN CAST(round(x, 3) AS {AMOUNT}) ELSE CAST(round(x, 4) AS {AMOUNT}) END;
CREATE OR REPLACE TEMP MACRO round_money(x, c) AS round_minor(x, minor_unit(c));
CREATE OR REPLACE TEMP MACRO prorate(amount, days, period_days) AS div_round(CAST(amount AS {MONEY}) * days, period_days, 10);
CREATE OR REPLACE TEMP MACRO prorated(amount, days, period_days, whole) AS
    CASE WHEN whole THEN CAST(amount AS {MONEY}) ELSE prorate(amount, least(days, period_days), period_days) END;
"""


def install_money_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the money macros on ``con`` (idempotent)."""
    con.execute(_MACROS)
