"""Rating engine: usage priced under the plan in force at event time (docs/rating.md).

Plain functions over a DuckDB connection on which ``domain.install_macros`` was
called; no Dagster imports. The assets (``pipelines/rating/assets.py``) call the same functions.
"""

from pipelines.rating.engine import (
    LINE_TYPES,
    RATED_COLUMNS,
    UNRATED_COLUMNS,
    RatingResult,
    rate_usage,
    unrated_share,
)
from pipelines.rating.late import ADJUSTMENT_KINDS, rate_late_usage_deltas

__all__ = [
    "ADJUSTMENT_KINDS",
    "LINE_TYPES",
    "RATED_COLUMNS",
    "UNRATED_COLUMNS",
    "RatingResult",
    "rate_late_usage_deltas",
    "rate_usage",
    "unrated_share",
]
