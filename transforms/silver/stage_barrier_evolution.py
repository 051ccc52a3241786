"""Stage 9, barrier evolution: how the defending side's top-of-book depth changed before each event.

In: ``day.events`` (``ts_ns, direction``) and ``day.mbp`` (``ts_ns, bid_px_i, bid_sz_i,
ask_px_i, ask_sz_i``); parameters ``barrier_evolution.depth_levels`` (N) and
``barrier_evolution.windows_min``.  Out: ``events`` plus exactly the manifest's
``barrier_evolution`` group.

Defending side: the asks for direction ``UP`` (price came from below; sellers defend), the bids
for ``DOWN``.  ``depth(x)`` = sum of the side's ``sz_1..sz_N`` in the last snapshot with
``ts_ns <= x`` (levels whose ``px`` is not a real price, ``px <= 0``, count 0; NaN sizes count
0); 0.0 before the first snapshot.  For an event at ``t``:

- ``depth_current = depth(t)``;
- for ``W`` in ``windows_min``: ``depth_change_{W}min = depth(t) - depth(t - W min)`` and
  ``depth_pct_change_{W}min = depth_change / depth(t - W min)`` (a fraction, 0.1 = +10 %;
  0.0 when ``depth(t - W min)`` is 0).

Guarantees: only snapshots with ``ts_ns <= t`` are read (``series.asof_values`` at ``t`` and
earlier).  Columns are float64 and NaN-free; an events frame with 0 rows gets the columns,
empty.  Inputs are not mutated.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from transforms.silver.day import SilverDay, add_columns
from transforms.silver.series import asof_values, book_known_from, safe_div, suffix
from transforms.silver.session import NS_PER_MIN
from transforms.silver.stage_physics import defending_is_ask
from transforms.silver.registry import silver_stage


def barrier_evolution_columns(windows) -> list:
    """Column names of the barrier_evolution group for ``barrier_evolution.windows_min``."""
    return ([f"depth_change_{suffix(w)}min" for w in windows]
            + [f"depth_pct_change_{suffix(w)}min" for w in windows] + ["depth_current"])


@silver_stage("barrier_evolution", step=9, parameters=(
    "barrier_evolution.windows_min", "barrier_evolution.depth_levels"),
    columns=lambda p: barrier_evolution_columns(p("barrier_evolution.windows_min")))
def barrier_evolution(day: SilverDay) -> SilverDay:
    events, t, is_ask, ts, ask_depth, bid_depth = _defending_depths(day)

    def depth_at(x: np.ndarray) -> np.ndarray:
        ask = asof_values(ts, ask_depth, x, default=0.0)
        bid = asof_values(ts, bid_depth, x, default=0.0)
        return np.where(is_ask, ask, bid)

    now = depth_at(t)
    windows = list(day.param("barrier_evolution.windows_min"))
    before = {w: depth_at(t - int(round(float(w) * NS_PER_MIN))) for w in windows}
    columns = {f"depth_change_{suffix(w)}min": now - before[w] for w in windows}
    columns.update({f"depth_pct_change_{suffix(w)}min": safe_div(now - before[w], before[w])
                    for w in windows})
    columns["depth_current"] = now
    return day.replace(events=add_columns(events, columns))


def _defending_depths(day: SilverDay):
    """(events, their times, defending side is the asks, snapshot times, top-N ask depth
    and top-N bid depth per snapshot)."""
    day.require("events", "mbp")
    events = day.events
    levels = int(day.param("barrier_evolution.depth_levels"))
    return (events, events["ts_ns"].to_numpy(dtype=np.int64),
            defending_is_ask(events["direction"]), day.mbp["ts_ns"].to_numpy(dtype=np.int64),
            top_depth(day.mbp, "ask", levels), top_depth(day.mbp, "bid", levels))


def top_depth(mbp: pd.DataFrame, side: str, levels: int) -> np.ndarray:
    """Per snapshot: sum of ``{side}_sz_1..levels`` over real price levels (``px > 0``)."""
    px = mbp[[f"{side}_px_{i}" for i in range(1, levels + 1)]].to_numpy(dtype=float)
    sz = mbp[[f"{side}_sz_{i}" for i in range(1, levels + 1)]].to_numpy(dtype=float)
    return np.where(px > 0, np.nan_to_num(sz), 0.0).sum(axis=1)



# ------------------------------------------------------------------ v3.2.0

@silver_stage("barrier_evolution", version=2, step=9, parameters=(
    "barrier_evolution.windows_min", "barrier_evolution.depth_levels"),
    columns=lambda p: barrier_evolution_columns(p("barrier_evolution.windows_min")))
def barrier_evolution_v2(day: SilverDay) -> SilverDay:
    """v3.1.0's barrier evolution with truncated windows NaN instead of 0: ``depth(x)`` is
    NaN when ``x`` is before the book is known (``series.book_known_from``), so
    ``depth_change_5min`` of an event five minutes after the book starts is not the current
    depth; ``depth_pct_change`` is NaN where the earlier depth is 0 or unknown."""
    events, t, is_ask, ts, ask_depth, bid_depth = _defending_depths(day)
    known = book_known_from(day)

    def depth_at(x: np.ndarray) -> np.ndarray:
        depth = np.where(is_ask, asof_values(ts, ask_depth, x), asof_values(ts, bid_depth, x))
        return np.where(x >= known, depth, np.nan)

    now = depth_at(t)
    windows = list(day.param("barrier_evolution.windows_min"))
    before = {w: depth_at(t - int(round(float(w) * NS_PER_MIN))) for w in windows}
    columns = {f"depth_change_{suffix(w)}min": now - before[w] for w in windows}
    columns.update({f"depth_pct_change_{suffix(w)}min":
                    np.where(before[w] > 0, (now - before[w]) / np.where(before[w] > 0,
                                                                          before[w], 1.0), np.nan)
                    for w in windows})
    columns["depth_current"] = now
    return day.replace(events=add_columns(events, columns))
