"""``levels.signals`` snapshots -> Gold rows, one per level (pure, no Beam).

A snapshot (reference §1) is ``{ts: unix ms, spy: {spot, bid, ask}, levels: [...],
underlying?}``; ``parse_level_signals(payload, default_underlying)`` returns a
``ParsedSnapshot``: the partition value (the payload's optional ``underlying``, a plain
identifier, else ``default_underlying`` from configs/lake.yaml ``gold.underlying``), the
UTC date and hour of ``ts``, and one row tuple per level in ``LEVEL_SIGNALS`` column
order.  Anything invalid raises ``InvalidEvent`` whose message (with the level and
nested object it is about, e.g. ``levels[2].barrier: field 'added' ...``) is the
dead-letter reason.

Rules (the Bronze ones where they apply):
- ``ts``: JSON integer, unix milliseconds, 2000-01-01 <= ts < 2100-01-01 (the Bronze
  timestamp range); ``ts_event_ns = ts * 1_000_000``.
- ``spy``: object with numbers ``spot > 0``, ``bid >= 0``, ``ask >= 0``.
- ``levels``: a list of objects; an EMPTY list is a valid snapshot with no rows (its
  message is still acked once its shard is handled).
- per level: ``id``, ``kind``, ``direction``, ``signal``, ``confidence`` and the state
  labels (``barrier.state``, ``fuel.effect``, ``runway.direction``, ``runway.quality``,
  ``tape.sweep.direction``, ``runway.next_obstacle.id``) are plain identifiers
  (``[A-Za-z0-9_]``, 1-32, no path characters); ``price > 0``; counts (``barrier.added``,
  ``canceled``, ``filled``, ``delta_liq``, ``tape.buy_vol``, ``sell_vol``) JSON integers
  (``delta_liq`` may be negative, the others >= 0); every other number finite;
  ``tape.sweep.detected`` a boolean; ``barrier``, ``tape``, ``tape.sweep``, ``fuel``,
  ``runway`` objects.
- no key written twice in any object (``duplicate key 'ts' in payload``).
- nullable (null or absent): ``tape.sweep.direction``, ``fuel.call_wall``, ``put_wall``,
  ``hvl``, ``runway.next_obstacle`` (null, or ``{id, price}``), ``runway.distance``,
  ``note`` (any string, kept as sent, ``""`` included).
"""
from __future__ import annotations

from typing import NamedTuple

from transforms.json_fields import (InvalidEvent, check_unique_keys, decode_json_object,
                                    field_value, ident_field, int_field, is_plain_identifier,
                                    key_count, number_field)
from transforms.market_parse import INT64_MAX, TS_MAX_NS, TS_MIN_NS, utc_date_hour
from transforms.schemas import GOLD_DATASETS, LEVEL_SIGNALS

SUBJECT = "levels.signals"
DATASET = GOLD_DATASETS[SUBJECT].path          # "levels/signals", folder below gold/
_NS_PER_MS = 1_000_000
_TS_MIN_MS = TS_MIN_NS // _NS_PER_MS
_TS_MAX_MS = TS_MAX_NS // _NS_PER_MS - 1


class ParsedSnapshot(NamedTuple):
    partition: str        # underlying, e.g. "ES"
    date: str             # UTC date of ts, YYYY-MM-DD
    hour: int             # UTC hour of ts
    rows: list            # one tuple per level, LEVEL_SIGNALS column order; may be empty


def _object(obj: dict, key: str, optional: bool = False):
    v = field_value(obj, key, optional)
    if v is not None and type(v) is not dict:
        raise InvalidEvent(f"field '{key}' must be an object, got {type(v).__name__}")
    return v


def _within(where: str, parse, obj):
    """``parse(obj)`` with ``where`` prefixed to the reason of any InvalidEvent."""
    try:
        return parse(obj)
    except InvalidEvent as exc:
        raise InvalidEvent(f"{where}: {exc}") from None


def _note(lvl: dict):
    v = lvl.get("note")
    if v is not None and type(v) is not str:
        raise InvalidEvent(f"field 'note' must be a string or null, got {type(v).__name__}")
    return v


def _count(obj: dict, key: str, signed: bool = False) -> int:
    return int_field(obj, key, -INT64_MAX if signed else 0, INT64_MAX)


def _barrier(b: dict) -> tuple:
    return (ident_field(b, "state"), _count(b, "delta_liq", signed=True),
            number_field(b, "replenishment_ratio"), _count(b, "added"),
            _count(b, "canceled"), _count(b, "filled"))


def _sweep(s: dict) -> tuple:
    detected = s.get("detected")
    if type(detected) is not bool:
        raise InvalidEvent(f"field 'detected' must be a boolean, got {type(detected).__name__}")
    return detected, ident_field(s, "direction", optional=True), number_field(s, "notional")


def _tape(t: dict) -> tuple:
    return ((number_field(t, "imbalance"), _count(t, "buy_vol"), _count(t, "sell_vol"),
             number_field(t, "velocity"))
            + _within("sweep", _sweep, _object(t, "sweep")))


def _fuel(f: dict) -> tuple:
    return (ident_field(f, "effect"), number_field(f, "net_dealer_gamma"),
            number_field(f, "call_wall", optional=True),
            number_field(f, "put_wall", optional=True),
            number_field(f, "hvl", optional=True))


def _obstacle(o: dict) -> tuple:
    return ident_field(o, "id"), number_field(o, "price", 0.0, strict=True)


def _runway(r: dict) -> tuple:
    nxt = _object(r, "next_obstacle", optional=True)
    obstacle = (None, None) if nxt is None else _within("next_obstacle", _obstacle, nxt)
    return ((ident_field(r, "direction"),) + obstacle
            + (number_field(r, "distance", optional=True), ident_field(r, "quality")))


def _level(lvl) -> tuple:
    """One level object -> the level part of its row (everything after ``ask``)."""
    if type(lvl) is not dict:
        raise InvalidEvent(f"must be an object, got {type(lvl).__name__}")
    return ((ident_field(lvl, "id"), number_field(lvl, "price", 0.0, strict=True),
             ident_field(lvl, "kind"), ident_field(lvl, "direction"),
             number_field(lvl, "distance"), number_field(lvl, "break_score_raw"),
             number_field(lvl, "break_score_smooth"), ident_field(lvl, "signal"),
             ident_field(lvl, "confidence"))
            + _within("barrier", _barrier, _object(lvl, "barrier"))
            + _within("tape", _tape, _object(lvl, "tape"))
            + _within("fuel", _fuel, _object(lvl, "fuel"))
            + _within("runway", _runway, _object(lvl, "runway"))
            + (_note(lvl),))


def parse_level_signals(payload: bytes, default_underlying: str) -> ParsedSnapshot:
    """Validates one ``levels.signals`` payload and flattens it to one row per level.

    Raises ``InvalidEvent`` (the dead-letter reason) for anything that breaks the rules of
    the module docstring; never returns a partial snapshot.
    """
    if not is_plain_identifier(default_underlying):
        raise ValueError(f"default underlying {default_underlying!r} is not a plain identifier")
    obj = decode_json_object(payload)
    ts_ms = int_field(obj, "ts", _TS_MIN_MS, _TS_MAX_MS)
    underlying = ident_field(obj, "underlying", optional=True) or default_underlying
    spy = _object(obj, "spy")
    quote = _within("spy", lambda q: (number_field(q, "spot", 0.0, strict=True),
                                      number_field(q, "bid", 0.0),
                                      number_field(q, "ask", 0.0)), spy)
    levels = field_value(obj, "levels")
    if type(levels) is not list:
        raise InvalidEvent(f"field 'levels' must be a list, got {type(levels).__name__}")
    ts_ns = ts_ms * _NS_PER_MS
    head = (ts_ns, underlying) + quote
    rows = [head + _within(f"levels[{i}]", _level, lvl) for i, lvl in enumerate(levels)]
    check_unique_keys(payload, key_count(obj))       # as Bronze: no key written twice
    date, hour = utc_date_hour(ts_ns)
    return ParsedSnapshot(underlying, date, hour, rows)


assert len(LEVEL_SIGNALS) == 5 + 9 + 6 + 7 + 5 + 5 + 1, "row layout and schema disagree"
