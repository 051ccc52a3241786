"""Starts the Prism job service for one pipeline run and hands Beam its endpoint.

Beam's PrismRunner starts Prism itself and then waits for a gRPC channel to it; Prism
listens within some 40 ms, but the channel's first connection attempt comes earlier and
fails, and gRPC's reconnect back-off (about 1 s) then adds close to a second to every
start.  ``prism_job_endpoint`` starts the same binary with the same arguments, waits until
its job port accepts connections and sets ``--job_endpoint``, so the runner's channel
connects at the first attempt.  Prism is stopped when the context exits.

Prism starts with SIGINT ignored (a terminal's Ctrl-C, sent to the whole process group,
reaches only the launcher, which drains; Go keeps an ignored SIGINT ignored) and is killed
by the kernel if this process dies, even by SIGKILL (``PR_SET_PDEATHSIG``), so it never
outlives its launcher.  Its JSON log lines go to the ``PrismRunner`` logger.

Addresses: the Prism built by ``./run.sh setup`` listens on ``PRISM_LISTEN_HOST``, which
is set from ``listen_host`` of configs/runner.yaml (default 127.0.0.1); its web UI (off
unless ``--prism_ui``) listens on localhost.  ``loopback_worker_pool`` does what Beam's
LOOPBACK environment does (SDK workers as threads of this process, behind a gRPC worker
pool service), but binds that service to the same host instead of every interface.
``local_runner`` enters both.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time

from apache_beam.options.pipeline_options import (DebugOptions, PipelineOptions,
                                                  PortableOptions, PrismRunnerOptions,
                                                  StandardOptions)
from apache_beam.utils.subprocess_server import pick_port

from io_connectors.embedded.processes import die_with_parent
from io_connectors.config import load_config
from pipelines.runner_setup import LocalRunnerOptions

_LOG = logging.getLogger("PrismRunner")
_RUN_LOG = logging.getLogger(__name__)
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "warning": logging.WARNING, "error": logging.ERROR}


def _forward_log(stream) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="backslashreplace").rstrip()
        if not line:
            continue
        try:
            rec = json.loads(line)
            level = _LEVELS.get(str(rec.get("level", "info")).lower(), logging.INFO)
            extra = {k: v for k, v in rec.items() if k not in ("time", "level", "msg", "source")}
            _LOG.log(level, "%s%s", rec.get("msg", ""), f" {extra}" if extra else "")
        except (ValueError, AttributeError):
            _LOG.info("%s", line)


def listen_host() -> str:
    """Where the local runner's services listen: configs/runner.yaml ``listen_host``."""
    return str(load_config("runner").get("listen_host") or "127.0.0.1")


def connect_host(host: str) -> str:
    """The address to reach a service listening on ``host`` from this machine."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "*") else host


def _wait_for_port(proc: subprocess.Popen, host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"Prism exited with status {proc.returncode} at start-up")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Prism did not listen on port {port} within {timeout_s}s")
            time.sleep(0.005)


@contextlib.contextmanager
def prism_job_endpoint(options: PipelineOptions, start_timeout_s: float = 30.0):
    """While active, ``options`` run on a Prism started here (see the module docstring).

    Does nothing when the runner is not PrismRunner or a ``--job_endpoint`` is already set.
    """
    portable = options.view_as(PortableOptions)
    prism = options.view_as(PrismRunnerOptions)
    if (options.view_as(StandardOptions).runner != "PrismRunner" or portable.job_endpoint
            or not prism.prism_location or "://" in prism.prism_location):
        yield
        return
    port, = pick_port(None)
    cmd = [prism.prism_location, "--job_port", str(port), "--log_level",
           prism.prism_log_level or "warn", "--log_kind", "json"]
    local = options.view_as(LocalRunnerOptions)
    if local.prism_ui:
        ui_port = local.prism_ui_port or pick_port(None)[0]
        cmd += ["--serve_http=true", f"--web_port={ui_port}"]
        _RUN_LOG.info("Prism web UI at http://localhost:%d", ui_port)
    else:
        cmd.append("--serve_http=false")
    host = listen_host()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent(signal.SIGKILL, ignore_sigint=True),
                            env={**os.environ, "PRISM_LISTEN_HOST": host})
    threading.Thread(target=_forward_log, args=(proc.stdout,), name="prism-log",
                     daemon=True).start()
    try:
        _wait_for_port(proc, connect_host(host), port, start_timeout_s)
        portable.job_endpoint = f"{connect_host(host)}:{port}"
        yield
    finally:
        portable.job_endpoint = None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextlib.contextmanager
def loopback_worker_pool(options: PipelineOptions):
    """While active, an ``environment_type`` of LOOPBACK runs the SDK workers in this
    process through a worker pool service listening on ``listen_host()`` (EXTERNAL
    environment at that address): Beam's LOOPBACK with a loopback bind.  Other
    environments are left alone."""
    portable = options.view_as(PortableOptions)
    if (portable.environment_type or "").upper() != "LOOPBACK":
        yield
        return
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker import sdk_worker_main, worker_pool_main
    from apache_beam.utils import thread_pool_executor
    experiments = options.view_as(DebugOptions).experiments or []
    pool = worker_pool_main.BeamFnExternalWorkerPoolServicer(
        use_process=options.view_as(DebugOptions).lookup_experiment(
            "use_loopback_process_worker", False),
        state_cache_size=sdk_worker_main._get_state_cache_size_bytes(options=options),  # pylint: disable=protected-access
        data_buffer_time_limit_ms=sdk_worker_main._get_data_buffer_time_limit_ms(experiments))  # pylint: disable=protected-access
    server = grpc.server(thread_pool_executor.shared_unbounded_instance(),
                         options=[("grpc.http2.max_pings_without_data", 0),
                                  ("grpc.http2.max_ping_strikes", 0)])
    host = listen_host()
    port = server.add_insecure_port(f"{host}:0")
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    server.start()
    portable.environment_type = "EXTERNAL"
    portable.environment_config = f"{connect_host(host)}:{port}"
    try:
        yield
    finally:
        portable.environment_type, portable.environment_config = "LOOPBACK", None
        server.stop(1)


@contextlib.contextmanager
def local_runner(options: PipelineOptions):
    """``prism_job_endpoint`` and ``loopback_worker_pool`` together."""
    with prism_job_endpoint(options), loopback_worker_pool(options):
        yield
