"""The stage definitions v3.2.0 adds (``name@2``) on hand-built inputs with known answers:
tape and barrier where they can be non-zero, truncated windows NaN, the restored features,
symmetric labels, scaled episodes, and the derived book window."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.silver_fixtures import (ROOT, book_frame, events_frame, option_greeks_frame,
                                   trades_frame)
from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_MIN, NS_PER_S, local_ns
from transforms.silver.stage_approach import approach_v2
from transforms.silver.stage_barrier_evolution import barrier_evolution_v2
from transforms.silver.stage_gex import gex_v2
from transforms.silver.stage_kinematics import kinematics, kinematics_v2
from transforms.silver.stage_labels import labels_v2
from transforms.silver.stage_load_bronze import book_window_start
from transforms.silver.stage_order_flow import order_flow_v2
from transforms.silver.stage_physics import physics_v2

with open(f"{ROOT}/configs/features/v3.2.0.yaml", encoding="utf-8") as _fh:
    P32 = yaml.safe_load(_fh)["parameters"]
DATE = "2024-12-16"
T = local_ns(DATE, "10:00")
S = NS_PER_S
L = 5000.0


def day(events, **frames):
    frames.setdefault("trades", trades_frame([]))
    frames.setdefault("mbp", book_frame([]))
    frames.setdefault("option_greeks", option_greeks_frame([], right="C"))
    return SilverDay(date=DATE, params=P32, events=events, **frames)


def one(direction="UP", entry=L - 5.0, atr=2.0, kind="PM_HIGH", t=T):
    return events_frame(DATE, [{"ts_ns": t, "kind": kind, "level_price": L, "direction": direction,
                                "entry_price": entry, "atr": atr}])


def book(ts, bid, ask, sizes=10.0):
    """One snapshot: 10 levels a tick apart from the touch, every size ``sizes``."""
    row = {"ts_ns": ts}
    for i in range(1, 11):
        row.update({f"bid_px_{i}": bid - 0.25 * (i - 1), f"bid_sz_{i}": sizes,
                    f"ask_px_{i}": ask + 0.25 * (i - 1), f"ask_sz_{i}": sizes})
    return row


# ---------------------------------------------------------------- load_bronze@2

def test_book_window_starts_before_the_longest_lookback():
    d = SilverDay(date=DATE, params=P32)
    # 300 s of OFI is the longest (5 min barrier evolution equals it): 09:25 - 250 ms -> 09:24
    assert book_window_start(d) == local_ns(DATE, "09:24")


# ---------------------------------------------------------------- physics@2

def test_tape_near_the_event_price_and_barrier_between_price_and_level():
    trades = trades_frame([(T - 70 * S, L - 5.0, 9, 1),          # before the 60 s window
                           (T - 50 * S, L - 5.5, 3, 1), (T - 40 * S, L - 5.25, 2, -1),
                           (T - 30 * S, L - 9.0, 7, 1),          # more than 1 ATR away
                           (T, L - 5.0, 1, 1)])
    mbp = book_frame([book(T - 250 * S, L - 5.25, L - 5.0, 5.0),   # before the 240 s window
                      book(T - 200 * S, L - 5.25, L - 5.0, 10.0),
                      book(T - S, L - 5.25, L - 5.0, 20.0)])
    out = physics_v2(day(one(), trades=trades, mbp=mbp)).events.iloc[0]
    assert (out.tape_buy_vol, out.tape_sell_vol) == (4.0, 2.0)          # 3 + 1 buys, 2 sells
    assert out.tape_imbalance == pytest.approx(2 / 6)
    # asks from L-5 to L-2.75 all lie below L + 2: the whole side, 10 levels
    assert (out.barrier_depth_start, out.barrier_depth_end) == (100.0, 200.0)
    assert out.barrier_delta_liq == 100.0 and out.barrier_wall_ratio == 2.0
    down = physics_v2(day(one("DOWN", entry=L + 5), trades=trades, mbp=book_frame(
        [book(T - 300 * S, L + 1.0, L + 1.25, 10.0)]))).events.iloc[0]
    # bids from L+1 down: those at or above L - 2 (L+1 .. L-1.25: 10 levels) count
    assert down.barrier_depth_end == 100.0
    close = physics_v2(day(one(), mbp=book_frame([book(T - 300 * S, L - 0.25, L, 10.0)]))
                       ).events.iloc[0]
    assert close.barrier_depth_end == 90.0                               # asks L .. L+2 only


def test_barrier_is_nan_and_unknown_when_its_window_starts_before_the_book():
    mbp = book_frame([book(T - 100 * S, L - 5.25, L - 5.0)])
    d = day(one(), mbp=mbp).replace(book_start_ns=T - 100 * S)
    out = physics_v2(d).events.iloc[0]
    assert np.isnan(out.barrier_depth_end) and out.barrier_state == "UNKNOWN"
    # known from the later of the declared start and the first snapshot
    assert np.isnan(physics_v2(d.replace(book_start_ns=T - 300 * S)).events.iloc[0]
                    .barrier_depth_end)
    longer = book_frame([book(T - 290 * S, L - 5.25, L - 5.0, 20.0),
                         book(T - 100 * S, L - 5.25, L - 5.0)])
    ok = physics_v2(d.replace(mbp=longer, book_start_ns=T - 300 * S)).events.iloc[0]
    assert (ok.barrier_depth_start, ok.barrier_depth_end) == (100.0, 100.0)


# ---------------------------------------------------------------- kinematics@2

def test_level_frame_kinematics_are_signed_by_direction_and_truncation_is_nan():
    trades = trades_frame([(T - 30 * NS_PER_MIN + i * S, 6000.0 + 0.01 * i) for i in range(1801)])
    ev = events_frame(DATE, [{"ts_ns": T, "direction": "UP"}, {"ts_ns": T, "direction": "DOWN"}])
    out = kinematics_v2(day(ev, trades=trades)).events
    base = kinematics(day(ev, trades=trades)).events
    assert out["velocity_1min"].tolist() == base["velocity_1min"].tolist()
    assert out["level_velocity_1min"].tolist() == [base["velocity_1min"][0], -base["velocity_1min"][1]]
    assert out["velocity_1min"][0] == pytest.approx(0.6)                 # 0.01/s
    assert np.isnan(out["jerk_20min"][0]) and np.isfinite(out["acceleration_10min"][0])
    assert base["jerk_20min"][0] == 0.0 or np.isfinite(base["jerk_20min"][0])   # v3.1.0 guessed


# ---------------------------------------------------------------- order_flow@2

def test_ofi_nan_when_truncated_and_top5_book_imbalance():
    rows = [book(T - 200 * S + k * S, L - 5.25, L - 5.0) for k in range(200)]
    rows[-1].update({f"bid_sz_{i}": 30.0 for i in range(1, 6)})
    d = day(one(), mbp=book_frame(rows)).replace(book_start_ns=T - 200 * S)
    out = order_flow_v2(d).events.iloc[0]
    assert np.isnan(out.ofi_300s) and np.isfinite(out.ofi_120s) and np.isnan(out.ofi_acceleration)
    assert out.book_imbalance_5 == pytest.approx((150 - 50) / 200)
    early = order_flow_v2(d.replace(events=one(t=T - 300 * S))).events.iloc[0]
    assert np.isnan(early.book_imbalance_5)                             # no snapshot yet


# ---------------------------------------------------------------- barrier_evolution@2

def test_depth_changes_nan_before_the_book_is_known():
    rows = [book(T - 90 * S, L - 5.25, L - 5.0, 10.0), book(T - S, L - 5.25, L - 5.0, 12.0)]
    d = day(one(), mbp=book_frame(rows)).replace(book_start_ns=T - 90 * S)
    out = barrier_evolution_v2(d).events.iloc[0]
    assert out.depth_current == 60.0 and out.depth_change_1min == 10.0
    assert out.depth_pct_change_1min == pytest.approx(10 / 50)
    assert np.isnan(out.depth_change_3min) and np.isnan(out.depth_pct_change_5min)


# ---------------------------------------------------------------- gex@2

def test_gamma_at_the_level_strike_and_0dte_only_gex():
    og = option_greeks_frame([(T - 10 * S, L, "C", 5.0), (T - 9 * S, L + 5, "C", 2.0),
                              (T - 8 * S, L + 5, "P", 7.0), (T + S, L, "C", 100.0)])
    og["exp_date"] = [pd.Timestamp(DATE).date(), pd.Timestamp(DATE).date(),
                      pd.Timestamp("2024-12-20").date(), pd.Timestamp(DATE).date()]
    out = gex_v2(day(one(), option_greeks=og)).events.iloc[0]
    assert out.gamma_at_level_strike == 5.0                       # the later trade is not seen
    assert out.gex_above_1strike == 9.0 and out.gex_0dte_above_1strike == 2.0


# ---------------------------------------------------------------- approach@2

def test_within_cluster_trends_against_the_first_attempt():
    ev = events_frame(DATE, [{"ts_ns": T + k * 60 * S, "kind": "PM_HIGH"} for k in range(3)],
                      extra={"tape_buy_vol": 1.0, "tape_sell_vol": 1.0, "barrier_depth_end": 1.0,
                             "gex_above_3strike": 0.0, "gex_below_3strike": 0.0,
                             "barrier_wall_ratio": 1.0, "barrier_delta_liq": 0.0,
                             "tape_velocity": 0.0, "tape_imbalance": 0.0})
    ev["tape_imbalance"] = [0.1, 0.3, -0.2]
    out = approach_v2(day(ev, trades=trades_frame([(T - S, L)]),
                          bars_1m=pd.DataFrame({"bar_ns": pd.Series([], dtype=np.int64),
                                                "close": pd.Series([], dtype=float)}))).events
    assert out["attempt_index"].tolist() == [1, 2, 3]
    trend = out["tape_imbalance_trend"].to_numpy()
    assert np.isnan(trend[0]) and trend[1:] == pytest.approx([0.2, -0.3])
    assert "tape_volume_nonzero" not in out and "gex_nonzero" not in out


# ---------------------------------------------------------------- labels@2

@pytest.mark.parametrize("path,outcome", [([L - 4.0, L - 3.1, L - 2.9], "BREAK"),
                                          ([L - 6.0, L - 6.9, L - 7.1], "REJECT"),
                                          ([L - 4.0, L - 6.0], "CHOP")])
def test_symmetric_barriers_one_atr_from_the_entry(path, outcome):
    trades = trades_frame([(T + (k + 1) * 10 * S, p) for k, p in enumerate(path)])
    out = labels_v2(day(one(entry=L - 5.0, atr=2.0), trades=trades)).events.iloc[0]
    assert out.outcome == outcome
    fav = max(max(p - (L - 5.0) for p in path), 0.0)
    assert out.excursion_favorable == pytest.approx(fav)
    assert out.excursion_favorable_atr == pytest.approx(fav / 2.0)
    assert out.strength_abs == pytest.approx(abs(path[-1] - L) / 2.0)
    assert out.strength_signed == pytest.approx((path[-1] - L) / 2.0)


def test_a_driftless_walk_breaks_as_often_as_it_rejects():
    rng = np.random.default_rng(5)
    ev = events_frame(DATE, [{"ts_ns": T + k * 600 * S, "entry_price": L - 5.0, "atr": 2.0,
                              "direction": "UP" if k % 2 else "DOWN",
                              "level_price": L if k % 2 else L - 10.0} for k in range(400)])
    steps = rng.choice([-0.25, 0.25], size=(400, 240))
    rows = []
    for k in range(400):
        path = (L - 5.0) + np.cumsum(steps[k])
        rows += [(T + k * 600 * S + (j + 1) * S, float(p)) for j, p in enumerate(path)]
    out = labels_v2(day(ev, trades=trades_frame(rows))).events["outcome"].value_counts()
    assert abs(out["BREAK"] - out["REJECT"]) < 0.2 * (out["BREAK"] + out["REJECT"])


# ---------------------------------------------------------------- causality, stage by stage

@pytest.fixture(scope="module")
def v32_day(tmp_path_factory):
    """A synthetic date read from Bronze, through v3.2.0's stages up to interaction_zones."""
    from io_connectors.lake.bronze_direct import write_bronze_events
    from io_connectors.lake.silver_inputs import read_silver_day
    from io_connectors.lake.storage import LakeStorage
    from transforms.feature_manifest import load_manifest
    from transforms.silver.stages import run_stages
    from transforms.synthetic_session import synthetic_session
    m = load_manifest(f"{ROOT}/configs/features/v3.2.0.yaml")
    storage = LakeStorage(str(tmp_path_factory.mktemp("v32-lake")))
    for d, scale in (("2024-12-11", 0.005), ("2024-12-12", 0.005), ("2024-12-13", 0.005),
                     (DATE, 0.03)):
        write_bronze_events(storage, synthetic_session(d, scale=scale, seed=5, signals=False))
    raw = read_silver_day(storage, DATE, m.parameters, m.columns(), m.label_columns)
    return m, run_stages(raw, m.stages[:m.stages.index("interaction_zones") + 1])


def _perturbed_after(day, cut):
    trades, mbp, opts = day.trades.copy(), day.mbp.copy(), day.option_greeks.copy()
    later = trades["ts_ns"] > cut
    trades.loc[later, "price"] += 17.25
    trades.loc[later, "size"] *= 3
    mbp.loc[mbp["ts_ns"] > cut, [f"ask_sz_{i}" for i in range(1, 11)]] += 250
    opts.loc[opts["ts_ns"] > cut, "dealer_gamma"] *= 10
    return day.replace(trades=trades, mbp=mbp, option_greeks=opts)


@pytest.mark.parametrize("stage", ["physics@2", "kinematics@2", "order_flow@2",
                                   "barrier_evolution@2", "gex@2", "approach@2"])
def test_each_redefined_stage_reads_nothing_after_the_event(v32_day, stage):
    from transforms.silver.stages import run_stages, stage_spec
    m, day = v32_day
    before = m.stages[m.stages.index("interaction_zones") + 1:m.stages.index(stage)]
    day = run_stages(day, before)
    assert len(day.events) >= 10
    cut = int(day.events["ts_ns"].iloc[len(day.events) // 2])
    cols = stage_spec(stage).produced_columns(m.parameters)
    base = run_stages(day, [stage]).events
    changed = run_stages(_perturbed_after(day, cut), [stage]).events
    mine = base["ts_ns"] <= cut
    pd.testing.assert_frame_equal(base.loc[mine, cols], changed.loc[mine, cols])
    if stage not in ("approach@2",):     # and the perturbation is visible after the cut
        assert not base.loc[~mine, cols].equals(changed.loc[~mine, cols])
