"""``BatchPerKey``: groups a bundle's keyed elements into per-key lists before a shuffle.

Every element that crosses a runner's shuffle costs the runner work of its own (Prism
spent ~50 µs per element here); a market-data stream moves tens of thousands of small
events per second, so they cross as per-key batches instead.  Batches never outlive the
bundle that made them: whatever is collected is emitted at the end of the bundle, so
nothing is held outside the runner's bookkeeping.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms import window


class _BatchPerKeyDoFn(beam.DoFn):
    def __init__(self, max_batch: int):
        self._max_batch = max_batch
        self._batches: dict = {}

    def start_bundle(self):
        self._batches = {}

    def process(self, element):
        key, value = element
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = []
        batch.append(value)
        if len(batch) >= self._max_batch:
            del self._batches[key]
            yield key, batch

    def finish_bundle(self):
        batches, self._batches = self._batches, {}
        for key, batch in batches.items():
            yield window.GlobalWindows.windowed_value_at_end_of_window((key, batch))


class BatchPerKey(beam.PTransform):
    """Input: ``(key, value)`` in the global window.  Output: ``(key, [value, ...])`` with
    at most ``max_batch`` values, in arrival order; every input value appears in exactly
    one output batch, emitted no later than the end of its bundle."""

    def __init__(self, max_batch: int):
        super().__init__()
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._max_batch = max_batch

    def expand(self, pcoll):
        return pcoll | beam.ParDo(_BatchPerKeyDoFn(self._max_batch))
