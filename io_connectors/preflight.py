"""Start-up checks of the edges, before any pipeline starts: fail fast, once, clearly.

``check_nats(settings)``: the server answers within the connect timeout, accepts the
credentials and has JetStream.  ``check_data_root(storage, create)``: a local root exists
(or, with ``create``, can be created) and is writable (a probe file is written and
removed); an S3 root's bucket exists and answers to the credentials.  Each failure is a
``StartupError``: one line naming the thing and the fix, and the exit status for it
(1: unreachable or rejected; the unknown-scheme and malformed-URL errors, status 2, are
raised earlier by ``storage.resolve_data_root`` as ``ConfigError``).
"""
from __future__ import annotations

import asyncio
import errno
import os
import uuid

import pyarrow.fs as pafs

from io_connectors.errors import describe
from io_connectors.lake.storage import LakeStorage
from io_connectors.nats.settings import NatsSettings, connect


class StartupError(Exception):
    """A check before start-up failed; ``str()`` is the one line to print, ``exit_code``
    the status to exit with (1: unreachable or rejected, 2: usage)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(" ".join(message.split()))
        self.exit_code = exit_code


async def _check_nats(settings: NatsSettings, timeout: float) -> None:
    try:
        nc = await connect(settings, timeout=timeout)
    except ConnectionError as exc:
        last = getattr(exc, "last_error", None)
        if last is None:                 # rejected: the message names cause and fix
            raise StartupError(str(exc)) from None
        raise StartupError(f"NATS is not reachable at {settings.url} within {timeout:.0f}s "
                           f"({type(last).__name__}: {last}): start nats-server or fix "
                           f"--nats_url / NATS_URL") from None
    try:
        try:
            await nc.jetstream().account_info()
        except Exception as exc:  # pylint: disable=broad-except
            raise StartupError(f"NATS at {settings.url} has no JetStream ({type(exc).__name__}"
                               f"{': ' + str(exc) if str(exc) else ''}): start nats-server "
                               f"with -js (or enable JetStream for this account)") from None
    finally:
        await nc.close()


def check_nats(settings: NatsSettings, timeout: float | None = None) -> None:
    """Raises ``StartupError`` unless NATS answers at ``settings.url`` within ``timeout``
    (default: the connect timeout), accepts the credentials and serves JetStream."""
    asyncio.run(_check_nats(settings, timeout or settings.connect_timeout_s))


def _check_local(storage: LakeStorage, create: bool) -> None:
    root = storage.path("")
    if not os.path.isdir(root):
        if os.path.exists(root):
            raise StartupError(f"data root {root} is not a folder: fix --data_root")
        if not create:
            raise StartupError(f"data root {root} does not exist: fix --data_root "
                               f"(or DATA_ROOT)")
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"data root {root} cannot be created ({exc.strerror or exc}): "
                               f"fix --data_root (or DATA_ROOT)") from None
    if not create:
        return
    probe = os.path.join(root, f".preflight-{uuid.uuid4().hex}.tmp")
    try:
        with open(probe, "wb") as fh:
            fh.write(b"ok")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        hint = ("make it writable by this user" if exc.errno in (errno.EACCES, errno.EPERM,
                                                                 errno.EROFS)
                else "free space or fix --data_root")
        raise StartupError(f"data root {root} is not writable ({exc.strerror or exc}): "
                           f"{hint}") from None
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass


def _check_s3(storage: LakeStorage) -> None:
    bucket = storage.path("").split("/", 1)[0]
    if not bucket:
        raise StartupError(f"data root {storage.data_root} names no bucket: use "
                           f"s3://bucket[/prefix]", exit_code=2)
    try:
        info = storage.fs.get_file_info(bucket)
    except OSError as exc:
        raise StartupError(f"S3 bucket {bucket!r} of {storage.data_root} cannot be reached: "
                           f"{describe(exc)}") from None
    if info.type == pafs.FileType.NotFound:
        raise StartupError(f"S3 bucket {bucket!r} does not exist: create it or fix "
                           f"--data_root (or DATA_ROOT)")


def check_data_root(storage: LakeStorage, create: bool = True) -> None:
    """Raises ``StartupError`` unless the data root can be used: local, it exists (or,
    with ``create``, is created) and, with ``create`` (a writer), a probe file can be
    written and removed; S3, its bucket exists and answers to the credentials."""
    if getattr(storage, "scheme", "") == "s3":
        _check_s3(storage)
    else:
        _check_local(storage, create)
