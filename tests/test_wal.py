"""WALManager: durability, recovery, trimming and corruption handling on real files; the
WAL-backed publisher against a real nats-server."""
from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys

import pytest

from io_connectors.wal.log import WALCorruption, WALManager
from tests.conftest import ROOT


def _payloads(n, start=0):
    return [{"i": i, "pad": "x" * 50} for i in range(start, start + n)]


def _segments(d):
    return sorted(n for n in os.listdir(d) if n.startswith("wal-"))


def test_append_flush_replay_and_reopen(tmp_path):
    d = str(tmp_path / "wal")
    with WALManager(d) as wal:
        seqs = [wal.append("market.futures.trades", p, msg_id=f"m{p['i']}") for p in _payloads(5)]
        assert seqs == [1, 2, 3, 4, 5]
        assert list(wal.replay()) == []                 # appended but not flushed: not durable
        assert wal.flush() == 5
        recs = list(wal.replay())
        assert [r.seq for r in recs] == seqs and recs[2].msg_id == "m2"
        assert recs[0].subject == "market.futures.trades"
        assert recs[4].payload == b'{"i":4,"pad":"' + b"x" * 50 + b'"}'
    with WALManager(d) as wal:
        assert wal.last_seq == 5 and wal.append("s", b"x") == 6


def test_checkpoint_trims_only_sealed_segments_and_keeps_later_appends(tmp_path):
    d = str(tmp_path / "wal")
    wal = WALManager(d, segment_bytes=300)
    for p in _payloads(12):
        wal.append("s", p)
        wal.flush()                                       # ~100-byte records: rolls often
    assert len(_segments(d)) >= 3
    wal.checkpoint(12)                                    # everything is downstream
    assert len(_segments(d)) == 1                         # the active segment stays
    wal.append("s", {"late": True})                       # appended after the checkpoint
    wal.flush()
    assert [r.payload for r in wal.replay()] == [b'{"late":true}']
    with pytest.raises(ValueError, match="flush first"):
        wal.append("s", b"y")
        wal.checkpoint(wal.last_seq)
    wal.close()
    with WALManager(d) as again:
        assert again.checkpointed_seq == 12
        assert [r.seq for r in again.replay()] == [13, 14]


def test_a_torn_tail_is_cut_and_logged(tmp_path, caplog):
    d = str(tmp_path / "wal")
    with WALManager(d) as wal:
        for p in _payloads(3):
            wal.append("s", p)
        wal.flush()
    seg = os.path.join(d, _segments(d)[-1])
    with open(seg, "ab") as fh:
        fh.write(b"\x40\x00\x00\x00\x12\x34")            # half a header: a write cut short
    with caplog.at_level(logging.WARNING, logger="io_connectors.wal.log"):
        with WALManager(d) as wal:
            assert wal.last_seq == 3 and len(list(wal.replay())) == 3
            wal.append("s", b"next")
            wal.flush()
            assert [r.seq for r in wal.replay()][-1] == 4
    assert "torn tail" in caplog.text


def _flip_byte_of_record(path, index):
    with open(path, "r+b") as fh:
        data = bytearray(fh.read())
        # find the start of record `index` by walking the length prefixes
        off = 0
        for _ in range(index):
            off += 8 + int.from_bytes(data[off:off + 4], "little")
        data[off + 20] ^= 0xFF
        fh.seek(0)
        fh.write(data)


def test_corruption_in_the_middle_is_never_skipped(tmp_path, caplog):
    d = str(tmp_path / "wal")
    with WALManager(d) as wal:
        for p in _payloads(6):
            wal.append("s", p)
        wal.flush()
    seg = os.path.join(d, _segments(d)[-1])
    _flip_byte_of_record(seg, 2)
    with pytest.raises(WALCorruption, match=r"offset \d+"):
        WALManager(d)
    with caplog.at_level(logging.ERROR, logger="io_connectors.wal.log"):
        with WALManager(d, on_corruption="quarantine") as wal:
            assert [r.seq for r in wal.replay()] == [1, 2]          # valid head kept
    assert os.listdir(os.path.join(d, "quarantine")) == [os.path.basename(seg)]
    assert "quarantined" in caplog.text


def test_corruption_in_a_sealed_segment_raises_even_at_its_end(tmp_path):
    d = str(tmp_path / "wal")
    with WALManager(d, segment_bytes=200) as wal:
        for p in _payloads(6):
            wal.append("s", p)
            wal.flush()
    first = os.path.join(d, _segments(d)[0])
    with open(first, "ab") as fh:
        fh.write(b"\x01\x02\x03")
    with pytest.raises(WALCorruption, match=os.path.basename(first)):
        WALManager(d)


def test_one_process_per_folder(tmp_path):
    d = str(tmp_path / "wal")
    with WALManager(d):
        with pytest.raises(RuntimeError, match="in use"):
            WALManager(d)


def test_flushed_records_survive_a_killed_process(tmp_path):
    d = str(tmp_path / "wal")
    code = ("import os, sys; sys.path.insert(0, %r)\n"
            "from io_connectors.wal.log import WALManager\n"
            "w = WALManager(%r)\n"
            "[w.append('s', {'i': i}) for i in range(100)]\n"
            "w.flush()\n"
            "[w.append('s', {'lost': i}) for i in range(5)]\n"
            "os.kill(os.getpid(), 9)\n") % (ROOT, d)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9
    with WALManager(d) as wal:
        recs = list(wal.replay())
    assert len(recs) == 100 and recs[-1].payload == b'{"i":99}'


def test_wal_publisher_resends_what_a_crashed_run_left_and_jetstream_drops_copies(
        nats_server, tmp_path):
    from io_connectors.nats.bus import NatsBus
    from io_connectors.nats.settings import NatsSettings
    from io_connectors.wal.publisher import WalPublisher
    from tests.helpers import stream_message_count
    d = str(tmp_path / "wal")
    settings = NatsSettings(url=nats_server.url)
    events = [("market.futures.trades", {"n": i}) for i in range(300)]

    # a "crashed" run: 300 events in the WAL, the first 100 already published, none checkpointed
    with WALManager(d) as wal:
        for i, (s, e) in enumerate(events):
            wal.append(s, e, msg_id=f"ev-{i}")
        wal.flush()

    async def partial():
        async with NatsBus(settings) as bus:
            for i, (s, e) in enumerate(events[:100]):
                await bus.publish(s, e, msg_id=f"ev-{i}")

    async def restart():
        async with NatsBus(settings) as bus:
            pub = WalPublisher(bus, WALManager(d), batch=50)
            n = await pub.recover()
            for i in range(300, 420):
                await pub.publish("market.futures.trades", {"n": i}, msg_id=f"ev-{i}")
            await pub.close()
            return n, bus.duplicates, pub.wal

    asyncio.run(partial())
    recovered, duplicates, wal = asyncio.run(restart())
    assert recovered == 300 and duplicates == 100          # JetStream dropped the copies
    assert stream_message_count(nats_server.url, "MARKET_DATA") == 420
    assert wal.checkpointed_seq == 420
    assert _segments(d) == []                   # a completed run leaves no dead segment
    with WALManager(d) as again:
        assert list(again.replay()) == []
        assert again.append("s", b"next") == 421     # sequence numbers never repeat


def test_close_keeps_a_segment_with_unconfirmed_records_and_drops_a_confirmed_one(tmp_path):
    d = str(tmp_path / "wal")
    with WALManager(d) as wal:
        for p in _payloads(5):
            wal.append("s", p)
        wal.flush()
        wal.checkpoint(3)
    assert len(_segments(d)) == 1                          # records 4 and 5 are not downstream
    with WALManager(d) as wal:
        assert [r.seq for r in wal.replay()] == [4, 5]
        wal.checkpoint(5)
    assert _segments(d) == []
    with WALManager(d) as wal:
        assert wal.last_seq == 5 and list(wal.replay()) == []


def test_opening_deletes_segments_a_killed_run_left_fully_checkpointed(tmp_path):
    d = str(tmp_path / "wal")
    code = ("import sys, os; sys.path.insert(0, %r)\n"
            "from io_connectors.wal.log import WALManager\n"
            "w = WALManager(%r, segment_bytes=300)\n"
            "for i in range(20):\n"
            "    w.append('s', {'i': i, 'pad': 'x' * 50}); w.flush()\n"
            "w.checkpoint(20)\n"
            "os._exit(0)\n") % (ROOT, d)             # killed: no close()
    subprocess.run([sys.executable, "-c", code], check=True)
    assert len(_segments(d)) == 1                          # the active one stayed behind
    with WALManager(d) as wal:
        assert _segments(d) == [] and wal.last_seq == 20


def test_a_completed_replay_wal_run_leaves_no_segment(nats_server, tmp_path):
    from tests.helpers import stream_message_count
    d = tmp_path / "wal"
    r = subprocess.run([sys.executable, "-m", "pipelines.replay", "--source", "synthetic",
                        "--date", "2024-12-16", "--scale", "0.01", "--speed", "0",
                        f"--nats_url={nats_server.url}", "--wal", str(d)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    total = int(next(l for l in r.stdout.splitlines() if l.startswith("total:")).split()[1])
    assert total > 1000
    assert stream_message_count(nats_server.url, "MARKET_DATA") + stream_message_count(
        nats_server.url, "LEVEL_SIGNALS") == total
    assert _segments(str(d)) == []
    assert sorted(os.listdir(d)) == [".lock", "checkpoint.json"]
