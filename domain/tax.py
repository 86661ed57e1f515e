"""Which tax rate applies to a line (DESIGN.md "Money"; docs/billing.md "Tax").

A line is taxed at the rate of the customer's jurisdiction in force on its tax point: a rate of
the customer's country whose ``state`` is the customer's state (state level) or empty (country
level), with ``effective_from <= tax_point < effective_to`` (NULL ``effective_to``: open). The
state-level rate wins over the country-level one; among several, the latest ``effective_from``,
then the highest ``tax_rate_id``. A jurisdiction is ``country`` or ``country-state`` (``US-CA``).

SQL macros (installed by :func:`install_tax_macros`):

* ``tax_jurisdiction(country, state)``: ``'US-CA'``, ``'DE'``;
* ``tax_rate_applies(rate_country, rate_state, effective_from, effective_to, country, state,
  tax_point)``: the rate row may tax a line of that customer on that day;
* ``tax_rate_precedence(rate_state, effective_from, tax_rate_id)``: a sort key; among the rates
  that apply, the one with the largest key is used (``ORDER BY ... DESC``).

:func:`select_tax_rate` is the Python twin of the whole rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb


def _state(state: str | None) -> str | None:
    return (state or "").strip() or None


@dataclass(frozen=True)
class TaxRate:
    tax_rate_id: int
    country: str
    state: str | None
    effective_from: date
    effective_to: date | None


def tax_jurisdiction(country: str, state: str | None) -> str:
    """``country`` or ``country-state``."""
    return country + (f"-{_state(state)}" if _state(state) else "")


def tax_rate_applies(rate: TaxRate, country: str, state: str | None, tax_point: date) -> bool:
    """Whether ``rate`` may tax a line of a customer in (country, state) with that tax point."""
    return (rate.country == country and (_state(rate.state) is None or _state(rate.state) == _state(state))
            and rate.effective_from <= tax_point and (rate.effective_to is None or tax_point < rate.effective_to))


def select_tax_rate(rates: list[TaxRate], country: str, state: str | None, tax_point: date) -> TaxRate | None:
    """The rate that taxes the line, or None (no rate in force for the jurisdiction)."""
    applying = [r for r in rates if tax_rate_applies(r, country, state, tax_point)]
    return max(applying, key=lambda r: (_state(r.state) is not None, r.effective_from, r.tax_rate_id), default=None)


_MACROS = """
CREATE OR REPLACE TEMP MACRO tax_jurisdiction(country, state) AS country || coalesce('-' || nullif(trim(state), ''), '');
CREATE OR REPLACE TEMP MACRO tax_rate_applies(rate_country, rate_state, effective_from, effective_to, country, state, tax_point) AS
    rate_country = country
    AND (nullif(trim(rate_state), '') IS NULL OR trim(rate_state) = nullif(trim(state), ''))
    AND effective_from <= tax_point AND (effective_to IS NULL OR tax_point < effective_to);
CREATE OR REPLACE TEMP MACRO tax_rate_precedence(rate_state, effective_from, tax_rate_id) AS
    {'state_level': nullif(trim(rate_state), '') IS NOT NULL, 'effective_from': effective_from, 'tax_rate_id': tax_rate_id};
"""


def install_tax_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tax macros on ``con`` (idempotent)."""
    con.execute(_MACROS)
