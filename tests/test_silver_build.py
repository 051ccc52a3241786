"""Silver end to end: synthetic sessions written to Bronze, built by SilverFeatureBuilder on
the DirectRunner (Prism), then read back; skip/force/failure semantics; lineage and
validation; version conflicts; the CLI's errors; causality over the whole pipeline."""
from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from io_connectors.lake.bronze_direct import write_bronze_events
from io_connectors.lake.storage import LakeStorage
from io_connectors.lake.silver_inputs import read_silver_day
from pipelines.silver_builder import SilverFeatureBuilder
from tests.silver_fixtures import MANIFEST, MANIFEST_PATH, ROOT
from transforms.feature_manifest import ManifestError, load_manifest
from transforms.silver.day import DayFailure
from transforms.silver.stages import run_stages
from transforms.synthetic_session import synthetic_session

SCALE = 0.05
V320_PATH = os.path.join(ROOT, "configs", "features", "v3.2.0.yaml")
WARMUP = ["2024-12-10", "2024-12-11", "2024-12-12"]
DAYS = ["2024-12-13", "2024-12-16"]           # 12-16's warm-up: 12-11, 12-12, 12-13


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("silver-lake")
    storage = LakeStorage(str(root))
    for d in WARMUP + DAYS:
        write_bronze_events(storage, synthetic_session(d, scale=SCALE, seed=7, signals=False))
    return storage


@pytest.fixture(scope="module")
def built(lake, prism_path):
    builder = SilverFeatureBuilder(storage=lake, pipeline_args=[
        "--runner=DirectRunner", f"--prism_location={prism_path}"])
    stats = builder.build_feature_set(MANIFEST_PATH, DAYS)
    return builder, stats


def test_build_writes_declared_schema_lineage_and_validation(built, lake):
    builder, stats = built
    assert stats["dates_built"] == DAYS and not stats["dates_failed"]
    assert stats["signal_count"] > 0 and stats["validation_success"] is True
    df = builder.load_features("v3.1.0")
    assert list(df.columns) == MANIFEST.column_names()
    assert len(df) == stats["signal_count"]
    assert df["ts_ns"].is_monotonic_increasing and df["event_id"].is_unique
    assert set(df["outcome"]) <= {"BREAK", "REJECT", "CHOP"}
    # RTH 09:30-12:30 ET only (EST in December: 14:30-17:30 UTC)
    minutes = df["timestamp"].dt.hour * 60 + df["timestamp"].dt.minute
    assert minutes.between(14 * 60 + 30, 17 * 60 + 29).all()
    schema = pq.read_schema(lake.path(builder.store.table_file("v3.1.0", DAYS[1])))
    assert schema.names == MANIFEST.column_names()
    assert schema.metadata[b"feature_manifest_version"] == b"v3.1.0"
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")    # Spark-readable
    assert df["timestamp"].dt.tz is not None and \
        (df["timestamp"].astype("int64") // 1000 == df["ts_ns"] // 1000).all()

    manifest = builder.get_manifest("v3.1.0")
    lineage = manifest["source"]["lineage"][DAYS[1]]
    trades = lineage["bronze"]["futures/trades"]
    assert trades["rows_used"] > 0 and len(trades["sha256"]) == 64 and trades["files"]
    assert [w["folder"].rsplit("=", 1)[1] for w in lineage["bronze"]["warmup"]] == \
        ["2024-12-11", "2024-12-12", "2024-12-13"]
    assert lineage["contracts_used"] == [lineage["front_month"]] == ["ESH5"]
    assert lineage["code"]["source_sha256"] and manifest["parameters"] == MANIFEST.parameters
    assert manifest["validation"]["signal_count"] == stats["signal_count"]

    validation = builder.get_validation("v3.1.0")
    names = {"schema_match", "rows_per_date", "null_rates", "value_ranges",
             "label_distribution", "duplicate_event_ids", "front_month_purity", "warmup"}
    assert names <= set(validation["checks"])
    for name in names:
        assert validation["checks"][name]["success"] is True, (name, validation["checks"][name])
    assert validation["checks"]["rows_per_date"]["observed"] == \
        {d: int((df["date"].astype(str) == d).sum()) for d in DAYS}
    assert builder.list_versions() == ["v3.1.0"]

    state = builder.load_table("v3.1.0", "state_table", [DAYS[1]])
    assert len(state) == 360 * len(MANIFEST.parameters["levels"]["kind_codes"])
    assert not [c for c in state.columns if c.startswith(("outcome", "time_to_"))]
    episodes = builder.load_table("v3.1.0", "episodes", [DAYS[1]])
    assert len(episodes) == int((df["date"].astype(str) == DAYS[1]).sum())
    assert all(len(v) == 144 and np.abs(v).max() <= 4.0 for v in episodes["vector"])


def test_built_dates_are_skipped_unless_forced_and_force_replaces_the_whole_date(built, lake):
    builder, _ = built
    before = builder.load_features("v3.1.0", [DAYS[0]])
    stats = builder.build_feature_set(MANIFEST_PATH, DAYS)
    assert stats["dates_skipped"] == DAYS and stats["dates_built"] == []
    files = {t: lake.path(builder.store.table_file("v3.1.0", DAYS[0], t))
             for t in ("signals", "state_table", "episodes")}
    inodes = {t: os.stat(p).st_ino for t, p in files.items()}
    stats = builder.build_feature_set(MANIFEST_PATH, [DAYS[0]], force=True)
    assert stats["dates_built"] == [DAYS[0]]
    for table, path in files.items():        # each table's file replaced whole, nothing beside
        assert os.stat(path).st_ino != inodes[table]
        assert os.listdir(os.path.dirname(path)) == ["part-0.parquet"]
    pd.testing.assert_frame_equal(builder.load_features("v3.1.0", [DAYS[0]]), before)


def test_a_failing_date_is_reported_and_does_not_stop_the_others(lake, prism_path):
    builder = SilverFeatureBuilder(storage=lake, pipeline_args=[
        "--runner=DirectRunner", f"--prism_location={prism_path}"])
    m = copy.deepcopy(yaml.safe_load(open(MANIFEST_PATH)))
    m["version"] = "v3.1.1"
    m["parent_version"] = "v3.1.0"
    m["parameters"]["zones"]["half_width_min"] = 4.0
    stats = builder.build_feature_set(m, ["2024-12-18", DAYS[1]])
    assert stats["dates_built"] == [DAYS[1]]
    assert "no Bronze futures trades" in stats["dates_failed"]["2024-12-18"]
    assert stats["dates_failed"]["2024-12-18"].startswith("load_bronze:")
    diff = builder.compare_versions("v3.1.0", "v3.1.1")
    assert diff["parameters"]["changed"] == {"zones.half_width_min": (5.0, 4.0)}
    assert diff["features"]["added"] == [] and len(diff["features"]["common"]) == 116
    assert builder.list_versions() == ["v3.1.0", "v3.1.1"]
    # same version, different content: refused, naming the changed parameter
    m["parameters"]["zones"]["half_width_min"] = 3.0
    with pytest.raises(ManifestError, match="half_width_min"):
        builder.build_feature_set(m, [DAYS[1]])


@pytest.mark.parametrize("manifest_path", [MANIFEST_PATH, V320_PATH])
def test_features_are_causal_over_the_whole_pipeline(lake, manifest_path):
    """Changing Bronze after time T leaves every feature of every event before T as it was;
    only labels (forward-looking by definition) may change.  For v3.1.0 and for v3.2.0
    (whose new and redefined columns are among the features compared)."""
    MANIFEST = load_manifest(manifest_path)  # noqa: N806  (shadows the v3.1.0 default)
    day = run_stages(read_silver_day(lake, DAYS[1], MANIFEST.parameters, MANIFEST.columns(),
                                     MANIFEST.label_columns), MANIFEST.stages)
    assert not isinstance(day, DayFailure), day
    events = day.events
    assert len(events) >= 2
    cut = int(events["ts_ns"].iloc[len(events) // 2]) + 1
    raw = read_silver_day(lake, DAYS[1], MANIFEST.parameters, MANIFEST.columns(),
                          MANIFEST.label_columns)
    raw = raw.replace(options=raw.options.copy())
    trades = raw.trades.copy()
    later = trades["ts_event_ns"] >= cut
    trades.loc[later, "price"] = trades.loc[later, "price"] + 37.25      # a different future
    trades.loc[later, "size"] = trades.loc[later, "size"] * 3
    mbp = raw.mbp.copy()
    mbp.loc[mbp["ts_event_ns"] >= cut, "bid_sz_1"] += 500
    options = raw.options.copy()
    options.loc[options["ts_event_ns"] >= cut, "size"] *= 7
    changed = run_stages(raw.replace(trades=trades, mbp=mbp, options=options), MANIFEST.stages)
    # and with everything after the cut removed (no later data at all)
    truncated = run_stages(raw.replace(trades=raw.trades[raw.trades["ts_event_ns"] < cut],
                                       mbp=raw.mbp[raw.mbp["ts_event_ns"] < cut],
                                       options=raw.options[raw.options["ts_event_ns"] < cut]),
                           MANIFEST.stages)
    features = [c for c in MANIFEST.column_names() if c not in MANIFEST.label_columns]
    a = events[events["ts_ns"] < cut][features].reset_index(drop=True)
    b = changed.events[changed.events["ts_ns"] < cut][features].reset_index(drop=True)
    assert len(a) and len(a) == len(b)
    pd.testing.assert_frame_equal(a, b)
    c = truncated.events[truncated.events["ts_ns"] < cut][features].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, c)
    # and the change is visible after the cut, so the comparison above is not vacuous
    after_a = day.events[day.events["ts_ns"] >= cut]
    after_b = changed.events[changed.events["ts_ns"] >= cut]
    assert not (len(after_a) == len(after_b) and after_a[features].reset_index(drop=True)
                .equals(after_b[features].reset_index(drop=True)))
    st_a = day.state_table[day.state_table["ts_ns"] < cut].reset_index(drop=True)
    st_b = changed.state_table[changed.state_table["ts_ns"] < cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(st_a, st_b)


def _cli(*args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "pipelines.silver_build", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)


def test_cli_rejects_a_bad_manifest_and_bad_dates_with_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    m = yaml.safe_load(open(MANIFEST_PATH))
    m["stages"] = m["stages"] + ["telepathy"]
    bad.write_text(yaml.safe_dump(m))
    out = _cli("--manifest", str(bad), "--dates", "2024-12-16", "--data_root", str(tmp_path))
    assert out.returncode == 2 and "telepathy" in out.stderr
    out = _cli("--manifest", MANIFEST_PATH, "--dates", "2024-13-01", "--data_root",
               str(tmp_path))
    assert out.returncode == 2 and "2024-13-01" in out.stderr
    out = _cli("--manifest", MANIFEST_PATH, "--dates", "all", "--data_root", str(tmp_path))
    assert out.returncode == 2 and "no Bronze futures trades" in out.stderr


def test_the_same_pipeline_on_another_runner_gives_the_same_features(built, lake, tmp_path):
    """Nothing in the Silver pipeline depends on Prism: Beam's FnApiRunner with two worker
    processes builds the same signals (here into a second lake over the same Bronze)."""
    builder, _ = built
    other_root = tmp_path / "other"
    other_root.mkdir()
    os.symlink(lake.path("bronze"), other_root / "bronze")
    other = SilverFeatureBuilder(data_root=str(other_root), pipeline_args=[
        "--runner=FnApiRunner", "--direct_running_mode=multi_processing",
        "--direct_num_workers=2"])
    stats = other.build_feature_set(MANIFEST_PATH, DAYS)
    assert stats["dates_built"] == DAYS
    pd.testing.assert_frame_equal(other.load_features("v3.1.0"),
                                  builder.load_features("v3.1.0"))


def test_cli_rejects_a_misspelled_flag_naming_it(tmp_path):
    out = _cli("--manifest", MANIFEST_PATH, "--dates", "2024-12-16", "--froce",
               "--data_root", str(tmp_path))
    assert out.returncode == 2 and "unknown flag --froce (did you mean --force?)" in out.stderr


def test_v320_builds_beside_v310_compares_and_validation_passes(built, lake):
    """v3.2.0 is built into its own version beside v3.1.0 (which is untouched); the
    comparison lists added, removed and redefined columns; the dead-feature checks report
    per column and pass.  On these light days (about 50 option trades each, scale 0.05) net
    dealer gamma near the levels of 2024-12-16 never leaves the +-25 band, so fuel_effect is
    NEUTRAL all that day: the manifest declares that expected, with its reason, and the
    check lists it under ``expected`` instead of failing."""
    builder, _ = built
    before = builder.load_features("v3.1.0")
    stats = builder.build_feature_set(V320_PATH, DAYS)
    assert stats["dates_built"] == DAYS and not stats["dates_failed"]
    m = load_manifest(V320_PATH)
    df = builder.load_features("v3.2.0")
    assert list(df.columns) == m.column_names() and len(df) == stats["signal_count"]
    pd.testing.assert_frame_equal(builder.load_features("v3.1.0"), before)

    diff = builder.compare_versions("v3.1.0", "v3.2.0")
    assert diff["features"]["removed"] == ["tape_volume_nonzero", "gex_nonzero"]
    for new in ("book_imbalance_5", "gamma_at_level_strike", "gex_0dte_above_2strike",
                "level_velocity_1min", "tape_imbalance_trend", "strength_abs",
                "excursion_favorable_atr"):
        assert new in diff["features"]["added"], new
    assert "stage physics -> physics@2" in diff["redefined"]["tape_buy_vol"]
    assert "stage labels -> labels@2" in diff["redefined"]["outcome"]
    assert "dist_pm_high" not in diff["redefined"] and "event_id" not in diff["redefined"]

    v = builder.get_validation("v3.2.0")
    for name in ("constant_features", "mostly_zero_features", "saturated_episode_dims"):
        check = v["checks"][name]
        assert check["enforced"] is True and check["observed"] and check["success"] is True
    assert list(v["checks"]["constant_features"]["expected"]) == ["fuel_effect"]
    assert v["success"] is True and stats["validation_success"] is True
    assert set(df["outcome"]) == {"BREAK", "REJECT", "CHOP"}
    old = builder.get_validation("v3.1.0")["checks"]["constant_features"]
    assert old["success"] is None and "tape_buy_vol" in old["violations"]  # v3.1.0 is dead there


def test_a_dead_feature_fails_the_build_validation_and_the_gold_gate(built, lake):
    """A version whose fuel thresholds are v3.1.0's +-10,000 (out of the feature's range,
    so fuel_effect can only be NEUTRAL) and that does not declare it expected: the build's
    validation fails naming the column, and Gold refuses to promote the version."""
    from pipelines.gold_curator import GoldCurator, PromotionError
    builder, _ = built
    raw = yaml.safe_load(open(V320_PATH))
    raw["version"] = "v3.2.1"
    raw["parameters"]["physics"].update(fuel_amplify_threshold=-10000.0,
                                        fuel_dampen_threshold=10000.0)
    raw["parameters"]["quality"]["expected"] = {}
    stats = builder.build_feature_set(raw, DAYS)
    assert stats["dates_built"] == DAYS and stats["validation_success"] is False
    check = builder.get_validation("v3.2.1")["checks"]["constant_features"]
    assert set(check["violations"]) == {"fuel_effect"}
    assert check["violations"]["fuel_effect"][DAYS[1]] == 1
    assert stats["validation_failed_checks"] == {
        "constant_features": str(check["violations"])}
    with pytest.raises(PromotionError, match="silver_validation.*constant_features"):
        GoldCurator(storage=lake).promote_to_training("v3.2.1", "dead_fuel")
