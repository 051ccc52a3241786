"""What the streaming pipelines (``bronze_stream``, ``gold_stream``) share: their flags,
the resolved and validated configuration, and the main loop.

Each pipeline is a role of configs: ``consumers.<role>`` in ``streams.yaml`` (the durable
JetStream consumer) and ``flush.<role>`` in ``lake.yaml`` (the flush rule).  ``run_stream``
parses the flags, resolves them (flag, else env, else YAML), refuses a bad value with
``error: ...`` and exit status 2, starts the runner and runs the job under
``streaming_launcher.run_supervised`` (drain on SIGINT/SIGTERM, restart after a runner
crash) until it ends; it returns the exit code.
"""
from __future__ import annotations

import dataclasses
import logging
import sys
import uuid
from typing import Callable, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from io_connectors.config import ConfigError, load_config, require
from io_connectors.lake.storage import LakeStorage, resolve_data_root
from io_connectors.nats.settings import NatsSettings
from io_connectors.nats.streams import ConsumerSpec, consumer_spec, control_subjects
from pipelines.runner_setup import (UsageError, configure_logging, fail, prepare_runner,
                                    reject_unknown_flags,
                                    tune_gc_for_streaming)
from pipelines.streaming_launcher import run_supervised, summarize


class StreamOptions(PipelineOptions):
    """The flags every streaming pipeline takes (Beam's own options pass through)."""

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
        parser.add_argument("--run_id", default=None,
                            help="names this instance's control subjects (drain, ready); "
                                 "unique per instance (default: random)")
        parser.add_argument("--max_restarts", type=int, default=5,
                            help="restart a job that fails on its own (e.g. the runner "
                                 "crashed) up to N times in 10 minutes (0: never)")
        parser.add_argument("--log_level", default="INFO")


def _flush_rule(role: str, o: StreamOptions) -> tuple[int, float]:
    """(max_events, max_seconds): the flags, else ``lake.yaml`` ``flush.<role>``."""
    rule = require(load_config("lake"), f"flush.{role}", "lake.yaml")
    try:
        max_events = o.flush_max_events or int(require(rule, "max_events", f"lake.yaml flush.{role}"))
        max_seconds = o.flush_max_seconds or float(require(rule, "max_seconds",
                                                           f"lake.yaml flush.{role}"))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"lake.yaml flush.{role}: {exc}") from None
    if max_events < 1 or max_seconds <= 0:
        raise UsageError(f"flush rule needs max_events >= 1 and max_seconds > 0, got "
                         f"{max_events} / {max_seconds}")
    return max_events, max_seconds


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """Everything a streaming pipeline needs, resolved and validated."""
    nats: NatsSettings
    consumer: ConsumerSpec
    storage: LakeStorage
    max_events: int
    max_seconds: float
    num_readers: int = 1
    stop_at_end: bool = False
    max_messages: Optional[int] = None
    run_id: str = "stream"
    shutdown_timeout_s: float = 25.0
    max_restarts: int = 5

    @property
    def control_subject(self) -> str:
        return control_subjects(self.run_id)["drain"]

    @property
    def ready_subject(self) -> str:
        return control_subjects(self.run_id)["ready"]

    @classmethod
    def from_options(cls, o: StreamOptions, role: str) -> "StreamConfig":
        """Resolves the flags of ``o`` for ``role`` ("bronze", "gold"); raises UsageError
        or ConfigError naming a bad value.  The consumer must outlast the flush:
        ``ack_wait_s >= 2 * max_seconds + 10`` and ``max_ack_pending >= 2 * max_events``."""
        max_events, max_seconds = _flush_rule(role, o)
        consumer = consumer_spec(role, o.ack_wait_s, o.max_ack_pending, o.durable)
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
                   shutdown_timeout_s=float(load_config("lake").get("shutdown_timeout_s", 25)),
                   max_restarts=o.max_restarts)


# prepare(options view, config) -> build(pipeline): validates what is particular to one
# pipeline (raising UsageError / ConfigError) and returns the function adding its graph.
Prepare = Callable[[StreamOptions, StreamConfig], Callable[[beam.Pipeline], object]]


def run_stream(name: str, role: str, prepare: Prepare,
               options_cls: type = StreamOptions, argv: Optional[Sequence[str]] = None,
               flush_unit: str = "events") -> int:
    """Main of a streaming pipeline: flags -> config -> supervised run; returns the exit
    code (0: ended or drained; 1: failed or drain timed out).  Exits 2 on a bad flag or
    config value, before anything starts."""
    log = logging.getLogger(name)
    args = list(argv) if argv is not None else sys.argv[1:]
    options = options_cls(args)
    o = options.view_as(options_cls)
    configure_logging(o.log_level)
    try:
        reject_unknown_flags(args)
        cfg = StreamConfig.from_options(o, role)
        build = prepare(o, cfg)
        prepare_runner(options, streaming=True)
    except (UsageError, ConfigError) as exc:
        fail(str(exc))

    def make_pipeline():
        p = beam.Pipeline(options=options)
        build(p)
        return p

    log.info("%s: %s -> %s (consumer %s, flush %d %s / %.1fs, drain subject %s)", name,
             cfg.nats.url, cfg.storage.data_root, cfg.consumer.durable, cfg.max_events,
             flush_unit, cfg.max_seconds, cfg.control_subject)
    tune_gc_for_streaming()
    code, result = run_supervised(make_pipeline, cfg.nats, cfg.control_subject,
                                  cfg.shutdown_timeout_s, max_restarts=cfg.max_restarts)
    log.info("%s finished (exit %d): %s", name, code, summarize(result))
    return code
