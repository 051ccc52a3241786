"""``WriteParquetShards``: one Parquet file per shard, durably, then say which were written.

Input: ``(shard_key, value)`` shards, ``value`` a ``transforms.shards.Shard(tokens,
table)`` or a list of ``(token, row_tuple)`` values (see ``transforms.shards``; both are
written the same way, the table sorted stably by the key's sort column).  Each shard with
rows becomes one zstd Parquet file ``part-HHMMSS-<unique>.parquet`` (HHMMSS = UTC time
of its earliest row) in the key's folder, written atomically and durably.

Output: one ``WrittenShard(path, rows, tokens)`` per input shard, emitted only after its
file is durable: ``path`` is the file's lake-relative path, or None when no file was
needed (a shard without rows, or a content-addressed shard whose file already exists);
``tokens`` are the shard's message tokens.  Whatever acknowledges the messages
(``io_connectors.nats.ack.AckWrittenShards``) is the next step of the same fused stage, so
nothing is acknowledged before it is written.

Failures (``io_connectors.errors``): a permanent one (credentials, missing bucket,
permissions, data that does not fit the schema) fails the bundle at once with a
``PermanentError`` (the launcher then stops the job instead of restarting it); a
transient one is retried by ``io_connectors.retry_policy.RetryPolicy`` with backoff and a
bound, while ``hold(tokens)`` (if given) keeps the shard's messages from being
redelivered; when the bound is exceeded the write is abandoned and the bundle fails, with
nothing acknowledged.
"""
from __future__ import annotations

import hashlib
import logging
import time
from typing import Callable, ContextManager, NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from io_connectors.lake.storage import LakeStorage, shard_name
from io_connectors.retry_policy import RetryPolicy
from transforms import lake_metrics as lm
from transforms.partitioning import shard_dataset
from transforms.schemas import DEAD_LETTER_PATH
from transforms.shards import as_shard, shard_rows

_LOG = logging.getLogger(__name__)

# hold(tokens) -> context manager kept entered while the shard's write is being retried
Hold = Callable[[list], ContextManager]


class WrittenShard(NamedTuple):
    """A shard that is durably in the lake: its file (None if it needed none), its row
    count, and the tokens of its messages."""
    path: Optional[str]
    rows: int
    tokens: list


class _WriteShardDoFn(beam.DoFn):
    def __init__(self, storage: LakeStorage, layout: Callable, compression: tuple[str, int],
                 retry: Optional[RetryPolicy], hold: Optional[Hold], content_addressed: bool):
        self._content_addressed = content_addressed
        self._storage = storage
        self._layout = layout
        self._compression = compression
        self._retry = retry
        self._hold = hold
        self._counters: dict = {}

    def _count(self, name: str, n: int = 1) -> None:
        """Beam counter ``lake/<name>`` (see ``transforms.lake_metrics``), per shard."""
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Metrics.counter(lm.NAMESPACE, name)
        counter.inc(n)

    def setup(self):
        if self._retry is None:
            self._retry = RetryPolicy.from_config()

    def process(self, keyed):
        key, value = keyed
        folder, schema, sort_col = self._layout(key)
        digest = (hashlib.sha256(repr(shard_rows(value)).encode()).hexdigest()[:16]
                  if self._content_addressed else None)
        tokens, table = as_shard(value, schema, sort_col)
        if not table.num_rows:           # nothing to write: its messages are done
            if tokens:
                self._count(lm.MESSAGES_WITHOUT_ROWS, len(tokens))
            yield WrittenShard(None, 0, tokens)
            return
        first_ts = table[sort_col][0].as_py()
        hold = (lambda: self._hold(tokens)) if self._hold is not None and tokens else None
        started = time.perf_counter()
        rel = self._retry.call(lambda: self._write(folder, table, first_ts, digest),
                               f"write of a {table.num_rows}-row shard to "
                               f"{self._storage.data_root}/{folder}", hold)
        seconds = time.perf_counter() - started
        if rel is None:                  # the same content is already in the lake
            self._count(lm.FILES_ALREADY_PRESENT)
            yield WrittenShard(None, 0, tokens)
            return
        self._count_written(key, table, seconds)
        yield WrittenShard(rel, table.num_rows, tokens)

    def _count_written(self, key, table, seconds) -> None:
        dataset = shard_dataset(key)
        self._count(lm.labelled(lm.ROWS_WRITTEN, dataset), table.num_rows)
        self._count(lm.labelled(lm.FILES_WRITTEN, dataset))
        self._count(lm.labelled(lm.SHARD_WRITE_SECONDS, lm.write_bucket(seconds)))
        self._count(lm.labelled(lm.SHARD_WRITE_SECONDS, lm.SUM_US), int(seconds * 1e6))
        if dataset == DEAD_LETTER_PATH:
            classes: dict = {}
            for reason in table.column("reason").to_pylist():
                name = lm.reason_class(reason)
                classes[name] = classes.get(name, 0) + 1
            for name, n in classes.items():
                self._count(lm.labelled(lm.DEAD_LETTERS, name), n)

    def _write(self, folder, table, first_ts_ns, digest) -> Optional[str]:
        """One attempt: the relative path written, or None if a content-addressed file
        of the same name exists.  A random name that is taken is drawn again."""
        for _ in range(8):
            try:
                return self._storage.write_parquet(folder, shard_name(first_ts_ns, digest),
                                                   table, *self._compression)
            except FileExistsError:
                if digest is not None:
                    return None
        raise RuntimeError(f"could not find a free shard name in {folder}")


class WriteParquetShards(beam.PTransform):
    """Writes each ``(shard_key, Shard | [(token, row), ...])`` shard as one Parquet file;
    outputs a ``WrittenShard(path, rows, tokens)`` per shard once it is durable (see the
    module docstring for failures and retries).

    Args:
      storage: the lake (local or S3).
      layout: ``key -> (folder, schema, sort_column)``; a module-level function.
      compression: (codec, level).
      retry: the retry policy (default: configs/lake.yaml ``write_retry``).
      hold: ``tokens -> context manager`` entered while a shard's write is retried (e.g.
        ``io_connectors.nats.ack.InProgress``); None: nothing to keep alive.
      content_addressed: name each file by a hash of its rows and skip a shard whose file
        already exists, so that re-running a bounded job over the same input adds nothing
        (backfills).  Streaming leaves it off: every shard gets a fresh unique name.
    """

    def __init__(self, storage: LakeStorage, layout: Callable, *, compression=("zstd", 3),
                 retry: Optional[RetryPolicy] = None, hold: Optional[Hold] = None,
                 content_addressed: bool = False):
        super().__init__()
        self._dofn = _WriteShardDoFn(storage, layout, tuple(compression), retry, hold,
                                     content_addressed)

    def expand(self, keyed):
        return keyed | "WriteShard" >> beam.ParDo(self._dofn)
