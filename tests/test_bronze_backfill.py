"""``pipelines.bronze_backfill`` end to end: the columnar path writes exactly the files of
the per-message path (names and rows), whatever the block size, runner or worker count;
a re-run adds nothing; dead letters carry their reasons; the configured price bound
applies; the driver notices lost work."""
from __future__ import annotations

import os
import shutil
import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tests.dbn_mutations import write_mutated_session
from tests.helpers import ROOT, kill_group

pytestmark = pytest.mark.timeout(600)

MULTI = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
         "--direct_num_workers=2"]


def run_backfill(files, data_root, *flags, env=None, timeout=400):
    """Runs the backfill CLI in its own process group (on a time-out the whole group, Prism
    included, is killed); returns (exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.bronze_backfill", *flags,
                             "--files", *files, f"--data_root={data_root}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})},
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc)
    return proc.returncode, err


def backfill(files, data_root, *flags, env=None):
    code, err = run_backfill(files, data_root, *flags, env=env)
    assert code == 0, err[-3000:]
    return err


def lake_files(data_root) -> dict:
    """{relative path: table} of every Parquet file under bronze/."""
    out = {}
    base = os.path.join(data_root, "bronze")
    for folder, _, names in os.walk(base):
        for name in names:
            if name.endswith(".parquet"):
                path = os.path.join(folder, name)
                out[os.path.relpath(path, data_root)] = pq.read_table(path)
    return out


def configs_with(tmp_path, old: str, new: str) -> str:
    """A copy of configs/ with one line of lake.yaml changed; its folder (LAKE_CONFIG_DIR)."""
    cfg = tmp_path / "configs"
    shutil.copytree(os.path.join(ROOT, "configs"), cfg)
    text = (cfg / "lake.yaml").read_text()
    assert old in text
    (cfg / "lake.yaml").write_text(text.replace(old, new))
    return str(cfg)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    d = tmp_path_factory.mktemp("dbn")
    files = write_mutated_session(str(d), seed=21, n_trades=6000, n_books=2500)
    ref = str(d / "lake-per-message")
    log = backfill(files, ref, "--runner=FnApiRunner", "--per_message")
    assert "decoded message by message" in log
    return files, ref, lake_files(ref)


def test_columnar_backfill_writes_exactly_the_per_message_files(session, tmp_path):
    files, _, want = session
    root = str(tmp_path / "lake")
    log = backfill(files, root, "--runner=DirectRunner")        # Prism, one worker
    assert "[backfill]" not in log                   # no progress off a terminal by default
    got = lake_files(root)
    assert sorted(got) == sorted(want)
    for rel, table in want.items():
        assert got[rel].equals(table), rel
    datasets = {rel.split("/")[1] for rel in got}
    assert datasets == {"futures", "options", "_dead_letter"}
    # what the per-message path decoded message by message here: only the definitions
    assert "decoded message by message: " + files[0] in log
    # a re-run adds no file, and says so
    again = backfill(files, root, "--runner=DirectRunner")
    assert sorted(lake_files(root)) == sorted(want)
    assert " 0 files written" in again and "already present" in again


def test_blocks_and_two_worker_processes_give_the_same_files(session, tmp_path):
    files, _, want = session
    root = str(tmp_path / "lake")
    log = backfill(files, root, *MULTI, "--block_mb=0.02", "--shares_per_file=2",
                   "--progress=always")                       # ~40 blocks in 2 shares per file
    assert "file shares decoded by 2 workers, shard keys written by 2" in log
    # progress asked for: read from the staging records while the job runs, then final
    final = re.findall(r"\[backfill\] files (\d+)/(\d+), shares (\d+)/(\d+), rows ([\d,]+)", log)
    assert final and final[-1][0] == final[-1][1] == str(len(files))
    # two workers, two columnar files (trades, MBP-10): each file in two shares
    assert final[-1][2] == final[-1][3] == str(2 * 2 + len(files) - 2)
    got = lake_files(root)
    assert sorted(got) == sorted(want)
    assert all(got[rel].equals(t) for rel, t in want.items())


def test_the_default_runner_with_many_small_blocks_gives_the_per_message_files(session,
                                                                             tmp_path):
    """The backfill's own runner (the FnApiRunner, one worker thread per core: the set-up
    whose data plane once handed a ``None`` piece reference to a writer, see
    tests/test_fnapi_data_plane.py) with ~100 blocks: every piece reaches its key, the
    files are exactly the per-message path's, and a re-run adds none."""
    files, _, want = session
    root = str(tmp_path / "lake")
    log = backfill(files, root, "--block_mb=0.01")
    assert "INCOMPLETE" not in log and "MISSING" not in log
    got = lake_files(root)
    assert sorted(got) == sorted(want)
    assert all(got[rel].equals(t) for rel, t in want.items())
    again = backfill(files, root, "--block_mb=0.01")
    assert " 0 files written" in again and sorted(lake_files(root)) == sorted(want)


def test_dead_letters_name_the_rule_and_keep_the_payload(session):
    _, _, want = session
    dead = [t for rel, t in want.items() if rel.startswith("bronze/_dead_letter/")]
    rows = [r for t in dead for r in t.to_pylist()]
    assert rows and all(r["payload"].startswith(b"{") for r in rows)
    reasons = {r["reason"] for r in rows}
    assert any("out of range (> 0.0, <= 1000000.0)" in r for r in reasons)
    assert all(r["subject"].startswith("market.") for r in rows)


def test_price_bound_comes_from_the_config(session, tmp_path):
    files, _, want = session
    cfg = configs_with(tmp_path, "futures/trades: 1.0e+6", "futures/trades: 6050.0")
    root = str(tmp_path / "lake")
    backfill(files, root, "--runner=FnApiRunner", env={"LAKE_CONFIG_DIR": cfg})
    got = lake_files(root)
    reasons = {r["reason"] for rel, t in got.items() if "_dead_letter" in rel
               for r in t.to_pylist()}
    assert any("<= 6050.0" in r for r in reasons)
    prices = [p for rel, t in got.items() if rel.startswith("bronze/futures/trades")
              for p in t["price"].to_pylist()]
    assert prices and max(prices) <= 6050.0
    assert len(got) != len(want)


def test_a_bad_config_bound_stops_before_anything_runs(session, tmp_path):
    files, _, _ = session
    cfg = configs_with(tmp_path, "options/trades: 1.0e+6", "options/trades: -3")
    code, err = run_backfill(files, str(tmp_path / "lake"), env={"LAKE_CONFIG_DIR": cfg})
    assert code == 2
    assert "bronze.max_price.options/trades must be a positive finite number" in err
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize("flag,old,new,message", [
    ("--shares_per_file=0", None, None, "--shares_per_file must be >= 1"),
    (None, "shares_per_file: auto", "shares_per_file: two",
     "backfill.shares_per_file must be a whole number >= 1 or auto, got 'two'")])
def test_a_bad_share_count_stops_before_anything_runs(session, tmp_path, flag, old, new,
                                                      message):
    files, _, _ = session
    env = {"LAKE_CONFIG_DIR": configs_with(tmp_path, old, new)} if old else None
    code, err = run_backfill(files, str(tmp_path / "lake"), *([flag] if flag else []), env=env)
    assert code == 2 and message in err
    assert not (tmp_path / "lake").exists()


def test_the_report_names_lost_work(tmp_path):
    """A unit whose record is missing (a runner that dropped it silently) or a key written
    with fewer rows makes the run incomplete, named."""
    from io_connectors.dbn.backfill import UNITS
    from io_connectors.dbn.blocks import DbnFile, plan_shares
    from io_connectors.dbn.run_report import BackfillReport
    from io_connectors.lake.bounded_shards import key_record_name
    from io_connectors.lake.staging import Staging
    st = Staging(str(tmp_path), "run")
    files = [DbnFile(0, "a.dbn", "trades", 3, False, True, 10),
             DbnFile(1, "b.dbn", "trades", 3, False, True, 10)]
    shares = plan_shares(files, 2)
    assert [s.unit for s in shares] == ["00000-s0", "00000-s1", "00001-s0", "00001-s1"]
    key = "futures/trades|ES|2024-12-02|14"
    for unit in ("00000-s0", "00001-s0", "00001-s1"):
        st.write_json(f"{UNITS}/{unit}.json", {
            "unit": unit, "file": int(unit[:5]), "pid": 1, "rows": {key: 5} if unit == "00000-s0"
            else {}, "dead_letters": {},
            "stats": {"records": 5, "skipped": {}, "undefined_prices": 0,
                      "spreads_filtered": 0, "unknown_records": 0}})
    st.write_json(key_record_name(key), {"key": key, "rows": 4, "written": 1, "present": 0,
                                         "pid": 1})
    report = BackfillReport.read(st, shares)
    assert not report.complete
    assert report.missing == ["share not decoded: 00000-s1",
                              f"shard key {key}: 4 rows written of 5"]
    assert "MISSING: share not decoded: 00000-s1" in report.lines()


def test_backfill_into_s3_equals_the_local_lake_and_leaves_no_staging(session, tmp_path):
    """Staging (pieces, records) and shards on a real S3 server (SeaweedFS):
    the same files as on local disk, and the run's staging prefix is gone afterwards."""
    import pyarrow.fs as pafs
    from io_connectors.embedded.s3_server import EmbeddedS3Server
    files, _, want = session
    with EmbeddedS3Server() as srv:
        bucket = srv.create_bucket("backfill")
        env = {k: v for k, v in os.environ.items() if k not in ("DATA_ROOT", "USE_S3")}
        env.update(srv.env())
        backfill(files, f"{bucket}/lake", "--runner=FnApiRunner", "--block_mb=0.05", env=env)
        fs = srv.filesystem()
        infos = fs.get_file_info(pafs.FileSelector("backfill/lake", recursive=True))
        paths = sorted(i.path[len("backfill/lake/"):] for i in infos
                       if i.type == pafs.FileType.File)
        assert paths == sorted(want)
        for rel in paths[:: max(1, len(paths) // 15)]:
            with fs.open_input_file(f"backfill/lake/{rel}") as fh:
                assert pq.read_table(fh).equals(want[rel]), rel
        assert not [p for p in paths if "_staging" in p]


def test_a_truncated_file_fails_the_run_with_its_name_and_no_staging_left(tmp_path):
    import random
    from io_connectors.dbn import decode as D
    from tests.dbn_mutations import T0, trades_records
    path = tmp_path / "cut.trades.dbn"
    meta = D.make_metadata("GLBX.MDP3", "trades", T0)
    path.write_bytes(bytes(meta.encode()) + trades_records(random.Random(2), 50).tobytes()[:-7])
    root = tmp_path / "lake"
    code, err = run_backfill([str(path)], str(root), "--runner=FnApiRunner")
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: backfill failed") and "cut.trades.dbn: truncated DBN file" in last
    staging = root / "_staging" / "backfill"
    assert not staging.exists() or not list(staging.iterdir())
