"""Proof that the suite holds under load: the whole test suite three times in a row while a
CPU hog (``while :; do :; done``) occupies one core.

    ./run.sh stress-test [--runs 3] [--hogs 1] [pytest args ...]
    python -m tests.under_load [--runs N] [--hogs N] [pytest args ...]

The hog is a child of this process (it dies with it, even if this process is killed) and
is stopped at the end.  Each run is ``python -m pytest -q -p no:cacheprovider tests``; the
report gives, per run, the exit code, pytest's closing line, the failed tests, the wall
time and the file holding the run's whole output (``--log_dir``), with the load average
before and after.  Exit status 0 only if every run passed.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from io_connectors.embedded.processes import die_with_parent

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed|error).*?)\s*=*$", re.M)


def _loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.under_load",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="suite runs in a row (default 3)")
    ap.add_argument("--hogs", type=int, default=1, help="busy-looping processes (default 1)")
    ap.add_argument("--log_dir", default=None,
                    help="keep each run's pytest output here (default: a new temporary folder)")
    args, pytest_args = ap.parse_known_args(argv)
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="under-load-")
    os.makedirs(log_dir, exist_ok=True)
    hogs = [subprocess.Popen(["bash", "-c", "while :; do :; done"],
                             preexec_fn=die_with_parent(signal.SIGKILL))
            for _ in range(args.hogs)]
    results = []
    print(f"[under_load] {args.hogs} CPU hog(s) started (pids "
          f"{', '.join(str(h.pid) for h in hogs)}); load average {_loadavg()}", flush=True)
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            load = _loadavg()
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p",
                                   "no:cacheprovider", *pytest_args, "tests"], cwd=ROOT,
                                  capture_output=True, text=True)
            out = proc.stdout + proc.stderr
            log = os.path.join(log_dir, f"run-{run}.log")
            with open(log, "w") as fh:
                fh.write(out)
            found = _SUMMARY.findall(out)
            failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.M)))
            results.append((run, proc.returncode, found[-1][0] if found else "(no summary)",
                            failed, time.monotonic() - started, load))
            print(f"[under_load] run {run}/{args.runs}: exit {proc.returncode}, "
                  f"{results[-1][2]}, {results[-1][4]:.0f} s (load average at start {load})",
                  flush=True)
            for name in failed:
                print(f"[under_load]   failed: {name}", flush=True)
            print(f"[under_load]   output: {log}", flush=True)
            if proc.returncode not in (0, 1):
                print(out[-3000:], flush=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    ok = all(code == 0 for _, code, *_ in results) and len(results) == args.runs
    print(f"[under_load] {'ALL GREEN' if ok else 'NOT GREEN'}: {sum(1 for r in results if r[1] == 0)}"
          f"/{args.runs} runs passed with {args.hogs} CPU hog(s); hog stopped; load average "
          f"{_loadavg()}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
