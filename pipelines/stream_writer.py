"""``StreamWriter``: a streaming pipeline run as a child process, started and drained from
asyncio code (the seed's ``BronzeWriter`` / ``GoldWriter`` API).

    writer = BronzeWriter(bus=nats_bus, data_root="data")     # or GoldWriter
    await writer.start()     # launches python -m <pipeline>, returns once it consumes
    ...
    await writer.stop()      # SIGTERM: stop consuming, flush every buffer, ack, exit 0

The pipeline runs in its own process, so a crash of the caller cannot leave half-written
shards, and ``stop`` is the same drain a user gets with Ctrl-C.  The child runs in its own
session, so a terminal's Ctrl-C reaches only the caller, which drains it once with SIGTERM
(a second signal would cancel the drain), and it receives SIGHUP, i.e. drains, if the
caller dies without stopping it (Linux ``PR_SET_PDEATHSIG``; the kernel may send it once
per thread of the dying caller, and the pipeline drains once however many arrive).  ``bus``
is a ``NatsBus``, ``NatsSettings`` or a NATS URL.  A subclass names the pipeline module and
its consumer role (configs/streams.yaml ``consumers.<role>``).  "Started" means that a
reader of THIS pipeline announced on its instance's ready subject that it consumes: other
instances reading the same consumer (horizontal scale-out) do not count.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Optional, Sequence, Union

import nats

from io_connectors.config import PROJECT_ROOT
from io_connectors.embedded.processes import die_with_parent
from io_connectors.nats.bus import NatsBus
from io_connectors.nats.settings import NatsSettings, connect
from io_connectors.nats.streams import control_subjects

def _settings(bus) -> NatsSettings:
    if isinstance(bus, NatsSettings):
        return bus
    if isinstance(bus, NatsBus):
        return bus.settings
    if isinstance(bus, str):
        return NatsSettings.resolve(bus)
    if bus is None:
        return NatsSettings.resolve()
    raise TypeError(f"bus must be a NatsBus, NatsSettings or URL, got {type(bus).__name__}")


class StreamWriter:
    """Runs one streaming pipeline (``module``, consumer ``role``) until stopped.

    Args:
      bus: where to consume from (NatsBus / NatsSettings / URL; default env/config).
      data_root: lake root (default env DATA_ROOT, else configs/lake.yaml).
      runner: Beam runner name (default DirectRunner, i.e. Prism).
      extra_args: more flags of the pipeline.
      log_path: where the pipeline's output goes (default: discarded).
    """

    module: str = ""          # e.g. "pipelines.bronze_stream"
    role: str = ""            # e.g. "bronze"

    def __init__(self, bus: Union[NatsBus, NatsSettings, str, None] = None,
                 data_root: Optional[str] = None, runner: str = "DirectRunner",
                 extra_args: Sequence[str] = (), log_path: Optional[str] = None):
        self.settings = _settings(bus)
        self.data_root = data_root
        self.runner = runner
        self.extra_args = list(extra_args)
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None
        self._run_id: Optional[str] = None

    @property
    def _name(self) -> str:
        return self.module.rsplit(".", 1)[-1]

    @property
    def run_id(self) -> str:
        """This instance's ``--run_id`` (given in ``extra_args``, else chosen here): names
        its drain and ready subjects, so that other instances on the same consumer never
        answer for it."""
        for arg in self.extra_args:
            if arg.startswith("--run_id="):
                return arg.split("=", 1)[1]
        if self._run_id is None:
            self._run_id = f"{self._name}-{uuid.uuid4().hex[:12]}"
        return self._run_id

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", self.module, f"--runner={self.runner}",
               f"--nats_url={self.settings.url}"]
        if self.data_root:
            cmd.append(f"--data_root={self.data_root}")
        if not any(a.startswith("--run_id=") for a in self.extra_args):
            cmd.append(f"--run_id={self.run_id}")
        return cmd + self.extra_args

    async def start(self, timeout: float = 60.0) -> None:
        """Launches the pipeline and returns once one of ITS readers consumes (it announces
        that on its ready subject), or raises."""
        if self.proc is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = dict(os.environ)
        for key in ("user", "password", "token", "tls_ca", "tls_cert", "tls_key"):
            value = getattr(self.settings, key)
            if value:
                env[f"NATS_{key.upper()}"] = value
        nc = await connect(self.settings)
        try:
            ready = await nc.subscribe(control_subjects(self.run_id)["ready"], max_msgs=1)
            await nc.flush()
            self.proc = subprocess.Popen(self.command(), cwd=str(PROJECT_ROOT), stdout=out,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True,
                                         preexec_fn=die_with_parent(signal.SIGHUP))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self._name} exited with {self.proc.returncode} "
                                       f"during start-up (see {self.log_path or 'its log'})")
                try:
                    await ready.next_msg(timeout=0.2)
                    return
                except nats.errors.TimeoutError:
                    pass
        finally:
            await nc.close()
        await self.stop()
        raise TimeoutError(f"{self._name} did not start consuming within {timeout}s")

    async def stop(self, timeout: float = 40.0) -> int:
        """Drains the pipeline (flush + ack) and returns its exit code (0 = clean)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            raise TimeoutError(f"{self._name} did not drain within {timeout}s; killed")
        return proc.returncode
