"""Runs a streaming pipeline until it ends or a SIGINT/SIGTERM asks it to drain.

On the first signal the launcher asks the NATS readers to drain (in-process, and by a
publish on the run's control subject for workers in other processes): they stop
consuming, emit what they buffered and finish, the final panes are written and acked, and
the pipeline ends.  The launcher then exits 0.  If the drain has not finished within the
shutdown timeout, or on a second signal, it cancels the job and exits 1; messages not yet
written stay un-acked and JetStream redelivers them.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import signal
import threading
import time
from typing import Callable, Optional

from io_connectors.nats import async_runtime
from io_connectors.nats import source as nats_source
from io_connectors.nats.settings import NatsSettings
from pipelines.prism_service import prism_job_endpoint

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


def summarize(result) -> dict:
    """Counters of the lake namespace (rows_written, files_written) from the job's metrics."""
    out = {}
    try:
        for c in result.metrics().query()["counters"]:
            if c.key.metric.namespace == "lake":
                out[c.key.metric.name] = out.get(c.key.metric.name, 0) + (c.committed or c.attempted or 0)
    except Exception:  # pylint: disable=broad-except
        pass
    return out


def _fetch_metrics(result) -> None:
    """Makes ``result`` fetch (and cache) the job's metrics while the job service is up."""
    try:
        result.metrics()
    except Exception:  # pylint: disable=broad-except
        pass


def run_until_drained(pipeline, settings: NatsSettings, control_subject: str,
                      shutdown_timeout_s: float, status: Optional[dict] = None
                      ) -> tuple[int, object]:
    """Runs ``pipeline``; returns (exit code, result).  ``status`` (if given) receives
    ``signalled`` (a drain was requested) and ``failed`` (the job failed on its own)."""
    status = {} if status is None else status
    status.update(signalled=False, failed=False)
    nats_source.reset_drain()
    signals: list[int] = []

    def on_signal(signum, _frame):
        signals.append(signum)
        status["signalled"] = True
        if len(signals) == 1:
            _LOG.info("signal %d: draining (stop consuming, flush, ack)", signum)

    # Prism is started here (prism_job_endpoint: without gRPC's reconnect back-off at
    # start-up) or by pipeline.run(), as a child in our process group.  With SIGINT
    # ignored while it starts, it inherits SIG_IGN (Go keeps an ignored SIGINT ignored),
    # so a terminal's Ctrl-C, which goes to the whole group, reaches only this launcher.
    old = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
           signal.SIGTERM: signal.signal(signal.SIGTERM, on_signal)}
    prism = contextlib.ExitStack()
    result = None
    try:
        prism.enter_context(prism_job_endpoint(pipeline.options))
        result = pipeline.run()
        signal.signal(signal.SIGINT, on_signal)
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
            if signals and drain_started is None:
                drain_started = time.monotonic()
                nats_source.request_drain()
                threading.Thread(target=_publish_drain, args=(settings, control_subject),
                                 daemon=True).start()
            if drain_started is not None and (
                    len(signals) > 1 or time.monotonic() - drain_started > shutdown_timeout_s):
                _LOG.error("drain did not finish in %.0fs; cancelling (un-acked messages will "
                           "be redelivered)", shutdown_timeout_s)
                try:
                    result.cancel()
                except Exception:  # pylint: disable=broad-except
                    pass
                return 1, result
        if "error" in outcome:
            _LOG.error("pipeline failed: %s", outcome["error"])
            status["failed"] = True
            return 1, result
        return 0, result
    finally:
        if result is not None:
            _fetch_metrics(result)       # the job service goes with Prism
        prism.close()
        for s, h in old.items():
            signal.signal(s, h)


def run_supervised(make_pipeline: Callable[[], object], settings: NatsSettings,
                   control_subject: str, shutdown_timeout_s: float, max_restarts: int = 5,
                   restart_window_s: float = 600.0, backoff_s: float = 1.0
                   ) -> tuple[int, object]:
    """``run_until_drained`` that restarts a job which FAILED ON ITS OWN (e.g. the runner
    crashed), at most ``max_restarts`` times within ``restart_window_s``.  A drain
    (signal) or a normal end is never restarted.  Safe because nothing is acked before it
    is durably written: the restarted job resumes the durable consumer, and messages the
    failed job had not acked are redelivered by JetStream once their ``ack_wait`` expires
    (duplicates of rows written but not acked are dropped by the readers)."""
    recent: collections.deque = collections.deque()
    while True:
        status: dict = {}
        code, result = run_until_drained(make_pipeline(), settings, control_subject,
                                         shutdown_timeout_s, status)
        if code == 0 or status.get("signalled") or not status.get("failed"):
            return code, result
        now = time.monotonic()
        while recent and now - recent[0] > restart_window_s:
            recent.popleft()
        if len(recent) >= max_restarts:
            _LOG.error("pipeline failed %d times within %.0fs; giving up", len(recent) + 1,
                       restart_window_s)
            return code, result
        recent.append(now)
        _LOG.warning("pipeline failed on its own; restarting (%d/%d within %.0fs); messages "
                     "it had not acked are redelivered after ack_wait", len(recent),
                     max_restarts, restart_window_s)
        time.sleep(backoff_s)
