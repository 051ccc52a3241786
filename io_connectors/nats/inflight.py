"""The messages this process has handed to the pipeline and not yet acked.

The NATS source records the ack tokens it emits (``emitted``); the ack step removes the
ones it acks (``acked``).  While the pipeline is stalled (a shard write being retried:
``stalled()``), the source sends in-progress acks for every token still here
(``unacked``): besides the shard being retried, that covers the messages waiting behind it
(the rest of a blocked bundle, the trigger's buffer), which would otherwise pass
``ack_wait`` and be redelivered while nothing is wrong with them.

Entries are kept in two generations; ``rotate()`` (called by the source every two
``ack_wait`` while the pipeline is not stalled) drops the older one, so tokens acked by
another process, or already redelivered, do not accumulate.  Both operations on the hot
path are single set operations in C (measured ~0.1 µs per message for both together).
"""
from __future__ import annotations

import threading

_GENERATIONS = [set(), set()]       # [current, previous]
_STALLS = [0]                       # shard writes being retried in this process now
_LOCK = threading.Lock()


def emitted(tokens) -> None:
    _GENERATIONS[0].update(tokens)


def acked(tokens) -> None:
    current, previous = _GENERATIONS
    current.difference_update(tokens)
    if previous:
        previous.difference_update(tokens)


def unacked() -> list:
    """Every token emitted and not acked (of the two generations kept)."""
    current, previous = _GENERATIONS
    return list(current) + list(previous)


def rotate() -> None:
    """Drops the older generation and starts a new one."""
    _GENERATIONS[:] = [set(), _GENERATIONS[0]]


def stall_started() -> None:
    with _LOCK:
        _STALLS[0] += 1


def stall_ended() -> None:
    with _LOCK:
        _STALLS[0] -= 1


def stalled() -> bool:
    return _STALLS[0] > 0
