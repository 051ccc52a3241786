"""Validation of decoded bus JSON, field by field, with a precise reason for anything wrong.

Pure functions, no Beam, shared by the Bronze parser (``transforms.market_parse``) and the
Gold level-signal parser (``transforms.level_signals``).  Every check returns the value
(typed) or raises ``InvalidEvent`` whose message is the reason that goes to the
dead-letter store.  A JSON ``null`` counts as missing.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{0,31}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class InvalidEvent(ValueError):
    """The message cannot become a lake row; ``str(exc)`` is the dead-letter reason."""


class FloatForInteger(InvalidEvent):
    """An integer field holds a float.  orjson reads an integer literal beyond 64 bits as a
    float, so the caller may re-read the payload with exact integers (``decode_exact``) to
    tell the two apart and give the precise reason."""


def is_plain_identifier(value: object) -> bool:
    """True for a string of 1-32 characters ``[A-Za-z0-9_]`` not starting with ``_``."""
    return type(value) is str and _IDENT.fullmatch(value) is not None


def decode_json_object(payload: bytes) -> dict:
    """UTF-8 JSON object -> dict, or InvalidEvent naming what is wrong.  (orjson keeps the
    last of a key written twice: parsers call ``check_unique_keys`` too.)"""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        if isinstance(payload, (bytes, bytearray)):
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidEvent("payload is not valid UTF-8") from None
        raise InvalidEvent(f"payload is not JSON: {exc}") from None
    if type(obj) is not dict:
        raise InvalidEvent(f"payload must be a JSON object, got {type(obj).__name__}")
    return obj


def key_count(value) -> int:
    """Keys of every object in a decoded JSON value (distinct per object)."""
    if type(value) is dict:
        n, items = len(value), value.values()
    else:
        n, items = 0, value
    for v in items:
        if type(v) is dict or type(v) is list:
            n += key_count(v)
    return n


def check_unique_keys(payload, keys: int | None = None) -> None:
    """InvalidEvent (``duplicate key 'symbol' in payload``) when some object of the payload
    has a key written twice, at any depth: JSON parsers disagree on which value wins, so
    the lake takes neither.

    ``keys``: the number of distinct keys the caller's decoded objects hold (``key_count``
    of the decoded value; a parser that knows the shape passes it cheaply), or None to
    skip the fast check.  Fast check: every key is followed by exactly one structural
    ``:``, and colons inside strings only add to ``payload.count(b":")``, so when that
    count equals ``keys`` no key was written twice.  Otherwise (a colon in a value, nested
    objects the caller did not count, or a real duplicate) the exact check decodes the
    payload with the stdlib parser, which hands over every key/value pair."""
    raw = payload
    if not isinstance(raw, (bytes, bytearray)):
        raw = raw.encode() if isinstance(raw, str) else bytes(raw)
    if keys is not None and raw.count(b":") == keys:
        return
    dup: list = []

    def pairs(items):
        seen = set()
        for k, _ in items:
            if k in seen and not dup:
                dup.append(k)
            seen.add(k)

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent(f"payload keys cannot be checked for duplicates: "
                           f"{type(exc).__name__}") from None
    if dup:
        raise InvalidEvent(f"duplicate key {dup[0]!r} in payload")


def decode_exact(payload: bytes) -> dict:
    """The payload (already accepted by ``decode_json_object``) decoded with exact
    integers of any size (stdlib ``json``): where orjson gives a float for an integer
    literal beyond 64 bits, this gives the int, so a check can name it."""
    return json.loads(payload)


def field_value(obj: dict, key: str, optional: bool = False) -> Any:
    """``obj[key]``; ``None`` when it is null or absent and ``optional``, else InvalidEvent.
    (The typed checks below inline this on purpose: they run for every field of every
    Bronze event, and the extra call cost ~15 % of the parse.)"""
    v = obj.get(key)
    if v is None and not optional:
        raise InvalidEvent(f"missing field '{key}'")
    return v


def int_field(obj: dict, key: str, lo: int, hi: int, optional: bool = False) -> Any:
    """A JSON integer (not a float, not a bool) in ``[lo, hi]``; one beyond 64 bits is
    named as such (``FloatForInteger`` when it arrives as a float, see ``decode_exact``)."""
    v = obj.get(key)
    if v is None:
        if optional:
            return None
        raise InvalidEvent(f"missing field '{key}'")
    if type(v) is not int:
        if type(v) is float:
            raise FloatForInteger(f"field '{key}' must be an integer, got float")
        raise InvalidEvent(f"field '{key}' must be an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise InvalidEvent(f"field '{key}'={v} is an integer beyond 64 bits "
                               f"(allowed [{lo}, {hi}])")
        raise InvalidEvent(f"field '{key}'={v} out of range [{lo}, {hi}]")
    return v


def number_field(obj: dict, key: str, lo: float = -math.inf, optional: bool = False,
                 strict: bool = False, hi: float = math.inf) -> Any:
    """A finite JSON number as float, ``>= lo`` (``> lo`` when ``strict``) and ``<= hi``."""
    v = obj.get(key)
    if v is None:
        if optional:
            return None
        raise InvalidEvent(f"missing field '{key}'")
    t = type(v)
    if t is not float and t is not int:
        raise InvalidEvent(f"field '{key}' must be a number, got {t.__name__}")
    v = float(v)
    if not math.isfinite(v) or v < lo or (strict and v == lo) or v > hi:
        bound = f"{'>' if strict else '>='} {lo}" + (f", <= {hi}" if hi != math.inf else "")
        raise InvalidEvent(f"field '{key}'={v} out of range ({bound})")
    return v


def string_field(obj: dict, key: str, optional: bool = False) -> Any:
    """A non-empty string of at most 64 characters."""
    v = obj.get(key)
    if v is None:
        if optional:
            return None
        raise InvalidEvent(f"missing field '{key}'")
    if type(v) is not str or not v or len(v) > 64:
        raise InvalidEvent(f"field '{key}' must be a non-empty string of at most 64 characters")
    return v


def ident_field(obj: dict, key: str, optional: bool = False) -> Any:
    """A plain identifier (``is_plain_identifier``): safe as a partition value or enum."""
    v = obj.get(key)
    if v is None:
        if optional:
            return None
        raise InvalidEvent(f"missing field '{key}'")
    if not is_plain_identifier(v):
        raise InvalidEvent(f"field '{key}'={v!r} is not a plain identifier ([A-Za-z0-9_], 1-32)")
    return v
