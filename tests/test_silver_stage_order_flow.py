"""Stage 8 (order_flow): true OFI from best bid/ask changes, window sums, causality."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.silver_fixtures import (
    PARAMS, assert_adds_group_columns, book_frame, events_frame, group_names,
)
from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_S, local_ns
from transforms.silver.stage_order_flow import ofi_contributions, order_flow

DATE = "2024-12-16"
T = local_ns(DATE, "10:00")
S = NS_PER_S


def pm_low_events(times, direction="UP"):
    return events_frame(DATE, [{"ts_ns": t, "kind": "PM_LOW", "direction": direction}
                               for t in times])


def top_of_book(rows):
    """rows: (ts_ns, bid_px_1, bid_sz_1, ask_px_1, ask_sz_1); deeper levels filled with noise
    that OFI must not read."""
    snapshots = []
    for j, (ts, b, bs, a, as_) in enumerate(rows):
        snap = {"ts_ns": ts, "bid_px_1": b, "bid_sz_1": bs, "ask_px_1": a, "ask_sz_1": as_}
        for i in range(2, 11):
            snap[f"bid_px_{i}"] = b - 0.25 * (i - 1) if b else 0.0
            snap[f"ask_px_{i}"] = a + 0.25 * (i - 1) if a else 0.0
            snap[f"bid_sz_{i}"] = 100.0 * i + j
            snap[f"ask_sz_{i}"] = 50.0 * i + 2 * j
        snapshots.append(snap)
    return book_frame(snapshots)


# (offset from T in s, bid, bid size, ask, ask size) and the hand-computed e_n
SEQUENCE = [
    (-400, 100.00, 10, 100.25, 5),   # e0 = 0 (no previous snapshot)
    (-300, 100.00, 12, 100.25, 5),   # bid same: +12 - 10; ask same: -5 + 5        ->  2
    (-100, 100.25, 3, 100.50, 7),    # bid up: +3; ask up: +5 (old ask size)       ->  8
    (-45, 100.00, 4, 100.25, 6),     # bid down: -3 (old); ask down: -6 (new)      -> -9
    (-30, 0.00, 0, 100.25, 9),       # bid missing: skipped; ask same: -9 + 6      -> -3
    (-10, 100.00, 8, 100.25, 4),     # bid prev missing: skipped; ask: -4 + 9      ->  5
    (5, 90.00, 999, 110.00, 1),      # after t (bid down: -8; ask up: +4): never counts
]


def sequence_book():
    return top_of_book([(T + off * S, b, bs, a, as_) for off, b, bs, a, as_ in SEQUENCE])


def run(times, mbp, direction="UP"):
    return order_flow(SilverDay(date=DATE, params=PARAMS, events=pm_low_events(times, direction),
                                mbp=mbp)).events


def test_contributions_of_a_known_sequence():
    e = ofi_contributions(sequence_book())
    # last pair: bid 100.00 -> 90.00 (down): -8; ask 100.25 -> 110.00 (up): +4
    assert e.tolist() == [0.0, 2.0, 8.0, -9.0, -3.0, 5.0, -8.0 + 4.0]


def test_contributions_of_tiny_books():
    assert ofi_contributions(top_of_book([])).tolist() == []
    assert ofi_contributions(top_of_book([(T, 100.0, 5, 100.25, 5)])).tolist() == [0.0]


def test_window_sums_and_acceleration():
    row = run([T], sequence_book()).iloc[0]
    assert row.ofi_30s == 5.0            # (t-30 s, t]: the -30 s snapshot is outside
    assert row.ofi_60s == -9.0 - 3.0 + 5.0
    assert row.ofi_120s == 8.0 - 7.0
    assert row.ofi_300s == 1.0           # the snapshot exactly at t-300 s is outside
    assert row.ofi_acceleration == pytest.approx((5.0 / 30) / (1.0 / 300))   # 50


def test_snapshot_exactly_at_t_counts_and_direction_is_irrelevant():
    up = run([T - 10 * S], sequence_book()).iloc[0]
    down = run([T - 10 * S], sequence_book(), "DOWN").iloc[0]
    assert up.ofi_30s == 5.0 - 3.0       # (t-40 s, t-10 s]: snapshots at -30 s and -10 s
    pd.testing.assert_series_equal(up.filter(like="ofi"), down.filter(like="ofi"))


def test_zero_long_window_gives_zero_acceleration():
    flat = top_of_book([(T - k * S, 100.0, 5, 100.25, 5) for k in range(20, -1, -1)])
    row = run([T], flat).iloc[0]
    assert (row.ofi_30s, row.ofi_300s, row.ofi_acceleration) == (0.0, 0.0, 0.0)
    none = run([T], top_of_book([])).iloc[0]
    assert none.filter(like="ofi").tolist() == [0.0] * 5


def test_adds_exactly_the_manifest_columns():
    events = pm_low_events([T, T + 60 * S])
    day = SilverDay(date=DATE, params=PARAMS, events=events, mbp=sequence_book())
    out = order_flow(day).events
    assert_adds_group_columns(events, out, "order_flow", no_missing=True)
    pd.testing.assert_frame_equal(day.events, events)       # input not mutated


def test_empty_events_get_the_columns():
    names = group_names("order_flow")
    out = run([], sequence_book())
    assert len(out) == 0
    assert list(out.columns[-len(names):]) == names


def random_book(seed=11, seconds=900):
    rng = np.random.default_rng(seed)
    n = seconds * 4
    ts = T - 600 * S + np.arange(n) * (S // 4)
    bid = 5000 + 0.25 * np.cumsum(rng.choice([-1, 0, 0, 1], n))
    spread = 0.25 * rng.choice([1, 1, 2], n)
    return top_of_book(list(zip(ts, bid, rng.integers(1, 300, n), bid + spread,
                               rng.integers(1, 300, n))))


def test_causality_data_after_the_event_is_never_read():
    mbp = random_book()
    times = [T - 200 * S + 77, T, T + 250 * S]
    base = run(times, mbp)
    for t in times:
        later = mbp.copy()
        after = later["ts_ns"] > t
        later.loc[after, ["bid_sz_1", "ask_sz_1"]] *= 7
        later.loc[after, "bid_px_1"] -= 1.0
        extra = later.iloc[[0]].assign(ts_ns=t + 1, bid_sz_1=5000.0)
        later = pd.concat([later, extra]).sort_values("ts_ns", kind="stable") \
            .reset_index(drop=True)
        out = run(times, later)
        mine = np.asarray(times) <= t
        pd.testing.assert_frame_equal(out[mine], base[mine])


def test_causality_data_before_the_event_is_read():
    mbp = random_book()
    base = run([T], mbp).iloc[0]
    earlier = mbp.copy()
    recent = (earlier.ts_ns > T - 20 * S) & (earlier.ts_ns <= T)
    earlier.loc[recent, "bid_sz_1"] += 50
    changed = run([T], earlier).iloc[0]
    for w in (30, 60, 120, 300):
        assert changed[f"ofi_{w}s"] != base[f"ofi_{w}s"], w
