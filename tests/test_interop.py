"""The lake as users read it, with their tools, on data the pipelines really wrote.

One lake for the module: ``python -m pipelines.demo`` at a small scale (bronze_stream and
gold_stream fed through NATS, the same session backfilled from DBN files with
bronze_backfill, Silver built, Gold promoted).  Then pandas, pyarrow datasets with Hive
partitioning, DuckDB with its defaults and polars each read Bronze trades, MBP-10, options
and dead letters, the Gold level signals, each Silver table and the Gold training file, and
must get the real contract symbols, the row counts in the files' own metadata and tz-aware
times (issue 8).  The same lake holds the streamed window twice (stream and backfill): the
identity tests check that BronzeReader and the Silver inputs count each event once.
"""
from __future__ import annotations

import collections
import os
import subprocess
import sys

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from pipelines.demo import newest_manifest
from transforms.feature_manifest import load_manifest

from io_connectors.lake.bronze_reader import BronzeReader
from io_connectors.lake.silver_inputs import read_silver_day
from io_connectors.lake.silver_store import SilverStore
from io_connectors.lake.storage import LakeStorage
from io_connectors.lake.training_store import TrainingStore
from tests.helpers import ROOT, lake_folder
from tests.silver_fixtures import MANIFEST
from transforms.partitioning import ROOT_KEY, SESSION_DATE_KEY
from transforms.synthetic_session import synthetic_session

pytestmark = [pytest.mark.timeout(600),   # pyarrow converting tz-aware pandas columns:
              pytest.mark.filterwarnings("ignore:Series.values returning an ndarray")]

DATE, SCALE, SEED = "2024-12-16", 0.1, 11          # the demo's session and seed
DEMO_VERSION = os.path.basename(newest_manifest())[:-len(".yaml")]   # what the demo builds
WINDOW = ("14:56", 3)                              # streamed: 3 minutes from 14:56 UTC


@pytest.fixture(scope="module")
def lake(tmp_path_factory, prism_path):
    root = str(tmp_path_factory.mktemp("interop") / "lake")
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.demo", f"--data_root={root}", f"--scale={SCALE}",
         "--warmup_scale=0.05", f"--start_utc={WINDOW[0]}", f"--minutes={WINDOW[1]}",
         "--linger=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
        env=dict(os.environ, PRISM_LOCATION=prism_path))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return root


def _files(folder: str) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, names in os.walk(folder) for f in names
                  if f.endswith(".parquet") and not f.startswith((".", "_")))


def _truth(folder: str) -> pa.Table:
    """The rows of every file read one by one (no folder is parsed as a column)."""
    return pa.concat_tables([pq.read_table(f) for f in _files(folder)], promote_options="default")


# ---------------------------------------------------------------- the four readers
def _pandas(path):
    return pa.Table.from_pandas(pd.read_parquet(path), preserve_index=False)


def _pyarrow(path):
    return pads.dataset(path, format="parquet", partitioning="hive").to_table()


def _duckdb(path):
    source = path if path.endswith(".parquet") else f"{path}/**/*.parquet"
    return duckdb.sql(f"SELECT * FROM read_parquet('{source}')").to_arrow_table()


def _polars(path):
    return pl.read_parquet(path).to_arrow()


READERS = {"pandas": _pandas, "pyarrow": _pyarrow, "duckdb": _duckdb, "polars": _polars}
BRONZE = [("bronze", "futures/trades", "symbol"), ("bronze", "futures/mbp10", "symbol"),
          ("bronze", "options/trades", "option_symbol"), ("gold", "levels/signals", "level_id")]


def _strings(col) -> set:
    return {None if v is None else str(v) for v in col.to_pylist()}


@pytest.mark.parametrize("tool", READERS)
@pytest.mark.parametrize("layer, dataset, key_column", BRONZE)
def test_streamed_datasets_read_with_their_real_symbols(lake, tool, layer, dataset, key_column):
    folder = lake_folder(lake, layer, dataset)
    truth = _truth(folder)
    got = READERS[tool](folder)
    assert got.num_rows == truth.num_rows > 0
    assert _strings(got[key_column]) == _strings(truth[key_column])   # e.g. ESH5 and ESZ4
    if "symbol" in truth.column_names:
        assert _strings(got["symbol"]) == {"ESH5", "ESZ4"}
    if "underlying" in truth.column_names:
        assert _strings(got["underlying"]) == {"ES"}
    assert _strings(got[ROOT_KEY]) == {"ES"}                          # the folder, as its own column
    assert sorted(got["ts_event_ns"].to_pylist()) == sorted(truth["ts_event_ns"].to_pylist())


@pytest.mark.parametrize("tool", READERS)
def test_dead_letters_read(lake, tool):
    folder = lake_folder(lake, "bronze", "_dead_letter")
    got = READERS[tool](folder)
    assert got.num_rows == 2 and set(got["subject"].to_pylist()) == {"market.futures.trades"}


def _tz_aware(col: pa.ChunkedArray) -> bool:
    return pa.types.is_timestamp(col.type) and col.type.tz in ("UTC", "Etc/UTC", "+00:00")


@pytest.mark.parametrize("tool", READERS)
@pytest.mark.parametrize("table", ["signals", "state_table", "episodes"])
def test_each_silver_table_is_its_own_dataset(lake, tool, table):
    store = SilverStore(LakeStorage(lake))
    folder = os.path.join(lake, store.table_dir(DEMO_VERSION, table))
    truth = _truth(folder)
    got = READERS[tool](folder)
    assert got.num_rows == truth.num_rows > 0
    assert set(truth.column_names) <= set(got.column_names)           # this table's columns only
    assert set(got.column_names) - set(truth.column_names) == {SESSION_DATE_KEY}
    assert _strings(got[SESSION_DATE_KEY].cast(pa.string())) == {DATE}
    if "date" in truth.column_names:
        assert _strings(got["date"].cast(pa.string())) == {DATE}
    if "timestamp" in truth.column_names:
        assert _tz_aware(got["timestamp"])
        assert got["timestamp"].cast(pa.timestamp("us", "UTC")).cast(pa.int64()).to_pylist() \
            == [t // 1000 for t in got["ts_ns"].to_pylist()]                  # exact to the µs


@pytest.mark.parametrize("tool", READERS)
def test_the_gold_training_file(lake, tool):
    store = TrainingStore(LakeStorage(lake))
    meta = store.read_metadata("demo_signals")
    got = READERS[tool](os.path.join(lake, store.data_file("demo_signals")))
    assert got.num_rows == meta["signal_count"] > 0
    assert got.column_names == load_manifest(newest_manifest()).column_names()
    assert _tz_aware(got["timestamp"])
    assert meta["gates"]["silver_validation"]["success"] is True


def test_no_timestamp_in_the_lake_is_nanoseconds(lake):
    """Spark reads TIMESTAMP(MICROS) but refuses TIMESTAMP(NANOS) (issue 8)."""
    for path in _files(lake):
        for field in pq.read_schema(path):
            if pa.types.is_timestamp(field.type):
                assert field.type.unit == "us" and field.type.tz == "UTC", (path, field)


# ---------------------------------------------------------------- event identity
def _generated():
    """The demo's session as generated: every trade once, and the streamed window."""
    trades = [e for s, e in synthetic_session(DATE, scale=SCALE, seed=SEED, signals=False)
              if s == "market.futures.trades"]
    lo = int(pd.Timestamp(f"{DATE} {WINDOW[0]}", tz="UTC").value)
    hi = lo + WINDOW[1] * 60 * 10**9
    return trades, [t for t in trades if lo <= t["ts_event_ns"] < hi]


def test_the_same_events_by_stream_and_backfill_are_read_once(lake):
    trades, window = _generated()
    reader = BronzeReader(lake)
    stored = reader.read_futures_trades("ES", DATE, front_month_only=False, dedupe=False)
    assert collections.Counter(stored["source"]) == {"replay": len(trades), "sim": len(window)}
    events = reader.read_futures_trades("ES", DATE, front_month_only=False)
    assert len(events) == len(trades)
    assert sorted(zip(events["ts_event_ns"], events["seq"])) == \
        sorted((t["ts_event_ns"], t["seq"]) for t in trades)
    front = reader.front_month("ES", DATE).symbol
    day = read_silver_day(LakeStorage(lake), DATE, MANIFEST.parameters)   # the Silver inputs
    assert len(day.trades) == sum(t["symbol"] == front for t in trades)
    assert day.lineage["bronze"]["futures/trades"]["rows_read"] == len(trades)
    book = reader.read_futures_mbp10("ES", DATE, front_month_only=False)
    raw_book = reader.read_futures_mbp10("ES", DATE, front_month_only=False, dedupe=False)
    assert len(raw_book) > len(book) and len(book) == (raw_book["source"] == "replay").sum()
