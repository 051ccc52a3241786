"""``PullFeed``: a JetStream pull consumer feeding a local buffer, a few batches at a time.

Every reader of a durable pull consumer asks the server for messages when it has room
for them (``$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>``, ``{"batch": B, "expires":
E}``), so readers in any number of processes and machines share the backlog by demand: a
busy or slow reader asks less often, a new reader gets its share at once, and none can
take more than its window.  (With a push consumer the first subscriber is sent up to
``max_ack_pending`` messages before a second one exists; ``--num_readers=2`` was seen
giving one reader all 20,804 messages.)

Credit: ``requested`` (messages asked for), ``received`` (arrived in the buffer) and
``closed`` (the unfilled part of requests the server has ended: a ``408 Request Timeout``
or ``409`` status, sent to the request's own reply subject, carries
``Nats-Pending-Messages``) give ``outstanding = requested - closed - received``;
``top_up()`` asks for more while ``outstanding + buffered < window``.  Requests that end
without a status (server restart, reconnect) are written off once every live request's
``expires`` has passed by a grace period; a status arriving later for a written-off
request is ignored.  Messages arrive through ``fast_delivery.deliver_into`` (no
per-message ``Msg``); status messages reach the subscription's callback.

Thread model: ``start``/``stop`` are coroutines for the shared event loop; ``top_up``,
``outstanding`` and the buffer are used from the reader's thread (requests are handed to
the loop without waiting).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
import uuid
from typing import Optional

import orjson

from io_connectors.nats.fast_delivery import deliver_into

_LOG = logging.getLogger(__name__)
_ENDED = {"400", "404", "408", "409"}   # statuses that end a pull request


class PullFeed:
    """Pull requests for one reader; delivered messages land in ``buf`` as
    ``(subject, payload, reply)`` tuples (``reply`` is the message's ack subject).

    In: a connected nats-py client, the event loop it runs on, the stream and durable
    names, the batch size per request, the window (most messages requested or buffered
    at once), the request lifetime, and an optional total ``limit``.  Out: ``buf``.
    Guarantees: never more than ``window`` messages outstanding or buffered (plus at most
    one batch while written-off requests still deliver), never more than ``limit`` in
    total; no message is acked or dropped here: what is never taken from ``buf`` stays
    un-acked and JetStream redelivers it after ``ack_wait``.
    """

    def __init__(self, nc, loop: asyncio.AbstractEventLoop, stream: str, durable: str,
                 batch: int, window: int, expires_s: float, limit: Optional[int] = None):
        if batch < 1 or window < batch:
            raise ValueError("PullFeed needs 1 <= batch <= window")
        self.nc, self.loop = nc, loop
        self.api_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.inbox = f"_lake.pull.{uuid.uuid4().hex}"
        self.batch, self.window, self.expires_s, self.limit = batch, window, expires_s, limit
        self.buf: collections.deque = collections.deque()
        self.requested = 0
        self.closed = 0
        self.taken = 0                 # messages removed from buf by the reader
        self.live: dict[str, float] = {}     # reply subject of a live request -> deadline
        self.statuses: collections.Counter = collections.Counter()
        self._next_id = 0
        self._sub = None
        self._lock = threading.Lock()

    # ---- loop side -----------------------------------------------------------------
    async def start(self) -> None:
        """Subscribes the inbox (messages go straight into ``buf``)."""
        self._sub = await self.nc.subscribe(f"{self.inbox}.*", cb=self._on_status,
                                            pending_msgs_limit=4 * self.window + 1024,
                                            pending_bytes_limit=512 * 1024 * 1024)
        if not deliver_into(self.nc, self._sub, self.buf):
            self._sub._cb = self._on_message        # pylint: disable=protected-access

    async def _on_message(self, msg) -> None:
        if msg.headers and msg.headers.get("Status"):
            await self._on_status(msg)
        else:
            self.buf.append((msg.subject, msg.data, msg.reply))

    async def _on_status(self, msg) -> None:
        """Status messages on the inbox: a request ended with ``pending`` unfilled."""
        headers = msg.headers or {}
        code = headers.get("Status", "")
        self.statuses[code] += 1
        if code not in _ENDED:
            return
        with self._lock:
            if self.live.pop(msg.subject, None) is None:
                return                  # written off already, or not ours
            try:
                self.closed += int(headers.get("Nats-Pending-Messages", 0))
            except ValueError:
                pass
        if code == "409":
            _LOG.debug("pull request ended: %s %s", code, headers.get("Description"))

    async def stop(self) -> None:
        """Unsubscribes: the server drops our waiting requests; messages in flight to us
        are not acked and are redelivered to other readers after ``ack_wait``."""
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:  # pylint: disable=broad-except
                pass

    # ---- reader side ---------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Subscribed (between ``start`` and ``stop``)."""
        return self._sub is not None

    @property
    def received(self) -> int:
        return self.taken + len(self.buf)

    def outstanding(self) -> int:
        """Messages asked for that may still arrive."""
        return max(0, self.requested - self.closed - self.received)

    def _plan(self, now: float) -> list[tuple[str, bytes, int]]:
        """The requests (reply subject, body, messages) that fill the window now, counted
        as made."""
        with self._lock:
            if self.live:
                stale = now - max(2.0, self.expires_s)
                if max(self.live.values()) < stale:
                    # Every live request has outlived its expiry without an end status:
                    # filled ones need none; others were lost (reconnect, server
                    # restart).  Nothing more can arrive for them: write them off.
                    self.live.clear()
                    self.closed = self.requested - self.received
                elif len(self.live) > 64:
                    # Requests filled to their batch get no status: forget old ones.
                    self.live = {k: d for k, d in self.live.items() if d >= stale}
            window_room = self.window - self.outstanding() - len(self.buf)
            room = window_room
            if self.limit is not None:
                room = min(room, self.limit - self.received - self.outstanding())
            out = []
            expires_ns = int(self.expires_s * 1e9)
            while room > 0 and window_room >= self.batch:
                n = min(self.batch, room)
                self._next_id += 1
                reply = f"{self.inbox}.{self._next_id}"
                self.live[reply] = now + self.expires_s
                out.append((reply, orjson.dumps({"batch": n, "expires": expires_ns}), n))
                self.requested += n
                room -= n
                window_room -= n
            return out

    def top_up(self, now: Optional[float] = None) -> int:
        """From the reader's thread: asks for more messages if a whole batch fits in the
        window (or the rest of ``limit`` does), without waiting for the sends; returns how
        many messages were asked for."""
        if self._sub is None:
            return 0
        requests = self._plan(time.monotonic() if now is None else now)
        for reply, body, _ in requests:
            asyncio.run_coroutine_threadsafe(
                self.nc.publish(self.api_subject, body, reply=reply), self.loop)
        return sum(n for _, _, n in requests)

    async def top_up_now(self) -> int:
        """``top_up`` on the loop: the requests are queued on the connection before
        whatever the caller sends next."""
        if self._sub is None:
            return 0
        requests = self._plan(time.monotonic())
        for reply, body, _ in requests:
            await self.nc.publish(self.api_subject, body, reply=reply)
        return sum(n for _, _, n in requests)

    def take(self, max_items: int) -> list:
        """Up to ``max_items`` buffered ``(subject, payload, reply)`` tuples."""
        out = []
        pop = self.buf.popleft
        try:
            for _ in range(max_items):
                out.append(pop())
        except IndexError:
            pass
        self.taken += len(out)
        return out
