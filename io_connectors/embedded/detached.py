"""Background services that outlive the command that started them (``./run.sh
jobserver-up``, ``./run.sh dask-up``), remembered in a state folder so that a later
command finds and stops exactly them.

``DetachedGroup(state_dir)`` starts named processes in their own sessions (a terminal's
Ctrl-C does not reach them), logs each to ``<state_dir>/<name>.log`` and records pid,
command line and ports in ``<state_dir>/state.json``.  A recorded process counts as alive
only if a process with its pid still runs its command line (a recycled pid is never
signalled).  ``stop()`` sends SIGTERM to each, SIGKILL after a grace period, and removes
the record.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

from io_connectors.config import PROJECT_ROOT


def _cmdline(pid: int) -> Optional[list[str]]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


def project_env() -> dict:
    """This process's environment with the project root first on ``PYTHONPATH``, for
    Python services that import the project."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH"))
                                        if p)
    return env


def process_alive(pid: int, argv: Sequence[str]) -> bool:
    """True if ``pid`` runs and (where /proc exists) runs ``argv``."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if not Path("/proc").is_dir():
        return True
    cmd = _cmdline(pid)
    return cmd is not None and cmd == list(argv)


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


class DetachedGroup:
    """Named background processes recorded under ``state_dir`` (see the module docstring).

    In: a state folder.  Out: ``start(name, argv, ...)``, ``state()`` (the record, with
    ``alive`` per service), ``alive()``, ``stop()``.  Guarantees: a process is only ever
    signalled if its pid still runs the recorded command; ``stop`` returns once every
    recorded process has exited (SIGKILL after ``grace_s``).
    """

    def __init__(self, state_dir: str | os.PathLike):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / "state.json"

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {"services": {}}

    def _write(self, data: dict) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, self.path)

    def state(self) -> dict:
        """The record: ``{"services": {name: {pid, argv, log, alive, ...}}, ...}``."""
        data = self._read()
        for svc in data.get("services", {}).values():
            svc["alive"] = process_alive(svc["pid"], svc["argv"])
        return data

    def alive(self) -> bool:
        """True if something is recorded and every recorded process still runs."""
        services = self.state().get("services", {})
        return bool(services) and all(s["alive"] for s in services.values())

    def log_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.log"

    def start(self, name: str, argv: Sequence[str], env: Optional[dict] = None,
              cwd: Optional[str] = None, **info) -> subprocess.Popen:
        """Starts ``argv`` detached (own session, stdin closed, output to its log) and
        records it with ``info`` (e.g. its port)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(name), "ab") as log:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                    start_new_session=True)
        # Until the child has exec'd, its command line is still ours: wait for that, so a
        # process that is starting is never taken for one that died.
        deadline = time.monotonic() + 10
        while (proc.poll() is None and _cmdline(proc.pid) not in (None, list(argv))
               and time.monotonic() < deadline):
            time.sleep(0.002)
        data = self._read()
        data.setdefault("services", {})[name] = dict(pid=proc.pid, argv=list(argv),
                                                     log=str(self.log_path(name)), **info)
        self._write(data)
        return proc

    def update(self, **fields) -> None:
        data = self._read()
        data.update(fields)
        self._write(data)

    def wait_until(self, ready, what: str, deadline: float) -> None:
        """Polls ``ready()`` until it is true.  If a recorded process dies first, or the
        monotonic ``deadline`` passes, stops the whole group and raises RuntimeError
        naming it (with the tail of its log)."""
        while True:
            services = self.state().get("services", {})
            dead = [n for n, s in services.items() if not s["alive"]]
            if dead:
                tail = log_tail(self.log_path(dead[0]))
                self.stop()
                raise RuntimeError(f"{dead[0]} exited during start-up: {tail}")
            if ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{what} not ready in time (logs in {self.state_dir})")
            time.sleep(0.05)

    def stop(self, grace_s: float = 10.0) -> list[str]:
        """Stops every recorded process that is still alive (reverse start order);
        returns their names.  The record is removed."""
        services = self.state().get("services", {})
        stopped = []
        for name, svc in reversed(list(services.items())):
            if not svc["alive"]:
                continue
            try:
                os.kill(svc["pid"], signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + grace_s
            while process_alive(svc["pid"], svc["argv"]) and time.monotonic() < deadline:
                _reap(svc["pid"])
                time.sleep(0.05)
            if process_alive(svc["pid"], svc["argv"]):
                os.kill(svc["pid"], signal.SIGKILL)
                while process_alive(svc["pid"], svc["argv"]):
                    _reap(svc["pid"])
                    time.sleep(0.05)
            stopped.append(name)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        return stopped


def log_tail(path, lines: int = 8) -> str:
    """The last lines of a log file, joined with " | " (for one-line errors)."""
    try:
        return " | ".join(open(path, errors="replace").read().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _reap(pid: int) -> None:
    """Collects ``pid`` if it is our own exited child (else it would stay a zombie and
    still count as running)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
