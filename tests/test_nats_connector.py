"""NATS connector pieces against a real nats-server: settings, auth, idempotent streams,
bounded reads."""
from __future__ import annotations

import asyncio
import subprocess
import sys

import nats
import pytest
from nats.js import api

from io_connectors.nats.bus import NatsBus
from io_connectors.embedded.nats_server import EmbeddedNatsServer
from io_connectors.nats.settings import NatsSettings
from io_connectors.nats.source import parse_ack_token
from io_connectors.nats.streams import ensure_streams, stream_specs
from tests.conftest import wait_for
from tests.helpers import ROOT, assert_consumer_state, consumer_state, count_rows, publish
from transforms.sample_events import sample_events

pytestmark = pytest.mark.timeout(180)


def test_settings_precedence(monkeypatch):
    monkeypatch.setenv("NATS_URL", "nats://10.0.0.1:4222")
    monkeypatch.setenv("NATS_TOKEN", "tok")
    assert NatsSettings.resolve().url == "nats://10.0.0.1:4222"
    assert NatsSettings.resolve("nats://127.0.0.1:1").url == "nats://127.0.0.1:1"
    assert NatsSettings.resolve().connect_kwargs()["token"] == "tok"
    monkeypatch.delenv("NATS_URL")
    assert NatsSettings.resolve().url == "nats://127.0.0.1:4222"      # configs/streams.yaml


def test_ack_token_parsing():
    assert parse_ack_token("$JS.ACK.MARKET_DATA.c.1.42.40.1734359400000000000.7") == \
        (42, 1734359400000000000, 7)
    assert parse_ack_token("$JS.ACK.dom.hash.MARKET_DATA.c.2.42.40.17.0.xyz") == (42, 17, 0)
    with pytest.raises(ValueError):
        parse_ack_token("_INBOX.abc")


def test_token_auth(tmp_path):
    with EmbeddedNatsServer(store_dir=str(tmp_path / "s"), extra_args=["--auth", "s3cret"]) as srv:
        async def go(token):
            bus = NatsBus(NatsSettings(url=srv.url, token=token, connect_timeout_s=2))
            await bus.connect()
            await bus.publish("market.futures.trades", b"{}")
            await bus.close()
        asyncio.run(go("s3cret"))
        with pytest.raises(ConnectionError, match="rejected the connection.*Authorization "
                                                  "Violation.*NATS_TOKEN"):
            asyncio.run(go("wrong"))


def test_streams_created_once_and_existing_streams_accepted(nats_server):
    async def go():
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        try:
            # Someone already captures the market subjects under another name: accepted.
            await js.add_stream(api.StreamConfig(name="LEGACY", subjects=["market.*", "market.*.*"]))
            first = await ensure_streams(js)
            second = await ensure_streams(js)
            info = await js.stream_info("LEVEL_SIGNALS")
            return first, second, info
        finally:
            await nc.close()
    first, second, info = asyncio.run(go())
    assert first == second == {"MARKET_DATA": "LEGACY", "LEVEL_SIGNALS": "LEVEL_SIGNALS"}
    spec = {s.name: s for s in stream_specs()}["LEVEL_SIGNALS"]
    assert info.config.subjects == list(spec.subjects) and info.config.max_age == 86400
    assert info.config.storage == api.StorageType.FILE


def test_bounded_read_after_n_messages(nats_server, tmp_path):
    events = [e for e in sample_events(1734359400 * 10**9, 10, trades_per_second=5)
              if e[0] == "market.futures.trades"]
    assert len(events) == 50
    publish(nats_server.url, events)
    r = subprocess.run([sys.executable, "-m", "pipelines.bronze_stream", "--runner=DirectRunner",
                        f"--nats_url={nats_server.url}", f"--data_root={tmp_path}",
                        "--max_messages=20"], cwd=ROOT, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert count_rows(str(tmp_path), "futures/trades") == 20
    pending, ack_pending = consumer_state(nats_server.url, "MARKET_DATA", "bronze_writer_market_data")
    assert pending + ack_pending == 30       # the rest is still owed, not acked away


def test_bounded_read_to_end_of_stream(nats_server, tmp_path):
    events = list(sample_events(1734359400 * 10**9, 30, trades_per_second=20))
    publish(nats_server.url, events)
    r = subprocess.run([sys.executable, "-m", "pipelines.bronze_stream", "--runner=DirectRunner",
                        f"--nats_url={nats_server.url}", f"--data_root={tmp_path}",
                        "--stop_at_end"], cwd=ROOT, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    total = sum(count_rows(str(tmp_path), d) for d in ("futures/trades", "futures/mbp10",
                                                         "options/trades"))
    assert total == len(events)
    assert_consumer_state(nats_server.url, "MARKET_DATA", "bronze_writer_market_data")


def test_batch_coder_round_trips_and_estimates_without_encoding():
    from io_connectors.nats.source import NATS_MESSAGE_CODER, NatsBatchCoder
    coder = NatsBatchCoder()
    batch = [("market.futures.trades", b'{"a": %d}' % i, i, 10**18 + i,
              f"$JS.ACK.S.c.1.{i}.{i}.{10**18 + i}.0") for i in range(50)]
    assert coder.decode(coder.encode(batch)) == batch
    assert coder.decode(coder.encode([])) == []
    one = NATS_MESSAGE_CODER.estimate_size(batch[0])
    assert coder.estimate_size(batch) == 4 + 50 * one
    assert abs(coder.estimate_size(batch) - len(coder.encode(batch))) < 0.1 * len(coder.encode(batch))
    assert coder == NatsBatchCoder() and coder.is_deterministic()


def test_ack_acks_every_token_in_one_write(nats_server):
    from io_connectors.nats.ack import ack, ack_commands

    assert ack_commands(["$JS.ACK.a.1", "$JS.ACK.b.2"]) == \
        b"PUB $JS.ACK.a.1 4\r\n+ACK\r\nPUB $JS.ACK.b.2 4\r\n+ACK\r\n"

    async def fetch_tokens(n):
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        try:
            await js.add_stream(api.StreamConfig(name="ACKS", subjects=["acks.test"]))
            for i in range(n):
                await js.publish("acks.test", b"%d" % i)
            sub = await js.pull_subscribe("acks.test", "acker", stream="ACKS")
            msgs = await sub.fetch(n, timeout=5)
            return [m.reply for m in msgs]
        finally:
            await nc.close()

    tokens = asyncio.run(fetch_tokens(1000))
    assert len(tokens) == 1000 and consumer_state(nats_server.url, "ACKS", "acker") == (0, 1000)
    settings = NatsSettings(url=nats_server.url)
    # ack() returns once the server has RECEIVED the acks; it applies them to the
    # consumer asynchronously, so the state is polled (bounded), not read at once.
    state = lambda: consumer_state(nats_server.url, "ACKS", "acker")
    assert ack(settings, tokens[:600] + [None, ""]) == 600
    wait_for(lambda: state() == (0, 400), 30, message="600 acks processed")
    assert ack(settings, tokens[600:]) == 400
    wait_for(lambda: state() == (0, 0), 30, message="every ack processed")
