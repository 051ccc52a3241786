"""The FnApiRunner as the project sets it up delivers every element once, also when its
threads interleave badly.

Beam's FnApiRunner flushes its data plane from a timer thread that does not synchronise with
the thread writing elements (``pipelines.runner_setup.disable_fnapi_timed_flush``); on a
loaded machine elements are then lost, or split and decoded as garbage (the ``None`` among
the backfill's grouped piece references).  ``tests/fnapi_flush_probe.py`` provokes those
interleavings every second; with Beam's own set-up (``--beam_default``) it fails in nearly
every run here (lost elements, ``None`` values or a coder error), with the project's it
must deliver every element exactly once.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from tests.helpers import ROOT

pytestmark = pytest.mark.timeout(300)


def test_prepare_runner_switches_the_timed_flush_off_for_the_fnapi_runner():
    code = ("from apache_beam.options.pipeline_options import PipelineOptions\n"
            "from apache_beam.runners.portability.fn_api_runner import worker_handlers as w\n"
            "from pipelines.runner_setup import prepare_runner\n"
            "before = w.DATA_BUFFER_TIME_LIMIT_MS\n"
            "prepare_runner(PipelineOptions(['--runner=FnApiRunner']), streaming=False)\n"
            "print(before, w.DATA_BUFFER_TIME_LIMIT_MS)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["1000", "0"]


def test_the_backfill_default_runner_is_the_fnapi_runner_prepared_safely():
    from pipelines.bronze_backfill import _default_runner
    from pipelines.runner_setup import prepare_runner
    from apache_beam.runners.portability.fn_api_runner import worker_handlers
    options = PipelineOptions([])
    _default_runner(options, [], {"backfill": {"running_mode": "multi_threading"}})
    before = worker_handlers.DATA_BUFFER_TIME_LIMIT_MS
    try:
        prepare_runner(options, streaming=False)
        assert worker_handlers.DATA_BUFFER_TIME_LIMIT_MS == 0
    finally:
        worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = before


def test_no_element_is_lost_or_garbled_under_thread_contention():
    proc = subprocess.run([sys.executable, "-m", "tests.fnapi_flush_probe"], cwd=ROOT,
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"expected": 160_000, "values": 160_000, "bad": 0, "keys": 50}
