"""The domain rules every layer shares (DESIGN.md "Domain rules"): the bottom layer.

``sources/``, ``warehouse/`` and ``pipelines/`` may import it; it imports nothing of theirs and
no Dagster. Each rule is one SQL macro (installed on a connection by :func:`install_macros`)
with its Python twin, and ``tests/test_domain.py`` asserts twin = SQL on a table of cases:

* :mod:`domain.money`: types, minor units, rounding half away from zero, exact division, proration;
* :mod:`domain.periods`: billing months, account periods, the open end;
* :mod:`domain.tax`: which tax rate applies to a line;
* :mod:`domain.recognition`: ratable recognition with cumulative rounding;
* :mod:`domain.sql`: SQL conventions (live rows, literals).
"""

import duckdb

from domain.money import install_money_macros
from domain.periods import install_period_macros
from domain.recognition import install_recognition_macros
from domain.tax import install_tax_macros


def install_macros(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Install every domain SQL macro on ``con`` and return it.

    The macros are TEMP: they live with the connection, never in the database file, so a
    warehouse holds its tables only (and exports and imports as DuckDB expects)."""
    install_money_macros(con)
    install_period_macros(con)
    install_tax_macros(con)
    install_recognition_macros(con)
    return con
