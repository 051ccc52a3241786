"""Stage 13 -- approach, time since open, normalised/sparse transforms and attempt
clustering (feature group ``approach``).

In
    ``day.events``: ``event_id, ts_ns, level_price, level_kind, entry_price, atr`` plus
    ``tape_buy_vol, tape_sell_vol, barrier_depth_end`` (stage 6) and
    ``gex_above_<K>strike, gex_below_<K>strike`` (stage 11, K = the widest band of
    ``gex.strike_bands``, i.e. 3).
    ``day.trades``: ``ts_ns, price``.  ``day.bars_1m``: ``bar_ns, close`` (a bar is known
    only once COMPLETED, at ``bar_ns + 60 s``).
    Parameters: ``approach.window_min`` (W = 10), ``approach.cluster_gap_min`` (15),
    ``approach.cluster_level_change`` (0.10 points), ``session.rth_start`` (+ timezone),
    ``gex.strike_bands``.

Notation: t = event ``ts_ns``, L = ``level_price``, x(s) = price of the last trade with
``ts_ns <= s``.  Point comparisons against ``cluster_level_change`` use a 1e-9 point float
tolerance (so a 0.10 move counts as "not more than 0.10").

Out
    ``approach_distance`` (float64) = ``|x(t - W) - L|``.
    ``approach_velocity`` (float64) = ``(|x(t - W) - L| - |x(t) - L|) / W`` points per
    minute, positive when price closed in on the level.
    Fallbacks (no NaN): x(t) undefined (no trade at or before t) -> ``entry_price``;
    x(t - W) undefined (no trade at or before t - W) -> x(t), i.e. distance = the current
    distance and velocity 0.0 ("no approach observed").
    ``approach_bars`` (int32) = number of consecutive COMPLETED 1-minute bars (rows of
    ``bars_1m`` with ``bar_ns + 60 s <= t``, i.e. the bars before the event's bar),
    counted backwards from the most recent one, whose ``|close - L|`` is strictly smaller
    than that of the bar before it (the previous ``bars_1m`` row; untraded minutes have no
    row and are skipped).  0 if the most recent completed bar did not get closer.
    ``prior_touches`` (int32) = number of events with ``ts_ns < t`` (strictly earlier), the
    same ``level_kind`` and ``|level_price - L| <= cluster_level_change``.
    ``minutes_since_open`` (float64) = ``(t - rth_start) / 60 s`` (negative before the open).
    ``bars_since_open`` (int32) = number of completed 1-minute bars (``bar_ns + 60 s <= t``)
    with ``bar_ns >= rth_start`` (0 before the open).
    ``distance_atr`` (float64) = ``|entry_price - L| / atr`` (0.0 if atr is 0 / not finite).
    ``distance_pct`` (float64) = ``|entry_price - L| / L * 100`` (0.0 if L is 0).
    ``log_tape_volume`` (float64) = ``log1p(tape_buy_vol + tape_sell_vol)``.
    ``log_barrier_depth`` (float64) = ``log1p(barrier_depth_end)``.  Both arguments are
    floored at 0 (a NaN counts as 0), so both are finite and >= 0.
    ``tape_volume_nonzero`` (bool) = ``tape_buy_vol + tape_sell_vol > 0``.
    ``gex_nonzero`` (bool) = ``gex_above_3strike != 0 or gex_below_3strike != 0``.
    Attempt clustering: the events are put in the order (``ts_ns``, ``level_kind``,
    ``event_id``) -- independent of the frame's row order.  Following the events of one
    ``level_kind`` in that order, an event starts a new cluster when it is the first of its
    kind, when its ``ts_ns`` is more than ``cluster_gap_min`` after the previous event of the
    kind, or when its ``level_price`` differs from that previous event's by more than
    ``cluster_level_change``; otherwise it joins the previous event's cluster.
    ``attempt_cluster_id`` (int32): clusters of all kinds numbered 0, 1, 2, ... over the
    date in the order of their first event.  ``attempt_index`` (int32): 1-based position of
    the event within its cluster.

Guarantees
    Causal: trades with ``ts_ns <= t``, completed bars only (``bar_ns + 60 s <= t``), and
    only events earlier in the order above (all with ``ts_ns <= t``) are used; adding or
    changing later trades, bars or events never changes an event's features.  The events
    frame is one trading date (SilverDay contract).  Pure: inputs are not mutated; the
    output is ``events`` plus exactly the group's 14 columns in manifest order.  Works on
    0 events and on empty trades / bars.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from transforms.silver.day import SilverDay, add_columns
from transforms.silver.series import asof_values, safe_div
from transforms.silver.session import NS_PER_MIN, session_ns
from transforms.silver.registry import silver_stage

_EPS = 1e-9          # float tolerance of level-change comparisons (points), not a parameter
_BAR_NS = NS_PER_MIN  # bars_1m: a bar covers [bar_ns, bar_ns + 1 min)
APPROACH_COLUMNS = ("approach_velocity", "approach_bars", "approach_distance", "prior_touches",
                    "minutes_since_open", "bars_since_open", "distance_atr", "distance_pct",
                    "log_tape_volume", "log_barrier_depth", "tape_volume_nonzero",
                    "gex_nonzero", "attempt_cluster_id", "attempt_index")


def _approach_bars(close: np.ndarray, n_done: int, level: float) -> int:
    """Trailing count of completed bars (the first ``n_done``) each closer to ``level``
    than the bar before it."""
    if n_done < 2:
        return 0
    d = np.abs(close[:n_done] - level)
    closer = d[1:] < d[:-1]               # closer[j]: bar j+1 closer than bar j
    not_closer = np.flatnonzero(~closer)
    return int(len(closer) - 1 - not_closer[-1]) if len(not_closer) else int(len(closer))


@silver_stage("approach", step=13, parameters=(
    "approach.window_min", "approach.cluster_gap_min", "approach.cluster_level_change",
    "gex.strike_bands", "session.timezone", "session.rth_start"), columns=APPROACH_COLUMNS)
def approach(day: SilverDay) -> SilverDay:
    day.require("events", "trades", "bars_1m")
    window_min = float(day.param("approach.window_min"))
    gap_ns = int(round(float(day.param("approach.cluster_gap_min")) * NS_PER_MIN))
    change = float(day.param("approach.cluster_level_change"))
    widest = max(day.param("gex.strike_bands"))
    rth_start = session_ns(day, "rth_start")
    window_ns = int(round(window_min * NS_PER_MIN))

    ev, trades, bars = day.events, day.trades, day.bars_1m
    n = len(ev)
    t = ev["ts_ns"].to_numpy(dtype=np.int64)
    level = ev["level_price"].to_numpy(dtype=float)
    entry = ev["entry_price"].to_numpy(dtype=float)
    atr = ev["atr"].to_numpy(dtype=float)
    kind = ev["level_kind"].to_numpy(dtype=np.int64)

    # -- price approach over the window ------------------------------------------------
    tr_ts = trades["ts_ns"].to_numpy(dtype=np.int64) if len(trades) else np.empty(0, np.int64)
    tr_px = trades["price"].to_numpy(dtype=float) if len(trades) else np.empty(0)
    order = np.argsort(tr_ts, kind="stable")
    tr_ts, tr_px = tr_ts[order], tr_px[order]
    x_now = asof_values(tr_ts, tr_px, t)
    x_now = np.where(np.isnan(x_now), entry, x_now)
    x_then = asof_values(tr_ts, tr_px, t - window_ns)
    x_then = np.where(np.isnan(x_then), x_now, x_then)
    dist_then = np.abs(x_then - level)
    dist_now = np.abs(x_now - level)
    approach_distance = dist_then
    approach_velocity = (dist_then - dist_now) / window_min

    # -- completed bars ---------------------------------------------------------------
    b_ns = bars["bar_ns"].to_numpy(dtype=np.int64) if len(bars) else np.empty(0, np.int64)
    b_close = bars["close"].to_numpy(dtype=float) if len(bars) else np.empty(0)
    order = np.argsort(b_ns, kind="stable")
    b_ns, b_close = b_ns[order], b_close[order]
    n_done = np.searchsorted(b_ns + _BAR_NS, t, side="right")   # bars with bar_ns+60s <= t
    first_rth = np.searchsorted(b_ns, rth_start, side="left")
    bars_since_open = np.maximum(n_done - first_rth, 0).astype(np.int32)
    approach_bars = np.array([_approach_bars(b_close, int(n_done[i]), level[i]) for i in range(n)],
                             dtype=np.int32)

    # -- prior touches and attempt clustering ------------------------------------------
    prior = np.zeros(n, dtype=np.int32)
    for i in range(n):
        same = (kind == kind[i]) & (t < t[i]) & (np.abs(level - level[i]) <= change + _EPS)
        prior[i] = int(same.sum())

    cluster_id = np.zeros(n, dtype=np.int32)
    attempt_index = np.zeros(n, dtype=np.int32)
    if n:
        keys = pd.DataFrame({"t": t, "k": kind, "e": ev["event_id"].astype(str).to_numpy()})
        seq = keys.sort_values(["t", "k", "e"], kind="mergesort").index.to_numpy()
        last = {}        # kind -> (ts, level, cluster id, index of the previous event)
        next_id = 0
        for pos in seq:
            prev = last.get(kind[pos])
            if (prev is None or t[pos] - prev[0] > gap_ns
                    or abs(level[pos] - prev[1]) > change + _EPS):
                cid, idx = next_id, 1
                next_id += 1
            else:
                cid, idx = prev[2], prev[3] + 1
            cluster_id[pos], attempt_index[pos] = cid, idx
            last[kind[pos]] = (t[pos], level[pos], cid, idx)

    # -- normalised distances and sparse transforms ------------------------------------
    gap = np.abs(entry - level)
    tape_vol = ev["tape_buy_vol"].to_numpy(dtype=float) + ev["tape_sell_vol"].to_numpy(dtype=float)
    depth = ev["barrier_depth_end"].to_numpy(dtype=float)
    g_above = ev[f"gex_above_{widest}strike"].to_numpy(dtype=float)
    g_below = ev[f"gex_below_{widest}strike"].to_numpy(dtype=float)

    out = {
        "approach_velocity": approach_velocity.astype(np.float64),
        "approach_bars": approach_bars,
        "approach_distance": approach_distance.astype(np.float64),
        "prior_touches": prior,
        "minutes_since_open": ((t - rth_start) / NS_PER_MIN).astype(np.float64),
        "bars_since_open": bars_since_open,
        "distance_atr": safe_div(gap, atr).astype(np.float64),
        "distance_pct": (safe_div(gap, level) * 100.0).astype(np.float64),
        "log_tape_volume": np.log1p(np.fmax(tape_vol, 0.0)).astype(np.float64),
        "log_barrier_depth": np.log1p(np.fmax(depth, 0.0)).astype(np.float64),
        "tape_volume_nonzero": (tape_vol > 0).astype(bool),
        "gex_nonzero": ((g_above != 0) | (g_below != 0)).astype(bool),
        "attempt_cluster_id": cluster_id,
        "attempt_index": attempt_index,
    }
    return day.replace(events=add_columns(ev, out))


# ------------------------------------------------------------------ v3.2.0: approach@2

# (trend column, the event column whose change within the attempt cluster it measures)
CLUSTER_TRENDS = (("barrier_wall_ratio_trend", "barrier_wall_ratio"),
                  ("barrier_delta_liq_trend", "barrier_delta_liq"),
                  ("tape_velocity_trend", "tape_velocity"),
                  ("tape_imbalance_trend", "tape_imbalance"))
# v3.1.0 flags of sparse features that physics@2 / gex@2 made dense (always True): dropped
DROPPED_IN_V2 = ("tape_volume_nonzero", "gex_nonzero")
APPROACH_V2_COLUMNS = tuple(c for c in APPROACH_COLUMNS if c not in DROPPED_IN_V2) + tuple(
    name for name, _ in CLUSTER_TRENDS)


@silver_stage("approach", version=2, step=13, parameters=(
    "approach.window_min", "approach.cluster_gap_min", "approach.cluster_level_change",
    "gex.strike_bands", "session.timezone", "session.rth_start"), columns=APPROACH_V2_COLUMNS)
def approach_v2(day: SilverDay) -> SilverDay:
    """v3.1.0's approach features without the two sparse-feature flags (``DROPPED_IN_V2``),
    plus the within-cluster trends of the original: for an event that is not the first
    attempt of its cluster, ``<x>_trend`` = its ``x`` minus ``x`` of the cluster's first
    attempt (how the barrier and the tape changed from one test of the level to the next);
    NaN on a cluster's first attempt, which has nothing to compare with.  Causal: the first
    attempt of a cluster is never later than the event."""
    out = approach(day)
    ev = out.events
    cluster = ev["attempt_cluster_id"].to_numpy()
    first = ev["attempt_index"].to_numpy() == 1
    first_row = {c: i for i, c in enumerate(cluster) if first[i]}
    anchor = np.array([first_row[c] for c in cluster], dtype=np.int64) if len(ev) else \
        np.zeros(0, np.int64)
    trends = {}
    for name, source in CLUSTER_TRENDS:
        x = ev[source].to_numpy(dtype=float)
        trends[name] = np.where(first, np.nan, x - x[anchor]) if len(ev) else np.zeros(0)
    ev = add_columns(ev.drop(columns=list(DROPPED_IN_V2)), trends)
    return out.replace(events=ev)
