"""A lake in the layout before issue 8 (``symbol=``/``underlying=`` folders, Silver dates as
one folder of tables, nanosecond timestamps) is refused by the readers with the migration
command, and ``python -m pipelines.lake_migrate`` moves it without losing a row."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from io_connectors.lake.bronze_direct import write_synthetic_sessions
from io_connectors.lake.bronze_reader import BronzeReader
from io_connectors.lake.legacy_layout import LegacyLayoutError, find_legacy
from io_connectors.lake.silver_store import SilverStore
from io_connectors.lake.storage import LakeStorage
from io_connectors.lake.training_store import TrainingStore
from tests.helpers import ROOT, lake_folder

DATE = "2024-12-16"
NS = 1_734_359_667_178_899_161


def _old_lake(root: str) -> dict:
    """Writes a lake in the old layout by hand; returns what it holds."""
    storage = LakeStorage(root)
    write_synthetic_sessions(storage, [DATE], scale=0.01, seed=5)
    for dataset, old in (("futures/trades", "symbol"), ("futures/mbp10", "symbol"),
                         ("options/trades", "underlying")):
        shutil.move(lake_folder(root, "bronze", dataset, "ES"),
                    os.path.join(root, "bronze", dataset, f"{old}=ES"))
    gold = os.path.join(root, "gold/levels/signals/underlying=ES", f"date={DATE}", "hour=14")
    os.makedirs(gold)
    pq.write_table(pa.table({"ts_event_ns": [NS], "underlying": ["ES"], "level_id": ["L1"]}),
                   os.path.join(gold, "part-143000-a.parquet"))
    stamps = pa.array([NS], pa.timestamp("ns", tz="UTC"))
    signals = pa.table({"event_id": ["e1"], "ts_ns": [NS], "timestamp": stamps,
                        "date": pa.array([18977], pa.date32())})
    silver = os.path.join(root, "silver/features/v3.1.0", f"date={DATE}")
    os.makedirs(silver)
    pq.write_table(signals, os.path.join(silver, "signals.parquet"))
    pq.write_table(signals.select(["ts_ns", "timestamp"]), os.path.join(silver,
                                                                        "state_table.parquet"))
    with open(os.path.join(silver, "lineage.json"), "w") as fh:
        json.dump({"date": DATE, "front_month": "ESH5"}, fh)
    training = os.path.join(root, "gold/training")
    os.makedirs(training)
    pq.write_table(signals, os.path.join(training, "old_set.parquet"))
    sha = hashlib.sha256(open(os.path.join(training, "old_set.parquet"), "rb").read()).hexdigest()
    meta = {"dataset_name": "old_set", "silver_version": "v3.1.0", "created_at": "x",
            "signal_count": 1, "date_range": {}, "notes": "", "sha256": sha}
    with open(os.path.join(training, "old_set_metadata.json"), "w") as fh:
        json.dump(meta, fh)
    rows = {d: sum(pq.read_metadata(os.path.join(folder, f)).num_rows
                   for folder, _, names in os.walk(os.path.join(root, "bronze", d))
                   for f in names)       # per file: the old layout breaks Hive readers
            for d in ("futures/trades", "futures/mbp10", "options/trades")}
    return {"rows": rows, "signals": signals}


def _cli(root, *args):
    return subprocess.run([sys.executable, "-m", "pipelines.lake_migrate",
                           f"--data_root={root}", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_an_old_lake_is_refused_then_migrated_without_loss(tmp_path):
    root = str(tmp_path / "lake")
    before = _old_lake(root)
    storage = LakeStorage(root)
    with pytest.raises(LegacyLayoutError, match="pipelines.lake_migrate"):
        BronzeReader(root).read_futures_trades("ES", DATE)
    with pytest.raises(LegacyLayoutError, match=r"date=2024-12-16"):
        SilverStore(storage).built_dates("v3.1.0")
    assert len(find_legacy(storage)) == 6     # 3 Bronze + Gold signals + Silver + training

    out = _cli(root, "--dry_run")
    assert out.returncode == 1 and "would move" in out.stdout
    assert len(find_legacy(storage)) == 6     # nothing moved

    out = _cli(root)
    assert out.returncode == 0, out.stdout + out.stderr
    fresh = LakeStorage(root)
    assert find_legacy(fresh) == []
    reader = BronzeReader(root)
    trades = reader.read_futures_trades("ES", DATE, front_month_only=False, dedupe=False)
    assert len(trades) == before["rows"]["futures/trades"] and set(trades["symbol"]) == \
        {"ESH5", "ESZ4"}
    assert len(reader.read_futures_mbp10("ES", DATE, front_month_only=False, dedupe=False)) \
        == before["rows"]["futures/mbp10"]
    assert len(reader.read_option_trades("ES", DATE, dedupe=False)) == \
        before["rows"]["options/trades"]
    assert pq.read_table(lake_folder(root, "gold", "levels/signals"))["root"].to_pylist() == ["ES"]

    store = SilverStore(fresh)
    assert store.built_dates("v3.1.0") == [DATE]
    signals = store.read_table("v3.1.0", DATE)
    assert signals["event_id"].to_pylist() == ["e1"] and signals["ts_ns"].to_pylist() == [NS]
    with open(fresh.path(store.table_file("v3.1.0", DATE)), "rb") as fh:
        assert pq.read_schema(fh).field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert store.has_table("v3.1.0", DATE, "state_table")
    assert not store.has_table("v3.1.0", DATE, "episodes")
    assert store.read_lineage("v3.1.0", DATE)["front_month"] == "ESH5"
    assert not os.path.exists(os.path.join(root, "silver/features/v3.1.0", f"date={DATE}"))

    training = TrainingStore(fresh)
    data = training.read_bytes(training.data_file("old_set"))
    assert pq.read_schema(pa.BufferReader(data)).field("timestamp").type.unit == "us"
    assert hashlib.sha256(data).hexdigest() == training.read_metadata("old_set")["sha256"] \
        == training.catalog()["datasets"]["old_set"]["sha256"]

    again = _cli(root)                       # idempotent
    assert again.returncode == 0 and "moved 0 Bronze/Gold files, 0 Silver files, 0 training" \
        in again.stdout
