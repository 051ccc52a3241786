"""The durable pull consumer and its feed against a real nats-server: readers take only
their window, share a backlog, recover their credit after expiries and a server restart;
a push consumer of an earlier version is converted without skipping anything."""
from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js import api

from io_connectors.nats import async_runtime
from io_connectors.nats.ack import ack
from io_connectors.nats.pull import PullFeed
from io_connectors.nats.settings import NatsSettings
from io_connectors.nats.streams import (ConsumerInUse, ConsumerSpec, consumer_active,
                                        ensure_consumer, ensure_streams)
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)

SPEC = ConsumerSpec(stream="MARKET_DATA", durable="pull_test", ack_wait_s=30,
                    max_ack_pending=100_000)


def _publish(url: str, n: int, start: int = 0) -> None:
    async def go():
        nc = await nats.connect(url)
        js = nc.jetstream()
        await ensure_streams(js)
        for i in range(start, start + n):
            await nc.publish("market.futures.trades", str(i).encode())
        await nc.flush()
        while (await js.stream_info("MARKET_DATA")).state.messages < start + n:
            await asyncio.sleep(0.02)
        await nc.close()
    asyncio.run(go())


def _info(url: str, spec: ConsumerSpec = SPEC):
    async def go():
        nc = await nats.connect(url)
        try:
            return await nc.jetstream().consumer_info(spec.stream, spec.durable)
        finally:
            await nc.close()
    return asyncio.run(go())


def _feed(url: str, batch: int, window: int, expires_s: float = 5.0, limit=None,
          spec: ConsumerSpec = SPEC) -> PullFeed:
    nc = async_runtime.connection(NatsSettings(url=url))

    async def go():
        js = nc.jetstream()
        await ensure_streams(js)
        await ensure_consumer(js, spec)
        feed = PullFeed(nc, async_runtime.loop(), spec.stream, spec.durable, batch=batch,
                        window=window, expires_s=expires_s, limit=limit)
        await feed.start()
        return feed
    return async_runtime.run(go())


def _stop(*feeds):
    for feed in feeds:
        async_runtime.run(feed.stop())


def test_a_reader_never_holds_more_than_its_window(nats_server):
    _publish(nats_server.url, 5_000)
    feed = _feed(nats_server.url, batch=500, window=1_500)
    try:
        assert feed.top_up() == 1_500
        wait_for(lambda: len(feed.buf) == 1_500, 30, message="the window delivered")
        assert feed.top_up() == 0, "a full window asks for nothing"
        assert _info(nats_server.url).num_ack_pending == 1_500, "nothing beyond the window"
        taken = feed.take(700)
        assert [int(p) for _, p, _ in taken] == list(range(700))
        assert feed.top_up() == 500, "room for one whole batch (200 more would be a part)"
        wait_for(lambda: feed.received == 2_000, 30, message="the next batch")
        ack(NatsSettings(url=nats_server.url), [r for _, _, r in taken])
        wait_for(lambda: _info(nats_server.url).num_ack_pending == 1_300, 30,
                 message="acks counted")
    finally:
        _stop(feed)


def test_two_readers_share_a_backlog_and_each_message_goes_to_one(nats_server):
    total = 6_000
    _publish(nats_server.url, total)
    a = _feed(nats_server.url, batch=200, window=400)
    b = _feed(nats_server.url, batch=200, window=400)
    seen = {"a": [], "b": []}
    try:
        for _ in range(2_000):
            for name, feed in (("a", a), ("b", b)):
                feed.top_up()
                got = feed.take(150)                # a slow reader: less than a batch a turn
                seen[name] += [int(p) for _, p, _ in got]
                if got:
                    ack(NatsSettings(url=nats_server.url), [r for _, _, r in got])
            if len(seen["a"]) + len(seen["b"]) == total:
                break
            async_runtime.run(asyncio.sleep(0.005))
    finally:
        _stop(a, b)
    assert sorted(seen["a"] + seen["b"]) == list(range(total))
    assert len(seen["a"]) > total // 4 and len(seen["b"]) > total // 4, \
        {k: len(v) for k, v in seen.items()}


def test_expired_requests_return_their_credit_and_a_limit_is_kept(nats_server):
    feed = _feed(nats_server.url, batch=100, window=300, expires_s=0.5, limit=250)
    try:
        assert feed.top_up() == 250, "never more than the limit"
        wait_for(lambda: feed.outstanding() == 0, 30, message="408 for the empty stream")
        assert feed.statuses["408"] == 3
        _publish(nats_server.url, 400)
        assert feed.top_up() == 250
        wait_for(lambda: feed.received == 250, 30, message="the limit's worth")
        assert feed.top_up() == 0
    finally:
        _stop(feed)


def test_a_server_restart_does_not_strand_the_reader(nats_server):
    feed = _feed(nats_server.url, batch=100, window=200, expires_s=1.0)
    try:
        assert feed.top_up() == 200
        wait_for(lambda: _info(nats_server.url).num_waiting > 0, 30, message="waiting requests")
        nats_server.kill()                 # the waiting requests die with it, no 408 comes
        nats_server.start()
        _publish(nats_server.url, 150)

        def delivered():
            feed.top_up()                  # written off after expiry + grace, then asked anew
            return feed.received == 150
        wait_for(delivered, 60, interval=0.2, message="messages after the restart")
    finally:
        _stop(feed)


def test_a_push_consumer_of_an_earlier_version_is_converted_at_its_ack_floor(nats_server):
    _publish(nats_server.url, 10)

    async def old_version():
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await js.add_consumer("MARKET_DATA", api.ConsumerConfig(
            durable_name=SPEC.durable, deliver_subject="_old.deliver", deliver_group="g",
            ack_policy=api.AckPolicy.EXPLICIT, ack_wait=30))
        sub = await nc.subscribe("_old.deliver", queue="g")    # how the old reader bound it
        for i in range(10):
            msg = await sub.next_msg(10)
            if i < 4 or i == 6:                # ack floor 4; 7 acked above the floor
                await msg.ack_sync()
        with pytest.raises(ConsumerInUse):     # still bound: refused
            await ensure_consumer(js, SPEC)
        await sub.unsubscribe()
        await nc.close()
    asyncio.run(old_version())
    wait_for(lambda: not consumer_active(_info(nats_server.url)), 30, message="unbound")

    feed = _feed(nats_server.url, batch=100, window=100, expires_s=1.0)
    try:
        info = _info(nats_server.url)
        assert not info.config.deliver_subject, "now a pull consumer"
        feed.top_up()
        wait_for(lambda: feed.received == 6, 30, message="everything above the floor")
        assert [int(p) for _, p, _ in feed.take(100)] == [4, 5, 6, 7, 8, 9]
    finally:
        _stop(feed)


def test_limits_of_an_existing_pull_consumer_are_updated_in_place(nats_server):
    feed = _feed(nats_server.url, batch=10, window=10)
    _stop(feed)
    changed = ConsumerSpec(SPEC.stream, SPEC.durable, ack_wait_s=45, max_ack_pending=777)

    async def go():
        nc = await nats.connect(nats_server.url)
        try:
            await ensure_consumer(nc.jetstream(), changed)
        finally:
            await nc.close()
    asyncio.run(go())
    info = _info(nats_server.url)
    assert (info.config.ack_wait, info.config.max_ack_pending) == (45, 777)


_SEEN: list = []


def _seen(payload: bytes) -> None:
    _SEEN.append(int(payload))


def test_a_second_read_in_the_same_process_takes_what_came_since(nats_server, prism_options):
    """The split's feed is shared per process; a finished one is replaced by a fresh one
    when the same source is read again (e.g. a job restarted by the launcher)."""
    import apache_beam as beam
    from io_connectors.nats.source import ReadFromNats
    settings = NatsSettings(url=nats_server.url)

    def read_to_end():
        _SEEN.clear()
        with beam.Pipeline(options=prism_options(streaming=True)) as p:
            _ = (p | ReadFromNats(settings, SPEC, stop_at_end=True)
                 | beam.Map(lambda m: ack(settings, [m[4]]) and m[1])
                 | beam.Map(_seen))
        return sorted(_SEEN)

    _publish(nats_server.url, 5)
    assert read_to_end() == [0, 1, 2, 3, 4]
    _publish(nats_server.url, 3, start=5)
    assert read_to_end() == [5, 6, 7]
