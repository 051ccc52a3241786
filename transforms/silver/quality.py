"""Dead-feature checks of a Silver version (part of ``validation.json``, see
:mod:`transforms.silver.validation`).

``dead_feature_checks(manifest, tables, episodes)`` takes the manifest, ``{date: signals
Table}`` and ``{date: episodes Table}`` and returns three named checks, each ``{success,
enforced, observed, violations, expected, ...}``:

- ``constant_features``: per date with at least ``quality.min_events_per_date`` events, the
  number of distinct non-null values of every feature column; a column with at most one
  over a date is dead there (dates with fewer events are listed as ``skipped_dates``);
- ``mostly_zero_features``: over all dates, the share of zeros (False for booleans) among
  the non-null values of every numeric feature column; above ``quality.max_zero_share``
  it is dead;
- ``saturated_episode_dims``: over all episodes, the share of events whose value at a vector
  position is at the clip (``|v| >= episodes.clip``); above ``quality.max_saturated_share``
  the position is saturated (``observed`` names positions ``block.name``).

A column or position listed under ``quality.expected`` with a reason for the check is
reported under ``expected`` and does not fail it.  Without a ``quality`` section (manifests
older than v3.2.0) the checks run with the defaults below and report ``success: None``
(not enforced) with the reason, so that an old version's validation neither hides what was
observed nor changes its verdict.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULTS = {"min_events_per_date": 20, "max_zero_share": 0.95, "max_saturated_share": 0.10}
NOT_ENFORCED = ("not enforced: the manifest declares no parameters.quality section "
                "(it predates the dead-feature checks); observations reported only")


def _quality(manifest) -> tuple[dict, bool]:
    q = manifest.parameters.get("quality")
    if q is None:
        return dict(DEFAULTS, expected={}), False
    return dict(DEFAULTS, **q), True


def _verdict(name: str, q: dict, enforced: bool, observed: dict, dead: dict, **extra) -> dict:
    expected = {c: q["expected"][c][name] for c in dead
                if name in (q.get("expected") or {}).get(c, {})}
    violations = {c: v for c, v in dead.items() if c not in expected}
    out = {"success": (not violations) if enforced else None, "enforced": enforced,
           "observed": observed, "violations": violations, "expected": expected, **extra}
    if not enforced:
        out["reason"] = NOT_ENFORCED
    return out


def _distinct(col: pa.ChunkedArray) -> int:
    col = col.drop_null()
    if pa.types.is_floating(col.type):
        col = col.filter(pc.invert(pc.is_nan(col)))
    return len(pc.unique(col))


def dead_feature_checks(manifest, tables: Mapping[str, pa.Table],
                        episodes: Mapping[str, pa.Table]) -> Dict[str, dict]:
    q, enforced = _quality(manifest)
    features = [c for c in manifest.feature_columns]
    out: Dict[str, dict] = {}

    observed, dead, skipped = {}, {}, []
    for date in sorted(tables):
        t = tables[date]
        if t.num_rows < q["min_events_per_date"]:
            skipped.append(date)
            continue
        for c in features:
            n = _distinct(t[c])
            observed.setdefault(c, {})[date] = n
            if n <= 1:
                dead.setdefault(c, {})[date] = n
    out["constant_features"] = _verdict(
        "constant_features", q, enforced, observed, dead, skipped_dates=skipped,
        min_events_per_date=q["min_events_per_date"])

    observed, dead = {}, {}
    combined = pa.concat_tables([tables[d] for d in sorted(tables)]) if tables else None
    if combined is not None and combined.num_rows:
        for c in features:
            col = combined[c]
            if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
                    or pa.types.is_boolean(col.type)):
                continue
            values = col.to_numpy(zero_copy_only=False).astype(float)
            values = values[np.isfinite(values)]
            if not len(values):
                continue
            share = round(float((values == 0).mean()), 6)
            observed[c] = share
            if share > q["max_zero_share"]:
                dead[c] = share
    out["mostly_zero_features"] = _verdict("mostly_zero_features", q, enforced, observed, dead,
                                           max_zero_share=q["max_zero_share"])

    observed, dead = {}, {}
    names = episode_positions(manifest)
    clip = float(manifest.parameter("episodes.clip")) if "episodes" in manifest.parameters \
        else None
    vectors = [episodes[d]["vector"].combine_chunks() for d in sorted(episodes)
               if episodes[d].num_rows]
    if vectors and names and clip is not None:
        flat = np.concatenate([v.flatten().to_numpy(zero_copy_only=False) for v in vectors])
        matrix = flat.reshape(-1, len(names))
        shares = (np.abs(matrix) >= clip - 1e-6).mean(axis=0)
        for name, share in zip(names, shares):
            observed[name] = round(float(share), 6)
            if share > q["max_saturated_share"]:
                dead[name] = round(float(share), 6)
    out["saturated_episode_dims"] = _verdict(
        "saturated_episode_dims", q, enforced, observed, dead,
        max_saturated_share=q["max_saturated_share"], clip=clip)
    return out


def episode_positions(manifest) -> list:
    """``block.name`` of every episode vector position of ``manifest``'s episodes stage."""
    from transforms.silver.day import SilverDay
    from transforms.silver.stage_episodes import positions_of
    stage = next((s for s in manifest.stages if s.split("@")[0] == "episodes"), None)
    if stage is None:
        return []
    return positions_of(stage, SilverDay(date="1970-01-01", params=manifest.parameters))
