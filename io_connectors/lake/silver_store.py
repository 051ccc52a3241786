"""Silver storage: ``silver/features/{version}/`` on a ``LakeStorage``.

Layout of a version folder: one Hive dataset per table, the JSON/YAML beside them::

    silver/features/v3.1.0/signals/session_date=2024-12-16/part-0.parquet
    silver/features/v3.1.0/state_table/session_date=2024-12-16/part-0.parquet
    silver/features/v3.1.0/episodes/session_date=2024-12-16/part-0.parquet
    silver/features/v3.1.0/lineage/2024-12-16.json     per-date build lineage
    silver/features/v3.1.0/manifest.yaml               the manifest + build lineage
    silver/features/v3.1.0/validation.json             named checks over all built dates
    silver/features/v3.1.0/_runs/<run>/<date>.json     per-run result of each date

so ``read_parquet('…/v3.1.0/signals')`` in DuckDB, polars, pandas, pyarrow or Spark reads
exactly one table (the folder key is ``session_date``, not ``date``: the tables hold a
``date`` column of their own).  Timestamps are stored as microseconds UTC (the storage's
Parquet format); ``read_table`` returns them as ``timestamp[ns, UTC]``, the manifest's type.

Guarantees.  Each table of a date is ONE file with a fixed name, replaced atomically
(``LakeStorage.publish``: rename locally, one PUT on S3), so a reader of a table gets the
old build of the date or the new one, never a mix, and a rebuild leaves no stale file.  The
files of a date are published lineage first, ``signals`` last (a date counts as built, in
``built_dates``, once its signals are there); then a table the new build no longer has is
deleted.  During a forced rebuild a reader of SEVERAL tables may briefly see a new
``state_table`` beside the old ``signals`` of that date.  Version-level files (manifest,
validation, run results) are replaced atomically too.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import pyarrow as pa
import yaml

from io_connectors.lake import files as lake_files
from io_connectors.lake.legacy_layout import check_silver_layout
from io_connectors.lake.storage import LakeStorage, parquet_bytes
from transforms.partitioning import SESSION_DATE_KEY

SIGNALS = "signals"
STATE_TABLE = "state_table"
EPISODES = "episodes"
TABLES = (SIGNALS, STATE_TABLE, EPISODES)
PART = "part-0.parquet"
LINEAGE_DIR = "lineage"
MANIFEST = "manifest.yaml"
VALIDATION = "validation.json"


class SilverStore:
    """Reads and writes Silver feature sets below ``silver/features`` of a data root (the
    layout and guarantees are in the module docstring).  A version still in the layout
    before one-dataset-per-table (``date=…/signals.parquet``) raises ``LegacyLayoutError``
    naming the migration command."""

    def __init__(self, storage: LakeStorage):
        self.storage = storage

    # ---- paths -------------------------------------------------------------------------
    @staticmethod
    def version_dir(version: str) -> str:
        return f"silver/features/{version}"

    def table_dir(self, version: str, table: str) -> str:
        """The Hive dataset folder of one table of a version."""
        return f"{self.version_dir(version)}/{table}"

    def table_file(self, version: str, date: str, table: str = SIGNALS) -> str:
        return f"{self.table_dir(version, table)}/{SESSION_DATE_KEY}={date}/{PART}"

    def lineage_file(self, version: str, date: str) -> str:
        return f"{self.version_dir(version)}/{LINEAGE_DIR}/{date}.json"

    # ---- listing -----------------------------------------------------------------------
    def list_versions(self) -> list[str]:
        return [v for v in self.storage.list_dirs("silver/features")
                if not v.startswith((".", "_"))]

    def built_dates(self, version: str) -> list[str]:
        """Dates whose signals are published (see the module docstring)."""
        check_silver_layout(self.storage, self.version_dir(version))
        prefix = f"{SESSION_DATE_KEY}="
        out = []
        for path in self.storage.list_files(self.table_dir(version, SIGNALS)):
            folder, name = path.rsplit("/", 2)[-2:]
            if name == PART and folder.startswith(prefix):
                out.append(folder[len(prefix):])
        return sorted(out)

    # ---- dates -------------------------------------------------------------------------
    def publish_date(self, version: str, date: str, tables: Mapping[str, pa.Table],
                     lineage: Mapping[str, Any], compression=("zstd", 3)) -> str:
        """Publishes the date's tables (table name -> Arrow table; ``signals`` required)
        and its lineage, replacing a previous build of the date (see the module docstring
        for the order).  Returns the signals file's path."""
        unknown = sorted(set(tables) - set(TABLES))
        if unknown or SIGNALS not in tables:
            raise ValueError(f"Silver tables are {TABLES} (signals required), got {sorted(tables)}")
        payload = {name: parquet_bytes(t, *compression) for name, t in tables.items()}
        lake_files.replace_json(self.storage, self.lineage_file(version, date), dict(lineage))
        for name in sorted(payload, key=lambda n: n == SIGNALS):       # signals last
            self.storage.publish(self.table_file(version, date, name), payload[name])
        for name in TABLES:
            if name not in payload:          # a table the older build had and this one not
                self.storage.delete(self.table_file(version, date, name))
        return self.table_file(version, date, SIGNALS)

    def read_table(self, version: str, date: str, name: str = SIGNALS) -> pa.Table:
        check_silver_layout(self.storage, self.version_dir(version))
        return self.storage.read_parquet(self.table_file(version, date, name))

    def has_table(self, version: str, date: str, name: str) -> bool:
        return self.storage.exists(self.table_file(version, date, name))

    def read_lineage(self, version: str, date: str) -> dict:
        return self.read_json(self.lineage_file(version, date))

    # ---- version files -----------------------------------------------------------------
    def write_text(self, rel: str, text: str) -> None:
        """Replaces ``rel`` atomically (``LakeStorage.publish``)."""
        lake_files.replace_text(self.storage, rel, text)

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

    def read_validation(self, version: str) -> Optional[dict]:
        return self.read_json(f"{self.version_dir(version)}/{VALIDATION}")

    def write_validation(self, version: str, validation: Mapping[str, Any]) -> None:
        self.write_json(f"{self.version_dir(version)}/{VALIDATION}", dict(validation))

    def run_dir(self, version: str, run_id: str) -> str:
        return f"{self.version_dir(version)}/_runs/{run_id}"

    def run_results(self, version: str, run_id: str) -> list[dict]:
        rel = self.run_dir(version, run_id)
        return [self.read_json(f"{rel}/{os.path.basename(p)}")
                for p in self.storage.list_files(rel, suffix=".json")]
