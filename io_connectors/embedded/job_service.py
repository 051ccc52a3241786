"""A local portable job service: Prism started as a job server (``prism --job_port``) and a
Beam Python worker pool beside it (``./run.sh jobserver-up`` / ``jobserver-down``).

It is the topology of a Flink cluster with an SDK worker pool next to each TaskManager:
pipelines are submitted with

    --runner=PortableRunner (or FlinkRunner) --job_endpoint=localhost:P \\
    --environment_type=EXTERNAL --environment_config=localhost:W

and their user code runs in SDK worker processes the pool starts, not in the submitting
process.  Ports are free ports unless configured (``configs/runner.yaml`` ``job_service``
or the arguments); both listen on 127.0.0.1 only (Prism 2.77 has no flag for its
listening address; the Prism ``./run.sh setup`` builds listens on ``PRISM_LISTEN_HOST``,
default 127.0.0.1).  Processes, pids and logs are kept under the state folder
(``.run/jobserver`` by default, ignored by git).
"""
from __future__ import annotations

import sys
import time
from typing import Optional

from io_connectors.config import PROJECT_ROOT, load_config, resolve_path
from io_connectors.embedded.detached import DetachedGroup, port_open, project_env
from io_connectors.embedded.nats_server import free_port


def _settings() -> dict:
    return load_config("runner").get("job_service", {}) or {}


def default_state_dir() -> str:
    return resolve_path(_settings().get("state_dir", ".run/jobserver"))


class LocalJobService:
    """Prism job service + worker pool as detached background processes.

    In: the Prism binary, a state folder (default ``configs/runner.yaml``
    ``job_service.state_dir``) and ports (None or 0: the configured port, else a free one).  Out: ``up()``
    returns ``{"JOB_ENDPOINT": "localhost:P", "WORKER_POOL": "localhost:W"}`` once both
    accept connections (or the running service's endpoints if it is already up);
    ``down()`` stops both.  Also a context manager (up on enter, down on exit).
    Guarantees: never two services recorded in one state folder; a start that fails
    leaves nothing running and raises RuntimeError with the log's tail.
    """

    def __init__(self, prism: str, state_dir: Optional[str] = None,
                 job_port: Optional[int] = None, worker_pool_port: Optional[int] = None,
                 prism_log_level: str = "warn"):
        cfg = _settings()
        self.group = DetachedGroup(state_dir or default_state_dir())
        self.prism = prism
        self.job_port = job_port or int(cfg.get("job_port", 0) or 0)
        self.worker_pool_port = worker_pool_port or int(cfg.get("worker_pool_port", 0) or 0)
        self.prism_log_level = prism_log_level

    @staticmethod
    def endpoints(state: dict) -> dict:
        return {"JOB_ENDPOINT": f"localhost:{state['job_port']}",
                "WORKER_POOL": f"localhost:{state['worker_pool_port']}"}

    def running(self) -> Optional[dict]:
        """The endpoints of the service recorded here if both processes run, else None."""
        state = self.group.state()
        if self.group.alive() and "job_port" in state:
            return self.endpoints(state)
        return None

    def up(self, timeout_s: float = 60.0) -> dict:
        current = self.running()
        if current:
            return current
        self.group.stop()                    # leftovers of a half-dead service
        job_port = self.job_port or free_port()
        pool_port = self.worker_pool_port or free_port()
        env = project_env()
        self.group.start("prism", [self.prism, f"--job_port={job_port}", "--serve_http=false",
                                   f"--log_level={self.prism_log_level}", "--log_kind=text"],
                         cwd=str(self.group.state_dir), port=job_port)
        self.group.start("worker_pool", [sys.executable, "-m",
                                         "io_connectors.embedded.worker_pool",
                                         f"--port={pool_port}", "--host=127.0.0.1"],
                         env=env, cwd=str(PROJECT_ROOT), port=pool_port)
        self.group.update(job_port=job_port, worker_pool_port=pool_port)
        self.group.wait_until(lambda: port_open(job_port) and port_open(pool_port),
                              "the job service", time.monotonic() + timeout_s)
        return self.endpoints({"job_port": job_port, "worker_pool_port": pool_port})

    def down(self) -> list[str]:
        return self.group.stop()

    def __enter__(self) -> dict:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()
