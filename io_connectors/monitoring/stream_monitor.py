"""``StreamMonitor``: what a running streaming pipeline is doing, for Prometheus, health
checks and a one-line progress log.

The launcher tells the monitor about the job's life (``job_started``, ``job_ended``,
``restarted``, ``set_phase``).  A background thread then, every ``poll_s`` seconds,

- reads the job's ``lake`` counters from the runner (``job_metrics.lake_counters``: the
  SDK workers' Beam metrics, wherever those workers run), and
- reads the durable consumer's state from JetStream (``consumer_lag``: ``num_pending``,
  ``num_ack_pending``, ``attached``) over a NATS connection of its own,

and every ``progress_s`` seconds logs one line: rows/s since the last line, totals, lag,
dead letters by reason, restarts.  Counters survive job restarts: the final counters of
an ended job are kept and the next job's are added to them (if the runner crashed and its
final counters cannot be read, the last ones read stand in, so the last ``poll_s``
seconds of a crashed job may be missing).  ``collect`` renders everything as Prometheus
metric families (``marketlake_*``, label ``pipeline``); ``health`` and ``ready`` are the
``/healthz`` and ``/readyz`` checks: healthy unless the job failed for good, ready while
the job runs and a reader is attached to the consumer.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from typing import Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from io_connectors.monitoring.job_metrics import lake_counters
from io_connectors.nats.consumer_lag import ConsumerLag, consumer_lag
from io_connectors.nats.settings import NatsSettings, connect
from io_connectors.nats.streams import ConsumerSpec
from transforms import lake_metrics as lm

_LOG = logging.getLogger(__name__)
PREFIX = "marketlake"
PHASES = ("starting", "running", "draining", "restarting", "stopped", "failed")


def format_counts(counts: dict) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def by_label(counters: dict, base: str) -> dict:
    """``{label: value}`` of the counters named ``base/<label>``."""
    out = {}
    for name, value in counters.items():
        b, label = lm.split_name(name)
        if b == base and label is not None:
            out[label] = out.get(label, 0) + value
    return out


def summary(counters: dict) -> str:
    """One line of totals: rows and files per dataset, dead letters by reason, acks."""
    rows = by_label(counters, lm.ROWS_WRITTEN)
    files = by_label(counters, lm.FILES_WRITTEN)
    data = {d: n for d, n in rows.items() if d != "_dead_letter"}
    dead = by_label(counters, lm.DEAD_LETTERS)
    parts = [f"{sum(data.values()):,} rows in {sum(f for d, f in files.items() if d in data):,} "
             f"files" + (f" ({', '.join(f'{d} {n:,}' for d, n in sorted(data.items()))})"
                         if data else "")]
    parts.append(f"{sum(dead.values()):,} dead letters"
                 + (f" ({format_counts(dead)})" if dead else ""))
    if lm.MESSAGES_ACKED in counters or lm.ACK_FAILURES in counters:
        parts.append(f"{counters.get(lm.MESSAGES_ACKED, 0):,} acked"
                     + (f", {counters[lm.ACK_FAILURES]:,} ack failures"
                        if counters.get(lm.ACK_FAILURES) else ""))
    if counters.get(lm.FILES_ALREADY_PRESENT):
        parts.append(f"{counters[lm.FILES_ALREADY_PRESENT]:,} files already present")
    return "; ".join(parts)


class StreamMonitor:
    """See the module docstring.

    Args:
      pipeline: the pipeline's name (the ``pipeline`` label, the log prefix).
      settings, consumer: the NATS connection and the durable consumer to watch.
      progress_s: seconds between progress lines (0: none).
      poll_s: seconds between reads of the job metrics and the consumer state.
    """

    def __init__(self, pipeline: str, settings: NatsSettings, consumer: ConsumerSpec,
                 progress_s: float = 10.0, poll_s: float = 2.0,
                 log: Optional[logging.Logger] = None):
        self.pipeline, self.settings, self.consumer = pipeline, settings, consumer
        self.progress_s, self.poll_s = progress_s, poll_s
        self.log = log or _LOG
        self._lock = threading.Lock()
        self._base: collections.Counter = collections.Counter()
        self._current: dict = {}
        self._result = None
        self._phase = "starting"
        self._restarts = 0
        self._lag: Optional[ConsumerLag] = None
        self._lag_error: Optional[str] = None
        self._metrics_at: Optional[float] = None
        self._last_line = (time.monotonic(), 0)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ---- told by the launcher ------------------------------------------------------------
    def job_started(self, result) -> None:
        with self._lock:
            self._result, self._current, self._phase = result, {}, "running"

    def job_ended(self, result) -> None:
        """Reads the job's final counters (call it while the job service is still up)."""
        final = lake_counters(result)
        with self._lock:
            self._base.update(final if final is not None else self._current)
            self._current, self._result = {}, None
            self._metrics_at = time.monotonic()

    def restarted(self) -> None:
        with self._lock:
            self._restarts += 1
            self._phase = "restarting"

    def set_phase(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        with self._lock:
            self._phase = phase

    # ---- state ---------------------------------------------------------------------------
    @property
    def phase(self) -> str:
        return self._phase

    @property
    def restarts(self) -> int:
        return self._restarts

    @property
    def lag(self) -> Optional[ConsumerLag]:
        return self._lag

    def totals(self) -> dict:
        """Counters of every job of this run so far (``transforms.lake_metrics`` names)."""
        with self._lock:
            out = collections.Counter(self._base)
            out.update(self._current)
        return dict(out)

    def health(self) -> tuple[bool, dict]:
        return self._phase != "failed", {"pipeline": self.pipeline, "phase": self._phase,
                                         "restarts": self._restarts}

    def ready(self) -> tuple[bool, dict]:
        lag = self._lag
        bound = bool(lag and lag.attached)
        details = {"pipeline": self.pipeline, "phase": self._phase, "consumer_bound": bound}
        if self._lag_error:
            details["consumer_error"] = self._lag_error
        return self._phase == "running" and bound, details

    # ---- progress ------------------------------------------------------------------------
    def progress_line(self) -> str:
        now, counters = time.monotonic(), self.totals()
        rows = sum(n for d, n in by_label(counters, lm.ROWS_WRITTEN).items()
                   if d != "_dead_letter")
        then, rows_then = self._last_line
        self._last_line = (now, rows)
        rate = (rows - rows_then) / (now - then) if now > then else 0.0
        dead = by_label(counters, lm.DEAD_LETTERS)
        lag = self._lag
        lag_text = (f"lag {lag.num_pending:,} pending + {lag.num_ack_pending:,} unacked"
                    if lag else f"lag unknown ({self._lag_error or 'not read yet'})")
        return (f"{self.pipeline}: {rate:,.0f} rows/s; {rows:,} rows, "
                f"{counters.get(lm.EVENTS_READ, 0):,} read; {lag_text}; "
                f"{sum(dead.values()):,} dead letters"
                + (f" ({format_counts(dead)})" if dead else "")
                + f"; {self._restarts} restarts; {self._phase}")

    # ---- polling -------------------------------------------------------------------------
    def start(self) -> "StreamMonitor":
        self._thread = threading.Thread(target=self._run, name="stream-monitor", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def poll_once_metrics(self) -> None:
        """Reads the running job's counters now (also done by the polling thread)."""
        result = self._result
        if result is None:
            return
        counters = lake_counters(result)
        if counters is not None:
            with self._lock:
                if self._result is result:
                    self._current = counters
                    self._metrics_at = time.monotonic()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._poll_forever())
        except Exception:  # pylint: disable=broad-except
            self.log.warning("the stream monitor stopped", exc_info=True)
        finally:
            loop.close()

    async def _poll_forever(self) -> None:
        loop = asyncio.get_running_loop()
        nc = js = stream = None
        next_line = time.monotonic() + self.progress_s if self.progress_s > 0 else None
        try:
            while not self._stop.is_set():
                await loop.run_in_executor(None, self.poll_once_metrics)
                try:
                    if nc is None or nc.is_closed:
                        nc = await connect(self.settings, timeout=max(2.0, self.poll_s))
                        js = nc.jetstream()
                    self._lag = await asyncio.wait_for(
                        consumer_lag(js, self.consumer, stream), timeout=5)
                    stream, self._lag_error = self._lag.stream, None
                except Exception as exc:  # pylint: disable=broad-except
                    self._lag_error = f"{type(exc).__name__}: {exc}"[:200]
                if next_line is not None and time.monotonic() >= next_line:
                    self.log.info("%s", self.progress_line())
                    next_line += self.progress_s * max(
                        1, int((time.monotonic() - next_line) // self.progress_s) + 1)
                deadline = time.monotonic() + self.poll_s
                while not self._stop.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(min(0.2, self.poll_s))
        finally:
            if nc is not None and not nc.is_closed:
                try:
                    await asyncio.wait_for(nc.close(), 5)
                except Exception:  # pylint: disable=broad-except
                    pass

    # ---- Prometheus ----------------------------------------------------------------------
    def collect(self):
        """The metric families (``prometheus_client`` custom-collector protocol)."""
        p = self.pipeline
        counters = self.totals()

        def counter(name, doc, value, **labels):
            fam = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["pipeline", *labels])
            fam.add_metric([p, *labels.values()], value)
            return fam

        yield counter("events_read", "Messages the NATS reader handed to the pipeline.",
                      counters.get(lm.EVENTS_READ, 0))
        for base, doc in ((lm.ROWS_WRITTEN, "Rows written durably, per dataset."),
                          (lm.FILES_WRITTEN, "Parquet shards written, per dataset.")):
            fam = CounterMetricFamily(f"{PREFIX}_{base}", doc, labels=["pipeline", "dataset"])
            for dataset, value in sorted(by_label(counters, base).items()):
                fam.add_metric([p, dataset], value)
            yield fam
        fam = CounterMetricFamily(f"{PREFIX}_dead_letters", "Dead letters written, by reason "
                                  "class.", labels=["pipeline", "reason"])
        dead = by_label(counters, lm.DEAD_LETTERS)
        for reason in sorted(set(lm.REASON_CLASSES) | set(dead)):
            fam.add_metric([p, reason], dead.get(reason, 0))
        yield fam
        for name, doc in ((lm.MESSAGES_ACKED, "JetStream acks sent after durable writes."),
                          (lm.ACK_FAILURES, "Acks that could not be sent (redelivered)."),
                          (lm.MESSAGES_WITHOUT_ROWS, "Messages that became no row."),
                          (lm.FILES_ALREADY_PRESENT, "Shards whose content was already "
                                                     "in the lake.")):
            yield counter(name, doc, counters.get(name, 0))
        buckets = by_label(counters, lm.SHARD_WRITE_SECONDS)
        sum_s = buckets.pop(lm.SUM_US, 0) / 1e6
        cumulative, acc = [], 0
        for label in lm.BUCKET_LABELS:
            acc += buckets.get(label, 0)
            cumulative.append((label, acc))
        hist = HistogramMetricFamily(f"{PREFIX}_shard_write_seconds", "Time to write one "
                                     "shard durably, retries included.", labels=["pipeline"])
        hist.add_metric([p], cumulative, sum_value=sum_s)
        yield hist
        yield counter("job_restarts", "Restarts of a job that failed on its own.",
                      self._restarts)
        lag = self._lag
        if lag is not None:
            for name, value, doc in (
                    ("consumer_num_pending", lag.num_pending,
                     "Messages stored in JetStream and not yet delivered (lag)."),
                    ("consumer_num_ack_pending", lag.num_ack_pending,
                     "Messages delivered and not yet acked (being written)."),
                    ("consumer_num_redelivered", lag.num_redelivered,
                     "Messages JetStream is redelivering.")):
                fam = GaugeMetricFamily(f"{PREFIX}_{name}", doc,
                                        labels=["pipeline", "stream", "consumer"])
                fam.add_metric([p, lag.stream, lag.durable], value)
                yield fam
        ready, _ = self.ready()
        fam = GaugeMetricFamily(f"{PREFIX}_ready", "1 while the job runs and consumes.",
                                labels=["pipeline"])
        fam.add_metric([p], 1.0 if ready else 0.0)
        yield fam
        if self._metrics_at is not None:
            fam = GaugeMetricFamily(f"{PREFIX}_job_metrics_age_seconds", "Seconds since "
                                    "the job's counters were last read.", labels=["pipeline"])
            fam.add_metric([p], round(time.monotonic() - self._metrics_at, 3))
            yield fam

    def describe(self):
        return []
