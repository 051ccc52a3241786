"""Stage 4, ``levels``: the price levels as known at the start of each 1-minute bar.

In: ``day.bars_1m``, ``day.bars_2m``.  Out: ``day.levels``, one row per row of
``bars_1m``: ``bar_ns`` and one float column per kind of ``levels.kind_codes``:

- ``PM_HIGH`` / ``PM_LOW``: highest high / lowest low of the bars in
  ``[session.premarket_start, session.rth_start)``; they exist from ``rth_start`` on
  (the premarket is complete then), NaN before and when the premarket had no trade;
- ``OR_HIGH`` / ``OR_LOW``: the same over ``[rth_start, session.opening_range_end)``,
  existing from ``opening_range_end`` on;
- ``SMA_<n>``: ``sma_<n>`` of the last 2-minute bar COMPLETED at the bar's start
  (``bar_ns_2m + sma_bar_minutes <= bar_ns``), NaN while it does not exist.

Causal by construction: a value in the row of bar b uses only trades before b starts.
(The original used end-of-day values all day.)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_MIN, session_ns
from transforms.silver.registry import silver_stage


def _range_level(bars: pd.DataFrame, start: int, end: int) -> tuple[float, float]:
    inside = bars[(bars["bar_ns"] >= start) & (bars["bar_ns"] < end)]
    if inside.empty:
        return np.nan, np.nan
    return float(inside["high"].max()), float(inside["low"].min())


@silver_stage("levels", step=4, parameters=(
    "session.timezone", "session.premarket_start", "session.rth_start",
    "session.opening_range_end", "bars.sma_periods", "bars.sma_bar_minutes",
    "levels.kind_codes"))
def levels(day: SilverDay) -> SilverDay:
    day.require("bars_1m", "bars_2m")
    bars = day.bars_1m
    bar_ns = bars["bar_ns"].to_numpy(np.int64)
    pm, rth, orng = (session_ns(day, k) for k in
                     ("premarket_start", "rth_start", "opening_range_end"))
    out = pd.DataFrame({"bar_ns": bar_ns})
    kinds = dict(day.param("levels.kind_codes"))
    pm_high, pm_low = _range_level(bars, pm, rth)
    or_high, or_low = _range_level(bars, rth, orng)
    fixed = {"PM_HIGH": (pm_high, rth), "PM_LOW": (pm_low, rth),
             "OR_HIGH": (or_high, orng), "OR_LOW": (or_low, orng)}
    b2 = day.bars_2m
    step = int(day.param("bars.sma_bar_minutes")) * NS_PER_MIN
    done_at = b2["bar_ns"].to_numpy(np.int64) + step
    # the last 2-minute bar completed at or before each 1-minute bar start
    idx = np.searchsorted(done_at, bar_ns, side="right") - 1
    for name in kinds:
        if name in fixed:
            value, since = fixed[name]
            out[name] = np.where(bar_ns >= since, value, np.nan)
        elif name.startswith("SMA_"):
            col = f"sma_{int(name.split('_', 1)[1])}"
            if col not in b2:
                raise ValueError(f"level {name} needs {col}: add its period to bars.sma_periods")
            sma = b2[col].to_numpy(float)
            out[name] = np.where(idx >= 0, sma[np.clip(idx, 0, max(len(sma) - 1, 0))]
                                 if len(sma) else np.nan, np.nan)
        else:
            raise ValueError(f"unknown level kind {name!r} in levels.kind_codes")
    return day.replace(levels=out)
