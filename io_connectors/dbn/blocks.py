"""DBN files cut into shares of work that any worker can decode on its own.

- ``plan_files(paths)`` (when the pipeline is built): one ``DbnFile`` per path from its
  header: schema, DBN version, where the records start, whether it is zstd, and whether the
  columnar decoder takes it (``columnar.columnar_layout``: single-schema ``trades`` or
  ``mbp-10`` files).  A missing or unreadable file stops the run before anything starts.
- ``plan_shares(files, shares)``: the units of work.  A columnar file is read as
  consecutive blocks of about ``block_bytes`` of records; share ``k`` of ``n`` decodes the
  blocks ``k, k + n, k + 2n, ...``, so ``n`` workers share one file.  A zstd file cannot
  be entered in the middle, so every share streams the whole file through the
  decompressor (cheap: about a tenth of the decoding) and decodes only its own blocks;
  nothing is unpacked to disk.  A file the columnar decoder does not take is one
  per-message share.
- ``share_blocks(share, block_bytes)`` (a worker): the records of the share's blocks, one
  block at a time (memory: one block).  Every record of every block, the share's or not,
  is checked to be of the schema's type and size; a file holding anything else
  (definitions, symbol mappings, records with ``ts_out``) raises ``NotColumnar`` in every
  share, whose decoder then hands the whole file to the per-message path (share 0 decodes
  it, the others give nothing).  A truncated file raises ValueError.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterator, Optional

import numpy as np
import zstandard

from io_connectors.dbn.columnar import columnar_layout
from io_connectors.dbn.decode import read_metadata

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
class DbnShare:
    """One unit of decoding work.  ``unit``: its id in the run; ``per_message``: decode the
    whole file with the per-message path; else the blocks ``share, share + shares, ...``
    of the file's records."""
    unit: str
    file: DbnFile
    per_message: bool
    share: int = 0
    shares: int = 1


class NotColumnar(Exception):
    """The file holds records the columnar decoder does not take (see the module
    docstring)."""


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


def shares_for(files: list[DbnFile], workers: int) -> int:
    """Shares per columnar file so that every one of ``workers`` has a unit: ``workers``
    for one file, 1 once there are as many files as workers.  No more: every share streams
    the whole file through the decompressor, which costs about as much as decoding it
    (measured on an MBP-10 day: 55 ms to decompress and check, 50 ms to decode)."""
    n = sum(1 for f in files if f.columnar)
    if n == 0 or workers <= 1:
        return 1
    return max(1, min(workers, math.ceil(workers / n)))


def plan_shares(files: list[DbnFile], shares: int) -> list[DbnShare]:
    """The units of work of ``files`` (see the module docstring), largest files first."""
    if shares < 1:
        raise ValueError("shares per file must be >= 1")
    out = []
    for f in sorted(files, key=lambda f: (-f.size, f.index)):
        if not f.columnar:
            out.append(DbnShare(f"{f.index:05d}-m", f, per_message=True))
            continue
        out += [DbnShare(f"{f.index:05d}-s{k}", f, False, k, shares) for k in range(shares)]
    return out


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


def _compressed_blocks(path: str, dtype: np.dtype, per_block: int) -> Iterator[np.ndarray]:
    with open(path, "rb") as fh:
        reader = zstandard.ZstdDecompressor().stream_reader(fh)
        head = _read_exact(reader, _PREFIX)
        _read_exact(reader, int.from_bytes(head[4:8], "little"))
        while True:
            data = _read_exact(reader, per_block * dtype.itemsize)
            if not data:
                return
            if len(data) % dtype.itemsize:
                raise ValueError(f"{path}: truncated DBN file "
                                 f"({len(data) % dtype.itemsize} trailing bytes)")
            yield np.frombuffer(data, dtype)


def _plain_blocks(path: str, dtype: np.dtype, per_block: int) -> Iterator[np.ndarray]:
    with open(path, "rb") as fh:
        head = fh.read(_PREFIX)
    start = _PREFIX + int.from_bytes(head[4:8], "little")
    body = os.path.getsize(path) - start
    if body % dtype.itemsize:
        raise ValueError(f"{path}: truncated DBN file ({body % dtype.itemsize} trailing bytes)")
    for first in range(0, body // dtype.itemsize, per_block):
        # one read into memory (a memory map cost more in page faults than the copy: the
        # records are touched once, field by field)
        yield np.fromfile(path, dtype=dtype, count=per_block,
                          offset=start + first * dtype.itemsize)


def share_blocks(share: DbnShare, block_bytes: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(block number, records)`` of the share's blocks (see the module docstring);
    raises ``NotColumnar`` or ValueError (truncated file) when reading reaches the cause."""
    if share.per_message:
        raise ValueError(f"{share.unit} is a per-message share")
    rtype, dtype = columnar_layout(share.file.schema)
    per_block = max(1, block_bytes // dtype.itemsize)
    read = _compressed_blocks if share.file.compressed else _plain_blocks
    for b, records in enumerate(read(share.file.path, dtype, per_block)):
        if not _framed(records, rtype, dtype.itemsize):          # header fields only
            raise NotColumnar(share.file.path)
        if b % share.shares == share.share:
            yield b, records
