"""Stage 6 (physics): tape, barrier and fuel on hand-built frames, window edges, causality."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.silver_fixtures import (
    PARAMS, assert_adds_group_columns, book_frame, events_frame, group_names,
    option_greeks_frame, trades_frame,
)
from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_S, local_ns
from transforms.silver.stage_physics import physics

DATE = "2024-12-16"
T = local_ns(DATE, "10:00")          # the event time used by the hand-built cases
S = NS_PER_S
L = 5000.0                           # the level used by the hand-built cases


def pm_high_events(rows):
    """rows: (ts_ns, level_price, direction)."""
    return events_frame(DATE, [{"ts_ns": t, "kind": "PM_HIGH", "level_price": lv, "direction": d}
                               for t, lv, d in rows])


def call_greeks(rows):
    """rows: (ts_ns, strike, dealer_gamma) of call trades."""
    return option_greeks_frame(rows, right="C")


def make_day(events, trades=None, mbp=None, greeks=None):
    return SilverDay(
        date=DATE, params=PARAMS, events=events,
        trades=trades if trades is not None else trades_frame([]),
        mbp=mbp if mbp is not None else book_frame([]),
        option_greeks=greeks if greeks is not None else call_greeks([]))


def run_one(direction="UP", **frames):
    out = physics(make_day(pm_high_events([(T, L, direction)]), **frames)).events
    return out.iloc[0]


# ---------------------------------------------------------------- contract

def test_adds_exactly_the_manifest_columns_with_their_dtypes():
    events = pm_high_events([(T, L, "UP"), (T + 5 * S, L, "DOWN")])
    day = make_day(events, trades=trades_frame([(T - S, L, 1, 1)]))
    out = physics(day).events
    # string columns: every value a str; the others: declared dtype and no NaN
    assert_adds_group_columns(events, out, "physics", no_missing=True)
    pd.testing.assert_frame_equal(day.events, events)       # input not mutated


def test_empty_events_get_the_columns():
    names = group_names("physics")
    day = make_day(pm_high_events([]), trades=trades_frame([(T, L, 1, 1)]))
    out = physics(day).events
    assert len(out) == 0
    assert names == list(out.columns[-len(names):])


def test_missing_input_is_reported():
    day = make_day(pm_high_events([(T, L, "UP")])).replace(mbp=None)
    with pytest.raises(ValueError, match="mbp"):
        physics(day)


# ---------------------------------------------------------------- tape

def test_tape_volumes_split_by_aggressor_within_the_band():
    row = run_one(trades=trades_frame([
        (T - 30 * S, L + 0.25, 3, 1),      # buy, in band
        (T - 20 * S, L + 0.50, 2, -1),     # sell, on the band edge (in)
        (T - 15 * S, L - 0.25, 7, 0),      # unknown aggressor: neither side
        (T - 10 * S, L + 0.75, 10, 1),     # outside the 0.5 band
        (T, L - 0.50, 4, -1),              # sell at exactly t: in
        (T + 1, L, 50, 1),                 # after t: never
    ]))
    assert row.tape_buy_vol == 3.0
    assert row.tape_sell_vol == 6.0
    assert row.tape_imbalance == pytest.approx((3 - 6) / 9)


def test_tape_window_is_open_on_the_left():
    w = PARAMS["physics"]["velocity_window_s"] * S
    row = run_one(trades=trades_frame([
        (T - w, L, 100, 1),                # exactly t - 60 s: outside (t-60 s, t]
        (T - w + 1, L, 5, 1),              # 1 ns later: inside
        (T - w + 2, L, 1, -1),
    ]))
    assert (row.tape_buy_vol, row.tape_sell_vol) == (5.0, 1.0)
    assert row.tape_imbalance == pytest.approx(4 / 6)


def test_tape_all_sellers_and_no_trades():
    row = run_one(trades=trades_frame([(T - S, L, 8, -1)]))
    assert (row.tape_buy_vol, row.tape_sell_vol, row.tape_imbalance) == (0.0, 8.0, -1.0)
    row = run_one(trades=trades_frame([(T - 61 * S, L, 8, -1), (T + S, L, 3, 1)]))
    assert (row.tape_buy_vol, row.tape_sell_vol, row.tape_imbalance) == (0.0, 0.0, 0.0)
    assert row.tape_velocity == 0.0


def test_tape_velocity_is_the_ols_slope_over_all_trades_of_the_window():
    # price = 5000 + 0.1 * seconds since t-60s for the in-window trades (band ignored)
    def p(sec_before):
        return 5000.0 + 0.1 * (60 - sec_before)
    row = run_one(trades=trades_frame([
        (T - 90 * S, 4000.0, 1, 1),        # before the window: ignored
        (T - 60 * S, 4000.0, 1, 1),        # on the open left edge: ignored
        (T - 50 * S, p(50), 1, 1),
        (T - 40 * S, p(40), 1, -1),
        (T - 10 * S, p(10), 1, 1),
        (T, p(0), 1, 1),
        (T + 5 * S, 9000.0, 1, 1),         # after t: ignored
    ]))
    assert row.tape_velocity == pytest.approx(0.1)


def test_tape_velocity_hand_computed_nonlinear():
    # x = -30, -20, 0 s; y = 1, 4, 4 -> xm = -50/3, ym = 3
    # Sxy = (-40/3)(-2) + (-10/3)(1) + (50/3)(1) = 120/3 = 40; Sxx = (1600+100+2500)/9 = 4200/9
    row = run_one(trades=trades_frame([
        (T - 30 * S, 1.0, 1, 1), (T - 20 * S, 4.0, 1, 1), (T, 4.0, 1, 1)]))
    assert row.tape_velocity == pytest.approx(40 / (4200 / 9))


def test_tape_velocity_zero_for_one_trade_or_one_timestamp():
    assert run_one(trades=trades_frame([(T - S, L, 1, 1)])).tape_velocity == 0.0
    same = trades_frame([(T - S, L, 1, 1), (T - S, L + 2, 1, 1)])
    assert run_one(trades=same).tape_velocity == 0.0


# ---------------------------------------------------------------- barrier

def ask_book(ts, depth, noise=True):
    """A snapshot with ask depth ``depth`` within L +- 2.0, plus size the barrier must ignore."""
    row = {"ts_ns": ts, "ask_px_1": L, "ask_sz_1": depth * 0.6,
           "ask_px_9": L + 2.0, "ask_sz_9": depth * 0.4}           # band edge: counted
    if noise:
        row.update({"ask_px_10": L + 2.25, "ask_sz_10": 777.0,     # outside the band
                    "ask_px_5": 0.0, "ask_sz_5": 555.0,            # px 0 = missing level
                    "bid_px_1": L - 0.25, "bid_sz_1": 999.0})      # other side
    return row


def mirror_to_bids(row):
    out = {"ts_ns": row["ts_ns"]}
    for k, v in row.items():
        if k.startswith("ask_"):
            out["bid_" + k[4:]] = (2 * L - v) if "_px_" in k and v else v
        elif k.startswith("bid_"):
            out["ask_" + k[4:]] = (2 * L - v) if "_px_" in k and v else v
    return out


STATE_CASES = [
    # start, end, delta, ratio, state
    (500, 100, -400, 0.2, "VACUUM"),
    (500, 300, -200, 0.6, "CONSUMED"),
    (100, 300, 200, 3.0, "WALL"),
    (300, 450, 150, 1.5, "ABSORPTION"),     # ratio exactly 1.5 is not > 1.5
    (40, 30, -10, 0.75, "WEAK"),
    (200, 250, 50, 1.25, "NEUTRAL"),
    (400, 300, -100, 0.75, "NEUTRAL"),      # delta exactly -100 is not < -100
]


@pytest.mark.parametrize("start,end,delta,ratio,state", STATE_CASES)
@pytest.mark.parametrize("direction", ["UP", "DOWN"])
def test_barrier_states(direction, start, end, delta, ratio, state):
    rows = [ask_book(T - 300 * S, 5000.0),              # before the 240 s window
            ask_book(T - 200 * S, start),               # first in the window
            ask_book(T - 100 * S, 12345.0),             # in between: irrelevant
            ask_book(T, end),                           # last at or before t
            ask_book(T + S, 0.0)]                       # after t
    if direction == "DOWN":
        rows = [mirror_to_bids(r) for r in rows]
    row = run_one(direction, mbp=book_frame(rows))
    assert row.barrier_depth_start == pytest.approx(start)
    assert row.barrier_depth_end == pytest.approx(end)
    assert row.barrier_delta_liq == pytest.approx(delta)
    assert row.barrier_wall_ratio == pytest.approx(ratio)
    assert row.barrier_state == state


def test_barrier_reads_the_defending_side_only():
    rows = [ask_book(T - 100 * S, 300.0), ask_book(T - S, 300.0)]
    up = run_one("UP", mbp=book_frame(rows))
    down = run_one("DOWN", mbp=book_frame(rows))
    assert up.barrier_depth_end == 300.0
    assert down.barrier_depth_end == 999.0          # the bid at L - 0.25


def test_barrier_window_edge_and_wall_ratio_floor():
    w = PARAMS["physics"]["barrier_window_s"] * S
    rows = [ask_book(T - w, 900.0), ask_book(T - w + 1, 0.0), ask_book(T - S, 150.0)]
    row = run_one(mbp=book_frame(rows))
    assert row.barrier_depth_start == 0.0            # t - 240 s exactly is outside
    assert row.barrier_wall_ratio == 150.0           # end / max(start, 1)
    assert row.barrier_state == "WALL"


def test_barrier_without_snapshots_in_the_window():
    only_old = run_one(mbp=book_frame([ask_book(T - 300 * S, 80.0)]))
    assert (only_old.barrier_depth_start, only_old.barrier_depth_end) == (80.0, 80.0)
    assert (only_old.barrier_delta_liq, only_old.barrier_state) == (0.0, "NEUTRAL")
    none = run_one(mbp=book_frame([ask_book(T + S, 80.0)]))
    assert (none.barrier_depth_start, none.barrier_depth_end, none.barrier_wall_ratio) == (0, 0, 0)
    assert none.barrier_state == "WEAK"


# ---------------------------------------------------------------- fuel

def test_fuel_sums_dealer_gamma_near_the_level_up_to_t():
    greeks = call_greeks([
        (T - 600 * S, L, -8000.0),           # in band, long before t: counted (no window)
        (T - S, L + 15.0, -3000.0),          # band edge: counted
        (T, L - 5.0, -500.0),                # at t: counted
        (T - S, L + 20.0, -50000.0),         # outside the band
        (T + S, L, -99999.0),                # after t
    ])
    row = run_one(greeks=greeks)
    assert row.fuel_net_gamma == -11500.0
    assert row.fuel_effect == "AMPLIFY"


@pytest.mark.parametrize("gamma,effect", [(10001.0, "DAMPEN"), (10000.0, "NEUTRAL"),
                                          (-10000.0, "NEUTRAL"), (-10000.5, "AMPLIFY")])
def test_fuel_thresholds(gamma, effect):
    row = run_one(greeks=call_greeks([(T - S, L, gamma)]))
    assert row.fuel_effect == effect


def test_fuel_with_no_option_trades():
    row = run_one()
    assert (row.fuel_net_gamma, row.fuel_effect) == (0.0, "NEUTRAL")


# ---------------------------------------------------------------- causality

def synthetic(seed=7, minutes=20):
    """Random-walk trades every 0.5 s, a 10-level book every 250 ms, option trades every 3 s."""
    rng = np.random.default_rng(seed)
    start = T - 10 * 60 * S
    n = minutes * 120
    ts = start + np.arange(n) * (S // 2)
    price = L + np.round(np.cumsum(rng.choice([-0.25, 0, 0.25], n)) * 4) / 4
    trades = pd.DataFrame({"ts_ns": ts.astype(np.int64), "price": price,
                           "size": rng.integers(1, 20, n),
                           "aggressor": rng.choice([-1, 1], n).astype(np.int8)})
    m = minutes * 240
    bts = start + np.arange(m) * (S // 4)
    mid = np.interp(bts, ts, price)
    book = {"ts_ns": bts.astype(np.int64)}
    for i in range(1, 11):
        book[f"bid_px_{i}"] = np.floor(mid * 4) / 4 - 0.25 * (i - 1)
        book[f"ask_px_{i}"] = np.floor(mid * 4) / 4 + 0.25 * i
        book[f"bid_sz_{i}"] = rng.integers(1, 200, m).astype(float)
        book[f"ask_sz_{i}"] = rng.integers(1, 200, m).astype(float)
    k = minutes * 20
    greeks = call_greeks(list(zip(start + np.arange(k) * 3 * S,
                                   L + 5.0 * rng.integers(-4, 5, k),
                                   rng.normal(0, 3000, k))))
    return trades, pd.DataFrame(book), greeks


def perturb_after(frame, t, columns, factor=3.0, shift=1.0):
    out = frame.copy()
    after = out["ts_ns"].to_numpy() > t
    for c in columns:
        out.loc[after, c] = out.loc[after, c] * factor + shift
    extra = out.iloc[[-1]].copy()
    extra["ts_ns"] = t + 1                               # a new row 1 ns after the event
    return pd.concat([out, extra], ignore_index=True).sort_values("ts_ns", kind="stable") \
        .reset_index(drop=True)


def test_causality_data_after_the_event_is_never_read():
    trades, mbp, greeks = synthetic()
    times = [T - 5 * 60 * S + 123, T, T + 4 * 60 * S + 7 * S // 4]
    events = pm_high_events([(t, L + 0.25 * j, d) for j, t in enumerate(times)
                           for d in ("UP", "DOWN")])
    base = physics(make_day(events, trades, mbp, greeks)).events
    sz = [c for c in mbp.columns if "_sz_" in c]
    for t in times:
        day = make_day(events,
                       perturb_after(trades, t, ["price", "size"]),
                       perturb_after(mbp, t, sz),
                       perturb_after(greeks, t, ["dealer_gamma"], factor=10.0))
        out = physics(day).events
        mine = events["ts_ns"].to_numpy() <= t
        pd.testing.assert_frame_equal(out[mine], base[mine])


def test_causality_data_before_the_event_is_read():
    trades, mbp, greeks = synthetic()
    events = pm_high_events([(T, float(trades.loc[trades.ts_ns <= T, "price"].iloc[-1]), "UP")])
    base = physics(make_day(events, trades, mbp, greeks)).events.iloc[0]
    recent = lambda f: (f["ts_ns"] > T - 30 * S) & (f["ts_ns"] <= T)  # noqa: E731
    t2, m2, g2 = trades.copy(), mbp.copy(), greeks.copy()
    t2.loc[recent(t2), "size"] *= 2
    t2.loc[recent(t2), "price"] += np.linspace(0, 3, recent(t2).sum())
    m2.loc[recent(m2), [f"ask_sz_{i}" for i in range(1, 11)]] += 100
    g2.loc[recent(g2), "dealer_gamma"] += 1e5
    changed = physics(make_day(events, t2, m2, g2)).events.iloc[0]
    for col in ("tape_buy_vol", "tape_sell_vol", "tape_velocity", "barrier_depth_end",
                "fuel_net_gamma"):
        assert changed[col] != base[col], col
