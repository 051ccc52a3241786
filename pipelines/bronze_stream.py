"""Streaming Bronze: NATS JetStream ``market.*`` -> Parquet shards under ``bronze/``.

    python -m pipelines.bronze_stream --runner=DirectRunner [--nats_url URL] [--data_root D]

Wiring only: ReadFromNats (batches) -> ParseMarketBatches -> BatchedFlushPolicy ->
WriteParquetShards, applied to both of the flush policy's outputs (full shards cut within a
bundle, and the trigger-flushed rest); the writer acks each message after its shard is
durably written.  Malformed messages go to
``bronze/_dead_letter/date=YYYY-MM-DD``.  SIGINT/SIGTERM drain and exit 0.
"""
from __future__ import annotations

import dataclasses
import logging
import sys
import uuid
from typing import Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from io_connectors.config import ConfigError, load_config
from io_connectors.lake_storage import LakeStorage, parquet_options, resolve_data_root
from io_connectors.nats_settings import NatsSettings
from io_connectors.nats_source import ReadFromNats
from io_connectors.nats_streams import ConsumerSpec, consumer_spec
from io_connectors.parquet_shards import WriteParquetShards
from pipelines.runner_setup import (UsageError, configure_logging, fail, prepare_runner,
                                    tune_gc_for_streaming)
from pipelines.streaming_launcher import run_supervised, summarize
from transforms.bronze_route import ParseMarketBatches
from transforms.flush_policy import BatchedFlushPolicy
from transforms.partitioning import shard_layout

_LOG = logging.getLogger("bronze_stream")


class BronzeStreamOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--nats_url", default=None,
                            help="NATS server URL (default: env NATS_URL, else configs/streams.yaml)")
        parser.add_argument("--data_root", default=None,
                            help="lake root, local path or s3:// (default: env DATA_ROOT, else configs/lake.yaml)")
        parser.add_argument("--durable", default=None, help="durable consumer name override")
        parser.add_argument("--ack_wait_s", type=float, default=None)
        parser.add_argument("--max_ack_pending", type=int, default=None)
        parser.add_argument("--flush_max_events", type=int, default=None)
        parser.add_argument("--flush_max_seconds", type=float, default=None)
        parser.add_argument("--num_readers", type=int, default=1)
        parser.add_argument("--stop_at_end", action="store_true",
                            help="bounded: stop once the consumer has nothing pending")
        parser.add_argument("--max_messages", type=int, default=None,
                            help="bounded: stop after this many messages")
        parser.add_argument("--run_id", default=None, help="names the drain control subject")
        parser.add_argument("--max_restarts", type=int, default=5,
                            help="restart a job that fails on its own (e.g. the runner "
                                 "crashed) up to N times in 10 minutes (0: never)")
        parser.add_argument("--log_level", default="INFO")


@dataclasses.dataclass(frozen=True)
class BronzeStreamConfig:
    """Everything the Bronze pipeline needs, resolved and validated."""
    nats: NatsSettings
    consumer: ConsumerSpec
    storage: LakeStorage
    max_events: int
    max_seconds: float
    num_readers: int = 1
    stop_at_end: bool = False
    max_messages: Optional[int] = None
    run_id: str = "bronze"
    shutdown_timeout_s: float = 25.0

    @property
    def control_subject(self) -> str:
        return f"_lake.control.{self.run_id}.drain"

    @classmethod
    def from_options(cls, o: BronzeStreamOptions) -> "BronzeStreamConfig":
        lake = load_config("lake")
        flush = lake.get("flush", {}).get("bronze", {})
        max_events = o.flush_max_events or int(flush.get("max_events", 1000))
        max_seconds = o.flush_max_seconds or float(flush.get("max_seconds", 5))
        consumer = consumer_spec("bronze", o.ack_wait_s, o.max_ack_pending, o.durable)
        if consumer.ack_wait_s < 2 * max_seconds + 10:
            raise UsageError(f"ack_wait_s={consumer.ack_wait_s} is too short for a "
                             f"{max_seconds}s flush: needs >= {2 * max_seconds + 10}")
        if consumer.max_ack_pending < 2 * max_events:
            raise UsageError(f"max_ack_pending={consumer.max_ack_pending} would stall delivery "
                             f"with a {max_events}-event flush: needs >= {2 * max_events}")
        if o.num_readers < 1:
            raise UsageError("--num_readers must be >= 1")
        if o.max_restarts < 0:
            raise UsageError("--max_restarts must be >= 0")
        return cls(nats=NatsSettings.resolve(o.nats_url), consumer=consumer,
                   storage=LakeStorage(resolve_data_root(o.data_root)),
                   max_events=max_events, max_seconds=max_seconds,
                   num_readers=o.num_readers, stop_at_end=o.stop_at_end,
                   max_messages=o.max_messages,
                   run_id=o.run_id or uuid.uuid4().hex[:12],
                   shutdown_timeout_s=float(lake.get("shutdown_timeout_s", 25)))


def build(p: beam.Pipeline, cfg: BronzeStreamConfig):
    """Adds the Bronze graph to ``p``; returns the two PCollections of (file, rows)
    written: full shards cut within a bundle, and the trigger-flushed rest."""
    batches = p | "ReadNats" >> ReadFromNats(
        cfg.nats, cfg.consumer, stop_at_end=cfg.stop_at_end, max_messages=cfg.max_messages,
        control_subject=cfg.control_subject, num_readers=cfg.num_readers, batches=True)
    full, flushed = (batches
                     | "Parse" >> ParseMarketBatches()
                     | "Flush" >> BatchedFlushPolicy(cfg.max_events, cfg.max_seconds))
    write = lambda: WriteParquetShards(cfg.storage, shard_layout, cfg.nats, parquet_options())
    # Two writer applications, not a Flatten: full shards stay in the read stage.
    return (full | "WriteFullShards" >> write(),
            flushed | "WriteShards" >> write())


def main(argv=None) -> int:
    options = BronzeStreamOptions(argv if argv is not None else sys.argv[1:])
    o = options.view_as(BronzeStreamOptions)
    configure_logging(o.log_level)
    try:
        cfg = BronzeStreamConfig.from_options(o)
        prepare_runner(options, streaming=True)
    except (UsageError, ConfigError) as exc:
        fail(str(exc))
    def make_pipeline():
        p = beam.Pipeline(options=options)
        build(p, cfg)
        return p

    _LOG.info("bronze_stream: %s -> %s (consumer %s, flush %d events / %.1fs, drain subject %s)",
              cfg.nats.url, cfg.storage.data_root, cfg.consumer.durable, cfg.max_events,
              cfg.max_seconds, cfg.control_subject)
    tune_gc_for_streaming()
    code, result = run_supervised(make_pipeline, cfg.nats, cfg.control_subject,
                                  cfg.shutdown_timeout_s, max_restarts=o.max_restarts)
    _LOG.info("bronze_stream finished (exit %d): %s", code, summarize(result))
    return code


if __name__ == "__main__":
    sys.exit(main())
