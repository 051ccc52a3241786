"""Front-month selection for a futures root on one UTC date (pure logic: no Beam, no I/O).

The front month of a date is the contract (e.g. ``ESZ4``) with the most trades in regular
trading hours (RTH, 09:30-16:00 America/New_York, half-open ``[start, end)``).  Near a roll
two contracts share the volume; ``dominance`` measures that and ``roll_contaminated``
flags dates where the winner holds less than 60% of the counted trades.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Optional, Union
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa

ROLL_DOMINANCE_THRESHOLD = 0.60


class NoTradesError(ValueError):
    """Raised when there is no trade to select a front month from."""


@dataclasses.dataclass(frozen=True)
class FrontMonth:
    """The front-month contract of one date.

    ``symbol``: the winning contract.  ``dominance``: its share (0..1) of the trades counted
    on ``basis`` ('rth' = RTH trades of the date; 'all_day' = all trades of the date, used
    only when the date has no RTH trade).  ``roll_contaminated``: dominance < 0.60.
    ``rth_trade_counts`` / ``trade_counts``: contract -> RTH / all-day trade count (every
    contract seen that date appears in both, possibly with 0 RTH trades).
    """
    date: str
    symbol: str
    dominance: float
    roll_contaminated: bool
    basis: str
    rth_trade_counts: dict[str, int]
    trade_counts: dict[str, int]


def rth_bounds_ns(date: str, start: str = "09:30", end: str = "16:00",
                  tz: str = "America/New_York") -> tuple[int, int]:
    """``(start_ns, end_ns)``: UTC epoch nanoseconds of local ``start`` and ``end`` on the
    calendar ``date`` ('YYYY-MM-DD') in ``tz``, daylight-saving correct (e.g. 2024-07-15
    09:30 EDT = 13:30 UTC, 2024-12-16 09:30 EST = 14:30 UTC)."""
    day = dt.date.fromisoformat(date)
    zone = ZoneInfo(tz)

    def to_ns(hhmm: str) -> int:
        local = dt.datetime.combine(day, dt.time.fromisoformat(hhmm), tzinfo=zone)
        return int(local.timestamp()) * 1_000_000_000

    return to_ns(start), to_ns(end)


def _counts(symbols: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in symbols.value_counts(sort=False).sort_index().items()}


def _winner(counts: dict[str, int]) -> str:
    """Most trades; ties go to the lexicographically smallest symbol."""
    return min(counts, key=lambda s: (-counts[s], s))


def select_front_month(trades: Union[pa.Table, pd.DataFrame],
                       date: Optional[str] = None) -> FrontMonth:
    """Front month of one date from its futures trades.

    In: a pyarrow Table or pandas DataFrame with columns ``symbol`` (contract code) and
    ``ts_event_ns`` (UTC epoch ns), plus ``date`` ('YYYY-MM-DD', the UTC date of the row)
    unless ``date`` is passed.  All rows must belong to one date (rows of other dates in a
    ``date`` column are ignored when ``date`` is passed; without it, several distinct
    dates raise ValueError).  Every row counts as one trade, so deduplicate first.
    Out: a :class:`FrontMonth`.  Raises :class:`NoTradesError` if the date has no trade.
    """
    cols = ["symbol", "ts_event_ns"] + (["date"] if "date" in _names(trades) else [])
    df = (trades.select(cols).to_pandas() if isinstance(trades, pa.Table)
          else trades[cols])
    if date is None:
        if "date" not in df:
            raise ValueError("pass date= or give the trades a 'date' column")
        dates = df["date"].astype(str).unique()
        if len(dates) > 1:
            raise ValueError(f"trades span several dates: {sorted(dates)}")
        if len(dates) == 0:
            raise NoTradesError("no trades")
        date = str(dates[0])
    elif "date" in df:
        df = df[df["date"].astype(str) == date]
    if df.empty:
        raise NoTradesError(f"no trades on {date}")

    start_ns, end_ns = rth_bounds_ns(date)
    ts = df["ts_event_ns"]
    all_counts = _counts(df["symbol"])
    rth = {s: 0 for s in all_counts} | _counts(df.loc[(ts >= start_ns) & (ts < end_ns), "symbol"])
    basis, basis_counts = ("rth", rth) if sum(rth.values()) else ("all_day", all_counts)
    symbol = _winner(basis_counts)
    dominance = basis_counts[symbol] / sum(basis_counts.values())
    return FrontMonth(date=date, symbol=symbol, dominance=dominance,
                      roll_contaminated=dominance < ROLL_DOMINANCE_THRESHOLD, basis=basis,
                      rth_trade_counts=rth, trade_counts=all_counts)


def _names(trades) -> list[str]:
    return trades.schema.names if isinstance(trades, pa.Table) else list(trades.columns)
