"""Stage 11 (GEX): strike bands at their exact boundaries, strike at the level excluded,
call/put split, asymmetry, ratio with a zero denominator, empty options, causality."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.silver_fixtures import (
    PARAMS, assert_adds_group_columns, assert_group_dtypes, clock, events_frame, group_names,
    option_greeks_frame,
)
from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_MIN
from transforms.silver.stage_gex import gex

DATE = "2024-12-16"
at = clock(DATE)                     # at("09:35"): UTC ns of 09:35 New York time


def events(rows):
    """rows: (ts_ns, level_price); kind/entry are irrelevant to this stage."""
    return events_frame(DATE, [{"ts_ns": ts, "level_price": level, "entry_price": level - 1.0}
                               for ts, level in rows])


T1 = at("10:00")           # event 1 (level 5000)
T2 = at("10:30")           # events 2 and 3, after every option trade
OPTIONS = [
    (at("09:35"), 5000.0, "C", 1000.0),     # exactly at the level: neither side
    (at("09:36"), 5005.0, "C", 1.0),        # above, edge of band 1
    (at("09:37"), 5010.0, "P", 10.0),       # above, edge of band 2
    (at("09:38"), 5015.0, "C", 100.0),      # above, edge of band 3
    (at("09:39"), 5020.0, "C", 100000.0),   # above, outside band 3
    (at("09:40"), 4995.0, "P", -2.0),       # below, edge of band 1
    (at("09:41"), 4990.0, "C", -20.0),      # below, edge of band 2
    (at("09:42"), 4985.0, "P", -200.0),     # below, edge of band 3
    (at("09:43"), 4980.0, "P", -5000.0),    # below, outside band 3
    (T1, 5005.0, "C", 3000.0),              # exactly at event 1's ts: counts (<= t)
    (T1 + 1, 5005.0, "P", 7.0),             # 1 ns after event 1: does not count for it
]


def make_day(ev_rows=((T1, 5000.0), (T2, 5030.0), (T2, 4970.0)), opt_rows=OPTIONS):
    return SilverDay(date=DATE, params=PARAMS, events=events(list(ev_rows)),
                     option_greeks=option_greeks_frame(list(opt_rows)))


def test_columns_and_dtypes_match_the_manifest():
    day = make_day()
    out = gex(day).events
    assert_adds_group_columns(day.events, out, "gex")


def test_hand_computed_bands_split_asymmetry_ratio():
    day = make_day()
    before = day.option_greeks.copy()
    out = gex(day).events
    pd.testing.assert_frame_equal(day.option_greeks, before)
    exp = {
        # event 1: level 5000 at T1; event 2: level 5030 at T2; event 3: level 4970 at T2
        "gex_above_1strike": [3001.0, 0.0, 0.0],
        "gex_above_2strike": [3011.0, 0.0, -5000.0],
        "gex_above_3strike": [3111.0, 0.0, -5200.0],
        "gex_below_1strike": [-2.0, 0.0, 0.0],
        "gex_below_2strike": [-22.0, 100000.0, 0.0],
        "gex_below_3strike": [-222.0, 100100.0, 0.0],
        "call_gex_above_2strike": [3001.0, 0.0, 0.0],
        "call_gex_below_2strike": [-20.0, 100000.0, 0.0],
        "put_gex_above_2strike": [10.0, 0.0, -5000.0],
        "put_gex_below_2strike": [-2.0, 0.0, 0.0],
        "gex_asymmetry": [3033.0, -100000.0, -5000.0],
        "gex_ratio": [3011.0 / -22.0, 0.0, 0.0],      # event 3: denominator 0 -> 0.0
    }
    for col, values in exp.items():
        np.testing.assert_allclose(out[col].to_numpy(), values, err_msg=col)


def test_non_integer_level_uses_half_open_bands():
    # level 5002.5: above (5002.5, 5007.5] holds 5005 (C 1 + C 3000 + P 7 after T1);
    # below [4997.5, 5002.5) holds 5000 (C 1000).
    out = gex(make_day(ev_rows=[(T2, 5002.5)])).events
    assert out.loc[0, "gex_above_1strike"] == pytest.approx(3008.0)
    assert out.loc[0, "put_gex_above_2strike"] == pytest.approx(17.0)
    assert out.loc[0, "gex_below_1strike"] == pytest.approx(1000.0)


def test_causal_later_option_trades_ignored_earlier_ones_count():
    base = gex(make_day()).events
    cols = group_names("gex")
    # Change and add trades AFTER event 1: event 1 unchanged.
    later = OPTIONS[:-1] + [(T1 + 1, 5005.0, "P", -99999.0), (T1 + NS_PER_MIN, 4995.0, "C", 5.0)]
    changed = gex(make_day(opt_rows=later)).events
    pd.testing.assert_series_equal(base.loc[0, cols], changed.loc[0, cols])
    assert changed.loc[1, "gex_below_2strike"] == base.loc[1, "gex_below_2strike"]
    # ... whereas changing a trade BEFORE event 1 changes it.
    earlier = [(at("09:36"), 5005.0, "C", 2.0)] + [o for o in OPTIONS if o[0] != at("09:36")]
    changed = gex(make_day(opt_rows=earlier)).events
    assert changed.loc[0, "gex_above_1strike"] == pytest.approx(3002.0)
    assert changed.loc[0, "call_gex_above_2strike"] == pytest.approx(3002.0)


def test_empty_option_greeks_gives_zeros():
    day = SilverDay(date=DATE, params=PARAMS, events=events([(T1, 5000.0)]),
                    option_greeks=pd.DataFrame(columns=["ts_ns", "strike", "right", "dealer_gamma"]))
    out = gex(day).events
    cols = group_names("gex")
    assert (out[cols] == 0.0).all().all()


def test_empty_events():
    out = gex(make_day(ev_rows=[])).events
    assert len(out) == 0
    assert_group_dtypes(out, "gex")


def test_missing_option_greeks_is_reported():
    day = SilverDay(date=DATE, params=PARAMS, events=events([(T1, 5000.0)]))
    with pytest.raises(ValueError, match="option_greeks"):
        gex(day)
