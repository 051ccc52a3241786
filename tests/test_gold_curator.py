"""GoldCurator: Silver -> Gold training dataset on the DirectRunner (Prism): gates really
evaluated (a leaky stage and duplicated events are refused), atomic publish, metadata,
catalog without duplicates, validation catching a tampered file, the CLI."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from io_connectors.lake.bronze_direct import write_synthetic_sessions
from io_connectors.lake.silver_store import SilverStore
from io_connectors.lake.storage import LakeStorage
from pipelines.gold_curator import GoldCurator, PromotionError
from pipelines.silver_builder import SilverFeatureBuilder
from tests.silver_fixtures import MANIFEST, MANIFEST_PATH, ROOT

DATES = ["2024-12-13", "2024-12-16"]
METADATA_KEYS = {"dataset_name", "silver_version", "created_at", "signal_count",
                 "feature_count", "date_range", "notes", "manifest"}


@pytest.fixture(scope="module")
def lake(tmp_path_factory, prism_path):
    storage = LakeStorage(str(tmp_path_factory.mktemp("gold-lake")))
    write_synthetic_sessions(storage, ["2024-12-10", "2024-12-11", "2024-12-12"] + DATES,
                             scale=0.05, seed=3)
    stats = SilverFeatureBuilder(storage=storage, pipeline_args=[
        "--runner=DirectRunner", f"--prism_location={prism_path}"]).build_feature_set(
            MANIFEST_PATH, DATES)
    assert stats["dates_built"] == DATES and stats["signal_count"] > 0
    return storage


@pytest.fixture
def curator(lake, prism_path):
    return GoldCurator(storage=lake, pipeline_args=["--runner=DirectRunner",
                                                    f"--prism_location={prism_path}"])


def test_promotion_publishes_data_metadata_and_one_catalog_entry(curator, lake):
    result = curator.promote_to_training("v3.1.0", "signals_production", notes="first")
    assert {g: result["gates"][g]["success"] for g in result["gates"]} == {
        "silver_validation": True, "schema": True, "purity": True, "labels_named": True,
        "causality": True}
    assert result["gates"]["causality"]["checks"][0]["reproduces_stored_features"] is True
    assert result["gates"]["causality"]["checks"][0]["events_compared"] >= 1
    silver = SilverFeatureBuilder(storage=lake).load_features("v3.1.0")
    gold = curator.load_dataset("signals_production")
    assert list(gold.columns) == MANIFEST.column_names()
    assert sorted(gold["event_id"]) == sorted(silver["event_id"])
    meta = curator.get_metadata("signals_production")
    assert METADATA_KEYS <= set(meta)
    assert meta["signal_count"] == len(gold) == result["signal_count"]
    assert meta["date_range"] == {"start": DATES[0], "end": DATES[1]}
    assert meta["feature_count"] == len(MANIFEST.feature_columns)
    assert meta["manifest"]["version"] == "v3.1.0" and meta["notes"] == "first"
    assert [d["dataset_name"] for d in curator.list_datasets()] == ["signals_production"]
    assert not [n for n in os.listdir(lake.path("gold/training")) if n.startswith(".staging")]

    with pytest.raises(PromotionError, match="exists"):
        curator.promote_to_training("v3.1.0", "signals_production")
    again = curator.promote_to_training("v3.1.0", "signals_production", notes="second",
                                        force=True)
    assert again["replaced"] is True
    catalog = curator.list_datasets()
    assert len(catalog) == 1 and catalog[0]["notes"] == "second"      # replaced, not appended


def test_validate_dataset_reports_and_catches_tampering(curator, lake):
    curator.promote_to_training("v3.1.0", "to_tamper", force=True, causality_dates=0)
    report = curator.validate_dataset("to_tamper")
    assert report["success"] is True and report["row_count_matches_metadata"] is True
    assert report["column_count"] == len(MANIFEST.column_names())
    assert sum(report["label_distribution"].values()) == report["row_count"]
    assert report["date_coverage"]["unique_dates"] == 2
    assert report["gates"]["causality"]["success"] is None             # said so, not claimed
    path = lake.path("gold/training/to_tamper.parquet")
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1), path)
    report = curator.validate_dataset("to_tamper")
    assert report["success"] is False
    assert report["row_count_matches_metadata"] is False
    assert report["sha256_matches_metadata"] is False


def test_a_leaky_stage_fails_the_causality_gate_and_publishes_nothing(curator, lake,
                                                                      monkeypatch):
    import transforms.silver.stage_kinematics as kin
    honest = kin.kinematics

    def leaky(day):            # velocity from the LAST trade of the day: looks ahead
        out = honest(day)
        last = float(day.trades["price"].iloc[-1])
        events = out.events.copy()
        events["velocity_1min"] = last - events["entry_price"]
        return out.replace(events=events)

    monkeypatch.setattr(kin, "kinematics", leaky)
    with pytest.raises(PromotionError, match="causality"):
        curator.promote_to_training("v3.1.0", "leaky")
    assert not lake.exists("gold/training/leaky.parquet")
    assert "leaky" not in [d["dataset_name"] for d in curator.list_datasets()]


def test_duplicate_events_fail_the_purity_gate(curator, lake, tmp_path):
    path = lake.path(SilverStore(lake).table_file("v3.1.0", DATES[1]))
    original = pq.read_table(path)
    try:
        pq.write_table(pa.concat_tables([original, original.slice(0, 1)]), path)
        with pytest.raises(PromotionError, match="purity"):
            curator.promote_to_training("v3.1.0", "dupes", causality_dates=0)
    finally:
        pq.write_table(original, path)
    assert not lake.exists("gold/training/dupes.parquet")


def test_bad_names_and_unknown_versions(curator):
    with pytest.raises(ValueError, match="dataset name"):
        curator.promote_to_training("v3.1.0", "../escape")
    with pytest.raises(KeyError, match="v9.9.9"):
        curator.promote_to_training("v9.9.9", "x")
    with pytest.raises(KeyError, match="2024-12-18"):
        curator.promote_to_training("v3.1.0", "x", dates=["2024-12-18"])


def test_cli_promote_validate_and_list(lake, prism_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "pipelines.gold_promote", *args,
                               f"--data_root={lake.data_root}", "--log_level=WARNING",
                               f"--prism_location={prism_path}"],
                              cwd=ROOT, capture_output=True, text=True, timeout=180)
    out = cli("--silver_version", "v3.1.0", "--dataset", "cli_set", "--force")
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"gate causality +passed", out.stdout) and "cli_set.parquet" in out.stdout
    assert re.search(r"gate silver_validation +passed", out.stdout)
    out = cli("--validate", "cli_set")
    assert out.returncode == 0 and json.loads(out.stdout)["success"] is True
    out = cli("--list")
    assert "cli_set" in out.stdout
    out = cli("--dataset", "x")
    assert out.returncode == 2 and "--silver_version" in out.stderr
    out = cli("--validate", "nope")
    assert out.returncode == 2 and "nope" in out.stderr
