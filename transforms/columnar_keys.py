"""Rows of a columnar batch grouped by Bronze shard key (pure, no Beam).

``group_by_shard_key(dataset, partitions, partition_index, ts_event_ns)`` -> ``(order,
groups)``: ``order`` lists the row indices group after group (input order within a
group), ``groups`` holds ``(shard_key, start, stop)`` for each group's slice of ``order``:
one group per (partition value, UTC date, UTC hour of ``ts_event_ns``), the keys exactly
those ``transforms.partitioning.bronze_key`` gives the per-message parser's rows.  So one
``table.take(order)`` and zero-copy slices give every shard key's rows.
"""
from __future__ import annotations

import numpy as np

from transforms.market_parse import _NS_PER_HOUR, _utc_date_hour_of
from transforms.partitioning import bronze_key


def group_by_shard_key(dataset: str, partitions: list[str], partition_index: np.ndarray,
                       ts_event_ns: np.ndarray) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """``partitions``: the distinct partition values (symbol roots or underlyings);
    ``partition_index[i]``: the position in ``partitions`` of row ``i``'s value;
    ``ts_event_ns``: non-negative int64 nanoseconds."""
    if not len(ts_event_ns):
        return np.zeros(0, np.int64), []
    hours = ts_event_ns // _NS_PER_HOUR
    h0 = int(hours.min())
    width = max(len(partitions), 1)
    group = (hours - h0) * width + partition_index
    distinct = np.unique(group)                      # few: hours x partitions, sorted
    code = np.searchsorted(distinct, group)
    if len(distinct) < 2**15:
        code = code.astype(np.int16)                 # a stable sort of int16 is a radix sort
    order = np.argsort(code, kind="stable")
    stops = np.cumsum(np.bincount(code, minlength=len(distinct)))
    groups, start = [], 0
    for value, stop in zip(distinct.tolist(), stops.tolist()):
        hour_offset, part = divmod(value, width)
        date, hour = _utc_date_hour_of(h0 + hour_offset)
        groups.append((bronze_key(dataset, partitions[part], date, hour), start, stop))
        start = stop
    return order, groups
