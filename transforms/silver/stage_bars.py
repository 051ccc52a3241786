"""Stages 1 and 2: 1-minute bars with ATR/volatility, 2-minute closes with SMAs.

``bars_1m`` (stage 1).  In: ``day.trades``.  Out: ``day.bars_1m``, one row per minute that
has at least one trade with price in ``[bars.price_min, bars.price_max]``: ``bar_ns``
(minute start, UTC ns), ``open, high, low, close, volume, buy_volume, sell_volume,
trades``, ``atr`` = mean true range of the last ``bars.atr_bars`` bars up to and including
this one (fewer at the start of the day; the first bar's true range is its high - low),
``volatility`` = standard deviation (ddof 1) of the last ``bars.vol_bars`` close-to-close
changes (0 until two changes exist).  A bar's values are known at ``bar_ns + 60 s``.

``bars_2m`` (stage 2).  In: ``day.trades`` and ``day.warmup`` (the same contract's trades on
the ``bars.warmup_weekdays`` previous weekdays).  Out: ``day.bars_2m``: ``bar_ns, close``
of every ``bars.sma_bar_minutes``-minute bar with a trade (warm-up days first), and for
each ``n`` in ``bars.sma_periods`` ``sma_<n>`` = mean of the last ``n`` closes including
this bar (NaN until ``n`` closes exist).  Known at ``bar_ns + sma_bar_minutes``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_MIN
from transforms.silver.registry import silver_stage

BAR_COLUMNS = ["bar_ns", "open", "high", "low", "close", "volume", "buy_volume",
               "sell_volume", "trades", "atr", "volatility"]


def ohlcv(ts: np.ndarray, price: np.ndarray, size: np.ndarray, aggressor: np.ndarray,
          bar_ns: int) -> pd.DataFrame:
    """OHLCV bars of ``bar_ns`` length from time-sorted trades (only bars with trades)."""
    if len(ts) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in BAR_COLUMNS[:9]}).astype(
            {"bar_ns": np.int64})
    bar = (ts // bar_ns) * bar_ns
    starts = np.flatnonzero(np.r_[True, bar[1:] != bar[:-1]])
    ends = np.r_[starts[1:], len(ts)]
    size = size.astype(float)
    csum = np.r_[0.0, np.cumsum(size)]
    buy = np.r_[0.0, np.cumsum(np.where(aggressor > 0, size, 0.0))]
    sell = np.r_[0.0, np.cumsum(np.where(aggressor < 0, size, 0.0))]
    return pd.DataFrame({
        "bar_ns": bar[starts].astype(np.int64),
        "open": price[starts],
        "high": np.maximum.reduceat(price, starts),
        "low": np.minimum.reduceat(price, starts),
        "close": price[ends - 1],
        "volume": csum[ends] - csum[starts],
        "buy_volume": buy[ends] - buy[starts],
        "sell_volume": sell[ends] - sell[starts],
        "trades": (ends - starts).astype(np.int64),
    })


def _price_ok(day: SilverDay, price: np.ndarray) -> np.ndarray:
    return (price >= float(day.param("bars.price_min"))) & (
        price <= float(day.param("bars.price_max")))


@silver_stage("bars_1m", step=1, parameters=(
    "bars.price_min", "bars.price_max", "bars.atr_bars", "bars.vol_bars"))
def bars_1m(day: SilverDay) -> SilverDay:
    day.require("trades")
    t = day.trades
    price = t["price"].to_numpy(float)
    ok = _price_ok(day, price)
    bars = ohlcv(t["ts_ns"].to_numpy(np.int64)[ok], price[ok], t["size"].to_numpy()[ok],
                 t["aggressor"].to_numpy()[ok], NS_PER_MIN)
    prev_close = bars["close"].shift(1)
    tr = np.maximum(bars["high"] - bars["low"],
                    np.maximum((bars["high"] - prev_close).abs(),
                               (bars["low"] - prev_close).abs()).fillna(0.0))
    bars["atr"] = tr.rolling(int(day.param("bars.atr_bars")), min_periods=1).mean()
    bars["volatility"] = (bars["close"].diff()
                          .rolling(int(day.param("bars.vol_bars")), min_periods=2).std()
                          .fillna(0.0))
    return day.replace(bars_1m=bars[BAR_COLUMNS].reset_index(drop=True))


@silver_stage("bars_2m", step=2, parameters=(
    "bars.price_min", "bars.price_max", "bars.sma_bar_minutes", "bars.sma_periods",
    "bars.warmup_weekdays"))
def bars_2m(day: SilverDay) -> SilverDay:
    day.require("trades")
    minutes = int(day.param("bars.sma_bar_minutes"))
    frames = [f for f in (day.warmup, day.trades) if f is not None and len(f)]
    if frames:
        both = pd.concat([f[["ts_ns", "price"]] for f in frames], ignore_index=True)
        both = both.sort_values("ts_ns", kind="stable")
        ts = both["ts_ns"].to_numpy(np.int64)
        price = both["price"].to_numpy(float)
    else:
        ts, price = np.zeros(0, np.int64), np.zeros(0)
    ok = _price_ok(day, price)
    ts, price = ts[ok], price[ok]
    bar_len = minutes * NS_PER_MIN
    bar = (ts // bar_len) * bar_len
    last = np.flatnonzero(np.r_[bar[1:] != bar[:-1], True]) if len(ts) else np.zeros(0, int)
    out = pd.DataFrame({"bar_ns": bar[last].astype(np.int64), "close": price[last]})
    for n in day.param("bars.sma_periods"):
        out[f"sma_{int(n)}"] = out["close"].rolling(int(n), min_periods=int(n)).mean()
    return day.replace(bars_2m=out)
