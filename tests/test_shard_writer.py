"""WriteParquetShards and LakeStorage: exact schema, sorting, atomic never-overwriting writes."""
import os
from pathlib import Path

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from io_connectors.lake.storage import LakeStorage
from tests.helpers import lake_folder
from io_connectors.lake.parquet_shards import WriteParquetShards
from transforms.market_parse import parse_market_event
from transforms.partitioning import bronze_key, shard_layout
from transforms.schemas import FUTURES_TRADES

T0 = 1734359400_000000000


def _row(dt_ms, seq, symbol="ESZ4"):
    ev = dict(ts_event_ns=T0 + dt_ms * 10**6, ts_recv_ns=T0 + dt_ms * 10**6 + 1, source="sim",
              symbol=symbol, price=6000.0 + seq, size=1, aggressor=1, seq=seq)
    return parse_market_event("market.futures.trades", orjson.dumps(ev)).row


def test_each_shard_one_sorted_zstd_file_in_its_partition(tmp_path, prism_options):
    storage = LakeStorage(str(tmp_path))
    key = bronze_key("futures/trades", "ES", "2024-12-16", 14)
    shards = [(key, [(None, _row(ms, ms)) for ms in (30, 10, 20)]),
              (key, [(None, _row(ms, ms, "ESH5")) for ms in (5, 1)])]
    with TestPipeline(options=prism_options(streaming=False)) as p:
        written = p | beam.Create(shards) | WriteParquetShards(storage, shard_layout, None)
        assert_that(written | beam.Map(lambda r: r[1]), equal_to([3, 2]))
    folder = Path(lake_folder(str(tmp_path), "bronze", "futures/trades", "ES", "2024-12-16", 14))
    files = sorted(os.listdir(folder))
    assert len(files) == 2 and all(f.startswith("part-1430") and f.endswith(".parquet") for f in files)
    tables = [pq.read_table(folder / f) for f in files]
    for t in tables:
        assert t.schema == FUTURES_TRADES
        ts = t["ts_event_ns"].to_pylist()
        assert ts == sorted(ts)
    assert sorted(s for t in tables for s in t["symbol"].to_pylist()) == \
        ["ESH5", "ESH5", "ESZ4", "ESZ4", "ESZ4"]
    meta = pq.ParquetFile(folder / files[0]).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_write_is_atomic_and_never_overwrites(tmp_path):
    storage = LakeStorage(str(tmp_path))
    table = pa.table({"x": [1, 2, 3]})
    rel = storage.write_parquet("a/b", "part-1.parquet", table)
    assert pq.read_table(tmp_path / rel)["x"].to_pylist() == [1, 2, 3]
    with pytest.raises(FileExistsError):
        storage.write_parquet("a/b", "part-1.parquet", pa.table({"x": [9]}))
    assert pq.read_table(tmp_path / rel)["x"].to_pylist() == [1, 2, 3]
    assert os.listdir(tmp_path / "a/b") == ["part-1.parquet"], "no temporary file left"
    assert storage.list_files("a") == [str(tmp_path / rel)]


def test_failed_write_leaves_nothing_visible(tmp_path):
    storage = LakeStorage(str(tmp_path))
    with pytest.raises(Exception):
        storage.write_parquet("a", "part-2.parquet", None)   # not a table: the write fails
    assert not (tmp_path / "a").exists() or os.listdir(tmp_path / "a") == []


def test_a_write_failing_on_disk_leaves_no_temporary_file(tmp_path, monkeypatch):
    storage = LakeStorage(str(tmp_path))

    def no_space(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        storage.write_parquet("a", "part-3.parquet", pa.table({"x": [1]}))
    assert os.listdir(tmp_path / "a") == []


# --------------------------------------------------------------------------- None tokens/rows

def test_split_shard_drops_none_tokens_and_none_rows():
    from io_connectors.lake.parquet_shards import split_shard
    assert split_shard([("t1", "a"), (None, "b"), ("t2", None), ("t3", "c")]) == \
        (["t1", "t2", "t3"], ["a", "b", "c"])
    assert split_shard([("t1", None), ("t2", None)]) == (["t1", "t2"], [])
    assert split_shard([(None, "a")]) == ([], ["a"])


def _gold_rows(n_levels, ts_ms):
    from tests.test_level_signals import level, snapshot
    from transforms.level_signals import parse_level_signals
    ev = snapshot([level(id=f"L{i}") for i in range(n_levels)], ts=ts_ms)
    return parse_level_signals(orjson.dumps(ev), "ES").rows


def test_gold_shard_with_shared_and_missing_tokens_writes_every_row(tmp_path, prism_options):
    from transforms.gold_route import flatten_signal_shard
    from transforms.partitioning import gold_shard_layout
    from transforms.schemas import LEVEL_SIGNALS
    storage = LakeStorage(str(tmp_path))
    key = bronze_key("levels/signals", "ES", "2024-12-16", 14)
    shard = flatten_signal_shard((key, [("t1", _gold_rows(3, 1734359401_000)), ("t2", []),
                                        ("t3", _gold_rows(2, 1734359400_500))]))
    empty = flatten_signal_shard((key, [("t4", []), ("t5", [])]))
    with TestPipeline(options=prism_options(streaming=False)) as p:
        written = (p | beam.Create([shard, empty])
                   | WriteParquetShards(storage, gold_shard_layout, None))
        assert_that(written | beam.Map(lambda r: r[1]), equal_to([5]))
    folder = Path(lake_folder(str(tmp_path), "gold", "levels/signals", "ES", "2024-12-16", 14))
    files = os.listdir(folder)
    assert len(files) == 1 and files[0].startswith("part-143000-")
    t = pq.read_table(folder / files[0])
    assert t.schema == LEVEL_SIGNALS and t.num_rows == 5
    assert t["ts_event_ns"].to_pylist() == [1734359400_500 * 10**6] * 2 + [1734359401_000 * 10**6] * 3
    assert sorted(os.listdir(lake_folder(str(tmp_path), "gold", "levels/signals", "ES"))) == \
        [os.path.basename(lake_folder("", "gold", "levels/signals", "ES", "2024-12-16"))]


def test_a_shard_without_rows_is_acked_without_a_file(nats_server, tmp_path, prism_options):
    """Snapshots without levels: nothing to write, but their messages must be acked (not
    left to redelivery forever)."""
    import asyncio

    import nats

    from io_connectors.nats.settings import NatsSettings
    from tests.helpers import consumer_state
    from transforms.gold_route import flatten_signal_shard
    from transforms.partitioning import gold_shard_layout

    async def fetch_tokens(n):
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        try:
            await js.add_stream(name="LEVEL_SIGNALS", subjects=["levels.*"])
            for i in range(n):
                await js.publish("levels.signals", orjson.dumps(
                    {"ts": 1734359400_000 + i, "spy": {"spot": 1.0, "bid": 1.0, "ask": 1.0},
                     "levels": []}))
            sub = await js.pull_subscribe("levels.signals", "empty_test", stream="LEVEL_SIGNALS")
            return [m.reply for m in await sub.fetch(n, timeout=5)]
        finally:
            await nc.close()

    tokens = asyncio.run(fetch_tokens(3))
    assert consumer_state(nats_server.url, "LEVEL_SIGNALS", "empty_test") == (0, 3)
    key = bronze_key("levels/signals", "ES", "2024-12-16", 14)
    shard = flatten_signal_shard((key, [(t, []) for t in tokens]))
    storage = LakeStorage(str(tmp_path / "lake"))
    with TestPipeline(options=prism_options(streaming=False)) as p:
        written = (p | beam.Create([shard])
                   | WriteParquetShards(storage, gold_shard_layout,
                                        NatsSettings(url=nats_server.url)))
        assert_that(written, equal_to([]))
    assert consumer_state(nats_server.url, "LEVEL_SIGNALS", "empty_test") == (0, 0)
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("*.parquet"))
