"""The one storage API (publish, publish-if-absent, exchange, lock, list) on both backends:
local disk and a real S3 server (SeaweedFS), the same assertions for each."""
from __future__ import annotations

import concurrent.futures as cf
import json
import threading
import time
import uuid

import pyarrow as pa
import pytest

from io_connectors.embedded.s3_server import EmbeddedS3Server
from io_connectors.lake.backends.s3 import S3RequestError
from io_connectors.lake.silver_store import SilverStore
from io_connectors.lake.storage import LakeStorage

S3_VARS = ("S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_REGION", "USE_S3", "DATA_ROOT")


@pytest.fixture(scope="module")
def s3_server():
    with EmbeddedS3Server() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_ambient_s3_env(monkeypatch):
    for name in S3_VARS:
        monkeypatch.delenv(name, raising=False)


def _s3(server, **override) -> LakeStorage:
    bucket = server.create_bucket(f"api-{uuid.uuid4().hex[:12]}")
    args = dict(s3_endpoint=server.endpoint, s3_access_key=server.access_key,
                s3_secret_key=server.secret_key, s3_region=server.region)
    args.update(override)
    return LakeStorage(f"{bucket}/lake", **args)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LakeStorage(str(tmp_path / "lake"))
    return _s3(request.getfixturevalue("s3_server"))


def test_the_backend_is_chosen_by_the_url_scheme(tmp_path):
    assert type(LakeStorage(str(tmp_path)).backend).__name__ == "LocalBackend"
    file_url = LakeStorage(f"file://{tmp_path}/x")
    assert file_url.scheme == "file" and file_url.path("a") == f"{tmp_path}/x/a"
    assert type(LakeStorage("s3://bucket/p").backend).__name__ == "S3Backend"
    with pytest.raises(ValueError, match="unsupported storage scheme 'ftp://'"):
        LakeStorage("ftp://host/lake")


def test_publish_replaces_whole_and_reads_back(storage):
    assert storage.read_bytes("d/x.json") is None
    storage.publish("d/x.json", b'{"v": 1}')
    storage.publish("d/x.json", b'{"v": 2}')
    assert json.loads(storage.read_bytes("d/x.json")) == {"v": 2}
    assert storage.list_files("d", suffix="") == [storage.path("d/x.json")]   # no temp left
    assert storage.delete("d/x.json") and not storage.delete("d/x.json")
    assert not storage.exists("d/x.json")


def test_publish_if_absent_never_overwrites_and_one_racer_wins(storage):
    storage.publish_if_absent("p/a.bin", b"first")
    with pytest.raises(FileExistsError):
        storage.publish_if_absent("p/a.bin", b"second")
    assert storage.read_bytes("p/a.bin") == b"first"

    def race(i):
        try:
            storage.publish_if_absent("p/race.bin", f"writer {i}".encode())
            return i
        except FileExistsError:
            return None
    with cf.ThreadPoolExecutor(8) as pool:
        winners = [i for i in pool.map(race, range(8)) if i is not None]
    assert len(winners) == 1
    assert storage.read_bytes("p/race.bin") == f"writer {winners[0]}".encode()


def test_exchange_puts_a_staged_file_in_place(storage):
    storage.publish("t/.staged-1", b"new")
    storage.exchange("t/.staged-1", "t/data.bin")             # no target yet
    storage.publish("t/.staged-2", b"newer")
    storage.exchange("t/.staged-2", "t/data.bin")             # replaces the target
    assert storage.read_bytes("t/data.bin") == b"newer"
    assert not storage.exists("t/.staged-1") and not storage.exists("t/.staged-2")


def test_lock_excludes_other_holders_and_times_out(storage):
    inside, overlaps = [], []

    def critical(i):
        with storage.lock("l/.lock", timeout_s=60):
            inside.append(i)
            if len(inside) > 1:
                overlaps.append(list(inside))
            time.sleep(0.05)
            inside.remove(i)
    threads = [threading.Thread(target=critical, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps
    with storage.lock("l/.lock"):
        got = []

        def other():
            try:
                with storage.lock("l/.lock", timeout_s=0.3):
                    got.append("acquired")
            except TimeoutError as exc:
                got.append(str(exc))
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert "still held" in got[0]
    with storage.lock("l/.lock", timeout_s=1):              # released: free again
        pass


def test_a_stale_s3_lease_is_taken_over(s3_server):
    storage = _s3(s3_server)
    # a holder that crashed long ago left its lease behind
    storage.publish("l/.lock", json.dumps({"owner": "dead:1", "expires_at": time.time() - 5})
                    .encode())
    with storage.lock("l/.lock", timeout_s=5):
        assert "dead:1" not in storage.read_bytes("l/.lock").decode()
    assert not storage.exists("l/.lock")                     # released


def test_s3_errors_are_oserrors_with_the_s3_code(s3_server):
    good = _s3(s3_server)
    bad = LakeStorage(good.data_root, s3_endpoint=s3_server.endpoint,
                      s3_access_key=s3_server.access_key, s3_secret_key="wrong",
                      s3_region=s3_server.region)
    with pytest.raises(S3RequestError, match="SignatureDoesNotMatch|AccessDenied") as info:
        bad.publish("x.bin", b"1")
    assert isinstance(info.value, OSError) and info.value.status == 403
    assert not good.exists("x.bin")                          # nothing was written


def test_timestamps_are_stored_as_microseconds_and_read_back_as_ns(storage):
    ns = 1_734_359_667_178_899_161
    table = pa.table({"ts_ns": pa.array([ns], pa.int64()),
                      "timestamp": pa.array([ns], pa.timestamp("ns", tz="UTC"))})
    rel = storage.write_parquet("ts", "a.parquet", table)
    import pyarrow.parquet as pq
    with storage.fs.open_input_file(storage.path(rel)) as fh:
        assert pq.read_schema(fh).field("timestamp").type == pa.timestamp("us", tz="UTC")
    back = storage.read_parquet(rel)
    assert back.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert back["ts_ns"][0].as_py() == ns                                    # exact
    assert back["timestamp"].cast(pa.int64())[0].as_py() == ns // 1000 * 1000  # to the µs


def test_silver_store_publishes_one_file_per_table_and_drops_a_table_no_longer_built(storage):
    store = SilverStore(storage)
    t = pa.table({"x": [1, 2]})
    store.publish_date("v1", "2024-12-16", {"signals": t, "state_table": t, "episodes": t},
                       {"date": "2024-12-16"})
    assert store.built_dates("v1") == ["2024-12-16"]
    store.publish_date("v1", "2024-12-16", {"signals": t.slice(0, 1), "state_table": t},
                       {"date": "2024-12-16", "rebuilt": True})
    assert not store.has_table("v1", "2024-12-16", "episodes")
    assert store.read_table("v1", "2024-12-16")["x"].to_pylist() == [1]
    assert store.read_lineage("v1", "2024-12-16")["rebuilt"] is True
    with pytest.raises(ValueError, match="signals required"):
        store.publish_date("v1", "2024-12-17", {"state_table": t}, {})
