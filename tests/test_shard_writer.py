"""WriteParquetShards and LakeStorage: exact schema, sorting, atomic never-overwriting writes."""
import os

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from io_connectors.lake_storage import LakeStorage
from io_connectors.parquet_shards import WriteParquetShards
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
    folder = tmp_path / "bronze/futures/trades/symbol=ES/date=2024-12-16/hour=14"
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
    assert os.listdir(tmp_path / "a") == []
