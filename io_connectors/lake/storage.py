"""Lake storage: a data root on local disk or S3, with atomic, never-overwriting writes.

``LakeStorage(data_root)`` takes a local path or ``s3://bucket/prefix``.  S3 settings, first
found wins: the constructor's arguments, then the environment (``S3_ENDPOINT``,
``S3_ACCESS_KEY``, ``S3_SECRET_KEY``, ``S3_REGION``: the names are set in the ``s3.env``
section of configs/lake.yaml), then ``s3.endpoint``/``s3.region`` of configs/lake.yaml.
Credentials never come from the YAML; without them pyarrow's default AWS credential chain
applies.  Endpoint ``null`` means AWS itself.

Every write is all-or-nothing for readers.  Locally a hidden temporary file is written,
fsynced and hard-linked to its final name (which fails rather than overwrite an existing
file), then the folder is fsynced.  On S3 an object becomes visible whole when its upload
completes, but S3 has no "create if absent" here: ``write_parquet`` checks that the key is
free and then uploads, so two writers racing for the SAME key between the check and the
upload both succeed and the last one wins.  Shard names carry a random or content-hash
token, so distinct writers never pick the same key; a content-addressed re-write of the
same key writes the same bytes.
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
    """A data root and the filesystem that serves it.

    In: ``data_root`` (local path or ``s3://bucket/prefix``) and optional S3 settings (see
    the module docstring for their precedence).  Out: ``fs`` (a pyarrow filesystem),
    ``path(rel)`` (the path of a root-relative path on ``fs``), listing, ``exists`` and
    ``write_parquet``.

    Picklable: only the root and the RESOLVED S3 settings (credentials included) are
    pickled, the filesystem is rebuilt on first use, so a Beam worker reaches the same
    store as the process that built the pipeline whatever its own environment.
    """

    def __init__(self, data_root: str, s3_endpoint: Optional[str] = None,
                 s3_access_key: Optional[str] = None, s3_secret_key: Optional[str] = None,
                 s3_region: Optional[str] = None):
        self.data_root = data_root.rstrip("/") if data_root != "/" else data_root
        # Resolved now (not on the workers); a local root needs and reads no S3 settings.
        self._s3 = s3_settings(endpoint=s3_endpoint, access_key=s3_access_key,
                               secret_key=s3_secret_key, region=s3_region) if self.is_s3 else {}
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
                          region=self._s3["region"],
                          connect_timeout=self._s3["connect_timeout_s"],
                          request_timeout=self._s3["request_timeout_s"])
                if ep:
                    scheme, _, host = ep.partition("://")
                    kw.update(endpoint_override=(host or scheme).rstrip("/"),
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

    def write_parquet(self, relative_dir: str, name: str, table: pa.Table,
                      compression: str = "zstd", compression_level: int = 3) -> str:
        """Writes ``table`` as ``relative_dir/name`` atomically; never overwrites.

        Returns the relative path.  Raises FileExistsError if the name is taken.  On S3
        the check and the upload are two requests: see the module docstring for the race.
        """
        rel = f"{relative_dir}/{name}"
        if self.is_s3:
            sink = io.BytesIO()        # serialise first: keeps check -> upload short
            pq.write_table(table, sink, compression=compression,
                           compression_level=compression_level)
            if self.exists(rel):
                raise FileExistsError(rel)
            with self.fs.open_output_stream(self.path(rel)) as out:
                out.write(sink.getbuffer())
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
    """``--data_root`` if given, else env ``DATA_ROOT``, else configs/lake.yaml; a local
    path or ``s3://bucket[/prefix]`` (any other scheme raises ConfigError).

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
    if "://" in value and not value.startswith("s3://"):
        raise ConfigError(f"data root {value!r} has an unknown scheme "
                          f"{value.split('://', 1)[0]!r}: use a local path or s3://bucket/prefix")
    if value.startswith("s3://") and not value[len("s3://"):].split("/", 1)[0]:
        raise ConfigError(f"data root {value!r} names no bucket: use s3://bucket[/prefix]")
    return resolve_path(value)


def shard_name(first_ts_ns: int, unique: Optional[str] = None) -> str:
    """``part-HHMMSS-<unique>.parquet``, HHMMSS = UTC time of the shard's first row;
    ``unique`` defaults to a random token."""
    hhmmss = dt.datetime.fromtimestamp(first_ts_ns / 1e9, dt.timezone.utc).strftime("%H%M%S")
    return f"part-{hhmmss}-{unique or uuid.uuid4().hex[:16]}.parquet"
