"""Stage 5, ``interaction_zones``: level-interaction events.

In: ``day.bars_1m``, ``day.levels``, ``day.trades``.  Out: ``day.events`` with the identity
columns plus ``atr`` and ``bar_ns`` (see ``day.py``), sorted by ``(ts_ns, level_kind)``.

For every bar b after the first and every level kind whose value L exists at b's start:
the zone is ``L ± w`` with ``w = max(zones.half_width_min, zones.half_width_atr_factor x
ATR)``, ATR being that of the previous (completed) bar.  An event happens when bar b's
range [low, high] overlaps the zone and the previous bar's range did not.  Its time
``ts_ns`` and ``entry_price`` are those of the first trade of bar b inside the zone, so
the event is known at ``ts_ns`` and nothing later is used; ``direction`` is ``UP`` when
the previous bar closed below L, else ``DOWN``.  ``event_id`` =
``{date}_{kind name}_{int(L x 100)}_{ts_ns}_{direction}``.

It also attaches the market context of the event (manifest group ``market_context``), all
as known at the event: ``atr`` and ``volatility`` of the previous completed 1-minute bar,
``sma_200``/``sma_400`` = the SMA level values of the event's bar (last completed
2-minute bar; NaN without enough warm-up).
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from transforms.silver.columns import IDENTITY_NAMES
from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_MIN
from transforms.silver.registry import silver_stage

EVENT_COLUMNS = list(IDENTITY_NAMES) + ["atr", "volatility", "sma_200", "sma_400", "bar_ns"]


def empty_events() -> pd.DataFrame:
    return pd.DataFrame({
        "event_id": pd.Series(dtype=object), "ts_ns": pd.Series(dtype=np.int64),
        "timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
        "level_price": pd.Series(dtype=float), "level_kind": pd.Series(dtype=np.int8),
        "level_kind_name": pd.Series(dtype=object), "direction": pd.Series(dtype=object),
        "entry_price": pd.Series(dtype=float), "zone_width": pd.Series(dtype=float),
        "date": pd.Series(dtype=object), "atr": pd.Series(dtype=float),
        "volatility": pd.Series(dtype=float), "sma_200": pd.Series(dtype=float),
        "sma_400": pd.Series(dtype=float), "bar_ns": pd.Series(dtype=np.int64)})


@silver_stage("interaction_zones", step=5, parameters=(
    "zones.half_width_min", "zones.half_width_atr_factor", "bars.price_min", "bars.price_max",
    "levels.kind_codes"), columns=EVENT_COLUMNS)
def interaction_zones(day: SilverDay) -> SilverDay:
    day.require("bars_1m", "levels", "trades")
    bars, lv = day.bars_1m, day.levels
    if len(bars) < 2:
        return day.replace(events=empty_events())
    lo_p = float(day.param("bars.price_min"))
    hi_p = float(day.param("bars.price_max"))
    t_ts = day.trades["ts_ns"].to_numpy(np.int64)
    t_px = day.trades["price"].to_numpy(float)
    ok = (t_px >= lo_p) & (t_px <= hi_p)
    t_ts, t_px = t_ts[ok], t_px[ok]

    bar_ns = bars["bar_ns"].to_numpy(np.int64)
    high, low = bars["high"].to_numpy(float), bars["low"].to_numpy(float)
    close, atr = bars["close"].to_numpy(float), bars["atr"].to_numpy(float)
    vol = bars["volatility"].to_numpy(float)
    sma = {n: (lv[n].to_numpy(float) if n in lv else np.full(len(lv), np.nan))
           for n in ("SMA_200", "SMA_400")}
    w = np.maximum(float(day.param("zones.half_width_min")),
                   float(day.param("zones.half_width_atr_factor")) * atr)
    date = dt.date.fromisoformat(day.date)
    rows = []
    for name, code in dict(day.param("levels.kind_codes")).items():
        level = lv[name].to_numpy(float)
        cur_l, wid = level[1:], w[:-1]
        zlo, zhi = cur_l - wid, cur_l + wid
        prev_in = (high[:-1] >= zlo) & (low[:-1] <= zhi)
        now_in = (high[1:] >= zlo) & (low[1:] <= zhi)
        hits = np.flatnonzero(np.isfinite(cur_l) & now_in & ~prev_in) + 1
        for b in hits:
            L, width = level[b], w[b - 1]
            i0, i1 = np.searchsorted(t_ts, [bar_ns[b], bar_ns[b] + NS_PER_MIN])
            inside = np.flatnonzero(np.abs(t_px[i0:i1] - L) <= width)
            if not len(inside):      # cannot happen with consistent bars; be safe
                continue
            j = i0 + inside[0]
            direction = "UP" if close[b - 1] < L else "DOWN"
            ts = int(t_ts[j])
            rows.append((f"{day.date}_{name}_{int(L * 100)}_{ts}_{direction}", ts, L,
                         int(code), name, direction, float(t_px[j]), float(width),
                         float(atr[b - 1]), float(vol[b - 1]), float(sma["SMA_200"][b]),
                         float(sma["SMA_400"][b]), int(bar_ns[b])))
    if not rows:
        return day.replace(events=empty_events())
    ev = pd.DataFrame(rows, columns=["event_id", "ts_ns", "level_price", "level_kind",
                                     "level_kind_name", "direction", "entry_price",
                                     "zone_width", "atr", "volatility", "sma_200",
                                     "sma_400", "bar_ns"])
    ev = ev.astype({"ts_ns": np.int64, "level_kind": np.int8, "bar_ns": np.int64})
    ev["timestamp"] = pd.to_datetime(ev["ts_ns"], unit="ns", utc=True)
    ev["date"] = date
    ev = ev.sort_values(["ts_ns", "level_kind"], kind="stable").reset_index(drop=True)
    return day.replace(events=ev[EVENT_COLUMNS])
