"""State engines: raw change logs -> core history / current state (``cdc``), and services
from confirmed orders (``subscriptions.build_services``). Rules: docs/state.md. No Dagster imports."""
