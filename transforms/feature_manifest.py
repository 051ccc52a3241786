"""Silver feature-set manifest: load, validate and compare (pure; needs pyyaml, pyarrow for schemas).

A manifest (e.g. ``configs/features/v3.1.0.yaml``) declares the ordered pipeline stages, their
parameters and the output columns, grouped into feature groups.

Rules checked by :func:`load_manifest` (every failure raises :class:`ManifestError` naming the
problem and the source file):

* the YAML parses and its top level is a mapping with the keys of ``REQUIRED_KEYS``; unknown
  top-level keys other than the build-time keys of ``BUILD_KEYS`` are rejected;
* ``version`` (and ``parent_version`` when not null) match ``vMAJOR.MINOR.PATCH``;
* ``stages`` is a non-empty subset of ``KNOWN_STAGES``, in canonical order, without duplicates;
* every parameter in ``REQUIRED_PARAMETERS[stage]`` (dotted path into ``parameters``) exists for
  each listed stage;
* each feature group has a name (unique), description, columns given as ``{name, dtype}`` with a
  dtype of ``DTYPES``, and dependencies that are listed stages;
* column names are unique across all groups;
* an ``identity`` group exists and holds exactly ``IDENTITY_COLUMNS`` (names, order, dtypes);
* label rule: a ``labels`` group exists; every one of its columns starts with one of
  ``LABEL_PREFIXES`` and no column outside it does (so forward-looking columns are always named,
  and grouped, as labels);
* every declared column is produced by one of the listed stages (each stage declares the
  columns it adds in the registry, ``transforms/silver/registry.py``).

``KNOWN_STAGES`` and ``REQUIRED_PARAMETERS`` are derived from that registry; the identity
columns, label prefixes and dtypes are defined once in ``transforms/silver/columns.py``.
"""
from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import yaml

from transforms.silver.columns import (DTYPES, IDENTITY_COLUMNS, LABEL_PREFIXES,  # noqa: F401
                                       arrow_type)
# derived from the stage registry (transforms/silver/registry.py)
from transforms.silver.stages import KNOWN_STAGES, REQUIRED_PARAMETERS, stage_spec  # noqa: F401

REQUIRED_KEYS: Tuple[str, ...] = ("version", "name", "description", "stages", "parameters",
                                  "feature_groups")
OPTIONAL_KEYS: Tuple[str, ...] = ("parent_version", "tags", "notes")
# Keys the Silver builder adds when it writes manifest.yaml next to the data (§2); accepted, ignored.
BUILD_KEYS: Tuple[str, ...] = ("created_at", "created_by", "source", "validation")

VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+$")

IDENTITY_GROUP = "identity"
LABELS_GROUP = "labels"


class ManifestError(ValueError):
    """A feature manifest is malformed or inconsistent."""


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str


@dataclass(frozen=True)
class FeatureGroup:
    name: str
    description: str
    columns: Tuple[Column, ...]
    dependencies: Tuple[str, ...]


@dataclass(frozen=True)
class FeatureManifest:
    version: str
    name: str
    description: str
    parent_version: Optional[str]
    tags: Tuple[str, ...]
    notes: str
    stages: Tuple[str, ...]
    parameters: Mapping[str, Any]
    feature_groups: Tuple[FeatureGroup, ...]
    source: str = "<dict>"

    def columns(self) -> List[Tuple[str, str]]:
        """All output columns in declaration order as (name, dtype)."""
        return [(c.name, c.dtype) for g in self.feature_groups for c in g.columns]

    def column_names(self) -> List[str]:
        return [n for n, _ in self.columns()]

    def group(self, name: str) -> FeatureGroup:
        for g in self.feature_groups:
            if g.name == name:
                return g
        raise KeyError(name)

    @property
    def identity_columns(self) -> List[str]:
        return [c.name for c in self.group(IDENTITY_GROUP).columns]

    @property
    def label_columns(self) -> List[str]:
        return [c.name for c in self.group(LABELS_GROUP).columns]

    @property
    def feature_columns(self) -> List[str]:
        """Columns that are neither identity nor labels."""
        return [c.name for g in self.feature_groups if g.name not in (IDENTITY_GROUP, LABELS_GROUP)
                for c in g.columns]

    def parameter(self, dotted: str) -> Any:
        return _get_dotted(self.parameters, dotted)

    def arrow_schema(self):
        import pyarrow as pa
        return pa.schema([pa.field(n, arrow_type(t)) for n, t in self.columns()],
                         metadata={b"feature_manifest_version": self.version.encode()})

    def to_dict(self) -> Dict[str, Any]:
        return {
            "version": self.version, "name": self.name, "description": self.description,
            "parent_version": self.parent_version, "tags": list(self.tags), "notes": self.notes,
            "stages": list(self.stages), "parameters": copy.deepcopy(dict(self.parameters)),
            "feature_groups": [
                {"name": g.name, "description": g.description,
                 "columns": [{"name": c.name, "dtype": c.dtype} for c in g.columns],
                 "dependencies": list(g.dependencies)} for g in self.feature_groups],
        }


_MISSING = object()


def _get_dotted(params: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = params
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def flatten_parameters(params: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested mappings -> {dotted.key: leaf value}; lists are leaves."""
    out: Dict[str, Any] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten_parameters(v, key + "."))
        else:
            out[key] = v
    return out


def _read(path: str) -> Any:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest file not found") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: malformed YAML: {exc}") from None


def load_manifest(src: Union[str, os.PathLike, Mapping[str, Any]]) -> FeatureManifest:
    """Load and validate a manifest from a YAML path or an already-parsed mapping."""
    if isinstance(src, Mapping):
        where, raw = "<dict>", copy.deepcopy(dict(src))
    else:
        where = os.fspath(src)
        raw = _read(where)

    def fail(msg: str) -> None:
        raise ManifestError(f"{where}: {msg}")

    if not isinstance(raw, dict):
        fail(f"top level must be a mapping, got {type(raw).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        fail(f"missing top-level key(s): {', '.join(missing)}")
    unknown = sorted(set(raw) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS) - set(BUILD_KEYS))
    if unknown:
        fail(f"unknown top-level key(s): {', '.join(map(str, unknown))}")

    version = raw["version"]
    if not isinstance(version, str) or not VERSION_RE.match(version):
        fail(f"bad version {version!r}: expected 'vMAJOR.MINOR.PATCH' (e.g. v3.1.0)")
    parent = raw.get("parent_version")
    if parent is not None and (not isinstance(parent, str) or not VERSION_RE.match(parent)):
        fail(f"bad parent_version {parent!r}: expected null or 'vMAJOR.MINOR.PATCH'")
    for key in ("name", "description"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            fail(f"'{key}' must be a non-empty string")
    tags = raw.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        fail("'tags' must be a list of strings")
    notes = raw.get("notes") or ""
    if not isinstance(notes, str):
        fail("'notes' must be a string")

    # stages
    stages = raw["stages"]
    if not isinstance(stages, list) or not stages:
        fail("'stages' must be a non-empty list of stage ids")
    seen: set = set()
    last = -1
    for s in stages:
        if s not in KNOWN_STAGES:
            fail(f"unknown stage {s!r} (known: {', '.join(KNOWN_STAGES)})")
        if s in seen:
            fail(f"duplicate stage {s!r}")
        seen.add(s)
        idx = KNOWN_STAGES.index(s)
        if idx < last:
            fail(f"stage {s!r} is out of canonical order (it must come before "
                 f"{KNOWN_STAGES[last]!r})")
        last = idx

    # parameters
    params = raw["parameters"]
    if not isinstance(params, dict):
        fail("'parameters' must be a mapping")
    for s in stages:
        for key in REQUIRED_PARAMETERS[s]:
            if _get_dotted(params, key) is _MISSING:
                fail(f"missing parameter {key!r} required by stage {s!r}")

    # feature groups
    groups_raw = raw["feature_groups"]
    if not isinstance(groups_raw, list) or not groups_raw:
        fail("'feature_groups' must be a non-empty list")
    owner: Dict[str, str] = {}
    groups: List[FeatureGroup] = []
    for i, g in enumerate(groups_raw):
        if not isinstance(g, dict):
            fail(f"feature_groups[{i}] must be a mapping")
        gname = g.get("name")
        if not isinstance(gname, str) or not gname:
            fail(f"feature_groups[{i}] has no name")
        for key in ("description", "columns", "dependencies"):
            if key not in g:
                fail(f"feature group {gname!r} is missing {key!r}")
        if any(x.name == gname for x in groups):
            fail(f"duplicate feature group {gname!r}")
        deps = g["dependencies"] or []
        if not isinstance(deps, list):
            fail(f"feature group {gname!r}: dependencies must be a list of stage ids")
        for d in deps:
            if d not in KNOWN_STAGES:
                fail(f"feature group {gname!r} depends on unknown stage {d!r}")
            if d not in stages:
                fail(f"feature group {gname!r} depends on stage {d!r}, which is not listed in stages")
        cols_raw = g["columns"]
        if not isinstance(cols_raw, list) or not cols_raw:
            fail(f"feature group {gname!r}: columns must be a non-empty list")
        cols: List[Column] = []
        for c in cols_raw:
            if not isinstance(c, dict) or set(c) != {"name", "dtype"}:
                fail(f"feature group {gname!r}: column {c!r} must be a mapping {{name, dtype}}")
            cname, dtype = c["name"], c["dtype"]
            if not isinstance(cname, str) or not cname:
                fail(f"feature group {gname!r}: column name must be a non-empty string")
            if dtype not in DTYPES:
                fail(f"unknown dtype {dtype!r} for column {cname!r} in group {gname!r} "
                     f"(known: {', '.join(DTYPES)})")
            if cname in owner:
                fail(f"duplicate column {cname!r} in groups {owner[cname]!r} and {gname!r}")
            owner[cname] = gname
            cols.append(Column(cname, dtype))
        groups.append(FeatureGroup(gname, str(g["description"] or ""), tuple(cols), tuple(deps)))

    names = [g.name for g in groups]
    if IDENTITY_GROUP not in names:
        fail(f"identity group {IDENTITY_GROUP!r} is missing")
    ident = [(c.name, c.dtype) for c in groups[names.index(IDENTITY_GROUP)].columns]
    if ident != list(IDENTITY_COLUMNS):
        want = [n for n, _ in IDENTITY_COLUMNS]
        got = [n for n, _ in ident]
        problems = []
        if sorted(got) != sorted(want):
            if set(want) - set(got):
                problems.append(f"missing {sorted(set(want) - set(got))}")
            if set(got) - set(want):
                problems.append(f"extra {sorted(set(got) - set(want))}")
        elif got != want:
            problems.append(f"order must be {want}")
        else:
            problems.append("dtypes must be " + ", ".join(f"{n}:{t}" for n, t in IDENTITY_COLUMNS))
        fail("identity group must hold exactly the 10 identity columns: " + "; ".join(problems))

    if LABELS_GROUP not in names:
        fail(f"labels group {LABELS_GROUP!r} is missing")
    for g in groups:
        for c in g.columns:
            is_label = c.name.startswith(LABEL_PREFIXES)
            if g.name == LABELS_GROUP and not is_label:
                fail(f"label column {c.name!r} in group 'labels' is not named as a label "
                     f"(must start with one of {', '.join(LABEL_PREFIXES)})")
            if g.name != LABELS_GROUP and is_label:
                fail(f"column {c.name!r} in group {g.name!r} is named as a label; label columns "
                     f"belong in the 'labels' group")

    produced = {}
    for s in stages:
        try:
            for c in stage_spec(s).produced_columns(params):
                produced.setdefault(c, s)
        except KeyError as exc:           # a parameter naming the columns is missing
            fail(f"stage {s!r}: {exc.args[0]}")
    unproduced = [c for c in owner if c not in produced]
    if unproduced:
        fail(f"declared column(s) {unproduced} are produced by none of the listed stages")

    return FeatureManifest(
        version=version, name=raw["name"], description=raw["description"],
        parent_version=parent, tags=tuple(tags), notes=notes, stages=tuple(stages),
        parameters=params, feature_groups=tuple(groups), source=where)


def _as_manifest(m: Union[FeatureManifest, str, os.PathLike, Mapping[str, Any]]) -> FeatureManifest:
    return m if isinstance(m, FeatureManifest) else load_manifest(m)


def compare_manifests(a, b) -> Dict[str, Any]:
    """Differences from manifest ``a`` to ``b`` (either may be a FeatureManifest, path or dict).

    Returns ``{"versions": (a, b), "features": {added, removed, common}, "dtype_changes":
    {col: (old, new)}, "stages": {added, removed}, "parameters": {added: {k: v}, removed: {k: v},
    changed: {k: (old, new)}}}`` with parameters flattened to dotted keys.
    """
    ma, mb = _as_manifest(a), _as_manifest(b)
    ca, cb = dict(ma.columns()), dict(mb.columns())
    pa_, pb = flatten_parameters(ma.parameters), flatten_parameters(mb.parameters)
    return {
        "versions": (ma.version, mb.version),
        "features": {
            "added": [n for n in cb if n not in ca],
            "removed": [n for n in ca if n not in cb],
            "common": [n for n in ca if n in cb],
        },
        "dtype_changes": {n: (ca[n], cb[n]) for n in ca if n in cb and ca[n] != cb[n]},
        "stages": {
            "added": [s for s in mb.stages if s not in ma.stages],
            "removed": [s for s in ma.stages if s not in mb.stages],
        },
        "parameters": {
            "added": {k: pb[k] for k in pb if k not in pa_},
            "removed": {k: pa_[k] for k in pa_ if k not in pb},
            "changed": {k: (pa_[k], pb[k]) for k in pa_ if k in pb and pa_[k] != pb[k]},
        },
    }
