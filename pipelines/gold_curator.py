"""``GoldCurator``: promote a Silver feature set to a Gold training dataset, validate it,
list the catalog.

    curator = GoldCurator(data_root="data")
    result = curator.promote_to_training(silver_version="v3.1.0",
                                         dataset_name="signals_production",
                                         notes="Production dataset", force=True)
    curator.validate_dataset("signals_production"); curator.list_datasets()

Promotion is a bounded Beam pipeline::

    Create(dates) | ReadSilverSignals | CombineGlobally(concatenate) | WriteStagedDataset

writing ``gold/training/.staging-<name>-<token>.parquet``.  The curator then evaluates the
gates on what was staged (``transforms.gold_validation.promotion_gates``: schema, purity,
labels named, and a causality spot check that rebuilds one date from Bronze truncated at an
event and compares the features of the events before it), and only if every evaluated gate
passes (a gate that could not be evaluated says so and, unless ``require_all_gates``, does
not block) publishes atomically: the Parquet file is renamed into place, then
``{name}_metadata.json``, then the catalog entry (keyed by name: promoting again replaces
the entry, never duplicates it).  An existing dataset is only replaced with ``force``.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import io
import logging
import os
import re
import uuid
from contextlib import contextmanager
from typing import Iterable, Optional, Sequence

import apache_beam as beam
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from io_connectors.lake import files as lake_files
from io_connectors.lake.storage import LakeStorage, parquet_options, resolve_data_root
from io_connectors.lake.silver_inputs import read_silver_day
from io_connectors.lake.silver_store import SilverStore
from pipelines.runner_setup import prepare_runner
from transforms.feature_manifest import load_manifest
from transforms.gold_validation import dataset_report, promotion_gates
from transforms.silver.day import DayFailure
from transforms.silver.stages import run_stages

_LOG = logging.getLogger("gold")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
TRAINING = "gold/training"
CATALOG = f"{TRAINING}/catalog.json"


class PromotionError(RuntimeError):
    """Promotion refused: the message names the failed gate or the conflict."""


# --------------------------------------------------------------------------- Beam parts
class _ReadSignalsDoFn(beam.DoFn):
    def __init__(self, storage: LakeStorage, version: str):
        super().__init__()
        self.storage, self.version = storage, version

    def process(self, date):
        yield SilverStore(self.storage).read_table(self.version, date)


class _ConcatTables(beam.CombineFn):
    def create_accumulator(self):
        return []

    def add_input(self, acc, table):
        acc.append(table)
        return acc

    def merge_accumulators(self, accs):
        return [t for acc in accs for t in acc]

    def extract_output(self, acc):
        if not acc:
            return None
        table = pa.concat_tables(acc)
        return table.take(pa.compute.sort_indices(
            table, sort_keys=[("ts_ns", "ascending"), ("event_id", "ascending")]))


def _write_staged(table, storage: LakeStorage, rel: str, compression):
    if table is None:
        raise PromotionError("no Silver signals to promote")
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=compression[0], compression_level=compression[1])
    lake_files.replace_bytes(storage, rel, sink.getvalue())
    return rel, table.num_rows


class ReadSilverSignals(beam.PTransform):
    """Dates -> the ``signals.parquet`` table of each date of a Silver version."""

    def __init__(self, storage: LakeStorage, version: str):
        super().__init__()
        self.storage, self.version = storage, version

    def expand(self, dates):
        return dates | beam.Reshuffle() | beam.ParDo(_ReadSignalsDoFn(self.storage, self.version))


class StageTrainingDataset(beam.PTransform):
    """Tables -> one Parquet file at ``rel`` (all rows, sorted by ``ts_ns, event_id``);
    outputs ``(rel, rows)``."""

    def __init__(self, storage: LakeStorage, rel: str, compression=("zstd", 3)):
        super().__init__()
        self.storage, self.rel, self.compression = storage, rel, tuple(compression)

    def expand(self, tables):
        return (tables
                | "Concatenate" >> beam.CombineGlobally(_ConcatTables())
                | "Write" >> beam.Map(_write_staged, self.storage, self.rel, self.compression))


# --------------------------------------------------------------------------- checks
def causality_spot_check(storage: LakeStorage, manifest, date: str,
                         stored: Optional[pd.DataFrame] = None) -> dict:
    """Rebuilds ``date`` from Bronze twice, in full and truncated just after the middle
    event, and compares the features of the events up to the cut.  Also reports whether
    the full rebuild reproduces the stored Silver features (informational)."""
    try:
        raw = read_silver_day(storage, date, manifest.parameters, manifest.columns(),
                              manifest.label_columns)
    except Exception as exc:  # pylint: disable=broad-except
        return {"success": None, "reason": f"Bronze of {date} unavailable: {exc}", "date": date}
    full = run_stages(raw, manifest.stages)
    if isinstance(full, DayFailure):
        return {"success": None, "date": date,
                "reason": f"rebuild failed at {full.stage}: {full.reason}"}
    events = full.events
    if len(events) < 2:
        return {"success": None, "date": date, "reason": "fewer than 2 events on the date"}
    cut = int(events["ts_ns"].iloc[len(events) // 2])

    def upto(df):
        return df[df["ts_event_ns"] <= cut] if df is not None and len(df) else df

    part = run_stages(raw.replace(trades=upto(raw.trades), mbp=upto(raw.mbp),
                                  options=upto(raw.options)), manifest.stages)
    if isinstance(part, DayFailure):
        return {"success": False, "date": date,
                "reason": f"truncated rebuild failed at {part.stage}: {part.reason}"}
    features = [c for c in manifest.column_names() if c not in manifest.label_columns]
    a = events[events["ts_ns"] <= cut][features].reset_index(drop=True)
    b = part.events[part.events["ts_ns"] <= cut][features].reset_index(drop=True)
    differing = ([c for c in features if not a[c].equals(b[c])] if len(a) == len(b)
                 else ["<event count differs>"])
    out = {"success": not differing, "date": date, "cut_ns": cut, "events_compared": len(a),
           "differing_columns": differing}
    if stored is not None:
        mine = events[features].reset_index(drop=True)
        theirs = stored[features].reset_index(drop=True)
        out["reproduces_stored_features"] = bool(len(mine) == len(theirs) and all(
            mine[c].equals(theirs[c]) or
            (pd.api.types.is_float_dtype(mine[c]) and
             ((mine[c] - theirs[c]).abs().fillna(0) < 1e-9).all()) for c in features))
    return out


# --------------------------------------------------------------------------- curator
class GoldCurator:
    """Promotes Silver versions to Gold training datasets and keeps their catalog.

    In: a data root (default ``resolve_data_root()``) or a ``LakeStorage``; Beam pipeline
    arguments (default the DirectRunner).  Out: ``gold/training/{name}.parquet``,
    ``{name}_metadata.json`` and ``catalog.json`` (one entry per name).  Guarantees: see
    the module docstring.
    """

    def __init__(self, data_root: Optional[str] = None, storage: Optional[LakeStorage] = None,
                 pipeline_args: Optional[Sequence[str]] = None):
        self.storage = storage or LakeStorage(resolve_data_root(data_root))
        self.silver = SilverStore(self.storage)
        self.pipeline_args = list(pipeline_args or [])

    # ---- promotion ---------------------------------------------------------------------
    def promote_to_training(self, silver_version: str, dataset_name: str, notes: str = "",
                            force: bool = False, dates: Optional[Iterable[str]] = None,
                            causality_dates: int = 1, require_all_gates: bool = False) -> dict:
        """Returns ``{dataset_name, path, metadata_path, signal_count, feature_count,
        date_range, gates, replaced}``; raises PromotionError (gate failed, dataset exists
        without ``force``), KeyError (unknown version or date) or ValueError (bad name)."""
        if not _NAME.fullmatch(dataset_name or "") or ".." in dataset_name:
            raise ValueError(f"dataset name {dataset_name!r}: use letters, digits, _ . -")
        doc = self.silver.read_manifest(silver_version)
        if doc is None:
            raise KeyError(f"no Silver version {silver_version!r} under {self.storage.data_root}")
        manifest = load_manifest(doc)
        built = self.silver.built_dates(silver_version)
        wanted = built if dates is None else sorted({dt.date.fromisoformat(d).isoformat()
                                                    for d in dates})
        missing = sorted(set(wanted) - set(built))
        if missing or not wanted:
            raise KeyError(f"{silver_version}: dates not built: {missing or 'none built'}")
        target = f"{TRAINING}/{dataset_name}.parquet"
        exists = self.storage.exists(target)
        if exists and not force:
            raise PromotionError(f"Gold dataset {dataset_name!r} exists; replace it with "
                                 "force (--force on the command line)")
        staged = f"{TRAINING}/.staging-{dataset_name}-{uuid.uuid4().hex[:12]}.parquet"
        try:
            self._run_pipeline(silver_version, wanted, staged)
            table = pq.read_table(self.storage.path(staged), filesystem=self.storage.fs)
            silver_validation = self.silver.read_json(
                f"{self.silver.version_dir(silver_version)}/validation.json")
            causality = None
            if causality_dates > 0:
                checks = [causality_spot_check(
                    self.storage, manifest, d,
                    self.silver.read_table(silver_version, d).to_pandas())
                    for d in wanted[-causality_dates:]]
                causality = _merge_checks(checks)
            gates = promotion_gates(table, manifest, silver_validation, causality)
            failed = {k: g for k, g in gates.items() if g.get("success") is False}
            unchecked = {k: g.get("reason") for k, g in gates.items() if g.get("success") is None}
            if failed or (require_all_gates and unchecked):
                raise PromotionError(
                    f"promotion of {silver_version} to {dataset_name!r} refused: "
                    + "; ".join([f"gate {k} failed: {g.get('observed') or g.get('reason')}"
                                 for k, g in failed.items()]
                                + [f"gate {k} not checked: {why}" for k, why in unchecked.items()
                                   if require_all_gates]))
            data = lake_files.read_bytes(self.storage, staged)
            metadata = self._metadata(dataset_name, silver_version, doc, table, notes, gates,
                                      hashlib.sha256(data).hexdigest())
            self._publish(staged, target, dataset_name, metadata)
        finally:
            lake_files.delete(self.storage, staged)
        _LOG.info("promoted %s -> %s (%d signals)", silver_version, target, table.num_rows)
        return {"dataset_name": dataset_name, "path": target,
                "metadata_path": f"{TRAINING}/{dataset_name}_metadata.json",
                "signal_count": table.num_rows, "feature_count": metadata["feature_count"],
                "date_range": metadata["date_range"], "gates": gates, "replaced": exists}

    def _run_pipeline(self, version: str, dates: list[str], staged: str) -> None:
        options = PipelineOptions(self.pipeline_args or ["--runner=DirectRunner"])
        prepare_runner(options, streaming=False)
        with beam.Pipeline(options=options) as p:
            _ = (p | "Dates" >> beam.Create(dates)
                 | "ReadSilver" >> ReadSilverSignals(self.storage, version)
                 | "Stage" >> StageTrainingDataset(self.storage, staged, parquet_options()))

    def _metadata(self, name, version, doc, table, notes, gates, sha256) -> dict:
        manifest = load_manifest(doc)
        dates = sorted(set(table["date"].cast(pa.string()).to_pylist()))
        return {
            "dataset_name": name, "silver_version": version,
            "created_at": f"{dt.datetime.utcnow():%Y-%m-%dT%H:%M:%SZ}",
            "signal_count": table.num_rows, "feature_count": len(manifest.feature_columns),
            "label_columns": manifest.label_columns,
            "date_range": {"start": dates[0] if dates else None,
                           "end": dates[-1] if dates else None},
            "dates": dates, "notes": notes,
            "manifest": {"version": manifest.version, "description": manifest.description,
                         "parameters": dict(manifest.parameters)},
            "gates": gates, "sha256": sha256,
            "silver_lineage": {"code": (doc.get("source") or {}).get("lineage", {}).get(
                dates[-1], {}).get("code") if dates else None},
        }

    def _publish(self, staged: str, target: str, name: str, metadata: dict) -> None:
        with self._catalog_lock():
            if self.storage.is_s3:
                self.storage.fs.copy_file(self.storage.path(staged), self.storage.path(target))
            else:
                os.replace(self.storage.path(staged), self.storage.path(target))
                lake_files.fsync_dir(os.path.dirname(self.storage.path(target)))
            lake_files.replace_json(self.storage, f"{TRAINING}/{name}_metadata.json", metadata)
            catalog = lake_files.read_json(self.storage, CATALOG) or {"datasets": {}}
            catalog["datasets"][name] = {
                "silver_version": metadata["silver_version"],
                "created_at": metadata["created_at"], "signal_count": metadata["signal_count"],
                "date_range": metadata["date_range"], "path": target,
                "metadata_path": f"{TRAINING}/{name}_metadata.json",
                "sha256": metadata["sha256"], "notes": metadata["notes"]}
            catalog["updated_at"] = metadata["created_at"]
            lake_files.replace_json(self.storage, CATALOG, catalog)

    @contextmanager
    def _catalog_lock(self):
        """Serialises catalog updates of local lakes (a lock file beside the catalog)."""
        if self.storage.is_s3:
            yield
            return
        folder = self.storage.path(TRAINING)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, ".catalog.lock"), "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ---- reading -----------------------------------------------------------------------
    def list_datasets(self) -> list[dict]:
        """Catalog entries, one per dataset name, sorted by name."""
        catalog = lake_files.read_json(self.storage, CATALOG) or {"datasets": {}}
        return [{"dataset_name": n, **e} for n, e in sorted(catalog["datasets"].items())]

    def get_metadata(self, name: str) -> dict:
        meta = lake_files.read_json(self.storage, f"{TRAINING}/{name}_metadata.json")
        if meta is None:
            raise KeyError(f"no Gold dataset {name!r}")
        return meta

    def load_dataset(self, name: str) -> pd.DataFrame:
        self.get_metadata(name)
        return pq.read_table(self.storage.path(f"{TRAINING}/{name}.parquet"),
                             filesystem=self.storage.fs).to_pandas()

    def validate_dataset(self, name: str) -> dict:
        """Row/column counts, null rates, label distribution, date coverage, row count vs
        metadata, duplicates, the stored sha256 vs the file's, and the promotion gates."""
        meta = self.get_metadata(name)
        data = lake_files.read_bytes(self.storage, f"{TRAINING}/{name}.parquet")
        if data is None:
            raise KeyError(f"Gold dataset {name!r} has metadata but no data file")
        report = dataset_report(pq.read_table(io.BytesIO(data)), meta)
        report["sha256_matches_metadata"] = hashlib.sha256(data).hexdigest() == meta.get("sha256")
        report["gates"] = meta.get("gates")
        report["success"] = bool(report["success"] and report["sha256_matches_metadata"])
        return report


def _merge_checks(checks: list[dict]) -> dict:
    evaluated = [c for c in checks if c.get("success") is not None]
    if not evaluated:
        return {"success": None, "reason": "; ".join(c.get("reason", "") for c in checks),
                "checks": checks}
    return {"success": all(c["success"] for c in evaluated), "checks": checks}
