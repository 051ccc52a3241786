"""Validation of decoded bus JSON, field by field, with a precise reason for anything wrong.

Pure functions, no Beam, shared by the Bronze parser (``transforms.market_parse``) and the
Gold level-signal parser (``transforms.level_signals``).  Every check returns the value
(typed) or raises ``InvalidEvent`` whose message is the reason that goes to the
dead-letter store.  A JSON ``null`` counts as missing.
"""
from __future__ import annotations

import math
import re
from typing import Any

import orjson

_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{0,31}")


class InvalidEvent(ValueError):
    """The message cannot become a lake row; ``str(exc)`` is the dead-letter reason."""


def is_plain_identifier(value: object) -> bool:
    """True for a string of 1-32 characters ``[A-Za-z0-9_]`` not starting with ``_``."""
    return type(value) is str and _IDENT.fullmatch(value) is not None


def decode_json_object(payload: bytes) -> dict:
    """UTF-8 JSON object -> dict, or InvalidEvent naming what is wrong."""
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


def field_value(obj: dict, key: str, optional: bool = False) -> Any:
    """``obj[key]``; ``None`` when it is null or absent and ``optional``, else InvalidEvent.
    (The typed checks below inline this on purpose: they run for every field of every
    Bronze event, and the extra call cost ~15 % of the parse.)"""
    v = obj.get(key)
    if v is None and not optional:
        raise InvalidEvent(f"missing field '{key}'")
    return v


def int_field(obj: dict, key: str, lo: int, hi: int, optional: bool = False) -> Any:
    """A JSON integer (not a float, not a bool) in ``[lo, hi]``."""
    v = obj.get(key)
    if v is None:
        if optional:
            return None
        raise InvalidEvent(f"missing field '{key}'")
    if type(v) is not int:
        raise InvalidEvent(f"field '{key}' must be an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise InvalidEvent(f"field '{key}'={v} out of range [{lo}, {hi}]")
    return v


def number_field(obj: dict, key: str, lo: float = -math.inf, optional: bool = False,
                 strict: bool = False) -> Any:
    """A finite JSON number as float, ``>= lo`` (``> lo`` when ``strict``)."""
    v = obj.get(key)
    if v is None:
        if optional:
            return None
        raise InvalidEvent(f"missing field '{key}'")
    t = type(v)
    if t is not float and t is not int:
        raise InvalidEvent(f"field '{key}' must be a number, got {t.__name__}")
    v = float(v)
    if not math.isfinite(v) or v < lo or (strict and v == lo):
        raise InvalidEvent(f"field '{key}'={v} out of range ({'>' if strict else '>='} {lo})")
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
