"""``ReadFromNats``: a JetStream durable pull consumer as a Beam unbounded source.

Public face: the ``ReadFromNats`` PTransform.  Beneath it, an ``UnboundedSource``
(Beam's self-checkpointing SDF wrapper, ``apache_beam.io.unbounded_source``) whose
splits each pull batches from the durable consumer while they are read
(``io_connectors.nats.pull.PullFeed``) and hand them to the pipeline.  Any number of
splits, pipelines and machines can read one durable consumer: each takes what it asks
for, so they share the work by demand.

Guarantees
- Output elements are 5-tuples ``(subject, payload, stream_seq, ts_ns, ack_token)``
  (field order of ``NatsMessage``), timestamped with the JetStream storage time; with
  ``batches=True`` lists of them, as the reader delivers them (up to ``max_batch``, each
  timestamped with the storage time of its last message).
- At-least-once: the source never acks.  ``ack_token`` is the message's JetStream reply
  subject; the stage that durably writes the message acks it (``ack.AckWrittenShards``).  A message
  whose process dies before that is redelivered by JetStream after ``ack_wait``.
- The watermark follows the storage time of delivered messages and, when idle, wall
  clock minus ``idle_watermark_lag_s``; it never goes back.  The reader self-checkpoints
  (bounded bundles), so downstream triggers fire while the source runs.
- Bounded mode (tests, backfills): ``stop_at_end`` ends the read once the consumer has
  nothing pending; ``max_messages`` ends it after that many messages.
- While the pipeline is stalled (a shard write being retried) or takes nothing from the
  reader's buffer, the messages waiting in the buffer and those emitted and not yet acked
  get JetStream in-progress acks every third of ``ack_wait`` (``inflight``), so a slow
  write does not cause their redelivery.
- Drain: ``request_drain()`` in-process, or a publish to ``control_subject``, makes the
  reader unsubscribe, emit what it buffered, then finish (watermark to +inf) so every
  window fires its final pane and the pipeline ends after writing and acking it all.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam import coders
from apache_beam.io.unbounded_source import (CheckpointMark, ReadFromUnboundedSource,
                                             UnboundedReader, UnboundedSource)
from apache_beam.metrics import Metrics
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from io_connectors.nats import async_runtime, inflight
from io_connectors.nats.ack import in_progress, parse_ack_token
from io_connectors.nats.pull import PullFeed
from io_connectors.nats.settings import NatsSettings
from io_connectors.nats.streams import ConsumerSpec, ensure_consumer, ensure_streams
from transforms.lake_metrics import EVENTS_READ, NAMESPACE

_LOG = logging.getLogger(__name__)
_LOCAL_DRAIN = threading.Event()
_SUBSCRIBED = [0]           # subscriptions established in this process
_BOUNDED_EXPIRES_S = 1.0      # bounded reads: requests end quickly, so the end is seen soon


class NatsMessage(NamedTuple):
    """Field order of the elements ``ReadFromNats`` emits (they arrive as plain tuples)."""
    subject: str
    payload: bytes
    stream_seq: int
    ts_ns: int          # JetStream storage time, UTC ns
    ack_token: str      # the JetStream reply subject; publish "+ACK" to it to ack


SUBJECT, PAYLOAD, STREAM_SEQ, TS_NS, ACK_TOKEN = range(5)
NATS_MESSAGE_CODER = coders.TupleCoder([coders.StrUtf8Coder(), coders.BytesCoder(),
                                        coders.VarIntCoder(), coders.VarIntCoder(),
                                        coders.StrUtf8Coder()])


class NatsBatchCoder(coders.Coder):
    """The coder of the reader's batches: ``IterableCoder(NATS_MESSAGE_CODER)``, with a
    size estimate that does not encode the batch.

    The SDK estimates element sizes for its metrics by encoding sampled elements, and the
    read's output counter restarts its sampling on every bundle, so nearly every batch was
    encoded once just to be measured (the largest cost after parsing in a backlog drain).
    The estimate is the first message's encoded size times the batch length.
    """

    def __init__(self):
        self._inner = coders.IterableCoder(NATS_MESSAGE_CODER)

    def encode(self, value):
        return self._inner.encode(value)

    def decode(self, encoded):
        return self._inner.decode(encoded)

    def is_deterministic(self):
        return True

    def estimate_size(self, value):
        batch = value if isinstance(value, (list, tuple)) else list(value)
        if not batch:
            return 1
        return 4 + len(batch) * NATS_MESSAGE_CODER.estimate_size(batch[0])

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))


def request_drain() -> None:
    """Asks every reader in this process to stop consuming and finish (used on SIGTERM)."""
    _LOCAL_DRAIN.set()


def reset_drain() -> None:
    _LOCAL_DRAIN.clear()


def subscriptions_started() -> int:
    """How many reader subscriptions this process has established (the launcher's sign
    that a job had been running)."""
    return _SUBSCRIBED[0]


@dataclasses.dataclass(frozen=True)
class _SourceConfig:
    settings: NatsSettings
    consumer: ConsumerSpec
    stop_at_end: bool = False
    max_messages: Optional[int] = None
    control_subject: Optional[str] = None
    ready_subject: Optional[str] = None
    idle_watermark_lag_s: float = 2.0
    reader_index: int = 0
    num_readers: int = 1
    max_batch: int = 2000
    pull_window: int = 6000        # messages asked for or buffered per split at most
    pull_expires_s: float = 10.0   # lifetime of a waiting pull request


class _EmptyCheckpoint(CheckpointMark):
    """The JetStream durable consumer holds the position; acks come from the sink."""


class _EmptyCheckpointCoder(coders.Coder):
    def encode(self, value):
        return b""

    def decode(self, encoded):
        return _EmptyCheckpoint()

    def is_deterministic(self):
        return True


class _SharedSubscription:
    """The live pull feed of one source split in this process, shared by its readers.

    Beam's SDF wrapper may resume a checkpointed read on another DoFn instance than the one
    that parked the reader; a per-reader feed would then leave messages stranded in the
    parked reader's buffer.  One feed per split and process avoids that: every reader
    handle drains the same buffer and sees the same end-of-input state.  The feed asks the
    durable pull consumer for at most ``pull_window`` messages at a time, only while the
    split is being read, so splits and processes share the consumer by demand.
    """

    def __init__(self, cfg: _SourceConfig):
        self.cfg = cfg
        self.lock = threading.Lock()
        self.watermark = Timestamp(0)
        self.emitted = 0
        self._read_counter = Metrics.counter(NAMESPACE, EVENTS_READ)    # per batch
        self.saw_end = False       # a delivered message reported 0 pending
        self.end_confirmed = False  # bounded mode: the consumer has nothing left to deliver
        self.draining = False
        self.finished = False
        self.feed: Optional[PullFeed] = None
        self.stream_name = cfg.consumer.stream
        self._control = None
        self._next_end_check = 0.0
        self._keeper = None
        self.nc = async_runtime.connection(cfg.settings)
        if async_runtime.run(self._subscribe()):
            self.finished = True
        _SUBSCRIBED[0] += 1
        _LOG.info("NATS consumer %s reading (split %d, already at end=%s)",
                  cfg.consumer.durable, cfg.reader_index, self.finished)

    async def _subscribe(self) -> bool:
        cfg = self.cfg
        js = self.nc.jetstream()
        streams = await ensure_streams(js)
        self.stream_name = streams.get(cfg.consumer.stream, cfg.consumer.stream)
        await ensure_consumer(js, cfg.consumer, self.stream_name)
        if cfg.stop_at_end:
            info = await js.consumer_info(self.stream_name, cfg.consumer.durable)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return True
        self.feed = PullFeed(self.nc, async_runtime.loop(), self.stream_name,
                             cfg.consumer.durable, batch=cfg.max_batch,
                             window=max(cfg.pull_window, cfg.max_batch),
                             expires_s=_BOUNDED_EXPIRES_S if cfg.stop_at_end else cfg.pull_expires_s,
                             limit=cfg.max_messages)
        await self.feed.start()
        self._keeper = asyncio.ensure_future(self._keep_alive(cfg.consumer.ack_wait_s / 3))

        async def on_control(msg):
            self.draining = True

        if cfg.control_subject:
            self._control = await self.nc.subscribe(cfg.control_subject, cb=on_control)
        if cfg.ready_subject:                     # this instance reads now (StreamWriter)
            await self.feed.top_up_now()          # its first requests go out before that
            await self.nc.publish(cfg.ready_subject, str(cfg.reader_index).encode())
        await self.nc.flush()
        return False

    async def _keep_alive(self, every_s: float) -> None:
        """Every ``every_s``: while the pipeline is stalled (a shard write of this process
        is being retried) or takes nothing from the buffer, sends in-progress acks for the
        messages waiting here and those emitted earlier and not yet acked
        (``inflight.unacked``), so that JetStream does not redeliver them meanwhile; when
        all is well, drops what ``inflight`` kept for longer than two ``ack_wait``."""
        last_emitted, waiting, calm = self.emitted, 0, 0
        while True:
            await asyncio.sleep(every_s)
            buf = self.feed.buf
            buffer_stuck = bool(waiting) and self.emitted - last_emitted < waiting
            last_emitted, waiting = self.emitted, len(buf)
            if not (buffer_stuck or inflight.stalled()):
                calm += 1
                if calm >= 6:                    # 6 x ack_wait/3 = two ack_wait
                    inflight.rotate()
                    calm = 0
                continue
            calm = 0
            tokens = [m[2] for m in list(buf)]               # a C-level copy: atomic
            tokens += inflight.unacked()
            if tokens:
                try:
                    await in_progress(self.nc, tokens)
                except Exception as exc:  # pylint: disable=broad-except
                    _LOG.warning("could not send in-progress acks for %d messages: %s",
                                 len(tokens), exc)

    async def _unsubscribe(self):
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
        control, self._control = self._control, None
        if control is not None:
            try:
                await control.unsubscribe()
            except Exception:  # pylint: disable=broad-except
                pass
        if self.feed is not None:
            await self.feed.stop()

    @property
    def buffered(self) -> int:
        """Messages received and not yet emitted."""
        return len(self.feed.buf) if self.feed is not None else 0

    def stop_consuming(self) -> None:
        if (self._control is not None or self._keeper is not None
                or (self.feed is not None and self.feed.active)):
            async_runtime.run(self._unsubscribe())

    def finish(self) -> None:
        with self.lock:
            if self.finished:
                return
            self.stop_consuming()
            self.finished = True
        _LOG.info("NATS consumer %s split %d finished after %d messages",
                  self.cfg.consumer.durable, self.cfg.reader_index, self.emitted)

    def _at_end(self) -> bool:
        """Bounded mode, nothing buffered: True once nothing is left for this split.

        A split that took the message reporting 0 pending has seen the end.  Others ask
        the server (at most every 0.5 s): once the consumer has nothing left to deliver,
        the split stops asking and ends when its own requests have ended (messages
        already sent to it arrive before the status that ends their request)."""
        if self.saw_end:
            return True
        if not self.end_confirmed:
            now = time.monotonic()
            if now < self._next_end_check:
                return False
            self._next_end_check = now + 0.5
            info = async_runtime.run(self.nc.jetstream().consumer_info(
                self.stream_name, self.cfg.consumer.durable), timeout=30)
            self.end_confirmed = info.num_pending == 0
        return self.end_confirmed and self.feed.outstanding() == 0

    def next_batch(self, max_batch: int):
        """Up to ``max_batch`` buffered message tuples, or None when nothing is available."""
        if self.finished:
            return None
        if not self.draining and _LOCAL_DRAIN.is_set():
            self.draining = True
        feed = self.feed
        if self.draining:
            self.stop_consuming()
        elif not self.end_confirmed:
            feed.top_up()
        cap = self.cfg.max_messages
        if cap is not None:
            if self.emitted >= cap:
                self.finish()
                return None
            max_batch = min(max_batch, cap - self.emitted)
        out = []
        tokens = []
        for subject, payload, reply in feed.take(max_batch):
            seq, ts_ns, pending = parse_ack_token(reply)
            out.append((subject, payload, seq, ts_ns, reply))
            tokens.append(reply)
        if not out:
            if self.draining or (self.cfg.stop_at_end and self._at_end()):
                self.finish()
            else:
                lagged = Timestamp.now() - self.cfg.idle_watermark_lag_s
                if lagged > self.watermark:
                    self.watermark = lagged
            return None
        if pending == 0:
            self.saw_end = True
        ts = Timestamp(micros=max(m[TS_NS] for m in out) // 1000)
        if ts > self.watermark:
            self.watermark = ts
        self.emitted += len(out)
        inflight.emitted(tokens)
        self._read_counter.inc(len(out))
        if not self.draining and not self.end_confirmed:
            feed.top_up()                  # room was made: keep the next batch coming
        return out


_SUBSCRIPTIONS: dict = {}
_SUBSCRIPTIONS_LOCK = threading.Lock()


def _subscription(cfg: _SourceConfig) -> _SharedSubscription:
    with _SUBSCRIPTIONS_LOCK:
        sub = _SUBSCRIPTIONS.get(cfg)
        if sub is None or (sub.finished and not sub.buffered):
            sub = _SUBSCRIPTIONS[cfg] = _SharedSubscription(cfg)
        return sub


class _NatsReader(UnboundedReader):
    """A handle on the split's shared subscription (see ``_SharedSubscription``)."""

    def __init__(self, cfg: _SourceConfig):
        self._cfg = cfg
        self._sub: Optional[_SharedSubscription] = None
        self._current = None

    def start(self) -> bool:
        self._sub = _subscription(self._cfg)
        return self.advance()

    def advance(self) -> bool:
        self._current = self._sub.next_batch(self._cfg.max_batch)
        return self._current is not None

    def get_current(self):
        return self._current

    def get_current_timestamp(self) -> Timestamp:
        return Timestamp(micros=self._current[-1][TS_NS] // 1000)

    def get_watermark(self) -> Timestamp:
        return MAX_TIMESTAMP if self._sub.finished else self._sub.watermark

    def get_checkpoint_mark(self) -> CheckpointMark:
        return _EmptyCheckpoint()

    def close(self) -> None:
        # The shared subscription outlives reader handles; it ends on finish (drain,
        # bounded end).  Messages never emitted are not acked: JetStream redelivers them.
        self._sub = None


class _NatsSource(UnboundedSource):
    def __init__(self, cfg: _SourceConfig):
        self._cfg = cfg

    def split(self, desired_num_splits, options=None):
        n = self._cfg.num_readers
        return [_NatsSource(dataclasses.replace(self._cfg, reader_index=i)) for i in range(n)]

    def create_reader(self, options, checkpoint_mark):
        return _NatsReader(self._cfg)

    def get_checkpoint_mark_coder(self):
        return _EmptyCheckpointCoder()

    def default_output_coder(self):
        return NatsBatchCoder()


class ReadFromNats(beam.PTransform):
    """Reads a JetStream durable consumer as an unbounded PCollection of ``NatsMessage``
    tuples.  See the module docstring for the delivery, watermark and drain guarantees.

    Args:
      settings: NATS connection settings.
      consumer: the durable consumer (stream, name, ack_wait, max_ack_pending); created or
        updated at start, and the streams of configs/streams.yaml are ensured too.
      stop_at_end / max_messages: bounded mode.
      control_subject: a subject whose message asks the readers to drain.
      ready_subject: a subject each split publishes its index on once it reads (how the
        launcher of one instance learns that this instance, not another one, consumes).
      num_readers: source splits, each pulling from the consumer while it is read (the
        runner may run them in different workers); any number of pipelines may read
        the same consumer too.
      max_batch: the reader hands Beam up to this many messages per record (one SDF claim
        per batch instead of per message).
      batches: output those batches (lists of ``NatsMessage`` tuples) as they are, for
        consumers that work batch-wise; by default the output is one element per message.
      max_batches_per_bundle / max_read_time_s: the reader self-checkpoints after this many
        batches or seconds, so downstream work and triggers proceed while it runs.
      poll_interval_s: resume delay when nothing is buffered.
    """

    def __init__(self, settings: NatsSettings, consumer: ConsumerSpec, *,
                 stop_at_end: bool = False, max_messages: Optional[int] = None,
                 control_subject: Optional[str] = None, ready_subject: Optional[str] = None,
                 num_readers: int = 1,
                 max_batch: int = 2000, max_batches_per_bundle: int = 50,
                 max_read_time_s: float = 0.5, poll_interval_s: float = 0.1,
                 batches: bool = False):
        super().__init__()
        if num_readers < 1:
            raise ValueError("num_readers must be >= 1")
        if max_messages is not None and num_readers != 1:
            raise ValueError("max_messages needs num_readers=1")
        self._source = _NatsSource(_SourceConfig(
            settings=settings, consumer=consumer, stop_at_end=stop_at_end,
            max_messages=max_messages, control_subject=control_subject,
            ready_subject=ready_subject,
            num_readers=num_readers, max_batch=max_batch))
        self._bundle = (poll_interval_s, max_batches_per_bundle, max_read_time_s)
        self._batches = batches

    def expand(self, pbegin):
        poll, max_records, max_time = self._bundle
        read = pbegin | "Read" >> ReadFromUnboundedSource(
            self._source, poll_interval=poll, max_records_per_bundle=max_records,
            max_read_time_seconds=max_time)
        if self._batches:
            return read
        return read | "Unbatch" >> beam.FlatMap(lambda batch: batch).with_output_types(tuple)
