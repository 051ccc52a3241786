"""Streaming Gold: NATS JetStream ``levels.signals`` -> Parquet shards under ``gold/``.

    python -m pipelines.gold_stream --runner=DirectRunner [--nats_url URL] [--data_root D]
        [--underlying ES] [the flags of bronze_stream]

Wiring only: ReadFromNats (one element per message) -> ParseLevelSignals (one element
per message: its level rows, or a dead letter) -> FlushPolicy (500 messages or 10 s per
partition, configs/lake.yaml ``flush.gold``) -> FlattenSignalShards -> WriteParquetShards
-> AckWrittenShards (acks every message of a shard after the shard is durably written).
Rows land in
``gold/levels/signals/root=<U>/date=YYYY-MM-DD/hour=HH/part-HHMMSS-<unique>.parquet``
(UTC of the snapshot's ``ts``), malformed messages in ``gold/_dead_letter/date=...``.

The flush counts MESSAGES: "500 records" are 500 signal snapshots (about 2,000 level
rows), so the rows of a snapshot are always in one shard and its ack is exact.
A snapshot without levels writes nothing and is acked with its shard.  Flags,
configuration and the main loop are those of ``pipelines.stream_config`` (role ``gold``:
``consumers.gold``, ``flush.gold``); SIGINT/SIGTERM drain and exit 0.
"""
from __future__ import annotations

if __name__ == "__main__":      # a streaming worker: skip optional plugins it never uses
    from pipelines.lean_imports import skip_unused_optional_modules
    skip_unused_optional_modules()

import functools
import sys

import apache_beam as beam

from io_connectors.config import ConfigError, load_config, require
from io_connectors.lake.storage import parquet_options
from io_connectors.lake.parquet_shards import WriteParquetShards
from io_connectors.nats.ack import AckWrittenShards
from io_connectors.nats.source import ReadFromNats
from pipelines.runner_setup import UsageError
from pipelines.stream_config import StreamConfig, StreamOptions, run_stream
from transforms.flush_policy import FlushPolicy
from transforms.gold_route import FlattenSignalShards, ParseLevelSignals
from transforms.json_fields import is_plain_identifier
from transforms.partitioning import gold_shard_layout


class GoldStreamOptions(StreamOptions):
    """``StreamOptions`` plus the default underlying of the Gold partitions."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--underlying", default=None,
                            help="partition value of snapshots without an 'underlying' "
                                 "field (default: configs/lake.yaml gold.underlying)")


def default_underlying(flag) -> str:
    """The ``--underlying`` flag, else ``lake.yaml`` ``gold.underlying``; a plain
    identifier, or UsageError / ConfigError."""
    value = flag if flag is not None else require(load_config("lake"), "gold.underlying",
                                                  "lake.yaml")
    if not is_plain_identifier(value):
        error = UsageError if flag is not None else ConfigError
        raise error(f"underlying {value!r} is not a plain identifier ([A-Za-z0-9_], 1-32)")
    return value


def build(p: beam.Pipeline, cfg: StreamConfig, underlying: str):
    """Adds the Gold streaming graph to ``p``; returns the PCollection of (file, rows)
    written."""
    return (p
            | "ReadNats" >> ReadFromNats(
                cfg.nats, cfg.consumer, stop_at_end=cfg.stop_at_end,
                max_messages=cfg.max_messages, control_subject=cfg.control_subject,
                ready_subject=cfg.ready_subject,
                num_readers=cfg.num_readers)
            | "Parse" >> ParseLevelSignals(underlying)
            | "Flush" >> FlushPolicy(cfg.max_events, cfg.max_seconds)
            | "Flatten" >> FlattenSignalShards()
            | "WriteShards" >> WriteParquetShards(cfg.storage, gold_shard_layout,
                                                  compression=parquet_options(), retry=cfg.retry,
                                                  hold=cfg.in_progress())
            | "AckShards" >> AckWrittenShards(cfg.nats))


def _prepare(options: GoldStreamOptions, cfg: StreamConfig):
    return functools.partial(build, cfg=cfg, underlying=default_underlying(options.underlying))


def main(argv=None) -> int:
    return run_stream("gold_stream", "gold", _prepare, options_cls=GoldStreamOptions,
                      argv=argv, flush_unit="messages", doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
