"""Stage 8, order flow: true order-flow imbalance (OFI) before every event.

In: ``day.events`` (``ts_ns``) and ``day.mbp`` (``ts_ns, bid_px_1, bid_sz_1, ask_px_1,
ask_sz_1``: the best bid/ask of each 250 ms snapshot); parameter ``order_flow.windows_s``.
Out: ``events`` plus exactly the manifest's ``order_flow`` group.

OFI contribution of snapshot ``n`` (Cont, Kukanov & Stoikov 2014), from the best bid ``b``, bid
size ``bs``, best ask ``a`` and ask size ``as`` of snapshots ``n-1`` and ``n``::

    e_n = [b_n >= b_{n-1}] bs_n - [b_n <= b_{n-1}] bs_{n-1}
        - [a_n <= a_{n-1}] as_n + [a_n >= a_{n-1}] as_{n-1}

``e_0 = 0`` (no previous snapshot).  A side's term is 0 when either of its two prices is not a
real level (``px <= 0``: 0 marks a missing level), so a missing bid does not hide ask flow.
Positive OFI = buying pressure (bids growing / asks shrinking or lifted).

- ``ofi_{W}s`` for ``W`` in ``windows_s``: sum of ``e_n`` over the snapshots with ``ts_ns`` in
  ``(t - W s, t]`` (0.0 when none);
- ``ofi_acceleration = (ofi_short / short) / (ofi_long / long)`` with ``short`` / ``long`` the
  shortest / longest window of ``windows_s`` (30 s and 300 s in v3.1.0): the recent OFI rate
  relative to the longer-run rate; 0.0 when ``ofi_long`` is 0.

Guarantees: only snapshots with ``ts_ns <= t`` are read (``e_n`` of a snapshot in the window uses
snapshot ``n-1``, which is earlier still); window sums are prefix-sum differences over
``series.window_bounds``.  Columns are float64 and NaN-free (NaN sizes count as 0); an events
frame with 0 rows gets the columns, empty.  Inputs are not mutated.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from transforms.silver.day import SilverDay, add_columns
from transforms.silver.series import asof_index, book_known_from, safe_div, suffix, window_bounds
from transforms.silver.session import NS_PER_S
from transforms.silver.registry import silver_stage


@silver_stage("order_flow", step=8, parameters=("order_flow.windows_s",),
              columns=lambda p: [f"ofi_{suffix(w)}s" for w in p("order_flow.windows_s")]
              + ["ofi_acceleration"])
def order_flow(day: SilverDay) -> SilverDay:
    day.require("events", "mbp")
    t = day.events["ts_ns"].to_numpy(dtype=np.int64)
    ts = day.mbp["ts_ns"].to_numpy(dtype=np.int64)
    prefix = np.concatenate([[0.0], np.cumsum(ofi_contributions(day.mbp))])
    windows = list(day.param("order_flow.windows_s"))
    sums = {}
    for w in windows:
        lo, hi = window_bounds(ts, t, int(round(float(w) * NS_PER_S)))
        sums[w] = prefix[hi] - prefix[lo]
    columns = {f"ofi_{suffix(w)}s": sums[w] for w in windows}
    short, long_ = min(windows), max(windows)
    columns["ofi_acceleration"] = safe_div(sums[short] / float(short), sums[long_] / float(long_))
    return day.replace(events=add_columns(day.events, columns))


def ofi_contributions(mbp: pd.DataFrame) -> np.ndarray:
    """``e_n`` of every snapshot (see the module docstring); ``e_0 = 0``."""
    n = len(mbp)
    e = np.zeros(n)
    if n < 2:
        return e
    bid = mbp["bid_px_1"].to_numpy(dtype=float)
    bsz = np.nan_to_num(mbp["bid_sz_1"].to_numpy(dtype=float))
    ask = mbp["ask_px_1"].to_numpy(dtype=float)
    asz = np.nan_to_num(mbp["ask_sz_1"].to_numpy(dtype=float))
    b0, b1, bs0, bs1 = bid[:-1], bid[1:], bsz[:-1], bsz[1:]
    a0, a1, as0, as1 = ask[:-1], ask[1:], asz[:-1], asz[1:]
    bid_term = (b1 >= b0) * bs1 - (b1 <= b0) * bs0
    ask_term = (a1 >= a0) * as0 - (a1 <= a0) * as1
    bid_ok = (b0 > 0) & (b1 > 0)
    ask_ok = (a0 > 0) & (a1 > 0)
    e[1:] = np.where(bid_ok, bid_term, 0.0) + np.where(ask_ok, ask_term, 0.0)
    return e



# ------------------------------------------------------------------ v3.2.0: order_flow@2

BOOK_IMBALANCE_LEVELS = 5


@silver_stage("order_flow", version=2, step=8, parameters=("order_flow.windows_s",),
              columns=lambda p: [f"ofi_{suffix(w)}s" for w in p("order_flow.windows_s")]
              + ["ofi_acceleration", "book_imbalance_5"])
def order_flow_v2(day: SilverDay) -> SilverDay:
    """v3.1.0's OFI, NaN where the window ``(t - W, t]`` starts before the book is known
    (``series.book_known_from``: a truncated sum is not the OFI of the window), plus
    ``book_imbalance_5`` = (bid depth - ask depth) / (bid depth + ask depth) over the top 5
    levels of the last snapshot at or before t (the original's depth imbalance; NaN before
    the first snapshot, 0.0 for an empty book)."""
    day.require("events", "mbp")
    t = day.events["ts_ns"].to_numpy(dtype=np.int64)
    ts = day.mbp["ts_ns"].to_numpy(dtype=np.int64)
    known = book_known_from(day)
    prefix = np.concatenate([[0.0], np.cumsum(ofi_contributions(day.mbp))])
    windows = list(day.param("order_flow.windows_s"))
    sums = {}
    for w in windows:
        width = int(round(float(w) * NS_PER_S))
        lo, hi = window_bounds(ts, t, width)
        sums[w] = np.where(t - width >= known, prefix[hi] - prefix[lo], np.nan)
    columns = {f"ofi_{suffix(w)}s": sums[w] for w in windows}
    short, long_ = min(windows), max(windows)
    rate_long = sums[long_] / float(long_)
    columns["ofi_acceleration"] = np.where(np.isnan(rate_long) | np.isnan(sums[short]), np.nan,
                                           safe_div(sums[short] / float(short), rate_long))
    bid = sum(np.where(day.mbp[f"bid_px_{i}"].to_numpy(float) > 0,
                       np.nan_to_num(day.mbp[f"bid_sz_{i}"].to_numpy(float)), 0.0)
              for i in range(1, BOOK_IMBALANCE_LEVELS + 1)) if len(ts) else np.zeros(0)
    ask = sum(np.where(day.mbp[f"ask_px_{i}"].to_numpy(float) > 0,
                       np.nan_to_num(day.mbp[f"ask_sz_{i}"].to_numpy(float)), 0.0)
              for i in range(1, BOOK_IMBALANCE_LEVELS + 1)) if len(ts) else np.zeros(0)
    row = asof_index(ts, t)
    imbalance = safe_div(bid - ask, bid + ask) if len(ts) else np.zeros(0)
    columns["book_imbalance_5"] = np.where(row >= 0, imbalance[np.clip(row, 0, None)]
                                           if len(ts) else np.nan, np.nan)
    return day.replace(events=add_columns(day.events, columns))
