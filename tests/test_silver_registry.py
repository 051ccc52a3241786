"""The one registry of Silver stages (issue 13 item 4): every stage module registers its
stages, the manifest's lists are derived from it, each stage adds exactly the columns it
declares and reads only the parameters it declares, and the identity columns are defined once
(no module cycle between ``silver/day.py`` and a stage)."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
from collections.abc import Mapping

import pytest

import transforms.feature_manifest as fm
from io_connectors.lake.bronze_direct import write_bronze_events
from io_connectors.lake.silver_inputs import read_silver_day
from io_connectors.lake.storage import LakeStorage
from tests.silver_fixtures import MANIFEST, ROOT
from transforms.silver import stages as stages_mod
from transforms.silver.columns import IDENTITY_COLUMNS
from transforms.silver.day import DayFailure, SilverDay
from transforms.silver.stages import STAGES, apply_stage, stage_function, stage_spec
from transforms.synthetic_session import synthetic_session

DATE = "2024-12-16"


def test_every_stage_module_is_imported_and_registers_a_stage():
    modules = {os.path.basename(p)[:-3] for p in
               glob.glob(os.path.join(ROOT, "transforms", "silver", "stage_*.py"))}
    registered = {s.module.rsplit(".", 1)[1] for s in STAGES}
    assert modules == registered, f"not imported in transforms/silver/stages.py: " \
                                  f"{sorted(modules - registered)}"


def test_manifest_lists_are_derived_from_the_registry():
    assert fm.KNOWN_STAGES == tuple(s.id for s in STAGES)
    assert tuple(s for s in fm.KNOWN_STAGES if "@" not in s) == MANIFEST.stages   # v3.1.0: the 18
    assert fm.REQUIRED_PARAMETERS == {s.id: list(s.parameters) for s in STAGES}
    assert stages_mod.STAGE_MODULES["bars_2m"] == "stage_bars"
    assert [s.step for s in STAGES] == sorted(s.step for s in STAGES)
    assert fm.IDENTITY_COLUMNS is IDENTITY_COLUMNS                # defined once


def test_a_stage_is_looked_up_where_it_lives_so_patching_its_module_reaches_the_pipeline(
        monkeypatch):
    import transforms.silver.stage_kinematics as kin
    marker = object()
    monkeypatch.setattr(kin, "kinematics", lambda day: marker)
    assert stage_function("kinematics")(None) is marker
    with pytest.raises(KeyError, match="telepathy"):
        stage_spec("telepathy")


def test_day_module_imports_no_stage():
    code = ("import sys, transforms.silver.day; "
            "print(sorted(m for m in sys.modules if m.startswith('transforms.silver.stage')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


class _Recording(Mapping):
    """A read-only parameter mapping that records every dotted path read through it."""

    def __init__(self, data, seen, prefix=""):
        self._data, self._seen, self._prefix = data, seen, prefix

    def __getitem__(self, key):
        path = f"{self._prefix}{key}"
        self._seen.add(path)
        value = self._data[key]
        return _Recording(value, self._seen, path + ".") if isinstance(value, Mapping) else value

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    storage = LakeStorage(str(tmp_path_factory.mktemp("registry-lake")))
    for d, scale in (("2024-12-11", 0.005), ("2024-12-12", 0.005), ("2024-12-13", 0.005),
                     (DATE, 0.02)):
        write_bronze_events(storage, synthetic_session(d, scale=scale, seed=3, signals=False))
    return storage


@pytest.mark.parametrize("version", ["v3.1.0", "v3.2.0"])
def test_each_stage_adds_exactly_its_declared_columns_and_reads_only_its_parameters(lake,
                                                                                  version):
    MANIFEST = fm.load_manifest(os.path.join(ROOT, "configs", "features", f"{version}.yaml"))  # noqa: N806
    day = read_silver_day(lake, DATE, MANIFEST.parameters, MANIFEST.columns(),
                          MANIFEST.label_columns)
    for name in MANIFEST.stages:
        spec = stage_spec(name)
        seen: set = set()
        before = list(day.events.columns) if day.events is not None else []
        out = apply_stage(name, day.replace(params=_Recording(MANIFEST.parameters, seen)))
        assert isinstance(out, SilverDay), out
        out = out.replace(params=MANIFEST.parameters)
        if name != "rth_filter":                 # rth_filter keeps the declared columns only
            after = list(out.events.columns) if out.events is not None else []
            added = [c for c in after if c not in before]
            assert added == spec.produced_columns(MANIFEST.parameters), name
            assert set(before) - set(after) <= {"tape_volume_nonzero", "gex_nonzero"}
        undeclared = [p for p in seen
                      if not any(p == d or p.startswith(d + ".") for d in spec.parameters)]
        leaves = [p for p in undeclared if not any(d.startswith(p + ".") for d in spec.parameters)]
        assert not leaves, f"stage {name} reads undeclared parameter(s) {leaves}"
        day = out
    assert not isinstance(day, DayFailure) and len(day.episodes) == len(day.events)
