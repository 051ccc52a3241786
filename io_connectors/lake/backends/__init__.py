"""Storage backends of the lake, one per URL scheme (as pyiceberg's ``FileIO``):
``local`` for plain paths and ``file://``, ``s3`` for ``s3://bucket/prefix``.

Every backend offers the same operations on full paths of its filesystem (``LakeStorage``
turns root-relative paths into those):

- ``publish(path, data)``: ``path`` holds exactly ``data`` afterwards, replacing any
  previous content; a reader sees the old bytes or the new ones, never a part;
- ``publish_if_absent(path, data)``: the same, but raises ``FileExistsError`` (and changes
  nothing) when ``path`` exists; two writers racing for one path: exactly one wins;
- ``exchange(staged, path)``: puts the staged file (written with ``publish``) in place of
  ``path`` in one step for readers; ``staged`` is gone afterwards;
- ``lock(path, timeout_s)``: a context manager holding an exclusive lock named ``path``
  (other holders of the same lock on the same store wait up to ``timeout_s``, then get
  ``TimeoutError``);
- ``delete(path)``, and ``fs`` (a pyarrow filesystem for reads and listing).

Backends raise what the system gives them (``OSError`` and its subclasses; the S3 backend
turns botocore's errors into ``S3RequestError``/``ConnectionError``, both ``OSError``, with
the S3 error code kept) and contain no retry policy: retrying is the caller's decision
(see the hardening helper's error classification).
"""
from __future__ import annotations

from typing import Mapping, Optional

from io_connectors.config import ConfigError


def open_backend(scheme: str, root: str, s3: Optional[Mapping] = None):
    """The backend of ``scheme`` ('' or 'file': local disk, 's3': S3) for ``root`` (an
    absolute local path, or ``bucket/prefix``).  ConfigError (a ValueError) for any other
    scheme: a data root like ``ftp://host/x`` stops every entry point with one line."""
    if scheme in ("", "file"):
        from io_connectors.lake.backends.local import LocalBackend
        return LocalBackend(root)
    if scheme == "s3":
        from io_connectors.lake.backends.s3 import S3Backend
        return S3Backend(root, dict(s3 or {}))
    raise ConfigError(f"unsupported storage scheme {scheme + '://'!r}: use a local path, "
                     f"file:// or s3://bucket/prefix")
