"""The local-disk backend: atomic, durable file publication with POSIX renames and links.

Every write goes to a hidden temporary file in the target's folder (``.<name>.<token>.tmp``),
which is fsynced, then put in place in one system call, then the folder is fsynced:

- ``publish``: ``rename`` over the target (atomic replace);
- ``publish_if_absent``: ``link`` to the target (atomic, and fails with EEXIST rather than
  overwrite), then the temporary name is removed;
- ``exchange``: ``rename`` of the staged file over the target;
- ``lock``: ``flock`` on a lock file (released when the holder exits, even by a crash).

Guarantees: after a call returns, the file and its name are on disk (survive a power cut);
a reader never sees a partly written file; a failed write leaves no temporary file behind.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
import uuid

import pyarrow.fs as pafs

_LOCK_POLL_S = (0.005, 0.2)       # first and longest wait between lock attempts


def fsync_dir(path: str) -> None:
    """fsync a folder, making the names created or removed in it durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBackend:
    """Files below an absolute local ``root`` (see the module docstring)."""

    scheme = "file"

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self._fs = None

    def __getstate__(self):
        return {"root": self.root, "_fs": None}

    @property
    def fs(self) -> pafs.FileSystem:
        if self._fs is None:
            self._fs = pafs.LocalFileSystem()
        return self._fs

    # ---- writes ------------------------------------------------------------------------
    def _write_temp(self, path: str, data) -> str:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return tmp

    def publish(self, path: str, data) -> None:
        tmp = self._write_temp(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        fsync_dir(os.path.dirname(path))

    def publish_if_absent(self, path: str, data) -> None:
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)            # atomic, and fails if path exists
        finally:
            _unlink_quietly(tmp)
        fsync_dir(os.path.dirname(path))

    def exchange(self, staged: str, path: str) -> None:
        if os.path.isdir(staged):
            raise IsADirectoryError(f"exchange takes files, not folders: {staged}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.replace(staged, path)
        fsync_dir(os.path.dirname(path))
        if os.path.dirname(staged) != os.path.dirname(path):
            fsync_dir(os.path.dirname(staged))

    def delete(self, path: str) -> bool:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        return True

    @contextlib.contextmanager
    def lock(self, path: str, timeout_s: float = 60.0):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as fh:
            deadline = time.monotonic() + timeout_s
            wait = _LOCK_POLL_S[0]
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(f"lock {path} still held by another process "
                                           f"after {timeout_s:.0f}s") from None
                    time.sleep(wait)
                    wait = min(wait * 2, _LOCK_POLL_S[1])
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
