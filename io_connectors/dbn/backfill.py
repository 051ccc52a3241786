"""DBN files -> Bronze row pieces, as Beam PTransforms (the bounded backfill's read side).

``ReadDbnBlocks(files, staging, block_bytes)``: the planned ``DbnFile`` list -> one
``DbnBlock`` per block of records (zstd files unpacked into the run's staging folder by
whichever worker gets the file), spread over the workers.

``DecodeDbnBlocks(instruments, staging, rules, ...)``: ``DbnBlock`` -> ``(shard_key,
(piece_path, rows))``.  A columnar block is decoded by ``io_connectors.dbn.columnar.decode_block`` (every
decoder and Bronze rule as array operations; what it does not take goes through the
per-message parser, rows and dead letters alike); a per-message unit (a file the columnar
decoder does not take) goes through ``decode.iter_events`` and ``route_message`` record by
record, as the backfill always did.  Either way each shard key's rows are written to the
staging folder as an Arrow piece, and the unit's counts as a record the driver checks.

Only Create, ParDo and GroupByKey, no side outputs, no ``finish_bundle`` outputs, no Beam
file sinks: shapes every runner here executes faithfully (the DaskRunner drops the others
silently).
"""
from __future__ import annotations

import collections
import os
import threading
import time

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics

from io_connectors.dbn import decode as dbn_files
from io_connectors.dbn.blocks import DbnBlock, DbnFile, block_records, unpack
from io_connectors.dbn.columnar import decode_block
from io_connectors.lake.staging import Staging, batch_worker_gc
from transforms.arrow_rows import rows_to_table
from transforms.bronze_route import route_message
from transforms.bronze_rules import DEFAULT_RULES, BronzeRules
from transforms.partitioning import SEP, shard_layout
from transforms.schemas import DEAD_LETTER_PATH

UNITS = "records/units"          # one record per decoded unit
FILES = "records/files"          # one record per unpacked file: its units


class _Redistribute(beam.PTransform):
    """Spreads elements over the workers by ``key_fn`` with a plain GroupByKey (Beam's
    Reshuffle also carries windows and timestamps, which some runners lose)."""

    def __init__(self, key_fn):
        super().__init__()
        self._key_fn = key_fn

    def expand(self, pcoll):
        return (pcoll
                | "Key" >> beam.Map(lambda x, f=self._key_fn: (f(x), x))
                | "Group" >> beam.GroupByKey()
                | "Values" >> beam.FlatMap(lambda kv: kv[1]))


class _Unpack(beam.DoFn):
    def __init__(self, staging: Staging, block_bytes: int):
        self._staging = staging
        self._block_bytes = block_bytes

    def process(self, file: DbnFile):
        started = time.time()
        blocks = unpack(file, self._staging, self._block_bytes)
        self._staging.write_json(f"{FILES}/{file.index:05d}.json",
                                 {"file": file.index, "units": [b.unit for b in blocks],
                                  "started": started, "ended": time.time()})
        yield from blocks


class ReadDbnBlocks(beam.PTransform):
    """``PBegin`` -> ``DbnBlock`` per block of the planned ``files``
    (``io_connectors.dbn.blocks.plan_files``), spread over the workers.  Files are handed
    out largest first, so two workers get similar shares; each writes a record listing its
    file's units to the staging folder."""

    def __init__(self, files: list[DbnFile], staging: Staging, block_bytes: int):
        super().__init__()
        self._files = sorted(files, key=lambda f: -f.size)
        self._staging = staging
        self._block_bytes = block_bytes

    def expand(self, pbegin):
        return (pbegin
                | "Files" >> beam.Create(self._files, reshuffle=False)
                | "SpreadFiles" >> _Redistribute(lambda f: f.index)
                | "Unpack" >> beam.ParDo(_Unpack(self._staging, self._block_bytes))
                | "SpreadBlocks" >> _Redistribute(lambda b: b.unit))


class _Decode(beam.DoFn):
    def __init__(self, instruments, staging: Staging, rules: BronzeRules,
                 include_spreads: bool, source: str, piece_rows: int):
        self._instruments = instruments
        self._staging = staging
        self._rules = rules
        self._include_spreads = include_spreads
        self._source = source
        self._piece_rows = piece_rows
        self._lookups: dict = {}
        self._records = Metrics.counter("lake", "dbn_records")
        self._dead = Metrics.counter("lake", "dead_letters")

    def setup(self):
        batch_worker_gc()

    def _lookup(self, file: DbnFile):
        lookup = self._lookups.get(file.path)
        if lookup is None:
            meta = dbn_files.read_metadata(file.path)
            lookup = self._lookups[file.path] = dbn_files.FileInstruments(self._instruments, meta)
        return lookup

    def process(self, block: DbnBlock):
        started = time.time()
        writer = _PieceWriter(self._staging, block.unit)
        if block.per_message:
            stats = dbn_files.DecodeStats()
            buffers = collections.defaultdict(list)
            for subject, event in dbn_files.iter_events(
                    [block.file.path], self._instruments, self._include_spreads,
                    self._source, stats):
                msg = (subject, orjson.dumps(event), 0, event["ts_event_ns"], None)
                key, (_, row) = route_message(msg, self._rules)
                rows = buffers[key]
                rows.append(row)
                if len(rows) >= self._piece_rows:
                    writer.add_rows(key, buffers.pop(key))
            for key, rows in buffers.items():
                writer.add_rows(key, rows)
        else:
            out = decode_block(block_records(block, self._staging), block.file.schema,
                               self._lookup(block.file), block.file.version,
                               self._include_spreads, self._source, self._rules)
            stats = out.stats
            for key, table in out.tables:
                writer.add_table(key, table)
            routed = collections.defaultdict(list)
            for key, (_, row) in out.routed:
                routed[key].append(row)
            for key, rows in routed.items():
                writer.add_rows(key, rows)
        self._records.inc(stats.records)
        self._dead.inc(sum(writer.dead_letters.values()))
        self._staging.write_json(f"{UNITS}/{block.unit}.json", {
            "unit": block.unit, "file": block.file.index, "pid": os.getpid(),
            "thread": threading.get_ident(),
            "rows": writer.rows,
            "dead_letters": writer.dead_letters, "stats": stats.as_dict(),
            "started": started, "ended": time.time()})
        yield from writer.pieces


class _PieceWriter:
    """Writes one unit's rows to the staging folder, a piece per call, and counts them."""

    def __init__(self, staging: Staging, unit: str):
        self._staging = staging
        self._unit = unit
        self.pieces: list = []
        self.rows: dict = collections.Counter()
        self.dead_letters: dict = collections.Counter()

    def add_table(self, key: str, table) -> None:
        rel = f"pieces/{self._unit}/{len(self.pieces):05d}.arrow"
        self._staging.write_table(rel, table)
        # A piece travels as a plain (path, rows) tuple: only primitive types cross the
        # shuffle, which every runner and coder handles the same way.
        self.pieces.append((key, (rel, table.num_rows)))
        self.rows[key] += table.num_rows

    def add_rows(self, key: str, rows: list) -> None:
        _, schema, _ = shard_layout(key)
        if key.split(SEP, 1)[0] == DEAD_LETTER_PATH:
            self.dead_letters.update(row[3] for row in rows)
        self.add_table(key, rows_to_table(rows, schema))


class DecodeDbnBlocks(beam.PTransform):
    """``DbnBlock`` -> ``(shard_key, (piece_path, rows))``: the rows of one shard key from
    one block, an Arrow file in the staging folder (see the module docstring).

    ``instruments``: ``decode.load_instruments`` of all the run's files; ``rules``: the
    Bronze rules (configs/lake.yaml); ``piece_rows``: at most this many rows per piece on
    the per-message path (its memory bound).  Guarantees: every record of a block is either
    in exactly one piece (a Bronze row or a dead letter) or counted as skipped by the
    decoder's reason in the unit's record, exactly as the per-message backfill would."""

    def __init__(self, instruments, staging: Staging, rules: BronzeRules = DEFAULT_RULES,
                 include_spreads: bool = False, source: str = "replay",
                 piece_rows: int = 200_000):
        super().__init__()
        self._dofn = _Decode(instruments, staging, rules, include_spreads, source, piece_rows)

    def expand(self, blocks):
        return blocks | "Decode" >> beam.ParDo(self._dofn)


def unit_records(staging: Staging) -> dict[str, dict]:
    """The decoded units' records, by unit id."""
    return {r["unit"]: r for r in staging.read_jsons(UNITS)}


def file_records(staging: Staging) -> dict[int, dict]:
    """The unpacked files' records, by file index."""
    return {r["file"]: r for r in staging.read_jsons(FILES)}


__all__ = ["ReadDbnBlocks", "DecodeDbnBlocks", "unit_records", "file_records",
           "DbnFile", "DbnBlock"]
