"""FlushPolicy and BoundedShards on the DirectRunner's streaming engine (Prism)."""
import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to

from transforms.flush_policy import BoundedShards, FlushPolicy


def test_count_rule_bounds_shards_and_end_of_input_flushes_rest(prism_options):
    stream = (TestStream()
              .add_elements([("a", i) for i in range(1700)] + [("b", i) for i in range(30)])
              .add_elements([("a", i) for i in range(1700, 2500)])
              .advance_watermark_to_infinity())
    with TestPipeline(options=prism_options()) as p:
        shards = p | stream | FlushPolicy(max_events=1000, max_seconds=60)
        flat = shards | beam.FlatMap(lambda kv: [(kv[0], v) for v in kv[1]])
        assert_that(flat, equal_to([("a", i) for i in range(2500)] + [("b", i) for i in range(30)]),
                    label="all_values_once")
        assert_that(shards | beam.Map(lambda kv: len(kv[1]) <= 1000),
                    equal_to([True] * 4), label="bounded_shards")


# The processing-time half of the rule needs the runner's real clock; it is exercised
# against a live pipeline in tests/test_bronze_stream_nats.py and
# tests/test_direct_runner_streams.py.


def test_bounded_shards_are_deterministic(prism_options):
    values = [("k", ("t%d" % i, (1000 - i, "x"))) for i in range(2300)]
    # rows ordered by their first field, whatever the input order: the same shards each run
    with TestPipeline(options=prism_options(streaming=False)) as p:
        shards = p | beam.Create(values) | BoundedShards(1000)
        assert_that(shards | beam.Map(lambda kv: (len(kv[1]), kv[1][0][1][0], kv[1][-1][1][0])),
                    equal_to([(1000, -1299, -300), (1000, -299, 700), (300, 701, 1000)]))
