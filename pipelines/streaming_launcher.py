"""Runs a streaming pipeline until it ends or a SIGINT/SIGTERM asks it to drain.

On the first signal the launcher asks the NATS readers to drain (in-process, and by a
publish on the run's control subject for workers in other processes): they stop
consuming, emit what they buffered and finish, the final panes are written and acked, and
the pipeline ends.  The launcher then exits 0.  If the drain has not finished within the
shutdown timeout, or on a second signal, it cancels the job and exits 1; messages not yet
written stay un-acked and JetStream redelivers them.

Signals win at every phase (``StopSignals``, installed once for the whole run): while
Prism or the job is starting, the drain begins as soon as the job runs (or the run ends
at once if it never started); between restarts the back-off is cut short and the run
ends.  A job that fails on its own is restarted (``run_supervised``) only if it had been
running (a NATS reader of this process had subscribed) and its failure is not permanent
(``io_connectors.errors``: a ``PermanentError`` raised by a worker is named in one line
and ends the run with exit 1).  ``exit_within`` guarantees that the process ends within a
few seconds of the decision even if a worker thread is stuck in I/O.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import signal
import sys
import threading
import time
from typing import Callable, Optional

from apache_beam.options.pipeline_options import PortableOptions

from io_connectors.errors import MARKER, permanent_cause
from io_connectors.nats import async_runtime
from io_connectors.nats import source as nats_source
from io_connectors.nats.settings import NatsSettings
from io_connectors.retry_policy import abandon_retries
from pipelines.prism_service import local_runner

_LOG = logging.getLogger(__name__)


async def _publish_and_flush(nc, subject: str) -> None:
    await nc.publish(subject, b"drain")
    await nc.flush()


def _publish_drain(settings: NatsSettings, subject: str, timeout_s: float = 5.0) -> bool:
    """Publishes the drain request on ``subject`` for readers in other processes (SDK
    workers of a portable runner); True once the server has it.

    Runs on an ordinary thread: the connection is obtained here, where blocking is fine,
    and only the publish runs on the shared event loop (``async_runtime.connection``
    inside a coroutine on that loop would wait for the loop itself: with no connection
    cached in this process, i.e. whenever the readers run elsewhere, the request was
    never sent).
    """
    try:
        nc = async_runtime.connection(settings)
        async_runtime.run(_publish_and_flush(nc, subject), timeout=timeout_s)
        return True
    except Exception:  # pylint: disable=broad-except
        _LOG.warning("could not publish the drain request on %s", subject, exc_info=True)
        return False


def _fetch_metrics(result) -> None:
    """Makes ``result`` fetch (and cache) the job's metrics while the job service is up."""
    try:
        result.metrics()
    except Exception:  # pylint: disable=broad-except
        pass


class StopRequested(Exception):
    """A SIGINT/SIGTERM arrived before any job was started (raised in the main thread by
    ``StopSignals`` while it is in its start-up mode)."""


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP for the whole run (start-up checks, every job, the
    back-off between restarts).  Use as a context manager (previous handlers restored on
    exit).

    Before ``running()`` a signal raises ``StopRequested`` in the main thread (nothing has
    started: the start-up checks stop at once).  After it, signals are only recorded:
    ``count`` (drain at the first, cancel at the second) and ``event`` (set at the first).
    SIGHUP asks for a drain but never cancels one, however often it comes: it is the
    signal a ``StreamWriter`` child gets when its parent dies (``PR_SET_PDEATHSIG``), which
    the kernel sends again for every thread of a dying parent that inherits the child, so
    one death can mean several SIGHUPs.
    """

    def __init__(self):
        self.count = 0
        self.first: Optional[int] = None
        self.event = threading.Event()
        self._raise = True
        self._old: dict = {}

    def running(self) -> None:
        """From now on, record signals instead of raising."""
        self._raise = False

    def _on_signal(self, signum, _frame):
        if signum == signal.SIGHUP and self.count:
            return                       # a drain is already under way
        self.count += 1
        if self.first is None:
            self.first = signum
        self.event.set()
        if self._raise:
            raise StopRequested(f"signal {signum}")
        if self.count == 1:
            _LOG.info("signal %d: draining (stop consuming, flush, ack)", signum)
        elif self.count == 2:
            _LOG.warning("second signal %d: cancelling", signum)

    def __enter__(self) -> "StopSignals":
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def exit_within(code: int, grace_s: float = 5.0) -> None:
    """Ends the process with ``code`` after ``grace_s`` seconds if it has not ended on its
    own by then (a worker thread stuck in I/O would otherwise keep the interpreter from
    exiting: it waits for every non-daemon thread)."""
    def hard_exit():
        _LOG.warning("process still alive %.0fs after finishing; exiting", grace_s)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # pylint: disable=broad-except
                pass
        os._exit(code)  # pylint: disable=protected-access
    timer = threading.Timer(grace_s, hard_exit)
    timer.daemon = True
    timer.start()


def _bounded(fn, timeout_s: float) -> None:
    """Runs ``fn()`` in a daemon thread and waits at most ``timeout_s`` for it."""
    worker = threading.Thread(target=fn, daemon=True)
    worker.start()
    worker.join(timeout_s)


_EXC_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*)$", re.M)


def failure_line(error) -> str:
    """One line for a job's failure: the cause of a ``PermanentError`` if the text holds
    one, else its last ``SomeError: message`` line, else its first line."""
    text = str(error)
    cause = permanent_cause(text)
    if cause:
        return cause
    lines = [m.group(1).strip() for m in _EXC_LINE.finditer(text)]
    line = lines[-1] if lines else (text.strip().splitlines() or [type(error).__name__])[0]
    return line if len(line) <= 300 else line[:297] + "..."


class _QuietPermanent(logging.Filter):
    """Drops Beam's and Prism's records of a worker's ``PermanentError`` (traceback and
    all), and once one was seen, the SDK worker's errors about the job being torn down
    (e.g. its data plane's broken stream): the launcher reports the cause once, in one
    line."""
    seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # pylint: disable=broad-except
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if MARKER in text or (exc is not None and MARKER in str(exc)):
            _QuietPermanent.seen = True
            return False
        return not (_QuietPermanent.seen and record.name.startswith("apache_beam.runners"))


class _StderrWithoutPermanentTracebacks:
    """``sys.stderr`` without the tracebacks of a ``PermanentError`` that Beam's SDK
    harness prints there (besides logging them) when a bundle fails."""

    def __init__(self, stream):
        self._stream = stream
        self._dropped = False

    def write(self, text):
        if MARKER in text and text.lstrip().startswith("Traceback"):
            self._dropped = True
            return len(text)
        if self._dropped and text == "\n":
            self._dropped = False
            return len(text)
        self._dropped = False
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def quiet_permanent_errors() -> None:
    """Installs ``_QuietPermanent`` on the handlers of the root logger (which receive the
    records of Beam's worker, runner and Prism loggers) and keeps the SDK harness's
    printed traceback of a ``PermanentError`` off stderr: the launcher reports such an
    error once, in one line."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _QuietPermanent) for f in handler.filters):
            handler.addFilter(_QuietPermanent())
    if not isinstance(sys.stderr, _StderrWithoutPermanentTracebacks):
        sys.stderr = _StderrWithoutPermanentTracebacks(sys.stderr)


def _job_ran() -> bool:
    """True once a NATS reader of this process has subscribed (the job ran)."""
    return nats_source.subscriptions_started() > 0


def run_until_drained(pipeline, settings: NatsSettings, control_subject: str,
                      shutdown_timeout_s: float, status: Optional[dict] = None,
                      signals: Optional[StopSignals] = None,
                      monitor=None) -> tuple[int, object]:
    """Runs ``pipeline``; returns (exit code, result).  ``status`` (if given) receives
    ``signalled`` (a drain was requested), ``failed`` (the job failed on its own),
    ``error`` (its failure, one line), ``permanent`` (that failure is permanent) and
    ``ran`` (the job had been running).  ``signals``: the run's ``StopSignals`` (default:
    installed here for this job only).  ``monitor`` (a ``StreamMonitor``, optional) is
    told when the job starts, drains and ends (its final counters are read before the job
    service stops)."""
    status = {} if status is None else status
    status.update(signalled=False, failed=False, error=None, permanent=False, ran=False)
    if signals is None:
        with StopSignals() as own:
            own.running()
            return run_until_drained(pipeline, settings, control_subject,
                                     shutdown_timeout_s, status, own, monitor)
    nats_source.reset_drain()
    prism = contextlib.ExitStack()
    result = None
    loopback = (pipeline.options.view_as(PortableOptions).environment_type or "LOOPBACK") \
        .upper() == "LOOPBACK"

    def cancel():
        abandon_retries()            # a write retrying in this process gives up now
        if result is not None:
            _bounded(result.cancel, 10)
        return 1, result

    try:
        # Prism: started here (prism_job_endpoint: no gRPC reconnect back-off at start-up),
        # or by pipeline.run(); either way it dies with this process.
        prism.enter_context(local_runner(pipeline.options))
        if signals.count:
            status["signalled"] = True
            _LOG.info("stopped before the job started")
            return 0, None
        result = pipeline.run()
        if monitor is not None:
            monitor.job_started(result)
        done = threading.Event()
        outcome: dict = {}

        def wait():
            try:
                outcome["state"] = result.wait_until_finish()
            except Exception as exc:  # pylint: disable=broad-except
                outcome["error"] = exc
            finally:
                done.set()

        threading.Thread(target=wait, name="pipeline-wait", daemon=True).start()
        drain_started = None
        while not done.wait(0.2):
            if signals.count and drain_started is None:
                status["signalled"] = True
                drain_started = time.monotonic()
                if monitor is not None:
                    monitor.set_phase("draining")
                nats_source.request_drain()
                threading.Thread(target=_publish_drain, args=(settings, control_subject),
                                 daemon=True).start()
            if drain_started is not None and (
                    signals.count > 1 or time.monotonic() - drain_started > shutdown_timeout_s):
                if signals.count == 1:
                    _LOG.error("drain did not finish in %.0fs; cancelling (un-acked messages "
                               "will be redelivered)", shutdown_timeout_s)
                return cancel()
        status["ran"] = _job_ran() or not loopback
        if "error" in outcome:
            error = outcome["error"]
            status.update(failed=True, error=failure_line(error),
                          permanent=permanent_cause(str(error)) is not None)
            _LOG.debug("pipeline failure: %s", error)
            if not status["permanent"]:
                _LOG.error("pipeline failed: %s", status["error"])
            return 1, result
        return 0, result
    finally:
        if result is not None:
            _bounded(lambda: _fetch_metrics(result), 10)   # the job service goes with Prism
            if monitor is not None:
                _bounded(lambda: monitor.job_ended(result), 10)
        prism.close()


def run_supervised(make_pipeline: Callable[[], object], settings: NatsSettings,
                   control_subject: str, shutdown_timeout_s: float, max_restarts: int = 5,
                   restart_window_s: float = 600.0, backoff_s: float = 1.0,
                   max_backoff_s: float = 30.0, signals: Optional[StopSignals] = None,
                   monitor=None) -> tuple[int, object]:
    """``run_until_drained`` that restarts a job which FAILED ON ITS OWN (e.g. the runner
    crashed) after it had been running, at most ``max_restarts`` times within
    ``restart_window_s``, waiting ``backoff_s`` doubling up to ``max_backoff_s`` before
    each restart.  Never restarted: a drain (signal), a normal end, a permanent failure
    (one line naming it, exit 1), a job that failed before it ran (exit 1).  A signal
    during the back-off ends the run at once (exit 1: the last job had failed).  Safe
    because nothing is acked before it is durably written: the restarted job resumes the
    durable consumer, and messages the failed job had not acked are redelivered by
    JetStream once their ``ack_wait`` expires (duplicates of rows written but not acked are
    dropped by the readers)."""
    if signals is None:
        with StopSignals() as own:
            own.running()
            return run_supervised(make_pipeline, settings, control_subject,
                                  shutdown_timeout_s, max_restarts, restart_window_s,
                                  backoff_s, max_backoff_s, own, monitor)
    code, result = _supervise(make_pipeline, settings, control_subject, shutdown_timeout_s,
                              max_restarts, restart_window_s, backoff_s, max_backoff_s,
                              signals, monitor)
    if monitor is not None:
        monitor.set_phase("stopped" if code == 0 else "failed")
    return code, result


def _supervise(make_pipeline, settings, control_subject, shutdown_timeout_s, max_restarts,
               restart_window_s, backoff_s, max_backoff_s, signals, monitor):
    recent: collections.deque = collections.deque()
    wait_s = backoff_s
    while True:
        status: dict = {}
        code, result = run_until_drained(make_pipeline(), settings, control_subject,
                                         shutdown_timeout_s, status, signals, monitor)
        if code == 0 or status["signalled"] or not status["failed"]:
            return code, result
        if status["permanent"]:
            _LOG.error("stopping: %s", status["error"])
            return code, result
        if not status["ran"]:
            _LOG.error("the job failed before it started consuming; not restarting")
            return code, result
        now = time.monotonic()
        while recent and now - recent[0] > restart_window_s:
            recent.popleft()
        if len(recent) >= max_restarts:
            _LOG.error("pipeline failed %d times within %.0fs; giving up", len(recent) + 1,
                       restart_window_s)
            return code, result
        recent.append(now)
        if monitor is not None:
            monitor.restarted()
        _LOG.warning("pipeline failed on its own; restarting in %.0fs (%d/%d within %.0fs); "
                     "messages it had not acked are redelivered after ack_wait", wait_s,
                     len(recent), max_restarts, restart_window_s)
        if signals.event.wait(wait_s):
            _LOG.info("signal during the restart back-off: not restarting")
            return code, result
        wait_s = min(wait_s * 2, max_backoff_s)
