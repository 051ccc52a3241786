"""The realistic synthetic ES session: contract calendar, determinism, bus-contract
validity, book/trade consistency, session clock (DST), volume profile, options, signals."""
from __future__ import annotations

import datetime as dt
import itertools
import re
import statistics
from collections import Counter
from zoneinfo import ZoneInfo

import orjson
import pytest

from transforms.market_parse import parse_market_event
from transforms.synthetic_session import (
    SUBJECT_BOOK, SUBJECT_OPTIONS, SUBJECT_SIGNALS, SUBJECT_TRADES, TICK, contract_shares,
    front_month_contract, next_contract, session_bounds, session_summary, synthetic_session,
    third_friday)

ET = ZoneInfo("America/New_York")
WINTER = "2024-12-16"        # EST, 4 days after the ESZ4 -> ESH5 roll
SUMMER = "2024-07-15"        # EDT, far from a roll
MIN_NS = 60 * 10**9


def et_ns(date: str, hh: int, mm: int, ss: float = 0.0) -> int:
    d = dt.date.fromisoformat(date)
    base = dt.datetime(d.year, d.month, d.day, hh, mm, tzinfo=ET)
    return int(base.timestamp()) * 10**9 + int(round(ss * 1e9))


def ts_of(subject: str, ev: dict) -> int:
    return ev["ts"] * 1_000_000 if subject == SUBJECT_SIGNALS else ev["ts_event_ns"]


RANK = {SUBJECT_TRADES: 0, SUBJECT_OPTIONS: 1, SUBJECT_BOOK: 2, SUBJECT_SIGNALS: 3}


class SignalView:
    """What the tests need from a full stream with signals, collected while streaming (a
    day of signal payloads held in memory would be ~1 GB): the market events, every signal
    timestamp, every 37th payload, the level kinds before/after 09:45 ET, the last payload
    and whether the (ts, rank) order held throughout."""

    def __init__(self, events, or_end_ms: int):
        self.market, self.ts, self.sample = [], [], []
        self.kinds_before, self.kinds_after = set(), set()
        self.last = None
        self.ordered = True
        prev = (-1, -1)
        for subject, ev in events:
            key = (ts_of(subject, ev), RANK[subject])
            self.ordered &= key >= prev
            prev = key
            if subject != SUBJECT_SIGNALS:
                self.market.append((subject, ev))
                continue
            self.ts.append(ev["ts"])
            kinds = {lv["kind"] for lv in ev["levels"]}
            (self.kinds_before if ev["ts"] < or_end_ms else self.kinds_after).update(kinds)
            if len(self.ts) % 37 == 1:
                self.sample.append(ev)
            self.last = ev


@pytest.fixture(scope="module")
def winter_signals():
    return SignalView(synthetic_session(WINTER, scale=0.05, seed=0),
                      et_ns(WINTER, 9, 45) // 1_000_000)


@pytest.fixture(scope="module")
def winter(winter_signals):
    return winter_signals.market


@pytest.fixture(scope="module")
def summer_signals():
    return SignalView(synthetic_session(SUMMER, scale=0.01, seed=0),
                      et_ns(SUMMER, 9, 45) // 1_000_000)


@pytest.fixture(scope="module")
def summer(summer_signals):
    return summer_signals.market


def by_subject(events, subject):
    return [e for s, e in events if s == subject]


# ---------------------------------------------------------------- contract calendar

@pytest.mark.parametrize("date,front,nxt", [
    ("2024-12-11", "ESZ4", "ESH5"),   # ESZ4 expires 2024-12-20, rolls 2024-12-12
    ("2024-12-12", "ESH5", "ESM5"),
    ("2024-12-16", "ESH5", "ESM5"),
    ("2024-12-31", "ESH5", "ESM5"),
    ("2024-01-02", "ESH4", "ESM4"),
    ("2024-03-06", "ESH4", "ESM4"),   # ESH4 expires 2024-03-15, rolls 2024-03-07
    ("2024-03-07", "ESM4", "ESU4"),
    ("2024-07-15", "ESU4", "ESZ4"),
    ("2024-09-11", "ESU4", "ESZ4"),   # ESU4 expires 2024-09-20, rolls 2024-09-12
    ("2024-09-12", "ESZ4", "ESH5"),
    ("2025-03-12", "ESH5", "ESM5"),   # ESH5 expires 2025-03-21, rolls 2025-03-13
    ("2025-03-13", "ESM5", "ESU5"),
    ("2025-12-16", "ESH6", "ESM6"),   # ESZ5 expires 2025-12-19, rolls 2025-12-11
    ("2029-12-31", "ESH0", "ESM0"),
])
def test_front_month_rule(date, front, nxt):
    assert front_month_contract(date) == front
    assert front_month_contract(dt.date.fromisoformat(date)) == front
    assert next_contract(date) == nxt


def test_third_friday():
    assert third_friday(2024, 12) == dt.date(2024, 12, 20)
    assert third_friday(2025, 3) == dt.date(2025, 3, 21)
    assert third_friday(2024, 3) == dt.date(2024, 3, 15)
    assert third_friday(2026, 5) == dt.date(2026, 5, 15)   # May 1 2026 is a Friday


def test_contract_shares_near_and_far_from_roll():
    far = contract_shares("2025-02-05")
    assert far == pytest.approx({"ESH5": 0.98, "ESM5": 0.02})
    before = contract_shares("2024-12-11")           # the day before the roll
    assert before["ESZ4"] > 0.6 and before["ESH5"] > 0.25
    after = contract_shares("2024-12-16")           # expiring contract still trades
    assert set(after) == {"ESH5", "ESZ4"} and 0.05 <= after["ESZ4"] < 0.3
    for d in ("2024-12-05", "2024-12-11", "2024-12-12", "2024-12-20", "2024-12-23"):
        shares = contract_shares(d)
        assert max(shares, key=shares.get) == front_month_contract(d)
        assert sum(shares.values()) == pytest.approx(1.0) and max(shares.values()) >= 0.6


# ---------------------------------------------------------------- determinism / contract

def test_deterministic_and_seed_dependent(winter):
    again = list(synthetic_session(WINTER, scale=0.05, seed=0, signals=False))
    market = winter                              # from the stream with signals
    assert again == market                       # same args, same events; signals don't perturb
    other = list(synthetic_session(WINTER, scale=0.05, seed=1, signals=False))
    assert other != market
    assert [e["price"] for s, e in other[:2000] if s == SUBJECT_TRADES] != \
        [e["price"] for s, e in market[:2000] if s == SUBJECT_TRADES]


def test_small_sample_identical_with_signals():
    a = list(itertools.islice(synthetic_session(SUMMER, scale=0.01, seed=5), 6_000))
    b = list(itertools.islice(synthetic_session(SUMMER, scale=0.01, seed=5), 6_000))
    assert a == b and any(s == SUBJECT_SIGNALS for s, _ in a)


def test_every_market_event_parses(winter):
    seen = Counter()
    for subject, ev in winter:
        if subject == SUBJECT_SIGNALS:
            continue
        parsed = parse_market_event(subject, orjson.dumps(ev))
        assert parsed.partition == "ES"
        assert parsed.date == WINTER
        seen[subject] += 1
    assert seen[SUBJECT_TRADES] > 20_000 and seen[SUBJECT_BOOK] > 1000 and seen[SUBJECT_OPTIONS] > 20


def test_order_seq_source_and_recv(winter_signals, winter):
    assert winter_signals.ordered
    keys = [(ts_of(s, e), RANK[s]) for s, e in winter]
    assert keys == sorted(keys)
    market = [e for s, e in winter if s != SUBJECT_SIGNALS]
    seqs = [e["seq"] for e in market]
    assert all(b > a for a, b in zip(seqs, seqs[1:]))
    assert all(e["source"] == "sim" for e in market)
    assert all(0 < e["ts_recv_ns"] - e["ts_event_ns"] < 1_000_000 for e in market)


# ---------------------------------------------------------------- futures + book

def test_book_never_crossed_and_full_depth(winter):
    books = by_subject(winter, SUBJECT_BOOK)
    assert books[0]["is_snapshot"] and not any(b["is_snapshot"] for b in books[1:])
    spreads = Counter()
    for b in books:
        lv = b["levels"]
        assert len(lv) == 10
        assert lv[0]["bid_px"] < lv[0]["ask_px"]
        spreads[lv[0]["ask_px"] - lv[0]["bid_px"]] += 1
        for i, x in enumerate(lv):
            assert x["bid_sz"] >= 1 and x["ask_sz"] >= 1
            assert (x["bid_px"] / TICK).is_integer() and (x["ask_px"] / TICK).is_integer()
            if i:
                assert x["bid_px"] == lv[i - 1]["bid_px"] - TICK
                assert x["ask_px"] == lv[i - 1]["ask_px"] + TICK
    assert spreads[TICK] / len(books) > 0.9           # one tick wide almost always
    assert books[0]["symbol"] == front_month_contract(WINTER)


def test_trades_at_touch_of_latest_book_and_depth_changes(winter):
    front = front_month_contract(WINTER)
    book = None
    offsets = set()
    touch_size_changes = 0
    last_touch = None
    checked = 0
    for subject, ev in winter:
        if subject == SUBJECT_BOOK:
            book = ev["levels"][0]
            cur = (book["bid_px"], book["ask_px"], book["bid_sz"], book["ask_sz"])
            if last_touch and cur[:2] == last_touch[:2] and cur[2:] != last_touch[2:]:
                touch_size_changes += 1
            last_touch = cur
        elif subject == SUBJECT_TRADES:
            assert book is not None
            touch = book["ask_px"] if ev["aggressor"] == 1 else book["bid_px"]
            assert ev["aggressor"] in (1, -1)
            if ev["symbol"] == front:
                assert ev["price"] == touch, ev
                checked += 1
            else:
                offsets.add(ev["price"] - touch)
    assert checked > 20_000
    assert len(offsets) == 1 and abs(offsets.pop()) > 10    # calendar spread, constant
    assert touch_size_changes > 500                          # depth moves with the trades


def test_prices_on_ticks_sizes_heavy_tailed(winter):
    trades = by_subject(winter, SUBJECT_TRADES)
    assert all((t["price"] / TICK).is_integer() and t["price"] > 0 for t in trades)
    sizes = [t["size"] for t in trades]
    assert statistics.median(sizes) == 1
    assert 1 <= min(sizes) and max(sizes) <= 1000
    assert sum(s >= 50 for s in sizes) > 20                  # heavy tail exists
    assert 1.5 < statistics.mean(sizes) < 5
    sides = Counter(t["aggressor"] for t in trades)
    assert 0.4 < sides[1] / len(trades) < 0.6


def test_realistic_volatility(winter):
    b = session_bounds(WINTER)
    front = front_month_contract(WINTER)
    px = [t["price"] for t in by_subject(winter, SUBJECT_TRADES)
          if t["symbol"] == front and b["rth_start"] <= t["ts_event_ns"] < b["rth_end"]]
    assert 10 < max(px) - min(px) < 300
    assert 5000 < px[0] < 7000


def test_front_month_dominates(winter, summer):
    for date, events, lo, hi in ((WINTER, winter, 0.03, 0.25), (SUMMER, summer, 0.0, 0.06)):
        b = session_bounds(date)
        rth = Counter(t["symbol"] for t in by_subject(events, SUBJECT_TRADES)
                      if b["rth_start"] <= t["ts_event_ns"] < b["rth_end"])
        total = sum(rth.values())
        assert max(rth, key=rth.get) == front_month_contract(date)
        assert rth[front_month_contract(date)] / total > 0.6
        other = total - rth[front_month_contract(date)]
        assert lo <= other / total <= hi


def test_volume_profile_u_shaped(winter):
    ts = [t["ts_event_ns"] for t in by_subject(winter, SUBJECT_TRADES)]

    def count(h0, m0, h1, m1):
        lo, hi = et_ns(WINTER, h0, m0), et_ns(WINTER, h1, m1)
        return sum(lo <= t < hi for t in ts)

    first, last = count(9, 30, 10, 0), count(15, 30, 16, 0)
    midday = count(12, 0, 13, 0)
    assert first > 1.5 * midday and last > 1.5 * midday   # half-hours beat the full midday hour
    premarket = count(4, 0, 9, 30)
    rth = count(9, 30, 16, 0)
    assert premarket < 0.15 * rth and count(16, 0, 17, 0) < 0.06 * rth


@pytest.mark.parametrize("date,view,utc_open", [
    (WINTER, "winter_signals", (14, 30)), (SUMMER, "summer_signals", (13, 30))])
def test_session_clock_dst(date, view, utc_open, request):
    view = request.getfixturevalue(view)
    events = view.market
    b = session_bounds(date)
    d = dt.date.fromisoformat(date)
    assert b["rth_start"] == int(dt.datetime(d.year, d.month, d.day, *utc_open,
                                             tzinfo=dt.timezone.utc).timestamp()) * 10**9
    assert b["pm_start"] == et_ns(date, 4, 0)
    all_ts = [ts_of(s, e) for s, e in events]
    assert min(all_ts) >= et_ns(date, 4, 0) and max(all_ts) < et_ns(date, 17, 0)
    trades = [t["ts_event_ns"] for t in by_subject(events, SUBJECT_TRADES)]
    assert trades[0] < et_ns(date, 4, 15)                  # premarket trading from 04:00 ET
    per_min_before = sum(et_ns(date, 9, 10) <= t < et_ns(date, 9, 30) for t in trades) / 20
    per_min_after = sum(et_ns(date, 9, 30) <= t < et_ns(date, 9, 40) for t in trades) / 10
    assert per_min_after > 3 * per_min_before              # RTH opens at 09:30 ET
    sig = view.ts
    assert sig[0] * 1_000_000 == et_ns(date, 9, 30)
    assert sig[-1] * 1_000_000 == et_ns(date, 15, 59, 59.75)


# ---------------------------------------------------------------- options

def test_option_trades(winter):
    b = session_bounds(WINTER)
    opts = by_subject(winter, SUBJECT_OPTIONS)
    assert 25 <= len(opts) <= 80                           # ~1000 x 0.05
    spot = None
    rights, expiries = Counter(), Counter()
    for subject, ev in winter:
        if subject == SUBJECT_BOOK:
            spot = (ev["levels"][0]["bid_px"] + ev["levels"][0]["ask_px"]) / 2
        elif subject == SUBJECT_OPTIONS:
            expiries[ev["exp_date"]] += 1
            if ev["exp_date"] == WINTER:                   # 0DTE: 5-point grid near the money
                assert ev["strike"] % 5 == 0
                assert abs(ev["strike"] - spot) <= 50, (ev, spot)
            else:                                          # the weekly: Friday 2024-12-20
                assert ev["exp_date"] == "2024-12-20"
                assert ev["strike"] % 25 == 0 and abs(ev["strike"] - spot) <= 175, (ev, spot)
            assert ev["underlying"] == "ES"
            yymmdd = ev["exp_date"][2:].replace("-", "")
            m = re.fullmatch(rf"ES{yymmdd}([CP])(\d+)", ev["option_symbol"])
            assert m and m.group(1) == ev["right"] and int(m.group(2)) == ev["strike"]
            assert 0 < ev["opt_bid"] < ev["opt_ask"]
            assert ev["opt_bid"] <= ev["price"] <= ev["opt_ask"]
            if ev["aggressor"] == 1:
                assert ev["price"] == ev["opt_ask"]
            elif ev["aggressor"] == -1:
                assert ev["price"] == ev["opt_bid"]
            intrinsic = max(0.0, spot - ev["strike"]) if ev["right"] == "C" else max(0.0, ev["strike"] - spot)
            assert ev["opt_ask"] >= intrinsic - 0.5
            assert 1 <= ev["size"] <= 50
            assert ev["ts_event_ns"] < b["rth_end"]
            rights[ev["right"]] += 1
    assert rights["C"] > 5 and rights["P"] > 5
    assert set(expiries) == {WINTER, "2024-12-20"}
    assert 0.15 < expiries["2024-12-20"] / len(opts) < 0.45     # ~30 % not 0DTE
    in_rth = sum(b["rth_start"] <= o["ts_event_ns"] < b["rth_end"] for o in opts)
    assert in_rth / len(opts) > 0.75


def test_option_time_value_decays():
    """Near-the-money premium over intrinsic shrinks towards the 16:00 ET expiry."""
    early, late = [], []
    spot = None
    for s, e in synthetic_session(WINTER, scale=0.15, seed=2, signals=False):
        if s == SUBJECT_BOOK:
            spot = (e["levels"][0]["bid_px"] + e["levels"][0]["ask_px"]) / 2
        elif s == SUBJECT_OPTIONS and abs(e["strike"] - spot) <= 5 and e["exp_date"] == WINTER:
            intrinsic = max(0.0, (spot - e["strike"]) * (1 if e["right"] == "C" else -1))
            tv = (e["opt_bid"] + e["opt_ask"]) / 2 - intrinsic
            if e["ts_event_ns"] < et_ns(WINTER, 10, 30):
                early.append(tv)
            elif e["ts_event_ns"] > et_ns(WINTER, 15, 0):
                late.append(tv)
    assert len(early) >= 3 and len(late) >= 3
    assert statistics.median(early) > 2 * statistics.median(late) > 0


# ---------------------------------------------------------------- scale

def test_count_scales_linearly():
    def n_trades(scale):
        return sum(s == SUBJECT_TRADES for s, _ in synthetic_session(SUMMER, scale=scale, seed=3,
                                                                        signals=False))
    small, big = n_trades(0.01), n_trades(0.04)
    assert 5_000 < small < 7_000                                # ~600k x 0.01
    assert 3.6 < big / small < 4.4


def test_book_rate_bounded(winter):
    n_trades = len(by_subject(winter, SUBJECT_TRADES))
    n_books = len(by_subject(winter, SUBJECT_BOOK))
    assert 0.1 * n_trades < n_books < n_trades


# ---------------------------------------------------------------- signals

@pytest.mark.parametrize("view", ["winter_signals", "summer_signals"])
def test_signals_every_250ms_in_rth(view, request):
    ts = request.getfixturevalue(view).ts
    assert len(ts) == 6.5 * 3600 * 4
    assert all(b - a == 250 for a, b in zip(ts, ts[1:]))
    assert ts[-1] - ts[0] == (6.5 * 3600 - 0.25) * 1000


def test_signal_payload_shape_and_causal_levels(winter_signals, winter):
    view = winter_signals
    assert view.kinds_before == {"PM_HIGH", "PM_LOW"}          # OR levels only once known
    assert view.kinds_after == {"PM_HIGH", "PM_LOW", "OR_HIGH", "OR_LOW"}
    # the OR levels are the high/low of front-month trades 09:30-09:45
    front = front_month_contract(WINTER)
    or_px = [t["price"] for t in by_subject(winter, SUBJECT_TRADES) if t["symbol"] == front
             and et_ns(WINTER, 9, 30) <= t["ts_event_ns"] < et_ns(WINTER, 9, 45)]
    lv = {x["kind"]: x for x in view.last["levels"]}
    assert lv["OR_HIGH"]["price"] == max(or_px) and lv["OR_LOW"]["price"] == min(or_px)
    assert lv["PM_HIGH"]["price"] >= lv["PM_LOW"]["price"]
    signals = Counter()
    assert len(view.sample) > 2000
    for s in view.sample:
        assert set(s) == {"ts", "spy", "levels"}
        assert s["spy"]["bid"] < s["spy"]["ask"] and s["spy"]["bid"] < s["spy"]["spot"] < s["spy"]["ask"]
        orjson.dumps(s)
        for x in s["levels"]:
            assert set(x) == {"id", "price", "kind", "direction", "distance", "break_score_raw",
                              "break_score_smooth", "signal", "confidence", "barrier", "tape",
                              "fuel", "runway", "note"}
            assert set(x["barrier"]) == {"state", "delta_liq", "replenishment_ratio", "added",
                                         "canceled", "filled"}
            assert set(x["tape"]) == {"imbalance", "buy_vol", "sell_vol", "velocity", "sweep"}
            assert set(x["tape"]["sweep"]) == {"detected", "direction", "notional"}
            assert set(x["fuel"]) == {"effect", "net_dealer_gamma", "call_wall", "put_wall", "hvl"}
            assert set(x["runway"]) == {"direction", "next_obstacle", "distance", "quality"}
            assert 0 <= x["break_score_raw"] <= 100 and 0 <= x["break_score_smooth"] <= 100
            assert -1 <= x["tape"]["imbalance"] <= 1
            assert x["direction"] == ("UP" if s["spy"]["spot"] < x["price"] else "DOWN")
            assert x["distance"] == pytest.approx(abs(s["spy"]["spot"] - x["price"]), abs=0.01)
            signals[x["signal"]] += 1
    assert signals["NEUTRAL"] > 0 and set(signals) <= {"BREAK", "REJECT", "CONTESTED", "NEUTRAL"}


def test_summary_helper(winter):
    summ = session_summary(winter)
    assert summ["counts"][SUBJECT_TRADES] == len(by_subject(winter, SUBJECT_TRADES))
    assert set(summ["futures_symbols"]) == {"ESH5", "ESZ4"}
    assert summ["first_ts_ns"] == et_ns(WINTER, 4, 0)


def test_bad_scale():
    with pytest.raises(ValueError):
        synthetic_session(WINTER, scale=0)


# ---------------------------------------------------------------- price-path calibration

def _rth_bars_and_events(date: str, seed: int = 11):
    """Front-month trades of a full-scale session straight from the generator's arrays (no
    event dicts: fast), through Silver stages 1-5 of v3.1.0 (bars, levels, events), with
    the three previous weekdays as the SMA warm-up."""
    import numpy as np
    import pandas as pd
    import transforms.synthetic_session as ss
    from tests.silver_fixtures import MANIFEST, PARAMS
    from transforms.silver.day import SilverDay
    from transforms.silver.session import previous_weekdays
    from transforms.silver.stages import run_stages

    def trades(d):
        s = ss._Session(dt.date.fromisoformat(d), 1.0, seed, 6050.0)
        f = s.is_front
        px = (s.bid_tick[s.tb] + np.where(s.side > 0, s.spread[s.tb], 0)) * TICK
        return pd.DataFrame({"ts_ns": s.t[f], "price": px[f], "size": s.size[f],
                             "aggressor": s.side[f].astype(np.int8)})

    warm = pd.concat([trades(d)[["ts_ns", "price"]] for d in previous_weekdays(date, 3)])
    day = run_stages(SilverDay(date=date, params=PARAMS, trades=trades(date), warmup=warm,
                               columns=tuple(MANIFEST.columns())),
                     ["bars_1m", "bars_2m", "levels", "interaction_zones"])
    b = session_bounds(date)
    bars = day.bars_1m
    rth = bars[(bars["bar_ns"] >= b["rth_start"]) & (bars["bar_ns"] < b["rth_end"])]
    return rth, day.events


@pytest.mark.parametrize("date", ["2024-12-16", "2024-07-15"])
def test_price_path_is_calibrated_to_es_and_gives_a_real_days_events(date):
    """What the generator is calibrated to (module docstring): RTH range 20-120 points, fat
    1-minute tails, volatility clustering, 14-bar ATR of 2-5 points, and, through the
    reversion near the day's levels, on the order of the original's real day of 166 level
    events (53 inside RTH)."""
    import numpy as np
    rth, events = _rth_bars_and_events(date)
    r = rth["close"].diff().dropna().to_numpy()
    assert 20 <= rth["high"].max() - rth["low"].min() <= 120
    kurtosis = ((r - r.mean()) ** 4).mean() / r.var() ** 2
    assert kurtosis > 4                                     # normal: 3
    a = np.abs(r) - np.abs(r).mean()
    assert (a[:-1] * a[1:]).mean() / a.var() > 0.05         # |r| clusters
    assert 1.5 <= rth["atr"].mean() <= 5.0
    assert 60 <= len(events) <= 250
    b = session_bounds(date)
    in_window = events[(events["ts_ns"] >= b["rth_start"])
                       & (events["ts_ns"] < b["rth_start"] + 3 * 3600 * 10**9)]
    assert 20 <= len(in_window) <= 120
    # same seed, same events; another seed, other events
    again = _rth_bars_and_events(date)[1]
    assert again["event_id"].tolist() == events["event_id"].tolist()
    assert _rth_bars_and_events(date, seed=12)[1]["event_id"].tolist() != \
        events["event_id"].tolist()
