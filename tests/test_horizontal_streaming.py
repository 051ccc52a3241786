"""Horizontal streaming: several instances of a streaming pipeline read one durable consumer
into one lake and split the work; each event lands once; every instance drains with exit
0; a killed instance's un-acked messages are taken by the others; the readers of one
instance (``--num_readers``) share the work too.  Real nats-server, Prism, SeaweedFS."""
from __future__ import annotations

import os
import re
import signal
import uuid

import orjson
import pyarrow.parquet as pq
import pytest

from io_connectors.embedded.s3_server import EmbeddedS3Server
from io_connectors.lake.bronze_reader import BronzeReader
from io_connectors.lake.storage import LakeStorage
from tests.conftest import wait_for
from tests.helpers import (consumer_state, count_rows, kill_group, parquet_files, publish,
                           start_pipeline)
from tests.test_bronze_stream_nats import DATASETS, _assert_lake_matches, _mixed_events
from tests.test_gold_stream_nats import MS_14_57, MS_15_03, _signals

pytestmark = pytest.mark.timeout(400)

BRONZE = ("MARKET_DATA", "bronze_writer_market_data")
GOLD = ("LEVEL_SIGNALS", "gold_writer_levels_signals")


def _log(path: str) -> str:
    try:
        return open(path, errors="replace").read()
    except OSError:
        return ""


def _reading(log_path: str) -> bool:
    return "reading (split" in _log(log_path)


def _messages_read(log_path: str) -> int:
    """Messages an instance's readers took (``split i finished after N messages``); the
    instance wrote each of them (it drained with exit 0).  The job's metrics are not used:
    a last bundle's counters may be missing from them."""
    found = re.findall(r"split \d+ finished after (\d+) messages", _log(log_path))
    assert found, _log(log_path)[-3000:]
    return sum(int(n) for n in found)


def _start_instances(module: str, n: int, tmp_path, *flags) -> list:
    procs = []
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        log = str(tmp_path / f"{module.rsplit('.', 1)[-1]}-{i}.log")
        procs.append((start_pipeline(module, *flags, log_path=log), log))
    for _, log in procs:
        wait_for(lambda: _reading(log), 120, message=f"{log} reading")
    return procs


def _drain_all(procs) -> None:
    for proc, _ in procs:
        proc.send_signal(signal.SIGTERM)
    for proc, log in procs:
        assert proc.wait(60) == 0, _log(log)[-3000:]


def test_two_bronze_instances_split_the_stream_and_each_event_lands_once(nats_server,
                                                                          tmp_path):
    data_root = str(tmp_path / "lake")
    procs = _start_instances("pipelines.bronze_stream", 2, tmp_path,
                             f"--nats_url={nats_server.url}", f"--data_root={data_root}")
    events = _mixed_events()
    try:
        publish(nats_server.url, events)
        wait_for(lambda: sum(count_rows(data_root, d) for d in DATASETS) == len(events), 180,
                 message="every event in Bronze")
        _drain_all(procs)
    finally:
        for proc, _ in procs:
            kill_group(proc)
    _assert_lake_matches(data_root, events)          # right partitions, nothing twice
    taken = [_messages_read(log) for _, log in procs]
    assert sum(taken) == len(events)
    assert all(n > len(events) // 10 for n in taken), f"one instance did (nearly) all: {taken}"
    assert consumer_state(nats_server.url, *BRONZE) == (0, 0)


def test_a_killed_instance_messages_are_taken_by_the_other(nats_server, tmp_path):
    data_root = str(tmp_path / "lake")
    events = _mixed_events()
    flags = [f"--nats_url={nats_server.url}", f"--data_root={data_root}",
             "--flush_max_seconds=1", "--ack_wait_s=12"]
    publish(nats_server.url, events)
    (a, _), = _start_instances("pipelines.bronze_stream", 1, tmp_path / "a", *flags)
    b = None
    try:
        wait_for(lambda: count_rows(data_root, "futures/trades") >= 1000, 120, interval=0.02,
                 message="first shards")
        kill_group(a)                         # no drain: what it held stays un-acked
        a.wait(10)
        pending, held = consumer_state(nats_server.url, *BRONZE)
        assert held > 0, "the killed instance held nothing un-acked"
        (b, b_log), = _start_instances("pipelines.bronze_stream", 1, tmp_path / "b", *flags)

        def all_landed():
            r = BronzeReader(data_root)        # redeliveries deduplicated by the reader
            return (len(r.read_futures_trades("ES", "2024-12-16", front_month_only=False))
                    + len(r.read_futures_mbp10("ES", "2024-12-16", front_month_only=False))
                    + len(r.read_option_trades("ES", "2024-12-16"))) == len(events)
        wait_for(all_landed, 180, interval=1.0, message="every event after the kill")
        b.send_signal(signal.SIGTERM)
        assert b.wait(60) == 0, _log(b_log)[-3000:]
    finally:
        kill_group(a)
        if b is not None:
            kill_group(b)
    assert consumer_state(nats_server.url, *BRONZE) == (0, 0)
    # the survivor took every message the killed one had not acked, and the rest
    assert _messages_read(b_log) == pending + held


def test_draining_one_instance_hands_the_rest_to_the_other_at_once(nats_server, tmp_path):
    """Scale-in: the drained instance writes what it was sent and strands nothing, so the
    other lands every remaining event long before ``ack_wait`` (600 s here) could have
    redelivered anything."""
    data_root = str(tmp_path / "lake")
    events = _mixed_events()
    (a, a_log), (b, b_log) = procs = _start_instances(
        "pipelines.bronze_stream", 2, tmp_path, f"--nats_url={nats_server.url}",
        f"--data_root={data_root}", "--ack_wait_s=600", "--max_ack_pending=2000")
    try:
        publish(nats_server.url, events)
        wait_for(lambda: count_rows(data_root, "futures/trades") >= 1000, 120, interval=0.02,
                 message="first shards")
        a.send_signal(signal.SIGTERM)
        assert a.wait(60) == 0, _log(a_log)[-3000:]
        wait_for(lambda: sum(count_rows(data_root, d) for d in DATASETS) == len(events), 120,
                 message="every event, without waiting for redelivery")
        assert consumer_state(nats_server.url, *BRONZE) == (0, 0)
        b.send_signal(signal.SIGTERM)
        assert b.wait(60) == 0, _log(b_log)[-3000:]
    finally:
        for proc, _ in procs:
            kill_group(proc)
    _assert_lake_matches(data_root, events)
    assert _messages_read(a_log) + _messages_read(b_log) == len(events)


def test_two_gold_instances_split_the_signals(nats_server, tmp_path):
    data_root = str(tmp_path / "lake")
    snapshots = _signals(MS_14_57, MS_15_03)
    rows = sum(len(ev["levels"]) for ev in snapshots)
    procs = _start_instances("pipelines.gold_stream", 2, tmp_path,
                             f"--nats_url={nats_server.url}", f"--data_root={data_root}")
    try:
        publish(nats_server.url, [("levels.signals", orjson.dumps(ev)) for ev in snapshots])
        wait_for(lambda: count_rows(data_root, "levels/signals", "gold") == rows, 180,
                 message="every level row in Gold")
        _drain_all(procs)
    finally:
        for proc, _ in procs:
            kill_group(proc)
    keys = [(r["ts_event_ns"], r["level_id"])
            for p in parquet_files(data_root, "levels/signals", "gold")
            for r in pq.read_table(p, columns=["ts_event_ns", "level_id"]).to_pylist()]
    assert len(keys) == len(set(keys)) == rows
    taken = [_messages_read(log) for _, log in procs]
    assert sum(taken) == len(snapshots) and all(n > 0 for n in taken), taken
    assert consumer_state(nats_server.url, *GOLD) == (0, 0)


def _waiting_pulls(url: str, stream: str, durable: str) -> int:
    """Pull requests waiting at the consumer (``num_waiting``)."""
    import asyncio
    import nats

    async def go():
        nc = await nats.connect(url)
        try:
            return (await nc.jetstream().consumer_info(stream, durable)).num_waiting or 0
        finally:
            await nc.close()
    return asyncio.run(go())


def test_readers_of_one_instance_share_the_work(nats_server, tmp_path):
    """Both readers of ``--num_readers=2`` ask the consumer for work, so a backlog that
    arrives while both wait is split between them (whichever of them the runner schedules
    first, and however loaded the machine is)."""
    data_root = str(tmp_path / "lake")
    events = _mixed_events()
    log = str(tmp_path / "bronze.log")
    proc = start_pipeline("pipelines.bronze_stream", f"--nats_url={nats_server.url}",
                          f"--data_root={data_root}", "--num_readers=2",
                          "--flush_max_seconds=1", log_path=log)
    try:
        wait_for(lambda: len(set(re.findall(r"reading \(split (\d+)", _log(log)))) == 2, 120,
                 message="both readers reading")
        # a reader has at most window / batch = 3 requests out: 4 waiting means both do
        wait_for(lambda: _waiting_pulls(nats_server.url, *BRONZE) >= 4, 60, interval=0.2,
                 message="pull requests of both readers waiting")
        publish(nats_server.url, events)
        wait_for(lambda: sum(count_rows(data_root, d) for d in DATASETS) == len(events), 180,
                 interval=0.5, message="every event landed")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, _log(log)[-3000:]
    finally:
        kill_group(proc)
    per_split = {int(i): int(n) for i, n in
                 re.findall(r"split (\d+) finished after (\d+) messages", _log(log))}
    assert set(per_split) == {0, 1}
    assert sum(per_split.values()) == len(events)
    assert min(per_split.values()) > 0, f"one reader took everything: {per_split}"
    _assert_lake_matches(data_root, events)


@pytest.fixture(scope="module")
def s3_server():
    with EmbeddedS3Server() as srv:
        yield srv


def test_two_instances_share_one_s3_lake(nats_server, s3_server, tmp_path, monkeypatch):
    bucket = s3_server.create_bucket(f"lake-{uuid.uuid4().hex[:12]}")
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)       # inherited by the pipeline processes
    data_root = f"{bucket}/lake"
    storage = LakeStorage(data_root)
    events = _mixed_events()[:6000]
    procs = _start_instances("pipelines.bronze_stream", 2, tmp_path,
                             f"--nats_url={nats_server.url}", f"--data_root={data_root}",
                             "--flush_max_seconds=1", "--ack_wait_s=12")
    try:
        publish(nats_server.url, events)

        def landed():
            return sum(pq.read_metadata(p, filesystem=storage.fs).num_rows
                       for p in storage.list_files("bronze")) >= len(events)
        wait_for(landed, 180, interval=0.5, message="every event on S3")
        _drain_all(procs)
    finally:
        for proc, _ in procs:
            kill_group(proc)
    reader = BronzeReader(storage=storage)
    total = (len(reader.read_futures_trades("ES", "2024-12-16", front_month_only=False,
                                            dedupe=False))
             + len(reader.read_futures_mbp10("ES", "2024-12-16", front_month_only=False,
                                             dedupe=False))
             + len(reader.read_option_trades("ES", "2024-12-16", dedupe=False)))
    assert total == len(events), "each event once, nothing lost"
    taken = [_messages_read(log) for _, log in procs]
    assert sum(taken) == len(events) and all(n > 0 for n in taken), taken
    assert consumer_state(nats_server.url, *BRONZE) == (0, 0)
    assert not os.path.exists(data_root), "nothing written to a local folder"


def test_a_writer_starts_only_when_its_own_pipeline_consumes(nats_server, tmp_path):
    """With another instance already reading the consumer, ``start()`` of a second
    ``BronzeWriter`` waits for ITS readers: one that cannot start is reported, not taken
    for started because the consumer is busy."""
    import asyncio
    from pipelines.bronze_writer import BronzeWriter
    data_root = str(tmp_path / "lake")

    async def go():
        first = BronzeWriter(bus=nats_server.url, data_root=data_root,
                             log_path=str(tmp_path / "first.log"))
        await first.start()
        broken = BronzeWriter(bus=nats_server.url, data_root=data_root,
                              extra_args=["--ack_wait_s=1"],     # refused at start-up
                              log_path=str(tmp_path / "broken.log"))
        try:
            with pytest.raises(RuntimeError, match="exited with 2 during start-up"):
                await broken.start(timeout=60)
            second = BronzeWriter(bus=nats_server.url, data_root=data_root,
                                  log_path=str(tmp_path / "second.log"))
            await second.start()
            wait_for(lambda: _reading(str(tmp_path / "second.log")), 30, message="its reader")
            assert await second.stop() == 0
        finally:
            assert await first.stop() == 0
    asyncio.run(go())
