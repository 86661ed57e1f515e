"""Dagster resources: where the warehouse and the landing zone live.

Both paths are configuration, read from the environment when the definitions load:
``TALLY_WAREHOUSE_PATH`` (default ``data/warehouse.duckdb``) and ``TALLY_LANDING_DIR``
(default ``data/landing``). All SQL goes through :class:`Warehouse`, the one place that
opens DuckDB, so the engine behind it can be swapped without rewriting assets.

The warehouse has one writer at a time: as a run starts, :meth:`Warehouse.setup_for_execution`
takes the run's turn on the writer pool (:func:`pipelines.recover.take_turn`: record the worker,
recover runs whose worker died, wait a bounded time for earlier live runs). When another process
holds the file's lock longer than ``$TALLY_LOCK_WAIT_SECONDS`` (:class:`WarehouseLocked`), the step
logs so in the run's log and asks Dagster to retry it later with backoff (:data:`LOCKED_RETRIES`); any other
failure is not retried (a refusal or a bad input fails the run at once, with its reason).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from pipelines.recover import take_turn
from warehouse.connection import WarehouseLocked, connect, default_landing_dir, default_warehouse_path
from warehouse.migrations import migrate
from warehouse.snapshot import Publication, publish


LOCKED_RETRIES = 4
LOCKED_FIRST_WAIT_SECONDS = 10
"""A step that meets the warehouse locked is retried 4 times, 10, 20, 40 then 80 s later."""


def locked_retry_wait(retry_number: int) -> int:
    """Seconds before retry ``retry_number + 1`` of a step that met the warehouse locked (exponential backoff)."""
    return LOCKED_FIRST_WAIT_SECONDS * 2 ** retry_number


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file (one writer at a time: assets that write are in the duckdb_writer pool)."""

    path: str

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """As a run starts: take its turn on the writer pool (bounded wait; dead holders recovered)."""
        if context.instance is not None and context.run_id:
            take_turn(context.instance, context.run_id, context.log)

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse, migrated to the contract's version, with the domain macros installed.

        When another process holds the file's lock past the wait, says so in the run's log, then asks Dagster to
        retry the step (``dg.RetryRequested``, :func:`locked_retry_wait`); outside a run, raises :class:`WarehouseLocked`.
        """
        try:
            with connect(Path(self.path)) as con:
                migrate(con)
                yield con
        except WarehouseLocked as locked:
            try:
                retry_number = dg.OpExecutionContext.get().retry_number
            except Exception:  # noqa: BLE001 - not inside a Dagster step: nothing to retry
                raise locked from None
            wait = locked_retry_wait(retry_number)
            dg.get_dagster_logger().error(f"{locked} The step is retried with backoff, in {wait} s "
                                          f"(retry {retry_number + 1} of {LOCKED_RETRIES}).")
            raise dg.RetryRequested(max_retries=LOCKED_RETRIES, seconds_to_wait=wait) from locked

    def publish_snapshot(self) -> Publication:
        """Publish what changed since the last publish to the analysts' snapshot (warehouse/snapshot.py)."""
        return publish(Path(self.path))


class LandingZone(dg.ConfigurableResource):
    """The folder the operational systems' CDC extracts land in (<system>/<entity>/<file>)."""

    path: str


def default_resources() -> dict:
    return {
        "warehouse": Warehouse(path=str(default_warehouse_path())),
        "landing": LandingZone(path=str(default_landing_dir())),
    }
