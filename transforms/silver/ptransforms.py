"""Beam faces of the Silver stages.

``SilverStage(name)``: PCollection of ``SilverDay | DayFailure`` -> the same, with stage
``name`` applied to every ``SilverDay`` (a failure passes through; an exception turns
the day into a ``DayFailure`` naming the stage and the reason).  Stateless and per
element, so dates are processed independently and in parallel, and nothing depends on
the runner.

``SilverStages(names)``: the stages in manifest order, one ``SilverStage`` each (the
runner fuses them: a day's frames do not cross a shuffle between stages).
"""
from __future__ import annotations

from typing import Sequence

import apache_beam as beam

from transforms.silver.stages import apply_stage, stage_function


class _StageDoFn(beam.DoFn):
    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self._fn = None

    def setup(self):
        self._fn = stage_function(self.name)

    def process(self, day):
        yield apply_stage(self.name, day, self._fn)


class SilverStage(beam.PTransform):
    """One Silver stage over ``SilverDay | DayFailure`` elements (see module docstring)."""

    def __init__(self, name: str):
        super().__init__(label=f"Stage_{name}")
        stage_function(name)   # fail fast on an unknown or unimportable stage
        self.name = name

    def expand(self, days):
        return days | beam.ParDo(_StageDoFn(self.name))


class SilverStages(beam.PTransform):
    """The named stages in order (manifest order), each a :class:`SilverStage`."""

    def __init__(self, names: Sequence[str]):
        super().__init__()
        self.names = list(names)

    def expand(self, days):
        for name in self.names:
            days = days | f"Stage_{name}" >> SilverStage(name)
        return days
