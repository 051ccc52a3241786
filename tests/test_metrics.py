"""Metrics and health the Prometheus way: bronze_stream (SDK worker in process and in an
EXTERNAL worker pool) and io_service against a real nats-server and Prism, read with
prometheus_client's own parser; the exporter, the monitor's bookkeeping and the naming
rules on their own."""
from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import orjson
import pytest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from io_connectors.embedded.nats_server import free_port
from io_connectors.monitoring import stream_monitor
from io_connectors.monitoring.exporter import MetricsServer
from io_connectors.monitoring.federation import FederatedMetrics
from io_connectors.nats.settings import NatsSettings
from io_connectors.nats.streams import consumer_spec
from tests.conftest import ROOT, wait_for
from tests.helpers import consumer_state, kill_group, publish, start_pipeline
from transforms import lake_metrics as lm
from transforms.sample_events import sample_events

pytestmark = pytest.mark.timeout(300)
HOUR_14 = 1734357600 * 10**9
BAD = [("market.futures.trades", b"{not json"),
       ("market.futures.trades", b'{"ts_event_ns": "yesterday"}'),
       ("market.futures.trades", b"\xff\xfe")]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return None, ""


def samples(base):
    """{(sample name, frozenset(labels)): value} of ``base``/metrics, or {} if down."""
    status, body = get(f"{base}/metrics")
    if status != 200:
        return {}
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(body) for s in fam.samples}


def value(snap, name, **labels):
    return sum(v for (n, ls), v in snap.items()
               if n == name and set(labels.items()) <= set(ls))


def _events(seconds=20, seed=1):
    events = [(s, orjson.dumps(e)) for s, e in
              sample_events(HOUR_14 + 60 * 10**9, seconds, trades_per_second=50, seed=seed)]
    per_dataset = collections.Counter(s.split(".", 1)[1].replace(".", "/") for s, _ in events)
    return events, per_dataset


def _assert_counted(snap, per_dataset, pipeline="bronze_stream"):
    for dataset, n in per_dataset.items():
        assert value(snap, "marketlake_rows_written_total", dataset=dataset,
                     pipeline=pipeline) == n, dataset
    assert value(snap, "marketlake_rows_written_total", dataset="_dead_letter") == len(BAD)
    assert value(snap, "marketlake_dead_letters_total", reason="not_json") == 1
    assert value(snap, "marketlake_dead_letters_total", reason="wrong_type") == 1
    assert value(snap, "marketlake_dead_letters_total", reason="not_utf8") == 1
    total = sum(per_dataset.values()) + len(BAD)
    assert value(snap, "marketlake_events_read_total") == total
    assert value(snap, "marketlake_messages_acked_total") == total
    files = value(snap, "marketlake_files_written_total")
    assert files > 0
    assert value(snap, "marketlake_shard_write_seconds_count") == files
    assert value(snap, "marketlake_shard_write_seconds_bucket", le="+Inf") == files
    assert value(snap, "marketlake_shard_write_seconds_sum") > 0


def _everything_counted(base, per_dataset):
    snap = samples(base)
    total = sum(per_dataset.values()) + len(BAD)
    return (snap and value(snap, "marketlake_messages_acked_total") == total
            and value(snap, "marketlake_consumer_num_ack_pending") == 0 and snap)


def test_bronze_stream_serves_metrics_health_and_a_progress_line(nats_server, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "bronze.log"
    events, per_dataset = _events()
    proc = start_pipeline("pipelines.bronze_stream", f"--nats_url={nats_server.url}",
                          f"--data_root={tmp_path / 'lake'}", f"--metrics_port={port}",
                          "--progress_s=1", "--flush_max_seconds=1", log_path=str(log))
    try:
        status, body = wait_for(lambda: get(f"{base}/readyz")[0] == 200 and
                                get(f"{base}/readyz"), 120, message="/readyz 200")
        assert json.loads(body)["consumer_bound"] is True
        assert get(f"{base}/healthz")[0] == 200 and get(f"{base}/nope")[0] == 404
        publish(nats_server.url, events + BAD)
        snap = wait_for(lambda: _everything_counted(base, per_dataset), 90, interval=0.5,
                        message="every message counted and acked on /metrics")
        _assert_counted(snap, per_dataset)
        assert value(snap, "marketlake_consumer_num_pending") == 0
        assert value(snap, "marketlake_ready") == 1
        assert value(snap, "marketlake_job_restarts_total") == 0
        assert value(snap, "process_resident_memory_bytes") > 0
        wait_for(lambda: re.search(r"bronze_stream: [\d,]+ rows/s; [1-9][\d,]* rows, .* "
                                   r"3 dead letters \(", log.read_text()), 30,
                 message="a progress line with rows and dead letters")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
    finally:
        kill_group(proc)
    text = log.read_text()
    assert re.search(r"finished \(exit 0\): [\d,]+ rows in \d+ files .*; 3 dead letters "
                     r"\((?=.*not_json 1)(?=.*wrong_type 1)(?=.*not_utf8 1)", text), text[-2000:]
    assert get(f"{base}/metrics")[0] is None, "the endpoint stops with the pipeline"


@pytest.fixture
def worker_pool(tmp_path):
    """A Beam SDK worker pool in its own process (the EXTERNAL environment of a cluster)."""
    port = free_port()
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
               PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m",
                             "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], cwd=ROOT, env=env,
                            stdout=open(tmp_path / "pool.log", "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _accepts(port), 60, message="the worker pool")
        yield f"127.0.0.1:{port}", proc
    finally:
        kill_group(proc)
        proc.wait(10)


def _accepts(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture
def job_service(request, prism_path, tmp_path):
    """None (the launcher starts Prism itself), or the endpoint of a Prism job service
    started on its own, as a Flink job server would be (the runner is then
    PortableRunner with --job_endpoint)."""
    if request.param == "own":
        yield None
        return
    port = free_port()
    proc = subprocess.Popen([prism_path, f"--job_port={port}", "--serve_http=false",
                             "--log_level=warn"], stdout=open(tmp_path / "prism.log", "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _accepts(port), 60, message="the Prism job service")
        yield f"127.0.0.1:{port}"
    finally:
        kill_group(proc)
        proc.wait(10)


@pytest.mark.parametrize("job_service", ["own", "standalone"], indirect=True)
def test_metrics_of_an_out_of_process_sdk_worker_reach_the_endpoint(
        nats_server, tmp_path, worker_pool, job_service):
    endpoint, pool = worker_pool
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    runner = (["--runner=PortableRunner", f"--job_endpoint={job_service}"] if job_service
              else [])
    events, per_dataset = _events(seconds=10, seed=5)
    proc = start_pipeline("pipelines.bronze_stream", f"--nats_url={nats_server.url}",
                          f"--data_root={tmp_path / 'lake'}", f"--metrics_port={port}",
                          "--environment_type=EXTERNAL", f"--environment_config={endpoint}",
                          "--flush_max_seconds=1", *runner,
                          log_path=str(tmp_path / "bronze.log"))
    try:
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, 120, message="/readyz 200")
        publish(nats_server.url, events + BAD)
        snap = wait_for(lambda: _everything_counted(base, per_dataset), 90, interval=0.5,
                        message="every message counted on /metrics")
        _assert_counted(snap, per_dataset)
        workers = subprocess.run(["pgrep", "-P", str(pool.pid)], capture_output=True,
                                 text=True).stdout.split()
        assert workers, "the SDK worker ran in the pool's child process, not in the launcher"
        assert "NATS consumer" not in (tmp_path / "bronze.log").read_text()
    finally:
        kill_group(proc)
        proc.wait(30)


def test_io_service_serves_both_pipelines(nats_server, tmp_path):
    from tests.test_io_service import BRONZE, GOLD, _signals
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_pipeline("pipelines.io_service", f"--nats_url={nats_server.url}",
                          f"--data_root={tmp_path / 'lake'}", f"--log_dir={tmp_path / 'logs'}",
                          f"--metrics_port={port}", "--progress_s=1",
                          "--bronze_arg=--flush_max_seconds=1",
                          "--gold_arg=--flush_max_seconds=1",
                          log_path=str(tmp_path / "service.log"))
    try:
        status, body = wait_for(lambda: get(f"{base}/readyz")[0] == 200 and
                                get(f"{base}/readyz"), 120, message="service /readyz 200")
        assert set(json.loads(body)["pipelines"]) == {"bronze_stream", "gold_stream"}
        events, per_dataset = _events(seconds=5, seed=7)
        signals = _signals(20)
        publish(nats_server.url, events + signals)
        n_levels = sum(len(e["levels"]) for _, e in signals)

        def landed():
            snap = samples(base)
            return (value(snap, "marketlake_rows_written_total", pipeline="bronze_stream",
                          dataset="futures/trades") == per_dataset["futures/trades"]
                    and value(snap, "marketlake_rows_written_total", pipeline="gold_stream",
                              dataset="levels/signals") == n_levels and snap)
        snap = wait_for(landed, 90, interval=0.5, message="both pipelines on one endpoint")
        assert value(snap, "marketlake_scrape_ok", pipeline="bronze_stream") == 1
        assert value(snap, "marketlake_scrape_ok", pipeline="gold_stream") == 1
        assert value(snap, "process_resident_memory_bytes", pipeline="gold_stream") > 0
        assert get(f"{base}/healthz")[0] == 200
        wait_for(lambda: re.search(r"io_service: bronze_stream [\d,]+ rows/s, [1-9][\d,]* "
                                   r"rows, lag .*; gold_stream [\d,]+ rows/s",
                                   (tmp_path / "service.log").read_text()), 30,
                 message="the service's progress line")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        kill_group(proc)
    assert consumer_state(nats_server.url, *BRONZE) == (0, 0)
    assert consumer_state(nats_server.url, *GOLD) == (0, 0)


# ---- the parts on their own ---------------------------------------------------------------
class _Fixed:
    def __init__(self, name, value, **labels):
        self.name, self.value, self.labels = name, value, labels

    def collect(self):
        fam = CounterMetricFamily(self.name, "test", labels=list(self.labels))
        fam.add_metric(list(self.labels.values()), self.value)
        yield fam


def test_exporter_serves_the_library_exposition_and_checks():
    healthy = {"ok": True}
    with MetricsServer([_Fixed("marketlake_x", 7, pipeline="p")],
                       health=lambda: (healthy["ok"], {"why": "test"}),
                       ready=lambda: (False, {"phase": "starting"})) as server:
        assert server.port > 0 and server.url.startswith("http://127.0.0.1:")
        snap = samples(server.url)
        assert snap[("marketlake_x_total", frozenset({("pipeline", "p")}))] == 7
        assert get(f"{server.url}/healthz") == (200, '{"status": "ok", "why": "test"}\n')
        healthy["ok"] = False
        assert get(f"{server.url}/healthz")[0] == 503
        status, body = get(f"{server.url}/readyz")
        assert status == 503 and json.loads(body)["phase"] == "starting"
    assert get(f"{server.url}/metrics")[0] is None


def test_federation_merges_children_and_marks_a_silent_one():
    a = MetricsServer([_Fixed("marketlake_rows_written", 5, pipeline="a",
                              dataset="futures/trades")]).start()
    b = MetricsServer([_Fixed("marketlake_rows_written", 9, pipeline="b",
                              dataset="levels/signals")]).start()
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        fed = FederatedMetrics({"a": a.url, "b": b.url, "c": dead}, timeout_s=1)
        with MetricsServer([fed], process_metrics=False) as top:
            snap = samples(top.url)
        assert value(snap, "marketlake_rows_written_total", pipeline="a") == 5
        assert value(snap, "marketlake_rows_written_total", pipeline="b") == 9
        assert value(snap, "process_cpu_seconds_total", pipeline="a") >= 0
        assert value(snap, "marketlake_scrape_ok", pipeline="c") == 0
        assert fed.snapshot()["b"]["rows"] == 9 and fed.snapshot()["c"] == {}
        assert fed.health()[0] is False                   # c does not answer
    finally:
        a.close()
        b.close()


def test_monitor_keeps_counters_across_restarts(monkeypatch):
    answers = {}
    monkeypatch.setattr(stream_monitor, "lake_counters", lambda result: answers.get(result))
    m = stream_monitor.StreamMonitor("bronze_stream", NatsSettings(url="nats://127.0.0.1:1"),
                                     consumer_spec("bronze"), progress_s=0)
    rows = lm.labelled(lm.ROWS_WRITTEN, "futures/trades")
    m.job_started("job1")
    answers["job1"] = {rows: 1000, lm.EVENTS_READ: 1500}
    m.poll_once_metrics()
    assert m.totals() == {rows: 1000, lm.EVENTS_READ: 1500}
    answers["job1"] = None                    # the runner crashed: no final counters
    m.job_ended("job1")
    m.restarted()
    m.job_started("job2")
    answers["job2"] = {rows: 700, lm.labelled(lm.DEAD_LETTERS, "not_json"): 2}
    m.job_ended("job2")
    assert m.totals() == {rows: 1700, lm.EVENTS_READ: 1500,
                          lm.labelled(lm.DEAD_LETTERS, "not_json"): 2}
    assert m.restarts == 1
    assert m.ready()[0] is False and m.health()[0] is True
    m.set_phase("failed")
    assert m.health()[0] is False
    line = m.progress_line()
    assert "1,700 rows" in line and "2 dead letters (not_json 2)" in line
    assert "1 restarts" in line and "lag unknown" in line


def test_every_parser_reason_has_a_class():
    """The dead-letter reasons the parsers really produce all fall in a named class."""
    from transforms.bronze_route import route_message
    from transforms.gold_route import route_signal_message
    good = dict(ts_event_ns=HOUR_14, ts_recv_ns=HOUR_14, source="sim", symbol="ESZ4",
                price=6000.25, size=1, aggressor=1)
    payloads = [b"\xff", b"{x", b"[]", b"1", orjson.dumps({**good, "price": "x"}),
                orjson.dumps({**good, "size": 1.5}), orjson.dumps({**good, "price": -1.0}),
                orjson.dumps({**good, "symbol": "../x"}), orjson.dumps({**good, "source": "?"}),
                orjson.dumps({**good, "aggressor": 7}), orjson.dumps({**good, "conditions": [1e9]}),
                orjson.dumps({k: v for k, v in good.items() if k != "price"}),
                orjson.dumps({**good, "ts_event_ns": 10**17}),
                orjson.dumps(good)[:-1] + b',"ts_event_ns":' + str(2**70).encode() + b"}"]
    reasons = [route_message(("market.futures.trades", p, 1, HOUR_14, "t"))[1][1][3]
               for p in payloads]
    reasons.append(route_message(("market.x.y", b"{}", 1, HOUR_14, "t"))[1][1][3])
    reasons += [route_signal_message(("levels.signals", p, 1, HOUR_14, "t"), "ES")[1][1][0][3]
                for p in (b"{}", b'{"ts": 1, "spy": {}, "levels": 3}')]
    strict = [b'{"symbol":"ESZ4","symbol":"NQZ4"}', orjson.dumps({**good, "price": 1e30}),
              orjson.dumps(good)[:-1] + b',"seq":' + str(2**70).encode() + b"}"]
    strict_reasons = [route_message(("market.futures.trades", p, 1, HOUR_14, "t"))[1][1][3]
                      for p in strict]
    assert [lm.reason_class(r) for r in strict_reasons] == ["duplicate_key", "out_of_range",
                                                            "out_of_range"], strict_reasons
    classes = {r: lm.reason_class(r) for r in reasons + strict_reasons}
    assert "other" not in classes.values(), classes
    assert classes[reasons[0]] == "not_utf8" and classes[reasons[1]] == "not_json"
    assert lm.reason_class("something new") == "other"


def test_metric_names_and_buckets():
    assert lm.split_name("rows_written/futures/trades") == ("rows_written", "futures/trades")
    assert lm.split_name("events_read") == ("events_read", None)
    assert lm.write_bucket(0.0) == "0.005" and lm.write_bucket(0.005) == "0.005"
    assert lm.write_bucket(0.3) == "0.5" and lm.write_bucket(31) == "+Inf"
