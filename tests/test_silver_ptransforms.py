"""The Silver stages as Beam PTransforms on the DirectRunner (Prism): one stage alone, the
fused and unfused compositions agree, and a failing day does not stop the others."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.silver_fixtures import at, day_with, trades_frame
from transforms.silver.day import DayFailure
from transforms.silver.ptransforms import SilverStage, SilverStages
from transforms.silver.session import NS_PER_S

DATE = "2024-12-16"


def _day(date=DATE, n=5):
    t0 = at(date, "10:00")
    return day_with(date, trades=trades_frame(
        [(t0 + i * 61 * NS_PER_S, 6000.0 + i) for i in range(n)]))


def _summary(day):
    if isinstance(day, DayFailure):
        return (day.date, "failed", day.stage)
    return (day.date, len(day.bars_1m), float(day.bars_1m["close"].iloc[-1]),
            sorted(day.lineage.get("stage_seconds", {})))


def test_one_stage_alone(prism_options):
    with TestPipeline(options=prism_options(streaming=False)) as p:
        out = (p | beam.Create([_day()]) | SilverStage("bars_1m") | beam.Map(_summary))
        assert_that(out, equal_to([(DATE, 5, 6004.0, ["bars_1m"])]))


@pytest.mark.parametrize("fused", [True, False])
def test_composed_stages_and_failure_isolation(prism_options, fused):
    broken = day_with("2024-12-17", trades=None)          # no trades: bars_1m must fail
    with TestPipeline(options=prism_options(streaming=False)) as p:
        out = (p | beam.Create([_day(), broken])
               | SilverStages(["bars_1m", "bars_2m"], fused=fused) | beam.Map(_summary))
        assert_that(out, equal_to([(DATE, 5, 6004.0, ["bars_1m", "bars_2m"]),
                                   ("2024-12-17", "failed", "bars_1m")]))


def test_unknown_stage_is_refused_at_construction():
    with pytest.raises(KeyError, match="telepathy"):
        SilverStages(["bars_1m", "telepathy"])
