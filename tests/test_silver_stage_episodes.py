"""Silver stage 17 (episodes): 144-value label-free vectors, block layout, micro history, DCT,
asinh + clip normalisation, causality."""
from __future__ import annotations

import copy
import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tests.silver_fixtures import KINDS, MANIFEST, PARAMS, clock, declared_events_frame
from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_MIN, NS_PER_S
from transforms.silver.stage_episodes import (
    EPISODE_SCHEMA, OUTPUT_COLUMNS, block_slices, dct_ii_matrix, episodes, vector_names,
)

DATE = "2024-07-15"
A1 = float(np.arcsinh(1.0))
t = clock(DATE)                      # t("10:00", 30): UTC ns of 10:00:30 New York time


def make_events(rows) -> pd.DataFrame:
    """Events with every manifest column (zeros / NEUTRAL by default, attempt_index 1) plus
    ``rows`` overrides."""
    return declared_events_frame(DATE, rows, defaults={"attempt_index": 1})


def make_bars(start="09:00", minutes=120, seed=3, **const) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    bar_ns = t(start) + np.arange(minutes, dtype=np.int64) * NS_PER_MIN
    close = 5000 + rng.normal(0, 1, minutes).cumsum()
    open_ = close + rng.normal(0, 0.5, minutes)
    high = np.maximum(open_, close) + rng.uniform(0, 1, minutes)
    low = np.minimum(open_, close) - rng.uniform(0, 1, minutes)
    buy = rng.integers(0, 50, minutes).astype(float)
    sell = rng.integers(0, 50, minutes).astype(float)
    cols = {"bar_ns": bar_ns, "open": open_, "high": high, "low": low, "close": close,
            "volume": buy + sell, "buy_volume": buy, "sell_volume": sell,
            "trades": rng.integers(1, 30, minutes), "atr": np.full(minutes, 2.0),
            "volatility": np.full(minutes, 0.5)}
    for k, v in const.items():
        cols[k] = np.full(minutes, float(v))
    return pd.DataFrame(cols)


def make_trades(n=2000, seed=4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(t("09:00"), t("12:40"), n)).astype(np.int64)
    return pd.DataFrame({"ts_ns": ts, "price": 5000 + rng.normal(0, 1, n).cumsum(),
                         "size": np.ones(n, np.int32), "aggressor": np.ones(n, np.int8)})


def make_day(events, bars=None, params=PARAMS) -> SilverDay:
    return SilverDay(date=DATE, params=params, events=events,
                     bars_1m=make_bars() if bars is None else bars, trades=make_trades())


def random_events(n=30, seed=5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        row = {"ts_ns": int(rng.integers(t("09:30"), t("12:30"))),
               "kind": list(KINDS)[i % 6], "direction": "UP" if i % 2 else "DOWN",
               "level_price": float(5000 + rng.integers(-20, 20)),
               "attempt_index": int(rng.integers(1, 4)),
               "fuel_effect": str(rng.choice(["AMPLIFY", "NEUTRAL", "DAMPEN"])),
               "barrier_state": str(rng.choice(["WALL", "VACUUM", "WEAK", "ABSORPTION"])),
               "gex_nonzero": bool(rng.integers(0, 2))}
        for c, dtype in MANIFEST.columns():
            if c in MANIFEST.feature_columns and dtype == "float64":
                row[c] = float(rng.normal(0, 3))
        row["minutes_since_open"] = (row["ts_ns"] - t("09:30")) / NS_PER_MIN
        rows.append(row)
    return make_events(rows)


def vec(day, i=0):
    return episodes(day).episodes["vector"].iloc[i]


def pos(name: str) -> int:
    return vector_names(make_day(make_events([]))).index(name)


# --- layout ----------------------------------------------------------------------------------

def test_layout_sizes_follow_the_manifest():
    day = make_day(make_events([]))
    names = vector_names(day)
    assert len(names) == 144 == len(set(names))
    sl = block_slices(day)
    comps = PARAMS["episodes"]["components"]
    assert list(sl) == ["context", "dynamics", "micro_history", "derived_physics", "trends", "dct"]
    assert {b: s.stop - s.start for b, s in sl.items()} == comps
    assert sl["context"].start == 0 and sl["dct"].stop == 144
    assert names[:7] == ["context.onehot_PM_HIGH", "context.onehot_PM_LOW", "context.onehot_OR_HIGH",
                         "context.onehot_OR_LOW", "context.onehot_SMA_200",
                         "context.onehot_SMA_400", "context.direction"]
    assert names[24] == "context.attempt_index"
    assert names[25] == "dynamics.velocity_1min" and names[61] == "dynamics.approach_distance"
    assert names[62] == "micro_history.bar_t-5.close_minus_level"
    assert names[96] == "micro_history.bar_t-1.close_minus_open"
    assert names[97] == "derived_physics.force" and names[107] == "derived_physics.approach_bars"
    assert names[108:112] == ["trends.momentum_trend", "trends.sma_200_minus_entry_atr",
                              "trends.sma_400_minus_entry_atr", "trends.sign_velocity_20min"]
    assert names[112] == "dct.dct.close_minus_level.c0" and names[143] == "dct.dct.high_minus_low.c7"
    # every name that is a plain column is a manifest feature (or identity) column, never a label
    plain = {n.split(".", 1)[1] for n in names} & set(MANIFEST.column_names())
    assert plain - {"direction"} <= set(MANIFEST.feature_columns)
    assert not plain & set(MANIFEST.label_columns)


def test_components_must_add_up_to_dims():
    params = copy.deepcopy(dict(PARAMS))
    params["episodes"]["components"]["dct"] = 31
    with pytest.raises(ValueError, match="add up to 143"):
        episodes(make_day(make_events([]), params=params))
    params["episodes"]["components"]["dct"] = 32
    params["episodes"]["components"]["context"] = 24
    params["episodes"]["components"]["trends"] = 5
    with pytest.raises(ValueError, match="context"):
        episodes(make_day(make_events([]), params=params))


# --- context / physics / trends positions ----------------------------------------------------

@pytest.mark.parametrize("kind, direction", [("PM_HIGH", "UP"), ("OR_HIGH", "DOWN"),
                                             ("SMA_200", "UP"), ("SMA_400", "DOWN")])
def test_one_hot_and_direction_land_where_stated(kind, direction):
    ev = make_events([{"ts_ns": t("10:00"), "kind": kind, "direction": direction}])
    v = vec(make_day(ev))
    order = ["PM_HIGH", "PM_LOW", "OR_HIGH", "OR_LOW", "SMA_200", "SMA_400"]
    expect = np.zeros(6)
    expect[order.index(kind)] = A1
    np.testing.assert_allclose(v[:6], expect, rtol=1e-6)
    assert v[6] == pytest.approx(A1 if direction == "UP" else -A1, rel=1e-6)


def test_named_features_land_in_their_positions():
    ev = make_events([{"ts_ns": t("10:00"), "minutes_since_open": 0.5, "dist_or_low_atr": -0.25,
                       "attempt_index": 3, "ofi_acceleration": 0.125, "depth_current": 2.0,
                       "approach_distance": -1.5, "force": 0.75, "tape_volume_nonzero": True,
                       "fuel_effect": "AMPLIFY", "barrier_state": "WALL", "approach_bars": 2,
                       "momentum_trend": -0.5, "sma_200": 5003.0, "sma_400": 4998.0,
                       "atr": 2.0, "entry_price": 5001.0, "velocity_20min": -0.01}])
    v = vec(make_day(ev))
    expect = {
        "context.minutes_since_open": 0.5, "context.dist_or_low_atr": -0.25,
        "context.attempt_index": 3, "context.atr": 2.0, "dynamics.ofi_acceleration": 0.125,
        "dynamics.depth_current": 2.0, "dynamics.approach_distance": -1.5,
        "derived_physics.force": 0.75, "derived_physics.tape_volume_nonzero": 1.0,
        "derived_physics.fuel_effect_code": -1.0, "derived_physics.barrier_state_code": 2.0,
        "derived_physics.approach_bars": 2.0, "trends.momentum_trend": -0.5,
        "trends.sma_200_minus_entry_atr": (5003.0 - 5001.0) / 2.0,
        "trends.sma_400_minus_entry_atr": (4998.0 - 5001.0) / 2.0,
        "trends.sign_velocity_20min": -1.0,
    }
    for name, x in expect.items():
        assert v[pos(name)] == pytest.approx(np.arcsinh(x), rel=1e-6, abs=1e-7), name
    assert v[pos("context.dist_pm_high_atr")] == 0.0


@pytest.mark.parametrize("fuel, code", [("AMPLIFY", -1), ("NEUTRAL", 0), ("DAMPEN", 1), (None, 0)])
def test_fuel_effect_codes(fuel, code):
    v = vec(make_day(make_events([{"ts_ns": t("10:00"), "fuel_effect": fuel}])))
    assert v[pos("derived_physics.fuel_effect_code")] == pytest.approx(np.arcsinh(code))


@pytest.mark.parametrize("state, code", [("VACUUM", -2), ("CONSUMED", -1), ("NEUTRAL", 0),
                                         ("WEAK", 0), ("ABSORPTION", 1), ("WALL", 2)])
def test_barrier_state_codes(state, code):
    v = vec(make_day(make_events([{"ts_ns": t("10:00"), "barrier_state": state}])))
    assert v[pos("derived_physics.barrier_state_code")] == pytest.approx(np.arcsinh(code))


def test_zero_atr_trend_ratio_is_zero():
    v = vec(make_day(make_events([{"ts_ns": t("10:00"), "sma_200": 5010.0, "atr": 0.0}])))
    assert v[pos("trends.sma_200_minus_entry_atr")] == 0.0


# --- normalisation ---------------------------------------------------------------------------

def test_asinh_then_clip_and_nan_to_zero():
    ev = make_events([{"ts_ns": t("10:00"), "force": 1e9, "mass": -1e9, "tape_imbalance": np.nan,
                       "ofi_30s": np.inf, "ofi_60s": 20.0, "ofi_120s": -0.3}])
    v = vec(make_day(ev))
    assert v.dtype == np.float32 and v.shape == (144,)
    assert v[pos("derived_physics.force")] == 4.0
    assert v[pos("derived_physics.mass")] == -4.0
    assert v[pos("dynamics.tape_imbalance")] == 0.0
    assert v[pos("dynamics.ofi_30s")] == 4.0
    assert v[pos("dynamics.ofi_60s")] == pytest.approx(np.arcsinh(20.0))   # 3.689: not clipped
    assert v[pos("dynamics.ofi_120s")] == pytest.approx(np.arcsinh(-0.3))
    big = random_events()
    for c in MANIFEST.feature_columns:
        if big[c].dtype == np.float64:
            big[c] = big[c] * 1e6
    vs = np.stack(episodes(make_day(big)).episodes["vector"])
    assert np.isfinite(vs).all() and np.abs(vs).max() <= 4.0
    assert (np.abs(vs) == 4.0).any()


def test_clip_follows_parameter():
    params = copy.deepcopy(dict(PARAMS))
    params["episodes"]["clip"] = 2.5
    v = vec(make_day(make_events([{"ts_ns": t("10:00"), "force": 1e9}]), params=params))
    assert v[pos("derived_physics.force")] == 2.5


# --- micro history ---------------------------------------------------------------------------

def test_micro_history_uses_the_last_completed_bars_oldest_first_zero_padded():
    bars = pd.DataFrame({
        "bar_ns": [t("09:57"), t("09:58"), t("09:59"), t("10:00")],
        "open": [1.0, 2.0, 3.0, 99.0], "high": [1.5, 2.5, 3.5, 99.0],
        "low": [0.5, 1.0, 2.0, 99.0], "close": [1.25, 2.25, 3.25, 99.0],
        "volume": [4.0, 5.0, 6.0, 99.0], "buy_volume": [3.0, 1.0, 3.0, 99.0],
        "sell_volume": [1.0, 4.0, 3.0, 0.0], "trades": [1, 1, 1, 1],
        "atr": [1.0] * 4, "volatility": [1.0] * 4})
    level = 2.0
    ev = make_events([{"ts_ns": t("10:00", 0), "level_price": level}])       # 10:00 bar not done
    v = vec(make_day(ev, bars=bars))
    sl = block_slices(make_day(ev))["micro_history"]
    block = np.asarray(v[sl]).reshape(5, 7)
    assert (block[:2] == 0).all()                                            # 2 missing steps
    for step, i in zip(range(2, 5), range(3)):
        b = bars.iloc[i]
        raw = [b.close - level, b.high - level, b.low - level, b.volume,
               b.buy_volume - b.sell_volume, b.high - b.low, b.close - b.open]
        np.testing.assert_allclose(block[step], np.arcsinh(raw), rtol=1e-6, atol=1e-7)
    # one ns earlier the 09:59 bar is not complete yet: the window shifts by one
    ev2 = make_events([{"ts_ns": t("10:00") - 1, "level_price": level}])
    block2 = np.asarray(vec(make_day(ev2, bars=bars))[sl]).reshape(5, 7)
    assert (block2[:3] == 0).all()
    np.testing.assert_array_equal(block2[3:], block[2:4])


def test_micro_history_skips_minutes_without_bars():
    bars = make_bars(start="09:00", minutes=60)
    bars = bars[(bars["bar_ns"] < t("09:50")) | (bars["bar_ns"] >= t("09:55"))].reset_index(drop=True)
    ev = make_events([{"ts_ns": t("09:57", 10)}])
    sl = block_slices(make_day(ev))["micro_history"]
    block = np.asarray(vec(make_day(ev, bars=bars))[sl]).reshape(5, 7)
    used = bars[bars["bar_ns"] + 60 * NS_PER_S <= t("09:57", 10)].tail(5)
    assert list(used["bar_ns"]) == [t("09:47"), t("09:48"), t("09:49"), t("09:55"), t("09:56")]
    np.testing.assert_allclose(block[:, 3], np.clip(np.arcsinh(used["volume"].to_numpy()), -4, 4),
                               rtol=1e-6)
    np.testing.assert_allclose(block[:, 6], np.arcsinh((used["close"] - used["open"]).to_numpy()),
                               rtol=1e-5, atol=1e-6)


# --- DCT -------------------------------------------------------------------------------------

def test_dct_matrix_is_orthonormal_dct_ii():
    c = dct_ii_matrix(20)
    np.testing.assert_allclose(c @ c.T, np.eye(20), atol=1e-12)
    x = np.random.default_rng(0).normal(size=20)
    n = np.arange(20)
    naive = [np.sqrt((1 if k == 0 else 2) / 20) * np.sum(x * np.cos(np.pi * k * (2 * n + 1) / 40))
             for k in range(20)]
    np.testing.assert_allclose(c @ x, naive, atol=1e-12)


def test_dct_of_a_constant_series_is_all_in_coefficient_zero():
    bars = make_bars(start="09:00", minutes=60, close=5000.5, volume=3.0, buy_volume=2.0,
                     sell_volume=1.0, high=5001.0, low=5000.0, open=5000.5)
    ev = make_events([{"ts_ns": t("09:45", 20), "level_price": 5000.0}])
    v = vec(make_day(ev, bars=bars))
    sl = block_slices(make_day(ev))["dct"]
    dct = np.asarray(v[sl]).reshape(4, 8)
    root = np.sqrt(20)
    for s, c in enumerate([0.5, 3.0, 1.0, 1.0]):          # close-level, volume, buy-sell, hi-lo
        assert dct[s, 0] == pytest.approx(np.arcsinh(c * root), rel=1e-6)
        np.testing.assert_allclose(dct[s, 1:], 0.0, atol=1e-6)


def test_dct_zero_pads_at_the_front_and_matches_reference():
    bars = make_bars(start="09:30", minutes=30)
    ev = make_events([{"ts_ns": t("09:42", 30), "level_price": 5001.0}])
    v = vec(make_day(ev, bars=bars))
    done = bars[bars["bar_ns"] + NS_PER_MIN <= t("09:42", 30)]
    assert len(done) == 12
    series = np.zeros(20)
    series[8:] = done["close"].to_numpy() - 5001.0
    expect = (dct_ii_matrix(20) @ series)[:8]
    sl = block_slices(make_day(ev))["dct"]
    np.testing.assert_allclose(np.asarray(v[sl])[:8],
                               np.clip(np.arcsinh(expect), -4, 4), rtol=1e-5, atol=1e-6)


# --- label-freedom and causality -------------------------------------------------------------

def test_vector_does_not_change_when_labels_change():
    ev = random_events()
    base = episodes(make_day(ev)).episodes
    ev2 = ev.copy()
    rng = np.random.default_rng(11)
    for c, dtype in MANIFEST.columns():
        if c in MANIFEST.label_columns:
            ev2[c] = (rng.choice(["BREAK", "REJECT"], len(ev2)) if dtype == "string"
                      else rng.normal(0, 100, len(ev2)))
    out = episodes(make_day(ev2)).episodes
    np.testing.assert_array_equal(np.stack(base["vector"]), np.stack(out["vector"]))
    assert list(out["outcome"]) == list(ev2.sort_values(["ts_ns", "event_id"])["outcome"])


def test_vector_does_not_change_when_later_bars_trades_or_events_change():
    ev = random_events()
    bars = make_bars(start="09:00", minutes=220)
    base = episodes(make_day(ev, bars=bars)).episodes
    T = t("10:45")
    bars2 = bars.copy()
    late = bars2["bar_ns"] + NS_PER_MIN > T
    bars2.loc[late, ["open", "high", "low", "close"]] += 50.0
    bars2.loc[late, ["volume", "buy_volume"]] *= 7
    extra = make_events([{"ts_ns": T + 5 * NS_PER_S, "kind": "SMA_200", "force": 9.0}])
    ev2 = pd.concat([ev, extra], ignore_index=True)
    day2 = make_day(ev2, bars=bars2)
    tr = day2.trades.copy()
    tr.loc[tr["ts_ns"] > T, "price"] += 100.0
    out = episodes(day2.replace(trades=tr)).episodes
    early = base[base["ts_ns"] <= T]
    assert len(early) > 3
    merged = early.merge(out, on="event_id", suffixes=("", "_new"))
    assert len(merged) == len(early)
    for a, b in zip(merged["vector"], merged["vector_new"]):
        np.testing.assert_array_equal(a, b)
    late_ids = base[base["ts_ns"] > T + 2 * NS_PER_MIN]["event_id"]
    changed = [not np.array_equal(base.set_index("event_id").loc[i, "vector"],
                                  out.set_index("event_id").loc[i, "vector"]) for i in late_ids]
    assert any(changed)                                                     # the test has teeth


# --- output frame ----------------------------------------------------------------------------

def test_output_frame_columns_buckets_weights_and_schema():
    ev = make_events([
        {"ts_ns": t("09:30", 5), "minutes_since_open": 0.08, "attempt_index": 1, "outcome": "BREAK"},
        {"ts_ns": t("10:15"), "minutes_since_open": 45.0, "attempt_index": 4, "kind": "PM_LOW",
         "direction": "DOWN", "outcome": "REJECT"},
        {"ts_ns": t("12:29"), "minutes_since_open": 179.0, "attempt_index": 2, "kind": "SMA_400"},
        {"ts_ns": t("12:29", 30), "minutes_since_open": -3.0, "attempt_index": 0},
    ])
    out = episodes(make_day(ev)).episodes
    assert tuple(out.columns) == OUTPUT_COLUMNS
    assert list(out["time_bucket"]) == [0, 1, 5, 0] and out["time_bucket"].dtype == np.int8
    assert out["emission_weight"].dtype == np.float32
    np.testing.assert_allclose(out["emission_weight"], [1.0, 0.25, 0.5, 1.0])
    assert out["level_kind"].dtype == np.int8
    assert list(out["level_kind"]) == [2, 1, 12, 2]
    assert list(out["level_kind_name"]) == ["OR_HIGH", "PM_LOW", "SMA_400", "OR_HIGH"]
    assert list(out["direction"]) == ["UP", "DOWN", "UP", "UP"]
    assert list(out["outcome"]) == ["BREAK", "REJECT", "CHOP", "CHOP"]
    assert list(out["event_id"]) == list(ev["event_id"])
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 and v.shape == (144,)
               for v in out["vector"])
    table = pa.Table.from_pandas(out, schema=EPISODE_SCHEMA, preserve_index=False)
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 144)
    assert table.num_rows == 4
    assert table.column("date")[0].as_py() == dt.date.fromisoformat(DATE)


def test_zero_events():
    for ev in (make_events([]), pd.DataFrame()):
        out = episodes(make_day(ev)).episodes
        assert len(out) == 0 and tuple(out.columns) == OUTPUT_COLUMNS
        pa.Table.from_pandas(out, schema=EPISODE_SCHEMA, preserve_index=False)


def test_missing_feature_column_is_an_error():
    ev = make_events([{"ts_ns": t("10:00")}]).drop(columns=["ofi_60s"])
    with pytest.raises(ValueError, match="ofi_60s"):
        episodes(make_day(ev))
    with pytest.raises(ValueError, match="bars_1m"):
        episodes(make_day(make_events([])).replace(bars_1m=None))


def test_inputs_are_not_mutated_and_order_independent():
    ev = random_events()
    bars = make_bars(start="09:00", minutes=220)
    ev_copy, bars_copy = ev.copy(deep=True), bars.copy(deep=True)
    day = make_day(ev, bars=bars)
    out1 = episodes(day)
    pd.testing.assert_frame_equal(ev, ev_copy)
    pd.testing.assert_frame_equal(bars, bars_copy)
    assert day.episodes is None and out1.events is ev
    shuffled = make_day(ev.sample(frac=1.0, random_state=1), bars=bars.sample(frac=1.0, random_state=2))
    out2 = episodes(shuffled).episodes
    assert list(out1.episodes["event_id"]) == list(out2["event_id"])
    np.testing.assert_array_equal(np.stack(out1.episodes["vector"]), np.stack(out2["vector"]))
