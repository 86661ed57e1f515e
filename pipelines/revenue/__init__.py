"""Revenue recognition engine (no Dagster imports): schedules and deferred balances."""

from pipelines.revenue.engine import deferred_balances, recognize

__all__ = ["recognize", "deferred_balances"]
