"""Shared option handling for the pipelines: runner resolution, Prism location, errors.

``--runner=DirectRunner`` (the default) runs on Beam's Prism engine, which is the
DirectRunner's streaming engine.  The project pins the runner to Prism explicitly instead
of letting Beam's SwitchingDirectRunner silently fall back to a batch-only runner when
Prism cannot start; the Prism binary is the one ``./run.sh setup`` built.

Beyond one process (``prepare_runner``):
- ``--runner=PortableRunner`` or ``FlinkRunner`` with ``--job_endpoint=HOST:PORT`` submits
  to a portable job service (a Flink job server, or Prism from ``./run.sh jobserver-up``);
  the SDK environment must then be named: ``EXTERNAL`` with a worker pool address,
  ``PROCESS`` (default command: the boot program ``./run.sh setup`` builds), ``DOCKER`` or
  ``LOOPBACK``.  ``FlinkRunner`` without a job endpoint is Beam's own path
  (``--flink_master``, ``--flink_job_server_jar``).
- ``--runner=DaskRunner`` (short name accepted) for the bounded pipelines that allow it,
  on the Dask cluster at ``--dask_client_address``.
"""
from __future__ import annotations

import gc
import difflib
import json
import logging
import os
import sys
from typing import NoReturn, Sequence

from apache_beam.options.pipeline_options import (DirectOptions, FlinkRunnerOptions,
                                                  PipelineOptions, PortableOptions,
                                                  PrismRunnerOptions, StandardOptions)

from io_connectors.config import ConfigError, load_config, resolve_path

_LOG = logging.getLogger(__name__)
_DIRECT = {None, "DirectRunner", "PrismRunner", "SwitchingDirectRunner"}
_PORTABLE = {"PortableRunner", "FlinkRunner"}
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
_DASK = {"DaskRunner", DASK_RUNNER}
_ENVIRONMENTS = ("EXTERNAL", "PROCESS", "DOCKER", "LOOPBACK")


class UsageError(ValueError):
    """A bad flag or value; the launcher prints it and exits with status 2."""


class LocalRunnerOptions(PipelineOptions):
    """The project's flags of the local runner (Prism started for one run)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--prism_ui", action="store_true", default=False,
                            help="turn on Prism's web UI (127.0.0.1, --prism_ui_port)")
        parser.add_argument("--prism_ui_port", type=int, default=None,
                            help="port of Prism's web UI (default: a free port)")


def prism_location(options: PipelineOptions) -> str:
    flag = options.view_as(PrismRunnerOptions).prism_location
    path = flag or os.environ.get("PRISM_LOCATION") or load_config("runner").get("prism_location")
    if not path:
        raise UsageError("no Prism binary configured (configs/runner.yaml prism_location)")
    path = resolve_path(path)
    if "://" not in path and not os.path.isfile(path):
        raise UsageError(f"Prism binary not found at {path}: run ./run.sh setup "
                         "(it builds Prism with Go) or pass --prism_location")
    return path


def reject_unknown_flags(argv: Sequence[str], also_known: Sequence[str] = ()) -> None:
    """UsageError naming the first flag no Beam or project option class knows (Beam itself
    only warns and drops it, so a typo such as ``--nats_ur`` would silently use a default),
    with the closest known flag (Beam's, the project's, or ``also_known``) as a hint."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser
    if any(a.startswith("--dask") or a.endswith("DaskRunner") for a in argv):
        _import_dask_options()          # registers DaskOptions (--dask_client_address, ...)
    parser = _BeamArgumentParser(allow_abbrev=False, conflict_handler="resolve")
    seen: dict = {}
    todo = list(PipelineOptions.__subclasses__())
    while todo:                        # every option class, subclasses of subclasses too
        cls = todo.pop()
        if str(cls) not in seen:
            seen[str(cls)] = cls
            todo.extend(cls.__subclasses__())
    for cls in seen.values():
        if "_add_argparse_args" in vars(cls):          # each class adds only its own flags
            cls._add_argparse_args(parser)  # pylint: disable=protected-access
    _, unknown = parser.parse_known_args(list(argv))
    flags = [u for u in unknown if u.startswith("-")]
    if flags:
        known = [o for a in parser._actions for o in a.option_strings] + list(also_known)  # pylint: disable=protected-access
        name = flags[0].split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1)
        raise UsageError(f"unknown flag {flags[0]}" + (f" (did you mean {close[0]}?)" if close else ""))
    if unknown:
        raise UsageError(f"unexpected argument {unknown[0]!r}")


def _import_dask_options():
    try:
        from apache_beam.runners.dask import dask_runner  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise UsageError(f"the Dask runner needs apache-beam[dask] ({exc}); run ./run.sh setup")
    return dask_runner


def boot_command() -> str | None:
    """The Python SDK boot program for PROCESS environments (configs/runner.yaml
    ``python_boot``, built by ``./run.sh setup``), or None if it is not there."""
    path = load_config("runner").get("python_boot")
    path = resolve_path(path) if path else None
    return path if path and os.access(path, os.X_OK) else None


def _prepare_portable(options: PipelineOptions, runner: str) -> None:
    portable = options.view_as(PortableOptions)
    jar = options.view_as(FlinkRunnerOptions).flink_job_server_jar
    if runner == "FlinkRunner" and jar and "://" not in jar and not os.path.isfile(jar):
        raise UsageError(f"--flink_job_server_jar: no such file {jar}")
    if runner == "PortableRunner" and not portable.job_endpoint:
        raise UsageError("--runner=PortableRunner needs --job_endpoint=HOST:PORT (a Flink job "
                         "server, or the Prism job service of ./run.sh jobserver-up)")
    env = (portable.environment_type or "").upper()
    if not env:
        if portable.job_endpoint:
            raise UsageError(f"--runner={runner} with a job endpoint needs --environment_type: "
                             "EXTERNAL with --environment_config=HOST:PORT of a worker pool, "
                             "PROCESS, DOCKER (an image holding this project) or LOOPBACK")
        return                                  # FlinkRunner's own job server decides
    if env not in _ENVIRONMENTS:
        raise UsageError(f"--environment_type={portable.environment_type}: expected one of "
                         f"{', '.join(_ENVIRONMENTS)}")
    portable.environment_type = env
    if env == "EXTERNAL" and not portable.environment_config:
        raise UsageError("--environment_type=EXTERNAL needs --environment_config=HOST:PORT of "
                         "a worker pool (./run.sh jobserver-up prints one)")
    if env == "PROCESS" and not portable.environment_config:
        boot = boot_command()
        if not boot:
            raise UsageError("--environment_type=PROCESS needs --environment_config="
                             "'{\"command\": \"/path/to/boot\"}' (./run.sh setup builds one)")
        portable.environment_config = json.dumps({"command": boot})


def dask_partitions(options: PipelineOptions, n: int) -> None:
    """On the DaskRunner, ``--dask_npartitions`` defaults to ``n``: one partition per date
    or file, so that the workers share them (Beam's default puts up to 128 inputs in one
    partition, i.e. on one worker).  Nothing changes on other runners or when
    ``--dask_npartitions`` / ``--dask_partition_size`` is given."""
    if options.view_as(StandardOptions).runner != DASK_RUNNER:
        return
    dask = options.view_as(_import_dask_options().DaskOptions)
    if not dask.npartitions and not dask.partition_size:
        dask.npartitions = max(1, int(n))


def prepare_runner(options: PipelineOptions, streaming: bool,
                   dask: bool = False) -> PipelineOptions:
    """Resolves the runner in place (see the module docstring): DirectRunner -> Prism with
    the local binary; PortableRunner / FlinkRunner checked for an endpoint and an SDK
    environment; DaskRunner (only where ``dask`` is True) to Beam's class path; on Beam's
    FnApiRunner, its racy timed flush of the data plane is switched off
    (``disable_fnapi_timed_flush``); for a bounded job, bundles of the SDK workers in this
    process end without waiting on the state sampler (``shorten_bundle_end_wait``).
    Raises UsageError naming what is missing."""
    std = options.view_as(StandardOptions)
    std.streaming = streaming
    if str(std.runner or "").endswith("FnApiRunner"):
        disable_fnapi_timed_flush()
    if not streaming:
        shorten_bundle_end_wait()
    if std.runner in _DIRECT:
        std.runner = "PrismRunner"
        options.view_as(PrismRunnerOptions).prism_location = prism_location(options)
        prism = options.view_as(PrismRunnerOptions)
        if prism.prism_log_level in (None, "info"):
            prism.prism_log_level = "warn"
        if not options.view_as(PortableOptions).environment_type:
            options.view_as(PortableOptions).environment_type = "LOOPBACK"
    elif std.runner in _PORTABLE:
        _prepare_portable(options, std.runner)
    elif std.runner in _DASK:
        if streaming or not dask:
            raise UsageError("the DaskRunner runs only bronze_backfill, silver_build and "
                             "gold_promote (it has no streaming)")
        dask_options = _import_dask_options().DaskOptions
        if not options.view_as(dask_options).address:
            raise UsageError("--runner=DaskRunner needs --dask_client_address=tcp://HOST:PORT "
                             "(./run.sh dask-up prints one)")
        std.runner = DASK_RUNNER
    return options


def worker_count(options: PipelineOptions) -> int:
    """How many SDK workers run a bounded job's bundles side by side on the runner of
    ``options``: the FnApiRunner's ``direct_num_workers``, one on Prism (one Python
    worker), else (Dask, portable runners: the cluster is not known here) the machine's
    cores."""
    runner = str(options.view_as(StandardOptions).runner or "")
    if runner.endswith("FnApiRunner"):
        return options.view_as(DirectOptions).direct_num_workers or 1
    if runner in _DIRECT:
        return 1
    return os.cpu_count() or 1


def disable_fnapi_timed_flush() -> None:
    """Switches off the FnApiRunner's time-based flush of its data plane, for this process.

    Beam's FnApiRunner (2.77) flushes every output stream of its gRPC data plane from a
    timer thread once a second (``worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 1000``: the
    SDK workers of ``multi_threading`` mode, and the runner's own streams to its workers in
    ``multi_threading`` and ``multi_processing`` modes), and that flush is not synchronised
    with the thread writing elements (``data_plane.TimeBasedBufferingClosableOutputStream``:
    the writer takes no lock; the flush takes the buffer, sends it, then clears it).  When
    the threads interleave, elements written between the take and the clear are dropped
    without a trace, and a flush in the middle of an element splits it across two messages
    that the runner decodes separately (e.g. as ``None`` values, garbage keys, or a coder
    error).  It needs a bundle longer than the interval and a busy interpreter: a loaded
    machine.  tests/test_fnapi_data_plane.py reproduces it (lost and ``None`` elements
    after a GroupByKey) and proves this switch removes it.  Bounded jobs lose nothing by
    it: streams still flush when their buffer is full and when the bundle ends, both from
    the writing thread, between elements.  (Prism's and the subprocess workers'
    ``sdk_worker_main`` already default to no timed flush.)"""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers
    if not hasattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS"):
        raise RuntimeError("apache_beam's FnApiRunner no longer has DATA_BUFFER_TIME_LIMIT_MS: "
                           "check pipelines.runner_setup.disable_fnapi_timed_flush against "
                           "this Beam version")
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0


SAMPLER_PERIOD_MS = 10


def shorten_bundle_end_wait(period_ms: int = SAMPLER_PERIOD_MS) -> None:
    """Bundles of the SDK workers in this process end within ``period_ms`` instead of up to
    200 ms later.

    Beam's SDK harness (2.77) times each bundle's steps with a state-sampler thread that
    sleeps in steps growing from 2 ms to ``statesampler.DEFAULT_SAMPLING_PERIOD_MS`` (200
    ms); at the end of every bundle the worker joins that thread, so a bundle that ran
    longer than about a quarter of a second ends 0-200 ms after its last element (its
    comment: "May have to wait up to sampling_period_ms").  A bounded job pays it once per
    stage and worker: measured 70-140 ms after the last element of each of the backfill's
    stages, about 0.3 s of a 2.5 s load of three MBP-10 days.  With a 10 ms period the
    sampler still measures the steps (it wakes 100 times a second, in C, without the GIL).
    Applies to the in-process workers (the FnApiRunner's, Prism's LOOPBACK ones), not to
    worker processes started elsewhere."""
    from apache_beam.runners.worker import statesampler
    base = getattr(statesampler, "StateSampler", None)
    if base is None or not hasattr(statesampler, "DEFAULT_SAMPLING_PERIOD_MS"):
        raise RuntimeError("apache_beam's statesampler changed: check pipelines.runner_setup."
                           "shorten_bundle_end_wait against this Beam version")
    if getattr(base, "_lake_period_ms", None) == period_ms:
        return

    class QuickStopStateSampler(base):     # what bundle_processor constructs, by name
        _lake_period_ms = period_ms

        def __init__(self, prefix, counter_factory, sampling_period_ms=period_ms):
            super().__init__(prefix, counter_factory, sampling_period_ms)

    statesampler.StateSampler = QuickStopStateSampler


def tune_gc_for_streaming(gen0_threshold: int = 50_000) -> None:
    """Makes Python's cyclic garbage collector cheap for a long-running pipeline process.

    The worker allocates a few objects per event (tuples, rows, message buffers) and holds
    tens of thousands of them in flight; with the default thresholds (700, 10, 10) the
    collector runs every few hundred allocations and regularly re-scans everything alive,
    including the ~140,000 objects of the imported modules (measured: about 0.5 s of the
    process's ~4.5 s of CPU in a 200,000-event drain).  Objects alive now (modules, the
    pipeline graph) are moved to the permanent generation (``gc.freeze``) and young
    collections run every ``gen0_threshold`` net allocations.  Garbage cycles are still
    collected; reference-counted objects are freed immediately as always.
    """
    gc.freeze()
    gc.set_threshold(gen0_threshold, 20, 100)


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("apache_beam", "PrismRunner"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


__all__ = ["UsageError", "ConfigError", "prepare_runner", "dask_partitions", "prism_location",
           "fail", "configure_logging", "tune_gc_for_streaming", "disable_fnapi_timed_flush",
           "DASK_RUNNER"]
