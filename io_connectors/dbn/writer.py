"""Bus events -> Databento DBN files (the inverse of ``io_connectors.dbn.decode``).

``write_session_dbn(events, out_dir, dataset='GLBX.MDP3')`` consumes ``(subject, event)``
pairs in the bus contract (``../shared/reference/original-system.md`` section 1) and writes
three zstd DBN files into ``out_dir``, laid out like a Databento GLBX.MDP3 download:

* ``trades.dbn.zst`` (schema ``trades``): one ``TradeMsg`` per ``market.futures.trades``
  *and* ``market.options.trades`` event, in input order.
* ``mbp-10.dbn.zst`` (schema ``mbp-10``): one ``MBP10Msg`` per ``market.futures.mbp10``.
* ``definition.dbn.zst`` (schema ``definition``): one ``InstrumentDefMsg`` per contract seen
  (futures: class ``F``, ``asset`` root, ``exchange``, third-Friday expiration; options:
  class ``C``/``P``, ``strike_price``, ``expiration`` on ``exp_date`` 16:00 America/New_York,
  ``underlying``), so ``dbn_files.load_instruments`` recovers underlying, strike, right and
  expiry.

Every other subject (``levels.*``, ...) is ignored and counted.  Data file headers carry the
dataset, schema, ``start``/``end`` and raw_symbol -> instrument_id mappings (so a futures-only
file decodes even without the definition file, as a real download does).

Encoding: prices x 1e9 as int64 (each distinct float is checked to come back exactly from
``/ 1e9``); ``aggressor`` 1 -> side ``B``, -1 -> ``A``, 0 -> ``N``; ``seq`` -> ``sequence``;
``ts_event_ns``/``ts_recv_ns`` -> ``ts_event``/``ts_recv``; trades are action ``T``, flags
``F_LAST``; books are action ``N`` (a book state, not an order event), flags ``F_LAST`` |
``F_SNAPSHOT`` when ``is_snapshot``.  Book levels: a side given as px 0.0 / sz 0 is written as
an undefined side (``UNDEF_PRICE``, size 0), the DBN "no level" value, except that when the
event's deepest level is empty on both sides its bid is written as a defined price 0 so
the decoder keeps the level count; levels past the event's list are undefined.  With that
rule ``dbn_files._book_event`` returns exactly the input ``levels``.

Instrument ids are deterministic and stable across sessions: 31-bit BLAKE2b of
``kind:raw_symbol`` (linear probing on the unlikely collision), so files of several days
can be decoded together with one ``load_instruments``.

Round trip.  ``dbn_files.merge_events([dbn_files.iter_events([f], instruments) for f in
(trades, mbp-10)])`` yields the input's market events, in the input order when the input was
in bus order ``(ts_event, futures trades < option trades < book)``, equal field by field
except for what DBN cannot carry (``LOSSY_FIELDS``):

* ``source``: not in DBN; the decoder sets its own ``source`` argument (default
  ``'replay'``; pass ``source='sim'`` to get synthetic events back unchanged).
* ``opt_bid`` / ``opt_ask`` of option trades: not in the ``trades`` schema.
* ``conditions``: no DBN field.
* ``exchange`` of option trades: the decoder never emits it.  ``exchange`` of futures trades
  *is* carried, per instrument, by the definition's ``exchange`` (<= 4 chars): it round-trips
  when it is the same on every trade of a contract (events whose exchange differs from the
  contract's first one are counted in ``lossy['exchange']``).
* ``seq`` missing: written as ``sequence`` 0 and decoded as ``seq`` 0 (``sequence`` is
  uint32: a ``seq`` outside ``[0, 2**32)`` is not written at all).
* ``option_terms``: an option contract's underlying / exp_date / strike / right come from its
  first trade (one definition per contract); later trades that state other terms decode
  with the first ones.
* any other key not in the contract.

Each written event that loses something is counted per field in ``DbnWriteResult.lossy``.
Events that DBN cannot represent, or that ``dbn_files.iter_events`` would drop (the bus
contract's own rules: missing/invalid field, timestamp outside 2000..2100, trade size < 1,
futures price <= 0, negative option or book price, symbol / underlying not an identifier,
price not exact in 1e-9 fixed point, seq outside uint32, more than 10 levels, ...) are not
written and are counted in ``DbnWriteResult.skipped`` by reason, so every written event
decodes back.

Memory stays bounded: records are encoded as they arrive and spooled (uncompressed, in
~1 MB writes) to ``<name>.body.tmp`` in ``out_dir``; at the end each file is written as
``header + body`` through zstd to ``<name>.tmp`` and renamed into place.  Only the per-contract
table (a few hundred entries a day) and a price-conversion cache are kept.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import re
from collections import Counter
from typing import Any, Iterable, Optional
from zoneinfo import ZoneInfo

import databento_dbn as dbn

from io_connectors.dbn.decode import make_metadata, write_dbn
from transforms.market_parse import symbol_root

__all__ = ["write_session_dbn", "DbnSessionWriter", "DbnWriteResult", "LOSSY_FIELDS",
           "TRADES_FILE", "MBP10_FILE", "DEFINITION_FILE", "instrument_id_for"]

SUBJECT_FUTURES_TRADES = "market.futures.trades"
SUBJECT_FUTURES_MBP10 = "market.futures.mbp10"
SUBJECT_OPTIONS_TRADES = "market.options.trades"
TRADES_FILE = "trades.dbn.zst"
MBP10_FILE = "mbp-10.dbn.zst"
DEFINITION_FILE = "definition.dbn.zst"

#: Fields of the bus contract that a DBN round trip does not reproduce (see module doc).
LOSSY_FIELDS = {
    SUBJECT_FUTURES_TRADES: ("source", "conditions"),
    SUBJECT_OPTIONS_TRADES: ("source", "conditions", "opt_bid", "opt_ask", "exchange"),
    SUBJECT_FUTURES_MBP10: ("source",),
}
_CARRIED = {
    SUBJECT_FUTURES_TRADES: frozenset({"ts_event_ns", "ts_recv_ns", "source", "symbol", "price",
                                       "size", "aggressor", "exchange", "seq"}),
    SUBJECT_OPTIONS_TRADES: frozenset({"ts_event_ns", "ts_recv_ns", "source", "underlying",
                                       "option_symbol", "exp_date", "strike", "right", "price",
                                       "size", "aggressor", "seq"}),
    SUBJECT_FUTURES_MBP10: frozenset({"ts_event_ns", "ts_recv_ns", "source", "symbol", "levels",
                                      "is_snapshot", "seq"}),
}

UNDEF_PRICE = dbn.UNDEF_PRICE
UNDEF_TIMESTAMP = dbn.UNDEF_TIMESTAMP
PRICE_SCALE = dbn.FIXED_PRICE_SCALE                    # 1e9 (int)
_SCALE_F = float(PRICE_SCALE)                          # the decoder divides by this
INT64_MAX = 2**63 - 1
UINT32_MAX = 2**32 - 1
_PUBLISHER_IDS = {"GLBX.MDP3": 1, "XNAS.ITCH": 2, "XBOS.ITCH": 3, "XPSX.ITCH": 4,
                  "BATS.PITCH": 5, "OPRA.PILLAR": 30}
_SIDE = {1: dbn.Side.BID, -1: dbn.Side.ASK, 0: dbn.Side.NONE}
_MONTHS = {c: i + 1 for i, c in enumerate("FGHJKMNQUVXZ")}
_FUTURE_SYM = re.compile(r"([A-Z][A-Z0-9]{0,4}?)([FGHJKMNQUVXZ])(\d{1,2})")
_TICKS = {"ES": 250_000_000, "MES": 250_000_000}      # futures min price increment (1e-9)
_OPT_TICKS = {"ES": 50_000_000}
_ET = ZoneInfo("America/New_York")
_EPOCH = dt.date(1970, 1, 1)
_NS_PER_DAY = 86_400 * 10**9
TS_MIN_NS = 946_684_800 * 10**9                      # bus contract: [2000, 2100)
TS_MAX_NS = 4_102_444_800 * 10**9
INT32_MAX = 2**31 - 1
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{0,31}")   # as transforms.market_parse
_SPOOL_BYTES = 1 << 20
_PX_CACHE_MAX = 1 << 16


class _Skip(Exception):
    """An event DBN cannot represent; ``str(exc)`` is the reason."""


# --------------------------------------------------------------------------- result

@dataclasses.dataclass
class DbnWriteResult:
    """What ``write_session_dbn`` wrote.  ``paths``: files written (trades, mbp-10,
    definition).  ``counts``: records per file name.  ``events``: input events written per
    subject.  ``ignored``: non-market events per subject (``levels.signals``, ...).
    ``skipped``: market events not written, by reason.  ``lossy``: written events per field
    the round trip does not reproduce (``LOSSY_FIELDS`` and the like).  ``instruments``:
    ``{raw_symbol: instrument_id}``.  ``bytes``: file sizes by name."""
    paths: list = dataclasses.field(default_factory=list)
    counts: dict = dataclasses.field(default_factory=dict)
    events: Counter = dataclasses.field(default_factory=Counter)
    ignored: Counter = dataclasses.field(default_factory=Counter)
    skipped: Counter = dataclasses.field(default_factory=Counter)
    lossy: Counter = dataclasses.field(default_factory=Counter)
    instruments: dict = dataclasses.field(default_factory=dict)
    bytes: dict = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"paths": list(self.paths), "counts": dict(self.counts),
                "events": dict(self.events), "ignored": dict(self.ignored),
                "skipped": dict(self.skipped), "lossy": dict(self.lossy),
                "instruments": len(self.instruments), "bytes": dict(self.bytes)}


# --------------------------------------------------------------------------- helpers

def instrument_id_for(kind: str, raw_symbol: str) -> int:
    """Stable id of a contract: 31-bit BLAKE2b of ``kind:raw_symbol``, never 0."""
    h = hashlib.blake2b(f"{kind}:{raw_symbol}".encode(), digest_size=4).digest()
    return (int.from_bytes(h, "big") & 0x7FFFFFFF) or 1


def _utc_date(ts_ns: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=ts_ns // _NS_PER_DAY)


def _third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(4 - first.weekday()) % 7 + 14)


def _future_expiration(symbol: str, near: dt.date) -> int:
    """CME equity-index convention: third Friday of the contract month, 09:30 ET; the year
    digit(s) resolved to the nearest year not before ``near`` - 1.  UNDEF when the symbol is
    not a ``ROOT<month><year>`` code."""
    m = _FUTURE_SYM.fullmatch(symbol)
    if not m:
        return UNDEF_TIMESTAMP
    month, digits = _MONTHS[m.group(2)], m.group(3)
    mod = 10 ** len(digits)
    base = near.year - 1
    year = base + ((int(digits) - base) % mod)
    day = _third_friday(year, month)
    return int(dt.datetime(day.year, day.month, day.day, 9, 30, tzinfo=_ET).timestamp()) * 10**9


def _option_expiration(exp_date: str) -> int:
    day = dt.date.fromisoformat(exp_date)
    return int(dt.datetime(day.year, day.month, day.day, 16, 0, tzinfo=_ET).timestamp()) * 10**9


def _uint(v: Any, name: str, hi: int, lo: int = 0) -> int:
    if type(v) is not int:
        raise _Skip(f"bad_{name}")
    if not lo <= v <= hi:
        raise _Skip(f"{name}_out_of_range")
    return v


@dataclasses.dataclass
class _Contract:
    instrument_id: int
    kind: str                       # 'future' | 'option'
    raw_symbol: str
    exchange: Optional[str] = None  # futures: the first trade's exchange (None: not stated)
    exchange_set: bool = False
    terms: Optional[tuple] = None   # options: (underlying, exp_date, strike, right)


class _Spool:
    """One output file: records' bytes spooled to ``<path>.body.tmp``, then written as a
    zstd DBN file (header + body) by ``finish``."""

    def __init__(self, path: str, schema: str):
        self.path, self.schema = path, schema
        self.body_path = path + ".body.tmp"
        self.fh = open(self.body_path, "wb")
        self.buf = bytearray()
        self.n = 0
        self.symbols: dict[str, int] = {}
        self.start: Optional[int] = None
        self.end: Optional[int] = None

    def add(self, rec: Any, raw_symbol: str, iid: int, ts_lo: int, ts_hi: int) -> None:
        self.buf += bytes(rec)
        self.n += 1
        if raw_symbol not in self.symbols:
            self.symbols[raw_symbol] = iid
        if self.start is None or ts_lo < self.start:
            self.start = ts_lo
        if self.end is None or ts_hi > self.end:
            self.end = ts_hi
        if len(self.buf) >= _SPOOL_BYTES:
            self.fh.write(self.buf)
            self.buf.clear()

    def finish(self, dataset: str, default_start: int) -> int:
        import zstandard
        self.fh.write(self.buf)
        self.buf.clear()
        self.fh.close()
        start = self.start if self.start is not None else default_start
        end = (self.end + 1) if self.end is not None else None
        d0 = _utc_date(start)
        d1 = _utc_date(self.end if self.end is not None else start) + dt.timedelta(days=1)
        meta = make_metadata(dataset, self.schema, start, end=end,
                             symbols=sorted(self.symbols),
                             mappings={s: [(d0, d1, i)] for s, i in sorted(self.symbols.items())})
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "wb") as out_fh, open(self.body_path, "rb") as body:
                z = zstandard.ZstdCompressor(level=3).stream_writer(out_fh, closefd=False)
                z.write(meta.encode())
                while True:
                    chunk = body.read(_SPOOL_BYTES)
                    if not chunk:
                        break
                    z.write(chunk)
                z.close()
            os.replace(tmp, self.path)
        finally:
            for p in (tmp, self.body_path):
                if os.path.exists(p):
                    os.remove(p)
        return os.path.getsize(self.path)

    def abort(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        for p in (self.body_path, self.path + ".tmp"):
            if os.path.exists(p):
                os.remove(p)


# --------------------------------------------------------------------------- writer

class DbnSessionWriter:
    """Incremental writer: ``add(subject, event)`` for each event, then ``close()`` ->
    ``DbnWriteResult``.  Usable as a context manager (an exception removes the temp files)."""

    def __init__(self, out_dir: str, dataset: str = "GLBX.MDP3"):
        self.out_dir = os.fspath(out_dir)
        os.makedirs(self.out_dir, exist_ok=True)
        self.dataset = dataset
        self.publisher_id = _PUBLISHER_IDS.get(dataset, 0)
        self.result = DbnWriteResult()
        self.trades = _Spool(os.path.join(self.out_dir, TRADES_FILE), "trades")
        self.books = _Spool(os.path.join(self.out_dir, MBP10_FILE), "mbp-10")
        self.contracts: dict[tuple[str, str], _Contract] = {}
        self.ids: set[int] = set()
        self.first_ts: Optional[int] = None
        self._px: dict[float, int] = {}
        self._closed = False

    # -- context manager
    def __enter__(self) -> "DbnSessionWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            if not self._closed:
                self.close()
        else:
            self.trades.abort()
            self.books.abort()
            self._closed = True

    # -- conversions
    def _price(self, v: Any, name: str) -> int:
        """Float price -> 1e-9 fixed point, only if it converts back exactly."""
        try:
            return self._px[v]
        except (KeyError, TypeError):
            pass
        if type(v) not in (float, int) or v != v or v in (float("inf"), float("-inf")):
            raise _Skip(f"bad_{name}")
        fixed = round(v * PRICE_SCALE)
        if not -INT64_MAX <= fixed < INT64_MAX:      # INT64_MAX is UNDEF_PRICE
            raise _Skip(f"{name}_out_of_range")
        if fixed / _SCALE_F != v:
            raise _Skip(f"{name}_not_fixed_point")
        if len(self._px) >= _PX_CACHE_MAX:
            self._px.clear()
        self._px[v] = fixed
        return fixed

    def _contract(self, kind: str, raw_symbol: Any) -> _Contract:
        key = (kind, raw_symbol)
        c = self.contracts.get(key)
        if c is not None:
            return c
        if type(raw_symbol) is not str or not raw_symbol or len(raw_symbol) > 70:
            raise _Skip("bad_symbol")
        other = ("option" if kind == "future" else "future", raw_symbol)
        if other in self.contracts:
            raise _Skip("symbol_is_future_and_option")
        iid = instrument_id_for(kind, raw_symbol)
        while iid in self.ids:
            iid = iid % 0x7FFFFFFF + 1
        self.ids.add(iid)
        c = self.contracts[key] = _Contract(iid, kind, raw_symbol)
        self.result.instruments[raw_symbol] = iid
        return c

    def _lossy(self, subject: str, event: dict) -> list:
        lost = [k for k in event if k not in _CARRIED[subject]]
        if "seq" not in event:
            lost.append("seq")
        return lost

    # -- events
    def add(self, subject: str, event: dict) -> None:
        if subject == SUBJECT_FUTURES_TRADES:
            fn = self._futures_trade
        elif subject == SUBJECT_OPTIONS_TRADES:
            fn = self._option_trade
        elif subject == SUBJECT_FUTURES_MBP10:
            fn = self._book
        else:
            self.result.ignored[subject] += 1
            return
        try:
            ts_event = _uint(event["ts_event_ns"], "ts_event_ns", TS_MAX_NS - 1, TS_MIN_NS)
            ts_recv = _uint(event["ts_recv_ns"], "ts_recv_ns", TS_MAX_NS - 1, TS_MIN_NS)
            seq = _uint(event.get("seq", 0), "seq", UINT32_MAX)
            lost = fn(event, ts_event, ts_recv, seq)
        except KeyError as exc:
            self.result.skipped[f"missing_{exc.args[0]}"] += 1
            return
        except _Skip as exc:
            self.result.skipped[str(exc)] += 1
            return
        if self.first_ts is None or ts_event < self.first_ts:
            self.first_ts = ts_event
        self.result.events[subject] += 1
        for k in lost:
            self.result.lossy[k] += 1
        for k in self._lossy(subject, event):
            self.result.lossy[k] += 1

    def _add_trade(self, c, ts_event: int, ts_recv: int, seq: int, price: int, size: int,
                   side) -> None:
        rec = dbn.TradeMsg(self.publisher_id, c.instrument_id, ts_event, price, size,
                           dbn.Action.TRADE, side, 0, ts_recv, flags=dbn.F_LAST, sequence=seq)
        self.trades.add(rec, c.raw_symbol, c.instrument_id, ts_event, ts_recv)

    def _trade_fields(self, event: dict) -> tuple[int, int, Any]:
        size = _uint(event["size"], "size", INT32_MAX, 1)
        side = _SIDE.get(event["aggressor"]) if type(event["aggressor"]) is int else None
        if side is None:
            raise _Skip("bad_aggressor")
        return self._price(event["price"], "price"), size, side

    def _futures_trade(self, event: dict, ts_event: int, ts_recv: int, seq: int) -> list:
        price, size, side = self._trade_fields(event)
        if price <= 0:
            raise _Skip("nonpositive_price")
        if type(event["symbol"]) is not str or not _IDENT.fullmatch(event["symbol"]):
            raise _Skip("symbol_not_identifier")
        c = self._contract("future", event["symbol"])
        lost = []
        exch = event.get("exchange")
        if not c.exchange_set:          # the contract's exchange: its first trade's
            fits = exch is None or (type(exch) is str and 0 < len(exch) <= 4)
            c.exchange, c.exchange_set = (exch if fits else None), True
        if exch != c.exchange:
            lost.append("exchange")
        self._add_trade(c, ts_event, ts_recv, seq, price, size, side)
        return lost

    def _option_trade(self, event: dict, ts_event: int, ts_recv: int, seq: int) -> list:
        price, size, side = self._trade_fields(event)
        if price < 0:
            raise _Skip("negative_price")
        und, exp, right = event["underlying"], event["exp_date"], event["right"]
        strike = event["strike"]
        c_new = ("option", event["option_symbol"]) not in self.contracts
        if c_new:
            if right not in ("C", "P"):
                raise _Skip("bad_right")
            if type(und) is not str or not _IDENT.fullmatch(und) or len(und) > 20:
                raise _Skip("bad_underlying")
            if symbol_root(und) != und and len(und) > 10:
                raise _Skip("bad_underlying")
            if type(exp) is not str:
                raise _Skip("bad_exp_date")
            try:
                _option_expiration(exp)
            except ValueError:
                raise _Skip("bad_exp_date") from None
            if self._price(strike, "strike") <= 0:
                raise _Skip("bad_strike")
        c = self._contract("option", event["option_symbol"])
        terms = (und, exp, strike, right)
        lost = []
        if c_new:
            c.terms = terms
        elif terms != c.terms:
            lost.append("option_terms")
        self._add_trade(c, ts_event, ts_recv, seq, price, size, side)
        return lost

    def _book(self, event: dict, ts_event: int, ts_recv: int, seq: int) -> list:
        levels = event["levels"]
        if type(levels) is not list:
            raise _Skip("bad_levels")
        if len(levels) > 10:
            raise _Skip("more_than_10_levels")
        snap = event["is_snapshot"]
        if type(snap) is not bool:
            raise _Skip("bad_is_snapshot")
        pairs = []
        last = len(levels) - 1
        for i, lv in enumerate(levels):
            try:
                bp, bs, ap, asz = lv["bid_px"], lv["bid_sz"], lv["ask_px"], lv["ask_sz"]
            except (KeyError, TypeError):
                raise _Skip("bad_level") from None
            bs = _uint(bs, "level_size", INT32_MAX)
            asz = _uint(asz, "level_size", INT32_MAX)
            bid_empty = bs == 0 and bp == 0
            ask_empty = asz == 0 and ap == 0
            bpx = UNDEF_PRICE if bid_empty and not (i == last and ask_empty) \
                else self._price(bp, "level_price")
            apx = UNDEF_PRICE if ask_empty else self._price(ap, "level_price")
            if bpx < 0 or apx < 0:
                raise _Skip("negative_level_price")
            pairs.append(dbn.BidAskPair(bid_px=bpx, ask_px=apx, bid_sz=bs, ask_sz=asz))
        for _ in range(10 - len(pairs)):
            pairs.append(dbn.BidAskPair(bid_px=UNDEF_PRICE, ask_px=UNDEF_PRICE, bid_sz=0, ask_sz=0))
        if type(event["symbol"]) is not str or not _IDENT.fullmatch(event["symbol"]):
            raise _Skip("symbol_not_identifier")
        c = self._contract("future", event["symbol"])
        flags = dbn.F_LAST | (dbn.F_SNAPSHOT if snap else 0)
        rec = dbn.MBP10Msg(self.publisher_id, c.instrument_id, ts_event, UNDEF_PRICE, 0,
                           dbn.Action.NONE, dbn.Side.NONE, 0, ts_recv, flags=flags,
                           sequence=seq, levels=pairs)
        self.books.add(rec, c.raw_symbol, c.instrument_id, ts_event, ts_recv)
        return []

    # -- definitions / close
    def _definitions(self, ts: int) -> list:
        near = _utc_date(ts)
        recs = []
        for (kind, sym), c in sorted(self.contracts.items(), key=lambda kv: (kv[0][0] != "future",
                                                                            kv[0][1])):
            common = dict(publisher_id=self.publisher_id, instrument_id=c.instrument_id,
                          ts_event=ts, ts_recv=ts, display_factor=PRICE_SCALE,
                          raw_symbol=sym, currency="USD",
                          security_update_action=dbn.SecurityUpdateAction.ADD)
            if kind == "future":
                root = symbol_root(sym)
                recs.append(dbn.InstrumentDefMsg(
                    min_price_increment=_TICKS.get(root, UNDEF_PRICE), asset=root[:10],
                    security_type="FUT", instrument_class=dbn.InstrumentClass.FUTURE,
                    expiration=_future_expiration(sym, near), exchange=c.exchange or "",
                    **common))
            else:
                und, exp, strike, right = c.terms
                root = symbol_root(und)
                recs.append(dbn.InstrumentDefMsg(
                    min_price_increment=_OPT_TICKS.get(root, UNDEF_PRICE),
                    asset=und if len(und) <= 10 else "",     # decoder: used if no underlying
                    security_type="OOF" if self.dataset == "GLBX.MDP3" else "OPT",
                    instrument_class=(dbn.InstrumentClass.CALL if right == "C"
                                      else dbn.InstrumentClass.PUT),
                    strike_price=self._price(strike, "strike"),
                    expiration=_option_expiration(exp),
                    underlying=und if root == und else "",   # decoder: symbol_root(underlying)
                    **common))
        return recs

    def close(self) -> DbnWriteResult:
        """Writes the three files (headers, bodies, definitions) and returns the result."""
        if self._closed:
            return self.result
        self._closed = True
        r = self.result
        start = self.first_ts if self.first_ts is not None else 0
        try:
            for spool in (self.trades, self.books):
                size = spool.finish(self.dataset, start)
                name = os.path.basename(spool.path)
                r.paths.append(spool.path)
                r.counts[name] = spool.n
                r.bytes[name] = size
            defs = self._definitions(start)
            sym_ids = {c.raw_symbol: c.instrument_id for c in self.contracts.values()}
            d0 = _utc_date(start)
            meta = make_metadata(self.dataset, "definition", start, end=start + 1,
                                 symbols=sorted(sym_ids),
                                 mappings={s: [(d0, d0 + dt.timedelta(days=1), i)]
                                           for s, i in sorted(sym_ids.items())})
            path = os.path.join(self.out_dir, DEFINITION_FILE)
            write_dbn(path + ".tmp", meta, defs, compress=True)
            os.replace(path + ".tmp", path)
            r.paths.append(path)
            r.counts[DEFINITION_FILE] = len(defs)
            r.bytes[DEFINITION_FILE] = os.path.getsize(path)
        except BaseException:
            self.trades.abort()
            self.books.abort()
            raise
        return r


def write_session_dbn(events: Iterable[tuple[str, dict]], out_dir: str,
                      dataset: str = "GLBX.MDP3") -> DbnWriteResult:
    """Writes ``(subject, event)`` bus events as ``trades.dbn.zst``, ``mbp-10.dbn.zst`` and
    ``definition.dbn.zst`` in ``out_dir`` (created if needed; existing files of those names
    are replaced).  Streams: memory does not grow with the number of events.  Returns a
    ``DbnWriteResult`` (``.paths`` the three files, ``.counts`` records per file, ...)."""
    with DbnSessionWriter(out_dir, dataset) as w:
        for subject, event in events:
            w.add(subject, event)
        return w.close()
