"""Gold training datasets on a ``LakeStorage``: ``gold/training/``.

Layout::

    gold/training/{name}.parquet            the dataset (one file; timestamps in microseconds)
    gold/training/{name}_metadata.json      how it was made: Silver version, gates, SHA-256…
    gold/training/catalog.json              one entry per dataset name
    gold/training/.catalog.lock             the lock serialising catalog updates
    gold/training/.staging-{name}-<token>.parquet   a promotion in progress (hidden)

``TrainingStore.publish(staged, name, metadata)`` puts a staged file in place under the
catalog lock (``LakeStorage.lock``: flock locally, a conditional-PUT lease on S3): the data
file first (``exchange``: one step for readers, replacing an older dataset of that name),
then the metadata, then the catalog entry (keyed by name: never duplicated), each replaced
atomically.  A reader may see the new data file with the previous metadata for the
moment between two of these steps; ``validate_dataset`` would flag that as a SHA-256
mismatch.
"""
from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from typing import Optional

import pyarrow as pa

from io_connectors.lake import files as lake_files
from io_connectors.lake.storage import LakeStorage

TRAINING = "gold/training"
CATALOG = f"{TRAINING}/catalog.json"
LOCK = f"{TRAINING}/.catalog.lock"


class TrainingStore:
    """Reads and writes the Gold training datasets of a lake (see the module docstring)."""

    def __init__(self, storage: LakeStorage):
        self.storage = storage

    # ---- paths -------------------------------------------------------------------------
    @staticmethod
    def data_file(name: str) -> str:
        return f"{TRAINING}/{name}.parquet"

    @staticmethod
    def metadata_file(name: str) -> str:
        return f"{TRAINING}/{name}_metadata.json"

    @staticmethod
    def new_staging_file(name: str) -> str:
        """A fresh hidden path to stage a promotion of ``name`` in."""
        return f"{TRAINING}/.staging-{name}-{uuid.uuid4().hex[:12]}.parquet"

    # ---- reading -----------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        return self.storage.exists(self.data_file(name))

    def read_metadata(self, name: str) -> Optional[dict]:
        return lake_files.read_json(self.storage, self.metadata_file(name))

    def read_table(self, rel: str) -> pa.Table:
        """A training (or staged) file, timestamps as ``timestamp[ns, UTC]``."""
        return self.storage.read_parquet(rel)

    def read_bytes(self, rel: str) -> Optional[bytes]:
        return self.storage.read_bytes(rel)

    def catalog(self) -> dict:
        return lake_files.read_json(self.storage, CATALOG) or {"datasets": {}}

    # ---- writing -----------------------------------------------------------------------
    def catalog_lock(self, timeout_s: float = 120.0) -> AbstractContextManager:
        return self.storage.lock(LOCK, timeout_s)

    def publish(self, staged: str, name: str, metadata: dict) -> None:
        """Data file, metadata, catalog entry, under the catalog lock (module docstring)."""
        with self.catalog_lock():
            self.storage.exchange(staged, self.data_file(name))
            lake_files.replace_json(self.storage, self.metadata_file(name), metadata)
            self._update_catalog(name, metadata)

    def replace_file_and_sha(self, name: str, data, sha256: str) -> None:
        """Replaces a dataset's file by equivalent bytes (a format migration) and records
        the new SHA-256 in its metadata and catalog entry.  Call under ``catalog_lock``."""
        staged = self.new_staging_file(name)
        self.storage.publish(staged, data)
        self.storage.exchange(staged, self.data_file(name))
        metadata = self.read_metadata(name)
        if metadata is not None:
            metadata["sha256"] = sha256
            lake_files.replace_json(self.storage, self.metadata_file(name), metadata)
            self._update_catalog(name, metadata)

    def discard(self, staged: str) -> None:
        self.storage.delete(staged)

    def _update_catalog(self, name: str, metadata: dict) -> None:
        catalog = self.catalog()
        catalog["datasets"][name] = {
            "silver_version": metadata["silver_version"],
            "created_at": metadata["created_at"], "signal_count": metadata["signal_count"],
            "date_range": metadata["date_range"], "path": self.data_file(name),
            "metadata_path": self.metadata_file(name),
            "sha256": metadata["sha256"], "notes": metadata["notes"]}
        catalog["updated_at"] = metadata["created_at"]
        lake_files.replace_json(self.storage, CATALOG, catalog)
