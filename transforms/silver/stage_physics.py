"""Stage 6, physics: tape, barrier and fuel features of every event, all backward-looking.

In: ``day.events`` (``ts_ns, level_price, direction``), ``day.trades`` (``ts_ns, price, size,
aggressor``), ``day.mbp`` (``ts_ns, bid_px_i, bid_sz_i, ask_px_i, ask_sz_i``, i = 1..10) and
``day.option_greeks`` (``ts_ns, strike, dealer_gamma``; may have 0 rows).  Parameters from
``physics.*`` of the manifest.  Out: ``events`` plus exactly the manifest's ``physics`` group.

For an event at time ``t`` (its ``ts_ns``) and level ``L`` (its ``level_price``):

Tape, over the trades with ``ts_ns`` in ``(t - velocity_window_s, t]``:

- ``tape_buy_vol`` / ``tape_sell_vol``: sum of ``size`` of the trades with aggressor 1 / -1
  and ``|price - L| <= tape_band`` (0.0 when there are none);
- ``tape_imbalance = (buy - sell) / (buy + sell)``, 0.0 when ``buy + sell == 0``;
- ``tape_velocity``: ordinary least-squares slope of ``price`` against time in seconds over ALL
  trades of the window (no band), in points per second; 0.0 with fewer than 2 trades or when
  all of them share one timestamp.

Barrier, on the defending side of the book (asks for direction ``UP``: the price came from below
and sellers defend the level; bids for ``DOWN``):

- depth of a snapshot = sum of the side's ``sz_i`` (i = 1..10) whose ``px_i`` is a real level
  (``px_i > 0``; 0 marks a missing level) within ``[L - barrier_band, L + barrier_band]``;
- window ``(t - barrier_window_s, t]``: ``barrier_depth_start`` = depth of the first snapshot in
  the window, ``barrier_depth_end`` = depth of the last snapshot at or before ``t``.  When the
  window holds no snapshot the book did not change during it, so both are the depth of the last
  snapshot before the window (0.0 when there is no snapshot at or before ``t`` at all);
- ``barrier_delta_liq = end - start``; ``barrier_wall_ratio = end / max(start, 1)``;
- ``barrier_state``, the first rule that matches (``d`` = delta_liq, ``r`` = wall ratio,
  thresholds ``barrier_delta_threshold``, ``wall_ratio_low``, ``wall_ratio_high``,
  ``weak_depth``): ``d < -thr and r < low`` VACUUM; ``d < -thr`` CONSUMED; ``d > thr and
  r > high`` WALL; ``d > thr`` ABSORPTION; ``end < weak_depth`` WEAK; else NEUTRAL.

Fuel, over the option trades with ``ts_ns <= t`` and ``|strike - L| <= fuel_band``:

- ``fuel_net_gamma`` = sum of ``dealer_gamma`` (0.0 when there are none; a NaN dealer gamma,
  e.g. an option trade before the first futures trade gave a forward, counts 0);
- ``fuel_effect``: AMPLIFY if ``< fuel_amplify_threshold``, DAMPEN if ``> fuel_dampen_threshold``,
  else NEUTRAL.

Guarantees: only rows with ``ts_ns <= t`` are read for an event (every look-up goes through
``series.window_bounds`` / ``asof_index`` on the time-sorted frames); float columns are float64
and never NaN for finite inputs (empty windows give 0.0); string columns hold Python ``str``;
an events frame with 0 rows gets the columns, empty.  Inputs are not mutated.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from transforms.silver.day import SilverDay, add_columns
from transforms.silver.series import asof_index, book_known_from, safe_div, window_bounds
from transforms.silver.session import NS_PER_S
from transforms.silver.registry import silver_stage

BOOK_LEVELS = 10
PHYSICS_COLUMNS = ("tape_buy_vol", "tape_sell_vol", "tape_imbalance", "tape_velocity",
                   "barrier_depth_start", "barrier_depth_end", "barrier_delta_liq",
                   "barrier_wall_ratio", "barrier_state", "fuel_net_gamma", "fuel_effect")


@silver_stage("physics", step=6, parameters=(
    "physics.tape_band", "physics.velocity_window_s", "physics.barrier_band",
    "physics.barrier_window_s", "physics.barrier_delta_threshold", "physics.wall_ratio_low",
    "physics.wall_ratio_high", "physics.weak_depth", "physics.fuel_band",
    "physics.fuel_amplify_threshold", "physics.fuel_dampen_threshold"), columns=PHYSICS_COLUMNS)
def physics(day: SilverDay) -> SilverDay:
    day.require("events", "trades", "mbp", "option_greeks")
    events = day.events
    t = events["ts_ns"].to_numpy(dtype=np.int64)
    level = events["level_price"].to_numpy(dtype=float)
    is_up = defending_is_ask(events["direction"])
    columns = {}
    columns.update(tape_features(day, t, level))
    columns.update(barrier_features(day, t, level, is_up))
    columns.update(fuel_features(day, t, level))
    return day.replace(events=add_columns(events, columns))


def defending_is_ask(direction: pd.Series) -> np.ndarray:
    """True where the defending side is the asks (direction UP), False for DOWN."""
    values = direction.astype(str).to_numpy()
    unknown = sorted(set(values) - {"UP", "DOWN"})
    if unknown:
        raise ValueError(f"unknown event direction(s) {unknown}; expected 'UP' or 'DOWN'")
    return values == "UP"


def tape_features(day: SilverDay, t: np.ndarray, level: np.ndarray) -> dict:
    trades = day.trades
    ts = trades["ts_ns"].to_numpy(dtype=np.int64)
    price = trades["price"].to_numpy(dtype=float)
    size = trades["size"].to_numpy(dtype=float)
    aggressor = trades["aggressor"].to_numpy()
    band = float(day.param("physics.tape_band"))
    lo, hi = window_bounds(ts, t, int(day.param("physics.velocity_window_s")) * NS_PER_S)
    n = len(t)
    buy, sell, velocity = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        a, b = lo[i], hi[i]
        near = np.abs(price[a:b] - level[i]) <= band
        buy[i] = size[a:b][near & (aggressor[a:b] == 1)].sum()
        sell[i] = size[a:b][near & (aggressor[a:b] == -1)].sum()
        velocity[i] = ols_slope((ts[a:b] - t[i]) / NS_PER_S, price[a:b])
    return {"tape_buy_vol": buy, "tape_sell_vol": sell,
            "tape_imbalance": safe_div(buy - sell, buy + sell),
            "tape_velocity": velocity}


def ols_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of ``y`` on ``x``; 0.0 for < 2 points or no variance in ``x``."""
    if len(x) < 2:
        return 0.0
    dx = x - x.mean()
    sxx = float(np.dot(dx, dx))
    return float(np.dot(dx, y - y.mean()) / sxx) if sxx > 0 else 0.0


def side_depth_in_band(mbp: pd.DataFrame, rows: np.ndarray, side: np.ndarray,
                       level: np.ndarray, band: float) -> np.ndarray:
    """Depth within ``level +- band`` of snapshot ``rows[k]`` on side ``side[k]`` ('ask' if
    True, else 'bid'); 0.0 where ``rows[k] < 0`` (no snapshot)."""
    return _side_depth(mbp, rows, side, level, lambda prefix, px, lvl: np.abs(px - lvl) <= band,
                       missing=0.0)


def _side_depth(mbp: pd.DataFrame, rows: np.ndarray, is_ask: np.ndarray, level: np.ndarray,
                counts, missing: float) -> np.ndarray:
    """Sum of the sizes of snapshot ``rows[k]``'s levels on the asks (``is_ask[k]``) or bids
    that are real (``px > 0``) and ``counts(prefix, px, level)``; ``missing`` where
    ``rows[k] < 0``."""
    out = np.full(len(rows), missing, dtype=float)
    valid = rows >= 0
    if not valid.any():
        return out
    r, ask, lvl = rows[valid], is_ask[valid], level[valid][:, None]
    depth = np.zeros(len(r))
    for prefix, pick in (("ask", ask), ("bid", ~ask)):
        px = mbp[[f"{prefix}_px_{i}" for i in range(1, BOOK_LEVELS + 1)]].to_numpy(dtype=float)[r]
        sz = mbp[[f"{prefix}_sz_{i}" for i in range(1, BOOK_LEVELS + 1)]].to_numpy(dtype=float)[r]
        inside = (px > 0) & counts(prefix, px, lvl)
        depth = np.where(pick, np.where(inside, np.nan_to_num(sz), 0.0).sum(axis=1), depth)
    out[valid] = depth
    return out


def barrier_features(day: SilverDay, t: np.ndarray, level: np.ndarray, is_up: np.ndarray) -> dict:
    mbp = day.mbp
    ts = mbp["ts_ns"].to_numpy(dtype=np.int64)
    band = float(day.param("physics.barrier_band"))
    lo, hi = window_bounds(ts, t, int(day.param("physics.barrier_window_s")) * NS_PER_S)
    end_row = asof_index(ts, t)                       # == hi - 1
    start_row = np.where(hi > lo, lo, end_row)        # empty window: book unchanged
    start = side_depth_in_band(mbp, start_row, is_up, level, band)
    end = side_depth_in_band(mbp, end_row, is_up, level, band)
    delta = end - start
    ratio = end / np.maximum(start, 1.0)
    return {"barrier_depth_start": start, "barrier_depth_end": end,
            "barrier_delta_liq": delta, "barrier_wall_ratio": ratio,
            "barrier_state": barrier_state(day, delta, ratio, end)}


def barrier_state(day: SilverDay, delta: np.ndarray, ratio: np.ndarray,
                  end: np.ndarray) -> np.ndarray:
    thr = float(day.param("physics.barrier_delta_threshold"))
    low = float(day.param("physics.wall_ratio_low"))
    high = float(day.param("physics.wall_ratio_high"))
    weak = float(day.param("physics.weak_depth"))
    conditions = [(delta < -thr) & (ratio < low), delta < -thr,
                  (delta > thr) & (ratio > high), delta > thr, end < weak]
    states = ["VACUUM", "CONSUMED", "WALL", "ABSORPTION", "WEAK"]
    return as_str_array(np.select(conditions, states, default="NEUTRAL"))


def fuel_features(day: SilverDay, t: np.ndarray, level: np.ndarray) -> dict:
    greeks = day.option_greeks
    band = float(day.param("physics.fuel_band"))
    net = np.zeros(len(t))
    if len(greeks):
        ts = greeks["ts_ns"].to_numpy(dtype=np.int64)
        strike = greeks["strike"].to_numpy(dtype=float)
        gamma = np.nan_to_num(greeks["dealer_gamma"].to_numpy(dtype=float))
        hi = asof_index(ts, t) + 1                    # option trades ts_ns <= t are [0, hi)
        for i in range(len(t)):
            near = np.abs(strike[:hi[i]] - level[i]) <= band
            net[i] = gamma[:hi[i]][near].sum()
    amplify = float(day.param("physics.fuel_amplify_threshold"))
    dampen = float(day.param("physics.fuel_dampen_threshold"))
    effect = np.select([net < amplify, net > dampen], ["AMPLIFY", "DAMPEN"], default="NEUTRAL")
    return {"fuel_net_gamma": net, "fuel_effect": as_str_array(effect)}


def as_str_array(values: np.ndarray) -> np.ndarray:
    """An object array of Python ``str`` (what the manifest's ``string`` dtype means here)."""
    return np.array([str(v) for v in values], dtype=object)


# ------------------------------------------------------------------ v3.2.0: physics@2
#
# In v3.1.0 the tape band (0.5 point around the level) and the barrier band (2 points around
# the level) can never see anything: an event is the first trade within >= 5 points of the
# level, so every earlier trade, and the ten book levels on the defending side (2.25 points
# deep), lie outside both bands.  physics@2 measures them where they exist:
#
# - tape: trades in (t - tape_window_s, t] within ``tape_band_atr`` x ATR of the event price
#   (the tape at the price that is meeting the level);
# - barrier: the defending side's depth standing between the touch and the level, up to
#   ``barrier_band`` points beyond it (asks with px <= L + band for UP, bids with
#   px >= L - band for DOWN): the liquidity price must consume to reach and break the level.
#   Start = the first snapshot in (t - barrier_window_s, t], end = the snapshot as of t; NaN
#   when the window starts before the book is known (``series.book_known_from``).
# - fuel as in v3.1.0 (thresholds from the manifest).

@silver_stage("physics", version=2, step=6, parameters=(
    "physics.tape_band_atr", "physics.tape_window_s", "physics.velocity_window_s",
    "physics.barrier_band", "physics.barrier_window_s", "physics.barrier_delta_threshold",
    "physics.wall_ratio_low", "physics.wall_ratio_high", "physics.weak_depth",
    "physics.fuel_band", "physics.fuel_amplify_threshold", "physics.fuel_dampen_threshold"),
    columns=PHYSICS_COLUMNS)
def physics_v2(day: SilverDay) -> SilverDay:
    day.require("events", "trades", "mbp", "option_greeks")
    events = day.events
    t = events["ts_ns"].to_numpy(dtype=np.int64)
    level = events["level_price"].to_numpy(dtype=float)
    is_up = defending_is_ask(events["direction"])
    columns = {}
    columns.update(approach_tape(day, t, events["entry_price"].to_numpy(dtype=float),
                                 events["atr"].to_numpy(dtype=float)))
    columns.update(barrier_to_level(day, t, level, is_up))
    columns.update(fuel_features(day, t, level))
    return day.replace(events=add_columns(events, {c: columns[c] for c in PHYSICS_COLUMNS}))


def approach_tape(day: SilverDay, t: np.ndarray, price: np.ndarray, atr: np.ndarray) -> dict:
    """Aggressive buy/sell volume within ``tape_band_atr`` x ATR of ``price`` over
    (t - tape_window_s, t], their imbalance, and the tape velocity of v3.1.0."""
    trades = day.trades
    ts = trades["ts_ns"].to_numpy(dtype=np.int64)
    px = trades["price"].to_numpy(dtype=float)
    size = trades["size"].to_numpy(dtype=float)
    aggressor = trades["aggressor"].to_numpy()
    band = float(day.param("physics.tape_band_atr")) * np.nan_to_num(atr)
    lo, hi = window_bounds(ts, t, int(day.param("physics.tape_window_s")) * NS_PER_S)
    n = len(t)
    buy, sell = np.zeros(n), np.zeros(n)
    for i in range(n):
        a, b = lo[i], hi[i]
        near = np.abs(px[a:b] - price[i]) <= band[i]
        buy[i] = size[a:b][near & (aggressor[a:b] == 1)].sum()
        sell[i] = size[a:b][near & (aggressor[a:b] == -1)].sum()
    vlo, vhi = window_bounds(ts, t, int(day.param("physics.velocity_window_s")) * NS_PER_S)
    velocity = np.array([ols_slope((ts[a:b] - t[i]) / NS_PER_S, px[a:b])
                         for i, (a, b) in enumerate(zip(vlo, vhi))])
    return {"tape_buy_vol": buy, "tape_sell_vol": sell,
            "tape_imbalance": safe_div(buy - sell, buy + sell), "tape_velocity": velocity}


def depth_to_level(mbp: pd.DataFrame, rows: np.ndarray, is_ask: np.ndarray, level: np.ndarray,
                   band: float) -> np.ndarray:
    """Depth of snapshot ``rows[k]`` on the defending side standing between the touch and
    ``level[k] + band`` (asks, ``is_ask``) or ``level[k] - band`` (bids); NaN where
    ``rows[k] < 0``."""
    return _side_depth(mbp, rows, is_ask, level,
                       lambda prefix, px, lvl: (px <= lvl + band) if prefix == "ask"
                       else (px >= lvl - band), missing=np.nan)


def barrier_to_level(day: SilverDay, t: np.ndarray, level: np.ndarray, is_up: np.ndarray) -> dict:
    mbp = day.mbp
    ts = mbp["ts_ns"].to_numpy(dtype=np.int64)
    band = float(day.param("physics.barrier_band"))
    width = int(day.param("physics.barrier_window_s")) * NS_PER_S
    lo, hi = window_bounds(ts, t, width)
    end_row = asof_index(ts, t)
    start_row = np.where(hi > lo, lo, end_row)
    truncated = (t - width) < book_known_from(day)
    start = np.where(truncated, np.nan, depth_to_level(mbp, start_row, is_up, level, band))
    end = np.where(truncated, np.nan, depth_to_level(mbp, end_row, is_up, level, band))
    delta = end - start
    ratio = end / np.fmax(start, 1.0)
    state = barrier_state(day, np.nan_to_num(delta), np.nan_to_num(ratio, nan=1.0),
                          np.nan_to_num(end))
    state = np.where(truncated, "UNKNOWN", state).astype(object)
    return {"barrier_depth_start": start, "barrier_depth_end": end,
            "barrier_delta_liq": delta, "barrier_wall_ratio": ratio,
            "barrier_state": as_str_array(state)}
