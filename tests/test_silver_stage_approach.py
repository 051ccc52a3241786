"""Stage 13 (approach): approach distance/velocity over 10 minutes, consecutive closing bars,
time since open, normalised distances, sparse transforms, prior touches and attempt
clustering across a 15-minute gap and a 0.10-point level change; causality."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.silver_fixtures import (
    PARAMS, assert_adds_group_columns, assert_group_dtypes, at, events_frame, group_names,
)
from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_MIN, NS_PER_S
from transforms.silver.stage_approach import approach

DATE = "2024-12-16"
O = at(DATE, "09:30")                            # RTH open, 14:30 UTC (EST)
COLS = group_names("approach")


def m(minutes: float, seconds: int = 0) -> int:
    """ns at ``minutes`` (+ ``seconds``) after the open (negative = before)."""
    return O + int(minutes * NS_PER_MIN) + seconds * NS_PER_S


# optional per-event inputs of this stage: row key -> events column
INPUTS = {"buy": "tape_buy_vol", "sell": "tape_sell_vol", "depth": "barrier_depth_end",
          "gex_a": "gex_above_3strike", "gex_b": "gex_below_3strike"}


def events(rows):
    """rows: dicts with ts, kind, level, entry and optional atr, buy, sell, depth, gex_a, gex_b."""
    return events_frame(DATE, [
        {"ts_ns": r["ts"], "kind": r["kind"], "level_price": r["level"],
         "entry_price": r["entry"], "direction": "UP" if r["entry"] < r["level"] else "DOWN",
         "atr": r.get("atr", 2.0), **{col: r[key] for key, col in INPUTS.items() if key in r}}
        for r in rows], extra={col: 0.0 for col in INPUTS.values()})


def trades(rows):
    frame = pd.DataFrame(rows, columns=["ts_ns", "price"]).astype({"ts_ns": "int64", "price": float})
    frame["size"] = 1
    frame["aggressor"] = 1
    return frame


def bars(rows):
    frame = pd.DataFrame(rows, columns=["bar_ns", "close"]).astype({"bar_ns": "int64", "close": float})
    for c in ("open", "high", "low"):
        frame[c] = frame["close"]
    for c in ("volume", "buy_volume", "sell_volume", "trades"):
        frame[c] = 1
    frame["atr"] = 2.0
    frame["volatility"] = 0.5
    return frame


def make_day(ev_rows, tr_rows=(), bar_rows=()):
    return SilverDay(date=DATE, params=PARAMS, events=events(list(ev_rows)),
                     trades=trades(list(tr_rows)), bars_1m=bars(list(bar_rows)))


TRADES = [(m(-20), 4990.0), (m(-7), 4993.0), (m(3), 4999.5), (m(3, 30), 4999.0),
          (m(3, 45), 4000.0)]
BARS = [(m(-2), 4990.0), (m(-1), 4995.0), (m(0), 4994.0), (m(1), 4996.0), (m(2), 4998.0),
        (m(3), 5000.0), (m(4), 4000.0)]
APPROACH_EVENTS = [
    {"ts": m(3, 30), "kind": "OR_HIGH", "level": 5000, "entry": 4999, "atr": 2},   # E1
    {"ts": m(3), "kind": "PM_HIGH", "level": 5000, "entry": 4999.5, "atr": 1},     # E2 (bar start)
    {"ts": m(-5, 10), "kind": "SMA_200", "level": 5000, "entry": 4990, "atr": 2},  # E3 pre-open
    {"ts": m(-25), "kind": "SMA_400", "level": 5000, "entry": 4985, "atr": 3},     # E4 no trades yet
    {"ts": m(3, 30), "kind": "PM_LOW", "level": 4980, "entry": 4981, "atr": 2},    # E5 moving away
]


def test_columns_and_dtypes_match_the_manifest():
    day = make_day(APPROACH_EVENTS, TRADES, BARS)
    out = approach(day).events
    assert_adds_group_columns(day.events, out, "approach")


def test_hand_computed_approach_and_session_clock():
    day = make_day(APPROACH_EVENTS, TRADES, BARS)
    before = (day.events.copy(), day.trades.copy(), day.bars_1m.copy())
    out = approach(day).events
    pd.testing.assert_frame_equal(day.events, before[0])
    pd.testing.assert_frame_equal(day.trades, before[1])
    pd.testing.assert_frame_equal(day.bars_1m, before[2])
    # E1: x(t-10m) = trade at -7m 4993 -> 7; x(t) = 4999 -> 1.  Bars completed by 03:30 are
    #     -2..+2 with |close-L| 10,5,6,4,2 -> 2 closing bars (the event's own bar excluded).
    # E2: t = +3:00 exactly: the +2 bar completes at t (counted); x(t) = 4999.5.
    # E3: t = -4:50: x(-14:50) = 4990 -> 10, x(t) = 4993 -> 7; no bar completed yet.
    # E4: no trade at or before t: x(t) = entry, x(t-10m) = x(t) -> distance 15, velocity 0.
    # E5: level 4980 below: distances 13 then 19 (moving away); |close-L| ends 16, 18 -> 0.
    np.testing.assert_allclose(out["approach_distance"], [7.0, 7.0, 10.0, 15.0, 13.0])
    np.testing.assert_allclose(out["approach_velocity"], [0.6, 0.65, 0.3, 0.0, -0.6])
    assert out["approach_bars"].tolist() == [2, 2, 0, 0, 0]
    np.testing.assert_allclose(out["minutes_since_open"], [3.5, 3.0, -29 / 6, -25.0, 3.5])
    assert out["bars_since_open"].tolist() == [3, 3, 0, 0, 3]
    np.testing.assert_allclose(out["distance_atr"], [0.5, 0.5, 5.0, 5.0, 0.5])
    np.testing.assert_allclose(out["distance_pct"], [0.02, 0.01, 0.2, 0.3, 100 / 4980])
    # distinct kinds: singleton clusters numbered by first event (E1/E5 tie -> level_kind)
    assert out["attempt_cluster_id"].tolist() == [4, 2, 1, 0, 3]
    assert out["attempt_index"].tolist() == [1, 1, 1, 1, 1]
    assert out["prior_touches"].tolist() == [0, 0, 0, 0, 0]


def test_a_longer_run_of_closing_bars():
    rows = [(m(i), 4980.0 + 2 * i) for i in range(6)]          # |close - 5000|: 20,18,...,10
    out = approach(make_day([{"ts": m(6, 1), "kind": "OR_HIGH", "level": 5000, "entry": 4995}],
                            [(m(0), 4980.0)], rows)).events
    assert out.loc[0, "approach_bars"] == 5
    assert out.loc[0, "bars_since_open"] == 6


def test_sparse_transforms():
    rows = [
        {"ts": m(1), "kind": "OR_HIGH", "level": 5000, "entry": 4999, "buy": 3, "sell": 0,
         "depth": 0, "gex_a": 0, "gex_b": -5},
        {"ts": m(2), "kind": "OR_LOW", "level": 4990, "entry": 4991, "buy": 0, "sell": 0,
         "depth": 20, "gex_a": 0, "gex_b": 0},
        {"ts": m(3), "kind": "PM_LOW", "level": 4980, "entry": 4981, "buy": 2.5, "sell": 4.5,
         "depth": np.nan, "gex_a": 1e-3, "gex_b": 0},
    ]
    out = approach(make_day(rows)).events
    np.testing.assert_allclose(out["log_tape_volume"], [math.log(4.0), 0.0, math.log(8.0)])
    np.testing.assert_allclose(out["log_barrier_depth"], [0.0, math.log(21.0), 0.0])
    assert out["tape_volume_nonzero"].tolist() == [True, False, True]
    assert out["gex_nonzero"].tolist() == [True, False, True]


# Clustering: OR_HIGH a..e and SMA_200 f, g (rows deliberately shuffled).
CLUSTER_EVENTS = {
    "a": {"ts": m(0), "kind": "OR_HIGH", "level": 5000.00, "entry": 4999},
    "b": {"ts": m(10), "kind": "OR_HIGH", "level": 5000.00, "entry": 4999},   # gap 10 -> same
    "c": {"ts": m(25), "kind": "OR_HIGH", "level": 5000.10, "entry": 4999},   # gap 15, +0.10 -> same
    "d": {"ts": m(30), "kind": "OR_HIGH", "level": 5000.25, "entry": 4999},   # +0.15 -> new
    "e": {"ts": m(50), "kind": "OR_HIGH", "level": 5000.25, "entry": 4999},   # gap 20 -> new
    "f": {"ts": m(5), "kind": "SMA_200", "level": 5000.00, "entry": 4999},    # other kind -> new
    "g": {"ts": m(12), "kind": "SMA_200", "level": 5000.05, "entry": 4999},   # same as f
}
ORDER = ["e", "c", "a", "g", "d", "f", "b"]


def cluster_frame(names, overrides=None):
    rows = [dict(CLUSTER_EVENTS[n], **(overrides or {}).get(n, {})) for n in names]
    out = approach(make_day(rows)).events                     # empty trades and bars
    return {n: out.iloc[i] for i, n in enumerate(names)}


def test_attempt_clustering_and_prior_touches():
    got = cluster_frame(ORDER)
    exp = {  # name: (cluster id, index, prior touches)
        "a": (0, 1, 0), "b": (0, 2, 1), "c": (0, 3, 2), "d": (2, 1, 0), "e": (3, 1, 1),
        "f": (1, 1, 0), "g": (1, 2, 1),
    }
    for n, (cid, idx, prior) in exp.items():
        assert (got[n]["attempt_cluster_id"], got[n]["attempt_index"],
                got[n]["prior_touches"]) == (cid, idx, prior), n


def test_clustering_is_causal():
    full = cluster_frame(ORDER)
    # Dropping every event after +25 min leaves the earlier ones unchanged ...
    early = cluster_frame(["c", "a", "g", "f", "b"])
    for n in early:
        for col in ("attempt_cluster_id", "attempt_index", "prior_touches"):
            assert early[n][col] == full[n][col], (n, col)
    # ... while moving an EARLIER event's level (b by 3 points) changes c's features.
    moved = cluster_frame(ORDER, {"b": {"level": 5003.0}})
    assert moved["c"]["prior_touches"] == 1                    # only a remains within 0.10
    assert (moved["b"]["attempt_cluster_id"], moved["b"]["attempt_index"]) == (2, 1)
    assert (moved["c"]["attempt_cluster_id"], moved["c"]["attempt_index"]) == (3, 1)


def test_trades_and_bars_are_causal():
    base = approach(make_day(APPROACH_EVENTS, TRADES, BARS)).events
    e1 = 0
    # After E1 (+3:30): change the later trade and the event's own (incomplete) bar, add more.
    later_tr = TRADES[:-1] + [(m(3, 45), 5000.0), (m(3, 31), 5000.0), (m(9), 4000.0)]
    later_bars = BARS[:-2] + [(m(3), 4999.75), (m(4), 5000.0), (m(5), 4999.0)]
    same = approach(make_day(APPROACH_EVENTS, later_tr, later_bars)).events
    pd.testing.assert_series_equal(base.loc[e1, COLS], same.loc[e1, COLS])
    # Before it: a different trade at -7 min and a different completed bar change E1.
    early_tr = [(m(-20), 4990.0), (m(-7), 4995.0)] + TRADES[2:]
    changed = approach(make_day(APPROACH_EVENTS, early_tr, BARS)).events
    assert changed.loc[e1, "approach_distance"] == pytest.approx(5.0)
    assert changed.loc[e1, "approach_velocity"] == pytest.approx(0.4)
    early_bars = [b if b[0] != m(1) else (m(1), 4999.0) for b in BARS]
    changed = approach(make_day(APPROACH_EVENTS, TRADES, early_bars)).events
    assert changed.loc[e1, "approach_bars"] == 0               # +1 bar now closer than +2


def test_empty_events():
    out = approach(make_day([], TRADES, BARS)).events
    assert len(out) == 0
    assert_group_dtypes(out, "approach")


def test_missing_bars_is_reported():
    day = SilverDay(date=DATE, params=PARAMS, events=events(APPROACH_EVENTS[:1]),
                    trades=trades(TRADES))
    with pytest.raises(ValueError, match="bars_1m"):
        approach(day)
