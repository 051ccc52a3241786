"""Proves that --runner=DirectRunner really streams here: shards are released by the
processing-time rule while an unbounded source is still running (Beam's fallback
FnApiRunner would only fire them after the source ended, i.e. never)."""
from __future__ import annotations

import os
import time

import apache_beam as beam
from apache_beam import coders
from apache_beam.io.unbounded_source import (CheckpointMark, ReadFromUnboundedSource,
                                             UnboundedReader, UnboundedSource)
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from pipelines.runner_setup import prepare_runner
from tests.conftest import wait_for
from transforms.flush_policy import FlushPolicy


class _Mark(CheckpointMark):
    pass


class _MarkCoder(coders.Coder):
    def encode(self, value):
        return b""

    def decode(self, encoded):
        return _Mark()

    def is_deterministic(self):
        return True


class _TickReader(UnboundedReader):
    """Emits one element every 50 ms until ``stop_file`` exists; then finishes."""

    def __init__(self, stop_file, progress_file):
        self.stop_file, self.progress_file = stop_file, progress_file
        self.i, self.last = 0, 0.0
        self.done = False

    def start(self):
        return self.advance()

    def advance(self):
        if os.path.exists(self.stop_file):
            self.done = True
            return False
        if time.time() - self.last < 0.05:
            return False
        self.last = time.time()
        self.i += 1
        tmp = f"{self.progress_file}.tmp"
        with open(tmp, "w") as fh:       # replaced whole: a reader never sees it empty
            fh.write(str(self.i))
        os.replace(tmp, self.progress_file)
        return True

    def get_current(self):
        return ("k", self.i)

    def get_current_timestamp(self):
        return Timestamp.now()

    def get_watermark(self):
        return MAX_TIMESTAMP if self.done else Timestamp.now() - 1

    def get_checkpoint_mark(self):
        return _Mark()


_READERS = {}


class _TickSource(UnboundedSource):
    def __init__(self, stop_file, progress_file):
        self.stop_file, self.progress_file = stop_file, progress_file

    def split(self, desired_num_splits, options=None):
        return [self]

    def create_reader(self, options, checkpoint_mark):
        # one reader per process, so a resumed read continues the same count
        key = self.stop_file
        if key not in _READERS:
            _READERS[key] = _TickReader(self.stop_file, self.progress_file)
        return _READERS[key]

    def get_checkpoint_mark_coder(self):
        return _MarkCoder()

    def default_output_coder(self):
        return coders.TupleCoder([coders.StrUtf8Coder(), coders.VarIntCoder()])


class _RecordShard(beam.DoFn):
    def __init__(self, out_dir):
        self.out_dir = out_dir

    def process(self, shard):
        key, values = shard
        with open(os.path.join(self.out_dir, f"shard-{min(values):06d}"), "w") as fh:
            fh.write(",".join(map(str, values)))


def test_direct_runner_fires_while_source_runs(tmp_path):
    stop, progress = str(tmp_path / "stop"), str(tmp_path / "progress")
    out = tmp_path / "shards"
    out.mkdir()
    options = PipelineOptions(["--runner=DirectRunner"])
    prepare_runner(options, streaming=True)
    p = beam.Pipeline(options=options)
    (p | ReadFromUnboundedSource(_TickSource(stop, progress), poll_interval=0.05,
                                 max_read_time_seconds=0.5)
       | FlushPolicy(max_events=10_000, max_seconds=1)
       | beam.ParDo(_RecordShard(str(out))))
    result = p.run()
    try:
        wait_for(lambda: len(os.listdir(out)) >= 2, 60, message="two time-released shards")
        # the source is still producing: it has not been told to stop
        produced = int(open(progress).read())
        wait_for(lambda: int(open(progress).read()) > produced, 10, message="source progress")
        assert not os.path.exists(stop)
    finally:
        open(stop, "w").close()
        result.wait_until_finish()
    values = sorted(int(v) for f in os.listdir(out) for v in open(out / f).read().split(","))
    assert values == list(range(1, len(values) + 1)), "every element exactly once"
