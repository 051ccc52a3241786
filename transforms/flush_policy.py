"""The seed's micro-batching rule as Beam windows and triggers.

Streaming (``FlushPolicy``): per key, a shard is released when ``max_events`` events
have accumulated, or ``max_seconds`` of processing time after the first buffered event,
whichever comes first, also when no further events arrive; whatever is buffered when the
input ends (drain, bounded read) is released then.  Bounded (``BoundedShards``): all values
of a key in a deterministic order, cut into shards of ``max_events``.

Global windows, not event-time windows: a replayed day or a redelivered message is far
behind any event-time watermark, and the lake never drops an event as late.

Why not user state and timers (faster: per-bundle batches instead of one shuffle element
per event): on Prism with Beam 2.77 a stateful DoFn fed a burst read stale state across
bundles (rows written twice, others left un-acked until redelivery), with and without
the SDK's state cache.  GroupByKey with triggers was exact under the same burst; the burst
test in tests/test_bronze_stream_nats.py guards it.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.transforms import trigger, window


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
