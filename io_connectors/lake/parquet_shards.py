"""``WriteParquetShards``: one Parquet file per shard, then ack the messages it holds.

Input: ``(shard_key, [(ack_token, row_tuple), ...])`` shards (see
``transforms.flush_policy``), or ``(shard_key, ColumnarShard(tokens, table))``: the same
shard in columnar form (a table already in the key's schema, in any order; it is sorted
stably by the sort column exactly as ``rows_to_table`` sorts the tuples; the same file
name, acks and metrics).  Each shard becomes one zstd Parquet file
``part-HHMMSS-<unique>.parquet`` (HHMMSS = UTC time of its earliest row) in the key's
folder, written atomically and durably, and only then are its messages acked to JetStream.  A failed write is retried with backoff and finally fails
the bundle without acking, so the messages are redelivered; nothing is acked unwritten.
Output: ``(relative_path, row_count)`` for each file written.

A token or a row may be ``None`` (``split_shard``): a message that became several rows
carries its token on one of them only (Gold level signals), and a message that became no
row (a snapshot without levels) is ``(token, None)``.  A shard with tokens but no rows
writes no file and acks its tokens at once: they hold nothing to write, and leaving them
un-acked would only make JetStream redeliver them forever.
"""
from __future__ import annotations

import hashlib
import logging
import time
from typing import Callable, Optional

import apache_beam as beam
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from io_connectors.nats import ack as nats_ack
from io_connectors.lake.storage import LakeStorage, shard_name
from io_connectors.nats.settings import NatsSettings
from transforms import lake_metrics as lm
from transforms.arrow_rows import rows_to_table
from transforms.columnar_trades import ColumnarShard, table_rows
from transforms.partitioning import shard_dataset
from transforms.schemas import DEAD_LETTER, DEAD_LETTER_PATH

_REASON = DEAD_LETTER.get_field_index("reason")

_LOG = logging.getLogger(__name__)


def split_shard(values) -> tuple[list, list]:
    """``[(token, row), ...]`` -> ``(tokens, rows)``, in order, without the ``None``
    tokens and ``None`` rows."""
    tokens, rows = [], []
    for token, row in values:
        if token is not None:
            tokens.append(token)
        if row is not None:
            rows.append(row)
    return tokens, rows


class _WriteShardDoFn(beam.DoFn):
    def __init__(self, storage: LakeStorage, layout: Callable, ack_settings: Optional[NatsSettings],
                 compression: tuple[str, int], retries: int, retry_wait_s: float,
                 content_addressed: bool):
        self._content_addressed = content_addressed
        self._storage = storage
        self._layout = layout
        self._ack_settings = ack_settings
        self._compression = compression
        self._retries = retries
        self._retry_wait_s = retry_wait_s
        self._counters: dict = {}

    def _count(self, name: str, n: int = 1) -> None:
        """Beam counter ``lake/<name>`` (see ``transforms.lake_metrics``), per shard."""
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Metrics.counter(lm.NAMESPACE, name)
        counter.inc(n)

    def process(self, keyed):
        key, values = keyed
        if type(values) is ColumnarShard:
            tokens, table = values
            if not table.num_rows:
                if tokens:
                    self._count(lm.MESSAGES_WITHOUT_ROWS, len(tokens))
                    self._ack(tokens, "a shard without rows")
                return
            folder, schema, sort_col = self._layout(key)
            if not table.schema.equals(schema):
                raise ValueError(f"columnar shard of {key} is not in the key's schema")
            rows = table_rows(table) if self._content_addressed else None
            if table.num_rows > 1:
                table = table.take(pc.sort_indices(table[sort_col]))   # stable
        else:
            tokens, rows = split_shard(values)
            if not rows:
                if tokens:                       # nothing to write: ack them now
                    self._count(lm.MESSAGES_WITHOUT_ROWS, len(tokens))
                    self._ack(tokens, "a shard without rows")
                return
            folder, schema, sort_col = self._layout(key)
            table = rows_to_table(rows, schema, sort_by=sort_col)
        digest = (hashlib.sha256(repr(rows).encode()).hexdigest()[:16]
                  if self._content_addressed else None)
        started = time.perf_counter()
        rel = self._write_with_retry(folder, table, table[sort_col][0].as_py(), digest)
        seconds = time.perf_counter() - started
        if rel is None:                      # the same content is already in the lake
            self._count(lm.FILES_ALREADY_PRESENT)
            return
        self._count_written(key, table.num_rows, rows, seconds)
        self._ack(tokens, rel)
        yield rel, table.num_rows

    def _count_written(self, key, num_rows, rows, seconds) -> None:
        dataset = shard_dataset(key)
        self._count(lm.labelled(lm.ROWS_WRITTEN, dataset), num_rows)
        self._count(lm.labelled(lm.FILES_WRITTEN, dataset))
        self._count(lm.labelled(lm.SHARD_WRITE_SECONDS, lm.write_bucket(seconds)))
        self._count(lm.labelled(lm.SHARD_WRITE_SECONDS, lm.SUM_US), int(seconds * 1e6))
        if dataset == DEAD_LETTER_PATH and rows:
            classes: dict = {}
            for row in rows:
                name = lm.reason_class(row[_REASON])
                classes[name] = classes.get(name, 0) + 1
            for name, n in classes.items():
                self._count(lm.labelled(lm.DEAD_LETTERS, name), n)

    def _ack(self, tokens, what):
        if self._ack_settings is None:
            return
        try:
            nats_ack.ack(self._ack_settings, tokens)
            self._count(lm.MESSAGES_ACKED, len(tokens))
        except Exception:  # pylint: disable=broad-except
            # Not acked: JetStream redelivers; readers drop the duplicate of a written row.
            self._count(lm.ACK_FAILURES, len(tokens))
            _LOG.warning("could not ack %d messages of %s", len(tokens), what, exc_info=True)

    def _write_with_retry(self, folder, table, first_ts_ns, digest):
        wait = self._retry_wait_s
        for attempt in range(self._retries + 1):
            name = shard_name(first_ts_ns, digest)
            try:
                return self._storage.write_parquet(folder, name, table, *self._compression)
            except FileExistsError:
                if digest is not None:
                    return None
                continue
            except Exception:  # pylint: disable=broad-except
                if attempt == self._retries:
                    raise
                _LOG.warning("write of %s/%s failed (attempt %d), retrying in %.1fs",
                             folder, name, attempt + 1, wait, exc_info=True)
                time.sleep(wait)
                wait = min(wait * 2, 10.0)
        raise RuntimeError(f"could not find a free shard name in {folder}")


class WriteParquetShards(beam.PTransform):
    """Writes each ``(shard_key, [(ack_token, row), ...])`` or ``(shard_key,
    ColumnarShard(tokens, table))`` shard as one Parquet file and acks its messages (after
    the durable write, as for tuples); outputs ``(relative_path, rows)`` per file.

    Args:
      storage: the lake (local or S3).
      layout: ``key -> (folder, schema, sort_column)``; a module-level function.
      ack_settings: NATS settings used to ack the written messages (None: no acks).
      compression: (codec, level).
      content_addressed: name each file by a hash of its rows and skip a shard whose file
        already exists, so that re-running a bounded job over the same input adds nothing
        (backfills).  Streaming leaves it off: every shard gets a fresh unique name.
    """

    def __init__(self, storage: LakeStorage, layout: Callable,
                 ack_settings: Optional[NatsSettings], compression=("zstd", 3),
                 retries: int = 5, retry_wait_s: float = 0.5, content_addressed: bool = False):
        super().__init__()
        self._dofn = _WriteShardDoFn(storage, layout, ack_settings, tuple(compression),
                                     retries, retry_wait_s, content_addressed)

    def expand(self, keyed):
        return keyed | "WriteShard" >> beam.ParDo(self._dofn)
