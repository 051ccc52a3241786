"""The nats-py internals the fast paths use (io_connectors/nats/client_internals.py) are
exactly as the pinned nats-py has them.  If this fails after a nats-py upgrade, the Bronze
drain silently falls back to the slower public API: update client_internals (and
re-measure with ./run.sh bench bronze_ingest) before upgrading."""
from __future__ import annotations

import asyncio
import collections
import re

import nats

from io_connectors.nats import client_internals
from io_connectors.nats.ack import ack_commands
from tests.helpers import ROOT


def test_pinned_nats_py_is_the_one_installed():
    pinned = re.search(r"^nats-py==(\S+)$", open(f"{ROOT}/requirements.txt").read(), re.M)
    from nats.aio.client import __version__
    assert pinned and __version__ == pinned.group(1), (
        f"nats-py {__version__} installed, {pinned and pinned.group(1)} pinned")


def test_internals_are_as_pinned_and_work(nats_server):
    async def go():
        nc = await nats.connect(nats_server.url)
        try:
            got = []

            async def cb(msg):
                got.append(msg.data)

            sub = await nc.subscribe("internals.cb", cb=cb)
            assert client_internals.problems(nc, sub) == [], \
                "nats-py internals changed: see io_connectors/nats/client_internals.py"
            assert client_internals.can_send_raw(nc)
            # send_raw: raw PUB commands reach subscribers like publishes
            await client_internals.send_raw(nc, ack_commands(["internals.cb"] * 3, b"+ACK"))
            await nc.flush()
            for _ in range(200):
                if len(got) == 3:
                    break
                await asyncio.sleep(0.01)
            assert got == [b"+ACK"] * 3
            # the message hook: the subscription's messages land in the buffer
            buf = collections.deque()
            hooked = await nc.subscribe("internals.fast", cb=cb)
            assert client_internals.install_message_hook(nc, hooked, buf)
            await nc.publish("internals.fast", b"x", reply="r.1")
            await nc.flush()
            for _ in range(200):
                if buf:
                    break
                await asyncio.sleep(0.01)
            assert list(buf) == [("internals.fast", b"x", "r.1")] and len(got) == 3
        finally:
            await nc.close()
    asyncio.run(go())


def test_problems_are_reported_for_a_client_without_them():
    class Stranger:
        is_closed = False
    found = client_internals.problems(Stranger(), object())
    assert len(found) == 5
    assert not client_internals.can_send_raw(Stranger())
    assert not client_internals.install_message_hook(Stranger(), object(), collections.deque())
