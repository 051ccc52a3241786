"""Stage 0, ``load_bronze``: the date's raw Bronze frames -> the frames the stages use.

In: a :class:`SilverDay` whose ``trades``/``mbp``/``options``/``warmup`` hold the Bronze
rows as read by ``io_connectors.lake.silver_inputs`` (Bronze column names, front-month contract
only, redelivery duplicates removed).  Out: the same day with

- ``trades``: ``ts_ns, price, size, aggressor`` (sorted by time, stable);
- ``mbp``: the book window ``[bronze.mbp_window_start, bronze.mbp_window_end)`` local time,
  sampled every ``bronze.mbp_downsample_ms``: the LAST update of each bucket, stamped with
  the bucket's END (``ts_ns`` = the instant at which that is the book).  This keeps the
  sampling causal: whether a row exists, and what it holds, depends only on updates at or
  before its stamp.  (Stamping the kept update with its own time is not causal: the
  update kept for the bucket around an event depends on whether later updates in the same
  bucket exist, which the Gold causality spot check caught.);
- ``options``: ``ts_ns, strike, right, price, size, aggressor, exp_date``;
- ``warmup``: ``ts_ns, price``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from transforms.silver.day import SilverDay
from transforms.silver.session import local_ns
from transforms.silver.registry import silver_stage

MBP_LEVELS = 10
MBP_COLUMNS = (["ts_ns"] + [f"bid_px_{i}" for i in range(1, MBP_LEVELS + 1)]
               + [f"bid_sz_{i}" for i in range(1, MBP_LEVELS + 1)]
               + [f"ask_px_{i}" for i in range(1, MBP_LEVELS + 1)]
               + [f"ask_sz_{i}" for i in range(1, MBP_LEVELS + 1)])
TRADE_COLUMNS = ["ts_ns", "price", "size", "aggressor"]
OPTION_COLUMNS = ["ts_ns", "strike", "right", "price", "size", "aggressor", "exp_date"]


def _sorted(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = df.rename(columns={"ts_event_ns": "ts_ns"})
    out = out[columns] if len(out.columns) else pd.DataFrame(columns=columns)
    return out.sort_values("ts_ns", kind="stable").reset_index(drop=True)


def sample_book(mbp: pd.DataFrame, bucket_ns: int) -> pd.DataFrame:
    """The last update of each ``bucket_ns`` bucket, stamped at the bucket end."""
    ts = mbp["ts_ns"].to_numpy(np.int64)
    out = mbp.iloc[downsample_last(ts, bucket_ns)].reset_index(drop=True)
    out["ts_ns"] = (out["ts_ns"].to_numpy(np.int64) // bucket_ns + 1) * bucket_ns
    return out


def downsample_last(ts: np.ndarray, bucket_ns: int) -> np.ndarray:
    """Indices of the last row of each ``bucket_ns`` bucket of sorted ``ts``."""
    if len(ts) == 0:
        return np.zeros(0, dtype=np.int64)
    bucket = ts // bucket_ns
    return np.flatnonzero(np.append(bucket[1:] != bucket[:-1], True))


@silver_stage("load_bronze", step=0, parameters=(
    "session.timezone", "bronze.front_month_only", "bronze.mbp_downsample_ms",
    "bronze.mbp_window_start", "bronze.mbp_window_end"))
def load_bronze(day: SilverDay) -> SilverDay:
    lo = local_ns(day.date, day.param("bronze.mbp_window_start"), day.param("session.timezone"))
    return _load(day, lo)


# (parameter, seconds per unit) of every lookback that reads the book (v3.2.0's stages)
BOOK_LOOKBACKS = (("order_flow.windows_s", 1), ("barrier_evolution.windows_min", 60),
                  ("physics.barrier_window_s", 1))


def book_window_start(day: SilverDay) -> int:
    """load_bronze@2's book window start (UTC ns): ``rth_filter.start`` minus the longest
    lookback of ``BOOK_LOOKBACKS`` minus one sampling bucket, floored to the minute, so that
    no window of an event inside the RTH filter is truncated."""
    longest = max(max(float(v) for v in _as_list(day.param(key))) * unit
                  for key, unit in BOOK_LOOKBACKS)
    start = local_ns(day.date, day.param("rth_filter.start"), day.param("session.timezone"))
    bucket = int(day.param("bronze.mbp_downsample_ms")) * 1_000_000
    lo = start - int(round(longest * 1e9)) - bucket
    return lo - lo % (60 * 1_000_000_000)


def _as_list(value):
    return value if isinstance(value, (list, tuple)) else [value]


@silver_stage("load_bronze", version=2, step=0, parameters=(
    "session.timezone", "bronze.front_month_only", "bronze.mbp_downsample_ms",
    "bronze.mbp_window_end", "rth_filter.start") + tuple(k for k, _ in BOOK_LOOKBACKS))
def load_bronze_v2(day: SilverDay) -> SilverDay:
    """As ``load_bronze``, but the book window starts at :func:`book_window_start` (derived
    from the longest lookback, not a fixed 09:26) and the day records that start
    (``book_start_ns``) so that later stages can tell a truncated window."""
    lo = book_window_start(day)
    return _load(day, lo).replace(book_start_ns=lo)


def _load(day: SilverDay, lo: int) -> SilverDay:
    day.require("trades", "mbp", "options")
    tz = day.param("session.timezone")
    trades = _sorted(day.trades, TRADE_COLUMNS).astype(
        {"ts_ns": np.int64, "price": float, "size": np.int64, "aggressor": np.int8})
    mbp = _sorted(day.mbp, MBP_COLUMNS)
    hi = local_ns(day.date, day.param("bronze.mbp_window_end"), tz)
    ts = mbp["ts_ns"].to_numpy(np.int64)
    mbp = mbp[(ts >= lo) & (ts < hi)].reset_index(drop=True)
    mbp = sample_book(mbp, int(day.param("bronze.mbp_downsample_ms")) * 1_000_000)
    options = _sorted(day.options, OPTION_COLUMNS)
    warmup = _sorted(day.warmup if day.warmup is not None else pd.DataFrame(),
                     ["ts_ns", "price"])
    return day.replace(trades=trades, mbp=mbp, options=options, warmup=warmup)
