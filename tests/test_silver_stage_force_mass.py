"""Stage 12 (force / mass): hand-computed force, mass floor, predicted acceleration and
residual; the stage only combines earlier (already causal) event columns."""
from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pandas as pd
import yaml

from transforms.feature_manifest import load_manifest
from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_MIN, local_ns
from transforms.silver.stage_force_mass import force_mass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(ROOT, "configs", "features", "v3.1.0.yaml")
DATE = "2024-12-16"
with open(MANIFEST, encoding="utf-8") as _fh:
    PARAMS = yaml.safe_load(_fh)["parameters"]
INPUTS = ["ofi_60s", "tape_imbalance", "tape_buy_vol", "tape_sell_vol", "barrier_depth_end",
          "acceleration_1min"]


def events(rows):
    """rows: (ofi_60s, tape_imbalance, tape_buy_vol, tape_sell_vol, barrier_depth_end,
    acceleration_1min)."""
    out = []
    for i, values in enumerate(rows):
        ts = local_ns(DATE, "10:00") + i * NS_PER_MIN
        out.append({
            "event_id": f"{DATE}_OR_HIGH_500000_{ts}_UP", "ts_ns": ts,
            "timestamp": pd.Timestamp(ts, tz="UTC"), "level_price": 5000.0,
            "level_kind": np.int8(2), "level_kind_name": "OR_HIGH", "direction": "UP",
            "entry_price": 4999.0, "zone_width": 5.0, "date": dt.date.fromisoformat(DATE),
            "atr": 2.0, "bar_ns": ts, **dict(zip(INPUTS, map(float, values))),
        })
    cols = ["event_id", "ts_ns", "timestamp", "level_price", "level_kind", "level_kind_name",
            "direction", "entry_price", "zone_width", "date", "atr", "bar_ns"] + INPUTS
    return pd.DataFrame(out, columns=cols).astype({c: float for c in INPUTS})


def make_day(rows):
    return SilverDay(date=DATE, params=PARAMS, events=events(rows))


ROWS = [
    # ofi, imbalance, buy, sell, depth, accel
    (100.0, 0.5, 30.0, 10.0, 40.0, 5.0),      # force 120, mass 40, pred 3, resid 2
    (-10.0, -1.0, 0.0, 6.0, 0.2, -20.0),      # force -16, mass 1 (floor), pred -16, resid -4
    (0.0, 0.0, 0.0, 0.0, 1.0, 0.5),           # force 0, mass 1 (edge), pred 0, resid 0.5
    (8.0, 0.25, 4.0, 4.0, np.nan, 1.0),       # force 10, NaN depth -> mass 1, pred 10, resid -9
]


def test_columns_and_dtypes_match_the_manifest():
    day = make_day(ROWS)
    out = force_mass(day).events
    group = load_manifest(MANIFEST).group("force_mass")
    added = [c for c in out.columns if c not in day.events.columns]
    assert added == [c.name for c in group.columns]
    for c in group.columns:
        assert out[c.name].dtype == np.dtype(c.dtype), c.name


def test_hand_computed_values():
    day = make_day(ROWS)
    before = day.events.copy()
    out = force_mass(day).events
    pd.testing.assert_frame_equal(day.events, before)
    np.testing.assert_allclose(out["force"], [120.0, -16.0, 0.0, 10.0])
    np.testing.assert_allclose(out["mass"], [40.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(out["predicted_acceleration"], [3.0, -16.0, 0.0, 10.0])
    np.testing.assert_allclose(out["acceleration_residual"], [2.0, -4.0, 0.5, -9.0])


def test_row_wise_only_other_events_do_not_matter():
    # The stage reads no time series: an event's values depend on its own row only.
    alone = force_mass(make_day(ROWS[:1])).events
    together = force_mass(make_day(ROWS)).events
    for col in ("force", "mass", "predicted_acceleration", "acceleration_residual"):
        assert alone.loc[0, col] == together.loc[0, col]


def test_empty_events():
    out = force_mass(make_day([])).events
    assert len(out) == 0
    for c in load_manifest(MANIFEST).group("force_mass").columns:
        assert out[c.name].dtype == np.dtype(c.dtype), c.name
