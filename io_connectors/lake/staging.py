"""A backfill run's scratch space: row pieces and result records.

``Staging(root, run_id)`` is the folder ``<root>/<run_id>/`` on local disk or S3 (chosen
by the root's scheme, through ``LakeStorage``), shared by the driver and every worker:

- ``pieces/<unit>/<n>.arrow``: rows of one shard key from one block (Arrow IPC file,
  uncompressed, memory-mapped when local), read back by the worker that writes that key;
- ``records/<kind>/<name>.json``: what each step did (file shares decoded, keys
  written), which the driver reads to check that nothing is missing.

Nothing here is part of the lake: the driver removes the run's folder when it ends.
Memory stays bounded: a piece is written as soon as its block is decoded, and a key's
pieces are read back only by the step that writes that key.
"""
from __future__ import annotations

import gc
import json
import os
from typing import Iterator, Optional

import pyarrow as pa
import pyarrow.fs as pafs

from io_connectors.lake.storage import LakeStorage


class Staging:
    """The scratch folder of one run (see the module docstring).  Picklable: only the
    root, its resolved S3 settings and the run id travel to the workers."""

    def __init__(self, root: str, run_id: str, storage: Optional[LakeStorage] = None):
        self.root = root
        self.run_id = run_id
        self._store = storage or LakeStorage(root)

    @property
    def is_local(self) -> bool:
        return self._store.scheme != "s3"

    def path(self, rel: str) -> str:
        """The filesystem path of a path relative to the run's folder."""
        return self._store.path(f"{self.run_id}/{rel}")

    def _mkdirs(self, rel: str) -> None:
        if self.is_local:
            os.makedirs(os.path.dirname(self.path(rel)), exist_ok=True)

    def open_output(self, rel: str):
        """A writable binary stream for ``rel`` (parent folders created)."""
        self._mkdirs(rel)
        return self._store.fs.open_output_stream(self.path(rel))

    def write_table(self, rel: str, table: pa.Table) -> None:
        with self.open_output(rel) as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)

    def read_table(self, rel: str) -> pa.Table:
        """A table written by ``write_table``; memory-mapped when local (pages stay in the
        page cache, not in the process)."""
        if self.is_local:
            return pa.ipc.open_file(pa.memory_map(self.path(rel))).read_all()
        with self._store.fs.open_input_file(self.path(rel)) as src:
            return pa.ipc.open_file(src).read_all()

    def write_json(self, rel: str, obj) -> None:
        with self.open_output(rel) as out:
            out.write(json.dumps(obj, sort_keys=True).encode())

    def read_jsons(self, folder: str) -> Iterator[dict]:
        """Every JSON record below ``folder`` (any order)."""
        sel = pafs.FileSelector(self.path(folder), allow_not_found=True, recursive=True)
        for info in self._store.fs.get_file_info(sel):
            if info.type == pafs.FileType.File and info.path.endswith(".json"):
                with self._store.fs.open_input_stream(info.path) as src:
                    yield json.loads(src.read())

    def remove(self, rel: str) -> None:
        self._store.delete(f"{self.run_id}/{rel}")

    def remove_run(self) -> None:
        """Deletes the run's folder and everything in it."""
        p = self._store.path(self.run_id)
        if self._store.fs.get_file_info(p).type != pafs.FileType.NotFound:
            self._store.fs.delete_dir(p)


def batch_worker_gc() -> None:
    """Makes the cyclic garbage collector cheap in a batch worker process: what is alive
    now (modules, the pipeline) is frozen out of collections and young collections run
    every 50,000 allocations instead of 700 (measured: the collector took about 7 % of a
    backfill's CPU).  Reference-counted objects are freed at once as always."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
