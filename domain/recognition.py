"""Ratable recognition with cumulative rounding (DESIGN.md "Revenue").

An obligation recognized by day over ``total_days`` has recognized, after ``elapsed_days``,
``round(obligation x elapsed / total)`` in the currency's minor unit, half away from zero, with
``elapsed`` clamped to ``[0, total_days]``; a month recognizes the difference between the
cumulative amounts at its end and at the previous month's end. So every schedule sums exactly to
its obligation, and recognizing day by day then summing gives the monthly amounts.

SQL macro (installed by :func:`install_recognition_macros`):
``recognized_through(obligation, elapsed_days, total_days, currency)`` as DECIMAL(18,4).
:func:`recognized_through` is its Python twin.
"""

from __future__ import annotations

from decimal import Decimal

import duckdb

from domain.money import AMOUNT, div_round, minor_unit


def recognized_through(obligation: Decimal, elapsed_days: int, total_days: int, currency: str) -> Decimal:
    """Cumulative amount recognized after ``elapsed_days`` of ``total_days``."""
    elapsed = min(max(elapsed_days, 0), total_days)
    return div_round(Decimal(obligation) * elapsed, total_days, minor_unit(currency))


_MACROS = f"""
CREATE OR REPLACE TEMP MACRO recognized_through(obligation, elapsed_days, total_days, currency) AS
    CAST(div_round(obligation * least(greatest(elapsed_days, 0), total_days), total_days, minor_unit(currency)) AS {AMOUNT});
"""


def install_recognition_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the recognition macros on ``con`` (idempotent)."""
    con.execute(_MACROS)
