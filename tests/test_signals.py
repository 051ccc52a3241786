"""Signals win at every phase of a streaming pipeline (connecting, draining, a second
signal, between restarts), and no child outlives its parent, even a SIGKILLed one.
(The running phase, SIGTERM and Ctrl-C drains, is tested in test_bronze_stream_nats.py.)
Each test asserts what ended the process (its log and exit code), not how fast."""
from __future__ import annotations

import os
import shutil
import re
import signal
import socket
import subprocess
import threading
import uuid

import pytest
import yaml

from io_connectors.config import config_dir
from io_connectors.embedded.s3_server import EmbeddedS3Server
from tests.conftest import wait_for
from tests.helpers import count_rows, kill_group, publish, start_pipeline
from transforms.sample_events import sample_events

pytestmark = pytest.mark.timeout(300)
HOUR_14 = 1734357600 * 10**9
S3_VARS = ("S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_REGION", "USE_S3", "DATA_ROOT")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:                  # a zombie is not alive
            return fh.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _prism_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", "prism"], capture_output=True,
                         text=True)
    return [int(x) for x in out.stdout.split()]


def _log(path) -> str:
    return open(path, errors="replace").read()


def _trades(seconds, seed, start_s=0):
    return list(sample_events(HOUR_14 + start_s * 10**9, seconds, trades_per_second=40,
                              seed=seed))


@pytest.fixture
def s3(tmp_path, monkeypatch):
    for name in S3_VARS:
        monkeypatch.delenv(name, raising=False)
    srv = EmbeddedS3Server(store_dir=str(tmp_path / "s3")).start()
    for key, value in srv.env().items():
        monkeypatch.setenv(key, value)
    try:
        yield srv
    finally:
        srv.kill()
        srv.cleanup()


def test_signal_while_connecting_ends_the_start_up(tmp_path, monkeypatch):
    """NATS accepts the TCP connection and never answers; the connect timeout is a minute.
    SIGTERM during that wait ends the process (exit 0, nothing had started)."""
    configs = tmp_path / "configs"
    shutil.copytree(config_dir(), configs)
    streams = yaml.safe_load((configs / "streams.yaml").read_text())
    streams["nats"]["connect_timeout_s"] = 60
    (configs / "streams.yaml").write_text(yaml.safe_dump(streams))
    monkeypatch.setenv("LAKE_CONFIG_DIR", str(configs))
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted = []
    threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
    proc = start_pipeline("pipelines.bronze_stream",
                          f"--nats_url=nats://127.0.0.1:{silent.getsockname()[1]}",
                          f"--data_root={tmp_path / 'lake'}", log_path=str(tmp_path / "b.log"))
    try:
        wait_for(lambda: accepted, 60, message="the pipeline connecting to NATS")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(50) == 0              # well before the 60 s connect timeout
        assert "stopped by a signal during start-up" in _log(tmp_path / "b.log")
    finally:
        kill_group(proc)
        silent.close()


def _stalled_drain(nats_server, tmp_path, s3, *flags):
    """A bronze_stream on S3 whose store died with a shard to write: the writer retries,
    so a drain cannot finish.  Returns (process, log path, Prism pid)."""
    bucket = s3.create_bucket(f"lake-{uuid.uuid4().hex[:8]}")
    log = tmp_path / "b.log"
    proc = start_pipeline("pipelines.bronze_stream", f"--nats_url={nats_server.url}",
                          f"--data_root={bucket}/lake", "--flush_max_seconds=1",
                          "--ack_wait_s=12", *flags, log_path=str(log))
    try:
        publish(nats_server.url, _trades(2, seed=1))
        wait_for(lambda: re.search(r"NATS consumer \S+ reading", _log(log)), 120,
                 message="the pipeline consuming")
        prism = wait_for(lambda: _prism_children(proc.pid), 30, message="the Prism child")[0]
        s3.kill()
        publish(nats_server.url, _trades(2, seed=2, start_s=10))
        wait_for(lambda: "retrying for up to" in _log(log), 120, message="a write retrying")
    except BaseException:
        kill_group(proc)                 # a failed set-up leaves nothing running
        raise
    return proc, log, prism


def test_drain_that_cannot_finish_is_cancelled_after_the_shutdown_timeout(
        nats_server, tmp_path, s3):
    proc, log, prism = _stalled_drain(nats_server, tmp_path, s3, "--shutdown_timeout_s=5")
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 1
        text = _log(log)
        assert "drain did not finish in 5s; cancelling" in text
        assert "bronze_stream finished (exit 1)" in text
        wait_for(lambda: not _alive(prism), 30, message="Prism to end with its launcher")
    finally:
        kill_group(proc)


def test_a_second_signal_cancels_the_drain(nats_server, tmp_path, s3):
    proc, log, prism = _stalled_drain(nats_server, tmp_path, s3, "--shutdown_timeout_s=120")
    try:
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "draining" in _log(log), 30, message="the drain to start")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 1               # long before the 120 s shutdown timeout
        text = _log(log)
        assert "second signal 2: cancelling" in text and "did not finish" not in text
        wait_for(lambda: not _alive(prism), 30, message="Prism to end with its launcher")
    finally:
        kill_group(proc)


def test_signal_between_restarts_ends_the_run(nats_server, tmp_path):
    log = tmp_path / "b.log"
    proc = start_pipeline("pipelines.bronze_stream", f"--nats_url={nats_server.url}",
                          f"--data_root={tmp_path / 'lake'}", "--flush_max_seconds=1",
                          "--restart_backoff_s=120", log_path=str(log))
    try:
        publish(nats_server.url, _trades(2, seed=3))
        wait_for(lambda: count_rows(str(tmp_path / "lake"), "futures/trades") > 0, 120,
                 message="the job running")
        prism = wait_for(lambda: _prism_children(proc.pid), 30, message="the Prism child")
        os.kill(prism[0], signal.SIGKILL)                 # the runner crashes
        wait_for(lambda: "restarting in 120s" in _log(log), 60, message="the restart back-off")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 1                  # the last job had failed
        text = _log(log)
        assert "signal during the restart back-off: not restarting" in text
    finally:
        kill_group(proc)


def test_prism_dies_with_a_sigkilled_launcher(nats_server, tmp_path):
    proc = start_pipeline("pipelines.bronze_stream", f"--nats_url={nats_server.url}",
                          f"--data_root={tmp_path / 'lake'}", log_path=str(tmp_path / "b.log"))
    try:
        prism = wait_for(lambda: _prism_children(proc.pid), 120, message="the Prism child")
        os.kill(proc.pid, signal.SIGKILL)            # the launcher only, not its group
        proc.wait(30)
        wait_for(lambda: not any(_alive(p) for p in prism), 30,
                 message="Prism to die with its parent")
    finally:
        kill_group(proc)
