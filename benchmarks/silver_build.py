"""Silver build benchmark: the Beam Silver pipeline against the same 18 stages run as plain
Python (no Beam), in the same invocation, on full-scale synthetic days, for v3.1.0 and
v3.2.0 side by side.

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
    processes, which runs two dates at a time (Prism has one Python worker per job),
    newest version only.
(1) and (2) run for every version of ``--versions``; the v3.2.0 run also prints what its
validation.json says over the N dates: the dead-feature checks (violations per column) and
the 4-minute label distribution (issue 9 asks for neither BREAK nor REJECT under 15 %).
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
FEATURES = os.path.join(ROOT, "configs", "features")


def manifest_path(version: str) -> str:
    return os.path.join(FEATURES, f"{version}.yaml")
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


def run_beam(lake: str, dates: list[str], version: str, pipeline_args=None) -> dict:
    from pipelines.silver_builder import SilverFeatureBuilder
    out_root = tempfile.mkdtemp(prefix="silver-out-", dir=lake)
    try:
        # Silver output goes to its own root whose bronze/ is a link to the shared lake
        os.symlink(os.path.join(lake, "bronze"), os.path.join(out_root, "bronze"))
        builder = SilverFeatureBuilder(data_root=out_root, pipeline_args=pipeline_args)
        t0 = time.perf_counter()
        stats = builder.build_feature_set(manifest_path(version), dates)
        wall = time.perf_counter() - t0
        checks = builder.get_validation(version)["checks"]
        quality = {name: {"success": checks[name]["success"],
                          "violations": checks[name]["violations"]}
                   for name in ("constant_features", "mostly_zero_features",
                                "saturated_episode_dims") if name in checks}
        quality["outcome"] = checks["label_distribution"]["observed"].get("outcome", {})
        quality["success"] = stats["validation_success"]
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    if stats["dates_failed"]:
        raise RuntimeError(f"dates failed: {stats['dates_failed']}")
    return {"wall_s": wall, "signals": stats["signal_count"], "peak_mb": _peak_mb(),
            "validation": quality}


def run_baseline(lake: str, dates: list[str], version: str) -> dict:
    from io_connectors.lake.storage import LakeStorage
    from io_connectors.lake.silver_inputs import read_silver_day
    from transforms.feature_manifest import load_manifest
    from transforms.silver.day import DayFailure
    from transforms.silver.stages import run_stages
    m = load_manifest(manifest_path(version))
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


def _measure(mode: str, lake: str, dates: list[str], version: str) -> dict:
    """Runs one measurement in a fresh interpreter (own peak RSS); returns its JSON."""
    r = subprocess.run([sys.executable, "-m", "benchmarks.silver_build", "--worker", mode,
                        "--lake", lake, "--worker-dates", ",".join(dates),
                        "--worker-version", version],
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
    ap.add_argument("--worker-version", help=argparse.SUPPRESS)
    ap.add_argument("--versions", default="v3.1.0,v3.2.0",
                    help="feature-set versions to measure side by side (comma-separated)")
    args = ap.parse_args(argv)
    if args.worker:
        sys.path.insert(0, ROOT)
        dates = args.worker_dates.split(",")
        if args.worker == "beam-mp":
            print(json.dumps(run_beam(args.lake, dates, args.worker_version, _MULTI_PROCESS)))
        else:
            fn = run_beam if args.worker == "beam" else run_baseline
            print(json.dumps(fn(args.lake, dates, args.worker_version)))
        return 0

    dates = weekdays_ending(args.last_date, args.dates)
    warm = weekdays_ending(dates[0], 4)[:-1]
    lake = args.lake or tempfile.mkdtemp(prefix="bench-silver-")
    load = os.getloadavg()[0]
    try:
        print(f"seeding Bronze at {lake}: {len(warm)} warm-up + {len(dates)} dates, "
              f"scale {args.scale}", flush=True)
        seed(lake, warm + dates, args.scale)
        versions = [v.strip() for v in args.versions.split(",") if v.strip()]
        results = {}
        for version in versions:
            for label, ds in (("1 date", dates[-1:]), (f"{len(dates)} dates", dates)):
                beam = _measure("beam", lake, ds, version)
                base = _measure("baseline", lake, ds, version)
                results[version, label] = (ds, beam, base)
        multi = _measure("beam-mp", lake, dates, versions[-1])
        print(f"\nSilver build, scale {args.scale}, {len(dates)} dates "
              f"(load average at start {load:.2f}, at end {os.getloadavg()[0]:.2f})")
        print(f"{'':28s}" + "".join(f"{v:>22s}" for v in versions))
        for label in ("1 date", f"{len(dates)} dates"):
            n = len(results[versions[0], label][0])
            rows = {"signals": lambda b, _: f"{b['signals']}",
                    "beam s (s/date)": lambda b, _: f"{b['wall_s']:.2f} ({b['wall_s'] / n:.2f})",
                    "baseline s (s/date)": lambda _, a: f"{a['wall_s']:.2f} ({a['wall_s'] / n:.2f})",
                    "beam / baseline": lambda b, a: f"{b['wall_s'] / a['wall_s']:.2f}x",
                    "peak MB beam / baseline": lambda b, a: f"{b['peak_mb']:.0f} / {a['peak_mb']:.0f}"}
            print(f"({label})")
            for name, fmt in rows.items():
                print(f"  {name:26s}" + "".join(
                    f"{fmt(results[v, label][1], results[v, label][2]):>22s}" for v in versions))
        ds, beam, base = results[versions[-1], f"{len(dates)} dates"]
        print(f"({len(ds)} dates, {versions[-1]}, FnApiRunner with 2 worker processes: "
              f"{' '.join(_MULTI_PROCESS)})")
        print(f"    beam     {multi['wall_s']:7.2f} s  {multi['wall_s'] / len(ds):6.2f} s/date  "
              f"peak {multi['peak_mb']:7.0f} MB (this process and its workers)")
        for version in versions:
            per = results[version, f"{len(dates)} dates"][1]["wall_s"] / len(dates)
            print(f"target {version}: <= {TARGET_S_PER_DATE:.0f} s/date amortised over "
                  f"{len(dates)} dates: {per:.2f} s/date "
                  f"{'PASS' if per <= TARGET_S_PER_DATE else 'MISS'}")
        for version in versions:
            q = results[version, f"{len(dates)} dates"][1]["validation"]
            outcome = q.pop("outcome")
            total = sum(outcome.values()) or 1
            shares = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(outcome.items()))
            print(f"validation {version} over {len(dates)} dates: success {q.pop('success')}; "
                  f"4-minute outcome {shares}")
            for name, c in q.items():
                print(f"    {name:24s} success {c['success']}; violations "
                      f"{sorted(c['violations']) or 'none'}")
    finally:
        if not args.lake:
            shutil.rmtree(lake, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
