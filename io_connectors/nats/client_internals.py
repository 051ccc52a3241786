"""The nats-py internals that the lake's fast paths rely on, in one place.

nats-py (pinned in requirements.txt) has no public API for two things the Bronze drain
needs to be fast, so two modules reach into its ``Client``:

- ``ack.py`` writes a shard's acks (or in-progress acks) as one buffer of ``PUB``
  commands: ``Client._send_command(cmd: bytes, priority=False)``, a coroutine that queues
  raw protocol bytes for the writer task (``send_raw`` here);
- ``fast_delivery.py`` takes one subscription's messages straight from the protocol
  handler: ``Client._process_msg(sid, subject, reply, data, headers)``, the coroutine the
  parser calls per ``MSG``/``HMSG``, plus ``Client._subs`` (sid -> Subscription),
  ``Client.stats`` (``in_msgs``/``in_bytes`` counters) and ``Subscription._id`` (its sid)
  (``install_message_hook`` here).

``problems(nc, sub)`` lists what does not look as expected on a live client (empty: all
is as pinned); both users fall back to nats-py's public API when it is not empty, and
tests/test_nats_client_internals.py fails loudly when a nats-py upgrade changes any of
it.
"""
from __future__ import annotations

import inspect
import logging
from typing import Awaitable, Callable, Optional

_LOG = logging.getLogger(__name__)
PROCESS_MSG_PARAMS = ["sid", "subject", "reply", "data", "headers"]
SEND_COMMAND_PARAMS = ["cmd", "priority"]
_warned: set = set()


def _params(fn) -> Optional[list]:
    if fn is None or not inspect.iscoroutinefunction(fn):
        return None
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None


def problems(nc, sub=None) -> list[str]:
    """What of the internals above is missing or different on client ``nc`` (and
    subscription ``sub``, if given); empty when everything is as the pinned nats-py."""
    out = []
    if _params(getattr(nc, "_send_command", None)) != SEND_COMMAND_PARAMS:
        out.append(f"Client._send_command{SEND_COMMAND_PARAMS} missing or changed")
    if _params(getattr(nc, "_process_msg", None)) != PROCESS_MSG_PARAMS:
        out.append(f"Client._process_msg{PROCESS_MSG_PARAMS} missing or changed")
    if not isinstance(getattr(nc, "_subs", None), dict):
        out.append("Client._subs is not a dict")
    stats = getattr(nc, "stats", None)
    if not (isinstance(stats, dict) and "in_msgs" in stats and "in_bytes" in stats):
        out.append("Client.stats has no in_msgs/in_bytes counters")
    if sub is not None and not isinstance(getattr(sub, "_id", None), int):
        out.append("Subscription._id is not an int")
    return out


def _warn_once(what: str, found: list[str]) -> None:
    if what not in _warned:
        _warned.add(what)
        _LOG.warning("nats-py internals changed (%s): %s uses the slower public API",
                     "; ".join(found), what)


def can_send_raw(nc) -> bool:
    """True if ``send_raw`` works on ``nc`` (and the connection is open)."""
    if nc.is_closed:
        return False
    if _params(getattr(nc, "_send_command", None)) != SEND_COMMAND_PARAMS:
        _warn_once("batched acks", ["Client._send_command missing or changed"])
        return False
    return True


async def send_raw(nc, data: bytes) -> None:
    """Queues raw protocol bytes (e.g. several ``PUB`` commands) on ``nc``; they go out
    with the client's next write, in order with its other commands."""
    await nc._send_command(data)  # pylint: disable=protected-access


_STATUS = b"NATS/1.0 "          # a header line with a status code: a control message


def install_message_hook(nc, sub, buf) -> bool:
    """Makes ``nc``'s protocol handler append ``(subject, payload, reply)`` (str, bytes,
    str) for every message of ``sub`` to ``buf`` (a ``collections.deque``), counted in
    ``nc.stats`` as nats-py does, instead of building a ``Msg`` and queueing it for the
    subscription's callback.  Control messages (idle heartbeats, flow control: a status
    code in the header line) and other subscriptions go to nats-py's own handler as
    before; messages of an unsubscribed ``sub`` are dropped, as nats-py does.  Returns
    False and changes nothing when the internals are not as expected."""
    found = [p for p in problems(nc, sub) if not p.startswith("Client._send_command")]
    if found:
        _warn_once("fast delivery", found)
        return False
    sid = sub._id  # pylint: disable=protected-access
    previous: Callable[..., Awaitable[None]] = nc._process_msg  # pylint: disable=protected-access
    subs, stats, append = nc._subs, nc.stats, buf.append  # pylint: disable=protected-access

    async def process_msg(sid_, subject, reply, data, headers):
        if sid_ == sid and not (headers and headers.startswith(_STATUS)):
            if sid in subs:
                stats["in_msgs"] += 1
                stats["in_bytes"] += len(data)
                append((subject.decode(), data, reply.decode()))
            return
        await previous(sid_, subject, reply, data, headers)

    nc._process_msg = process_msg  # pylint: disable=protected-access
    return True
