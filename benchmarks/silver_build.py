"""Silver build benchmark: the Beam Silver pipeline against the same 18 stages run as plain
Python (no Beam), in the same invocation, on full-scale synthetic days.

    python -m benchmarks.silver_build [--dates 10] [--scale 1.0] [--lake DIR] [--keep]
    ./run.sh bench silver_build ...

Set-up (not timed): synthetic sessions (``transforms.synthetic_session``, about 600k ES
trades, 150k MBP-10 updates and 1k option trades per day at scale 1) are written to a
Bronze lake with ``io_connectors.lake.bronze_direct`` for N weekdays plus the 3 warm-up weekdays
before them.  ``--lake DIR`` keeps (and on a later run reuses) that lake.

Measured, each in its own subprocess so that peak memory (max RSS of the process and its
children, e.g. Prism) is its own:
(1) one date:  Beam (``SilverFeatureBuilder``, DirectRunner = Prism) vs baseline;
(2) N dates:   the same, seconds per date amortised over N;
(3) N dates on Beam's FnApiRunner (the DirectRunner's other engine) with two worker
    processes, which runs two dates at a time (Prism has one Python worker per job).
The baseline reads the same Bronze (``read_silver_day``) and runs ``run_stages`` date after
date in one process, and writes nothing; the Beam run also publishes the date folders and
manifest/validation.  Target printed beside the figures: Beam <= 3 s per date amortised
over 10 dates on the 2-core reference machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(ROOT, "configs", "features", "v3.1.0.yaml")
TARGET_S_PER_DATE = 3.0


def weekdays_ending(last: str, n: int) -> list[str]:
    day, out = dt.date.fromisoformat(last), []
    while len(out) < n:
        if day.weekday() < 5:
            out.append(day.isoformat())
        day -= dt.timedelta(days=1)
    return out[::-1]


def seed(lake: str, dates: list[str], scale: float) -> None:
    from io_connectors.lake.bronze_direct import write_bronze_events
    from io_connectors.lake.bronze_reader import BronzeReader
    from io_connectors.lake.storage import LakeStorage
    from transforms.synthetic_session import synthetic_session
    storage = LakeStorage(lake)
    have = set(BronzeReader(storage=storage).available_dates("futures/trades", "ES"))
    for d in dates:
        if d in have:
            continue
        t0 = time.perf_counter()
        counts = write_bronze_events(storage, synthetic_session(d, scale=scale, seed=11,
                                                                signals=False))
        print(f"  seeded {d}: {counts.get('futures/trades', 0):,} trades, "
              f"{counts.get('futures/mbp10', 0):,} book updates "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)


def _peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


_MULTI_PROCESS = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
                  "--direct_num_workers=2"]


def run_beam(lake: str, dates: list[str], pipeline_args=None) -> dict:
    from pipelines.silver_builder import SilverFeatureBuilder
    out_root = tempfile.mkdtemp(prefix="silver-out-", dir=lake)
    try:
        # Silver output goes to its own root whose bronze/ is a link to the shared lake
        os.symlink(os.path.join(lake, "bronze"), os.path.join(out_root, "bronze"))
        builder = SilverFeatureBuilder(data_root=out_root, pipeline_args=pipeline_args)
        t0 = time.perf_counter()
        stats = builder.build_feature_set(MANIFEST, dates)
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    if stats["dates_failed"]:
        raise RuntimeError(f"dates failed: {stats['dates_failed']}")
    return {"wall_s": wall, "signals": stats["signal_count"], "peak_mb": _peak_mb()}


def run_baseline(lake: str, dates: list[str]) -> dict:
    from io_connectors.lake.storage import LakeStorage
    from io_connectors.lake.silver_inputs import read_silver_day
    from transforms.feature_manifest import load_manifest
    from transforms.silver.day import DayFailure
    from transforms.silver.stages import run_stages
    m = load_manifest(MANIFEST)
    storage = LakeStorage(lake)
    t0 = time.perf_counter()
    signals = 0
    for d in dates:
        day = run_stages(read_silver_day(storage, d, m.parameters, m.columns(),
                                         m.label_columns), m.stages)
        if isinstance(day, DayFailure):
            raise RuntimeError(str(day))
        signals += len(day.events)
    return {"wall_s": time.perf_counter() - t0, "signals": signals, "peak_mb": _peak_mb()}


def _measure(mode: str, lake: str, dates: list[str]) -> dict:
    """Runs one measurement in a fresh interpreter (own peak RSS); returns its JSON."""
    r = subprocess.run([sys.executable, "-m", "benchmarks.silver_build", "--worker", mode,
                        "--lake", lake, "--worker-dates", ",".join(dates)],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dates", type=int, default=10, help="number of dates for (2)")
    ap.add_argument("--last-date", default="2024-12-13")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--lake", default=None, help="Bronze lake to create or reuse (kept)")
    ap.add_argument("--worker", choices=["beam", "beam-mp", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--worker-dates", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        sys.path.insert(0, ROOT)
        dates = args.worker_dates.split(",")
        if args.worker == "beam-mp":
            print(json.dumps(run_beam(args.lake, dates, _MULTI_PROCESS)))
        else:
            fn = run_beam if args.worker == "beam" else run_baseline
            print(json.dumps(fn(args.lake, dates)))
        return 0

    dates = weekdays_ending(args.last_date, args.dates)
    warm = weekdays_ending(dates[0], 4)[:-1]
    lake = args.lake or tempfile.mkdtemp(prefix="bench-silver-")
    load = os.getloadavg()[0]
    try:
        print(f"seeding Bronze at {lake}: {len(warm)} warm-up + {len(dates)} dates, "
              f"scale {args.scale}", flush=True)
        seed(lake, warm + dates, args.scale)
        results = {}
        for label, ds in (("1 date", dates[-1:]), (f"{len(dates)} dates", dates)):
            beam = _measure("beam", lake, ds)
            base = _measure("baseline", lake, ds)
            results[label] = (ds, beam, base)
        multi = _measure("beam-mp", lake, dates)
        print(f"\nSilver build, v3.1.0, scale {args.scale} (load average at start {load:.2f})")
        for label, (ds, beam, base) in results.items():
            n = len(ds)
            print(f"({label}) {beam['signals']} signals")
            print(f"    beam     {beam['wall_s']:7.2f} s  {beam['wall_s'] / n:6.2f} s/date  "
                  f"peak {beam['peak_mb']:7.0f} MB")
            print(f"    baseline {base['wall_s']:7.2f} s  {base['wall_s'] / n:6.2f} s/date  "
                  f"peak {base['peak_mb']:7.0f} MB")
            print(f"    ratio    beam takes {beam['wall_s'] / base['wall_s']:.2f}x the baseline's time")
        ds, beam, base = results[f"{len(dates)} dates"]
        print(f"({len(ds)} dates, FnApiRunner with 2 worker processes: "
              f"{' '.join(_MULTI_PROCESS)})")
        print(f"    beam     {multi['wall_s']:7.2f} s  {multi['wall_s'] / len(ds):6.2f} s/date  "
              f"peak {multi['peak_mb']:7.0f} MB (this process and its workers)")
        print(f"    ratio    beam takes {multi['wall_s'] / base['wall_s']:.2f}x the baseline's time")
        per = beam["wall_s"] / len(ds)
        print(f"target: <= {TARGET_S_PER_DATE:.0f} s/date amortised over {len(ds)} dates: "
              f"{per:.2f} s/date {'PASS' if per <= TARGET_S_PER_DATE else 'MISS'}")
    finally:
        if not args.lake:
            shutil.rmtree(lake, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
