"""``./run.sh dask-up`` / ``dask-down``: a real Dask scheduler and two workers on
127.0.0.1, reported once both are registered, stopped without leftovers."""
from __future__ import annotations

import json
import os
import subprocess

import psutil
import pytest
from distributed import Client

from tests.helpers import ROOT

pytestmark = pytest.mark.timeout(300)


def _listening(pid: int) -> list:
    return [c.laddr for c in psutil.Process(pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN]


def _alive(pid: int) -> bool:
    return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def test_dask_up_reports_two_registered_workers_on_loopback_and_down_stops_them(tmp_path):
    state = str(tmp_path / "dask")
    up = f"./run.sh dask-up --state_dir={state}"
    out = subprocess.run(["bash", "-c", f'eval "$({up})" && echo "$DASK_ADDRESS"'], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    try:
        assert out.returncode == 0, out.stderr[-2000:]
        address = out.stdout.strip()
        assert address.startswith("tcp://127.0.0.1:")
        with Client(address, timeout=10) as client:       # registered before `up` returned
            names = sorted(w["name"] for w in client.scheduler_info()["workers"].values())
            assert names == ["worker-1", "worker-2"]
            assert all(w["nthreads"] == 1 for w in client.scheduler_info()["workers"].values())
        again = subprocess.run(["./run.sh", "dask-up", f"--state_dir={state}"], cwd=ROOT,
                               capture_output=True, text=True, timeout=300)
        assert again.stdout.splitlines() == [f"DASK_ADDRESS={address}"]
        record = json.load(open(os.path.join(state, "state.json")))
        pids = [svc["pid"] for svc in record["services"].values()]
        assert len(pids) == 3
        for pid in pids:
            addrs = _listening(pid)
            assert addrs and all(a.ip == "127.0.0.1" for a in addrs), (pid, addrs)
    finally:
        down = subprocess.run(["./run.sh", "dask-down", f"--state_dir={state}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
    assert down.returncode == 0 and "worker-1" in down.stderr
    assert not any(_alive(p) for p in pids)
    assert not os.path.exists(os.path.join(state, "state.json"))
