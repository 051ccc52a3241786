"""Small whole-file reads and atomic replacements of JSON/text files on a ``LakeStorage``.

``replace_json``/``replace_text`` are ``LakeStorage.publish`` of the encoded document (every
reader sees the old document or the new one, on both backends); ``read_text``/``read_json``
return None for a missing file.  ``fsync_dir`` (the local backend's) is re-exported for
the WAL.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from io_connectors.lake.backends.local import fsync_dir
from io_connectors.lake.storage import LakeStorage

__all__ = ["fsync_dir", "json_bytes", "replace_json", "replace_text", "read_text", "read_json"]


def json_bytes(obj: Any) -> bytes:
    """The lake's JSON encoding: indented, sorted keys, a final newline."""
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


def replace_json(storage: LakeStorage, rel: str, obj: Any) -> None:
    storage.publish(rel, json_bytes(obj))


def replace_text(storage: LakeStorage, rel: str, text: str) -> None:
    storage.publish(rel, text.encode())


def read_text(storage: LakeStorage, rel: str) -> Optional[str]:
    data = storage.read_bytes(rel)
    return None if data is None else data.decode()


def read_json(storage: LakeStorage, rel: str) -> Optional[Any]:
    text = read_text(storage, rel)
    return None if text is None else json.loads(text)
