"""Dead-feature checks of validation.json (issue 9): a feature column with one value over a
date, a numeric column over 95 % zeros, an episode position at the clip in over 10 % of the
events fail the validation unless the manifest declares them expected with a reason; every
check reports per column what it observed; a manifest without a quality section (v3.1.0)
gets the observations but no verdict."""
from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pytest
import yaml

from tests.silver_fixtures import MANIFEST, MANIFEST_PATH, at, declared_events_frame
from transforms.feature_manifest import ManifestError, load_manifest
from transforms.silver.quality import episode_positions
from transforms.silver.stage_rth_filter import to_declared_table
from transforms.silver.validation import validate_feature_set

DATE = "2024-12-16"
QUALITY = {"min_events_per_date": 20, "max_zero_share": 0.95, "max_saturated_share": 0.10}


def _manifest(expected=None, quality=True):
    raw = yaml.safe_load(open(MANIFEST_PATH))
    raw["version"] = "v9.0.0"
    if quality:
        raw["parameters"]["quality"] = dict(QUALITY, expected=copy.deepcopy(expected or {}))
    return load_manifest(raw)


def _signals(n=40, rng=None):
    """n events whose every feature varies (no zeros), except those the test sets."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for i in range(n):
        row = {"ts_ns": at(DATE, "10:00", 7 * i)}
        for name, dtype in MANIFEST.columns():
            if name in MANIFEST.feature_columns:
                if dtype.startswith("float"):                 # inside every value range
                    row[name] = float(rng.uniform(1.0 if name == "mass" else 0.2, 0.95 + (name == "mass")))
                elif dtype.startswith("int"):
                    row[name] = int(rng.integers(1, 5))
                elif dtype == "bool":
                    row[name] = bool(i % 2)
                else:
                    row[name] = ["A", "B"][i % 2]
        rows.append(row)
    return declared_events_frame(DATE, rows)


def _episodes(manifest, n, saturated=()):
    names = episode_positions(manifest)
    rng = np.random.default_rng(1)
    v = rng.uniform(-1, 1, (n, len(names))).astype(np.float32)
    for name in saturated:
        v[: n // 2, names.index(name)] = 4.0
    return pa.table({"vector": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()),
                                                                 len(names))})


def _validate(manifest, frame, episodes=None):
    return validate_feature_set(manifest, {DATE: to_declared_table(frame, manifest.columns())},
                                {DATE: {"front_month": "ESH5", "contracts_used": ["ESH5"]}},
                                {DATE: episodes} if episodes is not None else {})


def test_a_lively_feature_set_passes_every_dead_feature_check():
    m = _manifest()
    v = _validate(m, _signals(), _episodes(m, 40))
    for name in ("constant_features", "mostly_zero_features", "saturated_episode_dims"):
        assert v["checks"][name]["success"] is True, (name, v["checks"][name]["violations"])
    assert v["checks"]["constant_features"]["observed"]["tape_buy_vol"] == {DATE: 40}
    assert v["checks"]["mostly_zero_features"]["observed"]["tape_buy_vol"] == 0.0
    assert len(v["checks"]["saturated_episode_dims"]["observed"]) == 144
    assert v["success"] is True


def test_dead_columns_and_saturated_positions_fail_and_are_named():
    m = _manifest()
    frame = _signals()
    frame["tape_buy_vol"] = 0.0                              # constant (and all zero)
    frame.loc[:38, "ofi_30s"] = 0.0                          # 39 of 40 zeros: 97.5 %
    frame["fuel_effect"] = "NEUTRAL"                         # a constant string
    v = _validate(m, frame, _episodes(m, 40, saturated=["context.minutes_since_open"]))
    const = v["checks"]["constant_features"]
    assert const["success"] is False
    assert set(const["violations"]) == {"tape_buy_vol", "fuel_effect"}
    assert const["violations"]["fuel_effect"] == {DATE: 1}
    zeros = v["checks"]["mostly_zero_features"]
    assert zeros["success"] is False and zeros["violations"] == {"tape_buy_vol": 1.0,
                                                                  "ofi_30s": 0.975}
    sat = v["checks"]["saturated_episode_dims"]
    assert sat["success"] is False and sat["violations"] == {"context.minutes_since_open": 0.5}
    assert v["success"] is False


def test_a_declared_expectation_with_its_reason_waives_exactly_that_check():
    expected = {"ofi_30s": {"mostly_zero_features": "quiet book in this test"},
                "context.minutes_since_open": {"saturated_episode_dims": "a test reason"}}
    m = _manifest(expected)
    frame = _signals()
    frame.loc[:38, "ofi_30s"] = 0.0
    v = _validate(m, frame, _episodes(m, 40, saturated=["context.minutes_since_open"]))
    zeros = v["checks"]["mostly_zero_features"]
    assert zeros["success"] is True and zeros["expected"] == {"ofi_30s": "quiet book in this test"}
    assert v["checks"]["saturated_episode_dims"]["success"] is True
    frame["ofi_30s"] = 0.0                                    # now constant too: not waived
    v = _validate(m, frame, _episodes(m, 40))
    assert v["checks"]["constant_features"]["violations"] == {"ofi_30s": {DATE: 1}}


def test_too_few_events_on_a_date_skip_the_constant_check_for_it():
    m = _manifest()
    frame = _signals(n=5)
    frame["tape_buy_vol"] = 0.0
    const = _validate(m, frame)["checks"]["constant_features"]
    assert const["success"] is True and const["skipped_dates"] == [DATE]


def test_a_manifest_without_a_quality_section_reports_without_a_verdict():
    m = _manifest(quality=False)
    frame = _signals()
    frame["tape_buy_vol"] = 0.0
    v = _validate(m, frame)
    const = v["checks"]["constant_features"]
    assert const["success"] is None and const["enforced"] is False
    assert "no parameters.quality" in const["reason"]
    assert const["violations"] == {"tape_buy_vol": {DATE: 1}}     # observed all the same
    assert v["success"] is True


@pytest.mark.parametrize("expected,fragment", [
    ({"no_such_column": {"constant_features": "x"}}, "not a feature column"),
    ({"ofi_30s": {"constant_features": ""}}, "non-empty string"),
    ({"ofi_30s": {"telepathy": "x"}}, "unknown check"),
])
def test_bad_expectations_are_refused_naming_the_problem(expected, fragment):
    with pytest.raises(ManifestError, match=fragment):
        _manifest(expected)
