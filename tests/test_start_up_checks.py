"""Fail fast, once, clearly: every streaming entry point checks NATS (reachable, credentials,
JetStream) and the data root (known scheme, creatable and writable locally, bucket
reachable on S3) before Beam starts; a permanent error met while running (S3 refusing
writes) stops the job with one line instead of restarting it.  Real nats-server and
SeaweedFS throughout."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from io_connectors.config import ConfigError
from io_connectors.embedded.nats_server import EmbeddedNatsServer, free_port
from io_connectors.embedded.s3_server import EmbeddedS3Server
from io_connectors.lake.storage import LakeStorage, resolve_data_root
from io_connectors.nats.settings import NatsSettings
from io_connectors.preflight import StartupError, check_data_root, check_nats
from tests.helpers import ROOT, publish
from transforms.sample_events import sample_events

pytestmark = pytest.mark.timeout(240)
S3_VARS = ("S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_REGION", "USE_S3", "DATA_ROOT",
           "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN")
HOUR_14 = 1734357600 * 10**9
READER = ("READERKEY0000", "reader-secret-only")


class _S3WithReader(EmbeddedS3Server):
    """SeaweedFS with a second identity that may read and list but not write."""

    def _write_configs(self) -> None:
        super()._write_configs()
        with open(self._s3_config_path()) as fh:
            cfg = json.load(fh)
        cfg["identities"].append({"name": "reader", "actions": ["Read", "List"],
                                  "credentials": [{"accessKey": READER[0],
                                                   "secretKey": READER[1]}]})
        with open(self._s3_config_path(), "w") as fh:
            json.dump(cfg, fh)


@pytest.fixture(scope="module")
def s3():
    with _S3WithReader() as srv:
        srv.create_bucket("lake")
        yield srv


@pytest.fixture(scope="module")
def secured_nats(tmp_path_factory):
    with EmbeddedNatsServer(store_dir=str(tmp_path_factory.mktemp("nats")),
                            extra_args=["--user", "lake", "--pass", "right"]) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in S3_VARS:
        monkeypatch.delenv(name, raising=False)


def _run(module, *args, env=None, timeout=120):
    """Runs ``python -m module args``; returns (exit code, output lines)."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, timeout=timeout,
                          capture_output=True, text=True, env={**os.environ, **(env or {})})
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if line.strip() and "apitools not found" not in line]
    return proc.returncode, lines


# ------------------------------------------------------------------ the checks themselves

def test_nats_checks_name_the_problem(secured_nats, nats_server):
    check_nats(NatsSettings(url=secured_nats.url, user="lake", password="right"))
    with pytest.raises(StartupError, match="rejected the connection.*Authorization "
                                           "Violation.*NATS_PASSWORD") as bad:
        check_nats(NatsSettings(url=secured_nats.url, user="lake", password="wrong"))
    assert bad.value.exit_code == 1
    with pytest.raises(StartupError, match="not reachable.*start nats-server or fix --nats_url"):
        check_nats(NatsSettings(url=f"nats://127.0.0.1:{free_port()}", connect_timeout_s=1))
    with EmbeddedNatsServer(extra_args=[]) as plain:        # -js is always on here
        check_nats(NatsSettings(url=plain.url))


def test_data_root_checks(tmp_path, s3):
    with pytest.raises(ConfigError, match="unknown scheme 'ftp'"):
        resolve_data_root("ftp://x/y")
    with pytest.raises(ConfigError, match="names no bucket"):
        resolve_data_root("s3:///prefix")
    fresh = tmp_path / "new" / "lake"
    check_data_root(LakeStorage(str(fresh)), create=True)
    assert fresh.is_dir() and os.listdir(fresh) == []          # the probe is removed
    with pytest.raises(StartupError, match="does not exist"):
        check_data_root(LakeStorage(str(tmp_path / "missing")), create=False)
    with pytest.raises(StartupError, match="cannot be created"):
        check_data_root(LakeStorage("/proc/marketlake/lake"), create=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StartupError, match="not a folder"):
        check_data_root(LakeStorage(str(tmp_path / "file")), create=True)
    args = dict(s3_endpoint=s3.endpoint, s3_access_key=s3.access_key,
                s3_secret_key=s3.secret_key)
    check_data_root(LakeStorage("s3://lake/prefix", **args))
    with pytest.raises(StartupError, match="bucket 'nope' does not exist"):
        check_data_root(LakeStorage("s3://nope/prefix", **args))
    with pytest.raises(StartupError, match="S3 denied access.*S3_SECRET_KEY"):
        check_data_root(LakeStorage("s3://lake/prefix", **{**args, "s3_secret_key": "no"}))


# ------------------------------------------------------------------ the entry points

@pytest.mark.parametrize("module", ["pipelines.bronze_stream", "pipelines.gold_stream"])
def test_wrong_nats_password_stops_at_once_with_one_line(module, secured_nats, tmp_path):
    code, lines = _run(module, "--runner=DirectRunner", f"--nats_url={secured_nats.url}",
                       f"--data_root={tmp_path}",
                       env={"NATS_USER": "lake", "NATS_PASSWORD": "wrong"})
    assert code == 1
    assert lines == [lines[0]] and lines[0].startswith("error: NATS at ") \
        and "Authorization Violation" in lines[0], lines


@pytest.mark.parametrize("root, env_override, expected", [
    ("s3://lake/p", {"S3_SECRET_KEY": "wrong"}, "S3 denied access"),
    ("s3://no-such-bucket/p", {}, "bucket 'no-such-bucket' does not exist"),
])
def test_s3_problems_stop_at_once_with_one_line(root, env_override, expected, nats_server, s3):
    code, lines = _run("pipelines.bronze_stream", "--runner=DirectRunner",
                       f"--nats_url={nats_server.url}", f"--data_root={root}",
                       env={**s3.env(), **env_override})
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


@pytest.mark.parametrize("root, code_wanted, expected", [
    ("ftp://x/y", 2, "unknown scheme 'ftp'"),
    ("/proc/marketlake/lake", 1, "cannot be created"),
])
def test_bad_data_root_stops_at_once_with_one_line(root, code_wanted, expected, nats_server):
    code, lines = _run("pipelines.bronze_stream", "--runner=DirectRunner",
                       f"--nats_url={nats_server.url}", f"--data_root={root}")
    assert code == code_wanted
    assert len(lines) == 1 and expected in lines[0], lines


def test_io_service_checks_before_launching(secured_nats, tmp_path):
    code, lines = _run("pipelines.io_service", f"--nats_url={secured_nats.url}",
                       f"--data_root={tmp_path}", env={"NATS_USER": "lake",
                                                       "NATS_PASSWORD": "wrong"})
    assert code == 1 and len(lines) == 1 and "Authorization Violation" in lines[0], lines
    code, lines = _run("pipelines.io_service", f"--nats_url={secured_nats.url}",
                       "--data_root=ftp://x/y")
    assert code == 2 and len(lines) == 1 and "unknown scheme" in lines[0], lines


def test_s3_refusing_writes_while_running_stops_the_job_without_restart(nats_server, s3):
    """The start-up check passes (the bucket answers to a read-only key); the first shard
    write is refused: a permanent error, reported in one line, never retried or restarted."""
    bucket = s3.create_bucket(f"ro-{uuid.uuid4().hex[:8]}")
    publish(nats_server.url, list(sample_events(HOUR_14, 2, trades_per_second=50, seed=1)))
    code, lines = _run("pipelines.bronze_stream", "--runner=DirectRunner",
                       f"--nats_url={nats_server.url}", f"--data_root={bucket}/lake",
                       "--flush_max_seconds=1", "--ack_wait_s=12",
                       env={**s3.env(), "S3_ACCESS_KEY": READER[0],
                            "S3_SECRET_KEY": READER[1]})
    text = "\n".join(lines)
    assert code == 1, text
    stops = [line for line in lines if "stopping: write of a" in line]
    assert len(stops) == 1 and "S3 denied access" in stops[0], text
    assert "Traceback" not in text and "restarting" not in text and "attempt" not in text
    assert len(lines) <= 12, text
