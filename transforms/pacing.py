"""Replay pacing (pure): when, relative to the start of a replay, each event is sent.

An event is due ``Δts_event / speed`` after the previous one, with each gap capped at
``max_gap_s`` of wall time (overnight gaps do not stall a replay); ``speed == 0`` means
as fast as possible (every event due at once).
"""
from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def paced(events: Iterable[tuple[int, T]], speed: float,
          max_gap_s: float = 5.0) -> Iterator[tuple[float, T]]:
    """``(ts_event_ns, item)`` in event-time order -> ``(due_s, item)``, due_s non-decreasing."""
    if speed < 0:
        raise ValueError("speed must be >= 0")
    due = 0.0
    last_ts = None
    for ts, item in events:
        if speed > 0 and last_ts is not None and ts > last_ts:
            due += min((ts - last_ts) / 1e9 / speed, max_gap_s)
        last_ts = ts if last_ts is None else max(last_ts, ts)
        yield due, item
