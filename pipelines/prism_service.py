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
"""
from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import subprocess
import threading
import time

from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, PrismRunnerOptions
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.utils.subprocess_server import pick_port

from io_connectors.embedded.processes import die_with_parent

_LOG = logging.getLogger("PrismRunner")
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


def _wait_for_port(proc: subprocess.Popen, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"Prism exited with status {proc.returncode} at start-up")
        try:
            socket.create_connection(("localhost", port), timeout=0.5).close()
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
           prism.prism_log_level or "warn", "--log_kind", "json", "--serve_http=false"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent(signal.SIGKILL, ignore_sigint=True))
    threading.Thread(target=_forward_log, args=(proc.stdout,), name="prism-log",
                     daemon=True).start()
    try:
        _wait_for_port(proc, port, start_timeout_s)
        portable.job_endpoint = f"localhost:{port}"
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
