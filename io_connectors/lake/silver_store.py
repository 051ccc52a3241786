"""Silver storage: ``silver/features/{version}/`` on a ``LakeStorage``.

Layout of a version folder::

    silver/features/v3.1.0/manifest.yaml        the manifest + build lineage
    silver/features/v3.1.0/validation.json      named checks over all built dates
    silver/features/v3.1.0/date=2024-12-16/     signals.parquet, state_table.parquet,
                                                episodes.parquet, lineage.json
    silver/features/v3.1.0/_runs/<run>/<date>.json   per-run result of each date

Guarantees.  A date folder is published whole: its files are written into a hidden
staging folder (``.staging-date=…-<token>``), fsynced, then put in place with one rename;
when the date already exists (``force``) the two folders are exchanged atomically
(Linux ``renameat2(RENAME_EXCHANGE)``) and the old one deleted, so a reader sees the old
date or the new one, never a mix and never leftovers of the old build.

On S3 (no rename, no multi-object transaction) a date is published one object at a time:
each object is replaced atomically, the date is not.  ``signals.parquet`` is written last,
so a first build appears in ``built_dates`` only once all its files are there; then the
objects of an older build that the new one does not have are deleted.  While a ``force``
rebuild runs, a reader may get old and new files of the same date (documented
limitation).  Version-level files (manifest, validation, run results) are replaced
atomically: locally write-temp-then-rename, on S3 one PUT.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import io
import json
import os
import shutil
import uuid
from typing import Any, Mapping, Optional

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

from io_connectors.lake import files as lake_files
from io_connectors.lake.files import fsync_dir
from io_connectors.lake.storage import LakeStorage

SIGNALS = "signals.parquet"
STATE_TABLE = "state_table.parquet"
EPISODES = "episodes.parquet"
LINEAGE = "lineage.json"
MANIFEST = "manifest.yaml"
VALIDATION = "validation.json"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2_exchange(a: str, b: str) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        raise OSError("renameat2 is not available in this C library")
    if fn(_AT_FDCWD, a.encode(), _AT_FDCWD, b.encode(), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"renameat2({a}, {b}, RENAME_EXCHANGE): {os.strerror(err)}")


class SilverStore:
    """Reads and writes Silver feature sets below ``silver/features`` of a data root."""

    def __init__(self, storage: LakeStorage):
        self.storage = storage

    # ---- paths -------------------------------------------------------------------------
    @staticmethod
    def version_dir(version: str) -> str:
        return f"silver/features/{version}"

    def date_dir(self, version: str, date: str) -> str:
        return f"{self.version_dir(version)}/date={date}"

    # ---- listing -----------------------------------------------------------------------
    def list_versions(self) -> list[str]:
        return [v for v in self.storage.list_dirs("silver/features")
                if not v.startswith((".", "_"))]

    def built_dates(self, version: str) -> list[str]:
        """Dates whose folder holds ``signals.parquet`` (published dates only)."""
        out = []
        for name in self.storage.list_dirs(self.version_dir(version)):
            if name.startswith("date=") and self.storage.exists(
                    f"{self.version_dir(version)}/{name}/{SIGNALS}"):
                out.append(name[len("date="):])
        return sorted(out)

    # ---- date folders ------------------------------------------------------------------
    def publish_date(self, version: str, date: str, tables: Mapping[str, pa.Table],
                     lineage: Mapping[str, Any], compression=("zstd", 3)) -> str:
        """Writes the date's tables (file name -> table) and ``lineage.json`` and publishes
        them as the date's folder, replacing a previous build atomically (see module)."""
        final_rel = self.date_dir(version, date)
        payload = {name: _parquet_bytes(t, compression) for name, t in tables.items()}
        payload[LINEAGE] = json.dumps(lineage, indent=2, sort_keys=True, default=str).encode()
        if self.storage.is_s3:
            self._publish_s3(final_rel, payload)
            return final_rel
        parent = self.storage.path(self.version_dir(version))
        os.makedirs(parent, exist_ok=True)
        staging = os.path.join(parent, f".staging-date={date}-{uuid.uuid4().hex[:12]}")
        os.makedirs(staging)
        try:
            for name, data in payload.items():
                with open(os.path.join(staging, name), "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
            fsync_dir(staging)
            final = self.storage.path(final_rel)
            try:
                os.rename(staging, final)          # first build: atomic
            except OSError:
                if not os.path.isdir(final):
                    raise
                _renameat2_exchange(staging, final)  # rebuild: atomic swap
            fsync_dir(parent)
        finally:
            if os.path.isdir(staging):             # after a swap: the old build
                shutil.rmtree(staging, ignore_errors=True)
        return final_rel

    def _publish_s3(self, final_rel: str, payload: Mapping[str, bytes]) -> None:
        """One PUT per file, ``signals.parquet`` (the "date is built" marker) last, then
        the leftovers of a previous build deleted (see the module docstring)."""
        fs = self.storage.fs
        folder = self.storage.path(final_rel)
        for name in sorted(payload, key=lambda n: (n == SIGNALS, n)):
            with fs.open_output_stream(f"{folder}/{name}") as out:
                out.write(payload[name])
        stale = [i.path for i in fs.get_file_info(pafs.FileSelector(folder, recursive=True))
                 if i.type == pafs.FileType.File and i.path[len(folder) + 1:] not in payload]
        for path in stale:
            fs.delete_file(path)

    def read_table(self, version: str, date: str, name: str = SIGNALS) -> pa.Table:
        with self.storage.fs.open_input_file(
                self.storage.path(f"{self.date_dir(version, date)}/{name}")) as fh:
            return pq.read_table(fh)

    def read_lineage(self, version: str, date: str) -> dict:
        return self.read_json(f"{self.date_dir(version, date)}/{LINEAGE}")

    # ---- version files -----------------------------------------------------------------
    def write_text(self, rel: str, text: str) -> None:
        """Replaces ``rel`` atomically (``lake_files.replace_bytes``)."""
        lake_files.replace_bytes(self.storage, rel, text.encode())

    def read_text(self, rel: str) -> Optional[str]:
        return lake_files.read_text(self.storage, rel)

    def read_json(self, rel: str) -> Optional[dict]:
        return lake_files.read_json(self.storage, rel)

    def write_json(self, rel: str, obj: Any) -> None:
        lake_files.replace_json(self.storage, rel, obj)

    def write_manifest(self, version: str, manifest: Mapping[str, Any]) -> None:
        self.write_text(f"{self.version_dir(version)}/{MANIFEST}",
                        yaml.safe_dump(dict(manifest), sort_keys=False, allow_unicode=True))

    def read_manifest(self, version: str) -> Optional[dict]:
        text = self.read_text(f"{self.version_dir(version)}/{MANIFEST}")
        return None if text is None else yaml.safe_load(text)

    def run_dir(self, version: str, run_id: str) -> str:
        return f"{self.version_dir(version)}/_runs/{run_id}"

    def run_results(self, version: str, run_id: str) -> list[dict]:
        rel = self.run_dir(version, run_id)
        return [self.read_json(f"{rel}/{os.path.basename(p)}")
                for p in self.storage.list_files(rel, suffix=".json")]


def _parquet_bytes(table: pa.Table, compression) -> bytes:
    sink = io.BytesIO()
    codec, level = compression
    pq.write_table(table, sink, compression=codec, compression_level=level)
    return sink.getvalue()
