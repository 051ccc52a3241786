"""DBN files -> Bronze row pieces, as Beam PTransforms (the bounded backfill's read side).

``ReadDbnShares(shares)``: the planned ``DbnShare`` list (``io_connectors.dbn.blocks``)
spread over the workers.

``DecodeDbnShares(instruments, staging, rules, block_bytes, ...)``: ``DbnShare`` ->
``(shard_key, (piece_path, rows))``.  A columnar share's blocks are decoded by
``io_connectors.dbn.columnar.decode_block`` (every decoder and Bronze rule as array
operations; what it does not take goes through the per-message parser, rows and dead
letters alike); a per-message share (a file the columnar decoder does not take) goes
through ``decode.iter_events`` and ``route_message`` record by record, as the backfill
always did.  Either way each shard key's rows are written to the staging folder as an
Arrow piece, and the share's counts as a record the driver checks.

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
from io_connectors.dbn.blocks import DbnFile, DbnShare, NotColumnar, share_blocks
from io_connectors.dbn.columnar import decode_block
from io_connectors.lake.staging import Staging, batch_worker_gc
from transforms.arrow_rows import rows_to_table
from transforms.bronze_route import route_message
from transforms.bronze_rules import DEFAULT_RULES, BronzeRules
from transforms.partitioning import SEP, shard_layout
from transforms.schemas import DEAD_LETTER_PATH

UNITS = "records/units"          # one record per decoded share


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


class ReadDbnShares(beam.PTransform):
    """``PBegin`` -> the planned ``DbnShare`` units (``io_connectors.dbn.blocks.
    plan_shares``, largest files first), spread over the workers."""

    def __init__(self, shares: list[DbnShare]):
        super().__init__()
        self._shares = list(shares)

    def expand(self, pbegin):
        return (pbegin
                | "Shares" >> beam.Create(self._shares, reshuffle=False)
                | "Spread" >> _Redistribute(lambda u: u.unit))


class _Decode(beam.DoFn):
    def __init__(self, instruments, staging: Staging, rules: BronzeRules, block_bytes: int,
                 include_spreads: bool, source: str, piece_rows: int):
        self._instruments = instruments
        self._block_bytes = block_bytes
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

    def _per_message(self, file: DbnFile, writer: "_PieceWriter"):
        stats = dbn_files.DecodeStats()
        buffers = collections.defaultdict(list)
        for subject, event in dbn_files.iter_events(
                [file.path], self._instruments, self._include_spreads, self._source, stats):
            msg = (subject, orjson.dumps(event), 0, event["ts_event_ns"], None)
            key, (_, row) = route_message(msg, self._rules)
            rows = buffers[key]
            rows.append(row)
            if len(rows) >= self._piece_rows:
                writer.add_rows(key, buffers.pop(key))
        for key, rows in buffers.items():
            writer.add_rows(key, rows)
        return stats

    def _columnar(self, share: DbnShare, writer: "_PieceWriter"):
        stats = dbn_files.DecodeStats()
        for _, records in share_blocks(share, self._block_bytes):
            out = decode_block(records, share.file.schema, self._lookup(share.file),
                               share.file.version, self._include_spreads, self._source,
                               self._rules)
            stats.merge(out.stats)
            for key, table in out.tables:
                writer.add_table(key, table)
            routed = collections.defaultdict(list)
            for key, (_, row) in out.routed:
                routed[key].append(row)
            for key, rows in routed.items():
                writer.add_rows(key, rows)
        return stats

    def process(self, share: DbnShare):
        started = time.time()
        writer = _PieceWriter(self._staging, share.unit)
        per_message = share.per_message
        if per_message:
            stats = self._per_message(share.file, writer)
        else:
            try:
                stats = self._columnar(share, writer)
            except NotColumnar:
                # Every share of the file meets the same record; share 0 decodes the file
                # message by message, the others give nothing.
                writer.discard()
                per_message = True
                stats = (self._per_message(share.file, writer) if share.share == 0
                         else dbn_files.DecodeStats())
        self._records.inc(stats.records)
        self._dead.inc(sum(writer.dead_letters.values()))
        self._staging.write_json(f"{UNITS}/{share.unit}.json", {
            "unit": share.unit, "file": share.file.index, "per_message": per_message,
            "pid": os.getpid(), "thread": threading.get_ident(),
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

    def discard(self) -> None:
        """Removes the pieces written so far and forgets their counts."""
        for _, (rel, _) in self.pieces:
            self._staging.remove(rel)
        self.pieces.clear()
        self.rows.clear()
        self.dead_letters.clear()

    def add_rows(self, key: str, rows: list) -> None:
        _, schema, _ = shard_layout(key)
        if key.split(SEP, 1)[0] == DEAD_LETTER_PATH:
            self.dead_letters.update(row[3] for row in rows)
        self.add_table(key, rows_to_table(rows, schema))


class DecodeDbnShares(beam.PTransform):
    """``DbnShare`` -> ``(shard_key, (piece_path, rows))``: the rows of one shard key from
    one block of a share, an Arrow file in the staging folder (see the module docstring).

    ``instruments``: ``decode.load_instruments`` of all the run's files; ``rules``: the
    Bronze rules (configs/lake.yaml); ``block_bytes``: the size of a block of records (the
    unit of memory); ``piece_rows``: at most this many rows per piece on the per-message
    path (its memory bound).  Guarantees: every record of a file is either in exactly one
    piece (a Bronze row or a dead letter) or counted as skipped by the decoder's reason in
    the record of exactly one share, exactly as the per-message backfill would."""

    def __init__(self, instruments, staging: Staging, rules: BronzeRules = DEFAULT_RULES,
                 block_bytes: int = 8 << 20, include_spreads: bool = False,
                 source: str = "replay", piece_rows: int = 200_000):
        super().__init__()
        self._dofn = _Decode(instruments, staging, rules, block_bytes, include_spreads,
                             source, piece_rows)

    def expand(self, shares):
        return shares | "Decode" >> beam.ParDo(self._dofn)


def unit_records(staging: Staging) -> dict[str, dict]:
    """The decoded shares' records, by unit id."""
    return {r["unit"]: r for r in staging.read_jsons(UNITS)}


__all__ = ["ReadDbnShares", "DecodeDbnShares", "unit_records", "DbnFile", "DbnShare"]
