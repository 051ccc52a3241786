"""Seeded DBN files full of edge cases, for differential tests of the columnar backfill.

``write_mutated_session(dir, seed, ...)`` writes a definitions file, a trades file (futures,
options, spreads, other instruments, unknown ids) and an MBP-10 file whose records are
built field by field as raw DBN structs (so values no constructor would allow, such as a
side byte of ``X``, are possible), with every field mutated now and then: undefined,
zero, negative and oversized prices (above the Bronze bound too), sizes around the int32
limit, timestamps before 2000 / after 2100 / undefined, book levels with holes, negative
or oversized levels, snapshot flags.  The data files' headers also map two ids by symbol
only (one of them reused for another contract on the next day), so the per-day instrument
lookup is exercised.
"""
from __future__ import annotations

import datetime as dt
import os
import random

import databento_dbn as dbn
import numpy as np
import zstandard

from io_connectors.dbn import decode as D
from io_connectors.dbn.columnar import record_dtype

NS = 10**9
T0 = 1_733_149_800 * NS                 # 2024-12-02 14:30:00 UTC
UNDEF = dbn.UNDEF_PRICE
UNDEF_TS = dbn.UNDEF_TIMESTAMP
BOUND = 1_000_000 * NS                  # the default Bronze price bound, fixed point

# instrument ids
ESZ4, ESH5, NQH5, BADSYM, SPREAD, CALL, NOSTRIKE, BADUND, LONGSYM, STOCK = range(101, 111)
MAPPED, REUSED, UNKNOWN = 201, 202, 999
TRADE_IDS = [ESZ4, ESH5, NQH5, BADSYM, SPREAD, CALL, NOSTRIKE, BADUND, LONGSYM, STOCK,
             MAPPED, REUSED, UNKNOWN]
BOOK_IDS = [ESZ4, ESH5, NQH5, BADSYM, SPREAD, CALL, STOCK, MAPPED, REUSED, UNKNOWN]


def _utc(*args) -> int:
    return int(dt.datetime(*args, tzinfo=dt.timezone.utc).timestamp()) * NS


def definitions() -> list:
    common = dict(publisher_id=1, ts_event=T0 - 3600 * NS, ts_recv=T0 - 3600 * NS,
                  min_price_increment=250_000_000, display_factor=10_000_000,
                  security_update_action=dbn.SecurityUpdateAction.ADD, exchange="XCME")
    fut = dict(security_type="FUT", instrument_class=dbn.InstrumentClass.FUTURE)
    opt = dict(security_type="OOF", expiration=_utc(2024, 12, 20, 20, 30))
    return [
        dbn.InstrumentDefMsg(instrument_id=ESZ4, raw_symbol="ESZ4", asset="ES",
                             expiration=_utc(2024, 12, 20, 13, 30), **fut, **common),
        dbn.InstrumentDefMsg(instrument_id=ESH5, raw_symbol="ESH5", asset="ES",
                             expiration=_utc(2025, 3, 21, 13, 30), **fut, **common),
        dbn.InstrumentDefMsg(instrument_id=NQH5, raw_symbol="NQH5", asset="NQ", **fut, **common),
        dbn.InstrumentDefMsg(instrument_id=BADSYM, raw_symbol="ES Z4", asset="ES", **fut,
                             **common),
        dbn.InstrumentDefMsg(instrument_id=SPREAD, raw_symbol="ESZ4-ESH5", asset="ES",
                             security_type="FUT",
                             instrument_class=dbn.InstrumentClass.FUTURE_SPREAD, **common),
        dbn.InstrumentDefMsg(instrument_id=CALL, raw_symbol="ESZ4 C6050", asset="ES",
                             instrument_class=dbn.InstrumentClass.CALL, underlying="ESZ4",
                             strike_price=6050 * NS, **opt, **common),
        dbn.InstrumentDefMsg(instrument_id=NOSTRIKE, raw_symbol="ESZ4 P6000", asset="ES",
                             instrument_class=dbn.InstrumentClass.PUT, underlying="ESZ4",
                             **opt, **common),
        dbn.InstrumentDefMsg(instrument_id=BADUND, raw_symbol="XX P100", asset="",
                             instrument_class=dbn.InstrumentClass.PUT, underlying="X.Y",
                             strike_price=100 * NS, **opt, **common),
        dbn.InstrumentDefMsg(instrument_id=LONGSYM, raw_symbol="L" * 70, asset="ES",
                             instrument_class=dbn.InstrumentClass.CALL, underlying="ESZ4",
                             strike_price=6100 * NS, **opt, **common),
        dbn.InstrumentDefMsg(instrument_id=STOCK, raw_symbol="AAPL", asset="AAPL",
                             security_type="STK", instrument_class=dbn.InstrumentClass.STOCK,
                             **common),
    ]


def _mappings() -> dict:
    day = dt.date(2024, 12, 2)
    nxt = day + dt.timedelta(days=1)
    return {"ESM5": [(day, nxt + dt.timedelta(days=1), MAPPED)],
            "NQZ4": [(day, nxt, REUSED)], "NQM5": [(nxt, nxt + dt.timedelta(days=1), REUSED)]}


def _ts(rng: random.Random, i: int, n: int) -> tuple[int, int]:
    ts = T0 + (2 * 86_400 * NS * i) // n            # two UTC days, many hours
    recv = ts + rng.randint(1_000, 900_000)
    r = rng.random()
    if r < 0.01:
        ts = rng.choice([5, 946_684_800 * NS - 1, 4_102_444_800 * NS, UNDEF_TS])
    elif r < 0.02:
        recv = rng.choice([5, UNDEF_TS, 4_102_444_800 * NS])
    elif r < 0.03:
        recv = ts = rng.choice([946_684_800 * NS, 4_102_444_800 * NS - 1])
    elif r < 0.08:                   # received after the midnight the event is before
        midnight = (ts // (86_400 * NS) + 1) * 86_400 * NS
        ts, recv = midnight - rng.randint(1, 10**6), midnight + rng.randint(0, 10**6)
    return ts, recv


def _price(rng: random.Random, base: int) -> int:
    r = rng.random()
    if r < 0.03:
        return UNDEF
    if r < 0.05:
        return rng.choice([0, -base, -1, BOUND, BOUND + 1, 5 * 10**18, UNDEF - 1,
                           BOUND * 1000])
    return base


def _header(rec, rtype: int, rng: random.Random, ids: list, i: int, n: int):
    rec["length"] = rec.dtype.itemsize // 4
    rec["rtype"] = rtype
    rec["publisher_id"] = 1
    rec["instrument_id"] = rng.choice(ids)
    rec["ts_event"], rec["ts_recv"] = _ts(rng, i, n)
    rec["sequence"] = rng.randrange(2**32)


def trades_records(rng: random.Random, n: int) -> np.ndarray:
    recs = np.zeros(n, record_dtype("trades"))
    for i in range(n):
        r = recs[i:i + 1]
        _header(r, int(dbn.RType.MBP_0), rng, TRADE_IDS, i, n)
        base = rng.randint(1, 400) * 25_000_000 if r["instrument_id"][0] in (
            CALL, NOSTRIKE, BADUND, LONGSYM) else rng.randint(24_000, 24_400) * 250_000_000
        r["price"] = _price(rng, base)
        r["size"] = rng.choice([rng.randint(1, 60)] * 20 + [0, 2**31 - 1, 2**31, 2**32 - 1])
        r["action"] = b"T"
        r["side"] = rng.choice([b"B", b"A", b"N", b"B", b"A", b"X"])
        r["flags"] = 128
    return recs


def books_records(rng: random.Random, n: int) -> np.ndarray:
    recs = np.zeros(n, record_dtype("mbp-10"))
    for i in range(n):
        r = recs[i:i + 1]
        _header(r, int(dbn.RType.MBP_10), rng, BOOK_IDS, i, n)
        mid = rng.randint(24_000, 24_400)
        r["price"] = mid * 250_000_000
        r["size"] = 1
        r["action"] = b"A"
        r["side"] = b"B"
        r["flags"] = 128 | (dbn.F_SNAPSHOT if rng.random() < 0.1 else 0)
        depth_b, depth_a = rng.randint(0, 10), rng.randint(0, 10)
        for k in range(10):
            bp = (mid - k) * 250_000_000 if k < depth_b else UNDEF
            ap = (mid + 1 + k) * 250_000_000 if k < depth_a else UNDEF
            if rng.random() < 0.05:
                bp = UNDEF                                   # a hole inside the depth
            if rng.random() < 0.01:
                ap = rng.choice([-250_000_000, BOUND + 1, 0])
            if rng.random() < 0.005:
                bp = rng.choice([-1, BOUND * 2])
            r[f"bid_px_{k:02d}"] = bp
            r[f"ask_px_{k:02d}"] = ap
            r[f"bid_sz_{k:02d}"] = rng.choice([rng.randint(1, 500)] * 40 + [0, 2**31])
            r[f"ask_sz_{k:02d}"] = rng.choice([rng.randint(1, 500)] * 40 + [2**32 - 1])
            r[f"bid_ct_{k:02d}"] = r[f"ask_ct_{k:02d}"] = 1
    return recs


def _write(path: str, meta, records: np.ndarray, compress: bool) -> str:
    data = bytes(meta.encode()) + records.tobytes()
    with open(path, "wb") as fh:
        fh.write(zstandard.ZstdCompressor(level=1).compress(data) if compress else data)
    return path


def write_mutated_session(folder: str, seed: int, n_trades: int = 3000,
                          n_books: int = 1500) -> list[str]:
    """Writes ``definition.dbn``, ``trades.dbn.zst`` and ``mbp-10.dbn`` (uncompressed, so
    the plain-file block reader runs too) into ``folder``; returns their paths."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    defs = os.path.join(folder, "definition.dbn")
    D.write_dbn(defs, D.make_metadata("GLBX.MDP3", "definition", T0 - 3600 * NS), definitions())
    mappings = _mappings()
    trades = _write(os.path.join(folder, "trades.dbn.zst"),
                    D.make_metadata("GLBX.MDP3", "trades", T0, mappings=mappings),
                    trades_records(rng, n_trades), compress=True)
    books = _write(os.path.join(folder, "mbp-10.dbn"),
                   D.make_metadata("GLBX.MDP3", "mbp-10", T0, mappings=mappings),
                   books_records(rng, n_books), compress=False)
    return [defs, trades, books]
