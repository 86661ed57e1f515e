"""Dagster resources: where the warehouse and the landing zone live.

Both paths are configuration, read from the environment when the definitions load:
``TALLY_WAREHOUSE_PATH`` (default ``data/warehouse.duckdb``) and ``TALLY_LANDING_DIR``
(default ``data/landing``). All SQL goes through :class:`Warehouse`, the one place that
opens DuckDB, so the engine behind it can be swapped without rewriting assets.

The warehouse has one writer at a time: as a run starts, :meth:`Warehouse.setup_for_execution`
takes the run's turn on the writer pool (:func:`pipelines.recover.take_turn`: record the worker,
recover runs whose worker died, wait a bounded time for earlier live runs).
"""


from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from pipelines.recover import take_turn
from warehouse.connection import connect, default_landing_dir, default_warehouse_path
from warehouse.migrations import migrate
from warehouse.snapshot import publish_snapshot


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file (one writer at a time: assets that write are in the duckdb_writer pool)."""

    path: str

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """As a run starts: take its turn on the writer pool (bounded wait; dead holders recovered)."""
        if context.instance is not None and context.run_id:
            take_turn(context.instance, context.run_id, context.log)

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse, migrated to the contract's version, with the domain macros installed."""
        with connect(Path(self.path)) as con:
            migrate(con)
            yield con

    def publish_snapshot(self) -> Path:
        return publish_snapshot(Path(self.path))


class LandingZone(dg.ConfigurableResource):
    """The folder the operational systems' CDC extracts land in (<system>/<entity>/<file>)."""

    path: str


def default_resources() -> dict:
    return {
        "warehouse": Warehouse(path=str(default_warehouse_path())),
        "landing": LandingZone(path=str(default_landing_dir())),
    }
