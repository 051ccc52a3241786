"""Shared fixtures: a real nats-server (JetStream), Prism pipeline options, lake folders."""
from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from io_connectors.embedded.nats_server import EmbeddedNatsServer  # noqa: E402
from pipelines.runner_setup import prism_location  # noqa: E402


@pytest.fixture(scope="session")
def prism_path():
    from apache_beam.options.pipeline_options import PipelineOptions
    return prism_location(PipelineOptions([]))


@pytest.fixture
def prism_options(prism_path):
    """Options for a TestPipeline on the DirectRunner's streaming engine (Prism)."""
    def make(streaming=True, *extra):
        from apache_beam.options.pipeline_options import PipelineOptions
        args = ["--runner=PrismRunner", f"--prism_location={prism_path}",
                "--environment_type=LOOPBACK", "--prism_log_level=warn", *extra]
        if streaming:
            args.append("--streaming")
        return PipelineOptions(args)
    return make


@pytest.fixture
def nats_server(tmp_path):
    """A fresh nats-server with JetStream on a free port and its own store directory."""
    srv = EmbeddedNatsServer(store_dir=str(tmp_path / "nats-store")).start()
    yield srv
    srv.cleanup()


def wait_for(predicate, timeout=60.0, interval=0.1, message="condition"):
    """Polls ``predicate`` until it returns a truthy value; fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def run_async(coro):
    return asyncio.run(coro)


import logging as _logging  # noqa: E402

# Beam's Prism job server logs from an atexit hook after pytest closed its streams.
_logging.raiseExceptions = False
