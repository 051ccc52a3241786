"""Stage 11 -- dealer gamma exposure around the level (feature group ``gex``).

In
    ``day.events``: ``ts_ns, level_price``.
    ``day.option_greeks`` (stage 3; may be empty): ``ts_ns, strike, right ('C'|'P'),
    dealer_gamma`` (= -aggressor x size x gamma x multiplier).
    Parameters: ``gex.strike_spacing`` (S, points) and ``gex.strike_bands`` (k values).

Definitions (t = event ``ts_ns``, L = ``level_price``)
    Net dealer gamma of a strike as of t: the sum of ``dealer_gamma`` over the option trades
    of that strike with ``ts_ns <= t`` (all expiries and rights unless stated; a
    non-finite ``dealer_gamma`` counts as 0).

Out (float64)
    ``gex_above_<k>strike`` = sum over strikes in ``(L, L + k*S]``;
    ``gex_below_<k>strike`` = sum over strikes in ``[L - k*S, L)``, for every k of
    ``gex.strike_bands``.  A strike exactly at L belongs to neither side.  Boundaries are
    compared with a 1e-9 point float tolerance (a strike within 1e-9 of L counts as at L;
    one within 1e-9 of ``L +- k*S`` is inside).
    ``call_gex_above_2strike, call_gex_below_2strike, put_gex_above_2strike,
    put_gex_below_2strike``: the k = 2 sums restricted to ``right == 'C'`` / ``'P'``
    (k = 2 is fixed by the manifest's column names and must be one of the bands).
    ``gex_asymmetry = gex_above_2strike - gex_below_2strike``.
    ``gex_ratio = gex_above_2strike / gex_below_2strike``, 0.0 when the denominator is 0.
    Every column is 0.0 when there are no option trades at or before t in the band.

Guarantees
    Causal: only option trades with ``ts_ns <=`` the event's ``ts_ns`` contribute.  Pure:
    inputs not mutated; the output is ``events`` plus exactly the group's 12 columns in
    manifest order.  Works on 0 events and on an empty ``option_greeks``.
"""
from __future__ import annotations

import numpy as np

from transforms.silver.day import SilverDay, add_columns
from transforms.silver.series import asof_index, safe_div
from transforms.silver.registry import silver_stage

_EPS = 1e-9          # float tolerance of the strike-band boundaries (points), not a parameter
_SPLIT_BAND = 2      # the band of the call/put split, asymmetry and ratio (manifest column names)


def gex_columns(bands) -> list:
    """Column names of the gex group for ``gex.strike_bands``."""
    return ([f"gex_{side}_{k}strike" for side in ("above", "below") for k in bands]
            + [f"{r}_gex_{side}_{_SPLIT_BAND}strike" for r in ("call", "put")
               for side in ("above", "below")] + ["gex_asymmetry", "gex_ratio"])


def _band_sums(strike, gamma, level, hi_off, side):
    """Sum of ``gamma`` over strikes in (L, L+hi] (side 'above') or [L-hi, L) ('below')."""
    if side == "above":
        mask = (strike > level + _EPS) & (strike <= level + hi_off + _EPS)
    else:
        mask = (strike >= level - hi_off - _EPS) & (strike < level - _EPS)
    return float(gamma[mask].sum())


@silver_stage("gex", step=11, parameters=("gex.strike_bands", "gex.strike_spacing"),
              columns=lambda p: gex_columns(p("gex.strike_bands")))
def gex(day: SilverDay) -> SilverDay:
    day.require("events", "option_greeks")
    spacing = float(day.param("gex.strike_spacing"))
    bands = list(day.param("gex.strike_bands"))
    if _SPLIT_BAND not in bands:
        raise ValueError(f"gex.strike_bands {bands} lacks band {_SPLIT_BAND} of the "
                         "call/put split columns")
    ev, og = day.events, day.option_greeks
    n = len(ev)
    t = ev["ts_ns"].to_numpy(dtype=np.int64)
    level = ev["level_price"].to_numpy(dtype=float)

    if len(og):
        order = np.argsort(og["ts_ns"].to_numpy(dtype=np.int64), kind="stable")
        o_ts = og["ts_ns"].to_numpy(dtype=np.int64)[order]
        o_strike = og["strike"].to_numpy(dtype=float)[order]
        o_right = og["right"].astype(str).str.upper().to_numpy()[order]
        o_gamma = np.nan_to_num(og["dealer_gamma"].to_numpy(dtype=float)[order],
                                nan=0.0, posinf=0.0, neginf=0.0)
    else:
        o_ts = np.empty(0, dtype=np.int64)
        o_strike = o_gamma = np.empty(0, dtype=float)
        o_right = np.empty(0, dtype=object)
    hi = asof_index(o_ts, t) + 1          # option trades [0, hi) have ts_ns <= t

    cols = {f"gex_{side}_{k}strike": np.zeros(n) for side in ("above", "below") for k in bands}
    split = {f"{r}_gex_{side}_{_SPLIT_BAND}strike": np.zeros(n)
             for r in ("call", "put") for side in ("above", "below")}
    for i in range(n):
        s, g, r = o_strike[:hi[i]], o_gamma[:hi[i]], o_right[:hi[i]]
        for k in bands:
            for side in ("above", "below"):
                cols[f"gex_{side}_{k}strike"][i] = _band_sums(s, g, level[i], k * spacing, side)
        for name, right in (("call", "C"), ("put", "P")):
            sel = r == right
            for side in ("above", "below"):
                split[f"{name}_gex_{side}_{_SPLIT_BAND}strike"][i] = _band_sums(
                    s[sel], g[sel], level[i], _SPLIT_BAND * spacing, side)

    above = cols[f"gex_above_{_SPLIT_BAND}strike"]
    below = cols[f"gex_below_{_SPLIT_BAND}strike"]
    out = {}
    for side in ("above", "below"):
        for k in bands:
            out[f"gex_{side}_{k}strike"] = cols[f"gex_{side}_{k}strike"].astype(np.float64)
    for name in ("call", "put"):
        for side in ("above", "below"):
            key = f"{name}_gex_{side}_{_SPLIT_BAND}strike"
            out[key] = split[key].astype(np.float64)
    out["gex_asymmetry"] = (above - below).astype(np.float64)
    out["gex_ratio"] = safe_div(above, below).astype(np.float64)
    return day.replace(events=add_columns(ev, out))


# ------------------------------------------------------------------ v3.2.0: gex@2

def gex_v2_columns(bands) -> list:
    return (gex_columns(bands) + ["gamma_at_level_strike"]
            + [f"gex_0dte_{side}_{k}strike" for side in ("above", "below") for k in bands])


@silver_stage("gex", version=2, step=11, parameters=("gex.strike_bands", "gex.strike_spacing"),
              columns=lambda p: gex_v2_columns(p("gex.strike_bands")))
def gex_v2(day: SilverDay) -> SilverDay:
    """v3.1.0's GEX columns (all expiries), plus what the original had and v3.1.0 lost:

    - ``gamma_at_level_strike``: net dealer gamma (all expiries, trades at or before t) of
      the strikes within half a strike spacing of the level (the strike AT the level, which
      the above/below bands exclude);
    - ``gex_0dte_above_<k>strike`` / ``gex_0dte_below_<k>strike``: the band sums over the
      options expiring on the event's date only (the original's fuel was 0DTE)."""
    day = gex(day)
    day.require("events", "option_greeks")
    spacing = float(day.param("gex.strike_spacing"))
    bands = list(day.param("gex.strike_bands"))
    ev, og = day.events, day.option_greeks
    t = ev["ts_ns"].to_numpy(dtype=np.int64)
    level = ev["level_price"].to_numpy(dtype=float)
    n = len(ev)
    if len(og):
        order = np.argsort(og["ts_ns"].to_numpy(dtype=np.int64), kind="stable")
        o_ts = og["ts_ns"].to_numpy(dtype=np.int64)[order]
        o_strike = og["strike"].to_numpy(dtype=float)[order]
        o_gamma = np.nan_to_num(og["dealer_gamma"].to_numpy(dtype=float)[order],
                                nan=0.0, posinf=0.0, neginf=0.0)
        o_0dte = np.array([str(d) == day.date for d in og["exp_date"]], dtype=bool)[order]
    else:
        o_ts = np.empty(0, dtype=np.int64)
        o_strike = o_gamma = np.empty(0, dtype=float)
        o_0dte = np.empty(0, dtype=bool)
    hi = asof_index(o_ts, t) + 1
    out = {"gamma_at_level_strike": np.zeros(n)}
    out.update({f"gex_0dte_{side}_{k}strike": np.zeros(n)
                for side in ("above", "below") for k in bands})
    for i in range(n):
        s, g, z = o_strike[:hi[i]], o_gamma[:hi[i]], o_0dte[:hi[i]]
        out["gamma_at_level_strike"][i] = float(
            g[np.abs(s - level[i]) <= spacing / 2.0 + _EPS].sum())
        for side in ("above", "below"):
            for k in bands:
                out[f"gex_0dte_{side}_{k}strike"][i] = _band_sums(s[z], g[z], level[i],
                                                                   k * spacing, side)
    return day.replace(events=add_columns(ev, out))
