"""FlushPolicy and BatchPerKey on the DirectRunner's streaming engine (Prism) with TestStream."""
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
import apache_beam as beam

from transforms.flush_policy import FlushPolicy
from transforms.micro_batch import BatchPerKey


def _sizes(shards):
    return sorted((k, len(v)) for k, v in shards)


def test_count_rule_cuts_exact_shards_and_end_of_input_flushes_rest(prism_options):
    stream = (TestStream()
              .add_elements([("a", i) for i in range(1700)] + [("b", i) for i in range(30)])
              .add_elements([("a", i) for i in range(1700, 2500)])
              .advance_watermark_to_infinity())
    with TestPipeline(options=prism_options()) as p:
        shards = (p | stream | BatchPerKey(400) | FlushPolicy(max_events=1000, max_seconds=60))
        assert_that(shards | beam.Map(lambda kv: (kv[0], len(kv[1]))),
                    equal_to([("a", 1000), ("a", 1000), ("a", 500), ("b", 30)]))
        # every value exactly once, in arrival order within the key
        flat = shards | beam.FlatMap(lambda kv: [(kv[0], v) for v in kv[1]])
        assert_that(flat, equal_to([("a", i) for i in range(2500)] + [("b", i) for i in range(30)]),
                    label="all_values_once")


# The processing-time half of the rule needs the runner's real clock (the timer is set on
# wall-clock time, which TestStream's synthetic clock does not drive); it is exercised
# against a live pipeline in tests/test_bronze_stream_nats.py.


def test_triggered_flush_count_rule_and_end_of_input(prism_options):
    from transforms.flush_policy import TriggeredFlush
    stream = (TestStream()
              .add_elements([("a", i) for i in range(2500)] + [("b", i) for i in range(30)])
              .advance_watermark_to_infinity())
    with TestPipeline(options=prism_options()) as p:
        shards = p | stream | TriggeredFlush(max_events=1000, max_seconds=60)
        flat = shards | beam.FlatMap(lambda kv: [(kv[0], v) for v in kv[1]])
        assert_that(flat, equal_to([("a", i) for i in range(2500)] + [("b", i) for i in range(30)]))
        assert_that(shards | beam.Map(lambda kv: len(kv[1]) <= 1000), equal_to([True] * 4),
                    label="bounded_shards")
