"""The column vocabulary every Silver version shares, defined once (pure, no project imports).

- ``IDENTITY_COLUMNS``: the 10 identity columns of every signal row, ``(name, dtype)`` in
  order (reference §4: ``event_id, ts_ns, timestamp, level_price, level_kind,
  level_kind_name, direction, entry_price, zone_width, date``); ``IDENTITY_NAMES`` their names.
- ``LABEL_PREFIXES``: a column is forward-looking (a label) exactly when its name starts with
  one of these; the manifest keeps such columns in the ``labels`` group and nowhere else.
- ``DTYPES`` / :func:`arrow_type`: the dtypes a manifest may declare and their Arrow types.
"""
from __future__ import annotations

from typing import Tuple

IDENTITY_COLUMNS: Tuple[Tuple[str, str], ...] = (
    ("event_id", "string"), ("ts_ns", "int64"), ("timestamp", "timestamp[ns, UTC]"),
    ("level_price", "float64"), ("level_kind", "int8"), ("level_kind_name", "string"),
    ("direction", "string"), ("entry_price", "float64"), ("zone_width", "float64"),
    ("date", "date32"),
)
IDENTITY_NAMES: Tuple[str, ...] = tuple(name for name, _ in IDENTITY_COLUMNS)

LABEL_PREFIXES: Tuple[str, ...] = ("outcome", "time_to_", "excursion_", "strength_")

DTYPES: Tuple[str, ...] = ("string", "bool", "int8", "int16", "int32", "int64", "float32",
                           "float64", "date32", "timestamp[ns]", "timestamp[ns, UTC]")


def arrow_type(dtype: str):
    """The Arrow type of a manifest dtype (KeyError for an unknown one)."""
    import pyarrow as pa
    return {
        "string": pa.string(), "bool": pa.bool_(), "int8": pa.int8(), "int16": pa.int16(),
        "int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(),
        "float64": pa.float64(), "date32": pa.date32(), "timestamp[ns]": pa.timestamp("ns"),
        "timestamp[ns, UTC]": pa.timestamp("ns", tz="UTC"),
    }[dtype]


def is_label(name: str) -> bool:
    """True for a forward-looking (label) column name."""
    return name.startswith(LABEL_PREFIXES)
