"""Bus JSON -> typed Bronze rows, with a precise reason for anything invalid.

Pure functions, no Beam: ``parse_market_event(subject, payload, rules)`` returns a
``ParsedEvent`` (dataset folder, partition value, UTC date/hour partition, row tuple in
the dataset's schema order) or raises ``InvalidEvent`` whose message is the reason that
goes to the dead-letter store.  The field checks themselves are ``transforms.json_fields``;
the limits they apply (timestamps, sizes, identifiers, price bounds per dataset) are those
of ``transforms.bronze_rules``.  Strict: a key written twice anywhere in the payload, an
integer beyond 64 bits and a price above its dataset's bound are each dead letters with
their own reason.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any, NamedTuple

from transforms.bronze_rules import (DEFAULT_RULES, INT16_MAX, INT16_MIN, INT32_MAX,
                                     INT64_MAX, SOURCES, TS_MAX_NS, TS_MIN_NS, BronzeRules)
from transforms.json_fields import (FloatForInteger, InvalidEvent, check_unique_keys,
                                    decode_exact, decode_json_object)
from transforms.json_fields import ident_field as _ident
from transforms.json_fields import int_field as _int
from transforms.json_fields import number_field as _num
from transforms.json_fields import string_field as _str
from transforms.schemas import BRONZE_DATASETS, MBP_LEVELS
_CONTRACT = re.compile(r"([A-Z]{1,5}?)[FGHJKMNQUVXZ]\d{1,2}")
_EPOCH = dt.date(1970, 1, 1)
_NS_PER_HOUR = 3_600 * 10**9
_NS_PER_DAY = 24 * _NS_PER_HOUR


class ParsedEvent(NamedTuple):
    dataset: str          # folder below bronze/, e.g. "futures/trades"
    partition: str        # symbol root ("ES") or underlying
    date: str             # UTC date of ts_event_ns, YYYY-MM-DD
    hour: int             # UTC hour of ts_event_ns
    row: tuple            # values in the dataset schema's column order


@functools.lru_cache(maxsize=4096)
def symbol_root(symbol: str) -> str:
    """Root of a futures contract code: ``ESZ4`` -> ``ES``, ``ESZ24`` -> ``ES``; a symbol
    that is not a contract code (``ES``) is its own root.  (Memoized: a feed has few
    symbols and this runs once per event.)"""
    m = _CONTRACT.fullmatch(symbol)
    return m.group(1) if m else symbol


def utc_date_hour(ts_ns: int) -> tuple[str, int]:
    """UTC (YYYY-MM-DD, hour) of a nanosecond timestamp."""
    return _utc_date_hour_of(ts_ns // _NS_PER_HOUR)


@functools.lru_cache(maxsize=4096)
def _utc_date_hour_of(hours: int) -> tuple[str, int]:
    """(YYYY-MM-DD, hour) of the hour ``hours`` since the epoch (memoized per hour)."""
    days, hour = divmod(hours, 24)
    return (_EPOCH + dt.timedelta(days=days)).isoformat(), hour


def _common(obj: dict) -> tuple[int, int, str]:
    ts_event = _int(obj, "ts_event_ns", TS_MIN_NS, TS_MAX_NS - 1)
    ts_recv = _int(obj, "ts_recv_ns", TS_MIN_NS, TS_MAX_NS - 1)
    source = obj.get("source")
    if source not in SOURCES:
        raise InvalidEvent(f"field 'source'={source!r} is not one of {sorted(SOURCES)}")
    return ts_event, ts_recv, source


def _aggressor(obj: dict) -> int:
    v = obj.get("aggressor")
    if type(v) is not int or v not in (-1, 0, 1):
        raise InvalidEvent(f"field 'aggressor'={v!r} must be 1, -1 or 0")
    return v


def _conditions(obj: dict) -> Any:
    v = obj.get("conditions")
    if v is None:
        return None
    if type(v) is not list or any(type(c) is not int or not INT16_MIN <= c <= INT16_MAX
                                  for c in v):
        raise InvalidEvent("field 'conditions' must be a list of 16-bit integers")
    return v


def _futures_trade(obj: dict, rules: BronzeRules) -> tuple[str, int, tuple]:
    ts_event, ts_recv, source = _common(obj)
    symbol = _ident(obj, "symbol")
    row = (ts_event, ts_recv, source, symbol,
           _num(obj, "price", 0.0, strict=True, hi=rules.max_price["futures/trades"]),
           _int(obj, "size", 1, INT32_MAX),
           _aggressor(obj),
           _str(obj, "exchange", optional=True),
           _conditions(obj),
           _int(obj, "seq", -INT64_MAX, INT64_MAX, optional=True))
    return symbol_root(symbol), ts_event, row


def _mbp10(obj: dict, rules: BronzeRules) -> tuple[str, int, tuple]:
    ts_event, ts_recv, source = _common(obj)
    hi = rules.max_price["futures/mbp10"]
    symbol = _ident(obj, "symbol")
    levels = obj.get("levels")
    if type(levels) is not list:
        raise InvalidEvent("field 'levels' must be a list")
    if len(levels) > MBP_LEVELS:
        raise InvalidEvent(f"field 'levels' has {len(levels)} entries, at most {MBP_LEVELS}")
    bids: list = []
    asks: list = []
    for i, lvl in enumerate(levels):
        if type(lvl) is not dict:
            raise InvalidEvent(f"levels[{i}] must be an object")
        try:
            bids += (_num(lvl, "bid_px", 0.0, hi=hi), _int(lvl, "bid_sz", 0, INT32_MAX))
            asks += (_num(lvl, "ask_px", 0.0, hi=hi), _int(lvl, "ask_sz", 0, INT32_MAX))
        except InvalidEvent as exc:
            raise type(exc)(f"levels[{i}]: {exc}") from None   # FloatForInteger stays one
    missing = (0.0, 0) * (MBP_LEVELS - len(levels))
    snap = obj.get("is_snapshot")
    if type(snap) is not bool:
        raise InvalidEvent(f"field 'is_snapshot' must be a boolean, got {type(snap).__name__}")
    row = ((ts_event, ts_recv, source, symbol) + tuple(bids) + missing + tuple(asks) + missing
           + (snap, _int(obj, "seq", -INT64_MAX, INT64_MAX, optional=True)))
    return symbol_root(symbol), ts_event, row


def _exp_date_days(obj: dict) -> int:
    v = obj.get("exp_date")
    if type(v) is not str:
        raise InvalidEvent("field 'exp_date' must be an ISO date string")
    try:
        return (dt.date.fromisoformat(v) - _EPOCH).days
    except ValueError:
        raise InvalidEvent(f"field 'exp_date'={v!r} is not an ISO date") from None


def _option_trade(obj: dict, rules: BronzeRules) -> tuple[str, int, tuple]:
    ts_event, ts_recv, source = _common(obj)
    hi = rules.max_price["options/trades"]
    underlying = _ident(obj, "underlying")
    right = obj.get("right")
    if right not in ("C", "P"):
        raise InvalidEvent(f"field 'right'={right!r} must be 'C' or 'P'")
    row = (ts_event, ts_recv, source, underlying,
           _str(obj, "option_symbol"),
           _exp_date_days(obj),
           _num(obj, "strike", 0.0, strict=True, hi=hi),
           right,
           _num(obj, "price", 0.0, hi=hi),
           _int(obj, "size", 1, INT32_MAX),
           _num(obj, "opt_bid", 0.0, optional=True, hi=hi),
           _num(obj, "opt_ask", 0.0, optional=True, hi=hi),
           _aggressor(obj),
           _conditions(obj),
           _int(obj, "seq", -INT64_MAX, INT64_MAX, optional=True))
    return underlying, ts_event, row


_BOOK = "market.futures.mbp10"
_PARSERS = {
    "market.futures.trades": _futures_trade,
    "market.futures.mbp10": _mbp10,
    "market.options.trades": _option_trade,
}
assert set(_PARSERS) == set(BRONZE_DATASETS)


def parse_market_event(subject: str, payload: bytes,
                       rules: BronzeRules = DEFAULT_RULES) -> ParsedEvent:
    """Validates one bus message against ``rules`` and returns its Bronze row and
    partition, or raises ``InvalidEvent`` with the reason."""
    parser = _PARSERS.get(subject)
    if parser is None:
        raise InvalidEvent(f"unknown subject {subject!r}")
    obj = decode_json_object(payload)
    try:
        partition, ts_event, row = parser(obj, rules)
    except FloatForInteger:
        check_unique_keys(payload)
        # Maybe an integer literal beyond 64 bits (orjson reads it as a float): check the
        # exact integers, which raises the precise reason; a real float raises the same.
        parser(decode_exact(payload), rules)
        raise
    except InvalidEvent:
        check_unique_keys(payload)           # a key written twice is the reason, if any
        raise
    # The keys the parser saw (a book's levels are a list of objects by now); the fast
    # check of check_unique_keys inlined: it runs for every event.
    n = len(obj) + sum(map(len, obj["levels"])) if subject == _BOOK else len(obj)
    if type(payload) is not bytes or payload.count(b":") != n:
        check_unique_keys(payload, n)
    date, hour = utc_date_hour(ts_event)
    return ParsedEvent(BRONZE_DATASETS[subject].path, partition, date, hour, row)
