"""Helpers for integration tests: publishing, launching pipelines, reading the lake."""
from __future__ import annotations

import asyncio
import glob
import os
import signal
import subprocess
import sys

import nats
import pyarrow.parquet as pq

from io_connectors.nats.bus import NatsBus
from io_connectors.nats.settings import NatsSettings
from io_connectors.nats.streams import consumer_active
from transforms.partitioning import partition_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def publish(url: str, messages, raw: bool = False) -> int:
    """Publishes (subject, dict | bytes) pairs through JetStream; returns the count stored."""
    async def go():
        async with NatsBus(NatsSettings(url=url)) as bus:
            for subject, event in messages:
                await bus.publish(subject, event)
            await bus.flush()
            return bus.published
    return asyncio.run(go())


def consumer_state(url: str, stream: str, durable: str):
    async def go():
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().consumer_info(stream, durable)
            return info.num_pending, info.num_ack_pending
        finally:
            await nc.close()
    return asyncio.run(go())


def assert_consumer_state(url: str, stream: str, durable: str, expected=(0, 0),
                          timeout: float = 30.0, ack_pending_only: bool = False) -> None:
    """Polls the consumer until ``(num_pending, num_ack_pending)`` equals ``expected`` (or
    only ``num_ack_pending`` does); fails with the last state after ``timeout``.  The server
    applies acks it has received asynchronously, so a state read right after a writer's
    flush (or a pipeline's exit) may still count them as pending."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        state = consumer_state(url, stream, durable)
        if (state[1] == expected[1]) if ack_pending_only else (tuple(state) == tuple(expected)):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"consumer {stream}/{durable}: state {state}, expected "
                                 f"{expected} within {timeout}s")
        time.sleep(0.1)


def stream_message_count(url: str, stream: str) -> int:
    """Messages stored in a JetStream stream."""
    async def go():
        nc = await nats.connect(url)
        try:
            return (await nc.jetstream().stream_info(stream)).state.messages
        finally:
            await nc.close()
    return asyncio.run(go())


def consumer_bound(url: str, stream: str = "MARKET_DATA",
                   durable: str = "bronze_writer_market_data") -> bool:
    """True once a running pipeline reads the durable consumer (a waiting pull request)."""
    async def go():
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().consumer_info(stream, durable)
            return consumer_active(info)
        except nats.js.errors.NotFoundError:
            return False
        finally:
            await nc.close()
    return asyncio.run(go())


def start_pipeline(module: str, *args: str, log_path: str | None = None) -> subprocess.Popen:
    """Starts ``python -m <module> --runner=DirectRunner ...`` in its own process group."""
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", module, "--runner=DirectRunner", *args],
                            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def kill_group(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def lake_folder(data_root: str, layer: str, dataset: str, root=None, date=None,
                hour=None) -> str:
    """Local path of a dataset folder, or of one root / date / hour of it, in the lake's
    current layout (``transforms.partitioning.partition_folder``)."""
    return os.path.join(data_root, partition_folder(layer, dataset, root, date, hour))


def parquet_files(data_root: str, dataset: str, layer: str = "bronze") -> list[str]:
    return sorted(glob.glob(os.path.join(data_root, layer, dataset, "**", "*.parquet"),
                            recursive=True))


def read_files(paths: list[str]) -> list[tuple[str, object]]:
    """(path, table) for each visible Parquet file."""
    return [(p, pq.read_table(p)) for p in paths]


def count_rows(data_root: str, dataset: str, layer: str = "bronze") -> int:
    total = 0
    for p in parquet_files(data_root, dataset, layer):
        try:
            total += pq.read_metadata(p).num_rows
        except OSError:
            pass
    return total


def assert_flush_shards(sizes: list[int], max_events: int) -> None:
    """Shard sizes of a stream run that had both a count-triggered and a time-triggered
    flush, none larger than the count."""
    assert max_events in sizes, "no count-triggered shard"
    assert any(s < max_events for s in sizes), "no time-triggered shard"
    assert max(sizes) <= max_events


def dead_letter_reasons(data_root: str, layer: str, bad) -> list[str]:
    """Checks that ``<layer>/_dead_letter`` holds exactly one row per (subject, payload) of
    ``bad``, each with its stream sequence and receive time; returns their reasons in the
    order of ``bad``."""
    dead = pq.read_table(os.path.join(data_root, layer, "_dead_letter")).to_pylist()
    assert len(dead) == len(bad)
    by_payload = {d["payload"]: d for d in dead}
    assert set(by_payload) == {p for _, p in bad}
    assert all(d["stream_seq"] > 0 and d["received_ns"] > 0 for d in dead)
    return [by_payload[p]["reason"] for _, p in bad]
