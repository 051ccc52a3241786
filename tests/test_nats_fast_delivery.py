"""deliver_into: a subscription's messages straight into a buffer, against a real
nats-server; everything else still goes through nats-py."""
from __future__ import annotations

import asyncio
import collections

import nats

from io_connectors.nats.fast_delivery import deliver_into


def test_messages_land_in_the_buffer_and_other_subscriptions_are_untouched(nats_server):
    async def go():
        nc = await nats.connect(nats_server.url)
        try:
            buf = collections.deque()
            via_callback, others = [], []

            async def cb(msg):
                via_callback.append(msg)

            async def other_cb(msg):
                others.append(msg.data)

            sub = await nc.subscribe("fast.in", cb=cb)
            await nc.subscribe("other.in", cb=other_cb)
            assert deliver_into(nc, sub, buf) is True
            await nc.publish("fast.in", b"one", reply="r.1")
            await nc.publish("fast.in", b"two", reply="r.2", headers={"Nats-Msg-Id": "x"})
            await nc.publish("other.in", b"three")
            await nc.flush()
            for _ in range(100):
                if len(buf) == 2 and others:
                    break
                await asyncio.sleep(0.01)
            assert list(buf) == [("fast.in", b"one", "r.1"), ("fast.in", b"two", "r.2")]
            assert via_callback == [] and others == [b"three"]
            assert nc.stats["in_msgs"] >= 3
            await sub.unsubscribe()
            await nc.publish("fast.in", b"late")
            await nc.flush()
            await asyncio.sleep(0.05)
            assert len(buf) == 2                      # nothing after the unsubscribe
        finally:
            await nc.close()
    asyncio.run(go())


def test_status_messages_go_to_nats_py(nats_server):
    """A JetStream push consumer with idle heartbeats sends status messages (header line
    'NATS/1.0 100 Idle Heartbeat'); they must not reach the buffer."""
    async def go():
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="HB", subjects=["hb.*"])
            await js.add_consumer("HB", durable_name="hb", deliver_subject="hbdeliver.in",
                                  idle_heartbeat=0.1, ack_policy="explicit")
            buf = collections.deque()

            async def cb(msg):
                pass

            sub = await nc.subscribe("hbdeliver.in", cb=cb)
            assert deliver_into(nc, sub, buf)
            await js.publish("hb.x", b"data")
            for _ in range(100):
                if buf:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.4)                  # several heartbeats go by
            assert [(s, p) for s, p, _ in buf] == [("hb.x", b"data")]
            assert buf[0][2].startswith("$JS.ACK.HB.hb.")
        finally:
            await nc.close()
    asyncio.run(go())


def test_declines_when_disabled_or_incompatible(monkeypatch):
    class NotAClient:
        pass
    assert deliver_into(NotAClient(), object(), collections.deque()) is False
    monkeypatch.setenv("LAKE_NATS_FAST_DELIVERY", "0")

    class Client:
        _subs, stats = {}, {}

        async def _process_msg(self, sid, subject, reply, data, headers):
            pass
    client = Client()
    before = client._process_msg
    assert deliver_into(client, type("S", (), {"_id": 1})(), collections.deque()) is False
    assert client._process_msg == before
