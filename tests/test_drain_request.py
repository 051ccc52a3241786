"""The launcher's drain request reaches readers in other processes (portable runners).

With out-of-process SDK workers the launcher process has no cached NATS connection when
the signal arrives; the request must still be published (it used to deadlock the shared
event loop and time out, so remote readers never drained)."""
from __future__ import annotations

import asyncio
import threading

import nats
import pytest

from io_connectors.nats import async_runtime
from io_connectors.nats.settings import NatsSettings
from pipelines.streaming_launcher import _publish_drain
from tests.conftest import wait_for


class _Listener(threading.Thread):
    """A separate client (its own loop and thread) standing for a remote reader."""

    def __init__(self, url: str, subject: str):
        super().__init__(daemon=True)
        self.url, self.subject = url, subject
        self.received: list[bytes] = []
        self.ready = threading.Event()
        self._done = None

    def run(self):
        async def go():
            nc = await nats.connect(self.url)
            self._done = asyncio.Event()

            async def on_msg(msg):
                self.received.append(msg.data)
            await nc.subscribe(self.subject, cb=on_msg)
            await nc.flush()
            self.ready.set()
            await self._done.wait()
            await nc.close()
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(go())

    def stop(self):
        if self._done is not None:
            self.loop.call_soon_threadsafe(self._done.set)
        self.join(10)


def test_drain_request_is_published_without_a_cached_connection(nats_server):
    settings = NatsSettings(url=nats_server.url)           # a new server: nothing cached
    assert settings not in async_runtime._connections       # pylint: disable=protected-access
    subject = "_lake.control.test-run.drain"
    listener = _Listener(nats_server.url, subject)
    listener.start()
    try:
        assert listener.ready.wait(15)
        published = _publish_drain(settings, subject)
        wait_for(lambda: listener.received, timeout=15, message="the drain request")
        assert listener.received == [b"drain"]
        assert published is True
    finally:
        listener.stop()


def test_blocking_run_on_the_loop_thread_fails_at_once():
    async def inner():
        return 1

    async def outer():
        return async_runtime.run(inner(), timeout=30)      # would wait for its own loop

    with pytest.raises(RuntimeError, match="event-loop thread"):
        async_runtime.run(outer(), timeout=30)
