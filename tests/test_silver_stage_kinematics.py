"""Stage 7 (kinematics): backward finite differences of the as-of price, fall-back, causality."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.silver_fixtures import (
    PARAMS, assert_adds_group_columns, events_frame, group_names, trades_frame,
)
from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_MIN, NS_PER_S, local_ns
from transforms.silver.stage_kinematics import kinematics

DATE = "2024-12-16"
T0 = local_ns(DATE, "10:00")
M = NS_PER_MIN
S = NS_PER_S


def or_high_events(times, level=5000.0):
    return events_frame(DATE, [{"ts_ns": t, "level_price": level} for t in times])


def trades_at(ts, price):
    """One-lot buys at ``ts`` with ``price``."""
    return trades_frame(zip(ts, price))


def run(times, trades):
    return kinematics(SilverDay(date=DATE, params=PARAMS, events=or_high_events(times),
                                trades=trades)).events


def quadratic_trades():
    """A trade every second from T0 for 40 min; price(tau) = 5000 + 2 tau + 0.5 tau^2 (tau in
    minutes since T0)."""
    ts = T0 + np.arange(0, 40 * 60 + 1) * S
    tau = (ts - T0) / M
    return trades_at(ts, 5000 + 2 * tau + 0.5 * tau ** 2)


def test_adds_exactly_the_manifest_columns():
    events = or_high_events([T0 + 30 * M])
    day = SilverDay(date=DATE, params=PARAMS, events=events, trades=quadratic_trades())
    out = kinematics(day).events
    assert_adds_group_columns(events, out, "kinematics", no_missing=True)
    pd.testing.assert_frame_equal(day.events, events)       # input not mutated


def test_empty_events_get_the_columns():
    names = group_names("kinematics")
    out = run([], quadratic_trades())
    assert len(out) == 0
    assert list(out.columns[-len(names):]) == names


def test_quadratic_path_hand_values():
    # Event at tau = 30: p0 = 5510.  Backward differences of a quadratic:
    #   velocity_W = (p(30) - p(30-W)) / W = 32 - W/2, acceleration_W = 2 * 0.5 = 1, jerk = 0,
    # as long as 30 - 3W >= 0 (W <= 10).
    row = run([T0 + 30 * M], quadratic_trades()).iloc[0]
    for w in (1, 3, 5, 10):
        assert row[f"velocity_{w}min"] == pytest.approx(32 - w / 2), w
        assert row[f"acceleration_{w}min"] == pytest.approx(1.0), w
        assert row[f"jerk_{w}min"] == pytest.approx(0.0, abs=1e-9), w
    # W = 20: p(10) = 5070, p(-10) and p(-30) precede every trade -> first trade price 5000.
    assert row.velocity_20min == pytest.approx((5510 - 5070) / 20)          # 22
    assert row.acceleration_20min == pytest.approx((5510 - 2 * 5070 + 5000) / 400)   # 0.925
    assert row.jerk_20min == pytest.approx((5510 - 3 * 5070 + 3 * 5000 - 5000) / 8000)
    assert row.momentum_trend == pytest.approx(29.5 - 22.0)


def test_asof_price_is_the_last_trade_at_or_before_each_point():
    t = T0 + 30 * M
    trades = trades_at([t - 3 * M - 5 * S, t - 2 * M, t - 90 * S, t - 60 * S, t - 59 * S, t],
                       [100.0, 103.0, 110.0, 120.0, 125.0, 126.0])
    row = run([t], trades).iloc[0]
    # p(t)=126, p(t-1m)=120 (trade exactly at t-60 s counts), p(t-2m)=103, p(t-3m)=100
    assert row.velocity_1min == pytest.approx(6.0)
    assert row.acceleration_1min == pytest.approx(126 - 240 + 103)
    assert row.jerk_1min == pytest.approx(126 - 360 + 309 - 100)


def test_fallback_to_first_trade_and_flat_market():
    t = T0 + 30 * M
    trades = trades_at([t - 30 * S, t], [5001.0, 5003.0])
    row = run([t], trades).iloc[0]
    for w in (1, 3, 5, 10, 20):      # every earlier point precedes all trades -> 5001
        assert row[f"velocity_{w}min"] == pytest.approx(2.0 / w)
        assert row[f"acceleration_{w}min"] == pytest.approx(2.0 / w ** 2)
        assert row[f"jerk_{w}min"] == pytest.approx(2.0 / w ** 3)
    flat = run([t], trades_at([t - 30 * M, t], [5000.0, 5000.0])).iloc[0]
    assert all(flat[c] == 0.0 for c in flat.index if c.startswith(("velocity", "jerk")))


def test_no_trade_at_or_before_the_event_gives_zeros():
    t = T0 + 30 * M
    out = run([t], trades_at([t + S, t + 2 * S], [5000.0, 5100.0])).iloc[0]
    cols = [c for c in out.index if c.startswith(("velocity", "acceleration", "jerk"))]
    assert all(out[c] == 0.0 for c in cols + ["momentum_trend"])
    assert all(run([t], trades_at([], [])).iloc[0][c] == 0.0 for c in cols)


def random_trades(seed=3):
    rng = np.random.default_rng(seed)
    ts = T0 + np.sort(rng.integers(0, 60 * M, 4000))
    return trades_at(ts, 5000 + np.cumsum(rng.normal(0, 0.25, 4000)))


def test_causality_data_after_the_event_is_never_read():
    trades = random_trades()
    times = [T0 + 25 * M + 17, T0 + 41 * M, T0 + 55 * M + 3 * S]
    base = run(times, trades)
    for t in times:
        later = trades.copy()
        after = later["ts_ns"] > t
        later.loc[after, "price"] += 50.0
        later = pd.concat([later, trades_at([t + 1], [9999.0])], ignore_index=True) \
            .sort_values("ts_ns", kind="stable").reset_index(drop=True)
        out = run(times, later)
        mine = np.asarray(times) <= t
        pd.testing.assert_frame_equal(out[mine], base[mine])


def test_causality_data_before_the_event_is_read():
    trades = random_trades()
    t = T0 + 41 * M
    base = run([t], trades).iloc[0]
    earlier = trades.copy()
    earlier.loc[(earlier.ts_ns > t - 30 * M) & (earlier.ts_ns <= t), "price"] += 7.0
    earlier.loc[(earlier.ts_ns > t - 30 * S) & (earlier.ts_ns <= t), "price"] += 1.0
    changed = run([t], earlier).iloc[0]
    for w in (1, 3, 5, 10, 20):
        assert changed[f"velocity_{w}min"] != base[f"velocity_{w}min"], w
