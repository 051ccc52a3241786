"""``WriteBoundedShards``: a bounded job's row pieces -> Parquet shards cut and named by content.

Input: ``(shard_key, (piece_path, rows))`` elements, the pieces being Arrow files in a run's
staging folder (``io_connectors.lake.staging``).  Per shard key (one GroupByKey, which
moves only these small references): the key's pieces are read back (memory-mapped
when local), put in canonical order (``transforms.shard_cut``: the layout's sort column,
then every other column), cut into shards of ``max_rows`` rows (the Bronze flush size) and
each shard written as one zstd Parquet file ``part-HHMMSS-<digest>.parquet`` in the key's
folder, where ``digest`` hashes the shard's rows.  A name that already exists holds the
same rows, so it is left alone: re-running a job over the same input adds no file.

The writes are the lake's atomic, never-overwriting ones (``LakeStorage.publish_if_absent``
of ``parquet_bytes``, which fsyncs each file and its folder; dictionary encoding for the
string columns only: on 1000-row shards a dictionary of prices or sizes costs a quarter of
the encoding time and makes the file larger after zstd), four at a time: encoding and
fsync release the GIL, and one writer at a time spent most of its time waiting for the
disk (measured under load: 13 ms per file alone, 2 ms with four writers).  A failed write
fails the job; re-running it writes only what is missing.  Rows are taken
through the sort in slices of ``max_rows * 64``, so memory holds one key's sort order and
one slice besides the mapped pieces.  A record per key (rows, files written, files already
present) goes to the staging folder for the driver's completeness check.

Output: ``(relative_path, rows)`` for each file written.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from io_connectors.lake.staging import Staging, batch_worker_gc
from io_connectors.lake.storage import LakeStorage, parquet_bytes, shard_name
from transforms.shard_cut import canonical_order, cut_bounds, shard_digests

KEYS = "records/keys"            # one record per shard key written
_SLICE_SHARDS = 64
_WRITERS = 4


def key_record_name(key: str) -> str:
    return f"{KEYS}/{hashlib.sha1(key.encode()).hexdigest()}.json"


class _WriteKey(beam.DoFn):
    def __init__(self, storage: LakeStorage, staging: Staging, layout: Callable,
                 max_rows: int, compression: tuple[str, int]):
        self._storage = storage
        self._staging = staging
        self._layout = layout
        self._max_rows = max_rows
        self._compression = compression
        self._rows = Metrics.counter("lake", "rows_written")
        self._files = Metrics.counter("lake", "files_written")
        self._present = Metrics.counter("lake", "files_already_present")
        self._pool = None

    def setup(self):
        batch_worker_gc()
        self._pool = ThreadPoolExecutor(_WRITERS, thread_name_prefix="shard-writer")

    def teardown(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _write(self, folder: str, name: str, shard: pa.Table):
        """Relative path written, or None when that content is already in the lake."""
        data = parquet_bytes(shard, *self._compression, use_dictionary=[
            f.name for f in shard.schema if pa.types.is_string(f.type)])
        try:
            return self._storage.publish_if_absent(f"{folder}/{name}", data)
        except FileExistsError:
            return None

    def process(self, keyed):
        started = time.time()
        key, pieces = keyed
        folder, schema, sort_col = self._layout(key)
        pieces = sorted(pieces)
        if not pieces or not all(type(p) is tuple and len(p) == 2 for p in pieces):
            raise ValueError(f"shard key {key}: malformed piece references {pieces[:3]!r}")
        tables = [self._staging.read_table(path) for path, _ in pieces]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        if not table.schema.equals(schema):
            raise ValueError(f"pieces of {key} are not in the key's schema")
        order = canonical_order(table, sort_col)
        step = self._max_rows * _SLICE_SHARDS
        written = present = 0
        in_order = bool((np.diff(order.to_numpy()) == 1).all())   # already sorted (usual)
        for first in range(0, table.num_rows, step):
            part = (table.slice(first, step) if in_order
                    else table.take(order.slice(first, step)))
            bounds = cut_bounds(part.num_rows, self._max_rows)
            jobs = []
            for (start, length), digest in zip(bounds, shard_digests(part, bounds)):
                shard = part.slice(start, length)
                name = shard_name(shard[sort_col][0].as_py(), digest)
                jobs.append((self._pool.submit(self._write, folder, name, shard), length))
            for job, length in jobs:
                rel = job.result()
                if rel is None:
                    present += 1
                    continue
                written += 1
                self._rows.inc(length)
                self._files.inc()
                yield rel, length
        self._present.inc(present)
        self._staging.write_json(key_record_name(key), {
            "key": key, "rows": table.num_rows, "written": written, "present": present,
            "pid": os.getpid(), "thread": threading.get_ident(), "started": started,
            "ended": time.time()})


class WriteBoundedShards(beam.PTransform):
    """``(shard_key, (piece_path, rows))`` -> ``(relative_path, rows)`` per Parquet file
    written (see the module docstring).

    Args:
      storage: the lake (local or S3).
      staging: the run's staging folder holding the pieces.
      layout: ``key -> (folder, schema, sort_column)`` (``partitioning.shard_layout``).
      max_rows: rows per shard (the last shard of a key holds the rest).
      compression: (codec, level) of the Parquet files.
    """

    def __init__(self, storage: LakeStorage, staging: Staging, layout: Callable,
                 max_rows: int, compression=("zstd", 3)):
        super().__init__()
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self._dofn = _WriteKey(storage, staging, layout, max_rows, tuple(compression))

    def expand(self, pieces):
        return (pieces
                | "GroupKey" >> beam.GroupByKey()
                | "WriteKey" >> beam.ParDo(self._dofn))
