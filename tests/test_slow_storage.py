"""A store that fails for longer than ack_wait and then recovers (the S3 server killed and
started again on its own folder): the writer retries the failing shards while JetStream
in-progress acks keep their messages from being redelivered, so nothing is lost and
almost nothing is written twice."""
from __future__ import annotations

import re
import signal
import uuid

import pyarrow.dataset as ds
import pytest

from io_connectors.embedded.s3_server import EmbeddedS3Server
from io_connectors.lake.bronze_reader import BronzeReader
from io_connectors.lake.storage import LakeStorage
from tests.conftest import wait_for
from tests.helpers import assert_consumer_state, kill_group, publish, start_pipeline
from transforms.sample_events import sample_events

pytestmark = pytest.mark.timeout(420)

HOUR_14 = 1734357600 * 10**9          # 2024-12-16T14:00:00Z
ACK_WAIT_S = 12
S3_VARS = ("S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_REGION", "USE_S3", "DATA_ROOT")


def _trades(seconds, seed, start_s=0):
    return [(s, e) for s, e in sample_events(HOUR_14 + start_s * 10**9, seconds,
                                             trades_per_second=40, seed=seed)
            if s == "market.futures.trades"]


def _retry_attempts(log_path) -> int:
    """The highest retry attempt the writer has logged so far."""
    text = open(log_path, errors="replace").read()
    return max((int(n) for n in re.findall(r"attempt (\d+) failed", text)), default=0)


def test_store_down_longer_than_ack_wait_loses_nothing_and_duplicates_little(
        nats_server, tmp_path, monkeypatch):
    for name in S3_VARS:
        monkeypatch.delenv(name, raising=False)
    s3 = EmbeddedS3Server(store_dir=str(tmp_path / "s3")).start()
    proc = None
    try:
        bucket = s3.create_bucket(f"lake-{uuid.uuid4().hex[:8]}")
        data_root = f"{bucket}/lake"
        for key, value in s3.env().items():
            monkeypatch.setenv(key, value)
        before, during = _trades(30, seed=1), _trades(30, seed=2, start_s=60)
        proc = start_pipeline("pipelines.bronze_stream", f"--nats_url={nats_server.url}",
                              f"--data_root={data_root}", "--flush_max_seconds=1",
                              f"--ack_wait_s={ACK_WAIT_S}", "--shutdown_timeout_s=90",
                              log_path=str(tmp_path / "bronze.log"))
        storage = LakeStorage(data_root)
        reader = lambda: BronzeReader(storage=storage)  # noqa: E731
        publish(nats_server.url, before)
        wait_for(lambda: len(reader().read_futures_trades("ES", "2024-12-16",
                                                          front_month_only=False))
                 == len(before), 120, interval=0.5, message="the first events in S3")

        s3.kill()                                       # the outage starts
        publish(nats_server.url, during)
        # Backoff 0.5, 1, 2, 4, 8 s: a 6th failed attempt means the write has been failing
        # for more than 15 s, longer than ack_wait (12 s).
        wait_for(lambda: _retry_attempts(tmp_path / "bronze.log") >= 6, 120, interval=0.5,
                 message="writes failing for longer than ack_wait")
        assert proc.poll() is None, "the pipeline gave up during a transient outage"
        s3.start()                                      # the store recovers

        wait_for(lambda: len(reader().read_futures_trades("ES", "2024-12-16",
                                                          front_month_only=False))
                 == len(before) + len(during), 180, interval=1.0,
                 message="every event in S3 after the outage")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
        assert_consumer_state(nats_server.url, "MARKET_DATA", "bronze_writer_market_data")

        raw = ds.dataset(storage.path("bronze/futures/trades"), filesystem=storage.fs,
                         format="parquet").count_rows()
        published = len(before) + len(during)
        duplicates = raw - published
        assert 0 <= duplicates < 0.02 * published, (raw, published)
        log = open(tmp_path / "bronze.log", errors="replace").read()
        assert "succeeded after" in log and "giving up" not in log
        assert "restarting" not in log
    finally:
        if proc is not None:
            kill_group(proc)
        s3.kill()
        s3.cleanup()
