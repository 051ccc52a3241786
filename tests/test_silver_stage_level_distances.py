"""Stage 10 (level distances): hand-computed distances, ATR units, stacking counts at the
inclusive band edges, own-kind exclusion, NaN for levels not existing yet, causality."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.silver_fixtures import (
    PARAMS, assert_adds_group_columns, assert_group_dtypes, clock, events_frame,
)
from transforms.silver.day import SilverDay
from transforms.silver.stage_level_distances import level_distances

DATE = "2024-12-16"
NAN = np.nan
at = clock(DATE)                     # at("09:44", 20): UTC ns of 09:44:20 New York time


def events(rows):
    """Identity + context columns from (ts_ns, kind_name, level_price, entry_price, atr)."""
    return events_frame(DATE, [
        {"ts_ns": ts, "kind": kind, "level_price": level, "entry_price": entry, "atr": atr,
         "direction": "UP" if entry < level else "DOWN"}
        for ts, kind, level, entry, atr in rows])


def levels(rows):
    """rows: (hhmm, PM_HIGH, PM_LOW, OR_HIGH, OR_LOW, SMA_200, SMA_400)."""
    names = ["PM_HIGH", "PM_LOW", "OR_HIGH", "OR_LOW", "SMA_200", "SMA_400"]
    return pd.DataFrame([{"bar_ns": at(r[0]), **dict(zip(names, map(float, r[1:])))}
                         for r in rows], columns=["bar_ns"] + names)


LEVELS = [  # hhmm     PM_HIGH PM_LOW OR_HIGH OR_LOW SMA_200 SMA_400
    ("09:44", 5010, 4980, NAN, NAN, 5003, NAN),
    ("09:45", 5010, 4980, 5012, 4999, 5004, NAN),
    ("09:46", 5010, 4980, 5012, 4999, 5005, 5000),
]
EVENTS = [  # ts, kind, level, entry, atr
    (at("09:44", 20), "PM_HIGH", 5010.0, 5006.0, 2.0),   # A
    (at("09:45", 10), "SMA_200", 5004.0, 5002.0, 4.0),   # B
    (at("09:46", 59), "SMA_400", 5000.0, 5001.0, 1.0),   # C
]


def make_day(ev_rows=EVENTS, lv_rows=LEVELS):
    return SilverDay(date=DATE, params=PARAMS, events=events(ev_rows), levels=levels(lv_rows))


def test_columns_and_dtypes_match_the_manifest():
    day = make_day()
    out = level_distances(day).events
    assert_adds_group_columns(day.events, out, "level_distances")


def test_hand_computed_distances_and_stacking():
    day = make_day()
    before = day.events.copy()
    out = level_distances(day).events
    pd.testing.assert_frame_equal(day.events, before)           # input not mutated
    exp = {  # A, B, C
        "dist_pm_high": [-4.0, -8.0, -9.0],
        "dist_pm_low": [26.0, 22.0, 21.0],
        "dist_or_high": [NAN, -10.0, -11.0],                    # OR not existing at 09:44
        "dist_or_low": [NAN, 3.0, 2.0],
        "dist_sma_200": [3.0, -2.0, -4.0],
        "dist_sma_400": [NAN, NAN, 1.0],                         # SMA 400 only from 09:46
        "dist_pm_high_atr": [-2.0, -2.0, -9.0],
        "dist_pm_low_atr": [13.0, 5.5, 21.0],
        "dist_or_high_atr": [NAN, -2.5, -11.0],
        "dist_or_low_atr": [NAN, 0.75, 2.0],
        "dist_sma_200_atr": [1.5, -0.5, -4.0],
        "dist_sma_400_atr": [NAN, NAN, 1.0],
        # A vs 5010: SMA_200 7 away -> 10pt only.  B vs 5004 (own SMA_200 at 0 excluded):
        # OR_LOW 5 (inclusive edge), PM_HIGH 6, OR_HIGH 8.  C vs 5000 (own SMA_400 excluded):
        # OR_LOW 1, SMA_200 5 (edge), PM_HIGH 10 (edge).
        "stacking_2pt": [0, 0, 1],
        "stacking_5pt": [0, 1, 2],
        "stacking_10pt": [1, 3, 3],
    }
    for col, values in exp.items():
        np.testing.assert_allclose(out[col].to_numpy(dtype=float), values, err_msg=col)


def test_nan_only_where_a_level_does_not_exist():
    out = level_distances(make_day()).events
    dist = out.filter(like="dist_")
    assert dist.isna().sum().sum() == 2 * 4                      # A: OR x2, SMA400; B: SMA400
    assert not out.filter(like="stacking_").isna().any().any()


def test_causal_later_level_rows_do_not_matter_the_event_bar_row_does():
    base = level_distances(make_day()).events
    # Change every level AFTER B's bar (09:46): A and B unchanged, C changes.
    later = [LEVELS[0], LEVELS[1], ("09:46", 5100, 4900, 5101, 4901, 5102, 5103)]
    changed = level_distances(make_day(lv_rows=later)).events
    cols = [c for c in base.columns if c.startswith(("dist_", "stacking_"))]
    pd.testing.assert_frame_equal(base.loc[:1, cols], changed.loc[:1, cols])
    assert not np.allclose(base.loc[2, "dist_pm_high"], changed.loc[2, "dist_pm_high"])
    # Change B's own bar row (09:45): B changes.
    own = [LEVELS[0], ("09:45", 5010, 4980, 5012, 4999, 5004, 5004.5), LEVELS[2]]
    changed = level_distances(make_day(lv_rows=own)).events
    assert changed.loc[1, "dist_sma_400"] == pytest.approx(-2.5)
    assert changed.loc[1, "stacking_2pt"] == 1


def test_missing_bar_row_falls_back_to_the_last_earlier_row():
    out = level_distances(make_day(lv_rows=[LEVELS[0], LEVELS[2]])).events
    # B (09:45) sees the 09:44 row, never the later 09:46 one.
    assert np.isnan(out.loc[1, "dist_or_high"])
    assert out.loc[1, "dist_sma_200"] == pytest.approx(-1.0)


def test_event_before_any_level_row_sees_no_levels():
    out = level_distances(make_day(ev_rows=[(at("09:40", 5), "PM_HIGH", 5010.0, 5009.0, 1.0)])).events
    assert out.filter(like="dist_").isna().all().all()
    assert (out.filter(like="stacking_") == 0).all().all()


def test_empty_events():
    day = make_day(ev_rows=[])
    out = level_distances(day).events
    assert len(out) == 0
    assert_group_dtypes(out, "level_distances")


def test_missing_levels_frame_is_reported():
    day = SilverDay(date=DATE, params=PARAMS, events=events(EVENTS))
    with pytest.raises(ValueError, match="levels"):
        level_distances(day)
