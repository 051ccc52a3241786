"""``GoldCurator``: promote a Silver feature set to a Gold training dataset, validate it,
list the catalog.

    curator = GoldCurator(data_root="data")
    result = curator.promote_to_training(silver_version="v3.1.0",
                                         dataset_name="signals_production",
                                         notes="Production dataset", force=True)
    curator.validate_dataset("signals_production"); curator.list_datasets()

Promotion is a bounded Beam pipeline::

    Create(dates) | ReadSilverSignals | ConcatenateSignals | WriteStagedTable

(``io_connectors.lake.promotion_io``, ``transforms.gold_training``) writing a hidden staging
file in ``gold/training/``.  The curator then evaluates the gates on what was staged
(``transforms.gold_validation.promotion_gates``: the Silver version's validation, schema,
purity, labels named, and a causality spot check that rebuilds one date from Bronze
truncated at an event and compares the features of the events before it), and only if
every evaluated gate passes (a gate that could not be evaluated says so and, unless
``require_all_gates``, does not block) publishes it (``io_connectors.lake.training_store``:
data file, metadata, catalog entry keyed by name, under the catalog lock).  A failed
Silver validation blocks unless ``allow_failed_validation``, which the metadata records
(``overrides``) and ``validate_dataset`` reports.  An existing dataset is only replaced
with ``force``.
"""
from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import io
import logging
import re
from typing import Iterable, Optional, Sequence

import apache_beam as beam
import pandas as pd
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from io_connectors.lake.promotion_io import ReadSilverSignals, WriteStagedTable
from io_connectors.lake.silver_inputs import read_silver_day
from io_connectors.lake.silver_store import SilverStore
from io_connectors.lake.storage import LakeStorage, parquet_options, resolve_data_root
from io_connectors.lake.training_store import TRAINING, TrainingStore
from io_connectors.monitoring.batch_progress import Progress
from pipelines.batch_run import run_batch
from pipelines.runner_setup import dask_partitions, prepare_runner
from transforms.completeness import compare_counts, counts_by, describe
from transforms.feature_manifest import load_manifest
from transforms.gold_training import ConcatenateSignals, causality_check, merge_checks
from transforms.gold_validation import (dataset_report, promotion_gates, refusal,
                                        training_metadata)

_LOG = logging.getLogger("gold")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class PromotionError(RuntimeError):
    """Promotion refused: the message names the failed gate or the conflict."""


class GoldCurator:
    """Promotes Silver versions to Gold training datasets and keeps their catalog.

    In: a data root (default ``resolve_data_root()``) or a ``LakeStorage``; Beam pipeline
    arguments (default the DirectRunner).  Out: ``gold/training/{name}.parquet``,
    ``{name}_metadata.json`` and ``catalog.json`` (one entry per name).  Guarantees: see
    the module docstring.
    """

    def __init__(self, data_root: Optional[str] = None, storage: Optional[LakeStorage] = None,
                 pipeline_args: Optional[Sequence[str]] = None, progress: str = "never"):
        self.storage = storage or LakeStorage(resolve_data_root(data_root))
        self.silver = SilverStore(self.storage)
        self.training = TrainingStore(self.storage)
        self.pipeline_args = list(pipeline_args or [])
        self.progress = progress        # batch_progress mode: auto, always, never

    # ---- promotion ---------------------------------------------------------------------
    def promote_to_training(self, silver_version: str, dataset_name: str, notes: str = "",
                            force: bool = False, dates: Optional[Iterable[str]] = None,
                            causality_dates: int = 1, require_all_gates: bool = False,
                            allow_failed_validation: bool = False) -> dict:
        """Returns ``{dataset_name, path, metadata_path, signal_count, feature_count,
        date_range, gates, overrides, replaced}``; raises PromotionError (gate failed,
        dataset exists without ``force``), KeyError (unknown version or date) or ValueError
        (bad name).  ``allow_failed_validation`` promotes a version whose Silver validation
        failed (recorded in the metadata's ``overrides``)."""
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
        exists = self.training.exists(dataset_name)
        if exists and not force:
            raise PromotionError(f"Gold dataset {dataset_name!r} exists; replace it with "
                                 "force (--force on the command line)")
        staged = self.training.new_staging_file(dataset_name)
        progress = Progress(f"gold {dataset_name}", self.progress)
        checked = wanted[-causality_dates:] if causality_dates > 0 else []
        progress.task("steps", total=2 + len(checked), unit="step")
        try:
            progress.phase(f"reading {len(wanted)} Silver date(s) of {silver_version}")
            self._run_pipeline(silver_version, wanted, staged)
            data = self.training.read_bytes(staged)
            table = self.training.read_table(staged) if data is not None else None
            self._check_complete(silver_version, wanted, table)
            progress.update(steps=1)
            causality = None
            if checked:
                results = []
                for i, d in enumerate(checked):
                    progress.phase(f"gate causality: rebuilding {d} from Bronze")
                    results.append(self._causality(manifest, silver_version, d))
                    progress.update(steps=2 + i)
                causality = merge_checks(results)
            progress.phase("gates, then publishing")
            gates = promotion_gates(table, manifest, self.silver.read_validation(silver_version),
                                    causality, wanted)
            overrides = {}
            if allow_failed_validation and gates["silver_validation"]["success"] is False:
                overrides["silver_validation"] = {
                    "by": _user(), "at": _now(),
                    "failed_checks": gates["silver_validation"]["observed"] and
                    gates["silver_validation"]["observed"]["failed_checks"],
                    "reason": gates["silver_validation"].get("reason")}
            why = refusal(gates, overrides, require_all_gates)
            if why:
                raise PromotionError(f"promotion of {silver_version} to {dataset_name!r} "
                                     f"refused: {why}")
            metadata = training_metadata(
                dataset_name, silver_version, manifest, table, notes, gates, overrides,
                hashlib.sha256(data).hexdigest(), _now(), _silver_code(doc, wanted))
            self.training.publish(staged, dataset_name, metadata)
            progress.update(steps=2 + len(checked))
            progress.phase("published")
        finally:
            self.training.discard(staged)
            progress.close()
        _LOG.info("promoted %s -> %s (%d signals)", silver_version,
                  self.training.data_file(dataset_name), table.num_rows)
        return {"dataset_name": dataset_name, "path": self.training.data_file(dataset_name),
                "metadata_path": self.training.metadata_file(dataset_name),
                "signal_count": table.num_rows, "feature_count": metadata["feature_count"],
                "date_range": metadata["date_range"], "gates": gates, "overrides": overrides,
                "replaced": exists}

    def _check_complete(self, version: str, dates: list[str], table) -> None:
        """PromotionError naming every date whose Silver signals are not all in the staged
        table (a runner may report success and drop work: README, Scaling out)."""
        expected = {d: self.storage.read_parquet(self.silver.table_file(version, d),
                                                 columns=["date"]).num_rows for d in dates}
        problems = compare_counts(expected, counts_by(table, "date"), "signals")
        if problems:
            raise PromotionError(f"the promotion run of {version} is incomplete (nothing "
                                 f"published): {describe(problems)}")

    def _run_pipeline(self, version: str, dates: list[str], staged: str) -> None:
        options = PipelineOptions(self.pipeline_args or ["--runner=DirectRunner"])
        prepare_runner(options, streaming=False, dask=True)
        dask_partitions(options, len(dates))
        p = beam.Pipeline(options=options)
        _ = (p | "Dates" >> beam.Create(dates)
             | "ReadSilver" >> ReadSilverSignals(self.storage, version)
             | "Concatenate" >> ConcatenateSignals()
             | "Stage" >> WriteStagedTable(self.storage, staged, parquet_options()))
        run_batch(p)

    def _causality(self, manifest, version: str, date: str) -> dict:
        try:
            raw = read_silver_day(self.storage, date, manifest.parameters, manifest.columns(),
                                  manifest.label_columns)
        except Exception as exc:  # pylint: disable=broad-except
            return {"success": None, "reason": f"Bronze of {date} unavailable: {exc}",
                    "date": date}
        return causality_check(raw, manifest,
                               self.silver.read_table(version, date).to_pandas())

    # ---- reading -----------------------------------------------------------------------
    def list_datasets(self) -> list[dict]:
        """Catalog entries, one per dataset name, sorted by name."""
        return [{"dataset_name": n, **e}
                for n, e in sorted(self.training.catalog()["datasets"].items())]

    def get_metadata(self, name: str) -> dict:
        meta = self.training.read_metadata(name)
        if meta is None:
            raise KeyError(f"no Gold dataset {name!r}")
        return meta

    def load_dataset(self, name: str) -> pd.DataFrame:
        self.get_metadata(name)
        return self.training.read_table(self.training.data_file(name)).to_pandas()

    def validate_dataset(self, name: str) -> dict:
        """Row/column counts, null rates, label distribution, date coverage, row count vs
        metadata, duplicates, the stored sha256 vs the file's, the Silver validation gate
        (and any override) and the promotion gates."""
        meta = self.get_metadata(name)
        data = self.training.read_bytes(self.training.data_file(name))
        if data is None:
            raise KeyError(f"Gold dataset {name!r} has metadata but no data file")
        report = dataset_report(pq.read_table(io.BytesIO(data)), meta)
        report["sha256_matches_metadata"] = hashlib.sha256(data).hexdigest() == meta.get("sha256")
        report["gates"] = meta.get("gates")
        report["overrides"] = meta.get("overrides") or {}
        report["success"] = bool(report["success"] and report["sha256_matches_metadata"])
        return report


def _silver_code(doc: dict, dates: list[str]):
    """The code version recorded in the Silver manifest's lineage of the last date."""
    lineage = (doc.get("source") or {}).get("lineage") or {}
    return (lineage.get(dates[-1]) or {}).get("code") if dates else None


def _now() -> str:
    return f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # pylint: disable=broad-except
        return "unknown"


__all__ = ["GoldCurator", "PromotionError", "TRAINING"]
