"""A realistic synthetic ES trading session in the bus contract (reference §1, §3).

``synthetic_session(date, scale=1.0, seed=0)`` yields ``(subject, event)`` pairs for one
US/Eastern trading date, in ``(ts_event_ns, trades < options < book < signals)`` order:

- ``market.futures.trades``: about 600k x ``scale`` ES trades from 04:00 ET (light
  premarket, a spike at the 08:30 data release), RTH 09:30-16:00 ET with a U-shaped
  intraday volume profile, light after-hours until 17:00 ET.  Prices on 0.25 ticks from a
  latent random walk whose variance follows trading activity (about 0.75 % daily RTH
  volatility); heavy-tailed sizes (median 1, max 1000); aggressor 1 trades at the ask,
  -1 at the bid.  The front month (:func:`front_month_contract`) carries nearly all
  volume; a second contract (the next one, or the expiring one just after a roll)
  trades a few percent, up to ~35 % around a roll date.
- ``market.futures.mbp10``: the front month's 10-level book, consistent with the trades:
  every trade executes at the touch of the most recent book update, ``ask = bid + 0.25``
  mostly (occasionally 0.50), sizes >= 1 on all levels, touch sizes reduced by trades.
  An update is emitted whenever the touch changed before a trade, plus a share of the
  post-trade updates, for ~150k x ``scale`` updates per day.
- ``market.options.trades``: ~1000 x ``scale`` ES option trades (mostly RTH, none after
  16:00 ET): 70 % 0DTE on the 5-point grid within 45 points of the at-the-money strike,
  30 % in the next Friday's weekly expiry on the 25-point grid within 150 points (the real
  day had 973 trades over 115 strikes, commonest spacing 25, 0DTE spacing 5), Black-76 prices (σ 16 % with a put skew) on the CME premium ticks,
  ``opt_bid < opt_ask`` with buys at the ask and sells at the bid.
- ``levels.signals``: every 250 ms during RTH, the §1 payload for PM high/low (from 09:30)
  and opening-range high/low (from 09:45, causal).

Everything is derived from ``numpy`` generators seeded by ``(seed, date)``: same
arguments, identical events.  The arrays for the whole day are small (a few MB); the
event dicts are built and yielded chunk by chunk.  Pure Python + numpy, no Beam, no I/O.
Dates are not checked against the exchange calendar: a weekend date yields a session too.
"""
from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from typing import Iterable, Iterator, Optional, Union
from zoneinfo import ZoneInfo

import numpy as np

ET = ZoneInfo("America/New_York")
TICK = 0.25
ROOT = "ES"
MONTH_CODES = {3: "H", 6: "M", 9: "U", 12: "Z"}
ROLL_DAYS_BEFORE_EXPIRY = 8
NS = 1_000_000_000
BIN_NS = 100_000_000                     # latent price / activity grid: 100 ms
TRADES_PER_DAY = 600_000
OPTIONS_PER_DAY = 1_000
LATER_EXPIRY_SHARE = 0.3                 # option trades in the weekly expiry (25-point strikes)
BOOK_UPDATES_PER_DAY = 150_000
SIGNAL_INTERVAL_MS = 250
# Price path calibration (latent_price_path), to ES in 2024 (price ~6000): RTH 1-minute
# return std about 2 points on average (~3.5 at the open, ~1.5 at midday), so a 14-bar ATR of
# 3-4 points; daily RTH range 40-90 points (~1 %); 1-minute returns fat-tailed (excess
# kurtosis well above 3 from Student-t(4) shocks, stochastic volatility and a few jumps);
# volatility clustering (|return| autocorrelated over tens of minutes); intraday mean
# reversion (price ranges around a slowly drifting value) and support/resistance at the
# day's levels (PM and opening-range highs and lows), which price tests repeatedly.
SIGMA_1MIN_RTH = 2.3                     # points, mean RTH 1-minute return std
SHOCK_DOF = 4.0                          # Student-t degrees of freedom of minute shocks
JUMPS_PER_DAY = 3.0                      # Poisson jumps (news), each ~4 minute-stds
SLOW_VOL_PHI, SLOW_VOL_SD = 0.995, 0.30  # slow log-volatility factor per minute
REVERSION_HALF_LIFE_MIN = 8.0            # pull of price towards its drifting value
VALUE_DRIFT_SD = 1.0                     # points per minute, random walk of the value
VALUE_HALF_LIFE_MIN = 30.0               # pull of the value towards the middle of the levels
LEVEL_BAND = 8.0                         # points: support/resistance acts within this band
LEVEL_PUSH = 3.0                         # points per minute away from a level inside it
LEVEL_HOLD_PROBABILITY = 0.5             # a test of a level holds (push) or not (none)
PHASE_SHARE = {"pm": 0.07, "rth": 0.90, "ah": 0.03}
CARRY = 0.032                            # r - q for the calendar spread
RATE = 0.045
SUBJECT_TRADES = "market.futures.trades"
SUBJECT_BOOK = "market.futures.mbp10"
SUBJECT_OPTIONS = "market.options.trades"
SUBJECT_SIGNALS = "levels.signals"
MARKET_SUBJECTS = (SUBJECT_TRADES, SUBJECT_OPTIONS, SUBJECT_BOOK)

DateLike = Union[str, dt.date]


# --------------------------------------------------------------------------- contracts

def _as_date(date: DateLike) -> dt.date:
    if isinstance(date, dt.datetime):
        return date.date()
    if isinstance(date, dt.date):
        return date
    return dt.date.fromisoformat(date)


def third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(4 - first.weekday()) % 7 + 14)


def contract_code(year: int, month: int) -> str:
    return f"{ROOT}{MONTH_CODES[month]}{year % 10}"


def contract_expiry(year: int, month: int) -> dt.date:
    """Expiry of the quarterly contract: the third Friday of its month."""
    return third_friday(year, month)


def roll_date(year: int, month: int) -> dt.date:
    """From this date on, the next contract is the front month (8 days before expiry)."""
    return contract_expiry(year, month) - dt.timedelta(days=ROLL_DAYS_BEFORE_EXPIRY)


def _quarterlies_from(year: int, month: int) -> Iterator[tuple[int, int]]:
    q = (month - 1) // 3            # quarter index of `month` (0..3)
    while True:
        yield year, 3 * q + 3
        q += 1
        if q == 4:
            q, year = 0, year + 1


def _front_ym(day: dt.date) -> tuple[int, int]:
    for y, m in _quarterlies_from(day.year, day.month):
        if day < roll_date(y, m):
            return y, m
    raise AssertionError("unreachable")


def _shift_ym(y: int, m: int, quarters: int) -> tuple[int, int]:
    k = y * 4 + (m // 3 - 1) + quarters
    return k // 4, (k % 4) * 3 + 3


def front_month_contract(date: DateLike) -> str:
    """Front-month ES contract of a date: the first quarterly (H/M/U/Z) contract whose roll
    date (third Friday of its month minus 8 days) is after the date.  ESZ4 expires
    2024-12-20 and rolls on 2024-12-12, so 2024-12-11 -> ESZ4 and 2024-12-12 -> ESH5."""
    return contract_code(*_front_ym(_as_date(date)))


def next_contract(date: DateLike) -> str:
    """The quarterly contract after the front month of the date (2024-12-16 -> ESM5)."""
    return contract_code(*_shift_ym(*_front_ym(_as_date(date)), 1))


def contract_shares(date: DateLike) -> dict[str, float]:
    """Share of the day's futures trades per contract: the front month and one other.

    Normally the next contract trades 2 %; in the 5 days before the roll date its share
    rises to 32 %; from the roll date until the old contract expires, the expiring
    contract keeps 30 % on the roll date, falling by 5 points a day (at least 5 %)."""
    day = _as_date(date)
    fy, fm = _front_ym(day)
    py, pm = _shift_ym(fy, fm, -1)
    if roll_date(py, pm) <= day <= contract_expiry(py, pm):
        other = contract_code(py, pm)
        share = max(0.05, 0.30 - 0.05 * (day - roll_date(py, pm)).days)
    else:
        other = contract_code(*_shift_ym(fy, fm, 1))
        d = (roll_date(fy, fm) - day).days
        share = 0.02 + 0.06 * (6 - d) if d <= 5 else 0.02
    return {contract_code(fy, fm): 1.0 - share, other: share}


def _contract_expiry_of(code: str, near: dt.date) -> dt.date:
    month = {v: k for k, v in MONTH_CODES.items()}[code[len(ROOT)]]
    digit = int(code[len(ROOT) + 1:])
    year = near.year - 2 + ((digit - (near.year - 2)) % 10)
    return contract_expiry(year, month)


# --------------------------------------------------------------------------- session clock

def session_bounds(date: DateLike) -> dict[str, int]:
    """UTC epoch ns of the session marks of a date (US/Eastern, DST-correct):
    ``pm_start`` 04:00, ``or_end`` 09:45 (opening range), ``rth_start`` 09:30,
    ``rth_end`` 16:00 (also the 0DTE option expiry), ``end`` 17:00."""
    day = _as_date(date)

    def ns(h: int, m: int) -> int:
        return int(dt.datetime(day.year, day.month, day.day, h, m, tzinfo=ET).timestamp()) * NS

    return {"pm_start": ns(4, 0), "econ": ns(8, 30), "rth_start": ns(9, 30), "or_end": ns(9, 45),
            "rth_end": ns(16, 0), "end": ns(17, 0)}


def _intensity(b: dict[str, int], n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-100ms-bin trade intensity (sums to 1 over the day) and phase (0 pm, 1 rth, 2 ah)."""
    t = b["pm_start"] + np.arange(n_bins, dtype=np.int64) * BIN_NS
    phase = np.where(t < b["rth_start"], 0, np.where(t < b["rth_end"], 1, 2)).astype(np.int8)
    shape = np.empty(n_bins)
    # premarket: ramp towards the open, burst at the 08:30 ET data release
    pm = phase == 0
    x = (t[pm] - b["pm_start"]) / (b["rth_start"] - b["pm_start"])
    since_econ = (t[pm] - b["econ"]) / (60 * NS)
    shape[pm] = 1.0 + 2.5 * x ** 2 + np.where(since_econ >= 0, 5.0 * np.exp(-since_econ / 6.0), 0.0)
    # RTH: U shape, heavy at the open and into the close
    rth = phase == 1
    x = (t[rth] - b["rth_start"]) / (b["rth_end"] - b["rth_start"])
    shape[rth] = (0.55 + 0.9 * (2 * x - 1) ** 2 + 1.8 * np.exp(-x / 0.06)
                  + 1.6 * np.exp(-(1 - x) / 0.035))
    # after-hours: decaying from the close
    ah = phase == 2
    x = (t[ah] - b["rth_end"]) / (b["end"] - b["rth_end"])
    shape[ah] = 0.3 + 2.0 * np.exp(-x / 0.15)
    lam = np.empty(n_bins)
    for p, key in enumerate(("pm", "rth", "ah")):
        sel = phase == p
        lam[sel] = PHASE_SHARE[key] * shape[sel] / shape[sel].sum()
    return lam, phase


# --------------------------------------------------------------------------- options math

def _ncdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _npdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def black76(fwd: float, strike: float, years: float, vol: float, right: str,
            rate: float = RATE) -> tuple[float, float]:
    """Black-76 (price, gamma) of a futures option."""
    sd = vol * math.sqrt(years)
    d1 = (math.log(fwd / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    disc = math.exp(-rate * years)
    if right == "C":
        price = disc * (fwd * _ncdf(d1) - strike * _ncdf(d2))
    else:
        price = disc * (strike * _ncdf(-d2) - fwd * _ncdf(-d1))
    return price, disc * _npdf(d1) / (fwd * sd)


def next_weekly_expiry(day: dt.date) -> dt.date:
    """The Friday after ``day`` (the weekly options the non-0DTE trades are in)."""
    return day + dt.timedelta(days=(4 - day.weekday()) % 7 or 7)


def _premium_tick(p: float) -> float:
    return 0.05 if p < 5.0 else 0.25


def option_symbol(exp: dt.date, right: str, strike: float) -> str:
    return f"ES{exp:%y%m%d}{right}{int(strike)}"


# --------------------------------------------------------------------------- price path

def latent_price_path(rng: np.random.Generator, w: np.ndarray, phase: np.ndarray,
                      start_price: float, b: dict[str, int], t0: int) -> np.ndarray:
    """The latent mid price (points) of every 100 ms bin of the session.

    Minute by minute (causal, as a market would): the 1-minute return is a Student-t shock
    scaled to ``SIGMA_1MIN_RTH`` x sqrt(the minute's trading activity relative to the RTH
    mean) x a slow stochastic-volatility factor, plus rare jumps; a drift pulls price
    towards a slowly drifting value (half-life ``REVERSION_HALF_LIFE_MIN``), and within
    ``LEVEL_BAND`` of a known level of the day (premarket high/low from 09:30, opening-range
    high/low from 09:45) a push away from the level on the side price is on makes it act as
    support or resistance, tested repeatedly: each test holds with probability
    ``LEVEL_HOLD_PROBABILITY`` (else the level gives no support and may break).  Within each
    minute the path is a Brownian bridge between the minute's closes whose increments follow
    the bins' activity ``w`` (heavier-tailed t(5) steps)."""
    n_bins = len(w)
    n_min = -(-n_bins // 600)
    pad = n_min * 600 - n_bins
    wm = np.concatenate((w, np.full(pad, w[-1]))).reshape(n_min, 600)
    act_min = wm.sum(axis=1)
    rth_min = (t0 + np.arange(n_min, dtype=np.int64) * 600 * BIN_NS >= b["rth_start"]) & (
        t0 + np.arange(n_min, dtype=np.int64) * 600 * BIN_NS < b["rth_end"])
    sigma = SIGMA_1MIN_RTH * np.sqrt(act_min / act_min[rth_min].mean())
    slow = np.empty(n_min)
    zs = rng.standard_normal(n_min)
    slow[0] = zs[0] * SLOW_VOL_SD
    for i in range(1, n_min):
        slow[i] = SLOW_VOL_PHI * slow[i - 1] + math.sqrt(1 - SLOW_VOL_PHI ** 2) * SLOW_VOL_SD * zs[i]
    sigma = sigma * np.exp(slow - SLOW_VOL_SD ** 2)
    dof = SHOCK_DOF
    shocks = rng.standard_t(dof, n_min) / math.sqrt(dof / (dof - 2))
    jumps = np.where(rng.random(n_min) < JUMPS_PER_DAY / n_min,
                     rng.standard_normal(n_min) * 4.0, 0.0)
    drift_z = rng.standard_normal(n_min)
    hold_u = rng.random(n_min)
    kappa = math.log(2.0) / REVERSION_HALF_LIFE_MIN
    value_kappa = math.log(2.0) / VALUE_HALF_LIFE_MIN
    minute_ns = t0 + np.arange(n_min + 1, dtype=np.int64) * 600 * BIN_NS
    rth_i = int(np.searchsorted(minute_ns, b["rth_start"]))
    or_i = int(np.searchsorted(minute_ns, b["or_end"]))
    close = np.empty(n_min + 1)
    close[0] = value = start_price
    hi = lo = start_price
    levels: list[float] = []
    holding: list[Optional[bool]] = []                 # per level: None outside its band
    for i in range(n_min):
        if i == rth_i:
            levels = [hi, lo]                          # premarket high / low
            hi = lo = close[i]
        elif i == or_i:
            levels = levels + [hi, lo]                 # opening-range high / low
        holding += [None] * (len(levels) - len(holding))
        x = close[i]
        drift = -kappa * (x - value)
        for j, lvl in enumerate(levels):
            d = x - lvl
            if abs(d) >= LEVEL_BAND:
                holding[j] = None
                continue
            if holding[j] is None:                     # a new test: does the level hold?
                holding[j] = bool(hold_u[i] < LEVEL_HOLD_PROBABILITY)
            if holding[j]:
                drift += LEVEL_PUSH * (1.0 if d >= 0 else -1.0) * (1.0 - abs(d) / LEVEL_BAND)
        r = drift + sigma[i] * (shocks[i] + jumps[i])
        close[i + 1] = x + r
        value += VALUE_DRIFT_SD * drift_z[i] * sigma[i] / SIGMA_1MIN_RTH
        if levels:                                     # the day's value stays in its range
            value -= value_kappa * (value - 0.5 * (max(levels) + min(levels)))
        hi, lo = max(hi, x + r + 0.6 * sigma[i]), min(lo, x + r - 0.6 * sigma[i])
    # Brownian bridges between the minute closes, steps following the bins' activity
    steps = rng.standard_t(5, (n_min, 600)) / math.sqrt(5 / 3) * np.sqrt(
        wm / wm.mean(axis=1, keepdims=True))
    walk = np.cumsum(steps, axis=1)
    frac = np.arange(1, 601) / 600.0
    bridge = walk - frac * walk[:, -1:]
    bridge *= (sigma / math.sqrt(600.0))[:, None] * 0.8
    path = close[:-1, None] + frac * np.diff(close)[:, None] + bridge
    path = np.concatenate(([start_price], path.reshape(-1)[:n_bins - 1]))
    return path


# --------------------------------------------------------------------------- generator

def synthetic_session(date: DateLike, scale: float = 1.0, seed: int = 0,
                      start_price: float = 6050.0, signals: bool = True,
                      ) -> Iterator[tuple[str, dict]]:
    """Yields ``(subject, event)`` of one synthetic ES session, in ``ts_event_ns`` order
    (ties: trades, options, book, signals).  ``scale`` multiplies the futures trade,
    option trade and book update counts (signals stay every 250 ms); ``signals=False``
    leaves out ``levels.signals`` (the market events do not change)."""
    if not scale > 0:
        raise ValueError("scale must be > 0")
    return _Session(_as_date(date), float(scale), int(seed), float(start_price)).events(signals)


class _Session:
    def __init__(self, day: dt.date, scale: float, seed: int, start_price: float):
        self.day, self.scale = day, scale
        ss = np.random.SeedSequence([seed & 0xFFFFFFFF, day.toordinal(), 0x5E55])
        rng_lat, rng_tr, rng_book, rng_opt, rng_sig = (np.random.default_rng(s) for s in ss.spawn(5))
        self.rng_book, self.rng_sig = rng_book, rng_sig
        b = self.bounds = session_bounds(day)
        self.t0 = t0 = b["pm_start"]
        n_bins = (b["end"] - t0) // BIN_NS
        lam, phase = _intensity(b, n_bins)
        self.phase = phase

        # activity: a lognormal AR(1) per minute, shared by volume and volatility
        n_min = -(-n_bins // 600)
        z = rng_lat.standard_normal(n_min)
        ar = np.empty(n_min)
        ar[0] = z[0]
        phi = 0.9
        for i in range(1, n_min):
            ar[i] = phi * ar[i - 1] + math.sqrt(1 - phi * phi) * z[i]
        act = np.exp(0.35 * ar - 0.35 ** 2 / 2).repeat(600)[:n_bins]

        # latent price in ticks (see latent_price_path): variance follows trading activity
        w = lam * act
        m = latent_price_path(rng_lat, w, phase, start_price, b, t0) / TICK
        m = np.maximum(m, 400.0)                       # keep ES above 100 points
        self.bid_tick = np.floor(m).astype(np.int64)
        self.frac = m - self.bid_tick
        wide_p = np.where(phase == 1, 0.02, 0.08)[::10]
        wide = (rng_lat.random(len(wide_p)) < wide_p).repeat(10)[:n_bins]
        self.spread = np.where(wide, 2, 1).astype(np.int64)
        key = self.bid_tick * 4 + self.spread
        chg_bin = np.ones(n_bins, dtype=bool)
        chg_bin[1:] = key[1:] != key[:-1]
        self.last_chg_bin = np.maximum.accumulate(np.where(chg_bin, np.arange(n_bins), 0))

        # futures trades
        counts = rng_tr.poisson(TRADES_PER_DAY * scale * w / w.mean() / n_bins)
        n = int(counts.sum())
        tb = np.repeat(np.arange(n_bins, dtype=np.int64), counts)
        t = t0 + tb * BIN_NS + rng_tr.integers(2, BIN_NS, n)
        t.sort()
        gap = 2 * np.arange(n, dtype=np.int64)
        t = np.maximum.accumulate(t - gap) + gap      # strictly increasing, gaps >= 2 ns
        tb = np.minimum((t - t0) // BIN_NS, n_bins - 1)
        self.n = n
        self.t = t
        self.tb = tb
        self.side = np.where(rng_tr.random(n) < 0.3 + 0.4 * self.frac[tb], 1, -1)
        size = np.floor(rng_tr.random(n) ** (-1 / 1.6))
        self.size = np.minimum(size, 1000).astype(np.int64)
        shares = contract_shares(day)
        (self.front, _), (self.other, other_share) = shares.items()
        self.is_front = rng_tr.random(n) >= other_share
        spread_days = (_contract_expiry_of(self.other, day) - _contract_expiry_of(self.front, day)).days
        self.other_offset = round(start_price * CARRY * spread_days / 365 / TICK)   # ticks
        self.recv_lat = rng_tr.integers(8_000, 60_000, n)

        # book: touch state per trade, change points and post-trade updates
        key_t = key[tb]
        chg = np.ones(n, dtype=bool)
        if n:
            chg[0] = key_t[0] != key[0]               # vs the opening snapshot (bin 0)
            chg[1:] = key_t[1:] != key_t[:-1]
        prev_t = np.concatenate(([t0], t[:-1]))
        g = t0 + self.last_chg_bin[tb] * BIN_NS
        self.chg = chg
        self.chg_ts = np.minimum(np.maximum(g, prev_t + 1), t - 1)
        next_t = np.concatenate((t[1:], [t[-1] + 2 * NS] if n else []))
        cand = self.is_front & np.concatenate((~chg[1:], [True]))
        n_chg = int(chg.sum()) + 1
        q = min(1.0, max(0.1, (BOOK_UPDATES_PER_DAY * scale - n_chg) / max(1, int(cand.sum()))))
        self.post = cand & (rng_book.random(n) < q)
        self.post_ts = t + np.minimum(rng_book.integers(5_000, 120_000, n), (next_t - t) // 2)
        base = np.array([10.0, 35.0, 12.0])[phase[tb]] if n else np.zeros(0)
        self.depth_base = base

        self._options(rng_opt, lam)
        self.seq = 0

    # ------------------------------------------------------------------ options
    def _options(self, rng: np.random.Generator, lam: np.ndarray) -> None:
        b, t0 = self.bounds, self.t0
        w = lam.copy()
        ts_bin = t0 + np.arange(len(w), dtype=np.int64) * BIN_NS
        w[ts_bin >= b["rth_end"]] = 0.0
        w[self.phase == 0] *= 0.08 / w[self.phase == 0].sum()
        w[self.phase == 1] *= 0.92 / w[self.phase == 1].sum()
        n = int(rng.poisson(OPTIONS_PER_DAY * self.scale))
        cum = np.cumsum(w)
        bins = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(w) - 1)
        ts = np.sort(t0 + bins * BIN_NS + rng.integers(0, BIN_NS, n))
        bins = (ts - t0) // BIN_NS
        k = np.clip(np.rint(rng.standard_normal(n) * 3.5), -9, 9).astype(np.int64)
        u_right, u_agg, u_size, u_lat = rng.random(n), rng.random(n), rng.random(n), rng.integers(20_000, 90_000, n)
        later = rng.random(n) < LATER_EXPIRY_SHARE               # weekly, not 0DTE
        k25 = np.clip(np.rint(rng.standard_normal(n) * 2.5), -6, 6).astype(np.int64)
        weekly = next_weekly_expiry(self.day)
        weekly_end = session_bounds(weekly)["rth_end"]
        out = []
        gamma_rows = []
        for i in range(n):
            tsi = int(ts[i])
            bt, sp = int(self.bid_tick[bins[i]]), int(self.spread[bins[i]])
            spot = (bt + sp / 2) * TICK
            exp, exp_end = (weekly, weekly_end) if later[i] else (self.day, b["rth_end"])
            strike = (float(round(spot / 25) * 25 + 25 * int(k25[i])) if later[i]
                      else float(round(spot / 5) * 5 + 5 * int(k[i])))
            otm_call = strike >= spot
            right = ("C" if u_right[i] < 0.7 else "P") if otm_call else ("P" if u_right[i] < 0.7 else "C")
            years = max(exp_end - tsi, 60 * NS) / NS / (365 * 86400)
            vol = min(0.45, max(0.08, 0.16 - 2.5 * (strike - spot) / spot))
            theo, gamma = black76(spot, strike, years, vol, right)
            tick = _premium_tick(theo)
            half = max(tick, round(0.015 * theo / tick) * tick)
            bid = max(0.05, math.floor((theo - half / 2) / tick + 1e-9) * tick)
            ask = max(bid + tick, math.ceil((theo + half / 2) / tick - 1e-9) * tick)
            bid, ask = round(bid, 2), round(ask, 2)
            agg = 1 if u_agg[i] < 0.45 else (-1 if u_agg[i] < 0.9 else 0)
            price = ask if agg == 1 else bid if agg == -1 else round(round((bid + ask) / 2 / 0.05) * 0.05, 2)
            size = int(min(50, 1 + math.floor(math.log(1 - u_size[i]) / math.log(0.6))))
            out.append(dict(ts_event_ns=tsi, ts_recv_ns=tsi + int(u_lat[i]), source="sim",
                            underlying=ROOT, option_symbol=option_symbol(exp, right, strike),
                            exp_date=exp.isoformat(), strike=strike, right=right, price=price, size=size,
                            opt_bid=bid, opt_ask=ask, aggressor=agg))
            gamma_rows.append((tsi, strike, right, -agg * size * gamma * 50.0, size))
        self.opt_ts = ts
        self.opt_events = out
        self.opt_gamma = gamma_rows

    # ------------------------------------------------------------------ signals
    def _signal_arrays(self) -> dict:
        b, t0, rng = self.bounds, self.t0, self.rng_sig
        ms0, ms1 = b["rth_start"] // 1_000_000, b["rth_end"] // 1_000_000
        ts_ms = np.arange(ms0, ms1, SIGNAL_INTERVAL_MS, dtype=np.int64)
        ts_ns = ts_ms * 1_000_000
        ns_sig = len(ts_ms)
        bins = (ts_ns - t0) // BIN_NS
        bid = self.bid_tick[bins] * TICK
        ask = bid + self.spread[bins] * TICK
        spot = (bid + ask) / 2

        def touch_range(lo: int, hi: int) -> tuple[float, float]:
            i0, i1 = np.searchsorted(self.t, [lo, hi])
            sel = self.is_front[i0:i1]
            if sel.any():
                px = (self.bid_tick[self.tb[i0:i1]] + np.where(self.side[i0:i1] > 0, self.spread[self.tb[i0:i1]], 0))[sel]
                return float(px.max() * TICK), float(px.min() * TICK)
            bb = slice((lo - t0) // BIN_NS, (hi - t0) // BIN_NS)
            return float((self.bid_tick[bb] + self.spread[bb]).max() * TICK), float(self.bid_tick[bb].min() * TICK)

        pm_hi, pm_lo = touch_range(b["pm_start"], b["rth_start"])
        or_hi, or_lo = touch_range(b["rth_start"], b["or_end"])
        levels = [("PM_HIGH", pm_hi, b["rth_start"]), ("PM_LOW", pm_lo, b["rth_start"]),
                  ("OR_HIGH", or_hi, b["or_end"]), ("OR_LOW", or_lo, b["or_end"])]

        # tape over the last 60 s (all front-month trades), sweeps = a trade >= 100 lots in 1 s
        ft = self.t[self.is_front]
        fsz = self.size[self.is_front]
        fside = self.side[self.is_front]
        ftb = self.tb[self.is_front]
        fpx = (self.bid_tick[ftb] + np.where(fside > 0, self.spread[ftb], 0)) * TICK
        cb = np.concatenate(([0], np.cumsum(np.where(fside > 0, fsz, 0))))
        cs = np.concatenate(([0], np.cumsum(np.where(fside < 0, fsz, 0))))
        hi_i = np.searchsorted(ft, ts_ns, side="right")
        lo_i = np.searchsorted(ft, ts_ns - 60 * NS, side="right")
        buy_vol = cb[hi_i] - cb[lo_i]
        sell_vol = cs[hi_i] - cs[lo_i]
        tot = buy_vol + sell_vol
        imb = np.where(tot > 0, (buy_vol - sell_vol) / np.maximum(tot, 1), 0.0)
        past = np.maximum(bins - 600, 0)
        spot_past = (self.bid_tick[past] + self.spread[past] / 2) * TICK
        velocity = (spot - spot_past) / 60.0
        big = np.flatnonzero(fsz >= 100)
        big_t = ft[big]
        j = np.searchsorted(big_t, ts_ns, side="right") - 1
        sweep = (j >= 0) & (ts_ns - big_t[np.maximum(j, 0)] <= NS) if len(big) else np.zeros(ns_sig, bool)
        jj = big[np.maximum(j, 0)] if len(big) else np.zeros(ns_sig, np.int64)
        sweep_dir = fside[jj] if len(big) else np.zeros(ns_sig, np.int64)
        sweep_notional = fsz[jj] * (self.bid_tick[self.tb[self.is_front][jj]] * TICK) * 50.0 if len(big) else np.zeros(ns_sig)

        # options: dealer gamma near each level, call/put walls, volume-weighted strike
        og = self.opt_gamma
        opt_t = np.array([r[0] for r in og], dtype=np.int64)
        o_idx = np.searchsorted(opt_t, ts_ns, side="right")          # options known at the tick
        walls = [(None, None, None)]
        vol_by = {"C": Counter(), "P": Counter()}
        num = den = 0.0
        for _, k, r, _, size in og:
            vol_by[r][k] += size
            num += k * size
            den += size
            walls.append((max(vol_by["C"], key=lambda s: (vol_by["C"][s], -s)) if vol_by["C"] else None,
                          max(vol_by["P"], key=lambda s: (vol_by["P"][s], s)) if vol_by["P"] else None,
                          round(num / den / 5) * 5.0))

        out = {"ts_ms": ts_ms.tolist(), "bid": bid.tolist(), "ask": ask.tolist(), "spot": spot.tolist(),
               "imb": np.round(imb, 4).tolist(), "buy": buy_vol.tolist(), "sell": sell_vol.tolist(),
               "vel": np.round(velocity, 4).tolist(), "sweep": sweep.tolist(),
               "sweep_dir": sweep_dir.tolist(), "sweep_notional": np.round(sweep_notional, 2).tolist(),
               "o_idx": o_idx.tolist(), "walls": walls, "levels": []}
        ts_ms_arr = ts_ms
        known_idx = {}
        for kind, price, known in levels:
            k0 = int(np.searchsorted(ts_ms_arr, known // 1_000_000))   # first tick the level exists
            known_idx[kind] = k0
            gam = np.array([r[3] if abs(r[1] - price) <= 15 else 0.0 for r in og])
            cg = np.concatenate(([0.0], np.cumsum(gam)))[o_idx]
            dist = np.abs(spot - price)
            up = spot < price                                    # approaching from below
            dsign = np.where(up, 1.0, -1.0)
            prox = np.exp(-dist / 8.0)
            raw = 50 + 30 * imb * dsign * prox + 15 * np.tanh(velocity * dsign * 4) * prox \
                + rng.normal(0, 6, ns_sig)
            raw = np.round(np.clip(raw, 0, 100), 2)
            acc = None
            raw_l = raw.tolist()
            sm_l = [0.0] * ns_sig
            for i in range(k0, ns_sig):                          # EMA from the level's first tick
                acc = raw_l[i] if acc is None else acc + 0.1 * (raw_l[i] - acc)
                sm_l[i] = acc
            smooth = np.round(np.array(sm_l), 2)
            near2 = dist <= 2.0
            signal = np.where(near2 & (smooth >= 60), "BREAK",
                              np.where(near2 & (smooth <= 40), "REJECT",
                                       np.where(dist <= 5.0, "CONTESTED", "NEUTRAL")))
            dev = np.abs(smooth - 50)
            confidence = np.where(dev > 20, "HIGH", np.where(dev > 8, "MEDIUM", "LOW"))
            added = rng.poisson(40 + 160 * prox)
            canceled = rng.poisson(35 + 150 * prox)
            depth = rng.poisson(60 + 200 * prox)
            near = np.abs(fpx - price) <= 0.5                # tape: trades within 0.5 of the level
            lb = np.concatenate(([0], np.cumsum(np.where(near & (fside > 0), fsz, 0))))
            ls = np.concatenate(([0], np.cumsum(np.where(near & (fside < 0), fsz, 0))))
            lbv, lsv = lb[hi_i] - lb[lo_i], ls[hi_i] - ls[lo_i]
            filled = np.where(up, lbv, lsv)                  # volume hitting the defending side
            limb = np.where(lbv + lsv > 0, (lbv - lsv) / np.maximum(lbv + lsv, 1), 0.0)
            dliq = added - canceled - filled
            ratio = np.round(added / np.maximum(1, canceled + filled), 3)
            state = np.where(dliq < -100, np.where(filled > canceled, "CONSUMED", "VACUUM"),
                             np.where(dliq > 100, np.where(ratio > 1.5, "WALL", "ABSORPTION"),
                                      np.where(ratio < 0.3, "VACUUM",
                                               np.where(depth < 50, "WEAK", "NEUTRAL"))))
            out["levels"].append(dict(
                kind=kind, price=price, id=f"{kind}_{int(round(price * 100))}",
                known_ms=known // 1_000_000, dist=np.round(dist, 2).tolist(), up=up.tolist(),
                raw=raw_l, smooth=smooth.tolist(), signal=signal.tolist(),
                confidence=confidence.tolist(), added=added.tolist(), canceled=canceled.tolist(),
                filled=filled.tolist(), dliq=dliq.tolist(), ratio=ratio.tolist(),
                state=state.tolist(), gamma=np.round(cg, 2).tolist(),
                buy=lbv.tolist(), sell=lsv.tolist(), imb=np.round(limb, 4).tolist()))
        # runway: the nearest other known level beyond this one, for each set of known levels
        out["runway"] = {}
        for cut in sorted(set(known_idx.values())):
            act = [lv for lv in out["levels"] if known_idx[lv["kind"]] <= cut]
            table = {}
            for lv in act:
                for is_up in (True, False):
                    beyond = [o for o in act if (o["price"] > lv["price"] if is_up else o["price"] < lv["price"])]
                    nxt = min(beyond, key=lambda o: abs(o["price"] - lv["price"])) if beyond else None
                    dist = round(abs(nxt["price"] - lv["price"]), 2) if nxt else None
                    table[lv["id"], is_up] = (
                        dict(id=nxt["id"], price=nxt["price"]) if nxt else None, dist,
                        "CLEAR" if dist is None or dist > 10 else "OBSTRUCTED")
            out["runway"][cut] = (act, table)
        out["cuts"] = sorted(out["runway"])
        return out

    def _signal_event(self, s: dict, i: int) -> dict:
        spot = s["spot"][i]
        cut = None
        for c in s["cuts"]:
            if c <= i:
                cut = c
        active, runway = s["runway"][cut] if cut is not None else ([], {})
        walls = s["walls"][s["o_idx"][i]]
        if walls[0] is None:
            atm = round(spot / 25) * 25.0
            walls = (atm + 25.0, atm - 25.0, atm)
        sw = s["sweep"][i]
        vel = s["vel"][i]
        lv_out = []
        for lv in active:
            up = lv["up"][i]
            signal = lv["signal"][i]
            direction = "UP" if up else "DOWN"
            dist = lv["dist"][i]
            swl = sw and dist <= 10.0
            gamma = lv["gamma"][i]
            nxt, run_dist, quality = runway[lv["id"], up]
            lv_out.append({
                "id": lv["id"], "price": lv["price"], "kind": lv["kind"], "direction": direction,
                "distance": dist, "break_score_raw": lv["raw"][i], "break_score_smooth": lv["smooth"][i],
                "signal": signal, "confidence": lv["confidence"][i],
                "barrier": {"state": lv["state"][i], "delta_liq": lv["dliq"][i],
                            "replenishment_ratio": lv["ratio"][i], "added": lv["added"][i],
                            "canceled": lv["canceled"][i], "filled": lv["filled"][i]},
                "tape": {"imbalance": lv["imb"][i], "buy_vol": lv["buy"][i], "sell_vol": lv["sell"][i],
                         "velocity": vel,
                         "sweep": {"detected": swl,
                                   "direction": ("UP" if s["sweep_dir"][i] > 0 else "DOWN") if swl else None,
                                   "notional": s["sweep_notional"][i] if swl else 0.0}},
                "fuel": {"effect": "AMPLIFY" if gamma < -10_000 else "DAMPEN" if gamma > 10_000 else "NEUTRAL",
                         "net_dealer_gamma": gamma, "call_wall": walls[0], "put_wall": walls[1],
                         "hvl": walls[2]},
                "runway": {"direction": direction, "next_obstacle": dict(nxt) if nxt else None,
                           "distance": run_dist, "quality": quality},
                "note": "" if signal == "NEUTRAL" else
                f"{lv['kind']} {lv['price']:.2f} {signal.lower()} {direction.lower()}, dist {dist:.2f}"})
        return {"ts": s["ts_ms"][i], "spy": {"spot": spot, "bid": s["bid"][i], "ask": s["ask"][i]},
                "levels": lv_out}

    # ------------------------------------------------------------------ book loop
    def _book_chunk(self, i0: int, i1: int, state: dict) -> list:
        """Runs the book through trades [i0, i1); returns [(ts, bid_tick, spread, bids, asks)]."""
        rng = self.rng_book
        n_draw = 4 * (i1 - i0) + 64
        fresh_mult = rng.lognormal(0.0, 0.6, n_draw).tolist()
        noise = rng.integers(-3, 5, 2 * (i1 - i0) * 20 + 40).tolist()
        fp = npos = 0
        out = []
        bt_arr, sp_arr = self.bid_tick, self.spread
        tb = self.tb[i0:i1].tolist()
        chg = self.chg[i0:i1].tolist()
        chg_ts = self.chg_ts[i0:i1].tolist()
        post = self.post[i0:i1].tolist()
        post_ts = self.post_ts[i0:i1].tolist()
        front = self.is_front[i0:i1].tolist()
        side = self.side[i0:i1].tolist()
        size = self.size[i0:i1].tolist()
        base = self.depth_base[i0:i1].tolist()
        cb, cs, bids, asks = state["bid"], state["spread"], state["bids"], state["asks"]
        for j in range(i1 - i0):
            if chg[j]:
                bn = int(bt_arr[tb[j]])
                sn = int(sp_arr[tb[j]])
                base_j = base[j]
                d = bn - cb
                if d > 0:
                    k = min(d, 10)
                    bids = [max(1, int(base_j * fresh_mult[fp + x])) for x in range(k)] + bids[:10 - k]
                    fp += k
                elif d < 0:
                    k = min(-d, 10)
                    bids = bids[k:] + [max(1, int(base_j * 1.5 * fresh_mult[fp + x])) for x in range(k)]
                    fp += k
                da = (bn + sn) - (cb + cs)
                if da > 0:
                    k = min(da, 10)
                    asks = asks[k:] + [max(1, int(base_j * 1.5 * fresh_mult[fp + x])) for x in range(k)]
                    fp += k
                elif da < 0:
                    k = min(-da, 10)
                    asks = [max(1, int(base_j * fresh_mult[fp + x])) for x in range(k)] + asks[:10 - k]
                    fp += k
                if fp > n_draw - 24:
                    fresh_mult = rng.lognormal(0.0, 0.6, n_draw).tolist()
                    fp = 0
                cb, cs = bn, sn
                nz = noise[npos:npos + 20]
                npos += 20
                bids = [x + y if x + y > 0 else 1 for x, y in zip(bids, nz[:10])]
                asks = [x + y if x + y > 0 else 1 for x, y in zip(asks, nz[10:])]
                out.append((chg_ts[j], cb, cs, bids, asks))
            if front[j]:
                q = size[j]
                if side[j] > 0:
                    a = asks[0] - q
                    asks = asks.copy()
                    asks[0] = a if a >= 1 else max(1, int(base[j] * fresh_mult[fp]))
                else:
                    a = bids[0] - q
                    bids = bids.copy()
                    bids[0] = a if a >= 1 else max(1, int(base[j] * fresh_mult[fp]))
                fp += 1
                if fp > n_draw - 24:
                    fresh_mult = rng.lognormal(0.0, 0.6, n_draw).tolist()
                    fp = 0
            if post[j]:
                nz = noise[npos:npos + 20]
                npos += 20
                bids = [x + y if x + y > 0 else 1 for x, y in zip(bids, nz[:10])]
                asks = [x + y if x + y > 0 else 1 for x, y in zip(asks, nz[10:])]
                out.append((post_ts[j], cb, cs, bids, asks))
            if npos > len(noise) - 40:
                noise = rng.integers(-3, 5, len(noise)).tolist()
                npos = 0
        state.update(bid=cb, spread=cs, bids=bids, asks=asks)
        return out

    # ------------------------------------------------------------------ merge
    def events(self, with_signals: bool) -> Iterator[tuple[str, dict]]:
        n = self.n
        t = self.t
        sig = self._signal_arrays() if with_signals else None
        sig_ns = np.asarray(sig["ts_ms"], dtype=np.int64) * 1_000_000 if sig else np.zeros(0, np.int64)
        base0 = 35.0 if self.phase[0] == 1 else 10.0
        rng = self.rng_book
        b0, s0 = int(self.bid_tick[0]), int(self.spread[0])
        state = dict(bid=b0, spread=s0,
                     bids=[max(1, int(base0 * (1 + 0.15 * k) * x)) for k, x in enumerate(rng.lognormal(0, 0.5, 10))],
                     asks=[max(1, int(base0 * (1 + 0.15 * k) * x)) for k, x in enumerate(rng.lognormal(0, 0.5, 10))])
        pending_books = [(self.t0, b0, s0, list(state["bids"]), list(state["asks"]))]
        snapshot_next = True
        front, other, off = self.front, self.other, self.other_offset
        opt_events = self.opt_events
        chunk = 20_000
        lo_ns = -1
        starts = list(range(0, n, chunk)) or [0]
        for ci, i0 in enumerate(starts):
            i1 = min(n, i0 + chunk)
            last = ci == len(starts) - 1
            books = pending_books + (self._book_chunk(i0, i1, state) if i1 > i0 else [])
            pending_books = []
            hi_ns = (1 << 62) if last else int(t[i1 - 1])
            if not last and books and books[-1][0] > hi_ns:        # post-trade book of the last trade
                pending_books = [books.pop()]
            o0, o1 = np.searchsorted(self.opt_ts, [lo_ns, hi_ns], side="right")
            s0_, s1_ = np.searchsorted(sig_ns, [lo_ns, hi_ns], side="right")
            lo_ns = hi_ns
            nb = len(books)
            ts_all = np.concatenate((t[i0:i1], self.opt_ts[o0:o1],
                                     np.fromiter((x[0] for x in books), np.int64, nb), sig_ns[s0_:s1_]))
            kind = np.concatenate((np.zeros(i1 - i0, np.int8), np.ones(o1 - o0, np.int8),
                                   np.full(nb, 2, np.int8), np.full(s1_ - s0_, 3, np.int8)))
            loc = np.concatenate((np.arange(i1 - i0), np.arange(o0, o1), np.arange(nb),
                                  np.arange(s0_, s1_))).tolist()
            order = np.lexsort((kind, ts_all)).tolist()
            # per-chunk Python lists of the trade columns (prices in ticks, touch per side)
            tbc = self.tb[i0:i1]
            px_l = (self.bid_tick[tbc] + np.where(self.side[i0:i1] > 0, self.spread[tbc], 0)
                    + np.where(self.is_front[i0:i1], 0, off)).tolist()
            tt, side_l, size_l = t[i0:i1].tolist(), self.side[i0:i1].tolist(), self.size[i0:i1].tolist()
            fr_l, lat_l = self.is_front[i0:i1].tolist(), self.recv_lat[i0:i1].tolist()
            kind_l = kind.tolist()
            for k in order:
                kd = kind_l[k]
                j = loc[k]
                if kd == 0:
                    self.seq += 1
                    sd = side_l[j]
                    sym = front if fr_l[j] else other
                    ts = tt[j]
                    yield SUBJECT_TRADES, {
                        "ts_event_ns": ts, "ts_recv_ns": ts + lat_l[j], "source": "sim", "symbol": sym,
                        "price": px_l[j] * TICK, "size": size_l[j], "aggressor": sd, "exchange": "XCME",
                        "seq": self.seq}
                elif kd == 2:
                    self.seq += 1
                    ts, bt, sp, bids, asks = books[j]
                    bp, ap = bt * TICK, (bt + sp) * TICK
                    yield SUBJECT_BOOK, {
                        "ts_event_ns": ts, "ts_recv_ns": ts + 12_000 + (ts % 23_000), "source": "sim",
                        "symbol": front,
                        "levels": [{"bid_px": bp - x * TICK, "bid_sz": bids[x],
                                    "ask_px": ap + x * TICK, "ask_sz": asks[x]} for x in range(10)],
                        "is_snapshot": snapshot_next, "seq": self.seq}
                    snapshot_next = False
                elif kd == 1:
                    self.seq += 1
                    ev = dict(opt_events[j])
                    ev["seq"] = self.seq
                    yield SUBJECT_OPTIONS, ev
                else:
                    yield SUBJECT_SIGNALS, self._signal_event(sig, j)


# --------------------------------------------------------------------------- summary

def session_summary(events: Iterable[tuple[str, dict]]) -> dict:
    """Counts per subject and per futures contract, first/last ts, futures price range."""
    counts: Counter = Counter()
    symbols: Counter = Counter()
    first: Optional[int] = None
    last: Optional[int] = None
    lo, hi = math.inf, -math.inf
    for subject, ev in events:
        counts[subject] += 1
        ts = ev["ts"] * 1_000_000 if subject == SUBJECT_SIGNALS else ev["ts_event_ns"]
        first = ts if first is None else min(first, ts)
        last = ts if last is None else max(last, ts)
        if subject == SUBJECT_TRADES:
            symbols[ev["symbol"]] += 1
            lo, hi = min(lo, ev["price"]), max(hi, ev["price"])
    return {"counts": dict(counts), "futures_symbols": dict(symbols), "first_ts_ns": first,
            "last_ts_ns": last, "futures_price_range": (lo, hi) if symbols else None}
