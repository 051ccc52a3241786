"""Stage 10 -- level distances (feature group ``level_distances``).

In
    ``day.events``: ``entry_price, level_price, level_kind_name, atr, bar_ns``.
    ``day.levels``: ``bar_ns`` plus one float column per kind name of
    ``levels.kind_codes`` (the level's value as known at the bar's START, NaN while the
    level does not exist yet).
    Parameters: ``levels.kind_codes`` (the kinds), ``level_distances.stacking_bands``
    (points, e.g. 2/5/10).

Out (for every kind name ``K`` of ``levels.kind_codes``, ``k`` = ``K.lower()``)
    ``dist_<k>`` (float64) = ``entry_price - V_K`` where ``V_K`` is level ``K``'s value in
    the ``levels`` row of the event's ``bar_ns``.  NaN when level ``K`` does not exist yet
    at that bar (e.g. OR levels before 09:45, an SMA before its warm-up is complete): this
    is the ONE group whose columns may hold NaN, and only for that reason.
    ``dist_<k>_atr`` (float64) = ``dist_<k> / atr``; NaN where ``dist_<k>`` is NaN, 0.0
    where ``atr`` is 0 or not finite (never expected: ``atr > 0``).
    ``stacking_<N>pt`` (int32) for every ``N`` of ``level_distances.stacking_bands``: the
    number of OTHER existing levels (kinds other than the event's own
    ``level_kind_name``) whose value ``V_K`` satisfies ``|V_K - level_price| <= N``
    (inclusive, with a 1e-9 point float tolerance).  Two kinds with the same value both
    count.

Look-up
    The row used is the last ``levels`` row with ``bar_ns <=`` the event's ``bar_ns`` (the
    event bar's own row, which stage 4 always writes since the event bar is a traded
    minute; an earlier row only if it were missing).  No event finds a level row
    -> every level counts as not existing.

Guarantees
    Causal: uses only the level values known at the START of the event's bar, i.e. at or
    before ``ts_ns``; later ``levels`` rows never influence an event.  Pure: the input
    frames are not mutated; the output is ``events`` plus exactly the group's 15 columns
    (names derived from the parameters, manifest order: all ``dist_*``, all
    ``dist_*_atr``, all ``stacking_*``).  Works on 0 events.
"""
from __future__ import annotations

import numpy as np

from transforms.silver.day import SilverDay, add_columns
from transforms.silver.series import asof_index, safe_div, suffix
from transforms.silver.registry import silver_stage

_EPS = 1e-9  # float tolerance of the inclusive band comparison (points), not a parameter


def level_distance_columns(kind_codes, bands) -> list:
    """Column names of the level_distances group (all dist_*, all dist_*_atr, stacking_*)."""
    kinds = [k.lower() for k in kind_codes]
    return ([f"dist_{k}" for k in kinds] + [f"dist_{k}_atr" for k in kinds]
            + [f"stacking_{suffix(b)}pt" for b in bands])


@silver_stage("level_distances", step=10, parameters=(
    "level_distances.stacking_bands", "levels.kind_codes"),
    columns=lambda p: level_distance_columns(p("levels.kind_codes"),
                                             p("level_distances.stacking_bands")))
def level_distances(day: SilverDay) -> SilverDay:
    day.require("events", "levels")
    kinds = list(day.param("levels.kind_codes"))
    bands = list(day.param("level_distances.stacking_bands"))
    ev, lv = day.events, day.levels

    missing = [k for k in kinds + ["bar_ns"] if k not in lv.columns]
    if missing:
        raise ValueError(f"{day.date}: levels frame lacks column(s) {missing}")

    n = len(ev)
    entry = ev["entry_price"].to_numpy(dtype=float)
    level = ev["level_price"].to_numpy(dtype=float)
    atr = ev["atr"].to_numpy(dtype=float)
    own = ev["level_kind_name"].astype(str).to_numpy()

    lv_bar = lv["bar_ns"].to_numpy(dtype=np.int64)
    order = np.argsort(lv_bar, kind="stable")
    lv_bar = lv_bar[order]
    idx = asof_index(lv_bar, ev["bar_ns"].to_numpy(dtype=np.int64))
    found = idx >= 0
    safe_idx = np.clip(idx, 0, max(len(lv_bar) - 1, 0))

    values = {}
    for k in kinds:
        col = lv[k].to_numpy(dtype=float)[order]
        v = np.full(n, np.nan)
        if len(col):
            v = np.where(found, col[safe_idx], np.nan)
        values[k] = v

    out = {}
    for k in kinds:
        out[f"dist_{k.lower()}"] = (entry - values[k]).astype(np.float64)
    for k in kinds:
        d = out[f"dist_{k.lower()}"]
        out[f"dist_{k.lower()}_atr"] = np.where(np.isnan(d), np.nan,
                                                safe_div(np.nan_to_num(d), atr)).astype(np.float64)
    for band in bands:
        count = np.zeros(n, dtype=np.int32)
        for k in kinds:
            v = values[k]
            with np.errstate(invalid="ignore"):
                near = np.isfinite(v) & (np.abs(v - level) <= float(band) + _EPS) & (own != k)
            count += near.astype(np.int32)
        out[f"stacking_{suffix(band)}pt"] = count
    return day.replace(events=add_columns(ev, out))
