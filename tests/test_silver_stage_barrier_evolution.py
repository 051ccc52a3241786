"""Stage 9 (barrier_evolution): top-5 defending-side depth as of t and t - W, causality."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.silver_fixtures import (
    PARAMS, assert_adds_group_columns, book_frame, events_frame, group_names,
)
from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_MIN, NS_PER_S, local_ns
from transforms.silver.stage_barrier_evolution import barrier_evolution, top_depth

DATE = "2024-12-16"
T = local_ns(DATE, "10:30")
M = NS_PER_MIN
S = NS_PER_S


def sma_200_events(rows):
    """rows: (ts_ns, direction)."""
    return events_frame(DATE, [{"ts_ns": t, "kind": "SMA_200", "direction": d} for t, d in rows])


def snapshot(ts, ask_top5, bid_top5, deep=999.0):
    """A 10-level book whose top-5 ask/bid sizes sum to ``ask_top5`` / ``bid_top5`` (spread
    over the five levels); levels 6-10 carry ``deep`` each, which must not count."""
    row = {"ts_ns": ts}
    for i in range(1, 11):
        row[f"bid_px_{i}"] = 5000.0 - 0.25 * i
        row[f"ask_px_{i}"] = 5000.0 + 0.25 * (i - 1)
        row[f"bid_sz_{i}"] = bid_top5 / 5 if i <= 5 else deep
        row[f"ask_sz_{i}"] = ask_top5 / 5 if i <= 5 else deep
    return row


def sample_book():
    return book_frame([
        snapshot(T - 6 * M, ask_top5=50, bid_top5=200),       # A
        snapshot(T - 150 * S, ask_top5=80, bid_top5=100),     # B
        snapshot(T - 30 * S, ask_top5=100, bid_top5=50),      # C (current)
        snapshot(T + 10 * S, ask_top5=5000, bid_top5=5000),   # after t: never read
    ])


def run(rows, mbp):
    return barrier_evolution(SilverDay(date=DATE, params=PARAMS, events=sma_200_events(rows),
                                       mbp=mbp)).events


def test_top_depth_sums_the_first_n_levels_of_real_prices():
    book = book_frame([snapshot(T, 100, 60)])
    book.loc[0, "ask_px_2"] = 0.0          # missing level: its size does not count
    assert top_depth(book, "ask", 5).tolist() == [80.0]
    assert top_depth(book, "bid", 5).tolist() == [60.0]
    assert top_depth(book, "bid", 6).tolist() == [60.0 + 999.0]


def test_up_event_reads_the_asks():
    row = run([(T, "UP")], sample_book()).iloc[0]
    # depth(t) = C = 100; depth(t-1m) = B = 80; depth(t-3m) = depth(t-5m) = A = 50
    assert row.depth_current == 100.0
    assert (row.depth_change_1min, row.depth_pct_change_1min) == (20.0, 0.25)
    assert (row.depth_change_3min, row.depth_pct_change_3min) == (50.0, 1.0)
    assert (row.depth_change_5min, row.depth_pct_change_5min) == (50.0, 1.0)


def test_down_event_reads_the_bids():
    row = run([(T, "DOWN")], sample_book()).iloc[0]
    assert row.depth_current == 50.0
    assert (row.depth_change_1min, row.depth_pct_change_1min) == (-50.0, -0.5)
    assert (row.depth_change_3min, row.depth_pct_change_3min) == (-150.0, -0.75)
    assert (row.depth_change_5min, row.depth_pct_change_5min) == (-150.0, -0.75)


def test_snapshot_exactly_at_the_lookback_point_is_used():
    book = book_frame([snapshot(T - 2 * M, 10, 10), snapshot(T - M, 40, 40),
                       snapshot(T, 60, 60)])
    row = run([(T, "UP")], book).iloc[0]
    assert row.depth_current == 60.0               # the snapshot at exactly t counts
    assert row.depth_change_1min == 20.0           # ... and the one at exactly t - 1 min
    assert row.depth_pct_change_1min == pytest.approx(0.5)


def test_before_the_first_snapshot_depth_is_zero():
    row = run([(T - 4 * M, "UP")], sample_book()).iloc[0]
    # depth(t) = depth(t-1m) = A = 50; t-3m and t-5m precede A -> depth 0 -> pct 0.0
    assert row.depth_current == 50.0
    assert (row.depth_change_1min, row.depth_pct_change_1min) == (0.0, 0.0)
    assert (row.depth_change_3min, row.depth_pct_change_3min) == (50.0, 0.0)
    assert (row.depth_change_5min, row.depth_pct_change_5min) == (50.0, 0.0)
    none = run([(T, "DOWN")], book_frame([])).iloc[0]
    assert none.filter(like="depth").tolist() == [0.0] * 7


def test_adds_exactly_the_manifest_columns():
    events = sma_200_events([(T, "UP"), (T, "DOWN")])
    day = SilverDay(date=DATE, params=PARAMS, events=events, mbp=sample_book())
    out = barrier_evolution(day).events
    assert_adds_group_columns(events, out, "barrier_evolution", no_missing=True)
    pd.testing.assert_frame_equal(day.events, events)       # input not mutated


def test_empty_events_get_the_columns():
    names = group_names("barrier_evolution")
    out = run([], sample_book())
    assert len(out) == 0
    assert list(out.columns[-len(names):]) == names


def test_unknown_direction_is_rejected():
    with pytest.raises(ValueError, match="direction"):
        run([(T, "SIDEWAYS")], sample_book())


def random_book(seed=5):
    rng = np.random.default_rng(seed)
    times = T - 10 * M + np.arange(20 * 60 * 4) * (S // 4)
    return book_frame([snapshot(t, a, b) for t, a, b in
                       zip(times, rng.integers(5, 500, len(times)),
                           rng.integers(5, 500, len(times)))])


def test_causality_data_after_the_event_is_never_read():
    mbp = random_book()
    rows = [(T - 3 * M + 123, "UP"), (T, "DOWN"), (T + 7 * M + S // 8, "UP")]
    base = run(rows, mbp)
    sizes = [c for c in mbp.columns if "_sz_" in c]
    for t, _ in rows:
        later = mbp.copy()
        later.loc[later.ts_ns > t, sizes] *= 3
        later = pd.concat([later, book_frame([snapshot(t + 1, 1e6, 1e6)])]) \
            .sort_values("ts_ns", kind="stable").reset_index(drop=True)
        out = run(rows, later)
        mine = sma_200_events(rows)["ts_ns"].to_numpy() <= t
        pd.testing.assert_frame_equal(out[mine], base[mine])


@pytest.mark.parametrize("direction,side", [("UP", "ask"), ("DOWN", "bid")])
def test_causality_data_before_the_event_is_read(direction, side):
    mbp = random_book()
    base = run([(T, direction)], mbp).iloc[0]
    earlier = mbp.copy()
    earlier.loc[earlier.ts_ns <= T, f"{side}_sz_1"] += np.arange((earlier.ts_ns <= T).sum())
    changed = run([(T, direction)], earlier).iloc[0]
    for col in ("depth_current", "depth_change_1min", "depth_change_3min",
                "depth_change_5min"):
        assert changed[col] != base[col], col
