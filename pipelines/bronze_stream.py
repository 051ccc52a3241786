"""Streaming Bronze: NATS JetStream ``market.*`` -> Parquet shards under ``bronze/``.

    python -m pipelines.bronze_stream --runner=DirectRunner [--nats_url URL] [--data_root D]

Wiring only: ReadFromNats (batches) -> ParseMarketBatches -> BatchedFlushPolicy ->
WriteParquetShards -> AckWrittenShards, applied to both of the flush policy's outputs (full
shards cut within a bundle, and the trigger-flushed rest); each message is acked after
its shard is durably written, in the writer's fused stage.  Malformed messages go to
``bronze/_dead_letter/date=YYYY-MM-DD``.  SIGINT/SIGTERM drain and exit 0.  Flags,
configuration and the main loop are those of ``pipelines.stream_config`` (role
``bronze``: ``consumers.bronze``, ``flush.bronze``).
"""
from __future__ import annotations

if __name__ == "__main__":      # a streaming worker: skip optional plugins it never uses
    from pipelines.lean_imports import skip_unused_optional_modules
    skip_unused_optional_modules()

import functools
import sys

import apache_beam as beam

from io_connectors.config import bronze_rules
from io_connectors.lake.storage import parquet_options
from io_connectors.lake.parquet_shards import WriteParquetShards
from io_connectors.nats.ack import AckWrittenShards
from io_connectors.nats.source import ReadFromNats
from pipelines.stream_config import StreamConfig, StreamOptions, run_stream
from transforms.bronze_route import ParseMarketBatches
from transforms.flush_policy import BatchedFlushPolicy
from transforms.partitioning import shard_layout


def build(p: beam.Pipeline, cfg: StreamConfig, rules=None):
    """Adds the Bronze graph to ``p``; returns the two PCollections of (file, rows)
    written: full shards cut within a bundle, and the trigger-flushed rest.  ``rules``:
    the Bronze rules (default: those of configs/lake.yaml)."""
    batches = p | "ReadNats" >> ReadFromNats(
        cfg.nats, cfg.consumer, stop_at_end=cfg.stop_at_end, max_messages=cfg.max_messages,
        control_subject=cfg.control_subject, ready_subject=cfg.ready_subject,
        num_readers=cfg.num_readers, batches=True)
    full, flushed = (batches
                     | "Parse" >> ParseMarketBatches(rules or bronze_rules())
                     | "Flush" >> BatchedFlushPolicy(cfg.max_events, cfg.max_seconds))
    write = lambda: WriteParquetShards(cfg.storage, shard_layout,
                                       compression=parquet_options(), retry=cfg.retry,
                                       hold=cfg.in_progress())
    # Two writer applications, not a Flatten: full shards stay in the read stage.
    return (full | "WriteFullShards" >> write() | "AckFullShards" >> AckWrittenShards(cfg.nats),
            flushed | "WriteShards" >> write() | "AckShards" >> AckWrittenShards(cfg.nats))


def _prepare(_options: StreamOptions, cfg: StreamConfig):
    return functools.partial(build, cfg=cfg, rules=bronze_rules())


def main(argv=None) -> int:
    return run_stream("bronze_stream", "bronze", _prepare, argv=argv, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
