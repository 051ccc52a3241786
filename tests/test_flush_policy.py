"""FlushPolicy on the DirectRunner's streaming engine (Prism)."""
import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to

from transforms.flush_policy import FlushPolicy


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


# --------------------------------------------------------------------------- batched input

def _run_bundle(dofn, batches):
    """Drives ``_CutFullShards`` through one bundle; returns (full shards, rest elements)."""
    from apache_beam.utils.timestamp import Timestamp
    dofn.start_bundle()
    full = []
    for i, batch in enumerate(batches):
        full.extend(dofn.process(batch, ts=Timestamp(100 + i)))
    rest = list(dofn.finish_bundle())
    return full, rest


def test_cut_full_shards_within_a_bundle_and_leaves_the_rest_per_event():
    from apache_beam.pvalue import TaggedOutput
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import Timestamp
    from transforms.flush_policy import _CutFullShards

    dofn = _CutFullShards(max_events=3)
    batches = [[("a", 1), ("b", 1), ("a", 2)], [("a", 3), ("a", 4), ("b", 2)],
               [("a", 5), ("a", 6), ("a", 7)]]
    full, rest = _run_bundle(dofn, batches)
    # a reaches 3 in the second batch and again in the third; b never does
    assert full == [("a", [1, 2, 3]), ("a", [4, 5, 6])]
    assert all(isinstance(r, TaggedOutput) and r.tag == _CutFullShards.REST for r in rest)
    assert sorted(r.value.value for r in rest) == [("a", 7), ("b", 1), ("b", 2)]
    ts = {r.value.value: r.value.timestamp for r in rest}
    # timestamped with the earliest batch that started the key's current buffer
    assert ts[("a", 7)] == Timestamp(102) and ts[("b", 1)] == Timestamp(100)
    assert all(r.value.windows == (GlobalWindow(),) for r in rest)
    # nothing carries over into the next bundle
    full, rest = _run_bundle(dofn, [[("a", 8)]])
    assert full == [] and [r.value.value for r in rest] == [("a", 8)]


def test_batched_flush_policy_lands_every_value_once_in_bounded_shards(prism_options):
    from transforms.flush_policy import BatchedFlushPolicy

    values = [("a", i) for i in range(2500)] + [("b", i) for i in range(30)]
    batches = [values[i:i + 400] for i in range(0, len(values), 400)]
    stream = (TestStream()
              .add_elements(batches[:4])
              .add_elements(batches[4:])
              .advance_watermark_to_infinity())
    with TestPipeline(options=prism_options()) as p:
        full, flushed = p | stream | BatchedFlushPolicy(max_events=1000, max_seconds=60)
        both = (full, flushed) | beam.Flatten()
        flat = both | beam.FlatMap(lambda kv: [(kv[0], v) for v in kv[1]])
        assert_that(flat, equal_to(values), label="all_values_once")
        assert_that(full | beam.Map(lambda kv: len(kv[1])),
                    _all_satisfy(lambda n: n == 1000), label="full_shards_exactly_max")
        assert_that(flushed | beam.Map(lambda kv: len(kv[1])),
                    _all_satisfy(lambda n: 0 < n <= 1000), label="flushed_shards_bounded")


def _all_satisfy(pred):
    def check(actual):
        bad = [a for a in actual if not pred(a)]
        assert not bad, f"unexpected shard sizes {bad}"
    return check
