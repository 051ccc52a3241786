"""Small whole-file reads and atomic replacements on a ``LakeStorage`` (JSON, YAML, bytes).

``replace_bytes(storage, rel, data)`` makes ``rel`` hold exactly ``data`` for every reader
at every moment: locally a hidden temporary file in the same folder is written, fsynced and
renamed over the target, then the folder is fsynced; on S3 a single PUT is atomic per
object.  ``read_bytes``/``read_text``/``read_json`` return None for a missing file.
"""
from __future__ import annotations

import json
import os
import uuid
from typing import Any, Optional

from io_connectors.lake.storage import LakeStorage


def fsync_dir(path: str) -> None:
    """fsync a folder, making the names created or removed in it durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_bytes(storage: LakeStorage, rel: str, data: bytes) -> None:
    if storage.is_s3:
        with storage.fs.open_output_stream(storage.path(rel)) as out:
            out.write(data)
        return
    final = storage.path(rel)
    folder = os.path.dirname(final)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(final)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_dir(folder)


def replace_json(storage: LakeStorage, rel: str, obj: Any) -> None:
    replace_bytes(storage, rel, (json.dumps(obj, indent=2, sort_keys=True, default=str)
                                 + "\n").encode())


def read_bytes(storage: LakeStorage, rel: str) -> Optional[bytes]:
    if not storage.exists(rel):
        return None
    with storage.fs.open_input_stream(storage.path(rel)) as fh:
        return fh.read()


def read_text(storage: LakeStorage, rel: str) -> Optional[str]:
    data = read_bytes(storage, rel)
    return None if data is None else data.decode()


def read_json(storage: LakeStorage, rel: str) -> Optional[Any]:
    text = read_text(storage, rel)
    return None if text is None else json.loads(text)


def delete(storage: LakeStorage, rel: str) -> bool:
    """Deletes a file; False if it did not exist."""
    if not storage.exists(rel):
        return False
    storage.fs.delete_file(storage.path(rel))
    return True
