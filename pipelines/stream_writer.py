"""``StreamWriter``: a streaming pipeline run as a child process, started and drained from
asyncio code (the seed's ``BronzeWriter`` / ``GoldWriter`` API).

    writer = BronzeWriter(bus=nats_bus, data_root="data")     # or GoldWriter
    await writer.start()     # launches python -m <pipeline>, returns once it consumes
    ...
    await writer.stop()      # SIGTERM: stop consuming, flush every buffer, ack, exit 0

The pipeline runs in its own process, so a crash of the caller cannot leave half-written
shards, and ``stop`` is the same drain a user gets with Ctrl-C.  The child runs in its own
session, so a terminal's Ctrl-C reaches only the caller, which drains it once with SIGTERM
(a second signal would cancel the drain), and it receives SIGTERM, i.e. drains, if the
caller dies without stopping it (Linux ``PR_SET_PDEATHSIG``).  ``bus`` is a
``NatsBus``, ``NatsSettings`` or a NATS URL.  A subclass names the pipeline module and the
consumer role (configs/streams.yaml ``consumers.<role>``) whose binding means "started".
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from typing import Optional, Sequence, Union

import nats

from io_connectors.config import PROJECT_ROOT
from io_connectors.nats.bus import NatsBus
from io_connectors.nats.settings import NatsSettings, connect
from io_connectors.nats.streams import consumer_active, consumer_spec

_PR_SET_PDEATHSIG = 1


def _drain_when_parent_dies() -> None:
    """In the child, before exec: SIGTERM (= drain) when the parent process dies."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


async def _delivered(js, spec) -> int:
    """How many messages the consumer has delivered so far (0 if it does not exist)."""
    try:
        return (await js.consumer_info(spec.stream, spec.durable)).delivered.consumer_seq
    except nats.js.errors.NotFoundError:
        return 0


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

    @property
    def _name(self) -> str:
        return self.module.rsplit(".", 1)[-1]

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", self.module, f"--runner={self.runner}",
               f"--nats_url={self.settings.url}"]
        if self.data_root:
            cmd.append(f"--data_root={self.data_root}")
        return cmd + self.extra_args

    async def start(self, timeout: float = 60.0) -> None:
        """Launches the pipeline and waits until its consumer is bound (or raises)."""
        if self.proc is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = dict(os.environ)
        for key in ("user", "password", "token", "tls_ca", "tls_cert", "tls_key"):
            value = getattr(self.settings, key)
            if value:
                env[f"NATS_{key.upper()}"] = value
        self.proc = subprocess.Popen(self.command(), cwd=str(PROJECT_ROOT), stdout=out,
                                     stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, preexec_fn=_drain_when_parent_dies)
        spec = consumer_spec(self.role)
        nc = await connect(self.settings)
        try:
            js = nc.jetstream()
            delivered_before = await _delivered(js, spec)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self._name} exited with {self.proc.returncode} "
                                       f"during start-up (see {self.log_path or 'its log'})")
                try:
                    info = await js.consumer_info(spec.stream, spec.durable)
                    # reading: a waiting pull request, or messages delivered since launch
                    if consumer_active(info) or info.delivered.consumer_seq > delivered_before:
                        return
                except nats.js.errors.NotFoundError:
                    pass
                await asyncio.sleep(0.1)
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
