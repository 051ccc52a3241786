"""IOService: Bronze and Gold streaming pipelines as one service against a real
nats-server: both land data; Ctrl-C drains both (exit 0); a dead pipeline makes the
service drain the other and exit 1; a killed service makes its pipelines drain."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.conftest import wait_for
from tests.helpers import (assert_consumer_state, consumer_bound, count_rows,
                           kill_group, publish,
                           start_pipeline)
from transforms.sample_events import sample_events
from transforms.synthetic_session import synthetic_session

BRONZE = ("MARKET_DATA", "bronze_writer_market_data")
GOLD = ("LEVEL_SIGNALS", "gold_writer_levels_signals")
HOUR_14 = 1_734_357_600_000_000_000          # 2024-12-16T14:00Z


def _signals(n):
    out = []
    for subject, event in synthetic_session("2024-12-16", scale=0.01, seed=2):
        if subject == "levels.signals" and event["levels"]:
            out.append((subject, event))
            if len(out) == n:
                return out
    return out


def _children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:                  # a zombie is not alive
        return fh.read().split(") ")[1][0] != "Z"


@pytest.fixture
def service(nats_server, tmp_path):
    data_root = str(tmp_path / "lake")
    proc = start_pipeline("pipelines.io_service", f"--nats_url={nats_server.url}",
                          f"--data_root={data_root}", f"--log_dir={tmp_path / 'logs'}",
                          "--bronze_arg=--flush_max_seconds=1", "--bronze_arg=--ack_wait_s=12",
                          "--gold_arg=--flush_max_seconds=1",
                          # drains are checked for correctness, not speed: under load they
                          # may take longer than the default 25 s
                          "--bronze_arg=--shutdown_timeout_s=90",
                          "--gold_arg=--shutdown_timeout_s=90",
                          log_path=str(tmp_path / "service.log"))
    log = tmp_path / "service.log"
    try:
        # Ready is what the service says once it has seen both consumers bound; a test that
        # acted on the consumers alone could kill a pipeline before the service counted it
        # as started (it then fails its start-up instead of stopping for a dead pipeline).
        wait_for(lambda: "io_service ready" in log.read_text(errors="replace"), 120,
                 message="the service to report ready")
        assert consumer_bound(nats_server.url, *BRONZE) and consumer_bound(nats_server.url, *GOLD)
        yield proc, data_root
    finally:
        for child in _children(proc.pid):
            try:
                os.killpg(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        kill_group(proc)


def test_both_pipelines_land_data_and_ctrl_c_drains_both(service, nats_server, tmp_path):
    proc, data_root = service
    trades = list(sample_events(HOUR_14, 10, trades_per_second=50, seed=3))
    signals = _signals(40)
    publish(nats_server.url, trades)
    publish(nats_server.url, signals)
    n_trades = sum(1 for s, _ in trades if s == "market.futures.trades")
    n_levels = sum(len(e["levels"]) for _, e in signals)
    # everything landed before the stop, so nothing can be in flight when it comes
    wait_for(lambda: count_rows(data_root, "futures/trades") == n_trades
             and count_rows(data_root, "levels/signals", layer="gold") == n_levels, 60,
             message="every row in Bronze and Gold")
    children = _children(proc.pid)
    assert len(children) == 2
    os.killpg(proc.pid, signal.SIGINT)       # a terminal's Ctrl-C: the whole process group
    assert proc.wait(60) == 0
    assert not any(_alive(c) for c in children)
    assert_consumer_state(nats_server.url, *BRONZE)
    assert_consumer_state(nats_server.url, *GOLD)
    for name in ("bronze_stream", "gold_stream"):          # each drained cleanly
        assert f"{name} finished (exit 0)" in open(tmp_path / "logs" / f"{name}.log").read()


def test_a_dead_pipeline_stops_the_service_with_exit_1(service, nats_server, tmp_path):
    proc, _ = service
    gold = [c for c in _children(proc.pid)
            if "gold_stream" in open(f"/proc/{c}/cmdline").read()]
    assert len(gold) == 1
    os.killpg(gold[0], signal.SIGKILL)
    assert proc.wait(60) == 1
    assert "exited on their own" in open(tmp_path / "service.log").read()
    assert_consumer_state(nats_server.url, *BRONZE, ack_pending_only=True)


def test_a_killed_service_leaves_no_pipeline_running_and_loses_nothing(
        service, nats_server, tmp_path):
    proc, data_root = service
    children = _children(proc.pid)
    trades = list(sample_events(HOUR_14, 5, trades_per_second=50, seed=4))
    publish(nats_server.url, trades)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    wait_for(lambda: not any(_alive(c) for c in children), 120,
             message="the pipelines to drain after their parent died")
    bronze_log = open(tmp_path / "logs" / "bronze_stream.log", errors="replace").read()
    assert "bronze_stream finished (exit 0)" in bronze_log, bronze_log[-3000:]
    # Messages in flight when the drain unsubscribed are redelivered after ack_wait (12 s
    # here): a new pipeline lands every one of them, nothing is lost.  It runs until they
    # have all landed (a condition, polled), not until the consumer looks idle once.
    from io_connectors.lake.bronze_reader import BronzeReader
    want = sum(1 for s, _ in trades if s == "market.futures.trades")

    def landed():
        return len(BronzeReader(data_root).read_futures_trades("ES", "2024-12-16",
                                                               front_month_only=False))
    again = start_pipeline("pipelines.bronze_stream", f"--nats_url={nats_server.url}",
                           f"--data_root={data_root}", "--ack_wait_s=12",
                           "--flush_max_seconds=1", "--shutdown_timeout_s=90",
                           log_path=str(tmp_path / "again.log"))
    try:
        wait_for(lambda: landed() == want, 180, interval=1.0,
                 message="every event of the killed service in Bronze")
        wait_for(lambda: consumer_bound(nats_server.url, *BRONZE), 120,
                 message="the second pipeline consuming")     # then SIGTERM means drain
        again.send_signal(signal.SIGTERM)
        assert again.wait(120) == 0
    finally:
        kill_group(again)
    assert landed() == want
