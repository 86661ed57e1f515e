"""Quality gates on every warehouse table an asset writes (docs/quality.md).

* :mod:`pipelines.quality.rules`: what a table must hold, from the table contract (types, nullability, key) and
  the value sets the domain modules state;
* :mod:`pipelines.quality.invariants`: the exact invariants over the written window, in DuckDB SQL;
* :mod:`pipelines.quality.schemas`: the pandera (Polars) schema of each table, validated on a bounded sample;
* :mod:`pipelines.quality.expectations`: the Great Expectations suite on invoices, lines, payments and revenue;
* :mod:`pipelines.quality.checks`: the Dagster asset checks built from them (``quality_checks(assets)``).

Everything but ``checks`` is plain Python over DuckDB and Polars, importable without Dagster.
"""
