"""The messages this process has handed to the pipeline and not yet acked.

The NATS source records the ack tokens it emits (``emitted``); the ack step removes the
ones it acks (``acked``).  While the pipeline is stalled (a shard write being retried:
``stalled()``), the source sends in-progress acks for every message it emitted at least
``older_than_s`` ago and that is still here (``at_risk``): besides the shard being
retried, that covers the messages waiting behind it in the same stage (the rest of a
bundle, the trigger's buffer), which would otherwise pass ``ack_wait`` and be redelivered
while nothing is wrong with them.  Entries that have been here for two ``ack_wait`` with
the pipeline not stalled (acked by another process, or already redelivered) are dropped
(``forget_older_than``), so the registry stays bounded.  Per message this costs two dict
operations.
"""
from __future__ import annotations

import threading
import time

_TOKENS: dict = {}          # token -> monotonic time it was emitted
_STALLS = [0]               # shard writes being retried in this process now
_LOCK = threading.Lock()


def emitted(tokens) -> None:
    _TOKENS.update(dict.fromkeys(tokens, time.monotonic()))


def acked(tokens) -> None:
    pop = _TOKENS.pop
    for token in tokens:
        pop(token, None)


def stall_started() -> None:
    with _LOCK:
        _STALLS[0] += 1


def stall_ended() -> None:
    with _LOCK:
        _STALLS[0] -= 1


def stalled() -> bool:
    return _STALLS[0] > 0


def at_risk(older_than_s: float) -> list:
    """Tokens emitted at least ``older_than_s`` ago and not acked."""
    limit = time.monotonic() - older_than_s
    return [t for t, at in list(_TOKENS.items()) if at <= limit]


def forget_older_than(age_s: float) -> int:
    """Drops entries older than ``age_s``; returns how many."""
    limit = time.monotonic() - age_s
    old = [t for t, at in list(_TOKENS.items()) if at < limit]
    acked(old)
    return len(old)


def pending() -> int:
    return len(_TOKENS)
