"""Lake storage: a data root on local disk or S3, with atomic, never-overwriting writes.

``LakeStorage(data_root)`` takes a local path or ``s3://bucket/prefix``.  S3 settings come
from env (``S3_ENDPOINT``, ``S3_ACCESS_KEY``, ``S3_SECRET_KEY``, ``S3_REGION``) or
arguments.  Every write is all-or-nothing for readers: locally a hidden temporary file is
written, fsynced and hard-linked to its final name (which fails rather than overwrite an
existing file), then the folder is fsynced; on S3 a single PUT is atomic.
"""
from __future__ import annotations

import datetime as dt
import io
import os
import uuid
from typing import Optional

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from io_connectors.config import load_config


class LakeStorage:
    """A data root and the filesystem that serves it (picklable: rebuilt on unpickle)."""

    def __init__(self, data_root: str, s3_endpoint: Optional[str] = None,
                 s3_access_key: Optional[str] = None, s3_secret_key: Optional[str] = None,
                 s3_region: Optional[str] = None):
        self.data_root = data_root.rstrip("/") if data_root != "/" else data_root
        self._s3 = dict(endpoint=s3_endpoint or os.environ.get("S3_ENDPOINT"),
                        access_key=s3_access_key or os.environ.get("S3_ACCESS_KEY"),
                        secret_key=s3_secret_key or os.environ.get("S3_SECRET_KEY"),
                        region=s3_region or os.environ.get("S3_REGION", "us-east-1"))
        self._fs: Optional[pafs.FileSystem] = None

    def __getstate__(self):
        return {"data_root": self.data_root, "_s3": self._s3, "_fs": None}

    @property
    def is_s3(self) -> bool:
        return self.data_root.startswith("s3://")

    @property
    def fs(self) -> pafs.FileSystem:
        if self._fs is None:
            if self.is_s3:
                ep = self._s3["endpoint"]
                kw = dict(access_key=self._s3["access_key"], secret_key=self._s3["secret_key"],
                          region=self._s3["region"])
                if ep:
                    scheme, _, host = ep.partition("://")
                    kw.update(endpoint_override=host or scheme,
                              scheme=scheme if host else "https")
                self._fs = pafs.S3FileSystem(**kw)
            else:
                self._fs = pafs.LocalFileSystem()
        return self._fs

    def path(self, relative: str) -> str:
        """The filesystem path (for ``self.fs``) of a path relative to the data root."""
        root = self.data_root[len("s3://"):] if self.is_s3 else os.path.abspath(self.data_root)
        return f"{root}/{relative}" if relative else root

    def exists(self, relative: str) -> bool:
        return self.fs.get_file_info(self.path(relative)).type != pafs.FileType.NotFound

    def list_dirs(self, relative: str) -> list[str]:
        """Names of the sub-folders of a folder (empty if it does not exist)."""
        sel = pafs.FileSelector(self.path(relative), allow_not_found=True)
        return sorted(i.base_name for i in self.fs.get_file_info(sel)
                      if i.type == pafs.FileType.Directory)

    def list_files(self, relative: str, suffix: str = ".parquet") -> list[str]:
        """Paths (for ``self.fs``) of visible files below a folder, recursively."""
        sel = pafs.FileSelector(self.path(relative), allow_not_found=True, recursive=True)
        return sorted(i.path for i in self.fs.get_file_info(sel)
                      if i.type == pafs.FileType.File and i.path.endswith(suffix)
                      and not any(p.startswith((".", "_")) for p in
                                  i.path[len(self.path(relative)):].split("/") if p))

    def write_parquet(self, relative_dir: str, name: str, table: pa.Table,
                      compression: str = "zstd", compression_level: int = 3) -> str:
        """Writes ``table`` as ``relative_dir/name`` atomically; never overwrites.

        Returns the relative path.  Raises FileExistsError if the name is taken.
        """
        rel = f"{relative_dir}/{name}"
        if self.is_s3:
            if self.exists(rel):
                raise FileExistsError(rel)
            sink = io.BytesIO()
            pq.write_table(table, sink, compression=compression,
                           compression_level=compression_level)
            with self.fs.open_output_stream(self.path(rel)) as out:
                out.write(sink.getvalue())
            return rel
        folder = self.path(relative_dir)
        os.makedirs(folder, exist_ok=True)
        final = os.path.join(folder, name)
        tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                pq.write_table(table, fh, compression=compression,
                               compression_level=compression_level)
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, final)           # atomic, and fails if final exists
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return rel


def parquet_options() -> tuple[str, int]:
    """(compression, level) from configs/lake.yaml."""
    p = load_config("lake").get("parquet", {})
    return p.get("compression", "zstd"), int(p.get("compression_level", 3))


def resolve_data_root(flag: Optional[str] = None) -> str:
    """``--data_root`` if given, else env ``DATA_ROOT``, else configs/lake.yaml."""
    from io_connectors.config import resolve_path
    value = flag or os.environ.get("DATA_ROOT") or load_config("lake").get("data_root", "./data")
    return resolve_path(str(value))


def shard_name(first_ts_ns: int, unique: Optional[str] = None) -> str:
    """``part-HHMMSS-<unique>.parquet``, HHMMSS = UTC time of the shard's first row;
    ``unique`` defaults to a random token."""
    hhmmss = dt.datetime.fromtimestamp(first_ts_ns / 1e9, dt.timezone.utc).strftime("%H%M%S")
    return f"part-{hhmmss}-{unique or uuid.uuid4().hex[:16]}.parquet"
