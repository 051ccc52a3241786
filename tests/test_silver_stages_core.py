"""Silver stages 0-5, 14 and 15 on hand-built inputs with known answers."""
from __future__ import annotations

import copy
import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from tests.silver_fixtures import MANIFEST, PARAMS, at, day_with, trades_frame
from transforms.silver.session import NS_PER_MIN, NS_PER_S, local_ns, previous_weekdays
from transforms.silver.stage_bars import bars_1m, bars_2m
from transforms.silver.stage_interaction_zones import interaction_zones
from transforms.silver.stage_labels import labels
from transforms.silver.stage_levels import levels
from transforms.silver.stage_load_bronze import downsample_last, load_bronze
from transforms.silver.stage_market_state import black76_gamma_delta, market_state
from transforms.silver.stage_rth_filter import SchemaMismatch, rth_filter, to_declared_table
from transforms.silver.stages import apply_stage, run_stages
from transforms.silver.day import DayFailure

WINTER, SUMMER = "2024-12-16", "2024-07-15"


# ---------------------------------------------------------------- session clock
def test_session_clock_is_dst_correct():
    assert local_ns(WINTER, "09:30") == int(dt.datetime(2024, 12, 16, 14, 30,
                                                       tzinfo=dt.timezone.utc).timestamp()) * NS_PER_S
    assert local_ns(SUMMER, "09:30") == int(dt.datetime(2024, 7, 15, 13, 30,
                                                       tzinfo=dt.timezone.utc).timestamp()) * NS_PER_S


def test_previous_weekdays_skip_weekends():
    assert previous_weekdays("2024-12-16", 3) == ["2024-12-11", "2024-12-12", "2024-12-13"]


# ---------------------------------------------------------------- stage 0
def test_downsample_keeps_last_update_of_each_bucket():
    ts = np.array([0, 100, 249_999_999, 250_000_000, 600_000_000], dtype=np.int64)
    assert downsample_last(ts, 250_000_000).tolist() == [2, 3, 4]


def _raw_book(ts_list):
    rows = []
    for k, ts in enumerate(ts_list):
        row = {"ts_event_ns": ts, "ts_recv_ns": ts, "source": "sim", "symbol": "ESH5",
               "is_snapshot": False, "seq": k}
        for i in range(1, 11):
            row.update({f"bid_px_{i}": 6000 - 0.25 * i, f"bid_sz_{i}": k + i,
                        f"ask_px_{i}": 6000 + 0.25 * (i - 1), f"ask_sz_{i}": k + i})
        rows.append(row)
    return pd.DataFrame(rows)


def test_load_bronze_windows_and_downsamples_the_book_and_renames():
    base = at(WINTER, "09:30")
    book = _raw_book([at(WINTER, "09:25"),                    # before the 09:26 window
                      base, base + 100_000_000, base + 200_000_000,   # one 250 ms bucket
                      base + 300_000_000, at(WINTER, "16:04")])       # end is exclusive
    trades = pd.DataFrame({"ts_event_ns": [base + 5, base], "price": [6000.0, 6000.25],
                           "size": [1, 2], "aggressor": [1, -1], "symbol": ["ESH5"] * 2})
    options = pd.DataFrame({"ts_event_ns": [base], "strike": [6000.0], "right": ["C"],
                            "price": [5.0], "size": [1], "aggressor": [1],
                            "exp_date": [dt.date(2024, 12, 16)]})
    out = load_bronze(day_with(WINTER, trades=trades, mbp=book, options=options))
    # last update of each 250 ms bucket, stamped at the bucket's end
    assert out.mbp["ts_ns"].tolist() == [base + 250_000_000, base + 500_000_000]
    assert out.mbp["bid_sz_1"].tolist() == [4, 5]          # the updates at +200 and +300 ms
    assert list(out.trades.columns) == ["ts_ns", "price", "size", "aggressor"]
    assert out.trades["ts_ns"].tolist() == [base, base + 5]          # sorted
    assert out.options["ts_ns"].tolist() == [base]
    assert len(out.warmup) == 0


# ---------------------------------------------------------------- stages 1, 2
def test_bars_1m_ohlcv_atr_and_price_filter():
    t0 = at(WINTER, "10:00")
    trades = trades_frame([
        (t0 + 1 * NS_PER_S, 6000.0, 2, 1), (t0 + 20 * NS_PER_S, 6003.0, 1, -1),
        (t0 + 40 * NS_PER_S, 5999.0, 3, 1), (t0 + 59 * NS_PER_S, 6001.0, 1, -1),
        (t0 + 61 * NS_PER_S, 6010.0, 1, 1), (t0 + 90 * NS_PER_S, 6008.0, 1, 1),
        (t0 + 100 * NS_PER_S, 2.0, 5, 1)])               # outside 3000..10000: dropped
    bars = bars_1m(day_with(WINTER, trades=trades)).bars_1m
    assert bars["bar_ns"].tolist() == [t0, t0 + NS_PER_MIN]
    first, second = bars.iloc[0], bars.iloc[1]
    assert (first.open, first.high, first.low, first.close) == (6000, 6003, 5999, 6001)
    assert (first.volume, first.buy_volume, first.sell_volume, first.trades) == (7, 5, 2, 4)
    assert second.volume == 2
    # true range of bar 2 = max(10 - 8, |10 - 6001|, |8 - 6001|) = 9 -> mean(4, 9)
    assert first.atr == 4 and second.atr == pytest.approx(6.5)


def test_bars_2m_sma_uses_warmup_and_is_nan_until_full():
    params = copy.deepcopy(PARAMS)
    params["bars"]["sma_periods"] = [2, 3]
    t0 = at(WINTER, "10:00")
    warm = pd.DataFrame({"ts_ns": [t0 - 3 * 2 * NS_PER_MIN], "price": [5990.0]})
    trades = trades_frame([(t0, 6000.0), (t0 + 2 * NS_PER_MIN, 6004.0),
                           (t0 + 2 * NS_PER_MIN + 5, 6002.0)])
    b2 = bars_2m(day_with(WINTER, trades=trades, warmup=warm, params=params)).bars_2m
    assert b2["close"].tolist() == [5990.0, 6000.0, 6002.0]
    assert math.isnan(b2["sma_2"][0]) and b2["sma_2"][1] == 5995.0 and b2["sma_2"][2] == 6001.0
    assert b2["sma_3"].isna().tolist() == [True, True, False]
    assert b2["sma_3"][2] == pytest.approx((5990 + 6000 + 6002) / 3)


# ---------------------------------------------------------------- stage 3
def test_black76_gamma_matches_the_closed_form():
    f, k, t, s, r = 6000.0, 6010.0, 2.0 / (365 * 24), 0.2, 0.045
    d1 = (math.log(f / k) + 0.5 * s * s * t) / (s * math.sqrt(t))
    want = math.exp(-r * t) * math.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi) / (f * s * math.sqrt(t))
    gamma, delta = black76_gamma_delta([f, f], [k, k], [t, t], s, r, [True, False])
    assert gamma[0] == pytest.approx(want, rel=1e-12)
    assert delta[0] - delta[1] == pytest.approx(math.exp(-r * t), rel=1e-12)   # parity
    g, d = black76_gamma_delta([f], [k], [0.0], s, r, [True])
    assert g[0] == 0 and d[0] == 0                                              # expired


def test_market_state_dealer_gamma_sign_and_causal_forward():
    t0 = at(WINTER, "14:00")
    trades = trades_frame([(t0 - NS_PER_S, 6000.0), (t0 + NS_PER_S, 6100.0)])
    options = pd.DataFrame({"ts_ns": [t0, t0], "strike": [6000.0, 6000.0],
                            "right": ["C", "P"], "price": [5.0, 5.0], "size": [3, 3],
                            "aggressor": [1, -1], "exp_date": [dt.date(2024, 12, 16)] * 2})
    g = market_state(day_with(WINTER, trades=trades, options=options)).option_greeks
    assert g["fwd"].tolist() == [6000.0, 6000.0]          # not the later 6100 trade
    assert g["years"][0] == pytest.approx(2 * 3600 / (365 * 24 * 3600))
    assert g["gamma"][0] > 0
    assert g["dealer_gamma"][0] == pytest.approx(-3 * g["gamma"][0] * 50)   # customer buys
    assert g["dealer_gamma"][1] == pytest.approx(+3 * g["gamma"][1] * 50)   # customer sells


# ---------------------------------------------------------------- stage 4
def _levels_day(date):
    # one trade a minute from 04:00 to 11:00 local; premarket 6000..6010, OR 6020..6030
    t0 = at(date, "04:00")
    rows = []
    for i in range(7 * 60):
        ts = t0 + i * NS_PER_MIN + 30 * NS_PER_S
        local = 4 * 60 + i                       # minutes after midnight local
        if local < 9 * 60 + 30:
            price = 6000.0 + (i % 11)            # 6000..6010
        elif local < 9 * 60 + 45:
            price = 6020.0 + (local - 570) * 10 / 14   # 6020..6030
        else:
            price = 6025.0
        rows.append((ts, price))
    day = day_with(date, trades=trades_frame(rows))
    return levels(bars_2m(bars_1m(day)))


@pytest.mark.parametrize("date", [WINTER, SUMMER])
def test_levels_exist_only_once_known_and_dst_correct(date):
    lv = _levels_day(date).levels
    ts = lv["bar_ns"]
    before_open = lv[ts < at(date, "09:30")]
    assert before_open["PM_HIGH"].isna().all() and before_open["OR_HIGH"].isna().all()
    in_or = lv[(ts >= at(date, "09:30")) & (ts < at(date, "09:45"))]
    assert (in_or["PM_HIGH"] == 6010.0).all() and (in_or["PM_LOW"] == 6000.0).all()
    assert in_or["OR_HIGH"].isna().all()                       # not known before 09:45
    after = lv[ts >= at(date, "09:45")]
    assert (after["OR_HIGH"] == 6030.0).all() and (after["OR_LOW"] == 6020.0).all()


def test_sma_level_is_that_of_the_last_completed_two_minute_bar():
    day = _levels_day(WINTER)
    b2, lv = day.bars_2m, day.levels
    assert lv["SMA_200"].iloc[:390].isna().all()       # fewer than 200 closes before
    for _, row in lv.iloc[[-2, -1]].iterrows():        # one odd, one even minute
        done = b2[b2["bar_ns"] + 2 * NS_PER_MIN <= row["bar_ns"]]
        assert row["SMA_200"] == pytest.approx(done["sma_200"].iloc[-1])


# ---------------------------------------------------------------- stage 5
def _zone_day(prices_per_minute, start="10:00"):
    """Bars from explicit per-minute trade prices; a PM_HIGH level at 6010 is injected."""
    rows = []
    t0 = at(WINTER, start)
    for i, plist in enumerate(prices_per_minute):
        for j, p in enumerate(plist):
            rows.append((t0 + i * NS_PER_MIN + (j + 1) * 5 * NS_PER_S, p))
    day = bars_1m(day_with(WINTER, trades=trades_frame(rows)))
    lv = pd.DataFrame({"bar_ns": day.bars_1m["bar_ns"]})
    for name in PARAMS["levels"]["kind_codes"]:
        lv[name] = np.nan
    lv["PM_HIGH"] = 6010.0
    return day.replace(levels=lv, trades=trades_frame(rows)), rows


def test_zone_entry_event_time_price_direction_and_id():
    # ATR small -> half width 5: zone [6005, 6015]
    day, rows = _zone_day([[6000.0, 6001.0], [6001.0, 6002.0], [6003.0, 6006.0, 6008.0],
                           [6009.0, 6007.0], [6001.0, 6000.0], [6004.0, 6012.0]])
    ev = interaction_zones(day).events
    assert len(ev) == 2
    first = ev.iloc[0]
    assert first.ts_ns == rows[5][0] and first.entry_price == 6006.0   # first trade inside
    assert first.direction == "UP" and first.zone_width == 5.0
    assert first.level_kind_name == "PM_HIGH" and first.level_kind == 0
    assert first.event_id == f"{WINTER}_PM_HIGH_601000_{rows[5][0]}_UP"
    assert ev.iloc[1].entry_price == 6012.0           # re-entry after a bar outside
    # the bar after an inside bar is not a new event (minute 4 is inside: no event there)


def test_zone_direction_down_from_above_and_width_from_atr():
    day, rows = _zone_day([[6030.0, 6060.0], [6060.0, 6030.0], [6040.0, 6035.0],
                           [6030.0, 6012.0]])
    ev = interaction_zones(day).events
    assert len(ev) == 1 and ev.iloc[0].direction == "DOWN"
    atr_prev = day.bars_1m["atr"].iloc[2]
    assert ev.iloc[0].zone_width == pytest.approx(max(5.0, 0.1 * atr_prev))
    assert ev.iloc[0].atr == pytest.approx(atr_prev)


# ---------------------------------------------------------------- stage 14
def _label_day(after, direction="UP", atr=2.0, level=6010.0, entry=6006.0):
    t = at(WINTER, "10:30")
    ev = pd.DataFrame({"ts_ns": [t], "level_price": [level], "direction": [direction],
                       "entry_price": [entry], "atr": [atr]})
    rows = [(t, entry)] + [(t + int(s * NS_PER_S), p) for s, p in after]
    return day_with(WINTER, trades=trades_frame(rows), events=ev), t


def test_labels_break_first_crossing_and_horizons():
    day, _ = _label_day([(30, 6009.0), (90, 6012.5), (150, 6003.0), (300, 6020.0)])
    row = labels(day).events.iloc[0]
    assert row.outcome == "BREAK" and row.time_to_break == 90.0       # 6012.5 >= 6010 + 2
    assert row.time_to_bounce == 150.0                                 # 6003 <= 6006 - 2
    assert row.outcome_2min == "BREAK"
    assert row.excursion_favorable == 6.5 and row.excursion_adverse == 3.0
    assert row.strength_signed == pytest.approx((6003.0 - 6010.0) / 2.0)
    assert row.outcome_8min == "BREAK" and row.strength_signed_8min == pytest.approx(5.0)


def test_labels_reject_chop_and_down_direction():
    day, _ = _label_day([(10, 6003.5), (20, 6013.0)])
    assert labels(day).events.iloc[0].outcome == "REJECT"
    day, _ = _label_day([(10, 6007.0), (20, 6011.0)])
    row = labels(day).events.iloc[0]
    assert row.outcome == "CHOP" and math.isnan(row.time_to_break)
    day, _ = _label_day([(5, 6007.5)], direction="DOWN", level=6005.0, entry=6009.0)
    row = labels(day).events.iloc[0]
    assert row.outcome == "CHOP"
    day, _ = _label_day([(5, 6002.5)], direction="DOWN", level=6005.0, entry=6009.0)
    assert labels(day).events.iloc[0].outcome == "BREAK"


def test_labels_ignore_trades_beyond_the_horizon():
    day, _ = _label_day([(3 * 60, 6009.0), (5 * 60, 6020.0)])
    row = labels(day).events.iloc[0]
    assert row.outcome_2min == "CHOP" and row.outcome == "CHOP" and row.outcome_8min == "BREAK"


# ---------------------------------------------------------------- stage 15
def _full_events(times):
    cols = {}
    for name, dtype in MANIFEST.columns():
        if dtype == "string":
            cols[name] = ["x"] * len(times)
        elif dtype == "bool":
            cols[name] = [False] * len(times)
        elif dtype.startswith("int"):
            cols[name] = np.zeros(len(times), dtype=dtype)
        elif dtype == "date32":
            cols[name] = [dt.date(2024, 12, 16)] * len(times)
        elif dtype.startswith("timestamp"):
            cols[name] = pd.to_datetime(times, unit="ns", utc=True)
        else:
            cols[name] = np.ones(len(times))
    df = pd.DataFrame(cols)
    df["ts_ns"] = np.asarray(times, dtype=np.int64)
    df["atr"] = 1.0
    df["bar_ns"] = df["ts_ns"] - df["ts_ns"] % NS_PER_MIN
    return df


@pytest.mark.parametrize("date", [WINTER, SUMMER])
def test_rth_filter_window_is_half_open_and_dst_correct(date):
    times = [at(date, "09:29", 59), at(date, "09:30"), at(date, "12:29", 59),
             at(date, "12:30")]
    out = rth_filter(day_with(date, events=_full_events(times))).events
    assert out["ts_ns"].tolist() == times[1:3]
    assert list(out.columns) == MANIFEST.column_names() + ["bar_ns"]


def test_rth_filter_names_missing_and_mistyped_columns():
    ev = _full_events([at(WINTER, "10:00")]).drop(columns=["ofi_30s"])
    with pytest.raises(SchemaMismatch, match="ofi_30s"):
        rth_filter(day_with(WINTER, events=ev))
    ev = _full_events([at(WINTER, "10:00")])
    ev["approach_bars"] = ["three"]
    with pytest.raises(SchemaMismatch, match="approach_bars"):
        to_declared_table(ev, MANIFEST.columns())


def test_a_failing_stage_becomes_a_day_failure_naming_it():
    day = day_with(WINTER, trades=None)
    out = run_stages(day, ["bars_1m", "levels"])
    assert isinstance(out, DayFailure) and out.stage == "bars_1m"
    assert "trades" in out.reason
    assert apply_stage("levels", out) is out                 # passes through untouched


def test_book_sampling_is_causal():
    """The sampled book visible at time t must not depend on updates after t (keeping a
    bucket's last update at its own time did: a later update in the same bucket replaced
    an earlier one that was visible at t)."""
    base = at(WINTER, "10:00")
    updates = [base, base + 300_000_000, base + 400_000_000, base + 900_000_000]
    options = pd.DataFrame({c: [] for c in ("ts_event_ns", "strike", "right", "price",
                                            "size", "aggressor", "exp_date")})
    trades = pd.DataFrame({"ts_event_ns": [base], "price": [6000.0], "size": [1],
                           "aggressor": [1]})
    for t in (base + 350_000_000, base + 450_000_000, base + 950_000_000):
        full = load_bronze(day_with(WINTER, trades=trades, mbp=_raw_book(updates),
                                    options=options)).mbp
        seen = [u for u in updates if u <= t]
        cut = load_bronze(day_with(WINTER, trades=trades, mbp=_raw_book(seen),
                                   options=options)).mbp
        visible_full = full[full["ts_ns"] <= t].reset_index(drop=True)
        visible_cut = cut[cut["ts_ns"] <= t].reset_index(drop=True)
        pd.testing.assert_frame_equal(visible_full, visible_cut)
