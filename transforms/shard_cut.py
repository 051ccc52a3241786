"""Bounded shards: one partition's rows in a canonical order, cut and named by their content.

Pure, no Beam.  Used by the Bronze backfill for every dataset and the dead letters, whichever
path (columnar or per-message) produced the rows:

- ``canonical_order(table, sort_column)``: the row order of a partition, a function of the
  rows alone: by the layout's sort column (``ts_event_ns``; ``received_ns`` for dead
  letters), then by every other column in schema order (a list column, e.g. trade
  conditions, by its text, computed only when some row has one: DBN carries none).  Any
  split of the input into blocks, files or workers, and any arrival order, gives the same
  order.
- ``cut_bounds(n, max_rows)``: consecutive shards of ``max_rows`` rows (the last one
  shorter), the Bronze flush size, as the stream cuts them.
- ``shard_digests(table, bounds)``: per shard, 16 hex characters of SHA-256 over a
  canonical encoding of its rows (per column: the validity of each row when the column is
  nullable, then the values, nulls as zero; strings and binaries as lengths then bytes;
  lists as lengths then items).  It depends only on the rows' values: not on chunking,
  slicing, buffer layout, the writer's version or the Parquet encoding.  So a re-run over
  the same files names every shard as before and adds no file.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def canonical_order(table: pa.Table, sort_column: str) -> pa.Array:
    """Indices putting ``table``'s rows in canonical order (see the module docstring)."""
    names = [sort_column] + [f.name for f in table.schema
                             if f.name != sort_column and not _is_list(f.type)]
    keyed = table
    for f in table.schema:
        col = table[f.name]
        if _is_list(f.type) and col.null_count < len(col):
            name = f"__sort_{f.name}"
            keyed = keyed.append_column(name, pa.array(
                [None if v is None else repr(v) for v in col.to_pylist()], pa.string()))
            names.append(name)
    return pc.sort_indices(keyed, sort_keys=[(n, "ascending", "at_start") for n in names])


def cut_bounds(n: int, max_rows: int) -> list[tuple[int, int]]:
    """``(start, length)`` of consecutive shards of at most ``max_rows`` rows."""
    if max_rows < 1:
        raise ValueError("max_rows must be >= 1")
    return [(start, min(max_rows, n - start)) for start in range(0, n, max_rows)]


def _numpy(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


class _Column:
    """One column's canonical encoding; ``parts(a, b)`` yields the byte strings of rows
    ``[a, b)``, equal to what the column sliced to those rows would give."""

    def __init__(self, col, field: pa.Field):
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        t = arr.type
        self.valid = (_numpy(arr.is_valid()).astype(np.uint8) if field.nullable else None)
        self.values = self.lengths = self.data = self.starts = None
        if pa.types.is_string(t) or pa.types.is_binary(t):
            filled = pc.fill_null(arr, pa.scalar(b"" if pa.types.is_binary(t) else "", t)) \
                if arr.null_count else arr
            lengths = _numpy(pc.binary_length(filled)).astype(np.int64)
            self.lengths = lengths.astype(np.int32)
            self.starts = np.concatenate(([0], np.cumsum(lengths)))
            buffers = filled.buffers()
            offsets = np.frombuffer(buffers[1], dtype=np.int32)[filled.offset:]
            base = int(offsets[0])
            self.data = memoryview(buffers[2])[base:base + int(self.starts[-1])] \
                if buffers[2] is not None else memoryview(b"")
        elif pa.types.is_list(t):
            lengths = _numpy(pc.fill_null(pc.list_value_length(arr), 0)).astype(np.int64)
            self.lengths = lengths.astype(np.int32)
            self.starts = np.concatenate(([0], np.cumsum(lengths)))
            items = pc.list_flatten(arr)
            self.data = np.ascontiguousarray(_numpy(pc.fill_null(items, 0) if items.null_count
                                                    else items))
        else:
            if pa.types.is_date32(t):
                arr = arr.cast(pa.int32())
            zero = False if pa.types.is_boolean(t) else 0
            self.values = np.ascontiguousarray(
                _numpy(pc.fill_null(arr, zero) if arr.null_count else arr))

    def parts(self, a: int, b: int):
        if self.valid is not None:
            yield self.valid[a:b].tobytes()
        if self.values is not None:
            yield self.values[a:b].tobytes()
            return
        yield self.lengths[a:b].tobytes()
        yield bytes(self.data[int(self.starts[a]):int(self.starts[b])])


def shard_digests(table: pa.Table, bounds: list[tuple[int, int]]) -> list[str]:
    """16 hex characters per shard ``(start, length)`` of ``table`` (see the module
    docstring): equal rows in equal order give equal digests."""
    head = repr([(f.name, str(f.type), f.nullable) for f in table.schema]).encode()
    columns = [_Column(table.column(i), f) for i, f in enumerate(table.schema)]
    out = []
    for start, length in bounds:
        h = hashlib.sha256(head)
        h.update(length.to_bytes(8, "little"))
        for col in columns:
            for part in col.parts(start, start + length):
                h.update(len(part).to_bytes(8, "little"))
                h.update(part)
        out.append(h.hexdigest()[:16])
    return out
