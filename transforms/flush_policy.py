"""The seed's micro-batching rule as Beam windows and triggers.

Streaming (``FlushPolicy``): per key, a shard is released when ``max_events`` events
have accumulated, or ``max_seconds`` of processing time after the first buffered event,
whichever comes first, also when no further events arrive; whatever is buffered when the
input ends (drain, bounded read) is released then.  Bounded (``BoundedShards``): all values
of a key in a deterministic order, cut into shards of ``max_events``.

Streaming with batched input (``BatchedFlushPolicy``, what ``bronze_stream`` uses): the
same rule, with full shards cut before the shuffle.  Sending every event through the
GroupByKey on its own was the pipeline's main cost (each one is encoded, handed to Prism,
buffered there and decoded again).  The source emits batches of messages, and within one
bundle the events of each key are collected in plain DoFn memory (no user state: the
buffer lives from ``start_bundle`` to ``finish_bundle`` and is emptied there):

- every time a key's buffer reaches ``max_events`` it is emitted as a full shard, which
  goes straight to the writer in the same fused stage: the count half of the rule is
  already met, so no shuffle or trigger is needed;
- at the end of the bundle, the fewer-than-``max_events`` events left per key go, one
  element per event, through ``FlushPolicy`` (the GroupByKey with the count and
  processing-time triggers), where they wait with the remainders of later bundles.

So no shard exceeds ``max_events``, every event is in exactly one shard, and an event
waits at most one bundle (the source's ``max_read_time_s``) plus ``max_seconds``.  During
a backlog drain almost all events leave in full shards; at a low steady rate bundles are
small and nearly every event takes the trigger path, exactly as with ``FlushPolicy``.
The two outputs are written by two applications of the writer; they are not rejoined with
a Flatten before writing, which would break the runner's fusion.

Global windows, not event-time windows: a replayed day or a redelivered message is far
behind any event-time watermark, and the lake never drops an event as late.

Why not user state and timers (faster than one shuffle element per event): on Prism with
Beam 2.77 a stateful DoFn fed a burst read stale state across bundles (rows written twice,
others left un-acked until redelivery), with and without the SDK's state cache.
GroupByKey with triggers was exact under the same burst, and so is the per-bundle cut
above, which keeps nothing beyond one bundle; the burst test in
tests/test_bronze_stream_nats.py guards both.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.transforms import trigger, window
from apache_beam.utils.windowed_value import WindowedValue


class _FlushRule(beam.PTransform):
    """The rule's parameters, validated: ``max_events`` per shard, ``max_seconds`` after
    the first buffered event."""

    def __init__(self, max_events: int, max_seconds: float):
        super().__init__()
        if max_events < 1 or max_seconds <= 0:
            raise ValueError("flush policy needs max_events >= 1 and max_seconds > 0")
        self.max_events = max_events
        self.max_seconds = max_seconds


class _AfterProcessingTimeMs(trigger.AfterProcessingTime):
    """AfterProcessingTime whose runner proto carries whole milliseconds (Beam's own
    writes ``delay * 1000`` into an integer field and so rejects fractional seconds)."""

    def to_runner_api(self, context):
        delay = beam_runner_api_pb2.TimestampTransform(
            delay=beam_runner_api_pb2.TimestampTransform.Delay(
                delay_millis=int(round(self.delay * 1000))))
        return beam_runner_api_pb2.Trigger(
            after_processing_time=beam_runner_api_pb2.Trigger.AfterProcessingTime(
                timestamp_transforms=[delay]))


def _chunks(keyed, size):
    key, values = keyed
    values = list(values)
    for i in range(0, len(values), size):
        yield key, values[i:i + size]


class FlushPolicy(_FlushRule):
    """The flush rule as Beam windowing: the global window with
    ``Repeatedly(AfterAny(AfterCount(max_events), AfterProcessingTime(max_seconds)))``,
    discarding panes, and a GroupByKey; each pane becomes shards of at most ``max_events``
    (a pane can exceed the count when a bundle delivers many events at once).

    Input: per-event ``(key, value)``.  Output: ``(key, [value, ...])``; every input value
    is in exactly one output shard.
    """

    def expand(self, pcoll):
        return (pcoll
                | "Window" >> beam.WindowInto(
                    window.GlobalWindows(),
                    trigger=trigger.Repeatedly(trigger.AfterAny(
                        trigger.AfterCount(self.max_events),
                        _AfterProcessingTimeMs(self.max_seconds))),
                    accumulation_mode=trigger.AccumulationMode.DISCARDING)
                | "GroupPane" >> beam.GroupByKey()
                | "Chunk" >> beam.FlatMap(_chunks, self.max_events))


class _CutFullShards(beam.DoFn):
    """Collects the ``(key, value)`` pairs of each input list per key for one bundle;
    emits a key's buffer as a full shard ``(key, [value, ...])`` whenever it reaches
    ``max_events``, and at the end of the bundle every value left over as one
    ``(key, value)`` element on the ``REST`` output (timestamped with the earliest input
    element that contributed to that key's buffer)."""

    REST = "rest"

    def __init__(self, max_events: int):
        self._max = max_events
        self._buf: dict = {}

    def start_bundle(self):
        self._buf = {}

    def process(self, pairs, ts=beam.DoFn.TimestampParam):
        buf = self._buf
        size = self._max
        for key, value in pairs:
            entry = buf.get(key)
            if entry is None:
                entry = buf[key] = (ts, [])
            values = entry[1]
            values.append(value)
            if len(values) >= size:
                del buf[key]
                yield key, values

    def finish_bundle(self):
        buf, self._buf = self._buf, {}
        windows = (window.GlobalWindow(),)
        for key, (ts, values) in buf.items():
            for value in values:
                yield beam.pvalue.TaggedOutput(
                    self.REST, WindowedValue((key, value), ts, windows))


class BatchedFlushPolicy(_FlushRule):
    """``FlushPolicy`` for batched input, with full shards cut before the shuffle (see the
    module docstring).

    Input: lists of ``(key, value)`` pairs (e.g. one list per source batch), in the global
    window.  Output: a pair of PCollections ``(full, flushed)`` of ``(key, [value, ...])``
    shards: ``full`` holds shards of exactly ``max_events`` values cut within one bundle,
    ``flushed`` the panes of ``FlushPolicy`` over the values left over at bundle ends.
    Every input value is in exactly one shard of one of them; no shard exceeds
    ``max_events``.  Apply the sink to each of the two (a Flatten before the sink would
    break fusion and move the full shards through the runner).
    """

    def expand(self, batches):
        cut = batches | "CutFullShards" >> beam.ParDo(
            _CutFullShards(self.max_events)).with_outputs(_CutFullShards.REST, main="full")
        flushed = cut[_CutFullShards.REST] | "FlushRest" >> FlushPolicy(self.max_events,
                                                                          self.max_seconds)
        return cut.full, flushed


def _sorted_chunks(keyed, size):
    key, values = keyed
    ordered = sorted(values, key=lambda v: (v[1][0], repr(v[1])))
    for i in range(0, len(ordered), size):
        yield key, ordered[i:i + size]


class BoundedShards(_FlushRule):
    """The rule for bounded input (backfills): all values of a key, in a deterministic
    order (first field of the row, then the whole row), cut into shards of ``max_events``.

    Input: ``(key, (token, row_tuple))``.  Output: ``(key, [(token, row), ...])``.  The
    same input always gives the same shards, which makes content-addressed file names (and
    so idempotent re-runs) possible.  ``max_seconds`` does not apply to bounded input.
    """

    def __init__(self, max_events: int):
        super().__init__(max_events, 1.0)

    def expand(self, pcoll):
        return (pcoll
                | "GroupKey" >> beam.GroupByKey()
                | "Chunk" >> beam.FlatMap(_sorted_chunks, self.max_events))
