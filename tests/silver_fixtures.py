"""Small hand-built inputs for the Silver stage tests.

- ``MANIFEST`` / ``PARAMS`` / ``KINDS``: the v3.1.0 feature manifest, its parameters and the
  level kind codes; ``group_names`` and the ``assert_*`` helpers check a stage's output
  against a manifest feature group.
- ``at`` / ``clock``: UTC epoch ns of a local (America/New_York) time on a date.
- Frame builders shaped like the stages' inputs: ``events_frame`` (stage-5 events: identity
  columns plus ``atr``, ``bar_ns``), ``declared_events_frame`` (events with every manifest
  column), ``trades_frame``, ``book_frame`` (MBP-10), ``option_greeks_frame``.
- ``day_with``: a ``SilverDay`` carrying the manifest's declared columns.
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Callable, Iterable, Mapping, Optional

import numpy as np
import pandas as pd
import yaml

from transforms.feature_manifest import load_manifest
from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_MIN, NS_PER_S, local_ns

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST_PATH = os.path.join(ROOT, "configs", "features", "v3.1.0.yaml")
MANIFEST = load_manifest(MANIFEST_PATH)
with open(MANIFEST_PATH, encoding="utf-8") as _fh:
    PARAMS = yaml.safe_load(_fh)["parameters"]
KINDS = PARAMS["levels"]["kind_codes"]          # level kind name -> code ("OR_HIGH" -> 2)

# ts_ns, then bid_px_1..10, bid_sz_1..10, ask_px_1..10, ask_sz_1..10 (the stage-0 mbp frame)
BOOK_COLUMNS = ["ts_ns"] + [f"{side}_{k}_{i}" for side in ("bid", "ask") for k in ("px", "sz")
                            for i in range(1, 11)]


# ---------------------------------------------------------------- clock

def at(date: str, hhmm: str, seconds: float = 0) -> int:
    return local_ns(date, hhmm) + int(seconds * NS_PER_S)


def clock(date: str) -> Callable[..., int]:
    """``at`` bound to ``date``: ``at = clock(DATE); at("10:00", 30)``."""
    def at_date(hhmm: str, seconds: float = 0) -> int:
        return at(date, hhmm, seconds)
    return at_date


# ---------------------------------------------------------------- manifest groups

def group_names(group: str) -> list:
    """The column names of the manifest feature group ``group``, in declared order."""
    return [c.name for c in MANIFEST.group(group).columns]


def assert_group_dtypes(frame: pd.DataFrame, group: str, no_missing: bool = False) -> None:
    """Every column of ``group`` in ``frame`` has its declared dtype (a ``string`` column:
    every value a ``str``); with ``no_missing`` the non-string ones hold no NaN either."""
    for c in MANIFEST.group(group).columns:
        values = frame[c.name]
        if c.dtype == "string":
            assert all(type(v) is str for v in values), c.name
        else:
            assert values.dtype == np.dtype(c.dtype), c.name
            if no_missing:
                assert not values.isna().any(), c.name


def assert_adds_group_columns(before: pd.DataFrame, after: pd.DataFrame, group: str,
                              no_missing: bool = False) -> None:
    """``after`` has exactly ``before``'s columns plus ``group``'s, appended in declared order,
    with their declared dtypes (see ``assert_group_dtypes``)."""
    assert [c for c in after.columns if c not in before.columns] == group_names(group)
    assert_group_dtypes(after, group, no_missing)


# ---------------------------------------------------------------- events

def events_frame(date: str, rows: Iterable[Mapping],
                 extra: Optional[Mapping[str, float]] = None) -> pd.DataFrame:
    """Events as stage 5 emits them: the identity columns plus ``atr`` and ``bar_ns``.

    ``rows``: dicts with ``ts_ns`` and any of ``kind`` ("OR_HIGH"), ``level_price``
    (5000.0), ``direction`` ("UP"), ``entry_price`` (the level), ``zone_width`` (5.0),
    ``atr`` (2.0), ``bar_ns`` (the minute of ``ts_ns``).  ``extra``: further float columns
    appended after ``bar_ns`` with their default values, each overridable per row."""
    rows = list(rows)
    ts = np.array([r["ts_ns"] for r in rows], dtype=np.int64)
    kinds = [r.get("kind", "OR_HIGH") for r in rows]
    level = np.array([r.get("level_price", 5000.0) for r in rows], dtype=float)
    direction = [r.get("direction", "UP") for r in rows]

    def floats(name, default):
        return np.array([r.get(name, default) for r in rows], dtype=float)

    frame = pd.DataFrame({
        "event_id": [f"{date}_{k}_{int(lv * 100)}_{t}_{d}"
                     for t, k, lv, d in zip(ts, kinds, level, direction)],
        "ts_ns": ts,
        "timestamp": pd.to_datetime(ts, utc=True),
        "level_price": level,
        "level_kind": np.array([KINDS[k] for k in kinds], dtype=np.int8),
        "level_kind_name": kinds,
        "direction": direction,
        "entry_price": np.array([r.get("entry_price", lv) for r, lv in zip(rows, level)],
                                dtype=float),
        "zone_width": floats("zone_width", 5.0),
        "date": [dt.date.fromisoformat(date)] * len(rows),
        "atr": floats("atr", 2.0),
        "bar_ns": np.array([r.get("bar_ns", t - t % NS_PER_MIN) for r, t in zip(rows, ts)],
                           dtype=np.int64),
    })
    for name, default in (extra or {}).items():
        frame[name] = floats(name, default)
    return frame


def _zero(dtype: str):
    return {"string": "NEUTRAL", "bool": False, "int8": 0, "int16": 0, "int32": 0,
            "int64": 0, "float32": 0.0, "float64": 0.0}[dtype]


def declared_events_frame(date: str, rows: Iterable[Mapping],
                          defaults: Optional[Mapping] = None) -> pd.DataFrame:
    """Events with every manifest column, in manifest order, sorted by ``ts_ns``.

    ``rows``: dicts of column overrides with ``ts_ns`` and optionally ``kind`` ("OR_HIGH"),
    ``level_price`` (5000.0), ``direction`` ("UP"); ``event_id`` is
    ``{date}_{kind code}_{level cents}_{ts}_{direction}``, ``entry_price`` the level,
    ``zone_width`` 5.0, outcomes "CHOP"; any other column takes ``defaults[column]`` if
    given, else 0 / 0.0 / False / "NEUTRAL"."""
    rows = list(rows)
    data = {}
    for name, dtype in MANIFEST.columns():
        vals = []
        for r in rows:
            ts, kind = r["ts_ns"], r.get("kind", "OR_HIGH")
            level, direction = r.get("level_price", 5000.0), r.get("direction", "UP")
            ident = {
                "event_id": f"{date}_{KINDS[kind]}_{int(level * 100)}_{ts}_{direction}",
                "ts_ns": ts, "timestamp": ts,
                "level_price": level, "level_kind": KINDS[kind], "level_kind_name": kind,
                "direction": direction, "entry_price": level, "zone_width": 5.0,
                "date": dt.date.fromisoformat(date),
                "outcome": "CHOP", "outcome_2min": "CHOP", "outcome_8min": "CHOP",
                **(defaults or {}),
            }
            vals.append(r[name] if name in r else
                        ident[name] if name in ident else _zero(dtype))
        np_dtype = {"int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64",
                    "float32": "float32", "float64": "float64", "bool": "bool"}.get(dtype)
        if dtype == "timestamp[ns, UTC]":
            data[name] = pd.to_datetime(pd.Series(vals, dtype="int64"), unit="ns", utc=True)
        elif np_dtype:
            data[name] = pd.Series(vals, dtype=np_dtype)
        else:
            data[name] = pd.Series(vals, dtype=object)
    return pd.DataFrame(data).sort_values("ts_ns", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- market data

def trades_frame(rows) -> pd.DataFrame:
    """rows: (ts_ns, price[, size[, aggressor]]), size and aggressor 1 when left out; kept
    in the given order."""
    full = [(int(r[0]), float(r[1]), int(r[2]) if len(r) > 2 else 1,
             int(r[3]) if len(r) > 3 else 1) for r in rows]
    return pd.DataFrame(full, columns=["ts_ns", "price", "size", "aggressor"]).astype(
        {"ts_ns": np.int64, "price": float, "size": np.int64, "aggressor": np.int8})


def book_frame(rows: Iterable[Mapping]) -> pd.DataFrame:
    """An MBP-10 frame (``BOOK_COLUMNS``) sorted by ``ts_ns``; rows: dicts with ``ts_ns`` and
    any ``bid_px_3`` / ``ask_sz_1`` ... values, every other price and size 0.0 (missing)."""
    rows = list(rows)
    frame = pd.DataFrame({
        "ts_ns": np.array([r["ts_ns"] for r in rows], dtype=np.int64),
        **{c: np.array([r.get(c, 0.0) for r in rows], dtype=float) for c in BOOK_COLUMNS[1:]},
    })
    return frame.sort_values("ts_ns", kind="stable").reset_index(drop=True)


def option_greeks_frame(rows, right: Optional[str] = None) -> pd.DataFrame:
    """Stage-3 option trades sorted by ``ts_ns``, every one a one-lot buy with gamma 0.01;
    rows: (ts_ns, strike, right, dealer_gamma), or (ts_ns, strike, dealer_gamma) when
    ``right`` ("C" / "P") is given for all of them."""
    columns = ["ts_ns", "strike", "dealer_gamma"] if right else \
        ["ts_ns", "strike", "right", "dealer_gamma"]
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.astype({"ts_ns": np.int64, "strike": float, "dealer_gamma": float})
    if right:
        frame["right"] = right
    frame["size"] = 1
    frame["aggressor"] = 1
    frame["gamma"] = 0.01
    return frame.sort_values("ts_ns", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- day

def day_with(date: str, trades=None, params=None, **frames) -> SilverDay:
    return SilverDay(date=date, params=params or PARAMS, trades=trades,
                     columns=tuple(MANIFEST.columns()),
                     label_columns=tuple(MANIFEST.label_columns), **frames)
