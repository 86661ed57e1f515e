"""Rating engine: usage priced under the plan in force at event time (docs/rating.md).

Plain functions over a DuckDB connection on which ``domain.install_macros`` was
called; no Dagster imports. The asset (``pipelines/assets/rating.py``) calls the same functions.
"""

from pipelines.rating.engine import (
    LINE_TYPES,
    RATED_COLUMNS,
    UNRATED_COLUMNS,
    RatingResult,
    rate_usage,
    unrated_share,
)

__all__ = [
    "LINE_TYPES",
    "RATED_COLUMNS",
    "UNRATED_COLUMNS",
    "RatingResult",
    "rate_usage",
    "unrated_share",
]
