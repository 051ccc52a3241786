"""Probe for the FnApiRunner's data-plane flush race (run by tests/test_fnapi_data_plane.py).

    python -m tests.fnapi_flush_probe [--beam_default] [--seeds 8] [--per_seed 20000]

One process: the FnApiRunner in ``multi_threading`` mode with two workers, as the
backfill runs it, set up by ``pipelines.runner_setup.prepare_runner`` (``--beam_default``:
Beam's own set-up, timed flush on).  Each seed's bundle emits ``per_seed`` small
``(key, (path, rows))`` elements, the shape of the backfill's piece references, spread
over more than a second (the flush interval), while threads spinning in Python keep the
interpreter busy (``sys.setswitchinterval`` small): the thread interleavings of a loaded
machine, every second instead of once in a while.  After a GroupByKey every value is
checked and counted.  Prints one JSON line ``{"expected", "values", "bad", "keys"}`` and
exits 0, or exits 1 with the runner's error (a coder error is one way the race shows).
Its address space is capped (``--max_gb``): a garbled length can make the runner try to
allocate everything (seen here: 23 GB before the kernel killed it).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.runner_setup import prepare_runner

KEYS = 50


class _Emit(beam.DoFn):
    def __init__(self, per_seed: int):
        self._per_seed = per_seed

    def process(self, seed):
        for i in range(self._per_seed):
            yield f"key-{i % KEYS:02d}", (f"pieces/{seed:05d}/{i:06d}.arrow", i)
            if i % 200 == 0:
                time.sleep(0.0005)           # the bundle lasts longer than the interval


class _Check(beam.DoFn):
    def __init__(self):
        self._values = Metrics.counter("probe", "values")
        self._bad = Metrics.counter("probe", "bad")
        self._keys = Metrics.counter("probe", "keys")

    def process(self, kv):
        key, values = kv
        values = list(values)
        ok = key.startswith("key-") and len(key) == 6
        bad = [v for v in values if not (type(v) is tuple and len(v) == 2
                                         and type(v[0]) is str and type(v[1]) is int)]
        self._keys.inc()
        self._values.inc(len(values))
        self._bad.inc(len(bad) + (0 if ok else len(values)))
        return []


def _spin(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        x += 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--beam_default", action="store_true")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--per_seed", type=int, default=20_000)
    ap.add_argument("--max_gb", type=float, default=6.0)
    args = ap.parse_args(argv)
    limit = int(args.max_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    options = PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=multi_threading",
                               "--direct_num_workers=2"])
    if not args.beam_default:
        prepare_runner(options, streaming=False)
    stop = threading.Event()
    for _ in range(4):
        threading.Thread(target=_spin, args=(stop,), daemon=True).start()
    sys.setswitchinterval(1e-5)
    p = beam.Pipeline(options=options)
    _ = (p
         | beam.Create(list(range(args.seeds)))
         | "Spread" >> beam.Reshuffle()
         | "Emit" >> beam.ParDo(_Emit(args.per_seed))
         | beam.GroupByKey()
         | "Check" >> beam.ParDo(_Check()))
    try:
        result = p.run()
        result.wait_until_finish()
    except Exception as exc:  # pylint: disable=broad-except
        stop.set()
        lines = [line for line in str(exc).splitlines() if line.strip()]
        print(f"runner failed: {lines[-1] if lines else repr(exc)}", file=sys.stderr)
        return 1
    stop.set()
    got = {c.key.metric.name: c.committed for c in result.metrics().query()["counters"]
           if c.key.metric.namespace == "probe"}
    print(json.dumps({"expected": args.seeds * args.per_seed, "values": got.get("values", 0),
                      "bad": got.get("bad", 0), "keys": got.get("keys", 0)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
