"""Fast delivery of one push subscription's messages into a buffer (nats-py).

nats-py delivers every message as a ``Msg`` object through an asyncio queue and a callback
task: about 5 µs of Python per message, a quarter of the Bronze pipeline's per-event cost
in a backlog drain.  ``deliver_into(nc, sub, buf)`` makes the client's protocol handler
append ``(subject, payload, reply)`` tuples for that subscription straight to ``buf``
(``collections.deque``) and hand everything else (other subscriptions, status messages
such as idle heartbeats or flow control, which carry a status code in their header line)
to nats-py's own handler.  Messages for a subscription that has been unsubscribed are
dropped, as nats-py does.

It relies on the pinned nats-py's internal ``Client._process_msg(sid, subject, reply,
data, headers)`` (see requirements.txt); when that does not look as expected it changes
nothing and returns False, and the caller keeps the ordinary callback subscription.
``LAKE_NATS_FAST_DELIVERY=0`` turns it off.
"""
from __future__ import annotations

import inspect
import logging
import os

_LOG = logging.getLogger(__name__)
_EXPECTED = ["sid", "subject", "reply", "data", "headers"]
_STATUS = b"NATS/1.0 "          # a header line with a status code: a control message


def _compatible(nc) -> bool:
    fn = getattr(nc, "_process_msg", None)
    if fn is None or not inspect.iscoroutinefunction(fn):
        return False
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return False
    return params == _EXPECTED and isinstance(getattr(nc, "_subs", None), dict) \
        and isinstance(getattr(nc, "stats", None), dict)


def deliver_into(nc, sub, buf) -> bool:
    """Routes ``sub``'s messages into ``buf``; True if installed (see module docstring)."""
    if os.environ.get("LAKE_NATS_FAST_DELIVERY", "1") == "0" or not _compatible(nc):
        return False
    sid = getattr(sub, "_id", None)
    if sid is None:
        return False
    previous = nc._process_msg
    subs, stats, append = nc._subs, nc.stats, buf.append

    async def process_msg(sid_, subject, reply, data, headers):
        if sid_ == sid and not (headers and headers.startswith(_STATUS)):
            if sid in subs:
                stats["in_msgs"] += 1
                stats["in_bytes"] += len(data)
                append((subject.decode(), data, reply.decode()))
            return
        await previous(sid_, subject, reply, data, headers)

    nc._process_msg = process_msg
    _LOG.debug("fast delivery for subscription %s", sid)
    return True
