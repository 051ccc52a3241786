"""Replay benchmark.

    python -m benchmarks.replay [--scale 0.2]
    ./run.sh bench replay ...

(a) Publish rate at ``--speed 0``: ``pipelines.replay.replay`` (merge, pacing logic,
    ``Nats-Msg-Id`` per event, bounded publishes in flight, every publish confirmed by
    JetStream) over a synthetic session into a fresh nats-server, against a baseline in
    the same invocation: a bare nats-py loop publishing the same pre-serialised payloads
    with ``publish_async`` (no ids, no merge).  The original system claimed ~100k events/s.
The backfill (DBN files -> Bronze) has its own benchmark: ``benchmarks/backfill.py``.
Everything runs on 127.0.0.1 in a temporary folder removed at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson

from io_connectors.embedded.nats_server import EmbeddedNatsServer
from io_connectors.nats.settings import NatsSettings, connect
from io_connectors.nats.streams import ensure_streams

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--date", default="2024-12-16")
    ap.add_argument("--scale", type=float, default=0.2, help="session scale for (a)")
    args = ap.parse_args(argv)
    a = bench_publish(args.date, args.scale)
    n = a["events"]
    print(f"(a) publish at --speed 0, {n:,} events (scale {args.scale})")
    print(f"    replay   {n / a['replay_s']:>10,.0f} events/s  ({a['replay_s']:.2f} s)")
    print(f"    baseline {n / a['baseline_s']:>10,.0f} events/s  ({a['baseline_s']:.2f} s)")
    print(f"    ratio    {a['baseline_s'] / a['replay_s']:.2f}x of baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
