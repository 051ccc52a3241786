"""Session clock of a trading date: local wall-clock times (US/Eastern by default) as UTC
epoch nanoseconds, daylight-saving correct."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

NS_PER_S = 1_000_000_000
NS_PER_MIN = 60 * NS_PER_S


def local_ns(date: str, hhmm: str, tz: str = "America/New_York") -> int:
    """UTC epoch ns of local ``hhmm`` ('09:30') on ``date`` ('YYYY-MM-DD') in ``tz``
    (2024-12-16 09:30 EST = 14:30 UTC; 2024-07-15 09:30 EDT = 13:30 UTC)."""
    local = dt.datetime.combine(dt.date.fromisoformat(date), dt.time.fromisoformat(hhmm),
                                tzinfo=ZoneInfo(tz))
    return int(local.timestamp()) * NS_PER_S


def session_ns(day, key: str) -> int:
    """``session.<key>`` (e.g. 'rth_start') of ``day``'s manifest parameters, in UTC ns."""
    return local_ns(day.date, day.param(f"session.{key}"), day.param("session.timezone"))


def previous_weekdays(date: str, n: int) -> list[str]:
    """The ``n`` weekdays before ``date``, oldest first (no exchange holiday calendar)."""
    day = dt.date.fromisoformat(date)
    out: list[str] = []
    while len(out) < n:
        day -= dt.timedelta(days=1)
        if day.weekday() < 5:
            out.append(day.isoformat())
    return out[::-1]
