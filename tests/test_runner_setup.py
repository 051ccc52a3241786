"""runner_setup: garbage-collector tuning of the pipeline process."""
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
