"""Warm-up coverage of a Silver date: are there enough 2-minute bars before the session for
the moving averages, and which warm-up weekdays are missing from Bronze.

The SMAs (``bars.sma_periods`` of ``bars.sma_bar_minutes`` bars) are computed over the
front contract's trades of the ``bars.warmup_weekdays`` weekdays before the date plus the
date itself; an SMA of N bars exists only once N bars have closed.  A date whose warm-up
weekdays are absent from Bronze has (almost) no SMA in RTH, which shows up in validation
as an all-null ``sma_*`` column with no hint why; these two pure functions give the hint.

- ``warmup_lineage(weekdays, warm_ts, params, date, date_ts)``: the lineage record of one
  date (``weekdays``, ``missing``, ``bars_before_rth`` and ``bars_needed``);
- ``warmup_check(lineages)``: the ``warmup`` check of ``validation.json``: fails for a date
  with fewer bars before RTH than the longest SMA needs, naming its missing weekdays.
  Missing weekdays with enough bars anyway (an exchange holiday) are listed, not failed;
- ``warmup_warning(lineage)``: the line a CLI prints for such a date, or None.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from transforms.silver.session import NS_PER_MIN, local_ns


def warmup_lineage(weekdays: Sequence[str], warm_ts: Sequence, params: Mapping[str, Any],
                   date: Optional[str] = None, date_ts=None) -> dict:
    """``warm_ts``: per warm-up weekday, the ``ts_event_ns`` of the contract's trades;
    ``date_ts``: those of ``date`` (its bars before the RTH start count too)."""
    bars = params["bars"]
    bar_len = int(bars["sma_bar_minutes"]) * NS_PER_MIN
    counted = [np.asarray(ts, dtype=np.int64) for ts in warm_ts]
    if date is not None and date_ts is not None:
        session = params["session"]
        start = local_ns(date, session["rth_start"], session["timezone"])
        ts = np.asarray(date_ts, dtype=np.int64)
        counted.append(ts[ts < start])
    n_bars = len(np.unique(np.concatenate([ts // bar_len for ts in counted]))) \
        if counted else 0
    return {"weekdays": list(weekdays),
            "missing": [d for d, ts in zip(weekdays, warm_ts) if len(ts) == 0],
            "bars_before_rth": int(n_bars),
            "bars_needed": int(max(int(n) for n in bars["sma_periods"])),
            "bar_minutes": int(bars["sma_bar_minutes"])}


def warmup_check(lineages: Mapping[str, Mapping[str, Any]]) -> dict:
    """The ``warmup`` validation check over the dates' lineages (see the module)."""
    observed, failed, missing = {}, {}, {}
    for date in sorted(lineages):
        w = (lineages[date] or {}).get("warmup")
        if not w:
            observed[date] = None          # built before warm-up was recorded
            continue
        observed[date] = w
        if w["missing"]:
            missing[date] = w["missing"]
        if w["bars_before_rth"] < w["bars_needed"]:
            failed[date] = (
                f"{w['bars_before_rth']} of the {w['bars_needed']} {w['bar_minutes']}-minute "
                f"bars the longest SMA needs before the session; warm-up weekdays missing in "
                f"Bronze: {', '.join(w['missing']) or 'none (too few trades on them)'}; "
                f"backfill them, then rebuild this date with --force")
    return {"success": not failed, "observed": observed, "failed_dates": failed,
            "missing_weekdays": missing}


def warmup_warning(lineage: Mapping[str, Any]) -> Optional[str]:
    """A line naming the warm-up weekdays a built date lacked in Bronze, or None."""
    w = lineage.get("warmup") or {}
    if not w.get("missing") and w.get("bars_before_rth", 0) >= w.get("bars_needed", 0):
        return None
    short = w["bars_before_rth"] < w["bars_needed"]
    return (f"warm-up weekdays missing in Bronze: {', '.join(w['missing']) or 'none'} "
            f"({w['bars_before_rth']} of the {w['bars_needed']} {w['bar_minutes']}-minute "
            f"bars the longest SMA needs before the session"
            f"{'; its SMAs are missing' if short else ''})")
