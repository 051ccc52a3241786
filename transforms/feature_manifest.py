"""Silver feature-set manifest: load, validate and compare (pure; needs pyyaml, pyarrow for schemas).

A manifest (e.g. ``configs/features/v3.1.0.yaml``) declares the ordered pipeline stages, their
parameters and the output columns, grouped into feature groups.

Rules checked by :func:`load_manifest` (every failure raises :class:`ManifestError` naming the
problem and the source file):

* the YAML parses and its top level is a mapping with the keys of ``REQUIRED_KEYS``; unknown
  top-level keys other than the build-time keys of ``BUILD_KEYS`` are rejected;
* ``version`` (and ``parent_version`` when not null) match ``vMAJOR.MINOR.PATCH``;
* ``stages`` is a non-empty subset of ``KNOWN_STAGES``, in canonical order, without duplicates
  and without two definitions of one step (``physics`` and ``physics@2``);
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
  columns it adds in the registry, ``transforms/silver/registry.py``);
* a column may document itself with ``definition``, ``unit``, ``window`` and ``original``;
* an optional ``parameters.quality`` section (``min_events_per_date``, ``max_zero_share``,
  ``max_saturated_share``, ``expected: {column or block.position: {check: reason}}``) turns
  on the dead-feature checks of ``transforms/silver/quality.py`` for the version.

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
COLUMN_DOC_KEYS: Tuple[str, ...] = ("definition", "unit", "window", "original")
# Dead-feature checks of transforms/silver/validation.py that a manifest may waive per column
# (or episode position ``block.name``) under parameters.quality.expected, with a reason.
QUALITY_CHECKS: Tuple[str, ...] = ("constant_features", "mostly_zero_features",
                                   "saturated_episode_dims")

IDENTITY_GROUP = "identity"
LABELS_GROUP = "labels"


class ManifestError(ValueError):
    """A feature manifest is malformed or inconsistent."""


@dataclass(frozen=True)
class Column:
    """A declared column; ``definition``, ``unit``, ``window`` and ``original`` (the
    original system's name) document it (optional; v3.2.0 gives them for every column)."""
    name: str
    dtype: str
    definition: str = ""
    unit: str = ""
    window: str = ""
    original: str = ""

    def to_dict(self) -> Dict[str, str]:
        out = {"name": self.name, "dtype": self.dtype}
        out.update({k: getattr(self, k) for k in COLUMN_DOC_KEYS if getattr(self, k)})
        return out


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
                 "columns": [c.to_dict() for c in g.columns],
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
        same_step = [x for x in seen if x.split("@")[0] == s.split("@")[0]]
        if same_step:
            fail(f"stages {same_step[0]!r} and {s!r} are two definitions of one step; "
                 f"list one")
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
            if (not isinstance(c, dict) or not {"name", "dtype"} <= set(c)
                    or set(c) - {"name", "dtype", *COLUMN_DOC_KEYS}):
                fail(f"feature group {gname!r}: column {c!r} must be a mapping {{name, dtype}} "
                     f"with optional {', '.join(COLUMN_DOC_KEYS)}")
            docs = {k: c.get(k) for k in COLUMN_DOC_KEYS if k in c}
            if not all(isinstance(v, str) for v in docs.values()):
                fail(f"feature group {gname!r}: column {c.get('name')!r}: "
                     f"{', '.join(COLUMN_DOC_KEYS)} must be strings")
            cname, dtype = c["name"], c["dtype"]
            if not isinstance(cname, str) or not cname:
                fail(f"feature group {gname!r}: column name must be a non-empty string")
            if dtype not in DTYPES:
                fail(f"unknown dtype {dtype!r} for column {cname!r} in group {gname!r} "
                     f"(known: {', '.join(DTYPES)})")
            if cname in owner:
                fail(f"duplicate column {cname!r} in groups {owner[cname]!r} and {gname!r}")
            owner[cname] = gname
            cols.append(Column(cname, dtype, **docs))
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
    problem = _quality_problem(params.get("quality"), owner, groups)
    if problem:
        fail(f"parameters.quality: {problem}")

    return FeatureManifest(
        version=version, name=raw["name"], description=raw["description"],
        parent_version=parent, tags=tuple(tags), notes=notes, stages=tuple(stages),
        parameters=params, feature_groups=tuple(groups), source=where)


def _quality_problem(quality: Any, owner: Mapping[str, str], groups) -> Optional[str]:
    """What is wrong with a ``parameters.quality`` section (None when absent or fine)."""
    if quality is None:
        return None
    if not isinstance(quality, Mapping):
        return "must be a mapping"
    for key in ("min_events_per_date", "max_zero_share", "max_saturated_share"):
        if key not in quality or not isinstance(quality[key], (int, float)):
            return f"{key} must be a number"
    expected = quality.get("expected") or {}
    if not isinstance(expected, Mapping):
        return "expected must map a column (or episode position block.name) to {check: reason}"
    features = {c.name for g in groups if g.name not in (IDENTITY_GROUP, LABELS_GROUP)
                for c in g.columns}
    for name, waivers in expected.items():
        if "." not in str(name) and name not in features:
            return f"expected names {name!r}, which is not a feature column"
        if not isinstance(waivers, Mapping) or not waivers:
            return f"expected.{name} must map a check to a reason"
        for check, reason in waivers.items():
            if check not in QUALITY_CHECKS:
                return f"expected.{name}: unknown check {check!r} (known: {', '.join(QUALITY_CHECKS)})"
            if not isinstance(reason, str) or not reason.strip():
                return f"expected.{name}.{check}: give the reason as a non-empty string"
    return None


def _as_manifest(m: Union[FeatureManifest, str, os.PathLike, Mapping[str, Any]]) -> FeatureManifest:
    return m if isinstance(m, FeatureManifest) else load_manifest(m)


def compare_manifests(a, b) -> Dict[str, Any]:
    """Differences from manifest ``a`` to ``b`` (either may be a FeatureManifest, path or dict).

    Returns ``{"versions": (a, b), "features": {added, removed, common, redefined},
    "redefined": {col: [reasons]}, "dtype_changes": {col: (old, new)}, "stages": {added,
    removed, changed}, "parameters": {added: {k: v}, removed: {k: v}, changed: {k: (old,
    new)}}}`` with parameters flattened to dotted keys.

    A column in both is *redefined* when its dtype changed, when a stage its group depends
    on is another definition in ``b`` (``physics`` -> ``physics@2``) or reads a parameter
    whose value changed, or when both document it and the definitions differ.
    """
    ma, mb = _as_manifest(a), _as_manifest(b)
    ca, cb = dict(ma.columns()), dict(mb.columns())
    pa_, pb = flatten_parameters(ma.parameters), flatten_parameters(mb.parameters)
    common = [n for n in ca if n in cb]
    redefined = {n: _redefinition(ma, mb, n) for n in common}
    redefined = {n: r for n, r in redefined.items() if r}
    step = lambda sid: sid.split("@")[0]  # noqa: E731
    steps_a = {step(x): x for x in ma.stages}
    steps_b = {step(x): x for x in mb.stages}
    return {
        "versions": (ma.version, mb.version),
        "features": {
            "added": [n for n in cb if n not in ca],
            "removed": [n for n in ca if n not in cb],
            "common": common,
            "redefined": list(redefined),
        },
        "redefined": redefined,
        "dtype_changes": {n: (ca[n], cb[n]) for n in ca if n in cb and ca[n] != cb[n]},
        "stages": {
            "added": [s for s in mb.stages if step(s) not in steps_a],
            "removed": [s for s in ma.stages if step(s) not in steps_b],
            "changed": {steps_a[k]: steps_b[k] for k in steps_a
                        if k in steps_b and steps_a[k] != steps_b[k]},
        },
        "parameters": {
            "added": {k: pb[k] for k in pb if k not in pa_},
            "removed": {k: pa_[k] for k in pa_ if k not in pb},
            "changed": {k: (pa_[k], pb[k]) for k in pa_ if k in pb and pa_[k] != pb[k]},
        },
    }


def _column(m: FeatureManifest, name: str) -> Tuple[FeatureGroup, Column]:
    for g in m.feature_groups:
        for c in g.columns:
            if c.name == name:
                return g, c
    raise KeyError(name)


def _redefinition(ma: FeatureManifest, mb: FeatureManifest, name: str) -> List[str]:
    """Why column ``name`` means something else in ``mb`` than in ``ma`` ([] if it does not)."""
    (ga, col_a), (gb, col_b) = _column(ma, name), _column(mb, name)
    reasons = []
    if col_a.dtype != col_b.dtype:
        reasons.append(f"dtype {col_a.dtype} -> {col_b.dtype}")
    deps_a = {d.split("@")[0]: d for d in ga.dependencies}
    deps_b = {d.split("@")[0]: d for d in gb.dependencies}
    for step in sorted(set(deps_a) | set(deps_b)):
        if deps_a.get(step) != deps_b.get(step):
            reasons.append(f"stage {deps_a.get(step)} -> {deps_b.get(step)}")
    params = sorted({p for d in list(ga.dependencies) + list(gb.dependencies)
                     for p in REQUIRED_PARAMETERS.get(d, ())})
    for p in params:
        va, vb = _get_dotted(ma.parameters, p), _get_dotted(mb.parameters, p)
        if va != vb:
            show = lambda v: "(none)" if v is _MISSING else v  # noqa: E731
            reasons.append(f"parameter {p}: {show(va)} -> {show(vb)}")
    if col_a.definition and col_b.definition and col_a.definition != col_b.definition:
        reasons.append("definition changed")
    return reasons


def column_table(m: Union[FeatureManifest, str, os.PathLike, Mapping[str, Any]]) -> str:
    """The manifest's columns as a Markdown table (group, name, dtype, definition, window,
    unit, the original system's name), as in the README's Silver column table."""
    m = _as_manifest(m)
    rows = ["| group | column | dtype | definition | window | unit | original |",
            "|---|---|---|---|---|---|---|"]
    for g in m.feature_groups:
        for c in g.columns:
            cells = [g.name, f"`{c.name}`", c.dtype, c.definition, c.window, c.unit,
                     f"`{c.original}`" if c.original and " " not in c.original else c.original]
            rows.append("| " + " | ".join(x.replace("|", "/") for x in cells) + " |")
    return "\n".join(rows)
