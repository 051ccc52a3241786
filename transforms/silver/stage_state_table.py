"""Stage 16 -- state table: the market state per level kind on a fixed time grid.

``state_table(day)`` returns ``day.replace(state_table=frame)``; the events frame is not
changed.  Inputs: ``day.events`` (stage 15 output), ``day.trades``, ``day.levels``.
Parameters: ``state_table.grid_s``, ``rth_filter.start``, ``rth_filter.end``,
``session.timezone``, ``levels.kind_codes``.

Grid
    ``ts = start + k * grid_s`` seconds for every ``k >= 0`` with ``ts < end``, where
    ``start``/``end`` are ``rth_filter.start``/``rth_filter.end`` (local wall-clock time of the
    date in ``session.timezone``, so daylight saving is honoured).  With 09:30-12:30 and 30 s
    this is 360 grid times.  Each grid time is crossed with every level kind of
    ``levels.kind_codes`` (6), giving ``len(grid) x len(kinds)`` rows sorted by
    ``(ts_ns, level_kind)``.

Columns (in this order)
    - ``ts_ns`` int64: the grid time (UTC epoch ns); ``timestamp``: the same as
      ``timestamp[ns, UTC]``.
    - ``level_kind`` int8 (the kind code), ``level_kind_name`` (object, e.g. ``'OR_HIGH'``).
    - ``level_price`` float64: the kind's column of ``day.levels`` in the row of the last bar
      with ``bar_ns <= ts`` (a level row holds the value as known at the bar's start, so it is
      known at ``ts``); NaN when no such bar exists, the kind has no column, or the level does
      not exist yet.
    - ``price`` float64: price of the last trade with ``ts_ns <= ts`` (NaN before the first).
    - ``distance`` float64: ``price - level_price``.
    - ``last_event_id`` (object): ``event_id`` of the latest event of this kind with
      ``ts_ns <= ts`` (ties on ``ts_ns`` are broken by ``event_id``, the largest wins);
      None when there is none yet.
    - ``seconds_since_event`` float64: ``(ts - that event's ts_ns) / 1e9``; NaN when none.
    - then the event's FEATURE columns, forward-filled: every row carries the values of its
      ``last_event_id`` event (missing when none: NaN for floats, ``<NA>`` for integers, which
      become pandas nullable ``Int*``, and booleans, which become ``boolean``; NA for strings).

Which columns are carried
    Exactly the manifest's feature columns (``FeatureManifest.feature_columns``: neither
    identity nor label).  A stage sees only the manifest's *parameters*, not its column list,
    so the set is taken from the events frame by the manifest's own rules: every column that
    is not an identity column (``columns.IDENTITY_NAMES``), not named as a label (any of
    ``LABEL_PREFIXES``; the manifest validator guarantees that every forward-looking column
    carries such a prefix) and not stage-5 bookkeeping (``bar_ns``).  Label columns are NEVER
    carried: a label looks up to 8 minutes past its event, so copying it onto later grid rows
    would leak the future into the grid.

Causality
    Every value of the row at grid time ``ts`` comes from data stamped at or before ``ts``
    (levels by bar start, trades and events by ``ts_ns``), and event features are causal by the
    pipeline's contract, so changing or adding anything after ``ts`` leaves the row unchanged.

Zero events give the full grid with no ``last_event_id`` and all carried columns missing.
"""
from __future__ import annotations

from typing import List

import numpy as np
import pandas as pd

from transforms.silver.columns import IDENTITY_NAMES, LABEL_PREFIXES
from transforms.silver.day import SilverDay
from transforms.silver.series import asof_index, asof_values
from transforms.silver.session import NS_PER_S, local_ns
from transforms.silver.registry import silver_stage

# Columns that events carry for the pipeline's own bookkeeping and that are not features.
BOOKKEEPING_COLUMNS = ("bar_ns",)

BASE_COLUMNS = ("ts_ns", "timestamp", "level_kind", "level_kind_name", "level_price", "price",
                "distance", "last_event_id", "seconds_since_event")


def carried_feature_columns(events: pd.DataFrame) -> List[str]:
    """The feature columns of ``events`` (frame order) that the state table forward-fills:
    not identity, not label-named, not bookkeeping (see the module docstring)."""
    identity = set(IDENTITY_NAMES)
    return [c for c in events.columns
            if c not in identity and c not in BOOKKEEPING_COLUMNS
            and not str(c).startswith(LABEL_PREFIXES) and c not in BASE_COLUMNS]


def grid_ns(day: SilverDay) -> np.ndarray:
    """The grid times (int64 UTC ns) of ``day``: every ``state_table.grid_s`` seconds over
    ``[rth_filter.start, rth_filter.end)`` local time."""
    tz = day.param("session.timezone")
    start = local_ns(day.date, day.param("rth_filter.start"), tz)
    end = local_ns(day.date, day.param("rth_filter.end"), tz)
    grid_s = day.param("state_table.grid_s")
    step = int(round(float(grid_s) * NS_PER_S))
    if step <= 0:
        raise ValueError(f"state_table.grid_s must be positive, got {grid_s!r}")
    return np.arange(start, end, step, dtype=np.int64)


def _kinds(day: SilverDay):
    """(name, code) pairs of ``levels.kind_codes`` in ascending code order."""
    codes = day.param("levels.kind_codes")
    return sorted(((str(n), int(c)) for n, c in codes.items()), key=lambda nc: nc[1])


def _take(values: pd.Series, pos: np.ndarray) -> pd.Series:
    """``values[pos]`` with a missing value where ``pos == -1``; integers and booleans become
    nullable so the gap is NA instead of a silent float/object upcast."""
    s = values.reset_index(drop=True)
    dtype = s.dtype
    numpy_backed = not isinstance(dtype, pd.api.extensions.ExtensionDtype)
    if numpy_backed and pd.api.types.is_bool_dtype(dtype):
        s = s.astype("boolean")
    elif numpy_backed and pd.api.types.is_integer_dtype(dtype):
        s = s.astype(f"Int{np.dtype(dtype).itemsize * 8}")
    taken = s.array.take(pos, allow_fill=True)
    if s.dtype == object:
        taken = np.asarray(taken, dtype=object)
        taken[pos < 0] = None
    return pd.Series(taken)


@silver_stage("state_table", step=16, parameters=(
    "state_table.grid_s", "rth_filter.start", "rth_filter.end", "session.timezone",
    "levels.kind_codes"))
def state_table(day: SilverDay) -> SilverDay:
    """Stage 16: the 30-second x level-kind state grid (see the module docstring)."""
    day.require("events", "trades", "levels")
    kinds = _kinds(day)
    grid = grid_ns(day)
    n_grid, n_kinds = len(grid), len(kinds)

    ts = np.repeat(grid, n_kinds)                                   # (ts_ns, level_kind) order
    kind_code = np.tile(np.array([c for _, c in kinds], dtype=np.int8), n_grid)
    kind_name = np.tile(np.array([n for n, _ in kinds], dtype=object), n_grid)

    # level price as of the grid time: the last bar with bar_ns <= ts
    levels = day.levels
    level_price = np.full(len(ts), np.nan)
    if len(levels):
        lv = levels.sort_values("bar_ns", kind="stable")
        bar_ns = lv["bar_ns"].to_numpy(dtype=np.int64)
        row = asof_index(bar_ns, grid)                               # per grid time
        for j, (name, _) in enumerate(kinds):
            if name not in lv.columns:
                continue
            vals = pd.to_numeric(lv[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            level_price[j::n_kinds] = np.where(row >= 0, vals[np.clip(row, 0, None)], np.nan)

    # last trade at or before the grid time
    trades = day.trades
    if len(trades):
        tr = trades.sort_values("ts_ns", kind="stable")
        price_g = asof_values(tr["ts_ns"].to_numpy(dtype=np.int64),
                              tr["price"].to_numpy(dtype=float), grid)
    else:
        price_g = np.full(n_grid, np.nan)
    price = np.repeat(price_g, n_kinds)

    # latest event of the kind with ts_ns <= grid time (global row positions, -1 = none)
    events = day.events
    carried = carried_feature_columns(events)
    pos = np.full(len(ts), -1, dtype=np.int64)
    if len(events):
        ev = events.sort_values(["ts_ns", "event_id"], kind="stable").reset_index(drop=True)
        ev_ts = ev["ts_ns"].to_numpy(dtype=np.int64)
        ev_kind = ev["level_kind"].to_numpy(dtype=np.int64)
        for j, (_, code) in enumerate(kinds):
            rows = np.flatnonzero(ev_kind == code)
            if not len(rows):
                continue
            k = asof_index(ev_ts[rows], grid)
            pos[j::n_kinds] = np.where(k >= 0, rows[np.clip(k, 0, None)], -1)
        event_ts = np.where(pos >= 0, ev_ts[np.clip(pos, 0, None)], 0)
        seconds = np.where(pos >= 0, (ts - event_ts) / NS_PER_S, np.nan)
        last_id = np.asarray(_take(ev["event_id"].astype(object), pos), dtype=object)
        last_id[pos < 0] = None
    else:
        ev = events
        seconds = np.full(len(ts), np.nan)
        last_id = np.full(len(ts), None, dtype=object)

    frame = {
        "ts_ns": ts.astype(np.int64),
        "timestamp": pd.to_datetime(ts, unit="ns", utc=True),
        "level_kind": kind_code,
        "level_kind_name": pd.Series(kind_name, dtype=object),
        "level_price": level_price,
        "price": price,
        "distance": price - level_price,
        "last_event_id": pd.Series(last_id, dtype=object),
        "seconds_since_event": seconds,
    }
    out = pd.DataFrame(frame)
    if carried:
        filled = {c: _take(ev[c], pos) for c in carried}
        out = pd.concat([out, pd.DataFrame(filled)], axis=1)
    return day.replace(state_table=out)
