"""The bounded pipelines on Beam's DaskRunner, on a real Dask scheduler with two workers
(``./run.sh dask-up``): Silver, Gold and the backfill write what the DirectRunner writes,
the work runs on both workers, and a run that lost a date is failed by the driver,
naming it, instead of reported as a success."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from distributed import Client

from io_connectors.embedded.dask_cluster import LocalDaskCluster
from io_connectors.lake.bronze_direct import write_synthetic_sessions
from io_connectors.lake.storage import LakeStorage
from pipelines.gold_curator import GoldCurator, PromotionError
from pipelines.silver_builder import SilverFeatureBuilder
from tests.helpers import ROOT
from tests.silver_fixtures import MANIFEST_PATH

pytestmark = pytest.mark.timeout(600)

WARMUP = ["2024-12-10", "2024-12-11", "2024-12-12"]
DATES = ["2024-12-13", "2024-12-16", "2024-12-17", "2024-12-18"]


@pytest.fixture(scope="module")
def dask_address(tmp_path_factory):
    cluster = LocalDaskCluster(state_dir=str(tmp_path_factory.mktemp("dask")), workers=2)
    address = cluster.up()["DASK_ADDRESS"]
    yield address
    cluster.down()


@pytest.fixture(scope="module")
def bronze(tmp_path_factory):
    """A synthetic Bronze lake (warm-up weekdays and DATES), copied per test."""
    root = tmp_path_factory.mktemp("bronze-src")
    write_synthetic_sessions(LakeStorage(str(root)), WARMUP + DATES, scale=0.04, seed=5)
    return root


@pytest.fixture(scope="module")
def direct(bronze, tmp_path_factory, prism_path):
    """Silver of DATES and a Gold dataset, built on the DirectRunner (Prism)."""
    root = tmp_path_factory.mktemp("direct")
    shutil.copytree(bronze / "bronze", root / "bronze")
    args = ["--runner=DirectRunner", f"--prism_location={prism_path}"]
    builder = SilverFeatureBuilder(data_root=str(root), pipeline_args=args)
    stats = builder.build_feature_set(MANIFEST_PATH, DATES)
    assert stats["dates_built"] == DATES, stats
    GoldCurator(data_root=str(root), pipeline_args=args).promote_to_training(
        stats["version"], "dask_check")
    return root, stats["version"]


def dask_args(address, *more):
    return ["--runner=DaskRunner", f"--dask_client_address={address}", *more]


def _workers_used(address: str, run) -> set:
    """Runs ``run()`` and returns the workers that executed tasks meanwhile."""
    from distributed import get_task_stream
    with Client(address, timeout=10) as client, get_task_stream(client) as stream:
        run()
    return {task["worker"] for task in stream.data}


def _lake_with_bronze(bronze, path):
    shutil.copytree(bronze / "bronze", path / "bronze")
    return path


def test_silver_and_gold_on_dask_equal_the_direct_runner_and_use_both_workers(
        dask_address, bronze, direct, tmp_path):
    direct_root, version = direct
    root = _lake_with_bronze(bronze, tmp_path / "lake")
    builder = SilverFeatureBuilder(data_root=str(root), pipeline_args=dask_args(dask_address))
    stats = {}
    workers = _workers_used(dask_address, lambda: stats.update(
        builder.build_feature_set(MANIFEST_PATH, DATES)))
    assert stats["dates_built"] == DATES and not stats["dates_failed"], stats
    assert len(workers) == 2, f"work ran on {workers}"
    reference = SilverFeatureBuilder(data_root=str(direct_root))
    pd.testing.assert_frame_equal(builder.load_features(version),
                                  reference.load_features(version))
    for table in ("state_table", "episodes"):
        pd.testing.assert_frame_equal(builder.load_table(version, table),
                                      reference.load_table(version, table))

    out = subprocess.run([sys.executable, "-m", "pipelines.gold_promote", "--silver_version",
                          version, "--dataset", "dask_check", f"--data_root={root}",
                          *dask_args(dask_address)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    pd.testing.assert_frame_equal(GoldCurator(data_root=str(root)).load_dataset("dask_check"),
                                  GoldCurator(data_root=str(direct_root)).load_dataset("dask_check"))


def test_silver_cli_on_dask_takes_the_dask_flags(dask_address, bronze, tmp_path):
    root = _lake_with_bronze(bronze, tmp_path / "lake")
    out = subprocess.run([sys.executable, "-m", "pipelines.silver_build", "--manifest",
                          MANIFEST_PATH, "--dates", ",".join(DATES[:2]), f"--data_root={root}",
                          *dask_args(dask_address, "--dask_npartitions=2",
                                     "--dask_connection_timeout=30")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "built 2, skipped 0, failed 0" in out.stdout


def test_a_date_the_runner_dropped_fails_the_build_naming_it(dask_address, bronze, tmp_path,
                                                            monkeypatch):
    """A runner that reports success but lost a date (the DaskRunner does on shapes it
    executes wrongly): the build fails that date instead of reporting it built."""
    root = _lake_with_bronze(bronze, tmp_path / "lake")
    builder = SilverFeatureBuilder(data_root=str(root), pipeline_args=dask_args(dask_address))
    real = builder._run_pipeline              # pylint: disable=protected-access

    def drops_the_last_date(m, dates, run_id):
        real(m, dates[:-1], run_id)
    monkeypatch.setattr(builder, "_run_pipeline", drops_the_last_date)
    stats = builder.build_feature_set(MANIFEST_PATH, DATES[:2])
    assert stats["dates_built"] == DATES[:1]
    assert "no result" in stats["dates_failed"][DATES[1]]


def test_a_short_published_date_fails_the_build_naming_it(dask_address, bronze, tmp_path,
                                                         monkeypatch):
    root = _lake_with_bronze(bronze, tmp_path / "lake")
    storage = LakeStorage(str(root))
    builder = SilverFeatureBuilder(storage=storage, pipeline_args=dask_args(dask_address))
    real = builder._run_pipeline              # pylint: disable=protected-access

    def loses_rows(m, dates, run_id):
        real(m, dates, run_id)                # then one date's file loses half its rows
        rel = builder.store.table_file(m.version, dates[0])
        table = storage.read_parquet(rel)
        from io_connectors.lake.storage import parquet_bytes
        storage.publish(rel, parquet_bytes(table.slice(0, table.num_rows // 2)))
    monkeypatch.setattr(builder, "_run_pipeline", loses_rows)
    stats = builder.build_feature_set(MANIFEST_PATH, DATES[:2])
    assert DATES[0] in stats["dates_failed"], stats
    assert "do not match the build record" in stats["dates_failed"][DATES[0]]


def test_a_promotion_that_lost_a_date_is_refused_naming_it(dask_address, direct, tmp_path,
                                                          monkeypatch):
    direct_root, version = direct
    root = tmp_path / "lake"
    shutil.copytree(direct_root, root)
    curator = GoldCurator(data_root=str(root), pipeline_args=dask_args(dask_address))
    real = curator._run_pipeline               # pylint: disable=protected-access
    monkeypatch.setattr(curator, "_run_pipeline",
                        lambda v, dates, staged: real(v, dates[1:], staged))
    with pytest.raises(PromotionError, match=f"{DATES[0]}: missing"):
        curator.promote_to_training(version, "lossy")
    assert not os.path.exists(root / "gold" / "training" / "lossy.parquet")


def test_backfill_on_dask_writes_what_the_direct_runner_writes_on_both_workers(
        dask_address, tmp_path):
    from tests.dbn_mutations import write_mutated_session
    from tests.test_bronze_backfill import backfill, lake_files
    files = write_mutated_session(str(tmp_path / "dbn"), seed=7, n_trades=6000, n_books=2500)
    direct, on_dask = str(tmp_path / "direct"), str(tmp_path / "dask")
    backfill(files, direct, "--runner=DirectRunner")
    log = backfill(files, on_dask, *dask_args(dask_address), "--block_mb=0.02",
                   "--shares_per_file=2")
    assert "file shares decoded by 2 workers, shard keys written by 2" in log
    want, got = lake_files(direct), lake_files(on_dask)
    assert sorted(got) == sorted(want) and want
    for rel, table in want.items():
        assert got[rel].equals(table), rel
