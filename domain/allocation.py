"""Allocation of an amount over weights by largest remainder (DESIGN.md "Revenue": allocations sum exactly).

A group's ``total`` (in the currency's minor unit) is split in proportion to non-negative ``weights``
(standalone selling prices): each member gets the floor of ``total x weight / Σ weights`` in minor
units, then the units left over go one each to the largest remainders (ties: the member's order key).
The shares sum exactly to the total; a negative total is split as its absolute value, negated. When
every weight is 0 the members weigh the same.

The rule works on a whole group, so its SQL form is a SELECT over a relation (window functions over
the group), not a scalar macro: :func:`largest_remainder_sql`; :func:`largest_remainder` is its Python
twin (tests/test_domain.py asserts they agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

from domain.money import AMOUNT, MONEY, minor_unit


def largest_remainder(total: Decimal, weights: Sequence[Decimal], currency: str) -> list[Decimal]:
    """``total`` split over ``weights`` (members in tie order), in minor units, summing exactly to it."""
    scale = minor_unit(currency)
    units = int(abs(Fraction(Decimal(total)) * 10**scale))
    w = [Fraction(Decimal(x)) for x in weights]
    if sum(w) == 0:
        w = [Fraction(1)] * len(w)
    exact = [units * x / sum(w) for x in w]
    floors = [int(e) for e in exact]
    order = sorted(range(len(w)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[: units - sum(floors)]:
        floors[i] += 1
    sign = -1 if total < 0 else 1
    return [Decimal(sign * f).scaleb(-scale) for f in floors]


def largest_remainder_sql(rows: str, group: str, weight: str, total: str, currency: str, tie: str,
                          allocated: str = "allocated") -> str:
    """SELECT of ``rows`` with column ``allocated``: the member's share of its group's ``total``.

    ``group``: the partition expression(s); ``weight``: a member's weight (>= 0); ``total`` and
    ``currency``: the group's (the same on each of its rows); ``tie``: the order key among equal remainders.
    """
    over = f"PARTITION BY {group}"
    return f"""
    SELECT * EXCLUDE (_lr_sign, _lr_scale, _lr_units, _lr_raw, _lr_raw_sum, _lr_count, _lr_weight, _lr_weights,
                      _lr_floor, _lr_remainder, _lr_rank, _lr_left),
           CAST(CAST(_lr_sign * (_lr_floor + CASE WHEN _lr_rank <= _lr_left THEN 1 ELSE 0 END) AS DECIMAL(38,0))
                * CAST(('1e-' || CAST(_lr_scale AS VARCHAR)) AS {MONEY}) AS {AMOUNT}) AS {allocated}
    FROM (
        SELECT *, row_number() OVER ({over} ORDER BY _lr_remainder DESC, {tie}) AS _lr_rank,
               _lr_units - sum(_lr_floor) OVER ({over}) AS _lr_left
        FROM (
            SELECT *, _lr_units * _lr_weight // _lr_weights AS _lr_floor,
                   _lr_units * _lr_weight % _lr_weights AS _lr_remainder
            FROM (
                SELECT *, CASE WHEN _lr_raw_sum = 0 THEN 1 ELSE _lr_raw END AS _lr_weight,
                       CASE WHEN _lr_raw_sum = 0 THEN _lr_count ELSE _lr_raw_sum END AS _lr_weights
                FROM (
                    SELECT *, sum(_lr_raw) OVER ({over}) AS _lr_raw_sum, count(*) OVER ({over}) AS _lr_count
                    FROM (
                        SELECT *, CASE WHEN {total} < 0 THEN -1 ELSE 1 END AS _lr_sign,
                               minor_unit({currency}) AS _lr_scale,
                               CAST(abs(CAST({total} AS {AMOUNT})) * CAST(pow(10, minor_unit({currency})) AS BIGINT)
                                    AS HUGEINT) AS _lr_units,
                               CAST(CAST({weight} AS {MONEY}) * 10000000000 AS HUGEINT) AS _lr_raw
                        FROM {rows}
                    )
                )
            )
        )
    )"""
