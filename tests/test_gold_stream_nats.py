"""gold_stream end to end against a real nats-server on the DirectRunner (Prism): the
synthetic session's ``levels.signals`` -> gold/levels/signals/root=/date=/hour=."""
from __future__ import annotations

import collections
import functools
import os
import signal
import subprocess
import sys
import time

import orjson
import pyarrow.parquet as pq
import pytest

from io_connectors.nats.streams import consumer_active
from tests.conftest import wait_for
from tests.helpers import (assert_consumer_state, assert_flush_shards, consumer_state,
                           count_rows, dead_letter_reasons, kill_group, lake_folder,
                           parquet_files, publish, start_pipeline)
from transforms.market_parse import utc_date_hour

pytestmark = pytest.mark.timeout(300)

STREAM, DURABLE = "LEVEL_SIGNALS", "gold_writer_levels_signals"
DATASET = "levels/signals"
MS_14_57 = 1734361020_000            # 2024-12-16T14:57:00Z
MS_15_03 = 1734361380_000            # 2024-12-16T15:03:00Z
MS_16 = 1734364800_000               # 2024-12-16T16:00:00Z
MS_17 = 1734368400_000               # 2024-12-16T17:00:00Z
BAD = [
    ("levels.signals", b"\xff\xfe\x00garbage"),
    ("levels.signals", b"{\"spy\": {\"spot\": 1, \"bid\": 1, \"ask\": 1}, \"levels\": []}"),
    ("levels.signals", orjson.dumps({"ts": MS_14_57, "spy": {"spot": 6000.0, "bid": 6000.0,
                                                             "ask": 6000.25},
                                     "levels": [{"id": "../etc"}]})),
    ("levels.signals", orjson.dumps({"ts": 1734361020, "spy": {}, "levels": []})),  # seconds
    ("levels.other", b"{}"),
]


@functools.lru_cache(maxsize=1)
def _session_signals() -> tuple:
    """The synthetic session's snapshots from 14:57 to 15:16 UTC (dicts, in order)."""
    from transforms.synthetic_session import synthetic_session
    out = []
    for subject, ev in synthetic_session("2024-12-16", scale=0.02, seed=1):
        if subject != "levels.signals":
            continue
        if ev["ts"] >= MS_15_03 + 13 * 60_000:
            break
        if ev["ts"] >= MS_14_57:
            out.append(ev)
    return tuple(out)


def _signals(lo_ms, hi_ms):
    return [ev for ev in _session_signals() if lo_ms <= ev["ts"] < hi_ms]


def _moved(ev, ts_ms, **changes):
    """A copy of snapshot ``ev`` at another time (e.g. to reach a new hour)."""
    return dict(ev, ts=ts_ms, **changes)


def _lake_rows(data_root):
    """[(path, row dict)] of every Gold level row."""
    return [(p, row) for p in parquet_files(data_root, DATASET, "gold")
            for row in pq.read_table(p).to_pylist()]


def test_stream_lands_every_level_dead_letters_bad_input_and_drains_on_sigterm(
        nats_server, tmp_path):
    data_root = str(tmp_path / "lake")
    log = str(tmp_path / "gold.log")
    main = _signals(MS_14_57, MS_15_03)          # 6 minutes across the 15:00 hour boundary
    assert len(main) == 1440 and all(ev["levels"] for ev in main)
    main_rows = sum(len(ev["levels"]) for ev in main)
    proc = start_pipeline("pipelines.gold_stream", f"--nats_url={nats_server.url}",
                          f"--data_root={data_root}", log_path=log)
    try:
        publish(nats_server.url, [("levels.signals", orjson.dumps(ev)) for ev in main] + BAD)
        wait_for(lambda: count_rows(data_root, DATASET, "gold") == main_rows, 120,
                 message="every level of the burst in Gold")
        # A tail for new hours, far fewer than 500 snapshots, so only the 10 s rule can
        # flush it while the pipeline keeps running: 5 snapshots at 16:00 (one of them
        # naming its underlying), 3 snapshots without levels at 17:00 (acked, no file).
        tail = [_moved(ev, MS_16 + i * 250) for i, ev in enumerate(main[:4])]
        tail.append(_moved(main[4], MS_16 + 1000, underlying="NQ"))
        empty = [_moved(ev, MS_17 + i * 250, levels=[]) for i, ev in enumerate(main[:3])]
        t0 = time.monotonic()
        publish(nats_server.url, [("levels.signals", orjson.dumps(ev)) for ev in tail + empty])
        tail_rows = sum(len(ev["levels"]) for ev in tail)
        wait_for(lambda: count_rows(data_root, DATASET, "gold") == main_rows + tail_rows, 40,
                 message="time-triggered shards")
        assert time.monotonic() - t0 < 25
        wait_for(lambda: consumer_state(nats_server.url, STREAM, DURABLE) == (0, 0), 40,
                 message="everything acked while running (empty snapshots included)")
        assert proc.poll() is None, "pipeline stopped by itself"

        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert proc.wait(40) == 0, open(log).read()[-3000:]
        assert time.monotonic() - t0 < 30
    finally:
        kill_group(proc)

    # every level row once, in the partition of its own ts and underlying
    published = main + tail
    want = collections.Counter((ev["ts"] * 10**6, ev.get("underlying", "ES"), lv["id"])
                               for ev in published for lv in ev["levels"])
    rows = _lake_rows(data_root)
    got = collections.Counter((r["ts_event_ns"], r["underlying"], r["level_id"]) for _, r in rows)
    assert got == want
    for path, r in rows:
        date, hour = utc_date_hour(r["ts_event_ns"])
        assert os.path.dirname(path) == lake_folder(data_root, "gold", DATASET,
                                                    r["underlying"], date, hour)
    folders = {os.path.dirname(p) for p, _ in rows}
    assert folders == {lake_folder(data_root, "gold", DATASET, u, "2024-12-16", h)
                       for u, h in (("ES", 14), ("ES", 15), ("ES", 16), ("NQ", 16))}
    assert not os.path.exists(lake_folder(data_root, "gold", DATASET, "ES", "2024-12-16", 17))
    # a sample row matches its payload field by field
    ev = main[700]
    lv = ev["levels"][1]
    r = next(r for _, r in rows if r["ts_event_ns"] == ev["ts"] * 10**6 and r["level_id"] == lv["id"])
    assert (r["spot"], r["bid"], r["ask"]) == (ev["spy"]["spot"], ev["spy"]["bid"], ev["spy"]["ask"])
    assert (r["barrier_added"], r["tape_sweep_detected"], r["fuel_hvl"], r["runway_quality"]) == \
        (lv["barrier"]["added"], lv["tape"]["sweep"]["detected"], lv["fuel"]["hvl"],
         lv["runway"]["quality"])

    # the flush counts snapshots: 500 per count-triggered shard, fewer when time-triggered;
    # a snapshot's rows are never split across shards
    snapshots_per_file = []
    owner = {}
    for path in parquet_files(data_root, DATASET, "gold"):
        t = pq.read_table(path, columns=["ts_event_ns", "underlying"])
        keys = set(zip(t["ts_event_ns"].to_pylist(), t["underlying"].to_pylist()))
        for k in keys:
            assert owner.setdefault(k, path) == path, f"snapshot {k} split across shards"
        snapshots_per_file.append(len(keys))
        ts = t["ts_event_ns"].to_pylist()
        assert ts == sorted(ts)
    assert_flush_shards(snapshots_per_file, 500)

    reasons = dead_letter_reasons(data_root, "gold", BAD)
    assert "UTF-8" in reasons[0]
    assert "missing field 'ts'" in reasons[1]
    assert "levels[0]: field 'id'='../etc' is not a plain identifier" in reasons[2]
    assert "'ts'=1734361020 out of range" in reasons[3]
    assert reasons[4] == "unknown subject 'levels.other'"
    assert_consumer_state(nats_server.url, STREAM, DURABLE)


def test_gold_writer_api_start_stop_drains_the_buffer(nats_server, tmp_path):
    """Fewer than 500 snapshots, stopped at once: only the drain can write them."""
    import asyncio

    import nats

    from io_connectors.nats.bus import NatsBus
    from io_connectors.nats.settings import NatsSettings
    from pipelines.gold_writer import GoldWriter

    data_root = str(tmp_path / "lake")
    events = _signals(MS_15_03, MS_15_03 + 10_000)          # 40 snapshots
    assert len(events) == 40

    async def go():
        bus = await NatsBus(NatsSettings(url=nats_server.url)).connect()
        writer = GoldWriter(bus=bus, data_root=data_root, log_path=str(tmp_path / "w.log"),
                            extra_args=["--underlying=MES"])
        await writer.start()
        nc = await nats.connect(nats_server.url)
        for _ in range(300):                  # its first pull requests reach the consumer
            if consumer_active(await nc.jetstream().consumer_info(STREAM, DURABLE)):
                break
            await asyncio.sleep(0.1)
        assert consumer_active(await nc.jetstream().consumer_info(STREAM, DURABLE))
        await nc.close()
        for ev in events:
            await bus.publish("levels.signals", ev)
        await bus.flush()
        code = await writer.stop()          # drain: everything buffered is written
        await bus.close()
        return code

    assert asyncio.run(go()) == 0
    rows = _lake_rows(data_root)
    assert len(rows) == sum(len(ev["levels"]) for ev in events)
    assert all(os.path.dirname(p) == lake_folder(data_root, "gold", DATASET, "MES",
                                                 "2024-12-16", 15) for p, _ in rows)
    assert_consumer_state(nats_server.url, STREAM, DURABLE)


def test_bad_flags_stop_with_a_message(nats_server):
    def run(*flags):
        return subprocess.run([sys.executable, "-m", "pipelines.gold_stream",
                               "--runner=DirectRunner", f"--nats_url={nats_server.url}", *flags],
                              capture_output=True, text=True, timeout=60)
    r = run("--ack_wait_s=20")
    assert r.returncode == 2 and "ack_wait_s=20.0 is too short for a 10.0s flush" in r.stderr
    r = run("--underlying=../x")
    assert r.returncode == 2 and "underlying '../x' is not a plain identifier" in r.stderr
    r = run("--flush_max_events=-1")
    assert r.returncode == 2 and "max_events >= 1" in r.stderr
