"""Lakes written before the clash-free layout: detection (readers refuse them loudly) and the
one-off migration (``python -m pipelines.lake_migrate``).

Before: ``bronze/futures/{trades,mbp10}/symbol=ES/…``, ``bronze/options/trades/
underlying=ES/…``, ``gold/levels/signals/underlying=ES/…`` (the folder key shadowed the
file's own ``symbol``/``underlying`` column), and Silver as ``silver/features/<v>/
date=D/{signals,state_table,episodes}.parquet, lineage.json`` with nanosecond timestamps.
Now: ``root=ES`` (``transforms.partitioning``), one Hive dataset per Silver table
(``io_connectors.lake.silver_store``) and microsecond timestamps.

``check_bronze_layout`` / ``check_silver_layout`` raise ``LegacyLayoutError`` (naming the
old folder and the command) when a reader meets the old layout, instead of silently
reading nothing.  They cost one listing per dataset or version and storage instance.

``migrate(storage, dry_run)`` moves everything with the storage API only (so it works on
local disk and S3 alike): Bronze and Gold streaming files are moved file by file to the
``root=`` folder (``exchange``: a rename locally, a server-side copy on S3; names are
unique, so nothing is overwritten); each Silver table file is rewritten with microsecond
timestamps into its dataset folder and the old date folder removed; Gold training files
with nanosecond timestamps are rewritten likewise (their metadata and catalog SHA-256
follow, under the catalog lock).  It is idempotent: an interrupted run is finished by
running it again.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Callable, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from io_connectors.lake.storage import LakeStorage, parquet_bytes, parquet_options
from io_connectors.lake.training_store import TrainingStore
from transforms.partitioning import ROOT_KEY, SESSION_DATE_KEY
from transforms.schemas import DATASETS_BY_LAYER

_LOG = logging.getLogger(__name__)
MIGRATE_COMMAND = "python -m pipelines.lake_migrate --data_root {root}"
_OLD_SILVER_FILES = {"signals.parquet": "signals", "state_table.parquet": "state_table",
                     "episodes.parquet": "episodes"}


class LegacyLayoutError(RuntimeError):
    """The lake (or part of it) is in the layout before ``root=`` and one Hive dataset per
    Silver table; the message names the folder and the migration command."""


def _error(storage: LakeStorage, folder: str, what: str) -> LegacyLayoutError:
    return LegacyLayoutError(
        f"{storage.path(folder)} is in the old lake layout ({what}); migrate the lake once "
        f"with: {MIGRATE_COMMAND.format(root=storage.data_root)}")


def _checked(storage: LakeStorage) -> set:
    return storage.layout_checked


def check_bronze_layout(storage: LakeStorage, layer: str, dataset: str) -> None:
    """Raises LegacyLayoutError if ``<layer>/<dataset>`` has old ``symbol=``/
    ``underlying=`` folders (checked once per storage instance and dataset)."""
    done = _checked(storage)
    if (layer, dataset) in done:
        return
    old = _legacy_roots(storage, layer, dataset)
    if old:
        raise _error(storage, f"{layer}/{dataset}/{old[0]}",
                     f"'{old[0].split('=')[0]}=' folders instead of '{ROOT_KEY}='")
    done.add((layer, dataset))


def check_silver_layout(storage: LakeStorage, version_dir: str) -> None:
    """Raises LegacyLayoutError if a Silver version folder has old ``date=`` folders."""
    done = _checked(storage)
    if version_dir in done:
        return
    old = [d for d in storage.list_dirs(version_dir) if d.startswith("date=")]
    if old:
        raise _error(storage, f"{version_dir}/{old[0]}",
                     "all tables of a date in one folder instead of one dataset per table")
    done.add(version_dir)


def _legacy_roots(storage: LakeStorage, layer: str, dataset: str) -> list[str]:
    key = DATASETS_BY_LAYER[layer][dataset].root_column
    return [d for d in storage.list_dirs(f"{layer}/{dataset}") if d.startswith(f"{key}=")]


def find_legacy(storage: LakeStorage) -> list[str]:
    """Root-relative folders and files still in the old layout (empty: nothing to do)."""
    out = []
    for layer, datasets in DATASETS_BY_LAYER.items():
        for dataset in datasets:
            out += [f"{layer}/{dataset}/{d}" for d in _legacy_roots(storage, layer, dataset)]
    for version in storage.list_dirs("silver/features"):
        out += [f"silver/features/{version}/{d}"
                for d in storage.list_dirs(f"silver/features/{version}")
                if d.startswith("date=")]
    out += [rel for rel in _training_files(storage) if _has_ns_timestamps(storage, rel)]
    return out


# ---------------------------------------------------------------- migration
def migrate(storage: LakeStorage, dry_run: bool = False,
            say: Callable[[str], None] = lambda s: None) -> dict:
    """Moves a lake to the current layout (see the module docstring); returns counts
    ``{bronze_gold_files, silver_files, training_files}``.  With ``dry_run`` nothing
    changes and the counts are what would be moved."""
    counts = {"bronze_gold_files": 0, "silver_files": 0, "training_files": 0}
    for layer, datasets in DATASETS_BY_LAYER.items():
        for dataset in datasets:
            for old in _legacy_roots(storage, layer, dataset):
                folder = f"{layer}/{dataset}/{old}"
                new = f"{layer}/{dataset}/{ROOT_KEY}={old.split('=', 1)[1]}"
                files = storage.list_files(folder)
                say(f"{folder} -> {new}: {len(files)} files")
                for path in files:
                    rel = storage.relative(path)
                    if not dry_run:
                        storage.exchange(rel, new + rel[len(folder):])
                    counts["bronze_gold_files"] += 1
                if not dry_run:
                    _remove_empty(storage, folder)
    codec = parquet_options()
    for version in storage.list_dirs("silver/features"):
        vdir = f"silver/features/{version}"
        for old in [d for d in storage.list_dirs(vdir) if d.startswith("date=")]:
            date = old[len("date="):]
            folder = f"{vdir}/{old}"
            say(f"{folder} -> {vdir}/<table>/{SESSION_DATE_KEY}={date}/, lineage/{date}.json")
            lineage = storage.read_bytes(f"{folder}/lineage.json")
            if lineage is not None and not dry_run:
                storage.publish(f"{vdir}/lineage/{date}.json", lineage)
            # signals last, as a build publishes them: the date counts as built once whole
            for name, table in sorted(_OLD_SILVER_FILES.items(), key=lambda kv: kv[1] == "signals"):
                rel = f"{folder}/{name}"
                if not storage.exists(rel):
                    continue
                counts["silver_files"] += 1
                if not dry_run:
                    data = parquet_bytes(storage.read_parquet(rel), *codec)
                    storage.publish(f"{vdir}/{table}/{SESSION_DATE_KEY}={date}/part-0.parquet",
                                    data)
            if not dry_run:
                _remove_empty(storage, folder, force=True)
    for rel in _training_files(storage):
        if _has_ns_timestamps(storage, rel):
            say(f"{rel}: timestamps to microseconds")
            counts["training_files"] += 1
            if not dry_run:
                _rewrite_training_file(storage, rel, codec)
    return counts


def _remove_empty(storage: LakeStorage, folder: str, force: bool = False) -> None:
    """Removes a migrated folder: only when no visible Parquet file is left in it (or,
    with ``force``, after its files were copied: a Silver date folder)."""
    if storage.list_files(folder) and not force:
        raise RuntimeError(f"{storage.path(folder)} still holds files after the move")
    storage.fs.delete_dir(storage.path(folder))


def _training_files(storage: LakeStorage) -> list[str]:
    return [storage.relative(p) for p in storage.list_files("gold/training")
            if p.count("/") == storage.path("gold/training").count("/") + 1]


def _has_ns_timestamps(storage: LakeStorage, rel: str) -> bool:
    with storage.fs.open_input_file(storage.path(rel)) as fh:
        schema = pq.read_schema(fh)
    return any(pa.types.is_timestamp(f.type) and f.type.unit == "ns" for f in schema)


def _rewrite_training_file(storage: LakeStorage, rel: str, codec) -> None:
    store = TrainingStore(storage)
    name = rel.rsplit("/", 1)[1][:-len(".parquet")]
    data = parquet_bytes(storage.read_parquet(rel), *codec)
    with store.catalog_lock():
        store.replace_file_and_sha(name, data, hashlib.sha256(data).hexdigest())


def legacy_hint(storage: LakeStorage) -> Optional[str]:
    """One line for a CLI when the lake still has old-layout parts, else None."""
    old = find_legacy(storage)
    if not old:
        return None
    return (f"{len(old)} part(s) of {storage.data_root} are in the old layout (e.g. {old[0]}); "
            f"run: {MIGRATE_COMMAND.format(root=storage.data_root)}")


__all__ = ["LegacyLayoutError", "check_bronze_layout", "check_silver_layout", "find_legacy",
           "migrate", "legacy_hint"]
