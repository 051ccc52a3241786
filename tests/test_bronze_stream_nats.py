"""bronze_stream end to end against a real nats-server on the DirectRunner (Prism)."""
from __future__ import annotations

import collections
import os
import signal
import time

import orjson
import pyarrow.parquet as pq
import pytest

from tests.conftest import wait_for
from tests.helpers import (assert_consumer_state, assert_flush_shards, consumer_bound,
                           consumer_state, count_rows,
                           dead_letter_reasons, kill_group, parquet_files, publish,
                           start_pipeline)
from transforms.market_parse import symbol_root, utc_date_hour
from transforms.partitioning import partition_folder
from transforms.sample_events import sample_events

pytestmark = pytest.mark.timeout(300)

HOUR_14 = 1734357600 * 10**9          # 2024-12-16T14:00:00Z
DATASETS = ("futures/trades", "futures/mbp10", "options/trades")
BAD = [
    ("market.futures.trades", b"\xff\xfe\x00garbage"),
    ("market.futures.trades", b"{\"ts_event_ns\": 1}"),
    ("market.futures.trades", orjson.dumps(dict(ts_event_ns=HOUR_14, ts_recv_ns=HOUR_14,
                                                source="sim", symbol="../etc", price=1.0,
                                                size=1, aggressor=0))),
    ("market.options.trades", b"[]"),
    ("market.weird.subject", b"{}"),
]


def _mixed_events():
    """~20k events of the three schemas over two UTC hours and two contracts."""
    events = list(sample_events(HOUR_14 + 3000 * 10**9, 1200, trades_per_second=6.5, seed=1))
    events += list(sample_events(HOUR_14 + 3600 * 10**9 + 10**9, 1200, trades_per_second=6.5,
                                 seed=2))
    return [(s, orjson.dumps(e)) for s, e in events]


def _expected_partition(dataset, row):
    key = row["underlying"] if dataset == "options/trades" else symbol_root(row["symbol"])
    date, hour = utc_date_hour(row["ts_event_ns"])
    return partition_folder("bronze", dataset, key, date, hour).split("/", 3)[3]


def _assert_lake_matches(data_root, published):
    want = collections.Counter()
    for subject, payload in published:
        want[subject.split(".", 1)[1].replace(".", "/")] += 1
    for dataset in DATASETS:
        seen = collections.Counter()
        for path in parquet_files(data_root, dataset):
            t = pq.read_table(path)
            ts = t["ts_event_ns"].to_pylist()
            assert ts == sorted(ts), f"{path} not sorted by ts_event_ns"
            for row in t.to_pylist():
                assert _expected_partition(dataset, row) in path
                seen[(row["ts_event_ns"], row.get("seq"), row.get("symbol", row.get("option_symbol")))] += 1
        assert sum(seen.values()) == want[dataset], dataset
        assert max(seen.values()) == 1, f"{dataset}: duplicated rows"


def test_stream_lands_everything_dead_letters_bad_input_and_drains_on_sigterm(
        nats_server, tmp_path):
    data_root = str(tmp_path / "lake")
    log = str(tmp_path / "bronze.log")
    events = _mixed_events()
    assert 19000 < len(events) < 22000
    proc = start_pipeline("pipelines.bronze_stream", f"--nats_url={nats_server.url}",
                          f"--data_root={data_root}", log_path=log)
    try:
        publish(nats_server.url, events + BAD)
        total = len(events)
        wait_for(lambda: sum(count_rows(data_root, d) for d in DATASETS) == total, 120,
                 message="all events in Bronze")
        # A small tail for a new hour: fewer than 1000 events, so only the 5 s processing-time
        # rule can flush it, and it must do so while the pipeline keeps running.
        tail = [(s, orjson.dumps(e)) for s, e in
                sample_events(HOUR_14 + 2 * 3600 * 10**9, 3, trades_per_second=10, seed=3)]
        t0 = time.monotonic()
        publish(nats_server.url, tail)
        wait_for(lambda: count_rows(data_root, "futures/trades") >= sum(
            1 for s, _ in events + tail if s == "market.futures.trades"), 30,
            message="time-triggered shard")
        assert time.monotonic() - t0 < 15
        assert proc.poll() is None, "pipeline stopped by itself"
        events += tail

        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert proc.wait(40) == 0, open(log).read()[-3000:]
        assert time.monotonic() - t0 < 30
    finally:
        kill_group(proc)

    _assert_lake_matches(data_root, events)
    sizes = [pq.read_metadata(p).num_rows for p in parquet_files(data_root, "futures/trades")]
    assert_flush_shards(sizes, 1000)

    reasons = dead_letter_reasons(data_root, "bronze", BAD)
    assert "UTF-8" in reasons[0]
    assert "ts_event_ns" in reasons[1]
    assert "plain identifier" in reasons[2]
    assert "unknown subject" in reasons[4]
    # everything was acked after being written
    assert_consumer_state(nats_server.url, "MARKET_DATA", "bronze_writer_market_data")


def test_sigkill_mid_stream_then_restart_loses_nothing(nats_server, tmp_path):
    data_root = str(tmp_path / "lake")
    flags = [f"--nats_url={nats_server.url}", f"--data_root={data_root}",
             "--flush_max_seconds=2", "--ack_wait_s=15"]
    events = _mixed_events()
    publish(nats_server.url, events)
    proc = start_pipeline("pipelines.bronze_stream", *flags, log_path=str(tmp_path / "a.log"))
    try:
        wait_for(lambda: count_rows(data_root, "futures/trades") >= 2000, 120,
                 interval=0.02, message="first shards")
        kill_group(proc)                     # no drain, no flush: buffered events are lost
        proc.wait(10)
    finally:
        kill_group(proc)
    landed_before = sum(count_rows(data_root, d) for d in DATASETS)
    assert landed_before < len(events), "the kill came too late to test anything"

    proc = start_pipeline("pipelines.bronze_stream", *flags, log_path=str(tmp_path / "b.log"))
    try:
        def unique_rows():
            return _unique_rows(data_root) == len(events)
        wait_for(unique_rows, 150, interval=1.0, message="every event after restart")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
    finally:
        kill_group(proc)
    assert_consumer_state(nats_server.url, "MARKET_DATA", "bronze_writer_market_data")


def _unique_rows(data_root: str, date: str = "2024-12-16") -> int:
    """Rows of the three datasets after the reader's redelivery deduplication."""
    from io_connectors.lake.bronze_reader import BronzeReader
    r = BronzeReader(data_root)
    return (len(r.read_futures_trades("ES", date, front_month_only=False))
            + len(r.read_futures_mbp10("ES", date, front_month_only=False))
            + len(r.read_option_trades("ES", date)))


def _prism_children(pid: int) -> list[int]:
    import subprocess as sp
    out = sp.run(["pgrep", "-P", str(pid), "-f", "prism"], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def test_runner_crash_is_restarted_and_loses_nothing(nats_server, tmp_path):
    """Prism dying under the pipeline (it panicked once under load) must not stop the
    service: the launcher restarts the job, and the events of the crashed run come back."""
    from io_connectors.embedded.nats_server import free_port
    from tests.test_metrics import samples, value
    data_root = str(tmp_path / "lake")
    events = _mixed_events()
    half = len(events) // 2
    publish(nats_server.url, events[:half])
    port = free_port()
    proc = start_pipeline("pipelines.bronze_stream", f"--nats_url={nats_server.url}",
                          f"--data_root={data_root}", "--flush_max_seconds=1",
                          "--ack_wait_s=12", f"--metrics_port={port}",
                          log_path=str(tmp_path / "a.log"))
    try:
        wait_for(lambda: count_rows(data_root, "futures/trades") >= 1000, 120,
                 interval=0.05, message="first shards")
        first = wait_for(lambda: _prism_children(proc.pid), 10, message="the Prism child")
        os.kill(first[0], signal.SIGKILL)
        wait_for(lambda: _prism_children(proc.pid) and _prism_children(proc.pid) != first, 60,
                 message="a restarted Prism")
        assert proc.poll() is None, "the launcher exited instead of restarting the job"
        publish(nats_server.url, events[half:])

        def unique_rows():
            return _unique_rows(data_root) == len(events)
        wait_for(unique_rows, 120, interval=1.0, message="every event after the restart")
        snap = samples(f"http://127.0.0.1:{port}")          # /metrics counts the restart
        assert value(snap, "marketlake_job_restarts_total") == 1
        # the restarted job's counters reach /metrics with the monitor's next poll
        wait_for(lambda: value(samples(f"http://127.0.0.1:{port}"),
                               "marketlake_rows_written_total") > 0, 60, interval=0.5,
                 message="rows written on /metrics")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
    finally:
        kill_group(proc)
    log = open(tmp_path / "a.log").read()
    assert "(1/5 within" in log
    assert_consumer_state(nats_server.url, "MARKET_DATA", "bronze_writer_market_data")


def test_bronze_writer_api_start_stop(nats_server, tmp_path):
    import asyncio
    from io_connectors.nats.bus import NatsBus
    from io_connectors.nats.settings import NatsSettings
    from pipelines.bronze_writer import BronzeWriter

    data_root = str(tmp_path / "lake")
    events = list(sample_events(HOUR_14, 20, trades_per_second=20, seed=5))

    async def go():
        bus = await NatsBus(NatsSettings(url=nats_server.url)).connect()
        writer = BronzeWriter(bus=bus, data_root=data_root, log_path=str(tmp_path / "w.log"))
        await writer.start()
        for subject, event in events:
            await bus.publish(subject, event)
        await bus.flush()
        code = await writer.stop()          # drain: everything buffered is written
        await bus.close()
        return code

    assert asyncio.run(go()) == 0
    assert sum(count_rows(data_root, d) for d in DATASETS) == len(events)
    assert_consumer_state(nats_server.url, "MARKET_DATA", "bronze_writer_market_data")


def test_bad_flags_stop_with_a_message(nats_server, tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "pipelines.bronze_stream", "--runner=DirectRunner",
                        f"--nats_url={nats_server.url}", "--ack_wait_s=3"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "ack_wait_s=3.0 is too short" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pipelines.bronze_stream", "--nats_url=http://x"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "must start with nats://" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pipelines.bronze_stream",
                        f"--nats_ur={nats_server.url}"],          # a typo: not a default
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown flag --nats_ur" in r.stderr
    assert "did you mean --nats_url?" in r.stderr


def test_burst_into_running_pipeline_lands_each_event_exactly_once(nats_server, tmp_path):
    """A burst of 200k events while the pipeline runs: every event exactly once, all acked
    promptly.  (A state-and-timer flush failed this on Prism: stale state across bundles.)"""
    import asyncio
    import nats

    data_root = str(tmp_path / "lake")
    events = [orjson.dumps(e) for s, e in sample_events(HOUR_14, 4000, trades_per_second=50)
              if s == "market.futures.trades"]
    assert len(events) == 200000
    proc = start_pipeline("pipelines.bronze_stream", f"--nats_url={nats_server.url}",
                          f"--data_root={data_root}", log_path=str(tmp_path / "b.log"))
    try:
        wait_for(lambda: consumer_bound(nats_server.url), 60, message="consumer bound")

        async def burst():
            nc = await nats.connect(nats_server.url)
            for i, payload in enumerate(events):
                await nc.publish("market.futures.trades", payload)
                if i % 5000 == 4999:
                    await nc.flush()
            await nc.flush()
            await nc.close()
        asyncio.run(burst())
        wait_for(lambda: consumer_state(nats_server.url, "MARKET_DATA",
                                        "bronze_writer_market_data") == (0, 0), 60,
                 interval=0.5, message="all acked")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
    finally:
        kill_group(proc)
    seqs = [s for p in parquet_files(data_root, "futures/trades")
            for s in pq.read_table(p, columns=["seq"])["seq"].to_pylist()]
    assert len(seqs) == len(events) and len(set(seqs)) == len(events)


def test_ctrl_c_to_the_process_group_drains(nats_server, tmp_path):
    """A terminal's Ctrl-C signals the whole group, Prism included; the drain still works."""
    data_root = str(tmp_path / "lake")
    events = list(sample_events(HOUR_14, 30, trades_per_second=20, seed=9))
    proc = start_pipeline("pipelines.bronze_stream", f"--nats_url={nats_server.url}",
                          f"--data_root={data_root}", log_path=str(tmp_path / "c.log"))
    try:
        wait_for(lambda: consumer_bound(nats_server.url), 60, message="consumer bound")
        publish(nats_server.url, events)
        kill_group(proc, signal.SIGINT)
        assert proc.wait(40) == 0, open(tmp_path / "c.log").read()[-3000:]
    finally:
        kill_group(proc)
    assert sum(count_rows(data_root, d) for d in DATASETS) == len(events)
    assert_consumer_state(nats_server.url, "MARKET_DATA", "bronze_writer_market_data")
