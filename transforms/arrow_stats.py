"""Column statistics of Arrow data shared by the Silver and Gold validations (pure)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def null_rate(col: pa.ChunkedArray) -> float:
    """Share of nulls, NaN counted as null for floating columns (0.0 for an empty column)."""
    if len(col) == 0:
        return 0.0
    nulls = col.null_count
    if pa.types.is_floating(col.type):
        nulls += int(pc.sum(pc.is_nan(col.fill_null(0.0))).as_py() or 0)
    return nulls / len(col)
