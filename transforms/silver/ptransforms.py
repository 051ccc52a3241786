"""Beam faces of the Silver stages.

``SilverStage(name)``: PCollection of ``SilverDay | DayFailure`` -> the same, with stage
``name`` applied to every ``SilverDay`` (a failure passes through; an exception turns the
day into a ``DayFailure`` naming the stage and the reason).  Stateless and per element,
so dates are processed independently and in parallel, and nothing depends on the runner.
Use it to run or test one stage alone.

``SilverStages(names)``: the stages in manifest order.  By default they run inside ONE
ParDo (``fused=True``), stage after stage with the same per-stage failure capture: a day
carries ~100 MB of frames, and on Prism a chain of 18 ParDos cost about one extra second per
date over the fused form (measured: 10.5 s vs 7.4 s for three full-scale dates).
``fused=False`` applies one ``SilverStage`` per stage instead.  Either way the time spent in
each stage is recorded in the day's lineage (``stage_seconds``).
"""
from __future__ import annotations

import time
from typing import Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.lake_metrics import NAMESPACE, SILVER_STAGES_DONE
from transforms.silver.day import SilverDay
from transforms.silver.stages import apply_stage, stage_function


def _timed(name, day, fn):
    t0 = time.perf_counter()
    out = apply_stage(name, day, fn)
    if isinstance(out, SilverDay):
        spent = dict(out.lineage.get("stage_seconds", {}))
        spent[name] = round(time.perf_counter() - t0, 4)
        out = out.replace(lineage={**out.lineage, "stage_seconds": spent})
    return out


class _StagesDoFn(beam.DoFn):
    def __init__(self, names: Sequence[str]):
        super().__init__()
        self.names = list(names)
        self._fns = None
        self._done = Metrics.counter(NAMESPACE, SILVER_STAGES_DONE)     # progress

    def setup(self):
        self._fns = [stage_function(n) for n in self.names]

    def process(self, day):
        for name, fn in zip(self.names, self._fns):
            day = _timed(name, day, fn)
            self._done.inc()
        yield day


class SilverStage(beam.PTransform):
    """One Silver stage over ``SilverDay | DayFailure`` elements (see module docstring)."""

    def __init__(self, name: str):
        super().__init__(label=f"Stage_{name}")
        stage_function(name)   # fail fast on an unknown or unimportable stage
        self.name = name

    def expand(self, days):
        return days | beam.ParDo(_StagesDoFn([self.name]))


class SilverStages(beam.PTransform):
    """The named stages in order (manifest order); see the module docstring."""

    def __init__(self, names: Sequence[str], fused: bool = True):
        super().__init__()
        self.names = list(names)
        self.fused = fused
        for name in self.names:
            stage_function(name)

    def expand(self, days):
        if self.fused:
            return days | "RunStages" >> beam.ParDo(_StagesDoFn(self.names))
        for name in self.names:
            days = days | f"Stage_{name}" >> SilverStage(name)
        return days
