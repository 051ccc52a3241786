"""Acknowledging JetStream messages by their ack tokens (reply subjects).

- ``AckWrittenShards(settings)``: the PTransform that follows a shard writer
  (``WriteParquetShards``) in the same fused stage: for each ``WrittenShard`` it acks the
  shard's messages, which the writer emits only once they are durably written, and
  outputs ``(path, rows)`` for each file written.
- ``ack(settings, tokens)``: a JetStream ack is a publish of ``+ACK`` to the message's
  reply subject, from any connection; returns once the server has received every ack (a
  flush round trip).
- ``in_progress(nc, tokens)``: ``+WPI`` now (the NATS source uses it for the messages in
  its buffer while the pipeline takes none).
- ``InProgress(settings, every_s)``: ``hold(tokens)`` for the writers' retries: while
  entered, ``+WPI`` (work in progress) is sent for the tokens now and every ``every_s``,
  which restarts their ``ack_wait`` so that JetStream does not redeliver the messages of a
  write that is merely slow (and, through ``inflight.stalled``, makes the source do the
  same for the other messages it handed out and are not acked yet); once it is left
  (written, or abandoned) the deadlines run again and an abandoned shard's messages are
  redelivered after ``ack_wait``.

A shard's acks go out as one write of their ``PUB`` commands instead of one ``publish``
call each (a shard is 1000 acks; per-call overhead was ~2 us of the writer's time per
event), through ``client_internals.send_raw``; when that is not available, or for a
token that is not a plain subject, each token is published on its own.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics

from io_connectors.nats import async_runtime, inflight
from io_connectors.nats.client_internals import can_send_raw, send_raw
from io_connectors.nats.settings import NatsSettings
from transforms import lake_metrics as lm

_LOG = logging.getLogger(__name__)
ACK = b"+ACK"
IN_PROGRESS = b"+WPI"
_NOT_PLAIN = re.compile(r"[^\x21-\x7e]")     # whitespace, control or non-ASCII


def ack_commands(tokens: list[str], body: bytes = ACK) -> bytes:
    """The NATS protocol bytes that publish ``body`` to each token, one ``PUB`` each."""
    head = b" %d\r\n%s\r\n" % (len(body), body)
    return b"".join([b"PUB " + t.encode() + head for t in tokens])


async def _publish_all(nc, tokens: list[str], body: bytes) -> None:
    if can_send_raw(nc) and not _NOT_PLAIN.search("".join(tokens)):
        await send_raw(nc, ack_commands(tokens, body))
    else:
        for token in tokens:
            await nc.publish(token, body)
    await nc.flush()


def ack(settings: NatsSettings, tokens: Iterable[str], timeout: float = 30.0) -> int:
    """Acks every token; returns how many.  Raises if the server cannot be reached."""
    tokens = [t for t in tokens if t]
    if not tokens:
        return 0
    nc = async_runtime.connection(settings)
    async_runtime.run(_publish_all(nc, tokens, ACK), timeout=timeout)
    inflight.acked(tokens)
    return len(tokens)


async def in_progress(nc, tokens: list[str]) -> None:
    """Sends ``+WPI`` for every token on ``nc`` (a coroutine for the client's loop)."""
    await _publish_all(nc, [t for t in tokens if t], IN_PROGRESS)


class InProgress:
    """``hold(tokens)`` that keeps the tokens' messages from being redelivered while it
    is entered (``+WPI`` now and every ``every_s``; see the module docstring).  Picklable;
    failures to reach NATS are logged, never raised (the hold is best effort: without it
    the messages are only redelivered, never lost)."""

    def __init__(self, settings: NatsSettings, every_s: float):
        if every_s <= 0:
            raise ValueError("every_s must be > 0")
        self.settings = settings
        self.every_s = every_s

    async def _keep(self, nc, tokens: list[str]) -> None:
        while True:
            try:
                await _publish_all(nc, tokens, IN_PROGRESS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # pylint: disable=broad-except
                _LOG.warning("could not send in-progress acks for %d messages: %s",
                             len(tokens), exc)
            await asyncio.sleep(self.every_s)

    @contextlib.contextmanager
    def __call__(self, tokens: list[str]):
        tokens = [t for t in tokens if t]
        future = None
        inflight.stall_started()
        if tokens:
            try:
                nc = async_runtime.connection(self.settings)
                future = asyncio.run_coroutine_threadsafe(self._keep(nc, tokens),
                                                          async_runtime.loop())
            except Exception as exc:  # pylint: disable=broad-except
                _LOG.warning("no in-progress acks for %d messages: %s", len(tokens), exc)
        try:
            yield
        finally:
            inflight.stall_ended()
            if future is not None:
                future.cancel()


class _AckDoFn(beam.DoFn):
    def __init__(self, settings: NatsSettings):
        self._settings = settings
        self._acked = Metrics.counter(lm.NAMESPACE, lm.MESSAGES_ACKED)
        self._failed = Metrics.counter(lm.NAMESPACE, lm.ACK_FAILURES)

    def process(self, written):
        path, rows, tokens = written
        if tokens:
            try:
                ack(self._settings, tokens)
                self._acked.inc(len(tokens))
            except Exception:  # pylint: disable=broad-except
                self._failed.inc(len(tokens))
                # Not acked: JetStream redelivers; readers drop the duplicate of a written row.
                _LOG.warning("could not ack %d messages of %s", len(tokens),
                             path or "a shard without a file", exc_info=True)
        if path is not None:
            yield path, rows


class AckWrittenShards(beam.PTransform):
    """Acks the messages of each written shard.

    Input: ``WrittenShard(path, rows, tokens)`` elements of a shard writer, which emits
    one only after the shard is durably written (apply this right after the writer, so
    that the runner fuses both into one stage).  Output: ``(path, rows)`` per file
    written.  An ack that cannot be sent is logged; its messages are then redelivered
    after ``ack_wait`` (at-least-once, never lost).
    """

    def __init__(self, settings: NatsSettings):
        super().__init__()
        self._settings = settings

    def expand(self, written):
        return written | "Ack" >> beam.ParDo(_AckDoFn(self._settings))


def parse_ack_token(reply: str) -> tuple[int, int, int]:
    """(stream_seq, ts_ns, num_pending) from a JetStream ack subject (v1 and v2 forms)."""
    t = reply.split(".")
    if len(t) == 9:            # $JS.ACK.<stream>.<consumer>.<dlv>.<sseq>.<cseq>.<ts>.<pending>
        return int(t[5]), int(t[7]), int(t[8])
    if len(t) >= 11:           # $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<dlv>.<sseq>...
        return int(t[7]), int(t[9]), int(t[10])
    raise ValueError(f"not a JetStream ack subject: {reply!r}")
