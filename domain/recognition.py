"""Recognition arithmetic with cumulative rounding (DESIGN.md "Revenue").

An obligation recognized by day over ``total_days`` has recognized, after ``elapsed_days``,
``round(obligation x elapsed / total)`` in the currency's minor unit, half away from zero, with
``elapsed`` clamped to ``[0, total_days]``; a month recognizes the difference between the
cumulative amounts at its end and at the previous month's end. So every schedule sums exactly to
its obligation, and recognizing day by day then summing gives the monthly amounts.

An obligation recognized by consumption does the same with quantities: after ``part`` of ``whole``
was consumed (usage quantity by event time), ``round(obligation x part / whole)``, ``part`` clamped
to ``[0, whole]``.

SQL macros (installed by :func:`install_recognition_macros`), both DECIMAL(18,4):

* ``recognized_through(obligation, elapsed_days, total_days, currency)``;
* ``recognized_share(obligation, part, whole, currency)``: ``part`` and ``whole`` DECIMAL quantities
  (up to 10 decimals, ``whole`` > 0), exact (HUGEINT arithmetic, never DOUBLE).

:func:`recognized_through` and :func:`recognized_share` are their Python twins.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import duckdb

from domain.money import AMOUNT, MONEY, div_round, minor_unit


def recognized_through(obligation: Decimal, elapsed_days: int, total_days: int, currency: str) -> Decimal:
    """Cumulative amount recognized after ``elapsed_days`` of ``total_days``."""
    elapsed = min(max(elapsed_days, 0), total_days)
    return div_round(Decimal(obligation) * elapsed, total_days, minor_unit(currency))


def recognized_share(obligation: Decimal, part: Decimal, whole: Decimal, currency: str) -> Decimal:
    """Cumulative amount recognized once ``part`` of ``whole`` (> 0) was consumed."""
    share = Fraction(min(max(Decimal(part), Decimal(0)), Decimal(whole))) / Fraction(Decimal(whole))
    q = Fraction(Decimal(obligation)) * share * 10 ** minor_unit(currency)
    units = (abs(q.numerator) * 2 + q.denominator) // (2 * q.denominator)
    return Decimal(-units if q < 0 else units).scaleb(-minor_unit(currency))


_MACROS = f"""
CREATE OR REPLACE TEMP MACRO recognized_through(obligation, elapsed_days, total_days, currency) AS
    CAST(div_round(obligation * least(greatest(elapsed_days, 0), total_days), total_days, minor_unit(currency)) AS {AMOUNT});
CREATE OR REPLACE TEMP MACRO _share_units(n, d) AS sign(n) * ((abs(n) * 2 + d) // (2 * d));
CREATE OR REPLACE TEMP MACRO recognized_share(obligation, part, whole, currency) AS
    CAST(CAST(_share_units(
        CAST(CAST(obligation AS {AMOUNT}) * 10000 AS HUGEINT)
          * CAST(CAST(least(greatest(part, 0), whole) AS {MONEY}) * 10000000000 AS HUGEINT) * _pow10(minor_unit(currency)),
        CAST(CAST(whole AS {MONEY}) * 10000000000 AS HUGEINT) * 10000) AS DECIMAL(38,0))
      * CAST(('1e-' || CAST(minor_unit(currency) AS VARCHAR)) AS {MONEY}) AS {AMOUNT});
"""


def install_recognition_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the recognition macros on ``con`` (idempotent)."""
    con.execute(_MACROS)
