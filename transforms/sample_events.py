"""Deterministic sample market events in the bus contract (reference §1), for the demo,
tests and benchmarks: ES futures trades on two contracts, MBP-10 books consistent with
the trades, and ES 0DTE option trades on a 5-point strike grid.

``sample_events(start_ns, seconds, trades_per_second, seed)`` yields ``(subject, dict)``
in event-time order.  Same arguments, same events.  The synthetic trading session of the
market-data issue is richer; this is the small, fast generator the streaming path needs.
"""
from __future__ import annotations

import datetime as dt
import math
import random
from typing import Iterator

TICK = 0.25


def _option_symbol(exp: dt.date, right: str, strike: float) -> str:
    return f"ES{exp:%y%m%d}{right}{int(strike)}"


def sample_events(start_ns: int, seconds: float, trades_per_second: float = 50.0,
                  seed: int = 7, front: str = "ESZ4", back: str = "ESH5",
                  back_share: float = 0.1, book_every: int = 4, option_every: int = 40,
                  spot: float = 6050.0) -> Iterator[tuple[str, dict]]:
    """Yields ``(subject, event)`` pairs in ``ts_event_ns`` order."""
    rng = random.Random(seed)
    n = int(seconds * trades_per_second)
    gap = int(1e9 / trades_per_second)
    px = round(spot / TICK) * TICK
    exp = dt.datetime.fromtimestamp(start_ns / 1e9, dt.timezone.utc).date()
    seq = 0
    for i in range(n):
        ts = start_ns + i * gap + rng.randrange(gap // 2 or 1)
        px = max(TICK, px + TICK * rng.choice((-1, 0, 0, 1)))
        symbol = back if rng.random() < back_share else front
        side = rng.choice((1, -1))
        size = max(1, int(rng.paretovariate(1.6)))
        seq += 1
        trade_px = px + (TICK if side == 1 else 0.0) + (2.0 if symbol == back else 0.0)
        yield "market.futures.trades", dict(
            ts_event_ns=ts, ts_recv_ns=ts + 20_000, source="sim", symbol=symbol,
            price=trade_px, size=size, aggressor=side, exchange="XCME", seq=seq)
        if i % book_every == 0:
            levels = [dict(bid_px=px - k * TICK, bid_sz=rng.randint(1, 60) + 5 * k,
                           ask_px=px + TICK + k * TICK, ask_sz=rng.randint(1, 60) + 5 * k)
                      for k in range(10)]
            yield "market.futures.mbp10", dict(
                ts_event_ns=ts + 1, ts_recv_ns=ts + 25_000, source="sim", symbol=front,
                levels=levels, is_snapshot=False, seq=seq)
        if i % option_every == 0:
            strike = round(px / 5) * 5 + 5 * rng.randint(-4, 4)
            right = rng.choice("CP")
            intrinsic = max(0.0, (px - strike) if right == "C" else (strike - px))
            price = round(intrinsic + 2.0 + 3.0 * math.exp(-abs(px - strike) / 20), 2)
            yield "market.options.trades", dict(
                ts_event_ns=ts + 2, ts_recv_ns=ts + 30_000, source="sim", underlying="ES",
                option_symbol=_option_symbol(exp, right, strike), exp_date=exp.isoformat(),
                strike=float(strike), right=right, price=price, size=rng.randint(1, 20),
                opt_bid=max(0.0, price - 0.25), opt_ask=price + 0.25,
                aggressor=rng.choice((1, -1, 0)), seq=seq)
