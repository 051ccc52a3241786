"""The value that flows through the Silver stages: one trading date and what has been
derived from it so far.

Every stage is a pure function ``SilverDay -> SilverDay`` that returns a new object
(``day.replace(...)``) and never mutates the frames it was given, so the same input always
gives the same output and Beam may retry or fuse stages freely.

Frames (pandas, all sorted by ``ts_ns`` ascending, int64 UTC epoch nanoseconds):

- ``trades`` (stage 0): front-month futures trades of the date: ``ts_ns, price, size,
  aggressor`` (aggressor 1 buy, -1 sell, 0 unknown).
- ``mbp`` (stage 0): the front month's MBP-10 book, last update per 250 ms bucket within
  the book window: ``ts_ns, bid_px_1..10, bid_sz_1..10, ask_px_1..10, ask_sz_1..10``.
- ``options`` (stage 0): option trades: ``ts_ns, strike, right ('C'|'P'), price, size,
  aggressor, exp_date (datetime.date)``.
- ``warmup`` (stage 0): ``ts_ns, price`` of the same contract's trades on the previous
  weekdays (only for the SMA warm-up of stage 2).
- ``bars_1m`` (stage 1): one row per traded minute: ``bar_ns`` (minute start), ``open,
  high, low, close, volume, buy_volume, sell_volume, trades, atr, volatility``; the
  values of a bar are known at ``bar_ns + 60 s``.
- ``bars_2m`` (stage 2): ``bar_ns, close`` plus ``sma_200, sma_400`` (over 2-minute closes,
  warm-up included; known at ``bar_ns + 120 s``).
- ``option_greeks`` (stage 3): ``options`` plus ``fwd, years, gamma, delta,
  dealer_gamma`` (= -aggressor x size x gamma x multiplier).
- ``levels`` (stage 4): one row per 1-minute bar of ``bars_1m``: ``bar_ns`` and one float
  column per level kind name (``PM_HIGH, PM_LOW, OR_HIGH, OR_LOW, SMA_200, SMA_400``): the
  level's value as known at the bar's START (NaN while it does not exist yet).
- ``events`` (stage 5 on): one row per level-interaction event, the identity columns
  (``event_id, ts_ns, timestamp, level_price, level_kind, level_kind_name, direction,
  entry_price, zone_width, date``) plus ``atr`` and ``bar_ns``, then every later stage's
  columns.  ``ts_ns`` is the time of the first trade inside the zone; every feature uses
  data at or before ``ts_ns`` only, labels (stage 14) the data after it.
- ``state_table`` (stage 16), ``episodes`` (stage 17): separate outputs.

Stages register themselves in :mod:`transforms.silver.registry`; a later definition of a step
(``physics@2`` of v3.2.0) is a separate function, so an older version never changes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import pandas as pd

from transforms.silver.columns import IDENTITY_NAMES


@dataclasses.dataclass(frozen=True)
class SilverDay:
    """One trading date moving through the stages (see the module docstring)."""
    date: str
    params: Mapping[str, Any]
    front_month: Optional[str] = None
    dominance: Optional[float] = None
    roll_contaminated: Optional[bool] = None
    trades: Optional[pd.DataFrame] = None
    mbp: Optional[pd.DataFrame] = None
    options: Optional[pd.DataFrame] = None
    warmup: Optional[pd.DataFrame] = None
    bars_1m: Optional[pd.DataFrame] = None
    bars_2m: Optional[pd.DataFrame] = None
    option_greeks: Optional[pd.DataFrame] = None
    levels: Optional[pd.DataFrame] = None
    events: Optional[pd.DataFrame] = None
    state_table: Optional[pd.DataFrame] = None
    episodes: Optional[pd.DataFrame] = None
    lineage: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # The manifest's declared output: (name, dtype) in order, and which of them are labels.
    columns: tuple = ()
    label_columns: tuple = ()
    # From when the sampled book is known (UTC ns; set by load_bronze@2, which loads it from
    # the longest lookback before the first event window): a book window starting earlier
    # is truncated, and v3.2.0's book features are NaN there.  None: from its first row.
    book_start_ns: Optional[int] = None

    @property
    def feature_columns(self) -> list[str]:
        """Declared columns that are neither identity nor label columns."""
        return [n for n, _ in self.columns
                if n not in IDENTITY_NAMES and n not in self.label_columns]

    def replace(self, **changes) -> "SilverDay":
        return dataclasses.replace(self, **changes)

    def param(self, dotted: str) -> Any:
        """``day.param('physics.tape_band')``; KeyError naming the path if missing."""
        node: Any = self.params
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise KeyError(f"manifest parameter {dotted!r} is missing")
            node = node[part]
        return node

    def require(self, *names: str) -> None:
        """Raises ValueError if an earlier stage's output is missing."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(f"{self.date}: stage input(s) {missing} not built yet "
                             "(is a stage missing from the manifest?)")


@dataclasses.dataclass(frozen=True)
class DayFailure:
    """A date that failed: which stage, and why.  Later stages pass it through untouched."""
    date: str
    stage: str
    reason: str


def add_columns(events: pd.DataFrame, columns: Mapping[str, Any]) -> pd.DataFrame:
    """A copy of ``events`` with ``columns`` added or replaced (arrays aligned by row)."""
    out = events.copy()
    for name, values in columns.items():
        out[name] = values
    return out
