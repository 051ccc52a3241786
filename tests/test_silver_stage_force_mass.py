"""Stage 12 (force / mass): hand-computed force, mass floor, predicted acceleration and
residual; the stage only combines earlier (already causal) event columns."""
from __future__ import annotations

import numpy as np
import pandas as pd

from tests.silver_fixtures import (
    PARAMS, assert_adds_group_columns, assert_group_dtypes, events_frame,
)
from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_MIN, local_ns
from transforms.silver.stage_force_mass import force_mass

DATE = "2024-12-16"
INPUTS = ["ofi_60s", "tape_imbalance", "tape_buy_vol", "tape_sell_vol", "barrier_depth_end",
          "acceleration_1min"]


def events(rows):
    """rows: (ofi_60s, tape_imbalance, tape_buy_vol, tape_sell_vol, barrier_depth_end,
    acceleration_1min); one OR_HIGH event a minute from 10:00."""
    ts0 = local_ns(DATE, "10:00")
    return events_frame(DATE, [{"ts_ns": ts0 + i * NS_PER_MIN, "entry_price": 4999.0,
                                **dict(zip(INPUTS, values))} for i, values in enumerate(rows)],
                        extra=dict.fromkeys(INPUTS, np.nan))     # every row sets all six


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
    assert_adds_group_columns(day.events, out, "force_mass")


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
    assert_group_dtypes(out, "force_mass")
