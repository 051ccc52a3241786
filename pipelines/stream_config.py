"""What the streaming pipelines (``bronze_stream``, ``gold_stream``) share: their flags,
the resolved and validated configuration, and the main loop.

Each pipeline is a role of configs: ``consumers.<role>`` in ``streams.yaml`` (the durable
JetStream consumer) and ``flush.<role>`` in ``lake.yaml`` (the flush rule).  ``run_stream``
parses the flags, resolves them (flag, else env, else YAML), refuses a bad value with
``error: ...`` and exit status 2, checks the edges (``io_connectors.preflight``: NATS
reachable with these credentials and JetStream, the data root writable or its bucket
reachable; ``error: ...`` and exit status 1 within the connect timeout), starts the runner
and runs the job under ``streaming_launcher.run_supervised`` (drain on SIGINT/SIGTERM,
restart after a runner crash, stop on a permanent error) until it ends; it returns the
exit code.  A signal during the start-up checks ends the process at once (exit 0).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from typing import Callable, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from io_connectors.config import ConfigError, load_config, require
from io_connectors.lake.storage import LakeStorage, resolve_data_root
from io_connectors.nats.ack import InProgress
from io_connectors.nats.settings import NatsSettings
from io_connectors.nats.streams import ConsumerSpec, consumer_spec, control_subjects
from io_connectors.monitoring.exporter import MetricsServer
from io_connectors.monitoring.stream_monitor import StreamMonitor, summary
from io_connectors.preflight import StartupError, check_data_root, check_nats
from io_connectors.retry_policy import RetryPolicy
from pipelines.cli import add_log_level, add_monitoring_flags, parse_options_cli
from pipelines.runner_setup import (UsageError, configure_logging, fail, prepare_runner,
                                    reject_unknown_flags,
                                    tune_gc_for_streaming)
from pipelines.streaming_launcher import (StopRequested, StopSignals, exit_within,
                                          quiet_permanent_errors, run_supervised)


class StreamOptions(PipelineOptions):
    """The flags every streaming pipeline takes (Beam's own options pass through)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--nats_url", default=None,
                            help="NATS server URL (default: env NATS_URL, else configs/streams.yaml)")
        parser.add_argument("--data_root", default=None,
                            help="lake root, local path or s3:// (default: env DATA_ROOT, else configs/lake.yaml)")
        parser.add_argument("--durable", default=None,
                            help="durable consumer name (default: configs/streams.yaml consumers.<role>)")
        parser.add_argument("--ack_wait_s", type=float, default=None,
                            help="seconds JetStream waits for an ack before redelivering "
                                 "(default: configs/streams.yaml)")
        parser.add_argument("--max_ack_pending", type=int, default=None,
                            help="messages delivered but not yet acked, at most "
                                 "(default: configs/streams.yaml)")
        parser.add_argument("--flush_max_events", type=int, default=None,
                            help="a shard is written after this many events per partition "
                                 "(default: configs/lake.yaml flush.<role>)")
        parser.add_argument("--flush_max_seconds", type=float, default=None,
                            help="... or this many seconds after its first event "
                                 "(default: configs/lake.yaml flush.<role>)")
        parser.add_argument("--num_readers", type=int, default=1,
                            help="parallel readers in the consumer's queue group")
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
        parser.add_argument("--restart_backoff_s", type=float, default=1.0,
                            help="wait before restarting a failed job, doubling per restart "
                                 "up to 30 s")
        parser.add_argument("--shutdown_timeout_s", type=float, default=None,
                            help="a drain longer than this is cancelled (exit 1; default: "
                                 "configs/lake.yaml shutdown_timeout_s)")
        add_monitoring_flags(parser)
        add_log_level(parser)


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
    restart_backoff_s: float = 1.0
    retry: RetryPolicy = RetryPolicy()

    @property
    def control_subject(self) -> str:
        return control_subjects(self.run_id)["drain"]

    @property
    def ready_subject(self) -> str:
        return control_subjects(self.run_id)["ready"]

    def in_progress(self) -> InProgress:
        """The writers' ``hold``: in-progress acks every third of ``ack_wait`` while a
        shard's write is retried, so its messages are not redelivered meanwhile."""
        return InProgress(self.nats, self.consumer.ack_wait_s / 3)

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
        if o.restart_backoff_s < 0:
            raise UsageError("--restart_backoff_s must be >= 0")
        shutdown_timeout_s = (o.shutdown_timeout_s if o.shutdown_timeout_s is not None
                              else load_config("lake").get("shutdown_timeout_s", 25))
        try:
            shutdown_timeout_s = float(shutdown_timeout_s)
        except (TypeError, ValueError):
            raise ConfigError(f"lake.yaml shutdown_timeout_s: not a number: "
                              f"{shutdown_timeout_s!r}") from None
        if shutdown_timeout_s <= 0:
            raise UsageError("--shutdown_timeout_s must be > 0")
        return cls(nats=NatsSettings.resolve(o.nats_url), consumer=consumer,
                   storage=LakeStorage(resolve_data_root(o.data_root)),
                   max_events=max_events, max_seconds=max_seconds,
                   num_readers=o.num_readers, stop_at_end=o.stop_at_end,
                   max_messages=o.max_messages,
                   run_id=o.run_id or uuid.uuid4().hex[:12],
                   shutdown_timeout_s=shutdown_timeout_s,
                   max_restarts=o.max_restarts, restart_backoff_s=o.restart_backoff_s,
                   retry=RetryPolicy.from_config())


# prepare(options view, config) -> build(pipeline): validates what is particular to one
# pipeline (raising UsageError / ConfigError) and returns the function adding its graph.
Prepare = Callable[[StreamOptions, StreamConfig], Callable[[beam.Pipeline], object]]


def run_stream(name: str, role: str, prepare: Prepare,
               options_cls: type = StreamOptions, argv: Optional[Sequence[str]] = None,
               flush_unit: str = "events", doc: Optional[str] = None) -> int:
    """Main of a streaming pipeline: flags -> config -> start-up checks -> supervised run;
    returns the exit code (0: ended or drained, or stopped by a signal before it started;
    1: failed, unreachable or drain timed out).  Exits 2 on a bad flag or config value,
    before anything starts."""
    log = logging.getLogger(name)
    args = parse_options_cli(f"pipelines.{name}", doc, options_cls, argv)
    options = options_cls(args)
    o = options.view_as(options_cls)
    configure_logging(o.log_level)
    quiet_permanent_errors()
    with StopSignals() as signals:
        try:
            try:
                reject_unknown_flags(args)
                cfg = StreamConfig.from_options(o, role)
                build = prepare(o, cfg)
                prepare_runner(options, streaming=True)
            except (UsageError, ConfigError) as exc:
                fail(str(exc))
            try:
                check_nats(cfg.nats)
                check_data_root(cfg.storage, create=True)
            except StartupError as exc:
                fail(str(exc), exc.exit_code)
        except StopRequested:
            log.info("%s: stopped by a signal during start-up", name)
            return 0
        signals.running()
        if signals.count:                    # a signal between the checks and here
            log.info("%s: stopped by a signal during start-up", name)
            return 0

        def make_pipeline():
            p = beam.Pipeline(options=options)
            build(p)
            return p

        log.info("%s: %s -> %s (consumer %s, flush %d %s / %.1fs, drain subject %s)", name,
                 cfg.nats.url, cfg.storage.data_root, cfg.consumer.durable, cfg.max_events,
                 flush_unit, cfg.max_seconds, cfg.control_subject)
        with observed(name, cfg, o, log) as monitor:
            tune_gc_for_streaming()
            code, _ = run_supervised(make_pipeline, cfg.nats, cfg.control_subject,
                                     cfg.shutdown_timeout_s, max_restarts=cfg.max_restarts,
                                     backoff_s=cfg.restart_backoff_s, signals=signals,
                                     monitor=monitor)
            log.info("%s finished (exit %d): %s; %d restarts", name, code,
                     summary(monitor.totals()), monitor.restarts)
    if argv is None:             # the process's own command line: it ends with this run
        exit_within(code)
    return code


@contextlib.contextmanager
def observed(name: str, cfg: StreamConfig, o: StreamOptions, log: logging.Logger):
    """A ``StreamMonitor`` of the run (progress every ``--progress_s``), and with
    ``--metrics_port`` its Prometheus endpoint, for the duration of the block."""
    monitor = StreamMonitor(name, cfg.nats, cfg.consumer, progress_s=o.progress_s,
                            poll_s=min(2.0, o.progress_s) if o.progress_s > 0 else 2.0,
                            log=log)
    server = None
    if o.metrics_port is not None:
        try:
            server = MetricsServer([monitor], health=monitor.health, ready=monitor.ready,
                                   host=o.metrics_host, port=o.metrics_port).start()
        except OSError as exc:
            fail(f"--metrics_host/--metrics_port {o.metrics_host}:{o.metrics_port}: "
                 f"{exc.strerror or exc}")
        log.info("%s: metrics at %s/metrics, health at /healthz and /readyz", name,
                 server.url)
    monitor.start()
    try:
        yield monitor
    finally:
        if server is not None:
            server.close()
        monitor.close()
