"""``SilverFeatureBuilder``: the seed's Silver API over the bounded Beam Silver pipeline.

    builder = SilverFeatureBuilder(data_root="data")
    stats = builder.build_feature_set("configs/features/v3.1.0.yaml",
                                      ["2024-12-16", "2024-12-17"], force=False)
    df = builder.load_features("v3.1.0")
    builder.list_versions(); builder.get_manifest("v3.1.0"); builder.compare_versions(a, b)

``build_feature_set`` runs one Beam pipeline over the dates still to build::

    Create(dates) | ReadSilverInputs | SilverStages(manifest.stages) | WriteSilverDays

and afterwards rewrites the version's ``manifest.yaml`` (the manifest plus build lineage:
Bronze inputs per date with row counts and content hashes, code version, parameters, build
time) and ``validation.json`` (``transforms.silver.validation``) over every built date.
Already-built dates are skipped unless ``force``; ``force`` replaces a date atomically.  A
failing date is reported with its stage and reason and does not stop the others.  A version
that was built from a different manifest (stages, parameters or columns differ) is refused:
a changed feature set needs a new version.
"""
from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import logging
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import apache_beam as beam
import pandas as pd
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from io_connectors.config import PROJECT_ROOT
from io_connectors.lake.storage import LakeStorage, parquet_options, resolve_data_root
from io_connectors.lake.silver_inputs import ReadSilverInputs
from io_connectors.lake.silver_store import EPISODES, SIGNALS, SilverStore
from io_connectors.lake.silver_write import WriteSilverDays
from io_connectors.monitoring.batch_progress import Progress
from pipelines.batch_run import run_batch
from pipelines.runner_setup import dask_partitions, prepare_runner
from transforms.completeness import compare_counts
from transforms.lake_metrics import SILVER_STAGES_DONE
from transforms.import_closure import project_module_files
from transforms.feature_manifest import (FeatureManifest, ManifestError, compare_manifests,
                                         load_manifest)
from transforms.silver.ptransforms import SilverStages
from transforms.silver.validation import validate_feature_set
from transforms.silver.warmup import warmup_warning
from transforms.validation_report import failed_checks

_LOG = logging.getLogger("silver")
ManifestLike = Union[FeatureManifest, str, Path, dict]
# The modules whose code decides what a build writes: the build's own module and everything
# it imports from the project (found by reading the imports, transforms/import_closure.py).
CODE_ROOTS = ("pipelines.silver_builder",)


def code_files(root: Path = PROJECT_ROOT) -> list[str]:
    """The project source files the Silver build imports (relative paths, sorted)."""
    return project_module_files(CODE_ROOTS, root)


def code_version(root: Path = PROJECT_ROOT) -> dict:
    """Git commit (with a dirty flag) and a SHA-256 over the sources the build imports
    (``code_files``: path and bytes of each), so a change to any of them, e.g. the
    front-month rule, changes the recorded code version."""
    digest = hashlib.sha256()
    files = code_files(root)
    for rel in files:
        digest.update(rel.encode())
        digest.update((Path(root) / rel).read_bytes())
    out = {"source_sha256": digest.hexdigest(), "source_files": len(files)}
    try:
        out["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
            timeout=10, check=True).stdout.strip()
        out["git_dirty"] = bool(subprocess.run(
            ["git", "status", "--porcelain", "--", *files],
            cwd=root, capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def _check_dates(dates: Iterable[str]) -> list[str]:
    out = []
    for d in dates:
        try:
            out.append(dt.date.fromisoformat(str(d).strip()).isoformat())
        except ValueError:
            raise ValueError(f"not a date (YYYY-MM-DD): {d!r}") from None
    if not out:
        raise ValueError("no dates given")
    return sorted(set(out))


def _declared(m: dict) -> dict:
    """The parts of a manifest that define the data (what a version must not change)."""
    return {k: m.get(k) for k in ("stages", "parameters")} | {
        "columns": [(c["name"], c["dtype"]) for g in m.get("feature_groups", [])
                    for c in g.get("columns", [])]}


class SilverFeatureBuilder:
    """Builds, stores and reads versioned Silver feature sets.

    In: a data root (default ``resolve_data_root()``) or a ``LakeStorage``, and optional
    Beam pipeline arguments (``["--runner=DirectRunner"]`` by default, i.e. Prism).
    Out: see the methods.  Guarantees: see the module docstring.
    """

    def __init__(self, data_root: Optional[str] = None, storage: Optional[LakeStorage] = None,
                 pipeline_args: Optional[Sequence[str]] = None, progress: str = "never"):
        self.storage = storage or LakeStorage(resolve_data_root(data_root))
        self.store = SilverStore(self.storage)
        self.pipeline_args = list(pipeline_args or [])
        self.progress = progress        # batch_progress mode: auto, always, never

    # ---- building ----------------------------------------------------------------------
    def build_feature_set(self, manifest: ManifestLike, dates: Iterable[str],
                          force: bool = False) -> dict:
        """Builds ``dates`` of the manifest's version.  Returns stats: ``version,
        dates_built, dates_skipped, dates_failed ({date: "stage: reason"}), signal_count
        (built now), build_seconds, per_date ({date: {status, signal_count, seconds}}),
        validation_success, validation_failed_checks ({check: what failed}), warnings
        ({date: text}: warm-up weekdays missing in Bronze)``.  Raises ManifestError for a bad or conflicting manifest and
        ValueError for a bad date."""
        m = manifest if isinstance(manifest, FeatureManifest) else load_manifest(manifest)
        dates = _check_dates(dates)
        self._check_version_manifest(m)
        t0 = time.time()
        built_before = set(self.store.built_dates(m.version))
        skipped = [d for d in dates if d in built_before and not force]
        todo = [d for d in dates if d not in skipped]
        results: list[dict] = []
        if todo:
            run_id = f"{dt.datetime.utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
            self._run_pipeline(m, todo, run_id)
            results = [r for r in self.store.run_results(m.version, run_id) if r]
            missing = sorted(set(todo) - {r["date"] for r in results})
            results += [{"date": d, "status": "failed", "stage": "pipeline",
                         "reason": "the pipeline produced no result for this date",
                         "signal_count": 0} for d in missing]
            results = self._check_published(m.version, results)
        built = sorted(r["date"] for r in results if r["status"] == "built")
        failed = {r["date"]: f"{r['stage']}: {r['reason']}" for r in results
                  if r["status"] != "built"}
        validation = self._write_version_files(m) if built else None
        warnings = {r["date"]: text for r in results if r["status"] == "built"
                    for text in [warmup_warning(r.get("lineage") or {})] if text}
        return {
            "version": m.version, "dates_built": built, "dates_skipped": skipped,
            "dates_failed": failed,
            "signal_count": sum(r["signal_count"] for r in results if r["status"] == "built"),
            "build_seconds": round(time.time() - t0, 3),
            "per_date": {r["date"]: {"status": r["status"], "signal_count": r["signal_count"],
                                     "seconds": r.get("seconds")} for r in results},
            "validation_success": None if validation is None else validation["success"],
            "validated_dates": None if validation is None else len(
                self.store.built_dates(m.version)),
            "validation_failed_checks": {} if validation is None else failed_checks(validation),
            "warnings": warnings,
        }

    def _check_version_manifest(self, m: FeatureManifest) -> None:
        existing = self.store.read_manifest(m.version)
        if existing is None:
            return
        if _declared(existing) != _declared(m.to_dict()):
            diff = compare_manifests(existing, m)
            raise ManifestError(
                f"version {m.version} already exists at "
                f"{self.storage.path(self.store.version_dir(m.version))} and was built from "
                f"a different manifest (parameters changed: "
                f"{sorted(diff['parameters']['changed']) or 'none'}, columns added: "
                f"{diff['features']['added'] or 'none'}, removed: "
                f"{diff['features']['removed'] or 'none'}, stages added/removed: "
                f"{diff['stages']['added'] or 'none'}/{diff['stages']['removed'] or 'none'}); "
                f"give the changed manifest a new version")

    def _check_published(self, version: str, results: list[dict]) -> list[dict]:
        """Each built date's record against its published signals: a date whose file is
        missing or holds another row count is failed (a runner may report success and
        drop work: README, Scaling out)."""
        recorded = {r["date"]: r["signal_count"] for r in results if r["status"] == "built"}
        published = {d: self.storage.read_parquet(self.store.table_file(version, d),
                                                  columns=["date"]).num_rows
                     for d in recorded if self.store.has_table(version, d, SIGNALS)}
        problems = compare_counts(recorded, published, "signals")
        return [dict(r, status="failed", stage="publish", reason=f"the published signals "
                     f"do not match the build record: {problems[r['date']]}")
                if r["status"] == "built" and r["date"] in problems else r for r in results]

    def _run_pipeline(self, m: FeatureManifest, dates: list[str], run_id: str) -> None:
        options = PipelineOptions(self.pipeline_args or ["--runner=DirectRunner"])
        prepare_runner(options, streaming=False, dask=True)
        dask_partitions(options, len(dates))
        code = code_version()
        p = beam.Pipeline(options=options)
        _ = (p
             | "Dates" >> beam.Create(dates)
             | "ReadBronze" >> ReadSilverInputs(self.storage, m.parameters, m.columns(),
                                                m.label_columns)
             | "Stages" >> SilverStages(m.stages)
             | "Publish" >> WriteSilverDays(self.storage, m.version, run_id, code,
                                            parquet_options())
             | "Progress" >> beam.Map(_log_progress, m.version))
        with Progress(f"silver {m.version}", self.progress) as progress:
            progress.task("dates", total=len(dates), unit="date")
            progress.task("stages", total=len(dates) * len(m.stages), unit="stage")
            run_dir = self.store.run_dir(m.version, run_id)

            def read(committed, attempted):
                done = len(self.storage.list_files(run_dir, suffix=".json"))
                stages = done * len(m.stages)
                if committed is not None:   # + the date in flight (progress reports)
                    stages = max(stages, min(committed.get(SILVER_STAGES_DONE, 0)
                                             + attempted.get(SILVER_STAGES_DONE, 0),
                                             min(done + 1, len(dates)) * len(m.stages)))
                return {"dates": done, "stages": stages}
            run_batch(p, progress, read)
            progress.close(read(None, None))

    def _write_version_files(self, m: FeatureManifest) -> dict:
        dates = self.store.built_dates(m.version)
        tables = {d: self.store.read_table(m.version, d) for d in dates}
        lineages = {d: self.store.read_lineage(m.version, d) for d in dates}
        episodes = {d: self.store.read_table(m.version, d, EPISODES) for d in dates
                    if "episodes" in {s.split("@")[0] for s in m.stages}}
        validation = validate_feature_set(m, tables, lineages, episodes)
        doc = m.to_dict()
        doc.update({
            "created_at": f"{dt.datetime.utcnow():%Y-%m-%dT%H:%M:%SZ}",
            "created_by": _user(),
            "source": {"layer": "bronze",
                       "schemas": ["futures/trades", "futures/mbp10", "options/trades"],
                       "date_range": validation["date_range"], "lineage": lineages},
            "validation": {"date_range": validation["date_range"],
                           "signal_count": validation["signal_count"],
                           "feature_count": validation["feature_count"],
                           "null_rates": validation["null_rates_summary"],
                           "schema_hash": hashlib.sha256(
                               str(m.arrow_schema()).encode()).hexdigest()[:16],
                           "success": validation["success"]},
        })
        self.store.write_validation(m.version, validation)
        self.store.write_manifest(m.version, doc)
        return validation

    # ---- reading -----------------------------------------------------------------------
    def list_versions(self) -> list[str]:
        """Versions that have a manifest.yaml, sorted by version number."""
        versions = [v for v in self.store.list_versions() if self.store.read_manifest(v)]
        return sorted(versions, key=lambda v: tuple(int(x) for x in v[1:].split(".")
                                                    if x.isdigit()))

    def get_manifest(self, version: str) -> dict:
        """The stored manifest.yaml of ``version`` (with lineage and validation summary)."""
        doc = self.store.read_manifest(version)
        if doc is None:
            raise KeyError(f"no Silver version {version!r} under {self.storage.data_root}")
        return doc

    def built_dates(self, version: str) -> list[str]:
        return self.store.built_dates(version)

    def load_features(self, version: str, dates: Optional[Iterable[str]] = None) -> pd.DataFrame:
        """Signals of ``version`` (all built dates, or ``dates``) as one DataFrame sorted by
        ``ts_ns``, with exactly the declared columns.  KeyError for an unknown version or
        an unbuilt date."""
        self.get_manifest(version)
        available = self.store.built_dates(version)
        wanted = available if dates is None else _check_dates(dates)
        missing = sorted(set(wanted) - set(available))
        if missing:
            raise KeyError(f"{version}: dates not built: {missing}")
        tables = [self.store.read_table(version, d) for d in wanted]
        if not tables:
            schema = load_manifest(self.get_manifest(version)).arrow_schema()
            return schema.empty_table().to_pandas()
        df = pa.concat_tables(tables).to_pandas()
        return df.sort_values("ts_ns", kind="stable").reset_index(drop=True)

    def load_table(self, version: str, name: str, dates: Optional[Iterable[str]] = None
                   ) -> pd.DataFrame:
        """``state_table`` or ``episodes`` of ``version`` as one DataFrame."""
        wanted = self.store.built_dates(version) if dates is None else _check_dates(dates)
        frames = [self.store.read_table(version, d, name).to_pandas() for d in wanted]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def get_validation(self, version: str) -> dict:
        doc = self.store.read_validation(version)
        if doc is None:
            raise KeyError(f"no validation.json for {version!r}")
        return doc

    def compare_versions(self, a: str, b: str) -> dict:
        """Features added/removed/common and parameter differences between two versions."""
        return compare_manifests(self.get_manifest(a), self.get_manifest(b))


def _log_progress(result: dict, version: str) -> dict:
    if result["status"] == "built":
        _LOG.info("silver %s %s: built, %d signals in %.2f s", version, result["date"],
                  result["signal_count"], result.get("seconds") or 0.0)
        text = warmup_warning(result.get("lineage") or {})
        if text:
            _LOG.warning("silver %s %s: %s", version, result["date"], text)
    else:
        _LOG.warning("silver %s %s: FAILED at %s: %s", version, result["date"],
                     result["stage"], result["reason"])
    return result


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # pylint: disable=broad-except
        return "unknown"
