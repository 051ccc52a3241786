"""Lake storage: ONE API over a data root on local disk or S3, the backend chosen by the
root's URL scheme (as pyiceberg's ``FileIO``): a plain path or ``file://`` -> local disk,
``s3://bucket/prefix`` -> S3 (``io_connectors/lake/backends/``).

Every writer of the lake uses these operations, on paths relative to the data root:

=====================  ==================================================================
``publish``            ``rel`` holds exactly the given bytes, replacing what was there
``publish_if_absent``  the same, but ``FileExistsError`` if ``rel`` exists (never overwrites)
``exchange``           a staged file takes the place of ``rel`` in one step
``lock``               an exclusive lock (context manager) shared by every process of the lake
``list_dirs``/``list_files``   what is published (hidden ``.``/``_`` names left out)
=====================  ==================================================================

plus ``read_bytes``, ``exists``, ``delete`` and the Parquet conveniences ``write_parquet``
(a shard: ``publish_if_absent`` of the serialised table) and ``read_parquet``.  Every write
is all-or-nothing for readers on both backends: locally a hidden temporary file is written,
fsynced and renamed or hard-linked into place and the folder fsynced; on S3 an object
appears whole when its upload completes, and "if absent" is S3's conditional
``If-None-Match: *`` PUT (of two writers racing for one key, exactly one wins).

S3 settings, first found wins: the constructor's arguments, then the environment
(``S3_ENDPOINT``, ``S3_ACCESS_KEY``, ``S3_SECRET_KEY``, ``S3_REGION``: the names are set in
the ``s3.env`` section of configs/lake.yaml), then ``s3.endpoint``/``s3.region`` of
configs/lake.yaml.  Credentials never come from the YAML; without them the default AWS
credential chain applies.  Endpoint ``null`` means AWS itself.

Parquet files are written with timestamps as microseconds UTC (``TIMESTAMP(MICROS,
isAdjustedToUTC=true)``, which every reader, Spark included, understands); columns named
``*_ns`` keep exact nanoseconds as int64.  ``read_parquet`` returns timestamp columns as
``timestamp[ns, UTC]`` again (the in-memory type of the project's schemas).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from typing import Optional
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from io_connectors.config import load_config
from io_connectors.lake.backends import open_backend

TIMESTAMP_UNIT = "us"       # the unit of every timestamp column in the lake's Parquet files


class LakeStorage:
    """A data root and its backend (see the module docstring).

    In: ``data_root`` (local path, ``file://path`` or ``s3://bucket/prefix``) and optional S3
    settings (precedence in the module docstring).  Out: the storage API on root-relative
    paths, ``fs`` (a pyarrow filesystem for datasets and reads) and ``path(rel)`` (the path
    of ``rel`` on ``fs``).  A scheme other than ``file``/``s3`` raises ConfigError.

    Picklable: only the root and the RESOLVED S3 settings (credentials included) are
    pickled; clients are rebuilt on first use, so a Beam worker reaches the same store as
    the process that built the pipeline whatever its own environment.
    """

    def __init__(self, data_root: str, s3_endpoint: Optional[str] = None,
                 s3_access_key: Optional[str] = None, s3_secret_key: Optional[str] = None,
                 s3_region: Optional[str] = None):
        self.data_root = data_root.rstrip("/") if data_root != "/" else data_root
        split = urlsplit(self.data_root) if "://" in self.data_root else None
        self.scheme = split.scheme.lower() if split else ""
        if self.scheme == "s3":
            root = self.data_root[len("s3://"):]
        elif self.scheme == "file":
            root = split.path or "/"
        else:
            root = os.path.abspath(self.data_root)
        # Resolved now (not on the workers); a local root needs and reads no S3 settings.
        self._s3 = s3_settings(endpoint=s3_endpoint, access_key=s3_access_key,
                               secret_key=s3_secret_key, region=s3_region) \
            if self.scheme == "s3" else {}
        self.backend = open_backend(self.scheme, root, self._s3)
        self._root = self.backend.root
        # folders already found free of the old layout (io_connectors.lake.legacy_layout)
        self.layout_checked: set = set()

    @property
    def fs(self) -> pafs.FileSystem:
        return self.backend.fs

    def path(self, relative: str) -> str:
        """The filesystem path (for ``self.fs``) of a path relative to the data root."""
        return f"{self._root}/{relative}" if relative else self._root

    # ---- the storage API ---------------------------------------------------------------
    def publish(self, relative: str, data) -> str:
        """``relative`` holds exactly ``data`` (bytes-like) afterwards, replacing any
        previous content atomically; returns ``relative``."""
        self.backend.publish(self.path(relative), data)
        return relative

    def publish_if_absent(self, relative: str, data) -> str:
        """Like ``publish`` but never overwrites: FileExistsError if ``relative`` exists
        (also when another writer wins a race for it); returns ``relative``."""
        self.backend.publish_if_absent(self.path(relative), data)
        return relative

    def exchange(self, staged: str, relative: str) -> str:
        """Puts the staged file ``staged`` (e.g. written with ``publish`` under a hidden
        name) in place of ``relative`` in one step for readers (replacing what was there);
        ``staged`` no longer exists afterwards.  Returns ``relative``."""
        self.backend.exchange(self.path(staged), self.path(relative))
        return relative

    def lock(self, relative: str, timeout_s: float = 60.0) -> contextlib.AbstractContextManager:
        """An exclusive lock named ``relative`` (a hidden name is best), held across every
        process and host using this lake: ``with storage.lock("x/.lock"): ...``.  Waits up
        to ``timeout_s``, then raises TimeoutError."""
        return self.backend.lock(self.path(relative), timeout_s)

    def delete(self, relative: str) -> bool:
        """Deletes a file; False if it did not exist."""
        return self.backend.delete(self.path(relative))

    def exists(self, relative: str) -> bool:
        return self.fs.get_file_info(self.path(relative)).type != pafs.FileType.NotFound

    def read_bytes(self, relative: str) -> Optional[bytes]:
        """The file's bytes, or None if it does not exist."""
        try:
            with self.fs.open_input_stream(self.path(relative)) as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def list_dirs(self, relative: str) -> list[str]:
        """Sorted names of the visible sub-folders of a folder (not starting with '.' or
        '_'; empty if the folder does not exist).  On S3 a folder is a key prefix."""
        sel = pafs.FileSelector(self.path(relative), allow_not_found=True)
        return sorted(i.base_name for i in self.fs.get_file_info(sel)
                      if i.type == pafs.FileType.Directory
                      and not i.base_name.startswith((".", "_")))

    def list_files(self, relative: str, suffix: str = ".parquet") -> list[str]:
        """Sorted paths (for ``self.fs``) of the files below a folder, recursively, ending
        in ``suffix``, with no path part below the folder starting with '.' or '_'."""
        sel = pafs.FileSelector(self.path(relative), allow_not_found=True, recursive=True)
        return sorted(i.path for i in self.fs.get_file_info(sel)
                      if i.type == pafs.FileType.File and i.path.endswith(suffix)
                      and not any(p.startswith((".", "_")) for p in
                                  i.path[len(self.path(relative)):].split("/") if p))

    def relative(self, path: str) -> str:
        """The root-relative form of a path on ``fs`` (e.g. one of ``list_files``)."""
        return path[len(self._root):].lstrip("/")

    # ---- Parquet -----------------------------------------------------------------------
    def write_parquet(self, relative_dir: str, name: str, table: pa.Table,
                      compression: str = "zstd", compression_level: int = 3) -> str:
        """Writes ``table`` as ``relative_dir/name`` (``publish_if_absent``): atomic, never
        overwrites (FileExistsError if the name is taken).  Returns the relative path."""
        return self.publish_if_absent(f"{relative_dir}/{name}",
                                      parquet_bytes(table, compression, compression_level))

    def read_parquet(self, relative: str, columns=None) -> pa.Table:
        """A Parquet file of the lake, timestamps as ``timestamp[ns, UTC]`` (see the
        module docstring)."""
        with self.fs.open_input_file(self.path(relative)) as fh:
            return widen_timestamps(pq.read_table(fh, columns=columns))


def parquet_bytes(table: pa.Table, compression: str = "zstd",
                  compression_level: Optional[int] = 3, use_dictionary=True) -> pa.Buffer:
    """``table`` as Parquet bytes in the lake's format: timestamps as microseconds UTC
    (sub-microsecond digits dropped: the exact time is in the ``*_ns`` column).
    ``use_dictionary``: as pyarrow's (True, False or the columns to dictionary-encode)."""
    if not isinstance(table, pa.Table):
        raise TypeError(f"expected a pyarrow Table, got {type(table).__name__}")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression, compression_level=compression_level,
                   coerce_timestamps=TIMESTAMP_UNIT, allow_truncated_timestamps=True,
                   use_dictionary=use_dictionary)
    return sink.getvalue()


def widen_timestamps(table: pa.Table) -> pa.Table:
    """Timestamp columns of a table read from the lake as ``timestamp[ns]`` (same zone)."""
    if not any(pa.types.is_timestamp(f.type) and f.type.unit != "ns" for f in table.schema):
        return table
    fields = [pa.field(f.name, pa.timestamp("ns", f.type.tz), f.nullable, f.metadata)
              if pa.types.is_timestamp(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields, table.schema.metadata))


def parquet_options() -> tuple[str, int]:
    """(compression, level) from configs/lake.yaml."""
    p = load_config("lake").get("parquet", {})
    return p.get("compression", "zstd"), int(p.get("compression_level", 3))


_S3_ENV_DEFAULTS = {"endpoint": "S3_ENDPOINT", "access_key": "S3_ACCESS_KEY",
                    "secret_key": "S3_SECRET_KEY", "region": "S3_REGION"}


def s3_settings(**given: Optional[str]) -> dict:
    """S3 settings ``endpoint, access_key, secret_key, region, connect_timeout_s,
    request_timeout_s``: a non-empty argument, else the env variable named in
    configs/lake.yaml ``s3.env``, else ``s3.endpoint``/``s3.region`` of the YAML."""
    cfg = load_config("lake").get("s3") or {}
    env_names = {**_S3_ENV_DEFAULTS, **(cfg.get("env") or {})}
    out = {}
    for key, env_name in env_names.items():
        value = given.get(key) or os.environ.get(str(env_name)) or None
        if value is None and key in ("endpoint", "region"):
            value = cfg.get(key)
        out[key] = None if value is None else str(value)
    out["region"] = out["region"] or "us-east-1"
    out["connect_timeout_s"] = float(cfg.get("connect_timeout_s", 5))
    out["request_timeout_s"] = float(cfg.get("request_timeout_s", 60))
    return out


def resolve_data_root(flag: Optional[str] = None) -> str:
    """``--data_root`` if given, else env ``DATA_ROOT``, else configs/lake.yaml.

    ``USE_S3`` (the seed's switch) is optional: the ``s3://`` scheme of the root is what
    selects S3.  ``USE_S3=true`` with a root that is not ``s3://bucket[/prefix]`` is a
    contradiction and raises ConfigError instead of silently writing to local disk.
    """
    from io_connectors.config import ConfigError, resolve_path
    value = str(flag or os.environ.get("DATA_ROOT")
                or load_config("lake").get("data_root", "./data"))
    use_s3 = os.environ.get("USE_S3", "").strip().lower()
    if use_s3 not in ("", "0", "1", "false", "true", "no", "yes"):
        raise ConfigError(f"USE_S3 must be true or false, got {use_s3!r}")
    if use_s3 in ("1", "true", "yes") and not value.startswith("s3://"):
        raise ConfigError(f"USE_S3=true but the data root {value!r} is not s3://bucket/prefix "
                          f"(set DATA_ROOT or --data_root to an s3:// URL)")
    return resolve_path(value)


def shard_name(first_ts_ns: int, unique: Optional[str] = None) -> str:
    """``part-HHMMSS-<unique>.parquet``, HHMMSS = UTC time of the shard's first row;
    ``unique`` defaults to a random token."""
    hhmmss = dt.datetime.fromtimestamp(first_ts_ns / 1e9, dt.timezone.utc).strftime("%H%M%S")
    return f"part-{hhmmss}-{unique or uuid.uuid4().hex[:16]}.parquet"
