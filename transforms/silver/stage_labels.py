"""Stage 14, ``labels``: what happened after each event (forward-looking, labels only).

In: ``day.events`` (``ts_ns, level_price, direction, entry_price, atr``) and ``day.trades``.
Out: ``day.events`` plus, for each horizon H of ``labels.horizons_min`` (suffix ``_{H}min``,
none for ``labels.primary_horizon_min``), over the trades in ``(ts_ns, ts_ns + H]``:

- with s = +1 for UP, -1 for DOWN and θ = ``labels.break_threshold_atr`` x atr: a trade
  with s(p - L) >= θ has crossed the level to the far side by θ (break); one with
  s(p - entry_price) <= -θ has moved back out, θ away from where it entered the zone
  (bounce).  The bounce is measured from the entry, not the level: the zone is at least
  5 points wide, so the entry itself is usually more than θ short of the level;
- ``outcome``: ``BREAK`` if a break comes first, ``REJECT`` if a bounce comes first, else
  ``CHOP``;
- ``time_to_break`` / ``time_to_bounce``: seconds from the event to the first such trade,
  NaN when there is none within H;
- ``excursion_favorable`` / ``excursion_adverse``: the largest move (points, >= 0) from
  ``entry_price`` in / against the direction of travel;
- ``strength_signed``: s(p_last - L) / atr, p_last = the last trade within H (the entry
  price if none).

These are the only columns that look past ``ts_ns``; the manifest's label rule names them.
"""
from __future__ import annotations

import numpy as np

from transforms.silver.day import SilverDay, add_columns
from transforms.silver.session import NS_PER_MIN, NS_PER_S
from transforms.silver.registry import silver_stage


LABEL_FIELDS = ("outcome", "time_to_break", "time_to_bounce", "excursion_favorable",
                "excursion_adverse", "strength_signed")


def label_suffix(h: int, primary: int) -> str:
    return "" if h == primary else f"_{h}min"


def first_crossing(tt: np.ndarray, t0: int, broke: np.ndarray, bounced: np.ndarray):
    """(outcome, seconds to the first break, seconds to the first bounce) of the trades at
    times ``tt`` after ``t0``, given which of them broke / bounced (NaN: none)."""
    brk, bnc = np.flatnonzero(broke), np.flatnonzero(bounced)
    t_break = (tt[brk[0]] - t0) / NS_PER_S if len(brk) else np.nan
    t_bounce = (tt[bnc[0]] - t0) / NS_PER_S if len(bnc) else np.nan
    if len(brk) and (not len(bnc) or brk[0] < bnc[0]):
        return "BREAK", t_break, t_bounce
    return ("REJECT" if len(bnc) else "CHOP"), t_break, t_bounce


def excursions(move: np.ndarray):
    """(largest move >= 0 in the direction of travel, largest move >= 0 against it)."""
    return max(float(move.max()), 0.0), max(float(-move.min()), 0.0)


def label_columns(horizons, primary, fields=LABEL_FIELDS) -> list:
    """Label column names, horizon by horizon (the primary horizon unsuffixed)."""
    return [f"{f}{label_suffix(int(h), int(primary))}" for h in horizons for f in fields]


@silver_stage("labels", step=14, parameters=(
    "labels.horizons_min", "labels.primary_horizon_min", "labels.break_threshold_atr"),
    columns=lambda p: label_columns(p("labels.horizons_min"), p("labels.primary_horizon_min")))
def labels(day: SilverDay) -> SilverDay:
    day.require("events", "trades")
    ev = day.events
    t_ts = day.trades["ts_ns"].to_numpy(np.int64)
    t_px = day.trades["price"].to_numpy(float)
    factor = float(day.param("labels.break_threshold_atr"))
    primary = int(day.param("labels.primary_horizon_min"))
    ts = ev["ts_ns"].to_numpy(np.int64)
    level = ev["level_price"].to_numpy(float)
    entry = ev["entry_price"].to_numpy(float)
    atr = ev["atr"].to_numpy(float)
    sign = np.where(ev["direction"].to_numpy() == "UP", 1.0, -1.0)
    cols = {}
    for h in day.param("labels.horizons_min"):
        h = int(h)
        n = len(ev)
        outcome = np.full(n, "CHOP", dtype=object)
        t_break = np.full(n, np.nan)
        t_bounce = np.full(n, np.nan)
        fav = np.zeros(n)
        adv = np.zeros(n)
        strength = np.zeros(n)
        lo = np.searchsorted(t_ts, ts, side="right")
        hi = np.searchsorted(t_ts, ts + h * NS_PER_MIN, side="right")
        for i in range(n):
            px, tt = t_px[lo[i]:hi[i]], t_ts[lo[i]:hi[i]]
            theta = factor * atr[i]
            outcome[i], t_break[i], t_bounce[i] = first_crossing(
                tt, ts[i], sign[i] * (px - level[i]) >= theta,
                sign[i] * (px - entry[i]) <= -theta)
            if len(px):
                fav[i], adv[i] = excursions(sign[i] * (px - entry[i]))
            last = px[-1] if len(px) else entry[i]
            strength[i] = sign[i] * (last - level[i]) / atr[i] if atr[i] > 0 else 0.0
        sfx = label_suffix(h, primary)
        cols.update({f"outcome{sfx}": outcome, f"time_to_break{sfx}": t_break,
                     f"time_to_bounce{sfx}": t_bounce, f"excursion_favorable{sfx}": fav,
                     f"excursion_adverse{sfx}": adv, f"strength_signed{sfx}": strength})
    return day.replace(events=add_columns(ev, cols))


# ------------------------------------------------------------------ v3.2.0: labels@2

LABEL_V2_FIELDS = LABEL_FIELDS[:5] + ("excursion_favorable_atr", "excursion_adverse_atr",
                                      "strength_signed", "strength_abs")
MEASURED_FROM = ("entry", "level")


@silver_stage("labels", version=2, step=14, parameters=(
    "labels.horizons_min", "labels.primary_horizon_min", "labels.measured_from",
    "labels.break_distance_atr", "labels.reject_distance_atr"),
    columns=lambda p: label_columns(p("labels.horizons_min"), p("labels.primary_horizon_min"),
                                    LABEL_V2_FIELDS))
def labels_v2(day: SilverDay) -> SilverDay:
    """Fair labels: both barriers explicit and measured from the same reference.

    With s = +1 for UP and -1 for DOWN, R = the reference (``labels.measured_from``:
    ``entry`` = the event's entry price, the default; ``level`` = the level price),
    d_b = ``break_distance_atr`` x ATR and d_r = ``reject_distance_atr`` x ATR, over the
    trades in (t, t + H]: a trade with s(p - R) >= d_b is a break (price carried on in the
    direction of travel), one with s(p - R) <= -d_r a rejection (it turned back).  With
    equal distances from the entry a driftless price is equally likely to do either (v3.1.0
    needed zone width + 1 ATR to break but only 1 ATR to reject).

    ``outcome``: BREAK / REJECT by the first of the two, else CHOP; ``time_to_break`` /
    ``time_to_bounce``: seconds to the first such trade (NaN if none); ``excursion_favorable``
    / ``excursion_adverse``: the largest move from the entry in / against the direction of
    travel (points, >= 0) and the same in ATR units (``_atr``); ``strength_signed`` =
    s(p_last - L) / ATR (p_last = the last trade within H, the entry if none) and
    ``strength_abs`` = |p_last - L| / ATR.  Forward-looking: labels only."""
    day.require("events", "trades")
    ev = day.events
    measured_from = str(day.param("labels.measured_from"))
    if measured_from not in MEASURED_FROM:
        raise ValueError(f"labels.measured_from must be one of {MEASURED_FROM}, "
                         f"got {measured_from!r}")
    t_ts = day.trades["ts_ns"].to_numpy(np.int64)
    t_px = day.trades["price"].to_numpy(float)
    primary = int(day.param("labels.primary_horizon_min"))
    ts = ev["ts_ns"].to_numpy(np.int64)
    level = ev["level_price"].to_numpy(float)
    entry = ev["entry_price"].to_numpy(float)
    ref = entry if measured_from == "entry" else level
    atr = ev["atr"].to_numpy(float)
    ok_atr = np.isfinite(atr) & (atr > 0)
    d_break = float(day.param("labels.break_distance_atr")) * atr
    d_reject = float(day.param("labels.reject_distance_atr")) * atr
    sign = np.where(ev["direction"].to_numpy() == "UP", 1.0, -1.0)
    n = len(ev)
    cols = {}
    lo = np.searchsorted(t_ts, ts, side="right")
    for h in day.param("labels.horizons_min"):
        h = int(h)
        outcome = np.full(n, "CHOP", dtype=object)
        t_break, t_bounce = np.full(n, np.nan), np.full(n, np.nan)
        fav, adv, last = np.zeros(n), np.zeros(n), entry.copy()
        hi = np.searchsorted(t_ts, ts + h * NS_PER_MIN, side="right")
        for i in range(n):
            px, tt = t_px[lo[i]:hi[i]], t_ts[lo[i]:hi[i]]
            if not len(px):
                continue
            rel = sign[i] * (px - ref[i])
            outcome[i], t_break[i], t_bounce[i] = first_crossing(
                tt, ts[i], rel >= d_break[i], rel <= -d_reject[i])
            fav[i], adv[i] = excursions(sign[i] * (px - entry[i]))
            last[i] = px[-1]
        per_atr = np.where(ok_atr, 1.0 / np.where(ok_atr, atr, 1.0), np.nan)
        sfx = label_suffix(h, primary)
        cols.update({f"outcome{sfx}": outcome, f"time_to_break{sfx}": t_break,
                     f"time_to_bounce{sfx}": t_bounce, f"excursion_favorable{sfx}": fav,
                     f"excursion_adverse{sfx}": adv,
                     f"excursion_favorable_atr{sfx}": fav * per_atr,
                     f"excursion_adverse_atr{sfx}": adv * per_atr,
                     f"strength_signed{sfx}": sign * (last - level) * per_atr,
                     f"strength_abs{sfx}": np.abs(last - level) * per_atr})
    return day.replace(events=add_columns(ev, cols))
