"""``python -m pipelines.lake``: the inventory and the dead letters of a real lake, local and
on S3 (SeaweedFS), checked against what pyarrow and DuckDB read from the same files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from io_connectors.embedded.s3_server import EmbeddedS3Server
from io_connectors.lake.bronze_direct import write_bronze_events
from io_connectors.lake.silver_store import SilverStore
from io_connectors.lake.storage import LakeStorage
from io_connectors.lake.training_store import TrainingStore
from tests.conftest import ROOT
from transforms.dead_letters import dead_letter
from transforms.partitioning import partition_folder, shard_layout
from transforms.schemas import DEAD_LETTER
from transforms.synthetic_session import synthetic_session

DATES = ("2024-12-13", "2024-12-16")
HOUR_14 = 1734357600 * 10**9
BAD = [(b"{not json", "market.futures.trades"), (b"\xff\xfe", "market.futures.trades"),
       (b'{"ts_event_ns": "yesterday"}', "market.futures.mbp10")]


def build_lake(storage: LakeStorage) -> dict:
    """Bronze for two dates, a day of dead letters, a Silver version, a training set."""
    counts = {}
    for d in DATES:
        got = write_bronze_events(storage, synthetic_session(d, scale=0.01, seed=3,
                                                             signals=False), shard_rows=2_000)
        for k, v in got.items():
            counts[k] = counts.get(k, 0) + v
    rows = [dead_letter((subject, payload, 100 + i, HOUR_14 + i, "t"), reason)[1][1]
            for i, ((payload, subject), reason) in enumerate(zip(BAD, (
                "payload is not JSON: unexpected character", "payload is not valid UTF-8",
                "field 'ts_event_ns' must be an integer, got str")))]
    folder, schema, _ = shard_layout("_dead_letter|2024-12-16")
    storage.write_parquet(folder, "part-140000-test.parquet",
                          pa.Table.from_pylist([dict(zip(DEAD_LETTER.names, r)) for r in rows],
                                               schema=schema))
    silver = SilverStore(storage)
    signals = pa.table({"event_id": ["a", "b", "c"], "date": ["2024-12-16"] * 3})
    silver.publish_date("v9.9.9", "2024-12-16", {"signals": signals,
                                                 "episodes": signals.slice(0, 1)}, {})
    training = TrainingStore(storage)
    staged = training.new_staging_file("demo")
    storage.publish(staged, pq_bytes(signals))
    training.publish(staged, "demo", {"silver_version": "v9.9.9", "created_at": "now",
                                      "signal_count": 3, "date_range": {}, "sha256": "-",
                                      "notes": "", "dates": ["2024-12-16"]})
    return counts


def pq_bytes(table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def lake_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pipelines.lake", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def local_lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("inventory")
    storage = LakeStorage(str(root))
    return storage, build_lake(storage)


def _by_name(out: str) -> dict:
    return {d["name"]: d for d in json.loads(out)}


def test_ls_counts_what_the_files_hold(local_lake):
    storage, counts = local_lake
    r = lake_cli("ls", "--json", f"--data_root={storage.data_root}")
    assert r.returncode == 0, r.stderr
    ds = _by_name(r.stdout)
    for path in ("futures/trades", "futures/mbp10", "options/trades"):
        d = ds[f"bronze/{path}"]
        folder = storage.path(partition_folder("bronze", path))
        files = [os.path.join(dp, f) for dp, _, fs in os.walk(folder) for f in fs
                 if f.endswith(".parquet")]
        assert d["rows"] == counts[path] == sum(pq.read_metadata(f).num_rows for f in files)
        assert d["files"] == len(files) and d["bytes"] == sum(map(os.path.getsize, files))
        assert d["roots"] == ["ES"] and d["dates"] == list(DATES)
        assert 0 <= d["newest_age_s"] < 3600
    trades_glob = storage.path(partition_folder("bronze", "futures/trades")) + "/**/*.parquet"
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{trades_glob}')").fetchall()[0][0] \
        == ds["bronze/futures/trades"]["rows"]
    dead = ds["bronze/_dead_letter"]
    assert dead["rows"] == 3 and dead["dead_letters"] == {"not_json": 1, "not_utf8": 1,
                                                           "wrong_type": 1}
    assert ds["gold/_dead_letter"]["rows"] == 0 and ds["gold/levels/signals"]["files"] == 0
    assert ds["silver/features/v9.9.9/signals"]["rows"] == 3
    assert ds["silver/features/v9.9.9/episodes"]["rows"] == 1
    assert ds["silver/features/v9.9.9/signals"]["dates"] == ["2024-12-16"]
    assert ds["silver/features/v9.9.9/state_table"]["files"] == 0
    assert ds["gold/training/demo"]["rows"] == 3 and ds["gold/training/demo"]["files"] == 1


def test_ls_narrows_by_dataset_and_date_and_prints_a_table(local_lake):
    storage, _ = local_lake
    one = _by_name(lake_cli("ls", "futures/trades", "--date", DATES[0], "--json",
                            f"--data_root={storage.data_root}").stdout)
    assert list(one) == ["bronze/futures/trades"] and one["bronze/futures/trades"]["dates"] \
        == [DATES[0]]
    full = _by_name(lake_cli("ls", "--json", f"--data_root={storage.data_root}").stdout)
    assert 0 < one["bronze/futures/trades"]["rows"] < full["bronze/futures/trades"]["rows"]
    assert set(_by_name(lake_cli("ls", "v9.9.9", "--json",
                                 f"--data_root={storage.data_root}").stdout)) == {
        f"silver/features/v9.9.9/{t}" for t in ("signals", "state_table", "episodes")}
    r = lake_cli("ls", f"--data_root={storage.data_root}")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0] == f"lake {storage.data_root}" and lines[1].split()[:4] == [
        "dataset", "roots", "dates", "files"]
    trades = next(l for l in lines if l.startswith("bronze/futures/trades "))
    assert f"{full['bronze/futures/trades']['rows']:,}" in trades
    assert f"{DATES[0]}..{DATES[1]} (2)" in trades
    dead = next(l for l in lines if l.startswith("bronze/_dead_letter "))
    assert "not_json 1" in dead and "wrong_type 1" in dead


def test_dead_letters_show_reasons_and_payload_excerpts(local_lake):
    storage, _ = local_lake
    r = lake_cli("dead-letters", "--date", "2024-12-16", f"--data_root={storage.data_root}")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("3 dead letters\n")
    assert "not_json: 1\n       1  payload is not JSON: unexpected character" in out
    assert "b'{not json'" in out and "b'\\xff\\xfe'" in out
    assert "bronze 2024-12-16T14:00:00Z market.futures.mbp10 seq 102" in out
    data = json.loads(lake_cli("dead_letters", "--json", "--layer", "bronze",
                               f"--data_root={storage.data_root}").stdout)
    assert [d["reason_class"] for d in data] == ["not_json", "not_utf8", "wrong_type"]
    assert lake_cli("dead-letters", "--date", "2024-12-17",
                    f"--data_root={storage.data_root}").stdout == "no dead letters\n"


def test_errors_name_the_problem(local_lake, tmp_path):
    storage, _ = local_lake
    r = lake_cli("ls", "nope", f"--data_root={storage.data_root}")
    assert r.returncode == 2 and "error: no dataset 'nope'" in r.stderr
    missing = tmp_path / "typo"
    r = lake_cli("ls", f"--data_root={missing}")
    assert r.returncode == 1 and f"error: no lake at {missing}" in r.stderr
    assert not missing.exists()
    r = lake_cli("ls", "--date", "2024-13-45", f"--data_root={storage.data_root}")
    assert r.returncode == 2 and "argument --date: '2024-13-45'" in r.stderr


def test_ls_on_s3_matches_the_local_lake(local_lake, tmp_path):
    storage, _ = local_lake
    with EmbeddedS3Server() as srv:
        root = f"{srv.create_bucket(f'inv-{uuid.uuid4().hex[:8]}')}/lake"
        s3 = LakeStorage(root, s3_endpoint=srv.endpoint, s3_access_key=srv.access_key,
                         s3_secret_key=srv.secret_key, s3_region=srv.region)
        build_lake(s3)
        r = lake_cli("ls", "--json", f"--data_root={root}", env=srv.env())
        assert r.returncode == 0, r.stderr
        remote = _by_name(r.stdout)
        local = _by_name(lake_cli("ls", "--json", f"--data_root={storage.data_root}").stdout)
        for name, d in local.items():
            for key in ("roots", "dates", "files", "rows", "dead_letters"):
                assert remote[name][key] == d[key], (name, key)
        assert remote["bronze/futures/trades"]["newest_age_s"] is not None
        r = lake_cli("dead-letters", f"--data_root={root}", env=srv.env())
        assert r.returncode == 0 and r.stdout.startswith("3 dead letters")


def test_ls_names_old_layout_parts_it_does_not_count(tmp_path):
    storage = LakeStorage(str(tmp_path))
    storage.write_parquet("bronze/futures/trades/symbol=ES/date=2024-12-16/hour=14", "p.parquet",
                          pa.table({"x": [1]}))
    r = lake_cli("ls", "futures/trades", "--json", f"--data_root={tmp_path}")
    assert r.returncode == 0 and _by_name(r.stdout)["bronze/futures/trades"]["rows"] == 0
    assert "note:" in r.stderr and "python -m pipelines.lake_migrate" in r.stderr
