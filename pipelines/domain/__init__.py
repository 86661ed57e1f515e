"""Domain rules shared by every engine: money and billing periods. No Dagster imports."""

import duckdb

from pipelines.domain.money import install_money_macros
from pipelines.domain.periods import install_period_macros


def install_macros(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Install every domain SQL macro on ``con`` and return it."""
    install_money_macros(con)
    install_period_macros(con)
    return con
