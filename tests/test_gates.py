"""Gates that hold (issue 8): a Silver date built without its warm-up weekdays names them
and fails validation; a Silver version whose validation failed is not promoted unless
overridden, the override is recorded and ``--validate`` reports it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from io_connectors.lake.bronze_direct import write_synthetic_sessions
from io_connectors.lake.storage import LakeStorage
from pipelines.gold_curator import GoldCurator, PromotionError
from pipelines.silver_builder import SilverFeatureBuilder
from tests.silver_fixtures import MANIFEST_PATH, ROOT
from transforms.gold_validation import silver_validation_gate

DATE = "2024-12-16"
WARMUP = ["2024-12-11", "2024-12-12", "2024-12-13"]
VERSION = "v3.1.0"


@pytest.fixture(scope="module")
def cold_lake(tmp_path_factory, prism_path):
    """Bronze of DATE only (its warm-up weekdays never backfilled), built to Silver."""
    storage = LakeStorage(str(tmp_path_factory.mktemp("cold-lake")))
    write_synthetic_sessions(storage, [DATE], scale=0.05, seed=3)
    args = ["--runner=DirectRunner", f"--prism_location={prism_path}"]
    stats = SilverFeatureBuilder(storage=storage, pipeline_args=args).build_feature_set(
        MANIFEST_PATH, [DATE])
    return storage, stats, args


def test_missing_warmup_dates_are_named_and_fail_validation(cold_lake):
    storage, stats, _ = cold_lake
    assert stats["dates_built"] == [DATE] and stats["validation_success"] is False
    assert all(d in stats["warnings"][DATE] for d in WARMUP)
    assert "warmup" in stats["validation_failed_checks"]
    validation = SilverFeatureBuilder(storage=storage).get_validation(VERSION)
    check = validation["checks"]["warmup"]
    assert check["success"] is False and check["missing_weekdays"] == {DATE: WARMUP}
    assert all(d in check["failed_dates"][DATE] for d in WARMUP)


def test_a_failed_validation_blocks_promotion_unless_overridden(cold_lake):
    storage, _, args = cold_lake
    curator = GoldCurator(storage=storage, pipeline_args=args)
    with pytest.raises(PromotionError, match=r"gate silver_validation failed: .*warmup.*"
                                             r"--allow_failed_validation"):
        curator.promote_to_training(VERSION, "cold", causality_dates=0)
    assert not storage.exists("gold/training/cold.parquet") and curator.list_datasets() == []

    result = curator.promote_to_training(VERSION, "cold", causality_dates=0,
                                         allow_failed_validation=True)
    assert result["gates"]["silver_validation"]["success"] is False
    override = curator.get_metadata("cold")["overrides"]["silver_validation"]
    assert "warmup" in override["failed_checks"] and override["by"]
    report = curator.validate_dataset("cold")
    assert report["success"] is False and report["row_count_matches_metadata"] is True
    assert report["silver_validation"]["overridden"] is True


def test_the_cli_refuses_names_the_flag_and_validate_reports_the_override(cold_lake,
                                                                          prism_path):
    storage, _, _ = cold_lake

    def cli(*a):
        return subprocess.run([sys.executable, "-m", "pipelines.gold_promote", *a,
                               f"--data_root={storage.data_root}", "--log_level=WARNING",
                               f"--prism_location={prism_path}", "--causality_dates=0"],
                              cwd=ROOT, capture_output=True, text=True, timeout=180)
    out = cli("--silver_version", VERSION, "--dataset", "cold_cli")
    assert out.returncode == 1 and "silver_validation" in out.stderr
    out = cli("--silver_version", VERSION, "--dataset", "cold_cli", "--allow_failed_validation")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "overridden by --allow_failed_validation" in out.stdout
    out = cli("--validate", "cold_cli")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["silver_validation"]["overridden"] is True


def test_the_silver_build_cli_names_the_missing_warmup(cold_lake, tmp_path, prism_path):
    storage, _, _ = cold_lake
    manifest = yaml.safe_load(open(MANIFEST_PATH))
    manifest["version"] = "v3.1.8"
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(manifest))
    out = subprocess.run([sys.executable, "-m", "pipelines.silver_build", "--manifest",
                          str(path), "--dates", DATE, f"--data_root={storage.data_root}",
                          f"--prism_location={prism_path}", "--log_level=WARNING"],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{DATE}  WARNING warm-up weekdays missing in Bronze: {', '.join(WARMUP)}" in out.stdout
    assert "validation check warmup FAILED" in out.stdout


def test_the_gate_reads_the_overall_result_whatever_the_checks():
    ok = {"success": True, "dates": [DATE], "checks": {"a_new_check": {"success": True}}}
    assert silver_validation_gate(ok, [DATE])["success"] is True
    bad = {"success": False, "dates": [DATE],
           "checks": {"a_new_check": {"success": False}, "old": {"success": True}}}
    gate = silver_validation_gate(bad, [DATE])
    assert gate["success"] is False and gate["observed"]["failed_checks"] == ["a_new_check"]
    gate = silver_validation_gate(ok, [DATE, "2024-12-17"])       # a date never validated
    assert gate["success"] is False and "2024-12-17" in gate["reason"]
    assert silver_validation_gate(None)["success"] is False
