"""``FlushPolicy``: the seed's micro-batching rule, per key, as Beam state and timers.

A shard for a key is released when ``max_events`` values have accumulated, or
``max_seconds`` of processing time after the first value still buffered, whichever comes
first, and also when no further values arrive.  Whatever is still buffered when the input
ends (the watermark passes the end of the global window: drain, bounded read) is released
then.  Values are kept in arrival order.

Why state and timers rather than a count trigger: a trigger counts elements, and the
elements here are per-bundle batches of events (``transforms.micro_batch``), because
moving each event through the runner's shuffle on its own cost ~50 µs of Prism time per
event.  The state machine below counts events exactly.  It works in the global window,
never in event-time windows: a replayed day or a redelivered message is far behind any
event-time watermark, and the lake never drops an event as late.
"""
from __future__ import annotations

import time
import typing

import apache_beam as beam
from apache_beam.coders import coders
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.transforms import trigger, userstate, window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Timestamp


class _FlushDoFn(beam.DoFn):
    BUFFER = userstate.BagStateSpec("buffer", coders.PickleCoder())
    COUNT = userstate.ReadModifyWriteStateSpec("count", coders.VarIntCoder())
    FLUSH_AT = userstate.TimerSpec("flush_at", TimeDomain.REAL_TIME)
    END = userstate.TimerSpec("end_of_input", TimeDomain.WATERMARK)

    def __init__(self, max_events: int, max_seconds: float):
        self._max_events = max_events
        self._max_seconds = max_seconds

    def process(self, element,
                w=beam.DoFn.WindowParam,
                buffer=beam.DoFn.StateParam(BUFFER),
                count=beam.DoFn.StateParam(COUNT),
                flush_at=beam.DoFn.TimerParam(FLUSH_AT),
                end=beam.DoFn.TimerParam(END)):
        key, values = element
        n = count.read() or 0
        if n == 0:
            flush_at.set(Timestamp.of(time.time() + self._max_seconds))
            end.set(w.max_timestamp())
        buffer.add(values)
        n += len(values)
        if n < self._max_events:
            count.write(n)
            return
        pending = [v for batch in buffer.read() for v in batch]
        buffer.clear()
        full = len(pending) - len(pending) % self._max_events
        for i in range(0, full, self._max_events):
            yield key, pending[i:i + self._max_events]
        rest = pending[full:]
        if rest:
            buffer.add(rest)
            count.write(len(rest))
            flush_at.set(Timestamp.of(time.time() + self._max_seconds))
        else:
            count.clear()
            flush_at.clear()

    @userstate.on_timer(FLUSH_AT)
    def on_flush_time(self, key=beam.DoFn.KeyParam,
                      buffer=beam.DoFn.StateParam(BUFFER),
                      count=beam.DoFn.StateParam(COUNT)):
        yield from self._release(key, buffer, count)

    @userstate.on_timer(END)
    def on_end_of_input(self, key=beam.DoFn.KeyParam,
                        buffer=beam.DoFn.StateParam(BUFFER),
                        count=beam.DoFn.StateParam(COUNT)):
        yield from self._release(key, buffer, count)

    @staticmethod
    def _release(key, buffer, count):
        pending = [v for batch in buffer.read() for v in batch]
        buffer.clear()
        count.clear()
        if pending:
            yield key, pending


class _FlushRule(beam.PTransform):
    """The rule's parameters, validated: ``max_events`` per shard, ``max_seconds`` after
    the first buffered event."""

    def __init__(self, max_events: int, max_seconds: float):
        super().__init__()
        if max_events < 1 or max_seconds <= 0:
            raise ValueError("flush policy needs max_events >= 1 and max_seconds > 0")
        self.max_events = max_events
        self.max_seconds = max_seconds


class FlushPolicy(_FlushRule):
    """Input: ``(key, [value, ...])`` batches.  Output: ``(key, [value, ...])`` shards, each
    holding at most ``max_events`` values, released by the rule in the module docstring.
    Every input value is in exactly one output shard."""

    def expand(self, batches):
        return (batches
                | "GlobalWindow" >> beam.WindowInto(window.GlobalWindows())
                | "Buffer" >> beam.ParDo(_FlushDoFn(self.max_events, self.max_seconds))
                .with_input_types(typing.Tuple[str, typing.List[typing.Any]]))


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


class TriggeredFlush(_FlushRule):
    """The same rule as ``FlushPolicy`` in its literal Beam form: the global window with
    ``Repeatedly(AfterAny(AfterCount(max_events), AfterProcessingTime(max_seconds)))``,
    discarding panes, and a GroupByKey; each pane becomes shards of at most ``max_events``.

    Input: per-event ``(key, value)`` (no batching: the trigger counts elements).  Output:
    ``(key, [value, ...])``.  Correct, but every event crosses the runner's shuffle on its
    own, which makes it several times slower than ``FlushPolicy`` (see the README).
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
