"""Every pipeline on a portable job service with out-of-process SDK workers: the Prism job
service and worker pool of ``./run.sh jobserver-up`` (the topology of a Flink cluster with
an SDK worker pool), submitted with ``--runner=PortableRunner`` or ``--runner=FlinkRunner``
and ``--job_endpoint``, EXTERNAL and PROCESS environments.  Streaming pipelines land
everything and drain with exit 0; batch pipelines write what the DirectRunner writes."""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys

import orjson
import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest

from io_connectors.embedded.detached import port_open
from io_connectors.embedded.job_service import LocalJobService
from io_connectors.lake.bronze_direct import write_synthetic_sessions
from io_connectors.lake.storage import LakeStorage
from pipelines.gold_curator import GoldCurator
from pipelines.silver_builder import SilverFeatureBuilder
from tests.conftest import wait_for
from tests.helpers import (ROOT, consumer_state, count_rows, kill_group, parquet_files,
                           publish, start_pipeline)
from tests.silver_fixtures import MANIFEST_PATH
from tests.test_backfill_replay import DATASETS, FILES, _rows
from tests.test_bronze_stream_nats import BAD, _assert_lake_matches, _mixed_events
from tests.test_gold_stream_nats import MS_14_57, MS_15_03, _signals

pytestmark = pytest.mark.timeout(400)

BRONZE = ("MARKET_DATA", "bronze_writer_market_data")
GOLD = ("LEVEL_SIGNALS", "gold_writer_levels_signals")
SILVER_DATES = ["2024-12-13"]
WARMUP = ["2024-12-10", "2024-12-11", "2024-12-12"]


@pytest.fixture(scope="module")
def job_service(tmp_path_factory, prism_path):
    service = LocalJobService(prism_path, state_dir=str(tmp_path_factory.mktemp("jobserver")))
    endpoints = service.up()
    yield endpoints | {"pool_pid": service.group.state()["services"]["worker_pool"]["pid"]}
    assert set(service.down()) == {"prism", "worker_pool"}


def external(js, runner="PortableRunner"):
    return [f"--runner={runner}", f"--job_endpoint={js['JOB_ENDPOINT']}",
            "--environment_type=EXTERNAL", f"--environment_config={js['WORKER_POOL']}"]


def process_env(js, runner="PortableRunner"):
    return [f"--runner={runner}", f"--job_endpoint={js['JOB_ENDPOINT']}",
            "--environment_type=PROCESS"]       # the boot program of configs/runner.yaml


def _sdk_workers(pool_pid: int) -> list:
    return [c for c in psutil.Process(pool_pid).children(recursive=True)
            if "SdkHarness" in " ".join(c.cmdline())]


# ---------------------------------------------------------------- the job service itself

def test_jobserver_up_prints_evalable_lines_once_listening_and_down_stops_it(tmp_path):
    state = str(tmp_path / "js")
    up = f"./run.sh jobserver-up --state_dir={state}"
    out = subprocess.run(["bash", "-c", f'eval "$({up})" && echo "$JOB_ENDPOINT $WORKER_POOL"'],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    job, pool = out.stdout.split()
    assert job.startswith("localhost:") and pool.startswith("localhost:")
    assert port_open(int(job.split(":")[1])) and port_open(int(pool.split(":")[1]))
    raw = subprocess.run(["./run.sh", "jobserver-up", f"--state_dir={state}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert raw.stdout.splitlines() == [f"JOB_ENDPOINT={job}", f"WORKER_POOL={pool}"], \
        "a second up reports the running service, and stdout holds only the lines"
    record = json.load(open(os.path.join(state, "state.json")))
    pids = {name: svc["pid"] for name, svc in record["services"].items()}
    listening = [c.laddr for c in psutil.Process(pids["worker_pool"]).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and all(a.ip in ("127.0.0.1", "::ffff:127.0.0.1") for a in listening)
    down = subprocess.run(["./run.sh", "jobserver-down", f"--state_dir={state}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert down.returncode == 0
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids.values())
    assert not port_open(int(job.split(":")[1])) and not port_open(int(pool.split(":")[1]))


def test_portable_runner_flags_are_checked_before_anything_starts(tmp_path):
    def run(*flags):
        return subprocess.run([sys.executable, "-m", "pipelines.bronze_stream", *flags,
                               f"--data_root={tmp_path}"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
    out = run("--runner=PortableRunner")
    assert out.returncode == 2 and "--job_endpoint" in out.stderr
    out = run("--runner=FlinkRunner", "--job_endpoint=localhost:1")
    assert out.returncode == 2 and "--environment_type" in out.stderr
    out = run("--runner=PortableRunner", "--job_endpoint=localhost:1",
              "--environment_type=EXTERNAL")
    assert out.returncode == 2 and "--environment_config" in out.stderr
    out = run("--runner=DaskRunner")
    assert out.returncode == 2 and "no streaming" in out.stderr


# ---------------------------------------------------------------- streaming

@pytest.mark.parametrize("env", ["EXTERNAL", "PROCESS"])
def test_bronze_stream_on_a_job_service_lands_everything_and_drains(job_service, env,
                                                                    nats_server, tmp_path):
    data_root = str(tmp_path / "lake")
    log = str(tmp_path / "bronze.log")
    events = _mixed_events() if env == "EXTERNAL" else _mixed_events()[:3000]
    flags = external(job_service) if env == "EXTERNAL" else process_env(job_service)
    proc = start_pipeline("pipelines.bronze_stream", *flags, f"--nats_url={nats_server.url}",
                          f"--data_root={data_root}", log_path=log)
    try:
        publish(nats_server.url, events + BAD)
        wait_for(lambda: sum(count_rows(data_root, d) for d in DATASETS) == len(events), 180,
                 message="every event in Bronze")
        if env == "EXTERNAL":
            assert _sdk_workers(job_service["pool_pid"]), "no SDK worker in the pool"
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, open(log).read()[-3000:]
    finally:
        kill_group(proc)
    _assert_lake_matches(data_root, events)
    assert len(pq.read_table(os.path.join(data_root, "bronze", "_dead_letter"))) == len(BAD)
    assert consumer_state(nats_server.url, *BRONZE) == (0, 0)
    assert "reading (split" not in open(log).read(), "the source ran in the launcher"


def test_gold_stream_on_flink_runner_with_a_job_endpoint_drains(job_service, nats_server,
                                                                tmp_path):
    data_root = str(tmp_path / "lake")
    log = str(tmp_path / "gold.log")
    snapshots = _signals(MS_14_57, MS_15_03)[:400]
    rows = sum(len(ev["levels"]) for ev in snapshots)
    proc = start_pipeline("pipelines.gold_stream", *external(job_service, "FlinkRunner"),
                          f"--nats_url={nats_server.url}", f"--data_root={data_root}",
                          log_path=log)
    try:
        publish(nats_server.url, [("levels.signals", orjson.dumps(ev)) for ev in snapshots])
        wait_for(lambda: count_rows(data_root, "levels/signals", "gold") == rows, 180,
                 message="every level row in Gold")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, open(log).read()[-3000:]
    finally:
        kill_group(proc)
    assert consumer_state(nats_server.url, *GOLD) == (0, 0)


def test_io_service_on_a_job_service_drains_both(job_service, nats_server, tmp_path):
    data_root = str(tmp_path / "lake")
    trades = _mixed_events()[:2000]
    snapshots = _signals(MS_14_57, MS_15_03)[:100]
    rows = sum(len(ev["levels"]) for ev in snapshots)
    proc = start_pipeline("pipelines.io_service", *external(job_service, "FlinkRunner"),
                          f"--nats_url={nats_server.url}", f"--data_root={data_root}",
                          f"--log_dir={tmp_path / 'logs'}", "--bronze_arg=--flush_max_seconds=1",
                          "--gold_arg=--flush_max_seconds=1",
                          log_path=str(tmp_path / "service.log"))
    try:
        wait_for(lambda: "io_service ready" in open(tmp_path / "service.log").read(), 180,
                 message="service ready")
        publish(nats_server.url, trades + [("levels.signals", orjson.dumps(ev))
                                           for ev in snapshots])
        wait_for(lambda: sum(count_rows(data_root, d) for d in DATASETS) == len(trades)
                 and count_rows(data_root, "levels/signals", "gold") == rows, 180,
                 message="both pipelines landed everything")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0, open(tmp_path / "service.log").read()[-3000:]
    finally:
        kill_group(proc)
    assert consumer_state(nats_server.url, *BRONZE) == (0, 0)
    assert consumer_state(nats_server.url, *GOLD) == (0, 0)


# ---------------------------------------------------------------- batch

def _backfill(data_root, *flags):
    out = subprocess.run([sys.executable, "-m", "pipelines.bronze_backfill", *flags,
                          "--files", *FILES, f"--data_root={data_root}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


def _relative_files(root):
    return sorted(os.path.relpath(p, root) for p in
                  glob.glob(os.path.join(root, "bronze", "**", "*.parquet"), recursive=True))


@pytest.mark.parametrize("env", ["EXTERNAL", "PROCESS"])
def test_backfill_on_a_job_service_writes_what_the_direct_runner_writes(job_service, env,
                                                                       tmp_path):
    direct, portable = str(tmp_path / "direct"), str(tmp_path / "portable")
    _backfill(direct, "--runner=DirectRunner")
    _backfill(portable, *(external(job_service) if env == "EXTERNAL"
                          else process_env(job_service)))
    assert _relative_files(portable) == _relative_files(direct) != []
    assert _rows(portable) == _rows(direct)


def test_silver_and_gold_on_flink_runner_with_a_job_endpoint_match_the_direct_runner(
        job_service, prism_path, tmp_path):
    """The CLIs with FlinkRunner flags against the job service, next to the Python API on
    the DirectRunner, over the same synthetic Bronze."""
    roots = {name: tmp_path / name for name in ("direct", "flink")}
    for root in roots.values():
        write_synthetic_sessions(LakeStorage(str(root)), WARMUP + SILVER_DATES, scale=0.05,
                                 seed=3)
    direct = ["--runner=DirectRunner", f"--prism_location={prism_path}"]
    builder = SilverFeatureBuilder(data_root=str(roots["direct"]), pipeline_args=direct)
    stats = builder.build_feature_set(MANIFEST_PATH, SILVER_DATES)
    assert stats["dates_built"] == SILVER_DATES and stats["signal_count"] > 0, stats
    version = stats["version"]
    curator = GoldCurator(data_root=str(roots["direct"]), pipeline_args=direct)
    curator.promote_to_training(version, "portable_check")

    flink = external(job_service, "FlinkRunner")
    for module, args in (("pipelines.silver_build", ["--manifest", MANIFEST_PATH,
                                                     "--dates", ",".join(SILVER_DATES)]),
                         ("pipelines.gold_promote", ["--silver_version", version,
                                                     "--dataset", "portable_check"])):
        out = subprocess.run([sys.executable, "-m", module, *args,
                              f"--data_root={roots['flink']}", *flink],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
    on_flink = SilverFeatureBuilder(data_root=str(roots["flink"]))
    pd.testing.assert_frame_equal(on_flink.load_features(version),
                                  builder.load_features(version))
    pd.testing.assert_frame_equal(
        GoldCurator(data_root=str(roots["flink"])).load_dataset("portable_check"),
        curator.load_dataset("portable_check"))
