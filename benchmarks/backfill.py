"""Backfill benchmark: ``pipelines.bronze_backfill`` against Databento's own client, on the
same DBN files, in the same invocation.

    python -m benchmarks.backfill [--days 3] [--scale 1.0] [--dbn_dir DIR] [--runner ...]
    ./run.sh bench backfill ...

Set-up (not timed): N full-scale synthetic days (``transforms.synthetic_session``: about
600k ES trades, 150k MBP-10 updates, 1k option trades and their definitions per day) are
written as Databento DBN files (``io_connectors.dbn.writer``: ``trades``, ``mbp-10`` and
``definition`` per day, zstd); ``--dbn_dir`` keeps and reuses them.  The baseline runs in
its own virtualenv (``.tools/databento-venv``, created on first use): ``databento`` from
PyPI (which pins an older ``databento-dbn`` than the project) with the project's pyarrow,
pandas and numpy versions.

Measured per dataset (the trades files with the definitions: futures and option trades;
the MBP-10 files; then everything at once), each a fresh process, wall clock from process
start to exit, peak memory summed over the process and its children (sampled from /proc):

- ours: ``python -m pipelines.bronze_backfill --files ... --data_root D`` with the runner
  flags given (default: none, i.e. the backfill's own default, the FnApiRunner with one
  worker per core), then its rows are read back from the lake with pyarrow and must equal
  the events in the files;
- Databento: the script of the issue, per file ``DBNStore.from_file(f).to_df(price_type=
  "float", pretty_ts=False, map_symbols=True)``, ``pa.Table.from_pandas`` and
  ``pq.write_table(..., compression="zstd")``, single-threaded, no validation, no
  partitioning, one file per input.

``--datasets`` picks the sets.  Ratio = Databento's seconds / ours (>= 1.0 means ours is at least as fast; the target),
each side's median of ``--repeat`` runs (default 3, the two alternating).
Then all the files again with other runners (``--other_runners``: the FnApiRunner with two
worker processes, and Prism, the DirectRunner's engine, which has one Python worker), our
peak memory for one day against N days (bounded by the block size, not by the input's
size) and the load average at the start and the end.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATABENTO_VENV = os.path.join(ROOT, ".tools", "databento-venv")
DATABENTO_VERSION = "0.88.0"
OTHER_RUNNERS = {
    "FnApiRunner, 2 worker processes": ["--runner=FnApiRunner",
                                        "--direct_running_mode=multi_processing",
                                        "--direct_num_workers=2"],
    "DirectRunner (Prism, one worker)": ["--runner=DirectRunner"],
}

DATABENTO_SCRIPT = '''
import os, sys
import databento, pyarrow as pa, pyarrow.parquet as pq
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rows = 0
for i, f in enumerate(sys.argv[2:]):
    df = databento.DBNStore.from_file(f).to_df(price_type="float", pretty_ts=False,
                                               map_symbols=True)
    pq.write_table(pa.Table.from_pandas(df), os.path.join(out, f"{i}.parquet"),
                   compression="zstd")
    rows += len(df)
print(rows)
'''


def weekdays_from(first: str, n: int) -> list[str]:
    day, out = dt.date.fromisoformat(first), []
    while len(out) < n:
        if day.weekday() < 5:
            out.append(day.isoformat())
        day += dt.timedelta(days=1)
    return out


def write_days(folder: str, dates: list[str], scale: float) -> dict:
    """DBN files per date (reused when present); returns {date: {schema: path}}."""
    from io_connectors.dbn.writer import write_session_dbn
    from transforms.synthetic_session import synthetic_session
    out = {}
    for date in dates:
        d = os.path.join(folder, date)
        paths = {s: os.path.join(d, f"{s}.dbn.zst") for s in ("trades", "mbp-10", "definition")}
        if not all(os.path.isfile(p) for p in paths.values()):
            t0 = time.perf_counter()
            write_session_dbn(synthetic_session(date, scale=scale, seed=3, signals=False), d)
            print(f"  wrote {date} as DBN in {time.perf_counter() - t0:.1f} s", flush=True)
        out[date] = paths
    return out


def databento_python() -> str:
    """The baseline's interpreter, installing it on first use."""
    py = os.path.join(DATABENTO_VENV, "bin", "python")
    if not os.path.isfile(py):
        import numpy
        import pandas
        import pyarrow
        print(f"  installing databento=={DATABENTO_VERSION} into {DATABENTO_VENV} ...",
              flush=True)
        subprocess.run([sys.executable, "-m", "venv", DATABENTO_VENV], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", f"databento=={DATABENTO_VERSION}",
                        f"pyarrow=={pyarrow.__version__}", f"pandas=={pandas.__version__}",
                        f"numpy=={numpy.__version__}"], check=True)
    return py


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def run_measured(cmd: list[str], env=None) -> dict:
    """Runs ``cmd``; wall seconds from start to exit, peak tree RSS, output."""
    peak = [0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}:\n{err[-3000:]}")
    return {"s": seconds, "peak": peak[0], "stdout": out, "stderr": err}


def lake_rows(data_root: str) -> dict:
    import pyarrow.dataset as pads
    out = {}
    for dataset in ("futures/trades", "futures/mbp10", "options/trades", "_dead_letter"):
        folder = os.path.join(data_root, "bronze", dataset)
        if os.path.isdir(folder):
            out[dataset] = pads.dataset(folder, format="parquet").count_rows()
    return out


_EVENTS: dict = {}


def expected_rows(files: list[str]) -> int:
    """Bronze rows the files hold: every market event (the synthetic data has no bad one),
    counted by the per-message decoder, file by file (cached)."""
    from io_connectors.dbn import decode as dbn_files
    instruments = dbn_files.load_instruments(files)
    total = 0
    for f in files:
        if f not in _EVENTS:
            stats = dbn_files.DecodeStats()
            for _ in dbn_files.iter_events([f], instruments, stats=stats):
                pass
            _EVENTS[f] = stats.total_events
        total += _EVENTS[f]
    return total


def run_ours(files: list[str], work: str, runner: list[str]) -> tuple[dict, dict]:
    root = os.path.join(work, "lake")
    shutil.rmtree(root, ignore_errors=True)
    ours = run_measured([sys.executable, "-m", "pipelines.bronze_backfill", *runner,
                         "--files", *files, f"--data_root={root}"])
    rows = lake_rows(root)
    shutil.rmtree(root, ignore_errors=True)
    return ours, rows


def check_rows(label: str, files: list[str], rows: dict) -> int:
    want = expected_rows(files)
    got = sum(n for d, n in rows.items() if d != "_dead_letter")
    if got != want or rows.get("_dead_letter"):
        raise RuntimeError(f"{label}: {got} rows readable, {want} expected, "
                           f"dead letters {rows.get('_dead_letter', 0)}")
    return want


def measure(label: str, files: list[str], work: str, runner: list[str], db_py: str) -> dict:
    ours, rows = run_ours(files, work, runner)
    script = os.path.join(work, "databento_to_parquet.py")
    with open(script, "w") as fh:
        fh.write(DATABENTO_SCRIPT)
    out_db = os.path.join(work, f"databento-{label}")
    shutil.rmtree(out_db, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    db = run_measured([db_py, script, out_db, *files], env=env)
    shutil.rmtree(out_db, ignore_errors=True)
    return {"label": label, "ours": ours, "rows": rows, "db": db,
            "db_rows": int(db["stdout"].strip().splitlines()[-1])}


def _median(runs: list, side: str) -> dict:
    """The run of ``side`` with the median wall clock (its peak memory with it)."""
    ordered = sorted((r[side] for r in runs), key=lambda m: m["s"])
    return ordered[len(ordered) // 2]


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--first_date", default="2024-12-16")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--dbn_dir", default=None, help="keep (and reuse) the DBN files here")
    ap.add_argument("--runner", nargs="*", default=[],
                    help="runner flags for our backfill (default: none, the backfill's own)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per dataset, ours and Databento alternating; medians printed")
    ap.add_argument("--datasets", nargs="+", default=["trades", "mbp-10", "all"],
                    choices=["trades", "mbp-10", "all"],
                    help="which file sets to measure (default: all three)")
    ap.add_argument("--other_runners", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--skip_memory_check", action="store_true")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"({os.cpu_count()} cores)")
    work = tempfile.mkdtemp(prefix="bench-backfill-")
    dbn_dir = args.dbn_dir or os.path.join(work, "dbn")
    try:
        days = write_days(dbn_dir, weekdays_from(args.first_date, args.days), args.scale)
        db_py = databento_python()
        defs = [p["definition"] for p in days.values()]
        sets = [("trades", [p["trades"] for p in days.values()] + defs),
                ("mbp-10", [p["mbp-10"] for p in days.values()]),
                ("all", [p[s] for p in days.values() for s in ("trades", "mbp-10", "definition")])]
        print(f"{args.days} synthetic days (scale {args.scale}); ours: "
              f"bronze_backfill {' '.join(args.runner) or '(its default runner)'}")
        results = []
        chosen = [(label, files) for label, files in sets if label in args.datasets]
        for label, files in chosen:
            runs = []
            for _ in range(args.repeat):          # ours and Databento alternate
                r = measure(label, files, work, args.runner, db_py)
                want = check_rows(label, files, r["rows"])
                runs.append(r)
            r = {"ours": _median(runs, "ours"), "db": _median(runs, "db"),
                 "db_rows": runs[0]["db_rows"]}
            results.append(r)
            o, d = r["ours"], r["db"]
            print(f"  {label:7s} {want:>10,} rows | ours {o['s']:6.2f} s {want / o['s']:>9,.0f} "
                  f"rows/s peak {_mb(o['peak']):>8} | databento {d['s']:6.2f} s "
                  f"{r['db_rows'] / d['s']:>9,.0f} rows/s peak {_mb(d['peak']):>8} | "
                  f"ratio {d['s'] / o['s']:.2f}x"
                  + (f"  (median of {args.repeat}; ratios "
                     + ", ".join(f"{x['db']['s'] / x['ours']['s']:.2f}" for x in runs) + ")"
                     if args.repeat > 1 else ""), flush=True)
        if args.other_runners and "all" in args.datasets:
            label, files = sets[-1]
            db_s = results[-1]["db"]["s"]
            for name, flags in OTHER_RUNNERS.items():
                ours, rows = run_ours(files, work, flags)
                want = check_rows(name, files, rows)
                print(f"  all, {name}: {ours['s']:6.2f} s {want / ours['s']:>9,.0f} rows/s "
                      f"peak {_mb(ours['peak']):>8} | ratio {db_s / ours['s']:.2f}x", flush=True)
        if not args.skip_memory_check and "all" in args.datasets:
            one = measure("one-day", list(list(days.values())[0].values()), work, args.runner,
                          db_py)
            print(f"  memory: ours peak {_mb(one['ours']['peak'])} for 1 day, "
                  f"{_mb(results[-1]['ours']['peak'])} for {args.days} days "
                  f"(databento {_mb(one['db']['peak'])} and {_mb(results[-1]['db']['peak'])})")
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
