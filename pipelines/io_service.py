"""``IOService``: the streaming half of the lake in one service: ``BronzeWriter``
(``market.*`` -> Bronze) and ``GoldWriter`` (``levels.signals`` -> Gold), started together
and drained together.

    python -m pipelines.io_service [--nats_url URL] [--data_root D] [--log_dir DIR]
                                   [--runner DirectRunner] [--bronze_arg=--flag ...]
        [--runner=PortableRunner|FlinkRunner --job_endpoint=HOST:P
         --environment_type=EXTERNAL --environment_config=HOST:W]

Start-up: the streams are ensured, then both pipelines are launched and the service
reports ready once both durable consumers are bound.  SIGINT (Ctrl-C) or SIGTERM: both
pipelines drain at the same time (stop consuming, flush every buffer, ack) and the service
exits 0 if both drained cleanly.  A pipeline that exits on its own (it already restarts
a crashed job itself, see ``--max_restarts``) makes the service drain the other one and
exit 1, so a supervisor (systemd, Kubernetes) sees the failure.  Each pipeline writes its
log to ``<log_dir>/<name>.log``.

Observability: each pipeline serves its own metrics on a free loopback port; the service
logs one progress line for both every ``--progress_s`` seconds and, with
``--metrics_port``, serves ``/metrics`` (both pipelines' metrics, label ``pipeline``),
``/healthz`` and ``/readyz`` (200 when both pipelines' checks pass).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from typing import Optional, Sequence, Union

from io_connectors.config import ConfigError
from io_connectors.embedded.nats_server import free_port
from io_connectors.lake.storage import LakeStorage, resolve_data_root
from io_connectors.monitoring.exporter import MetricsServer
from io_connectors.monitoring.federation import FederatedMetrics
from io_connectors.nats.bus import NatsBus
from io_connectors.nats.settings import NatsSettings
from io_connectors.preflight import StartupError, check_data_root, check_nats
from pipelines.bronze_writer import BronzeWriter
from pipelines.gold_writer import GoldWriter
from pipelines import cli
from pipelines.runner_setup import configure_logging, fail

_LOG = logging.getLogger("io_service")
# Runner flags given to both pipelines (Beam's names and meaning).
_RUNNER_FLAGS = {
    "job_endpoint": "HOST:PORT of a portable job service (PortableRunner, FlinkRunner)",
    "environment_type": "SDK environment: EXTERNAL, PROCESS, DOCKER or LOOPBACK",
    "environment_config": "worker pool HOST:PORT (EXTERNAL) or boot command (PROCESS)",
    "flink_master": "Flink REST address (FlinkRunner without a job endpoint)",
}


class IOService:
    """Runs BronzeWriter and GoldWriter as one service (see the module docstring).

    In: the bus (NatsBus / NatsSettings / URL; default env/config), the data root, the
    runner and its flags (``runner_args``, given to both pipelines: job endpoint, SDK
    environment), a folder for the pipelines' logs, extra flags per pipeline.  Out: the two
    streaming pipelines, running until ``stop``.  Guarantees: ``stop`` drains both (each
    acks only what it durably wrote); a failure of either is reported by ``wait``.
    """

    def __init__(self, bus: Union[NatsBus, NatsSettings, str, None] = None,
                 data_root: Optional[str] = None, runner: str = "DirectRunner",
                 log_dir: Optional[str] = None, bronze_args: Sequence[str] = (),
                 gold_args: Sequence[str] = (), runner_args: Sequence[str] = ()):
        self.data_root = resolve_data_root(data_root)
        log = (lambda name: os.path.join(log_dir, f"{name}.log")) if log_dir else (lambda _: None)
        if log_dir:
            os.makedirs(log_dir, exist_ok=True)
        ports = {"bronze": free_port(), "gold": free_port()}
        own = lambda role: [f"--metrics_port={ports[role]}", "--metrics_host=127.0.0.1"]
        self.writers = {
            "bronze": BronzeWriter(bus=bus, data_root=self.data_root, runner=runner,
                                   extra_args=[*own("bronze"), *runner_args, *bronze_args],
                                   log_path=log("bronze_stream")),
            "gold": GoldWriter(bus=bus, data_root=self.data_root, runner=runner,
                               extra_args=[*own("gold"), *runner_args, *gold_args],
                               log_path=log("gold_stream")),
        }
        self.settings = self.writers["bronze"].settings
        self.metrics = FederatedMetrics({f"{r}_stream": f"http://127.0.0.1:{p}"
                                         for r, p in ports.items()})

    async def start(self, timeout: float = 90.0) -> None:
        """Ensures the streams, launches both pipelines, returns once both consume."""
        async with NatsBus(self.settings):      # connect = ensure the lake's streams
            pass
        results = await asyncio.gather(*(w.start(timeout) for w in self.writers.values()),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.stop()
            raise errors[0]
        _LOG.info("io_service ready: bronze and gold pipelines consuming into %s",
                  self.data_root)

    def exited(self) -> dict[str, int]:
        """Pipelines that have exited, with their exit codes."""
        return {name: w.proc.returncode for name, w in self.writers.items()
                if w.proc is not None and w.proc.poll() is not None}

    async def wait(self, stop_requested: asyncio.Event, poll_s: float = 0.5) -> dict[str, int]:
        """Returns when ``stop_requested`` is set ({}) or a pipeline exits on its own
        ({name: exit code})."""
        while not stop_requested.is_set():
            gone = self.exited()
            if gone:
                return gone
            try:
                await asyncio.wait_for(stop_requested.wait(), poll_s)
            except asyncio.TimeoutError:
                pass
        return {}

    async def stop(self, timeout: float = 40.0) -> dict[str, int]:
        """Drains both pipelines at once; returns {name: exit code} (0 = drained)."""
        names = list(self.writers)
        codes = await asyncio.gather(*(self.writers[n].stop(timeout) for n in names),
                                     return_exceptions=True)
        return {n: (c if isinstance(c, int) else 1) for n, c in zip(names, codes)}


async def _log_progress(service: IOService, every_s: float) -> None:
    """One line for both pipelines every ``every_s`` seconds (rows/s, lag, dead letters)."""
    loop = asyncio.get_running_loop()
    last, then = {}, time.monotonic()
    while True:
        await asyncio.sleep(every_s)
        snap = await loop.run_in_executor(None, service.metrics.snapshot)
        now = time.monotonic()
        parts = []
        for name, s in snap.items():
            if not s:
                parts.append(f"{name} not answering")
                continue
            rate = (s["rows"] - last.get(name, {}).get("rows", 0)) / (now - then)
            parts.append(f"{name} {rate:,.0f} rows/s, {s['rows']:,} rows, lag "
                         f"{s['pending']:,} + {s['ack_pending']:,} unacked, "
                         f"{s['dead_letters']:,} dead letters, {s['restarts']} restarts")
        last, then = snap, now
        _LOG.info("io_service: %s", "; ".join(parts))


def metrics_server(service: IOService, host: str, port: int) -> MetricsServer:
    """The service's endpoint: both pipelines' metrics and checks (started)."""
    server = MetricsServer([service.metrics], health=service.metrics.health,
                           ready=service.metrics.ready, host=host, port=port,
                           process_metrics=False).start()
    _LOG.info("io_service: metrics at %s/metrics, health at /healthz and /readyz", server.url)
    return server


async def serve(service: IOService, progress_s: float = 10.0) -> int:
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)
    starting = asyncio.ensure_future(service.start())
    stopping = asyncio.ensure_future(stop_requested.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not starting.done():              # a signal during start-up: stop what started
        starting.cancel()
        try:
            await starting
        except BaseException:  # pylint: disable=broad-except
            pass
        _LOG.info("stop requested during start-up: stopping both pipelines")
        codes = await service.stop()
        return 0 if all(c == 0 for c in codes.values()) else 1
    starting.result()                    # raises what start-up raised
    progress = (asyncio.ensure_future(_log_progress(service, progress_s))
                if progress_s > 0 else None)
    try:
        failed = await service.wait(stop_requested)
    finally:
        if progress is not None:
            progress.cancel()
    if failed:
        _LOG.error("pipeline(s) exited on their own: %s; draining the rest", failed)
    else:
        _LOG.info("stop requested: draining both pipelines")
    codes = await service.stop()
    codes.update(failed)
    _LOG.info("io_service stopped: %s", codes)
    return 0 if not failed and all(c == 0 for c in codes.values()) else 1


def main(argv=None) -> int:
    ap = cli.parser("pipelines.io_service", __doc__)
    ap.add_argument("--nats_url", default=None,
                    help="NATS server URL (default: env NATS_URL, else configs/streams.yaml)")
    ap.add_argument("--data_root", default=None,
                    help="lake root, local path or s3:// (default: env DATA_ROOT, else "
                         "configs/lake.yaml)")
    ap.add_argument("--runner", default="DirectRunner",
                    help="Beam runner of both pipelines (DirectRunner = Prism)")
    for flag, what in _RUNNER_FLAGS.items():
        ap.add_argument(f"--{flag}", default=None, help=f"{what}; given to both pipelines")
    ap.add_argument("--log_dir", default=None, help="pipeline logs (default: discarded)")
    ap.add_argument("--bronze_arg", action="append", default=[], metavar="FLAG",
                    help="extra bronze_stream flag, e.g. --bronze_arg=--num_readers=2 "
                         "(repeatable)")
    ap.add_argument("--gold_arg", action="append", default=[], metavar="FLAG",
                    help="extra gold_stream flag (repeatable)")
    cli.add_monitoring_flags(ap, " (both pipelines)")
    cli.add_log_level(ap)
    args = cli.parse(ap, argv)
    configure_logging(args.log_level)
    try:
        service = IOService(bus=NatsSettings.resolve(args.nats_url), data_root=args.data_root,
                            runner=args.runner, log_dir=args.log_dir,
                            bronze_args=args.bronze_arg, gold_args=args.gold_arg,
                            runner_args=[f"--{k}={v}" for k, v in vars(args).items()
                                         if k in _RUNNER_FLAGS and v is not None])
    except (ConfigError, ValueError) as exc:
        fail(str(exc))
    try:                     # fail fast, before any pipeline is launched
        check_nats(service.settings)
        check_data_root(LakeStorage(service.data_root), create=True)
    except StartupError as exc:
        fail(str(exc), exc.exit_code)
    server = None
    if args.metrics_port is not None:
        try:
            server = metrics_server(service, args.metrics_host, args.metrics_port)
        except OSError as exc:
            fail(f"--metrics_host/--metrics_port {args.metrics_host}:{args.metrics_port}: "
                 f"{exc.strerror or exc}")
    try:
        return asyncio.run(serve(service, args.progress_s))
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    sys.exit(main())
