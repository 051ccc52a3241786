"""Stage 7, kinematics: velocity, acceleration and jerk of price before every event.

In: ``day.events`` (``ts_ns``) and ``day.trades`` (``ts_ns, price``); parameter
``kinematics.windows_min``.  Out: ``events`` plus exactly the manifest's ``kinematics`` group.

For an event at time ``t`` let ``p(x)`` be the price of the last trade with ``ts_ns <= x`` (as
of ``x``), or the price of the day's first trade when ``x`` precedes every trade.  For each
window ``W`` (minutes) of ``windows_min``, with ``p_k = p(t - k*W)``:

- ``velocity_{W}min     = (p0 - p1) / W``                      (points per minute)
- ``acceleration_{W}min = (p0 - 2 p1 + p2) / W**2``            (points per minute**2)
- ``jerk_{W}min         = (p0 - 3 p1 + 3 p2 - p3) / W**3``     (points per minute**3)

(backward finite differences).  The level is constant, so these are also the derivatives of the
level-relative position ``p - level_price``.  ``momentum_trend = velocity over 5 min - velocity
over 20 min`` (the fixed definition of that column, computed the same way whether or not 5 and
20 are among ``windows_min``).

Guarantees: only trades with ``ts_ns <= t`` are read (all look-ups are ``series.asof_index`` at
``t`` or earlier; the first-trade fall-back is used only when that trade is at or before ``t``).
When there is no trade at or before ``t`` at all, there is no causal price and every column is
0.0.  Columns are float64 and NaN-free for finite prices; an events frame with 0 rows gets the
columns, empty.  Inputs are not mutated.
"""
from __future__ import annotations

import numpy as np

from transforms.silver.day import SilverDay, add_columns
from transforms.silver.series import asof_index, suffix
from transforms.silver.session import NS_PER_MIN
from transforms.silver.registry import silver_stage

# momentum_trend = velocity over MOMENTUM_FAST_MIN minutes - velocity over MOMENTUM_SLOW_MIN.
MOMENTUM_FAST_MIN = 5
MOMENTUM_SLOW_MIN = 20


def kinematics_columns(windows) -> list:
    """Column names of the kinematics group for ``kinematics.windows_min``."""
    return ([f"{name}_{suffix(w)}min" for name in ("velocity", "acceleration", "jerk")
             for w in windows] + ["momentum_trend"])


@silver_stage("kinematics", step=7, parameters=("kinematics.windows_min",),
              columns=lambda p: kinematics_columns(p("kinematics.windows_min")))
def kinematics(day: SilverDay) -> SilverDay:
    day.require("events", "trades")
    t = day.events["ts_ns"].to_numpy(dtype=np.int64)
    ts = day.trades["ts_ns"].to_numpy(dtype=np.int64)
    price = day.trades["price"].to_numpy(dtype=float)
    has_price = asof_index(ts, t) >= 0
    windows = list(day.param("kinematics.windows_min"))
    derivs = {w: derivatives(ts, price, t, w, has_price) for w in windows}
    columns = {}
    for k, name in enumerate(("velocity", "acceleration", "jerk")):
        for w in windows:
            columns[f"{name}_{suffix(w)}min"] = derivs[w][k]
    fast = derivatives(ts, price, t, MOMENTUM_FAST_MIN, has_price)[0]
    slow = derivatives(ts, price, t, MOMENTUM_SLOW_MIN, has_price)[0]
    columns["momentum_trend"] = fast - slow
    return day.replace(events=add_columns(day.events, columns))


def price_asof(ts: np.ndarray, price: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Last trade price at or before ``x``; the first trade's price before all trades."""
    if len(ts) == 0:
        return np.zeros(len(x))
    return price[np.maximum(asof_index(ts, x), 0)]


def derivatives(ts, price, t, window_min, has_price):
    """(velocity, acceleration, jerk) over ``window_min`` minutes; 0.0 where ``~has_price``."""
    step = int(round(float(window_min) * NS_PER_MIN))
    p0, p1, p2, p3 = (price_asof(ts, price, t - k * step) for k in range(4))
    w = float(window_min)
    out = ((p0 - p1) / w, (p0 - 2 * p1 + p2) / w ** 2, (p0 - 3 * p1 + 3 * p2 - p3) / w ** 3)
    return tuple(np.where(has_price, v, 0.0).astype(np.float64) for v in out)



# ------------------------------------------------------------------ v3.2.0: kinematics@2

def level_frame_columns(windows) -> list:
    """The direction-signed (level-frame) columns kinematics@2 adds."""
    return ([f"level_{name}_{suffix(w)}min" for name in ("velocity", "acceleration", "jerk")
             for w in windows] + ["level_momentum_trend"])


@silver_stage("kinematics", version=2, step=7, parameters=("kinematics.windows_min",),
              columns=lambda p: kinematics_columns(p("kinematics.windows_min"))
              + level_frame_columns(p("kinematics.windows_min")))
def kinematics_v2(day: SilverDay) -> SilverDay:
    """v3.1.0's kinematics, NaN (not the first trade's price) where a lookback point
    ``t - k W`` it needs precedes the day's first trade (a truncated window), plus the same
    derivatives in the level's frame: multiplied by +1 for UP and -1 for DOWN, so positive
    means moving towards (and through) the level whichever side price came from."""
    day.require("events", "trades")
    t = day.events["ts_ns"].to_numpy(dtype=np.int64)
    ts = day.trades["ts_ns"].to_numpy(dtype=np.int64)
    price = day.trades["price"].to_numpy(dtype=float)
    sign = np.where(day.events["direction"].astype(str).to_numpy() == "UP", 1.0, -1.0)
    first = ts[0] if len(ts) else np.iinfo(np.int64).max
    windows = list(day.param("kinematics.windows_min"))

    def derivs(w):              # the k-th derivative looks back k windows
        step = int(round(float(w) * NS_PER_MIN))
        values = derivatives(ts, price, t, w, np.ones(len(t), dtype=bool))
        return tuple(np.where(t - (k + 1) * step >= first, v, np.nan)
                     for k, v in enumerate(values))

    d = {w: derivs(w) for w in windows}
    columns = {}
    for k, name in enumerate(("velocity", "acceleration", "jerk")):
        for w in windows:
            columns[f"{name}_{suffix(w)}min"] = d[w][k]
    fast = d[MOMENTUM_FAST_MIN][0] if MOMENTUM_FAST_MIN in d else derivs(MOMENTUM_FAST_MIN)[0]
    slow = d[MOMENTUM_SLOW_MIN][0] if MOMENTUM_SLOW_MIN in d else derivs(MOMENTUM_SLOW_MIN)[0]
    columns["momentum_trend"] = fast - slow
    for k, name in enumerate(("velocity", "acceleration", "jerk")):
        for w in windows:
            columns[f"level_{name}_{suffix(w)}min"] = sign * d[w][k]
    columns["level_momentum_trend"] = sign * columns["momentum_trend"]
    return day.replace(events=add_columns(day.events, columns))
