"""The Dagster layer: one module per domain, each exposing its ``defs``; policy in :mod:`pipelines.assets.policy`.

ingest, state, rating, invoicing, revenue, publish (the analysts' snapshot). Each asset loads,
calls its engine (``pipelines/<domain>/``, no Dagster there), writes and reports; keys come from
the table contract (``warehouse/tables/``). ``pipelines/definitions.py`` merges the modules.
"""
