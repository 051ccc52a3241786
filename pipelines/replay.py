"""Replays market data onto the bus (JetStream), from DBN files or a synthetic session.

    python -m pipelines.replay --source dbn --files F [F ...] [--speed X] [--nats_url URL]
    python -m pipelines.replay --source synthetic --date YYYY-MM-DD [--scale F] [--seed N]

Events are merged by ``(ts_event, trades before options before book)``, paced by
``Δts / speed`` (gaps capped at 5 s; ``--speed 0`` = as fast as possible) and published
with a ``Nats-Msg-Id`` derived from each record's identity, so a re-run inside the stream's
duplicate window adds nothing.  A bounded number of publishes is in flight.  Progress goes
to stderr (``--progress``); final statistics (events per type, event-time span, wall
time, rate) to stdout.
"""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
import sys
import time
from typing import Iterator, Optional

from io_connectors.config import ConfigError
from io_connectors.nats.bus import NatsBus
from io_connectors.nats.settings import NatsSettings
from io_connectors.preflight import StartupError, check_nats
from io_connectors.wal.log import WALManager
from io_connectors.monitoring.batch_progress import Progress
from io_connectors.wal.publisher import WalPublisher
from pipelines import cli
from transforms.pacing import paced


def _event_ts(subject: str, event: dict) -> int:
    return event["ts_event_ns"] if "ts_event_ns" in event else int(event["ts"]) * 10**6


def message_id(subject: str, event: dict) -> str:
    """Deterministic identity of an event for JetStream's publish dedup."""
    from io_connectors.dbn.decode import event_id
    if subject.startswith("market."):
        return event_id(subject, event)
    return f"{subject}:{_event_ts(subject, event)}"


def dbn_events(files: list[str], include_spreads: bool, stats=None) -> Iterator[tuple[str, dict]]:
    from io_connectors.dbn import decode as dbn_files
    instruments = dbn_files.load_instruments(files)
    per_file = [dbn_files.iter_events([f], instruments=instruments,
                                      include_spreads=include_spreads, stats=stats)
                for f in files]
    return dbn_files.merge_events(per_file)


def synthetic_events(date: str, scale: float, seed: int) -> Iterator[tuple[str, dict]]:
    from transforms.synthetic_session import synthetic_session
    return synthetic_session(date, scale=scale, seed=seed)


async def replay(events, settings: NatsSettings, speed: float, max_in_flight: int = 20000,
                 max_gap_s: float = 5.0, wal_dir: Optional[str] = None,
                 progress: str = "auto") -> dict:
    """Publishes ``(subject, event)`` pairs in order; returns statistics.  With ``wal_dir``
    every event goes through a write-ahead log first (``WalPublisher``), and what a
    crashed earlier run left in it is re-sent before anything new.  ``progress``: the
    ``batch_progress`` mode of the events-published counter on stderr."""
    counts: collections.Counter = collections.Counter()
    first_ts = last_ts = None
    shown = Progress("replay", progress)
    shown.task("events", unit="ev")
    published = [0]
    shown.poll(lambda: {"events": published[0]})
    recovered = 0
    async with NatsBus(settings, max_in_flight=max_in_flight) as raw_bus:
        bus = raw_bus
        if wal_dir:
            bus = WalPublisher(raw_bus, WALManager(wal_dir))
            recovered = await bus.recover()
        t0 = time.monotonic()
        stamped = ((_event_ts(s, e), (s, e)) for s, e in events)
        for due, (subject, event) in paced(stamped, speed, max_gap_s):
            if speed > 0:
                delay = t0 + due - time.monotonic()
                if delay > 0:
                    await bus.flush()
                    await asyncio.sleep(delay)
            await bus.publish(subject, event, msg_id=message_id(subject, event))
            ts = _event_ts(subject, event)
            first_ts = ts if first_ts is None else min(first_ts, ts)
            last_ts = ts if last_ts is None else max(last_ts, ts)
            counts[subject] += 1
            published[0] += 1
        await bus.flush()
        if wal_dir:
            await bus.close()
        wall = time.monotonic() - t0
    total = sum(counts.values())
    shown.close({"events": total})
    fmt = lambda ns: dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).isoformat() if ns else None
    return {"events": dict(counts), "total": total, "event_time_start": fmt(first_ts),
            "event_time_end": fmt(last_ts), "wall_s": round(wall, 3),
            "rate_per_s": round(total / wall, 1) if wall > 0 else None,
            **({"wal_recovered": recovered} if wal_dir else {})}


def main(argv=None) -> int:
    ap = cli.parser("pipelines.replay", __doc__)
    ap.add_argument("--source", choices=("dbn", "synthetic"), required=True,
                    help="dbn: Databento DBN files; synthetic: a deterministic ES session")
    ap.add_argument("--files", nargs="+", metavar="FILE",
                    help="DBN files, .dbn or .dbn.zst (with --source dbn)")
    ap.add_argument("--date", type=cli.iso_date, metavar="YYYY-MM-DD",
                    help="session date (with --source synthetic)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="synthetic session size, 1.0 = about 600k trades")
    ap.add_argument("--seed", type=int, default=0, help="synthetic session seed")
    ap.add_argument("--speed", type=float, default=1.0,
                    help="x real time (gaps capped at 5 s); 0 = as fast as possible")
    ap.add_argument("--include_spreads", action="store_true",
                    help="keep calendar-spread instruments (default: skipped, counted)")
    ap.add_argument("--max_in_flight", type=int, default=20000,
                    help="publishes awaiting their JetStream confirmation, at most")
    ap.add_argument("--nats_url", default=None,
                    help="NATS server URL (default: env NATS_URL, else configs/streams.yaml)")
    ap.add_argument("--wal", metavar="DIR", default=None,
                    help="publish through a write-ahead log in DIR (store-and-forward: "
                         "re-sends what a crashed run left behind)")
    ap.add_argument("--write_dbn", metavar="DIR", help="with --source synthetic: write the "
                    "session as DBN files (trades, mbp-10, definition) to DIR, no publishing")
    cli.add_progress(ap)
    args = cli.parse(ap, argv)
    decode_stats = None
    try:
        if args.write_dbn is not None and args.source != "synthetic":
            raise ConfigError("--write_dbn needs --source synthetic (DBN input is DBN already)")
        settings = None if args.write_dbn is not None else NatsSettings.resolve(args.nats_url)
        if args.speed < 0:
            raise ConfigError("--speed must be >= 0")
        if args.source == "dbn":
            if not args.files:
                raise ConfigError("--source dbn needs --files")
            from io_connectors.dbn.decode import DecodeStats
            decode_stats = DecodeStats()
            events = dbn_events(args.files, args.include_spreads, decode_stats)
        else:
            if not args.date:
                raise ConfigError("--source synthetic needs --date YYYY-MM-DD")
            if args.scale <= 0:
                raise ConfigError("--scale must be > 0")
            events = synthetic_events(args.date, args.scale, args.seed)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.write_dbn is not None:
        from io_connectors.dbn.writer import write_session_dbn
        try:
            result = write_session_dbn(events, args.write_dbn)
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for path, n in zip(result.paths, result.counts.values()):
            print(f"{path}: {n} records")
        print(f"dbn: {result.as_dict()}")
        return 0
    try:
        check_nats(settings)                 # fail fast: reachable, credentials, JetStream
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        stats = asyncio.run(replay(events, settings, args.speed, args.max_in_flight,
                                   wal_dir=args.wal, progress=args.progress))
    except ConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key, value in stats.items():
        print(f"{key}: {value}")
    if decode_stats is not None:
        print(f"decode: {decode_stats.as_dict()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
