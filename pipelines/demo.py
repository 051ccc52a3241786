"""``./run.sh demo``: the lake end to end on embedded defaults.

Starts a local NATS server (JetStream, free port, its own store), launches the streaming
Bronze and Gold pipelines on the DirectRunner (Prism) through ``IOService``, publishes a
few minutes of a synthetic ES session (front and next contract trades, MBP-10 books, 0DTE
option trades, level signals, plus two malformed messages), drains both pipelines the way
a SIGTERM does, and prints what landed where.  Then Silver: the full session of the date
(and three lighter warm-up weekdays before it, for the 2-minute SMAs) is backfilled into
Bronze from Databento DBN files with the bounded ``bronze_backfill`` pipeline (the
streamed window is in it again: the same exchange events, stored twice with other capture
metadata; readers that deduplicate on event identity, ``BronzeReader`` and the Silver
inputs, count each event once), and the newest feature set of ``configs/features``
(v3.2.0) is built for the date with ``SilverFeatureBuilder`` on the DirectRunner.
Then Gold: the Silver version is promoted to the training dataset ``demo_signals`` with
``GoldCurator`` (gates evaluated, including the causality spot check) and validated.

    python -m pipelines.demo [--data_root DIR] [--date 2024-12-16] [--start_utc 14:56]
                             [--minutes 8] [--scale 0.5] [--skip_silver]
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq

from io_connectors.lake.bronze_reader import BronzeReader
from io_connectors.config import PROJECT_ROOT, resolve_path
from io_connectors.dbn.writer import write_session_dbn
from io_connectors.lake.storage import LakeStorage
from io_connectors.nats.bus import NatsBus
from io_connectors.embedded.nats_server import EmbeddedNatsServer
from io_connectors.nats.settings import NatsSettings
from pipelines.gold_curator import GoldCurator
from pipelines.io_service import IOService
from pipelines.silver_builder import SilverFeatureBuilder
from transforms.feature_manifest import VERSION_RE
from transforms.silver.session import previous_weekdays
from transforms.synthetic_session import synthetic_session

FEATURES_DIR = os.path.join(PROJECT_ROOT, "configs", "features")


def newest_manifest(folder: str = FEATURES_DIR) -> str:
    """The manifest of the highest version in ``configs/features`` (v3.2.0 today)."""
    versions = [n[:-len(".yaml")] for n in os.listdir(folder)
                if n.endswith(".yaml") and VERSION_RE.match(n[:-len(".yaml")])]
    newest = max(versions, key=lambda v: tuple(int(x) for x in v[1:].split(".")))
    return os.path.join(folder, f"{newest}.yaml")


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _session_window(date: str, start_utc: str, minutes: float, scale: float) -> list:
    start = dt.datetime.fromisoformat(f"{date}T{start_utc}:00+00:00")
    lo = int(start.timestamp()) * 10**9
    hi = lo + int(minutes * 60) * 10**9
    out = []
    for subject, event in synthetic_session(date, scale=scale, seed=11, signals=True):
        ts = event["ts"] * 1_000_000 if subject == "levels.signals" else event["ts_event_ns"]
        if ts >= hi:
            break
        if ts >= lo:
            out.append((subject, event))
    return out


async def _publish(bus: NatsBus, events: list) -> dict:
    counts: dict = {}
    chunk = max(1, len(events) // 10)
    for i, (subject, event) in enumerate(events):
        await bus.publish(subject, event)
        counts[subject] = counts.get(subject, 0) + 1
        if i % chunk == chunk - 1:
            await bus.flush()
            _say(f"published {i + 1:,}/{len(events):,} events")
            await asyncio.sleep(0.5)        # let the stream flow in visible steps
    for bad in (b"{not json", b'{"ts_event_ns": "yesterday"}'):
        await bus.publish("market.futures.trades", bad)
    await bus.flush()
    counts["malformed"] = 2
    return counts


def _report(data_root: str, date: str) -> None:
    storage = LakeStorage(data_root)
    _say(f"Bronze under {os.path.join(data_root, 'bronze')}:")
    for layer, dataset in (("bronze", "futures/trades"), ("bronze", "futures/mbp10"),
                           ("bronze", "options/trades"), ("bronze", "_dead_letter"),
                           ("gold", "levels/signals")):
        by_partition: dict = {}
        if layer == "gold" and dataset == "levels/signals":
            _say(f"Gold streaming under {os.path.join(data_root, 'gold')}:")
        for path in storage.list_files(f"{layer}/{dataset}"):
            rel = os.path.relpath(os.path.dirname(path), storage.path(f"{layer}/{dataset}"))
            by_partition.setdefault(rel, [0, 0])
            by_partition[rel][0] += 1
            by_partition[rel][1] += pq.read_metadata(path).num_rows
        print(f"  {dataset}")
        for part, (nfiles, nrows) in sorted(by_partition.items()):
            print(f"    {part:45s} {nrows:>8,} rows in {nfiles:>3} files")
    reader = BronzeReader(data_root)
    fm = reader.front_month("ES", date)
    trades = reader.read_futures_trades("ES", date)
    _say(f"front month {date}: {fm.symbol} ({fm.dominance:.0%} of RTH trades, "
         f"roll-contaminated={fm.roll_contaminated}); {len(trades):,} front-month trades")
    _say(f"DuckDB over Bronze (Hive partitioning on, real contract symbols): "
         f"{_duckdb_trades(data_root)}")


def _duckdb_trades(data_root: str, distinct: bool = False) -> list:
    """The README's DuckDB query over Bronze trades (defaults: Hive partitioning on)."""
    import duckdb
    glob = os.path.join(data_root, "bronze/futures/trades/**/*.parquet")
    source = (f"(SELECT DISTINCT ts_event_ns, symbol, seq, price, size, aggressor "
              f"FROM read_parquet('{glob}'))" if distinct else f"read_parquet('{glob}')")
    return duckdb.sql(f"SELECT symbol, count(*) AS trades, round(avg(price), 2) AS avg_px "
                      f"FROM {source} GROUP BY symbol ORDER BY trades DESC").fetchall()


def _identity_report(data_root: str, date: str) -> None:
    """Rows stored vs exchange events after the backfill (the streamed window twice)."""
    reader = BronzeReader(data_root)
    stored = reader.read_futures_trades("ES", date, front_month_only=False, dedupe=False)
    events = reader.read_futures_trades("ES", date, front_month_only=False)
    by_source = stored["source"].value_counts().to_dict()
    _say(f"Bronze trades of {date}: {len(stored):,} rows stored ({by_source}), "
         f"{len(events):,} distinct events: BronzeReader and Silver read each event once "
         f"(identity: ts_event_ns, symbol, seq, price, size, aggressor)")
    _say(f"DuckDB, one row per event: {_duckdb_trades(data_root, distinct=True)}")


def _silver(data_root: str, date: str, scale: float, warmup_scale: float) -> int:
    warm = previous_weekdays(date, 3)
    dbn_dir = tempfile.mkdtemp(prefix="demo-dbn-")
    try:
        events = itertools.chain(
            *(synthetic_session(d, scale=warmup_scale, seed=11, signals=False) for d in warm),
            synthetic_session(date, scale=scale, seed=11, signals=False))
        t0 = time.monotonic()
        written = write_session_dbn(events, dbn_dir)
        _say(f"wrote DBN for {', '.join(warm)} (scale {warmup_scale}) and {date} "
             f"(scale {scale}) in {time.monotonic() - t0:.1f}s: {written.counts}")
        _say("bronze_backfill (bounded Beam pipeline, FnApiRunner, columnar) DBN -> Bronze ...")
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "pipelines.bronze_backfill",
                            "--files", *written.paths,
                            f"--data_root={data_root}", "--log_level=WARNING"],
                           cwd=PROJECT_ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            _say(f"bronze_backfill failed ({r.returncode}):\n{r.stderr[-3000:]}")
            return r.returncode
        _say(f"backfill done in {time.monotonic() - t0:.1f}s")
    finally:
        shutil.rmtree(dbn_dir, ignore_errors=True)
    _identity_report(data_root, date)

    manifest = newest_manifest()
    _say(f"Silver: building {os.path.basename(manifest)[:-5]} for {date} (18 stages, "
         f"DirectRunner) ...")
    builder = SilverFeatureBuilder(data_root=data_root)
    stats = builder.build_feature_set(manifest, [date], force=True)
    if stats["dates_failed"]:
        _say(f"Silver build failed: {stats['dates_failed']}")
        return 1
    version_rel = builder.store.version_dir(stats["version"])
    _say(f"Silver {stats['version']}: {stats['signal_count']} signals in "
         f"{stats['build_seconds']:.1f}s -> {builder.storage.path(version_rel)}")
    for path in builder.storage.list_files(version_rel, suffix=""):
        print(f"    {builder.storage.relative(path)[len(version_rel) + 1:]}")
    for d, text in stats["warnings"].items():
        _say(f"WARNING {d}: {text}")
    df = builder.load_features(stats["version"], [date])
    cols = ["timestamp", "level_kind_name", "direction", "level_price", "entry_price",
            "tape_imbalance", "ofi_60s", "barrier_state", "outcome"]
    if len(df):
        print(df[cols].to_string(index=False, max_rows=12))
    checks = builder.get_validation(stats["version"])["checks"]
    _say("validation.json: " + ", ".join(
        f"{name} {({True: 'ok', False: 'FAILED', None: 'not enforced'})[c['success']]}"
        for name, c in checks.items()))
    return 0


def _gold(data_root: str) -> int:
    version = os.path.basename(newest_manifest())[:-len(".yaml")]
    _say(f"Gold: promoting Silver {version} to the training dataset 'demo_signals' ...")
    curator = GoldCurator(data_root=data_root)
    result = curator.promote_to_training(version, "demo_signals", notes="demo", force=True)
    for name, gate in result["gates"].items():
        outcome = {True: "passed", False: "FAILED", None: "not checked"}[gate.get("success")]
        print(f"    gate {name:<17} {outcome}")
    report = curator.validate_dataset("demo_signals")
    _say(f"Gold training dataset {curator.storage.path(result['path'])}: "
         f"{report['row_count']} signals x {report['column_count']} columns, outcomes "
         f"{report['label_distribution']}, validation "
         f"{'passed' if report['success'] else 'FAILED'}")
    _say(f"catalog: {[d['dataset_name'] for d in curator.list_datasets()]}")
    return 0 if report["success"] else 1


async def main_async(args) -> int:
    data_root = resolve_path(args.data_root)
    for layer in ("bronze", "silver", "gold"):
        if os.path.isdir(os.path.join(data_root, layer)) and not args.keep:
            shutil.rmtree(os.path.join(data_root, layer))
    store = tempfile.mkdtemp(prefix="demo-nats-")
    with EmbeddedNatsServer(store_dir=store) as server:
        _say(f"NATS JetStream at {server.url} (store {store})")
        settings = NatsSettings(url=server.url)
        bus = await NatsBus(settings).connect()
        logs = os.path.join(tempfile.gettempdir(), "demo-logs")
        service = IOService(bus=bus, data_root=data_root, log_dir=logs)
        t0 = time.monotonic()
        await service.start()
        _say(f"bronze_stream and gold_stream running on the DirectRunner (Prism) in "
             f"{time.monotonic() - t0:.1f}s; logs in {logs}")
        events = _session_window(args.date, args.start_utc, args.minutes, args.scale)
        counts = await _publish(bus, events)
        _say(f"published {counts}")
        await asyncio.sleep(args.linger)
        _say("stopping both pipelines (SIGTERM: stop consuming, flush, ack)")
        codes = await service.stop()
        await bus.close()
        code = max(codes.values())
        _say(f"pipelines exited with {codes}")
    shutil.rmtree(store, ignore_errors=True)
    _report(data_root, args.date)
    if code != 0 or args.skip_silver:
        return code
    code = _silver(data_root, args.date, args.scale, args.warmup_scale)
    if code != 0:
        return code
    return _gold(data_root)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data_root", default=os.environ.get("DATA_ROOT", "./demo-data"))
    ap.add_argument("--date", default="2024-12-16", help="synthetic session date")
    ap.add_argument("--start_utc", default="14:56", help="HH:MM UTC of the first event")
    ap.add_argument("--minutes", type=float, default=8.0, help="event-time minutes published")
    ap.add_argument("--scale", type=float, default=0.5, help="session scale (1.0 = a real day)")
    ap.add_argument("--linger", type=float, default=6.0, help="seconds to stream before stop")
    ap.add_argument("--keep", action="store_true", help="keep existing bronze/ and silver/")
    ap.add_argument("--warmup_scale", type=float, default=0.1,
                    help="scale of the three warm-up sessions backfilled for Silver")
    ap.add_argument("--skip_silver", action="store_true", help="stop after Bronze")
    return asyncio.run(main_async(ap.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
