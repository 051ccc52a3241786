"""The seed's micro-batching rule as Beam windows and triggers.

Streaming (``FlushPolicy``): per key, a shard is released when ``max_events`` events
have accumulated, or ``max_seconds`` of processing time after the first buffered event,
whichever comes first, also when no further events arrive; whatever is buffered when the
input ends (drain, bounded read) is released then.  (Bounded input, the backfill, is cut
into shards by ``io_connectors.lake.bounded_shards.WriteBoundedShards``.)

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

Element shapes (``transforms.shards``).  An input list holds ``(key, (token, row_tuple))``
pairs (one event each) and/or ``(key, Shard(tokens, table))`` pieces (the futures trades
of a batch parsed column-wise by ``bronze_route.route_batch_columnar``: ``len(tokens)``
events whose rows are the table's, identical to the parser's tuples).  ``_CutFullShards``
buffers both per key with a running count and cuts at exactly ``max_events`` events,
slicing a piece where a shard ends.  A full shard is ``(key, Shard(tokens, table))`` when
all of its events came column-wise, else ``(key, [(token, row_tuple), ...])`` (columnar
rows converted to tuples); the shard writers write both the same way.  The remainders at
the end of a bundle always go to the trigger path as one ``(key, (token, row_tuple))``
element per event, so ``FlushPolicy`` and everything after it only ever see tuples.

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
import pyarrow as pa
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.transforms import trigger, window
from apache_beam.utils.windowed_value import WindowedValue

from transforms.shards import Shard, table_rows


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


def _take(parts: list, size: int) -> tuple[list, list]:
    """Splits a key's buffered parts (lists of values, or ``Shard`` pieces) into
    the first ``size`` values and the rest, order kept."""
    taken, need = [], size
    for i, part in enumerate(parts):
        n = len(part) if type(part) is list else len(part[0])
        if n < need:
            taken.append(part)
            need -= n
            continue
        if n == need:
            return taken + [part], parts[i + 1:]
        if type(part) is list:
            head, tail = part[:need], part[need:]
        else:
            tokens, table = part
            head = Shard(tokens[:need], table.slice(0, need))
            tail = Shard(tokens[need:], table.slice(need))
        return taken + [head], [tail] + parts[i + 1:]
    return taken, []


def _as_values(part) -> list:
    """A buffered part as ``(token, row_tuple)`` values (a columnar piece's rows become the
    tuples the per-message parser gives, ``columnar_trades.table_rows``)."""
    if type(part) is list:
        return part
    tokens, table = part
    return list(zip(tokens, table_rows(table)))


def _shard(parts: list):
    """The value of a full shard: a ``Shard`` when every part is columnar, else the list
    of values."""
    if all(type(p) is not list for p in parts):
        tokens = [t for p in parts for t in p[0]]
        tables = [p[1] for p in parts]
        return Shard(tokens, tables[0] if len(tables) == 1 else pa.concat_tables(tables))
    return [v for p in parts for v in _as_values(p)]


class _CutFullShards(beam.DoFn):
    """Collects the elements of each input list per key for one bundle; emits a key's
    buffer as a full shard whenever it reaches ``max_events`` values, and at the end of the
    bundle every value left over as one ``(key, value)`` element on the ``REST`` output
    (timestamped with the earliest input element that contributed to that key's current
    buffer).

    An element is a ``(key, value)`` pair or a ``(key, Shard(tokens, table))`` piece
    (``len(tokens)`` values ``(token, row_tuple)`` in columnar form).  A full shard is
    ``(key, Shard(tokens, table))`` when all of its values came in columnar pieces,
    else ``(key, [value, ...])`` (columnar rows converted to the parser's tuples).  The
    values left over always go out as ``(key, (token, row_tuple))``.
    """

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
            if type(value) is Shard:
                entry = buf.get(key)
                if entry is None:
                    entry = buf[key] = [ts, 0, []]
                entry[2].append(value)
                entry[1] += len(value.tokens)
                while entry[1] >= size:
                    shard, rest = _take(entry[2], size)
                    yield key, _shard(shard)
                    entry[1] -= size
                    entry[2] = rest
                    entry[0] = ts
                if not entry[1]:
                    del buf[key]
                continue
            entry = buf.get(key)
            if entry is None:
                entry = buf[key] = [ts, 0, [[value]]]
            else:
                parts = entry[2]
                if type(parts[-1]) is list:
                    parts[-1].append(value)
                else:
                    parts.append([value])
            entry[1] += 1
            if entry[1] >= size:
                del buf[key]
                yield key, _shard(entry[2])

    def finish_bundle(self):
        buf, self._buf = self._buf, {}
        windows = (window.GlobalWindow(),)
        for key, (ts, _, parts) in buf.items():
            for part in parts:
                for value in _as_values(part):
                    yield beam.pvalue.TaggedOutput(
                        self.REST, WindowedValue((key, value), ts, windows))


class BatchedFlushPolicy(_FlushRule):
    """``FlushPolicy`` for batched input, with full shards cut before the shuffle (see the
    module docstring).

    Input: lists of ``(key, value)`` pairs and/or ``(key, Shard)`` pieces (e.g. one list
    per source batch), in the global window.  Output: a pair of PCollections
    ``(full, flushed)``: ``full`` holds shards of exactly ``max_events`` values cut within
    one bundle, as ``(key, [value, ...])`` or ``(key, Shard(tokens, table))``;
    ``flushed`` the ``(key, [value, ...])`` panes of ``FlushPolicy`` over the values left
    over at bundle ends.
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
