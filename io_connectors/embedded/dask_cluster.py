"""A local Dask cluster for the bounded pipelines on Beam's DaskRunner (``./run.sh dask-up``
/ ``dask-down``): one ``dask scheduler`` and N ``dask worker`` processes (dask/distributed
from PyPI), every one listening on 127.0.0.1 only, dashboards off.

Workers run this interpreter with the project on their path, one thread each (the Beam
DoFns are CPU-bound Python: more threads per process would only share one GIL), named
``worker-1`` .. ``worker-N``, with their scratch space under the state folder, and exit
on their own if the scheduler is gone for a minute.  Processes, pids and logs are kept
under the state folder (``.run/dask`` by default, ignored by git).
"""
from __future__ import annotations

import sys
import time
from typing import Optional

from io_connectors.config import PROJECT_ROOT, load_config, resolve_path
from io_connectors.embedded.detached import DetachedGroup, port_open, project_env
from io_connectors.embedded.nats_server import free_port


def _settings() -> dict:
    return load_config("runner").get("dask", {}) or {}


class LocalDaskCluster:
    """A Dask scheduler and workers as detached background processes.

    In: a state folder (default ``configs/runner.yaml`` ``dask.state_dir``), the scheduler
    port (None or 0: configured, else free), the number of workers and threads per
    worker.  Out: ``up()`` returns ``{"DASK_ADDRESS": "tcp://127.0.0.1:P"}`` once every
    worker is registered with the scheduler (or the running cluster's address);
    ``down()`` stops them; ``workers()`` the registered workers' names.  Guarantees: a
    start that fails leaves nothing running and raises RuntimeError with the log's tail.
    """

    def __init__(self, state_dir: Optional[str] = None, scheduler_port: Optional[int] = None,
                 workers: Optional[int] = None, threads_per_worker: Optional[int] = None):
        cfg = _settings()
        self.group = DetachedGroup(state_dir or resolve_path(cfg.get("state_dir", ".run/dask")))
        self.scheduler_port = scheduler_port or int(cfg.get("scheduler_port", 0) or 0)
        self.n_workers = workers or int(cfg.get("workers", 2))
        self.threads = threads_per_worker or int(cfg.get("threads_per_worker", 1))
        if self.n_workers < 1 or self.threads < 1:
            raise ValueError("a Dask cluster needs >= 1 worker with >= 1 thread")

    @staticmethod
    def _address(port: int) -> str:
        return f"tcp://127.0.0.1:{port}"

    def running(self) -> Optional[dict]:
        state = self.group.state()
        if self.group.alive() and "scheduler_port" in state:
            return {"DASK_ADDRESS": self._address(state["scheduler_port"])}
        return None

    def workers(self, timeout_s: float = 10.0) -> list[str]:
        """Names of the workers registered with the running scheduler."""
        current = self.running()
        if not current:
            return []
        return sorted(_registered(current["DASK_ADDRESS"], timeout_s))

    def up(self, timeout_s: float = 90.0) -> dict:
        current = self.running()
        if current:
            return current
        self.group.stop()
        port = self.scheduler_port or free_port()
        address = self._address(port)
        env = project_env()
        dask = [sys.executable, "-m", "dask"]
        self.group.start("scheduler", [*dask, "scheduler", "--host=127.0.0.1", f"--port={port}",
                                       "--dashboard-address=127.0.0.1:0", "--no-dashboard"],
                         env=env, cwd=str(PROJECT_ROOT), port=port)
        self.group.update(scheduler_port=port)
        deadline = time.monotonic() + timeout_s
        self.group.wait_until(lambda: port_open(port), "Dask scheduler", deadline)
        names = [f"worker-{i}" for i in range(1, self.n_workers + 1)]
        for name in names:
            scratch = self.group.state_dir / name
            self.group.start(name, [*dask, "worker", address, "--host=127.0.0.1",
                                    f"--name={name}", f"--nthreads={self.threads}",
                                    "--nworkers=1", "--no-nanny", "--no-dashboard",
                                    "--dashboard-address=127.0.0.1:0",
                                    f"--local-directory={scratch}", "--death-timeout=60"],
                             env=env, cwd=str(PROJECT_ROOT))
        self.group.wait_until(lambda: set(names) <= set(_registered(address, 5.0)),
                              "Dask workers", deadline)
        return {"DASK_ADDRESS": address}

    def down(self) -> list[str]:
        return self.group.stop(grace_s=15.0)

    def __enter__(self) -> dict:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()


def _registered(address: str, timeout_s: float) -> list[str]:
    """Names of the workers the scheduler at ``address`` knows ([] if it cannot be asked)."""
    from distributed import Client  # pylint: disable=import-outside-toplevel
    try:
        with Client(address, timeout=timeout_s) as client:
            return [w.get("name") for w in client.scheduler_info(n_workers=-1)["workers"].values()]
    except (OSError, TimeoutError):
        return []
