"""The S3 backend: reads and listing through pyarrow's S3 filesystem, writes through boto3
with S3's conditional requests.

- ``publish``: one ``PutObject`` (an object appears whole when its upload completes);
- ``publish_if_absent``: ``PutObject`` with ``If-None-Match: *``: the server refuses the
  write when the key exists (HTTP 412 -> ``FileExistsError``), so of two writers racing
  for one key exactly one wins (AWS S3 since 2024, SeaweedFS, MinIO);
- ``exchange``: server-side ``CopyObject`` of the staged object onto the target (the
  target is replaced whole), then the staged object is deleted;
- ``lock``: a lease object created with ``If-None-Match: *`` holding its owner and expiry;
  released by a ``DeleteObject`` with ``If-Match`` on its ETag (never deleting a lease
  that another holder took over; a store without conditional deletes gets a plain
  ``DeleteObject``); a lease past its expiry (a crashed holder) is taken
  over with a ``PutObject`` ``If-Match`` on the stale ETag, so only one waiter wins it.
  Expiry compares wall clocks: hosts sharing a lake need clocks within the lease time.

A server that ignores conditional headers (older S3-compatible stores) would make
``publish_if_absent`` an overwrite; the lake's shard names are unique (random or content
hash), so even then no data is lost.

Errors: botocore's ``ClientError`` becomes ``S3RequestError`` (an ``OSError``) whose
message and ``code`` carry the S3 error code (``AccessDenied``, ``SignatureDoesNotMatch``,
``NoSuchBucket``…) and ``status`` the HTTP status; a missing key ``FileNotFoundError``;
connection failures ``ConnectionError``; missing credentials ``PermissionError``.  The
S3 clients' own transient-error retries (standard mode, 3 attempts, the same as pyarrow's
default) are the only retries here.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from typing import Mapping, Optional

import pyarrow.fs as pafs

_LOG = logging.getLogger(__name__)
_LOCK_POLL_S = (0.05, 1.0)
DEFAULT_LEASE_S = 300.0


class S3RequestError(OSError):
    """An S3 request failed: ``code`` is the S3 error code, ``status`` the HTTP status,
    ``operation`` the S3 operation (e.g. ``PutObject``)."""

    def __init__(self, message: str, code: Optional[str] = None, status: Optional[int] = None,
                 operation: Optional[str] = None):
        super().__init__(message)
        self.code, self.status, self.operation = code, status, operation


class S3Backend:
    """Objects below ``bucket[/prefix]`` (see the module docstring).

    ``settings``: ``endpoint`` (None = AWS), ``access_key``/``secret_key`` (None = the
    default AWS credential chain), ``region``, ``connect_timeout_s``, ``request_timeout_s``.
    Picklable: the clients are rebuilt on first use from the settings.
    """

    scheme = "s3"

    def __init__(self, root: str, settings: Mapping):
        self.root = root.strip("/")
        self.settings = dict(settings)
        self._fs: Optional[pafs.FileSystem] = None
        self._client = None

    def __getstate__(self):
        return {"root": self.root, "settings": self.settings, "_fs": None, "_client": None}

    # ---- clients -----------------------------------------------------------------------
    @property
    def fs(self) -> pafs.FileSystem:
        if self._fs is None:
            s = self.settings
            kw = dict(access_key=s.get("access_key"), secret_key=s.get("secret_key"),
                      region=s.get("region"), connect_timeout=s.get("connect_timeout_s"),
                      request_timeout=s.get("request_timeout_s"))
            ep = s.get("endpoint")
            if ep:
                scheme, _, host = ep.partition("://")
                kw.update(endpoint_override=(host or scheme).rstrip("/"),
                          scheme=scheme if host else "https")
            self._fs = pafs.S3FileSystem(**kw)
        return self._fs

    @property
    def client(self):
        if self._client is None:
            import boto3                      # only processes that write to S3 load it
            from botocore.config import Config
            s = self.settings
            ep = s.get("endpoint")
            if ep and "://" not in ep:
                ep = f"https://{ep}"
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=ep or None, region_name=s.get("region"),
                aws_access_key_id=s.get("access_key"), aws_secret_access_key=s.get("secret_key"),
                config=Config(connect_timeout=s.get("connect_timeout_s") or 5,
                              read_timeout=s.get("request_timeout_s") or 60,
                              retries={"mode": "standard", "max_attempts": 3},
                              s3={"addressing_style": "path"} if ep else None))
        return self._client

    @staticmethod
    def _split(path: str) -> tuple[str, str]:
        bucket, _, key = path.partition("/")
        return bucket, key

    def _call(self, operation: str, path: str, **kw):
        bucket, key = self._split(path)
        try:
            return getattr(self.client, _METHODS[operation])(Bucket=bucket, Key=key, **kw)
        except Exception as exc:  # pylint: disable=broad-except
            _raise_translated(exc, operation, path)

    # ---- writes ------------------------------------------------------------------------
    def publish(self, path: str, data) -> None:
        self._call("PutObject", path, Body=bytes(data))

    def publish_if_absent(self, path: str, data) -> None:
        try:
            self._call("PutObject", path, Body=bytes(data), IfNoneMatch="*")
        except S3RequestError as exc:
            if exc.status == 412 or exc.code in ("PreconditionFailed",
                                                 "ConditionalRequestConflict"):
                raise FileExistsError(path) from exc
            raise

    def exchange(self, staged: str, path: str) -> None:
        bucket, key = self._split(staged)
        target_bucket, target_key = self._split(path)
        try:
            # managed copy: one CopyObject, or a multipart copy for objects > 5 GB (the
            # object still appears whole when the copy completes)
            self.client.copy({"Bucket": bucket, "Key": key}, target_bucket, target_key)
        except Exception as exc:  # pylint: disable=broad-except
            _raise_translated(exc, "CopyObject", f"{staged} -> {path}")
        self.delete(staged)

    def delete(self, path: str) -> bool:
        if self.fs.get_file_info(path).type == pafs.FileType.NotFound:
            return False
        self._call("DeleteObject", path)
        return True

    # ---- lock --------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, path: str, timeout_s: float = 60.0, lease_s: float = DEFAULT_LEASE_S):
        etag = self._acquire(path, timeout_s, lease_s)
        try:
            yield
        finally:
            self._release(path, etag)

    def _release(self, path: str, etag: str) -> None:
        try:
            self._call("DeleteObject", path, IfMatch=etag)
        except FileNotFoundError:
            pass
        except S3RequestError as exc:
            if exc.status == 412 or exc.code == "PreconditionFailed":
                _LOG.warning("lock s3://%s was not ours any more at release: its lease "
                             "expired and another holder took it over", path)
            else:       # a store without conditional deletes: delete the lease we hold
                self._call("DeleteObject", path)

    def _acquire(self, path: str, timeout_s: float, lease_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        wait = _LOCK_POLL_S[0]
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        while True:
            body = json.dumps({"owner": owner, "expires_at": time.time() + lease_s}).encode()
            try:
                return self._call("PutObject", path, Body=body, IfNoneMatch="*")["ETag"]
            except S3RequestError as exc:
                if exc.status != 412 and exc.code != "PreconditionFailed":
                    raise
            holder = None
            try:
                held = self._call("GetObject", path)
                holder = json.loads(held["Body"].read() or b"{}")
                if float(holder.get("expires_at", 0)) < time.time():     # a stale lease
                    try:
                        return self._call("PutObject", path, Body=body,
                                          IfMatch=held["ETag"])["ETag"]
                    except S3RequestError as exc:
                        if exc.status != 412 and exc.code != "PreconditionFailed":
                            raise
            except FileNotFoundError:
                continue                       # released in between: try again at once
            except ValueError:
                holder = {"owner": "<unreadable lease>"}
            if time.monotonic() >= deadline:
                raise TimeoutError(f"lock s3://{path} still held by "
                                   f"{(holder or {}).get('owner')} after {timeout_s:.0f}s")
            time.sleep(wait)
            wait = min(wait * 2, _LOCK_POLL_S[1])


_METHODS = {"PutObject": "put_object", "GetObject": "get_object",
            "DeleteObject": "delete_object"}


def _raise_translated(exc: Exception, operation: str, path: str):
    translated = _translate(exc, operation, path)
    if translated is exc:
        raise exc
    raise translated from exc


def _translate(exc: Exception, operation: str, path: str) -> Exception:
    """botocore's exceptions as OSErrors (see the module docstring); others unchanged."""
    from botocore import exceptions as bex
    if isinstance(exc, bex.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = f"S3 {operation} s3://{path}: {code} (HTTP {status}): {err.get('Message')}"
        if code in ("NoSuchKey", "404") or (status == 404 and code != "NoSuchBucket"):
            return FileNotFoundError(message)
        return S3RequestError(message, code=code, status=status, operation=operation)
    if isinstance(exc, bex.NoCredentialsError):
        return PermissionError(f"S3 {operation} s3://{path}: {exc}")
    if isinstance(exc, (bex.EndpointConnectionError, bex.ConnectTimeoutError,
                        bex.ReadTimeoutError, bex.ConnectionClosedError)):
        return ConnectionError(f"S3 {operation} s3://{path}: {exc}")
    return exc
