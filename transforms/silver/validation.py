"""``validation.json`` of a Silver version: named checks over every built date.

``validate_feature_set(manifest, tables, lineages)`` takes the manifest (a
``FeatureManifest``), ``{date: signals Table}`` and ``{date: lineage dict}`` and returns
``{version, date_range, signal_count, feature_count, success, checks: {name: {success,
observed, ...}}}`` (the original's ``date_range, signal_count, feature_count,
null_rates_summary`` keys are kept too).  Checks:

- ``schema_match``: every date's file has exactly the declared schema (names, order, types);
- ``rows_per_date``: signals per date; fails when a built date has none;
- ``null_rates``: null (or NaN) share per column; fails when an identity column has a null
  or a feature column is entirely null (a stage that produced nothing).  Feature columns
  above 10 % are listed as ``high_null_features`` without failing: NaN is a legitimate
  value for some (``dist_or_high`` before the opening range exists).  Labels are reported
  only (``time_to_break`` is NaN whenever nothing broke);
- ``value_ranges``: min/max of key features against their bounds (``atr`` > 0,
  ``zone_width`` >= zones.half_width_min, imbalances in [-1, 1], distances >= 0, …);
- ``label_distribution``: counts per outcome and horizon; fails on a value outside
  BREAK/REJECT/CHOP;
- ``duplicate_event_ids``: across all dates; must be 0;
- ``front_month_purity``: every date was built from one contract, its front month
  (from the lineage); roll-contaminated dates (dominance < 60 %) are listed;
- ``warmup``: every date had the 2-minute bars its longest SMA needs before the session;
  a date without names its warm-up weekdays missing in Bronze
  (``transforms.silver.warmup``).

Dead-feature checks (:mod:`transforms.silver.quality`): ``constant_features`` (a feature
column with one distinct value over a date), ``mostly_zero_features`` (a numeric feature
column over ``max_zero_share`` zeros) and ``saturated_episode_dims`` (an episode position at
the clip in over ``max_saturated_share`` of the events).  Each reports per column what it
observed; a column the manifest declares expected (``parameters.quality.expected``, with the
reason) does not fail.  A manifest without a ``parameters.quality`` section (v3.1.0)
predates them: they are reported with ``success: null`` (not enforced) and the reason.

``success`` is true when no check has ``success: false``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np
import pyarrow as pa

from transforms.arrow_stats import null_rate

from transforms.silver.quality import dead_feature_checks
from transforms.silver.stage_rth_filter import declared_schema
from transforms.silver.warmup import warmup_check

OUTCOMES = ("BREAK", "REJECT", "CHOP")
MAX_FEATURE_NULL_RATE = 0.10
# column -> (lower, upper) inclusive; None = unbounded
_BOUNDS = {
    "tape_imbalance": (-1.0, 1.0), "distance_atr": (0.0, None), "distance_pct": (0.0, None),
    "tape_buy_vol": (0.0, None), "tape_sell_vol": (0.0, None), "mass": (1.0, None),
    "excursion_favorable": (0.0, None), "excursion_adverse": (0.0, None),
    "minutes_since_open": (0.0, None), "book_imbalance_5": (-1.0, 1.0),
    "excursion_favorable_atr": (0.0, None), "excursion_adverse_atr": (0.0, None),
    "strength_abs": (0.0, None),
}


def _finite_range(col: pa.ChunkedArray):
    values = col.to_numpy(zero_copy_only=False).astype(float)
    values = values[np.isfinite(values)]
    if not len(values):
        return None, None
    return float(values.min()), float(values.max())


def validate_feature_set(manifest, tables: Mapping[str, pa.Table],
                         lineages: Mapping[str, Mapping[str, Any]],
                         episodes: Optional[Mapping[str, pa.Table]] = None) -> dict:
    declared = declared_schema(manifest.columns())
    dates = sorted(tables)
    checks: dict[str, dict] = {}

    bad_schema = {d: [f"{f.name}:{f.type}" for f in t.schema]
                  for d, t in tables.items() if not t.schema.equals(declared)}
    checks["schema_match"] = {"success": not bad_schema, "observed": sorted(bad_schema),
                              "expected_columns": len(declared)}

    rows = {d: tables[d].num_rows for d in dates}
    checks["rows_per_date"] = {"success": bool(dates) and all(rows.values()),
                               "observed": rows}

    combined = pa.concat_tables([tables[d] for d in dates]) if dates else declared.empty_table()
    rates = {name: round(null_rate(combined[name]), 6) for name in combined.column_names}
    violations = {c: rates[c] for c in manifest.identity_columns if rates.get(c, 0.0) > 0}
    if combined.num_rows:
        violations.update({c: rates[c] for c in manifest.feature_columns
                           if rates.get(c, 0.0) >= 1.0})
    checks["null_rates"] = {"success": not violations, "observed": rates,
                            "violations": violations,
                            "high_null_features": {c: rates[c] for c in manifest.feature_columns
                                                   if rates.get(c, 0.0) > MAX_FEATURE_NULL_RATE}}

    half_width = float(manifest.parameter("zones.half_width_min"))
    bounds = dict(_BOUNDS, zone_width=(half_width, None), atr=(1e-12, None))
    ranges, broken = {}, {}
    for name, (lo, hi) in bounds.items():
        if name not in combined.column_names:
            continue
        mn, mx = _finite_range(combined[name])
        ranges[name] = {"min": mn, "max": mx, "bounds": [lo, hi]}
        if mn is not None and ((lo is not None and mn < lo - 1e-9)
                               or (hi is not None and mx > hi + 1e-9)):
            broken[name] = ranges[name]
    checks["value_ranges"] = {"success": not broken, "observed": ranges, "violations": broken}

    dist, unknown = {}, {}
    for name in manifest.label_columns:
        if name.startswith("outcome"):
            counts = {str(k): int(v) for k, v in
                      zip(*np.unique(np.asarray(combined[name].to_pylist(), dtype=object)
                                     .astype(str), return_counts=True))} if combined.num_rows else {}
            dist[name] = counts
            extra = sorted(set(counts) - set(OUTCOMES))
            if extra:
                unknown[name] = extra
    checks["label_distribution"] = {"success": not unknown, "observed": dist,
                                    "unknown_values": unknown}

    ids = combined["event_id"].to_pylist() if "event_id" in combined.column_names else []
    dup = len(ids) - len(set(ids))
    checks["duplicate_event_ids"] = {"success": dup == 0, "observed": dup}

    purity, impure, contaminated = {}, [], []
    for d in dates:
        lin = lineages.get(d) or {}
        used = list(lin.get("contracts_used") or [])
        purity[d] = {"front_month": lin.get("front_month"), "contracts_used": used,
                     "dominance": lin.get("dominance"),
                     "roll_contaminated": lin.get("roll_contaminated")}
        if used != [lin.get("front_month")]:
            impure.append(d)
        if lin.get("roll_contaminated"):
            contaminated.append(d)
    checks["front_month_purity"] = {"success": not impure, "observed": purity,
                                    "impure_dates": impure,
                                    "roll_contaminated_dates": contaminated}

    checks["warmup"] = warmup_check({d: lineages.get(d) for d in dates})
    checks.update(dead_feature_checks(manifest, tables, episodes or {}))

    feature_rates = [rates[c] for c in manifest.feature_columns if c in rates]
    return {
        "version": manifest.version,
        "success": all(c["success"] is not False for c in checks.values()),
        "date_range": {"start": dates[0] if dates else None, "end": dates[-1] if dates else None},
        "dates": dates,
        "signal_count": int(combined.num_rows),
        "feature_count": len(manifest.feature_columns),
        "null_rates_summary": {
            "mean": round(float(np.mean(feature_rates)), 6) if feature_rates else 0.0,
            "max": round(float(np.max(feature_rates)), 6) if feature_rates else 0.0,
            "high_null_features": sorted(c for c in manifest.feature_columns
                                         if rates.get(c, 0.0) > MAX_FEATURE_NULL_RATE)},
        "checks": checks,
    }
