"""DBN data in: replay through NATS + bronze_stream, and the bounded backfill, give the
same Bronze rows; a re-run of either adds nothing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from io_connectors.dbn import decode as dbn_files
from tests.conftest import wait_for
from tests.helpers import (ROOT, assert_consumer_state, kill_group,
                           parquet_files, start_pipeline)

pytestmark = pytest.mark.timeout(300)

SAMPLES = os.path.join(ROOT, "..", "shared", "data", "databento")
FILES = [os.path.join(SAMPLES, d, f) for d, f in [
    ("GLBX.MDP3", "test_data.trades.dbn.zst"), ("GLBX.MDP3", "test_data.mbp-10.dbn.zst"),
    ("GLBX.MDP3", "test_data.definition.dbn.zst"), ("OPRA.PILLAR", "test_data.trades.dbn.zst"),
    ("OPRA.PILLAR", "test_data.definition.dbn.zst")]]
DATASETS = ("futures/trades", "futures/mbp10", "options/trades")


def _rows(data_root):
    out = {}
    for d in DATASETS:
        rows = []
        for p in parquet_files(data_root, d):
            rows += pq.read_table(p).to_pylist()
        out[d] = sorted(rows, key=repr)
    return out


def _backfill(data_root):
    r = subprocess.run([sys.executable, "-m", "pipelines.bronze_backfill", "--runner=DirectRunner",
                        "--files", *FILES, f"--data_root={data_root}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]


def test_real_samples_backfill_equals_replay_and_reruns_add_nothing(nats_server, tmp_path):
    expected = list(dbn_files.iter_events(FILES, dbn_files.load_instruments(FILES)))
    assert {s for s, _ in expected} == {"market.futures.trades", "market.futures.mbp10",
                                        "market.options.trades"}
    back = str(tmp_path / "backfill")
    _backfill(back)
    files_before = sorted(sum((parquet_files(back, d) for d in DATASETS), []))
    _backfill(back)                                   # idempotent
    assert sorted(sum((parquet_files(back, d) for d in DATASETS), [])) == files_before
    backfilled = _rows(back)
    assert sum(len(v) for v in backfilled.values()) == len(expected)
    assert {r["symbol"] for r in backfilled["futures/trades"]} == {"ESH1"}
    opt = backfilled["options/trades"][0]
    assert opt["underlying"] == "AAPL" and opt["right"] == "C" and opt["strike"] == 250.0

    streamed = str(tmp_path / "stream")
    proc = start_pipeline("pipelines.bronze_stream", f"--nats_url={nats_server.url}",
                          f"--data_root={streamed}", log_path=str(tmp_path / "s.log"))
    try:
        for _ in range(2):                            # the second replay is deduplicated
            r = subprocess.run([sys.executable, "-m", "pipelines.replay", "--source", "dbn",
                                "--files", *FILES, "--speed", "0",
                                f"--nats_url={nats_server.url}"],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr[-3000:]
            assert f"total: {len(expected)}" in r.stdout
        wait_for(lambda: sum(len(v) for v in _rows(streamed).values()) >= len(expected), 60,
                 message="replayed rows in Bronze")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
    finally:
        kill_group(proc)
    assert _rows(streamed) == backfilled
    assert_consumer_state(nats_server.url, "MARKET_DATA", "bronze_writer_market_data")


def test_backfill_missing_file_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pipelines.bronze_backfill", "--runner=DirectRunner",
                        "--files", str(tmp_path / "nope.dbn.zst"), f"--data_root={tmp_path}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not found" in r.stderr and "nope.dbn.zst" in r.stderr


def test_synthetic_replay_through_bronze_stream(nats_server, tmp_path):
    from transforms.synthetic_session import synthetic_session
    events = [(s, e) for s, e in synthetic_session("2024-12-16", scale=0.002, seed=4)]
    market = [e for s, e in events if s.startswith("market.")]
    assert len(market) > 1000 and len(events) > len(market)     # signals are published too
    data_root = str(tmp_path / "lake")
    proc = start_pipeline("pipelines.bronze_stream", f"--nats_url={nats_server.url}",
                          f"--data_root={data_root}", log_path=str(tmp_path / "s.log"))
    try:
        r = subprocess.run([sys.executable, "-m", "pipelines.replay", "--source", "synthetic",
                            "--date", "2024-12-16", "--scale", "0.002", "--seed", "4",
                            "--speed", "0", f"--nats_url={nats_server.url}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-3000:]
        assert f"total: {len(events)}" in r.stdout
        wait_for(lambda: sum(len(v) for v in _rows(data_root).values()) == len(market), 60,
                 message="synthetic session in Bronze")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
    finally:
        kill_group(proc)
    from io_connectors.lake.bronze_reader import BronzeReader
    fm = BronzeReader(data_root).front_month("ES", "2024-12-16")
    assert fm.symbol == "ESH5"                 # rolled 8 days before ESZ4's expiry
    assert not os.path.exists(os.path.join(data_root, "bronze", "_dead_letter"))
