"""Replay and backfill benchmark.

    python -m benchmarks.replay [--scale 0.2] [--backfill-scale 1.0] [--skip-backfill]
    ./run.sh bench replay ...

(a) Publish rate at ``--speed 0``: ``pipelines.replay.replay`` (merge, pacing logic,
    ``Nats-Msg-Id`` per event, bounded publishes in flight, every publish confirmed by
    JetStream) over a synthetic session into a fresh nats-server, against a baseline in
    the same invocation: a bare nats-py loop publishing the same pre-serialised payloads
    with ``publish_async`` (no ids, no merge).  The original system claimed ~100k events/s.
(b) Backfill rows/s for a synthetic day written as DBN files: ``pipelines.bronze_backfill``
    (bounded Beam pipeline on the DirectRunner/Prism, process start to exit) against a
    baseline without Beam in one process: the same decoder, parser and Parquet writer
    (``iter_events`` -> ``parse_market_event`` -> ``rows_to_table`` -> ``write_parquet``).
Everything runs on 127.0.0.1 in a temporary folder removed at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

import orjson

from io_connectors.embedded.nats_server import EmbeddedNatsServer
from io_connectors.nats.settings import NatsSettings, connect
from io_connectors.nats.streams import ensure_streams

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _session(date: str, scale: float) -> list:
    from transforms.synthetic_session import synthetic_session
    return list(synthetic_session(date, scale=scale, seed=3, signals=False))


async def _baseline_publish(url: str, events: list) -> float:
    nc = await connect(NatsSettings(url=url))
    js = nc.jetstream(publish_async_max_pending=4000)
    await ensure_streams(js)
    payloads = [(s, orjson.dumps(e)) for s, e in events]
    t0 = time.perf_counter()
    futures = []
    for subject, payload in payloads:
        futures.append(await js.publish_async(subject, payload, wait_stall=60))
        if len(futures) >= 16000:
            await asyncio.gather(*futures)
            futures = []
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - t0
    await nc.close()
    return elapsed


def bench_publish(date: str, scale: float) -> dict:
    from pipelines.replay import replay
    events = _session(date, scale)
    out = {"events": len(events)}
    with EmbeddedNatsServer() as srv:
        t0 = time.perf_counter()
        stats = asyncio.run(replay(iter(events), NatsSettings(url=srv.url), speed=0))
        out["replay_s"] = time.perf_counter() - t0
        assert stats["total"] == len(events)
    with EmbeddedNatsServer() as srv:
        out["baseline_s"] = asyncio.run(_baseline_publish(srv.url, events))
    return out


def _baseline_backfill(files: list[str], data_root: str) -> int:
    from io_connectors.dbn import decode as dbn_files
    from io_connectors.lake.storage import LakeStorage, parquet_options
    from transforms.arrow_rows import rows_to_table
    from transforms.market_parse import parse_market_event
    from transforms.partitioning import bronze_key, shard_layout
    storage = LakeStorage(data_root)
    groups = collections.defaultdict(list)
    for subject, event in dbn_files.iter_events(files, dbn_files.load_instruments(files)):
        ev = parse_market_event(subject, orjson.dumps(event))
        groups[bronze_key(ev.dataset, ev.partition, ev.date, ev.hour)].append(ev.row)
    rows = 0
    for key, values in groups.items():
        folder, schema, sort_col = shard_layout(key)
        values.sort(key=lambda r: (r[0], repr(r)))
        for i in range(0, len(values), 1000):
            table = rows_to_table(values[i:i + 1000], schema, sort_by=sort_col)
            storage.write_parquet(folder, f"part-{key.replace('|', '_').replace('/', '_')}-{i}.parquet",
                                  table, *parquet_options())
            rows += table.num_rows
    return rows


def bench_backfill(date: str, scale: float, work: str) -> dict:
    from io_connectors.dbn.writer import write_session_dbn
    from transforms.synthetic_session import synthetic_session
    dbn_dir = os.path.join(work, "dbn")
    t0 = time.perf_counter()
    written = write_session_dbn(synthetic_session(date, scale=scale, seed=3, signals=False), dbn_dir)
    paths = written.paths if hasattr(written, "paths") else written
    out = {"dbn_write_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pipelines.bronze_backfill", "--runner=DirectRunner",
                        "--files", *paths, f"--data_root={os.path.join(work, 'beam')}"],
                       cwd=ROOT, capture_output=True, text=True)
    out["beam_s"] = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    t0 = time.perf_counter()
    out["rows"] = _baseline_backfill(paths, os.path.join(work, "baseline"))
    out["baseline_s"] = time.perf_counter() - t0
    import pyarrow.dataset as pads
    beam_rows = 0
    for d in ("futures/trades", "futures/mbp10", "options/trades"):
        folder = os.path.join(work, "beam", "bronze", d)
        if os.path.isdir(folder):
            beam_rows += pads.dataset(folder, format="parquet").count_rows()
    out["beam_rows"] = beam_rows
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--date", default="2024-12-16")
    ap.add_argument("--scale", type=float, default=0.2, help="session scale for (a)")
    ap.add_argument("--backfill-scale", type=float, default=1.0, help="session scale for (b)")
    ap.add_argument("--skip-backfill", action="store_true")
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench-replay-")
    try:
        a = bench_publish(args.date, args.scale)
        n = a["events"]
        print(f"(a) publish at --speed 0, {n:,} events (scale {args.scale})")
        print(f"    replay   {n / a['replay_s']:>10,.0f} events/s  ({a['replay_s']:.2f} s)")
        print(f"    baseline {n / a['baseline_s']:>10,.0f} events/s  ({a['baseline_s']:.2f} s)")
        print(f"    ratio    {a['baseline_s'] / a['replay_s']:.2f}x of baseline")
        if not args.skip_backfill:
            b = bench_backfill(args.date, args.backfill_scale, work)
            rows = b["rows"]
            print(f"(b) backfill of a synthetic day (scale {args.backfill_scale}), {rows:,} rows "
                  f"(DBN written in {b['dbn_write_s']:.1f} s)")
            print(f"    beam     {rows / b['beam_s']:>10,.0f} rows/s  ({b['beam_s']:.1f} s, "
                  f"process start to exit, {b['beam_rows']:,} rows landed)")
            print(f"    baseline {rows / b['baseline_s']:>10,.0f} rows/s  ({b['baseline_s']:.1f} s)")
            print(f"    ratio    {b['baseline_s'] / b['beam_s']:.2f}x of baseline")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
