"""Silver on a Dask cluster: N full-scale dates built by ``SilverFeatureBuilder`` on Beam's
DaskRunner (a local scheduler and two one-thread workers, as ``./run.sh dask-up`` starts)
against the same build on the DirectRunner (Prism), in the same invocation.

    python -m benchmarks.silver_dask [--dates 10] [--scale 1.0] [--workers 2]
                                     [--version vX.Y.Z] [--lake DIR]
    ./run.sh bench silver_dask ...

Set-up (not timed): synthetic sessions of N weekdays plus the 3 warm-up weekdays before
them written to a Bronze lake (``benchmarks.silver_build.seed``; ``--lake`` keeps and
reuses it), and the Dask cluster started (its start-up is not timed: a cluster is started
once and serves many jobs).  Measured, each run in a fresh interpreter building into its
own Silver root over the same Bronze: wall time from the builder's call to its return,
i.e. submission, the pipeline and the driver's completeness checks and version files.
Printed: seconds per date, signals (both runs must agree), the Dask/Prism speed-up, which
workers ran tasks, and the load average at the start of each run.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def newest_manifest() -> str:
    def key(path):
        return tuple(int(x) for x in os.path.basename(path)[1:-5].split(".") if x.isdigit())
    return max(glob.glob(os.path.join(ROOT, "configs", "features", "v*.yaml")), key=key)


def build(lake: str, dates: list[str], manifest: str, pipeline_args: list[str],
          dask_address: str | None) -> dict:
    """One build into a fresh Silver root whose bronze/ links to ``lake``."""
    from pipelines.silver_builder import SilverFeatureBuilder
    out_root = tempfile.mkdtemp(prefix="silver-dask-out-", dir=lake)
    try:
        os.symlink(os.path.join(lake, "bronze"), os.path.join(out_root, "bronze"))
        builder = SilverFeatureBuilder(data_root=out_root, pipeline_args=pipeline_args)
        workers: set = set()
        t0 = time.perf_counter()
        if dask_address:
            from distributed import Client, get_task_stream
            with Client(dask_address, timeout=30) as client:
                with get_task_stream(client) as ts:
                    stats = builder.build_feature_set(manifest, dates)
                names = {a: w.get("name", a) for a, w in
                         client.scheduler_info(n_workers=-1)["workers"].items()}
            workers = {str(names.get(t["worker"], t["worker"])) for t in ts.data}
        else:
            stats = builder.build_feature_set(manifest, dates)
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    if stats["dates_failed"]:
        raise RuntimeError(f"dates failed: {stats['dates_failed']}")
    return {"wall_s": wall, "signals": stats["signal_count"], "dates": len(stats["dates_built"]),
            "workers": sorted(workers)}


def _measure(mode: str, lake: str, dates: list[str], manifest: str, address: str = "") -> dict:
    r = subprocess.run([sys.executable, "-m", "benchmarks.silver_dask", "--worker", mode,
                        "--lake", lake, "--worker-dates", ",".join(dates), "--manifest",
                        manifest, "--address", address],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{r.stderr[-4000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.silver_dask",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--dates", type=int, default=10, help="number of dates (default 10)")
    ap.add_argument("--last-date", default="2024-12-13")
    ap.add_argument("--scale", type=float, default=1.0, help="synthetic day scale (1 = full)")
    ap.add_argument("--workers", type=int, default=2, help="Dask workers (default 2)")
    ap.add_argument("--manifest", default=None, help="feature manifest (default: newest)")
    ap.add_argument("--lake", default=None, help="Bronze lake to create or reuse (kept)")
    ap.add_argument("--worker", choices=["prism", "dask"], help=argparse.SUPPRESS)
    ap.add_argument("--worker-dates", help=argparse.SUPPRESS)
    ap.add_argument("--address", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    manifest = args.manifest or newest_manifest()
    if args.worker:
        sys.path.insert(0, ROOT)
        dates = args.worker_dates.split(",")
        pipeline_args = (["--runner=DirectRunner"] if args.worker == "prism" else
                         ["--runner=DaskRunner", f"--dask_client_address={args.address}"])
        print(json.dumps(build(args.lake, dates, manifest, pipeline_args,
                               args.address if args.worker == "dask" else None)))
        return 0

    from benchmarks.silver_build import seed, weekdays_ending
    from io_connectors.embedded.dask_cluster import LocalDaskCluster
    dates = weekdays_ending(args.last_date, args.dates)
    warm = weekdays_ending(dates[0], 4)[:-1]
    lake = args.lake or tempfile.mkdtemp(prefix="bench-silver-dask-")
    state = tempfile.mkdtemp(prefix="bench-dask-state-")
    cluster = LocalDaskCluster(state_dir=state, workers=args.workers)
    runs = {}
    try:
        print(f"seeding Bronze at {lake}: {len(warm)} warm-up + {len(dates)} dates, "
              f"scale {args.scale}", flush=True)
        seed(lake, warm + dates, args.scale)
        address = cluster.up()["DASK_ADDRESS"]
        print(f"Dask scheduler {address}, {args.workers} one-thread workers", flush=True)
        for mode in ("prism", "dask"):
            load = os.getloadavg()[0]
            runs[mode] = dict(_measure(mode, lake, dates, manifest, address), load=load)
            print(f"  [{mode}] {runs[mode]['wall_s']:.1f} s", flush=True)
    finally:
        cluster.down()
        shutil.rmtree(state, ignore_errors=True)
        if not args.lake:
            shutil.rmtree(lake, ignore_errors=True)
    n = len(dates)
    prism, dask = runs["prism"], runs["dask"]
    print(f"\nSilver build of {n} dates, {os.path.basename(manifest)[:-5]}, scale {args.scale}, "
          f"{os.cpu_count()} CPUs")
    for mode, r in runs.items():
        print(f"  {mode:<6} {r['wall_s']:7.2f} s  {r['wall_s'] / n:6.2f} s/date  "
              f"{r['signals']:,} signals  (load average at start {r['load']:.2f})")
    print(f"  Dask workers that ran tasks: {', '.join(dask['workers']) or 'none'}")
    print(f"  speed-up Dask ({args.workers} workers) / Prism: {prism['wall_s'] / dask['wall_s']:.2f}x")
    if prism["signals"] != dask["signals"]:
        print(f"  MISMATCH: {prism['signals']} signals on Prism, {dask['signals']} on Dask")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
