"""End-to-end fixtures: one real `dagster dev` for the whole session (tests/e2e/server.py) and a headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.server import DagsterServer, start_dagster

CHROMIUM = "/usr/bin/chromium"  # Debian's browser: Playwright never downloads one here (the network is closed)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def dagster_server(tmp_path_factory) -> Iterator[DagsterServer]:
    """``dagster dev`` (webserver and daemon) on 127.0.0.1 over a temporary instance, warehouse and the small sample's
    landing zone; stopped, with every process it started, at the end of the session."""
    server = start_dagster(tmp_path_factory.mktemp("dagster"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ingested(dagster_server: DagsterServer) -> DagsterServer:
    """The server once its landing zone is ingested (job ``ingest``, launched through GraphQL)."""
    dagster_server.run_job("ingest")
    return dagster_server


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
