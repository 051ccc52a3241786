"""Feature manifest (configs/features/v3.1.0.yaml): loading, validation errors, comparison."""
from __future__ import annotations

import copy
import os

import pyarrow as pa
import pytest
import yaml

from transforms.feature_manifest import (
    IDENTITY_COLUMNS, KNOWN_STAGES, REQUIRED_PARAMETERS, FeatureManifest, ManifestError,
    compare_manifests, flatten_parameters, load_manifest,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V310 = os.path.join(ROOT, "configs", "features", "v3.1.0.yaml")


@pytest.fixture(scope="module")
def good():
    with open(V310, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _group(d, name):
    return next(g for g in d["feature_groups"] if g["name"] == name)


def _raises(d, *fragments):
    with pytest.raises(ManifestError) as ei:
        load_manifest(d)
    msg = str(ei.value)
    for f in fragments:
        assert f in msg, msg
    return msg


# --- the shipped manifest -------------------------------------------------------------------

def test_shipped_manifest_loads():
    m = load_manifest(V310)
    assert isinstance(m, FeatureManifest)
    assert m.version == "v3.1.0" and m.parent_version is None
    assert m.stages == tuple(s for s in KNOWN_STAGES if "@" not in s) and len(m.stages) == 18
    assert m.identity_columns == [n for n, _ in IDENTITY_COLUMNS]
    assert len(m.identity_columns) == 10
    assert m.label_columns[0] == "outcome"
    assert {"outcome", "outcome_2min", "outcome_8min"} <= set(m.label_columns)
    assert 40 <= len(m.feature_columns) <= 110
    names = m.column_names()
    assert len(names) == len(set(names)) == 10 + len(m.feature_columns) + len(m.label_columns)
    with pytest.raises(Exception):
        m.version = "v9.9.9"  # frozen


def test_shipped_parameters_match_reference():
    m = load_manifest(V310)
    p = m.parameter
    assert (p("session.rth_start"), p("session.rth_end")) == ("09:30", "12:30")
    assert p("session.timezone") == "America/New_York"
    assert (p("bars.price_min"), p("bars.price_max")) == (3000.0, 10000.0)
    assert (p("bars.atr_bars"), p("bars.vol_bars"), p("bars.warmup_weekdays")) == (14, 20, 3)
    assert p("bars.sma_periods") == [200, 400]
    assert (p("options.risk_free_rate"), p("options.sigma")) == (0.045, 0.20)
    assert p("options.contract_multiplier") == 50
    assert p("levels.kind_codes") == {"PM_HIGH": 0, "PM_LOW": 1, "OR_HIGH": 2, "OR_LOW": 3,
                                      "SMA_200": 6, "SMA_400": 12}
    assert p("kinematics.windows_min") == [1, 3, 5, 10, 20]
    assert p("order_flow.windows_s") == [30, 60, 120, 300]
    assert p("labels.horizons_min") == [2, 4, 8] and p("labels.primary_horizon_min") == 4
    assert p("episodes.dims") == 144 == sum(p("episodes.components").values())
    for stage, keys in REQUIRED_PARAMETERS.items():
        assert stage in KNOWN_STAGES
        for k in keys:
            assert p(k) is not None, (stage, k)


def test_arrow_schema():
    m = load_manifest(V310)
    s = m.arrow_schema()
    assert isinstance(s, pa.Schema)
    assert s.names == m.column_names()
    assert s.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert s.field("date").type == pa.date32()
    assert s.field("level_kind").type == pa.int8()
    assert s.field("outcome").type == pa.string()
    pa.Table.from_pylist([], schema=s)  # usable as a table schema


def test_load_from_dict_equals_file(good):
    assert load_manifest(good).columns() == load_manifest(V310).columns()
    assert load_manifest(load_manifest(V310).to_dict()).columns() == load_manifest(V310).columns()


# --- validation errors ----------------------------------------------------------------------

def test_malformed_yaml_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("version: v3.1.0\nstages: [load_bronze\n  name: : x\n")
    with pytest.raises(ManifestError) as ei:
        load_manifest(str(f))
    assert "malformed YAML" in str(ei.value) and str(f) in str(ei.value)


def test_non_mapping_and_missing_file(tmp_path):
    f = tmp_path / "list.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ManifestError, match="top level must be a mapping"):
        load_manifest(str(f))
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(str(tmp_path / "nope.yaml"))


def test_error_names_file(tmp_path, good):
    d = copy.deepcopy(good)
    d["version"] = "3.1.0"
    f = tmp_path / "v.yaml"
    f.write_text(yaml.safe_dump(d))
    with pytest.raises(ManifestError) as ei:
        load_manifest(str(f))
    assert str(f) in str(ei.value) and "bad version" in str(ei.value)


@pytest.mark.parametrize("key", ["version", "stages", "parameters", "feature_groups"])
def test_missing_top_level_key(good, key):
    d = copy.deepcopy(good)
    del d[key]
    _raises(d, "missing top-level key", key)


def test_unknown_top_level_key(good):
    d = copy.deepcopy(good)
    d["paramters"] = {}
    _raises(d, "unknown top-level key", "paramters")


@pytest.mark.parametrize("v", ["3.1.0", "v3.1", "v3.1.0-rc1", "V3.1.0", 3.1])
def test_bad_version(good, v):
    d = copy.deepcopy(good)
    d["version"] = v
    _raises(d, "bad version", "vMAJOR.MINOR.PATCH")


def test_bad_parent_version(good):
    d = copy.deepcopy(good)
    d["parent_version"] = "3.0"
    _raises(d, "bad parent_version")
    d["parent_version"] = "v3.0.0"
    assert load_manifest(d).parent_version == "v3.0.0"


def test_unknown_stage(good):
    d = copy.deepcopy(good)
    d["stages"].insert(3, "sentiment")
    _raises(d, "unknown stage", "sentiment")


def test_stage_out_of_order(good):
    d = copy.deepcopy(good)
    d["stages"][6], d["stages"][7] = d["stages"][7], d["stages"][6]
    _raises(d, "out of canonical order", "physics")


def test_duplicate_stage(good):
    d = copy.deepcopy(good)
    d["stages"].insert(2, "bars_1m")
    _raises(d, "duplicate stage", "bars_1m")


def test_missing_parameter(good):
    d = copy.deepcopy(good)
    del d["parameters"]["physics"]["barrier_window_s"]
    _raises(d, "missing parameter", "physics.barrier_window_s", "'physics'")


def test_missing_parameter_only_for_listed_stages(good):
    d = copy.deepcopy(good)
    del d["parameters"]["episodes"]
    _raises(d, "missing parameter", "episodes.dims")
    d["stages"].remove("episodes")
    assert "episodes" not in load_manifest(d).stages


def test_dependency_on_unlisted_stage(good):
    d = copy.deepcopy(good)
    d["stages"].remove("gex")
    _raises(d, "group 'gex'", "not listed in stages")


def test_duplicate_column(good):
    d = copy.deepcopy(good)
    _group(d, "gex")["columns"].append({"name": "ofi_60s", "dtype": "float64"})
    _raises(d, "duplicate column", "ofi_60s", "'order_flow'", "'gex'")


def test_unknown_dtype(good):
    d = copy.deepcopy(good)
    _group(d, "physics")["columns"][0]["dtype"] = "double"
    _raises(d, "unknown dtype", "double", "tape_buy_vol")


def test_column_not_a_mapping(good):
    d = copy.deepcopy(good)
    _group(d, "gex")["columns"].append("gex_extra")
    _raises(d, "must be a mapping {name, dtype}")


def test_identity_group_missing(good):
    d = copy.deepcopy(good)
    d["feature_groups"] = [g for g in d["feature_groups"] if g["name"] != "identity"]
    _raises(d, "identity group", "missing")


def test_identity_missing_column(good):
    d = copy.deepcopy(good)
    cols = _group(d, "identity")["columns"]
    cols[:] = [c for c in cols if c["name"] != "zone_width"]
    _raises(d, "exactly the 10 identity columns", "missing", "zone_width")


def test_identity_extra_column(good):
    d = copy.deepcopy(good)
    _group(d, "identity")["columns"].append({"name": "symbol", "dtype": "string"})
    _raises(d, "exactly the 10 identity columns", "extra", "symbol")


def test_identity_wrong_dtype(good):
    d = copy.deepcopy(good)
    _group(d, "identity")["columns"][1]["dtype"] = "int32"
    _raises(d, "exactly the 10 identity columns", "dtypes", "ts_ns:int64")


def test_label_column_outside_labels_group(good):
    d = copy.deepcopy(good)
    _group(d, "approach")["columns"].append({"name": "outcome_16min", "dtype": "string"})
    _raises(d, "outcome_16min", "named as a label", "'approach'")


def test_labels_group_column_not_named_as_label(good):
    d = copy.deepcopy(good)
    _group(d, "labels")["columns"].append({"name": "future_return", "dtype": "float64"})
    _raises(d, "future_return", "not named as a label")


def test_labels_group_missing(good):
    d = copy.deepcopy(good)
    d["feature_groups"] = [g for g in d["feature_groups"] if g["name"] != "labels"]
    _raises(d, "labels group", "missing")


# --- comparison -----------------------------------------------------------------------------

def test_compare_manifests(good):
    d = copy.deepcopy(good)
    d["version"] = "v3.2.0"
    d["parent_version"] = "v3.1.0"
    _group(d, "order_flow")["columns"].append({"name": "ofi_600s", "dtype": "float64"})
    kin = _group(d, "kinematics")["columns"]
    kin[:] = [c for c in kin if c["name"] != "jerk_20min"]
    _group(d, "gex")["columns"][0]["dtype"] = "float32"
    d["parameters"]["order_flow"]["windows_s"] = [30, 60, 120, 300, 600]
    d["parameters"]["physics"]["barrier_window_s"] = 120
    d["parameters"]["labels"]["new_knob"] = 1
    del d["parameters"]["order_flow"]["method"]

    diff = compare_manifests(V310, d)
    assert diff["versions"] == ("v3.1.0", "v3.2.0")
    assert diff["features"]["added"] == ["ofi_600s"]
    assert diff["features"]["removed"] == ["jerk_20min"]
    assert "event_id" in diff["features"]["common"] and "jerk_20min" not in diff["features"]["common"]
    assert diff["dtype_changes"] == {"gex_above_1strike": ("float64", "float32")}
    assert diff["parameters"]["changed"] == {
        "order_flow.windows_s": ([30, 60, 120, 300], [30, 60, 120, 300, 600]),
        "physics.barrier_window_s": (240, 120),
    }
    assert diff["parameters"]["added"] == {"labels.new_knob": 1}
    assert diff["parameters"]["removed"] == {"order_flow.method": "best_bid_ask_ofi"}
    assert diff["stages"] == {"added": [], "removed": [], "changed": {}}
    red = diff["redefined"]
    assert red["gex_above_1strike"] == ["dtype float64 -> float32"]
    assert "parameter physics.barrier_window_s: 240 -> 120" in red["barrier_depth_start"]
    assert "parameter order_flow.windows_s: [30, 60, 120, 300] -> [30, 60, 120, 300, 600]" \
        in red["ofi_30s"]
    assert "force" in red                                   # its group reads physics' output
    assert "velocity_1min" not in red and "dist_pm_high" not in red and "event_id" not in red
    assert diff["features"]["redefined"] == list(red)


def test_compare_identical_and_flatten():
    m = load_manifest(V310)
    diff = compare_manifests(m, m)
    assert diff["features"]["added"] == diff["features"]["removed"] == []
    assert len(diff["features"]["common"]) == len(m.columns())
    assert diff["parameters"] == {"added": {}, "removed": {}, "changed": {}}
    flat = flatten_parameters({"a": {"b": {"c": 1}, "d": [1, 2]}, "e": 3})
    assert flat == {"a.b.c": 1, "a.d": [1, 2], "e": 3}


def test_readme_column_table_is_the_v320_manifest():
    import re
    from transforms.feature_manifest import column_table
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    m = re.search(r"<!-- column-table v3.2.0 -->\n(.*?)\n<!-- /column-table -->", readme, re.S)
    assert m, "README lost its v3.2.0 column table"
    assert m.group(1) == column_table(os.path.join(ROOT, "configs", "features", "v3.2.0.yaml"))


def test_v320_documents_every_column_and_keeps_v310_free_of_docs():
    v32 = load_manifest(os.path.join(ROOT, "configs", "features", "v3.2.0.yaml"))
    for g in v32.feature_groups:
        for c in g.columns:
            assert c.definition and (c.unit or c.dtype in ("string", "bool", "int8", "date32")
                                     or g.name in ("identity",) or c.name.startswith("outcome")), c
    assert v32.parent_version == "v3.1.0"
    # v3.1.0's stored manifest (to_dict) is exactly what it was: no new keys appear
    assert all(set(c) == {"name", "dtype"} for g in load_manifest(V310).to_dict()["feature_groups"]
               for c in g["columns"])
