"""Stage 15, ``rth_filter``: keep the events inside ``[rth_filter.start, rth_filter.end)``
local time (09:30-12:30 ET by default, DST-correct), then check the declared schema.

In: ``day.events`` with every stage's columns; ``day.columns`` (the manifest's declared
``(name, dtype)`` list).  Out: ``day.events`` holding exactly the declared columns, in the
declared order, with the declared types (``to_declared_table`` is the check: a missing
column, a value that does not fit its type or a null in a non-float column raises
``SchemaMismatch`` before anything is written).  Extra working columns (``atr``,
``bar_ns``) are dropped here.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from transforms.silver.columns import arrow_type
from transforms.silver.day import SilverDay
from transforms.silver.session import local_ns
from transforms.silver.registry import silver_stage


class SchemaMismatch(ValueError):
    """The built events do not match the manifest's declared columns."""


def declared_schema(columns) -> pa.Schema:
    return pa.schema([pa.field(name, arrow_type(dtype)) for name, dtype in columns])


def to_declared_table(events: pd.DataFrame, columns) -> pa.Table:
    """The events as an Arrow table of exactly the declared schema, or SchemaMismatch."""
    names = [n for n, _ in columns]
    missing = [n for n in names if n not in events.columns]
    if missing:
        raise SchemaMismatch(f"declared columns not produced: {missing}")
    arrays = []
    for name, dtype in columns:
        typ = arrow_type(dtype)
        values = events[name]
        try:
            if pa.types.is_date32(typ):
                arr = pa.array(list(values), type=typ)
            elif pa.types.is_timestamp(typ):
                ns = pd.to_datetime(values, utc=True).astype("int64").to_numpy()
                arr = pa.array(ns, pa.int64()).cast(typ)
            else:
                arr = pa.array(values.to_numpy() if typ != pa.string() else list(values),
                               type=typ, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise SchemaMismatch(f"column {name!r} does not fit {dtype}: {exc}") from None
        if arr.null_count and not pa.types.is_floating(typ):
            raise SchemaMismatch(f"column {name!r} ({dtype}) holds {arr.null_count} nulls")
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=declared_schema(columns))


@silver_stage("rth_filter", step=15, parameters=(
    "session.timezone", "rth_filter.start", "rth_filter.end"))
def rth_filter(day: SilverDay) -> SilverDay:
    day.require("events")
    if not day.columns:
        raise ValueError("rth_filter needs the manifest's declared columns (day.columns)")
    tz = day.param("session.timezone")
    lo = local_ns(day.date, day.param("rth_filter.start"), tz)
    hi = local_ns(day.date, day.param("rth_filter.end"), tz)
    ev = day.events
    ts = ev["ts_ns"].to_numpy(np.int64)
    kept = ev[(ts >= lo) & (ts < hi)].reset_index(drop=True)
    table = to_declared_table(kept, day.columns)
    out = table.to_pandas(types_mapper=None)
    out["date"] = list(table["date"].to_pylist())
    # keep the working columns stage 16/17 need alongside (dropped again at write time)
    for extra in ("atr", "bar_ns"):
        if extra in kept:
            out[extra] = kept[extra].to_numpy()
    return day.replace(events=out)
