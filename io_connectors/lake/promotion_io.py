"""The lake edges of a Gold promotion pipeline (``pipelines.gold_curator``):

- ``ReadSilverSignals(storage, version)``: PCollection of dates -> the ``signals`` table
  (``pyarrow.Table``, the manifest's types) of each date of a Silver version;
- ``WriteStagedTable(storage, rel, compression)``: PCollection of at most one table ->
  the table published at ``rel`` (a hidden staging path), emitting ``(rel, rows)``.
  No table (nothing to promote) raises ``ValueError``.

Both are plain ParDo/Map shapes so that any Beam runner can run the promotion.
"""
from __future__ import annotations

import apache_beam as beam

from io_connectors.lake.silver_store import SilverStore
from io_connectors.lake.storage import LakeStorage, parquet_bytes


class _ReadSignalsDoFn(beam.DoFn):
    def __init__(self, storage: LakeStorage, version: str):
        super().__init__()
        self.storage, self.version = storage, version

    def process(self, date):
        yield SilverStore(self.storage).read_table(self.version, date)


class ReadSilverSignals(beam.PTransform):
    """Dates -> the ``signals`` table of each date of a Silver version (dates are
    reshuffled first so that a runner can spread the reads)."""

    def __init__(self, storage: LakeStorage, version: str):
        super().__init__()
        self.storage, self.version = storage, version

    def expand(self, dates):
        return dates | beam.Reshuffle() | beam.ParDo(_ReadSignalsDoFn(self.storage, self.version))


def _write_staged(table, storage: LakeStorage, rel: str, compression):
    if table is None:
        raise ValueError("no Silver signals to promote")
    storage.publish(rel, parquet_bytes(table, *compression))
    return rel, table.num_rows


class WriteStagedTable(beam.PTransform):
    """One table -> one Parquet file at ``rel`` (atomic ``publish``); emits
    ``(rel, rows)``."""

    def __init__(self, storage: LakeStorage, rel: str, compression=("zstd", 3)):
        super().__init__()
        self.storage, self.rel, self.compression = storage, rel, tuple(compression)

    def expand(self, tables):
        return tables | "Write" >> beam.Map(_write_staged, self.storage, self.rel,
                                            self.compression)
