"""runner_setup: garbage-collector tuning of the pipeline process; bundle ends of bounded jobs."""
import gc

from pipelines.runner_setup import tune_gc_for_streaming


def test_tune_gc_freezes_live_objects_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        tune_gc_for_streaming(gen0_threshold=12_345)
        assert gc.get_threshold()[0] == 12_345
        assert gc.get_freeze_count() > 10_000, "imported modules moved out of collection"
        assert gc.isenabled(), "cycles are still collected"
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_bounded_bundles_end_without_waiting_on_the_state_sampler():
    """A bounded job's in-process SDK workers time bundles with a short sampler period, so a
    bundle's end does not wait up to 200 ms for the sampler thread (read inside a DoFn of
    a real FnApiRunner pipeline); a streaming job keeps Beam's default."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.worker import statesampler
    from apache_beam.testing.util import assert_that, equal_to
    from pipelines.runner_setup import SAMPLER_PERIOD_MS, prepare_runner

    def period(_):
        return statesampler.get_current_tracker().sampling_period_ms

    original = statesampler.StateSampler
    try:
        prepare_runner(PipelineOptions(["--runner=FnApiRunner"]), streaming=True)
        assert statesampler.StateSampler is original
        options = prepare_runner(PipelineOptions(["--runner=FnApiRunner"]), streaming=False)
        assert SAMPLER_PERIOD_MS < statesampler.DEFAULT_SAMPLING_PERIOD_MS
        with beam.Pipeline(options=options) as p:
            assert_that(p | beam.Create([1, 2]) | beam.Map(period),
                        equal_to([SAMPLER_PERIOD_MS] * 2))
    finally:
        statesampler.StateSampler = original
