"""``./run.sh demo``: the lake end to end on embedded defaults.

Starts a local NATS server (JetStream, free port, its own store), launches the streaming
Bronze pipeline on the DirectRunner (Prism) through ``BronzeWriter``, publishes a few
minutes of a synthetic ES session (front and next contract trades, MBP-10 books, 0DTE
option trades, plus two malformed messages), stops the pipeline with the same drain a
SIGTERM gets, and prints what landed where.

    python -m pipelines.demo [--data_root DIR] [--date 2024-12-16] [--start_utc 14:56]
                             [--minutes 8] [--scale 0.5]
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import sys
import tempfile
import time

import pyarrow.parquet as pq

from io_connectors.bronze_reader import BronzeReader
from io_connectors.config import resolve_path
from io_connectors.lake_storage import LakeStorage
from io_connectors.nats_bus import NatsBus
from io_connectors.nats_server import EmbeddedNatsServer
from io_connectors.nats_settings import NatsSettings
from pipelines.bronze_writer import BronzeWriter
from transforms.synthetic_session import synthetic_session



def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _session_window(date: str, start_utc: str, minutes: float, scale: float) -> list:
    start = dt.datetime.fromisoformat(f"{date}T{start_utc}:00+00:00")
    lo = int(start.timestamp()) * 10**9
    hi = lo + int(minutes * 60) * 10**9
    out = []
    for subject, event in synthetic_session(date, scale=scale, seed=11, signals=False):
        if event["ts_event_ns"] >= hi:
            break
        if event["ts_event_ns"] >= lo:
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
    for dataset in ("futures/trades", "futures/mbp10", "options/trades", "_dead_letter"):
        by_partition: dict = {}
        for path in storage.list_files(f"bronze/{dataset}"):
            rel = os.path.relpath(os.path.dirname(path), storage.path(f"bronze/{dataset}"))
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
    try:
        import duckdb
        glob = os.path.join(data_root, "bronze/futures/trades/*/*/*/*.parquet")
        rows = duckdb.sql(f"SELECT symbol, count(*) AS trades, round(avg(price), 2) AS avg_px "
                          f"FROM read_parquet('{glob}', hive_partitioning = false) "
                          f"GROUP BY symbol ORDER BY trades DESC").fetchall()
        _say(f"DuckDB over Bronze (real contract symbols): {rows}")
    except ImportError:
        pass


async def main_async(args) -> int:
    data_root = resolve_path(args.data_root)
    if os.path.isdir(os.path.join(data_root, "bronze")) and not args.keep:
        shutil.rmtree(os.path.join(data_root, "bronze"))
    store = tempfile.mkdtemp(prefix="demo-nats-")
    with EmbeddedNatsServer(store_dir=store) as server:
        _say(f"NATS JetStream at {server.url} (store {store})")
        settings = NatsSettings(url=server.url)
        bus = await NatsBus(settings).connect()
        log = os.path.join(tempfile.gettempdir(), "demo-bronze_stream.log")
        writer = BronzeWriter(bus=bus, data_root=data_root, log_path=log)
        t0 = time.monotonic()
        await writer.start()
        _say(f"bronze_stream running on the DirectRunner (Prism) in {time.monotonic() - t0:.1f}s; "
             f"log: {log}")
        events = _session_window(args.date, args.start_utc, args.minutes, args.scale)
        counts = await _publish(bus, events)
        _say(f"published {counts}")
        await asyncio.sleep(args.linger)
        _say("stopping bronze_stream (SIGTERM: stop consuming, flush, ack)")
        code = await writer.stop()
        await bus.close()
        _say(f"bronze_stream exited with {code}")
    shutil.rmtree(store, ignore_errors=True)
    _report(data_root, args.date)
    return code


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data_root", default=os.environ.get("DATA_ROOT", "./demo-data"))
    ap.add_argument("--date", default="2024-12-16", help="synthetic session date")
    ap.add_argument("--start_utc", default="14:56", help="HH:MM UTC of the first event")
    ap.add_argument("--minutes", type=float, default=8.0, help="event-time minutes published")
    ap.add_argument("--scale", type=float, default=0.5, help="session scale (1.0 = a real day)")
    ap.add_argument("--linger", type=float, default=6.0, help="seconds to stream before stop")
    ap.add_argument("--keep", action="store_true", help="keep an existing bronze/ folder")
    return asyncio.run(main_async(ap.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
