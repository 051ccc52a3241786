"""DBN files cut into blocks of records that any worker can decode on its own.

- ``plan_files(paths)`` (when the pipeline is built): one ``DbnFile`` per path from its
  header: schema, DBN version, where the records start, whether it is zstd, and whether the
  columnar decoder takes it (``columnar.columnar_layout``: single-schema ``trades`` or
  ``mbp-10`` files).  A missing or unreadable file stops the run before anything starts.
- ``unpack(file, staging, block_bytes)`` (a worker): the file's ``DbnBlock`` units.  A zstd
  file cannot be entered in the middle, so it is decompressed once, as a stream, into raw
  blocks of about ``block_bytes`` in the run's staging folder; an uncompressed file is
  used in place (a block is an offset and a count).  Every record is checked to be of the
  schema's type and size; a file holding anything else (definitions, symbol mappings,
  records with ``ts_out``) becomes one per-message unit instead, as does every file the
  columnar decoder does not take.  Memory: one block at a time.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np
import zstandard

from io_connectors.dbn.columnar import columnar_layout
from io_connectors.dbn.decode import read_metadata
from io_connectors.lake.staging import Staging, read_records

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_PREFIX = 8                      # b"DBN" + version byte + u32 metadata length


@dataclasses.dataclass(frozen=True)
class DbnFile:
    """One input file as planned: ``index`` (its position in the run), ``schema`` (None
    for a mixed file), ``version``, ``compressed`` (zstd), ``columnar`` (the columnar
    decoder takes it), ``size`` (bytes on disk)."""
    index: int
    path: str
    schema: Optional[str]
    version: int
    compressed: bool
    columnar: bool
    size: int


@dataclasses.dataclass(frozen=True)
class DbnBlock:
    """One unit of decoding work.  ``unit``: its id in the run; ``per_message``: decode the
    whole file with the per-message path; else ``count`` records at byte ``offset`` of
    ``raw`` (a staged block, relative to the run's staging folder) or, when ``raw`` is
    None, of the file itself."""
    unit: str
    file: DbnFile
    per_message: bool
    raw: Optional[str] = None
    offset: int = 0
    count: int = 0


def plan_files(paths: list[str], columnar: bool = True) -> list[DbnFile]:
    """``DbnFile`` per path, in the given order; FileNotFoundError / ValueError name a file
    that is missing or not DBN.  ``columnar=False``: every file per message."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"DBN file(s) not found: {', '.join(missing)}")
    out = []
    for i, path in enumerate(paths):
        meta = read_metadata(path)
        schema = None if meta.schema is None else str(getattr(meta.schema, "value", meta.schema))
        with open(path, "rb") as fh:
            compressed = fh.read(4) == _ZSTD_MAGIC
        out.append(DbnFile(i, path, schema, int(meta.version), compressed,
                           columnar and columnar_layout(schema) is not None
                           and not meta.ts_out,
                           os.path.getsize(path)))
    return out


def per_message_unit(file: DbnFile) -> DbnBlock:
    return DbnBlock(f"{file.index:05d}-m", file, per_message=True)


def _read_exact(reader, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = reader.read(n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _framed(records: np.ndarray, rtype: int, size: int) -> bool:
    """Every record is of ``rtype`` and ``size`` bytes (DBN's ``length`` is in 4-byte
    words)."""
    return bool((records["rtype"] == rtype).all() and (records["length"] == size // 4).all())


def unpack(file: DbnFile, staging: Staging, block_bytes: int) -> list[DbnBlock]:
    """The file's blocks (see the module docstring); ValueError for a truncated file."""
    if not file.columnar:
        return [per_message_unit(file)]
    rtype, dtype = columnar_layout(file.schema)
    size = dtype.itemsize
    per_block = max(1, block_bytes // size)
    if not file.compressed:
        with open(file.path, "rb") as fh:
            head = fh.read(_PREFIX)
        start = _PREFIX + int.from_bytes(head[4:8], "little")
        body = os.path.getsize(file.path) - start
        if body % size:
            raise ValueError(f"{file.path}: truncated DBN file ({body % size} trailing bytes)")
        blocks = []
        for b, first in enumerate(range(0, body // size, per_block)):
            part = read_records(file.path, dtype, start + first * size, per_block)
            if not _framed(part, rtype, size):
                return [per_message_unit(file)]
            blocks.append(DbnBlock(f"{file.index:05d}-{b:06d}", file, False, None,
                                   start + first * size, len(part)))
        return blocks
    blocks = []
    with open(file.path, "rb") as fh:
        reader = zstandard.ZstdDecompressor().stream_reader(fh)
        head = _read_exact(reader, _PREFIX)
        _read_exact(reader, int.from_bytes(head[4:8], "little"))
        b = 0
        while True:
            data = _read_exact(reader, per_block * size)
            if not data:
                break
            if len(data) % size:
                raise ValueError(f"{file.path}: truncated DBN file "
                                 f"({len(data) % size} trailing bytes)")
            if not _framed(np.frombuffer(data, dtype), rtype, size):   # header fields only
                for blk in blocks:
                    staging.remove(blk.raw)
                return [per_message_unit(file)]
            unit = f"{file.index:05d}-{b:06d}"
            rel = f"raw/{unit}.dbn"
            with staging.open_output(rel) as out:
                out.write(data)
            blocks.append(DbnBlock(unit, file, False, rel, 0, len(data) // size))
            b += 1
    return blocks


def block_records(block: DbnBlock, staging: Staging) -> np.ndarray:
    """The records of a columnar block as a structured array."""
    dtype = columnar_layout(block.file.schema)[1]
    if block.raw is None:
        return read_records(block.file.path, dtype, block.offset, block.count)
    return staging.read_records(block.raw, dtype, block.offset, block.count)
