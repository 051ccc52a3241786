"""Fast delivery of one push subscription's messages into a buffer (nats-py).

nats-py delivers every message as a ``Msg`` object through an asyncio queue and a callback
task: about 5 µs of Python per message, a quarter of the Bronze pipeline's per-event cost
in a backlog drain.  ``deliver_into(nc, sub, buf)`` makes the client's protocol handler
append ``(subject, payload, reply)`` tuples for that subscription straight to ``buf``
(``collections.deque``) and hand everything else (other subscriptions, status messages
such as idle heartbeats or flow control) to nats-py's own handler.  Messages for a
subscription that has been unsubscribed are dropped, as nats-py does.

It relies on nats-py internals, all kept in ``client_internals``; when they do not look as
expected it changes nothing, logs a warning once and returns False, and the caller keeps
the ordinary callback subscription.  ``LAKE_NATS_FAST_DELIVERY=0`` turns it off.
"""
from __future__ import annotations

import logging
import os

from io_connectors.nats.client_internals import install_message_hook

_LOG = logging.getLogger(__name__)


def deliver_into(nc, sub, buf) -> bool:
    """Routes ``sub``'s messages into ``buf``; True if installed (see module docstring)."""
    if os.environ.get("LAKE_NATS_FAST_DELIVERY", "1") == "0":
        return False
    if not install_message_hook(nc, sub, buf):
        return False
    _LOG.debug("fast delivery for subscription %s", getattr(sub, "_id", "?"))
    return True
