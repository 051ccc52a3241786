"""``NatsBus``: the async publishing side of the bus (demo, replay, tests, benchmarks).

    bus = NatsBus(NatsSettings.resolve())
    await bus.connect()                  # connects and ensures the lake's streams
    await bus.publish("market.futures.trades", event_dict, msg_id="...")
    await bus.flush()                    # waits until JetStream stored everything
    await bus.close()

Publishes are JetStream-acknowledged asynchronously with a bounded number in flight;
``flush`` raises if any publish was rejected.  ``msg_id`` sets ``Nats-Msg-Id`` so a
re-publish inside the stream's duplicate window is dropped by the server.
"""
from __future__ import annotations

import asyncio
from typing import Any, Optional

import orjson

from io_connectors.nats_settings import NatsSettings, connect
from io_connectors.nats_streams import ensure_streams


class NatsBus:
    """A connection to NATS plus JetStream publishing.  ``settings`` is what pipelines
    launched on this bus (``BronzeWriter(bus=...)``) connect with."""

    def __init__(self, settings: NatsSettings, max_in_flight: int = 4000):
        self.settings = settings
        self.max_in_flight = max_in_flight
        self.nc = None
        self.js = None
        self._futures: list = []
        self.published = 0

    async def connect(self) -> "NatsBus":
        self.nc = await connect(self.settings)
        self.js = self.nc.jetstream(publish_async_max_pending=self.max_in_flight)
        await ensure_streams(self.js)
        return self

    async def publish(self, subject: str, event: Any, msg_id: Optional[str] = None) -> None:
        """Publishes a dict (as JSON) or raw bytes to JetStream without waiting for its ack."""
        payload = event if isinstance(event, (bytes, bytearray)) else orjson.dumps(event)
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        fut = await self.js.publish_async(subject, payload, headers=headers, wait_stall=60)
        self._futures.append(fut)
        self.published += 1
        if len(self._futures) >= 4 * self.max_in_flight:
            await self._collect()

    async def _collect(self) -> None:
        futures, self._futures = self._futures, []
        results = await asyncio.gather(*futures, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise RuntimeError(f"{len(errors)} JetStream publishes failed, first: {errors[0]!r}")

    async def flush(self) -> None:
        """Waits for every outstanding publish to be stored; raises on any failure."""
        await self._collect()

    async def close(self) -> None:
        if self.nc is not None:
            await self.flush()
            await self.nc.drain()
            self.nc = None

    async def __aenter__(self) -> "NatsBus":
        return await self.connect()

    async def __aexit__(self, *exc) -> None:
        await self.close()
