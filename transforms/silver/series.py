"""Causal look-ups over time-sorted arrays (pure numpy).

All functions take ``ts`` sorted ascending (int64 ns).  "As of t" means the last element
with ``ts <= t``; windows are ``(t - width, t]`` unless stated: nothing after ``t`` is
ever returned, which is what keeps Silver features causal.
"""
from __future__ import annotations

import numpy as np


def asof_index(ts: np.ndarray, t) -> np.ndarray:
    """Index of the last element with ``ts <= t`` (-1 if none), vectorised over ``t``."""
    return np.searchsorted(ts, t, side="right") - 1


def asof_values(ts: np.ndarray, values: np.ndarray, t, default=np.nan) -> np.ndarray:
    """``values`` as of each ``t`` (``default`` before the first element)."""
    idx = asof_index(ts, t)
    vals = np.asarray(values, dtype=float)
    out = np.where(idx >= 0, vals[np.clip(idx, 0, max(len(vals) - 1, 0))] if len(vals) else default,
                   default)
    return out.astype(float)


def window_bounds(ts: np.ndarray, t, width_ns, closed_left: bool = False):
    """``(lo, hi)`` index bounds of the window ``(t - width, t]`` (``[t - width, t]`` with
    ``closed_left``), so ``ts[lo:hi]`` is the window; vectorised over ``t``."""
    t = np.asarray(t)
    lo = np.searchsorted(ts, t - width_ns, side="left" if closed_left else "right")
    hi = np.searchsorted(ts, t, side="right")
    return lo, hi


def safe_div(num, den, default: float = 0.0) -> np.ndarray:
    """``num / den`` elementwise with ``default`` where ``den`` is 0 or not finite."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    ok = np.isfinite(den) & (den != 0)
    return np.where(ok, num / np.where(ok, den, 1.0), default)


def book_known_from(day) -> int:
    """The instant (UTC ns) from which ``day.mbp`` describes the book: ``day.book_start_ns``
    when the stage that loaded it says so, else its first row (nothing is known before)."""
    ts = day.mbp["ts_ns"].to_numpy(np.int64) if day.mbp is not None else np.zeros(0, np.int64)
    first = int(ts[0]) if len(ts) else np.iinfo(np.int64).max
    return first if day.book_start_ns is None else max(int(day.book_start_ns), first)


def suffix(w) -> str:
    """Column suffix of a window or band: 5 -> '5', 2.0 -> '2', 2.5 -> '2.5'."""
    return str(int(w)) if float(w).is_integer() else str(w)
