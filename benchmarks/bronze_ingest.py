"""Bronze ingest benchmark: the Beam ``bronze_stream`` pipeline against a minimal
asyncio NATS consumer (no Beam) that writes the same Parquet layout, measured in the
same invocation on the same machine.

    python -m benchmarks.bronze_ingest [--trades 200000] [--rate 2000] [--duration 30]
                                       [--skip-latency] [--max-ack-pending N] [--keep-temp]
                                       [--instances 2 [3 ...]]
    ./run.sh bench bronze_ingest ...

What it measures
(a) Backlog drain.  N deterministic ES futures trades (``transforms.sample_events``,
    ``market.futures.trades``) are published into a fresh JetStream (a fresh
    ``nats-server`` per measured system, so both start from the same backlog; core NATS
    publishes in batches, then ``stream_info`` must show N stored messages).  Then
    - Beam: ``python -m pipelines.bronze_stream --runner=DirectRunner --stop_at_end`` as
      a subprocess (Prism);
    - baseline: this module re-run as a subprocess in ``--baseline-consumer`` mode: one
      asyncio nats-py durable push consumer with explicit acks (own durable and deliver
      subject on the same stream), ``parse_market_event`` per message, a buffer per
      partition key flushed every 1000 rows (and at the end) with ``rows_to_table`` +
      ``LakeStorage.write_parquet`` (same zstd Parquet layout and shard names), acking
      the flushed messages afterwards (``+ACK`` to each reply subject, then a flush).
    A watcher thread in this process polls ``bronze/futures/trades`` (50 ms) and sums
    the Parquet row counts.  rows/s = N / (process start -> all N rows readable).  Also
    reported: start-up (process start -> first shard readable), the drain time excluding
    start-up (first shard -> last shard), the process wall time and its CPU time (user +
    sys of the process tree: the fairer comparison when other work loads the machine).
    - beam x2: two ``bronze_stream`` processes started together on the same durable
      consumer and lake (horizontal scale-out), same backlog, same measurement; the
      messages each instance took are read from its log.  ``--instances`` picks
      the counts (none: skipped).
(b) Steady latency.  With the system running (streaming mode) and warmed up (1000
    warm-up events of another partition must be readable first), events are published
    at a fixed rate (default 2000/s for 30 s), each event's publish time recorded by its
    ``seq``.  The watcher (100 ms) reads the ``seq`` column of each new shard and records
    when each seq first became readable.  p50/p99/max of publish -> readable.  The
    baseline here also flushes a partition 5 s after its first buffered row (the
    pipeline's rule).  Both systems are stopped with SIGTERM (drain, exit 0), then every
    process group is killed.

Targets on the 2-core reference machine are printed next to the figures (PASS/MISS):
Beam drain >= 50,000 rows/s, Beam drain >= 0.5x baseline, Beam steady p99 <= 7 s; two
instances drain >= 1.6x one and >= 3x the baseline (the original system's writer), each
shown after start-up (first shard -> all readable) and end to end.
Everything runs on 127.0.0.1 in a temporary folder that is removed at the end.  The whole
run takes about 1.5-2 minutes.  Other load on the machine skews every figure: the load
average at the start is printed with the summary.
"""
from __future__ import annotations

import argparse
import asyncio
import glob
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import nats
import orjson
from nats.js import api
import pyarrow.parquet as pq

from io_connectors.lake.storage import LakeStorage, parquet_options, shard_name
from io_connectors.nats.ack import parse_ack_token
from io_connectors.embedded.nats_server import EmbeddedNatsServer
from io_connectors.nats.streams import consumer_spec, ensure_streams
from transforms.arrow_rows import rows_to_table
from transforms.market_parse import InvalidEvent, parse_market_event, utc_date_hour
from transforms.partitioning import bronze_key, dead_letter_key, shard_layout
from transforms.sample_events import sample_events

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBJECT = "market.futures.trades"
DATASET = "futures/trades"
HOUR_14 = 1734357600 * 10**9                # 2024-12-16T14:00:00Z
NEVER = 10**12                              # sample_events: no books / option trades
BASELINE_DURABLE = "bench_baseline_writer"

TARGET_DRAIN_ROWS_S = 50_000
TARGET_DRAIN_RATIO = 0.5
TARGET_P99_S = 7.0
TARGET_SCALEOUT_RATIO = 1.6            # two instances vs one, same backlog
TARGET_SCALEOUT_VS_BASELINE = 3.0      # two instances vs the original writer (the baseline)


# --------------------------------------------------------------------------- inputs

def _trades(start_ns: int, count: int, per_second: float, seed: int) -> list[dict]:
    seconds = count / per_second
    out = [e for s, e in sample_events(start_ns, seconds, per_second, seed=seed,
                                       book_every=NEVER, option_every=NEVER)
           if s == SUBJECT]
    return out[:count]


def drain_payloads(n: int) -> list[bytes]:
    """N trades at 50/s of event time from 14:00Z: two hourly partitions, seq 1..N."""
    return [orjson.dumps(e) for e in _trades(HOUR_14, n, 50.0, seed=11)]


def latency_payloads(rate: float, duration: float) -> list[tuple[int, bytes]]:
    """(seq, payload) at ``rate`` events/s of event time in hour 16Z, seq 1..rate*duration."""
    events = _trades(HOUR_14 + 2 * 3600 * 10**9 + 10**9, int(rate * duration), rate, seed=13)
    return [(e["seq"], orjson.dumps(e)) for e in events]


def warmup_payloads(n: int = 1000) -> list[bytes]:
    """Exactly one count-triggered shard in hour 17Z; seq -1..-n (never a measured seq)."""
    out = []
    for e in _trades(HOUR_14 + 3 * 3600 * 10**9 + 10**9, n, 1000.0, seed=17):
        e["seq"] = -e["seq"]
        out.append(orjson.dumps(e))
    return out


# --------------------------------------------------------------------------- NATS side

async def _connect(url: str):
    return await nats.connect(servers=[url], connect_timeout=5, max_reconnect_attempts=-1,
                              reconnect_time_wait=0.5)


async def _stream_count(js, stream: str) -> int:
    return (await js.stream_info(stream)).state.messages


async def publish_backlog(url: str, payloads: list[bytes], batch: int = 5000,
                          timeout: float = 60.0) -> float:
    """Core-NATS publishes to the stream's subject in batches; returns seconds taken once
    ``stream_info`` shows every message stored."""
    t0 = time.monotonic()
    nc = await _connect(url)
    try:
        js = nc.jetstream()
        stream = (await ensure_streams(js))["MARKET_DATA"]
        before = await _stream_count(js, stream)
        for i in range(0, len(payloads), batch):
            for p in payloads[i:i + batch]:
                await nc.publish(SUBJECT, p)
            await nc.flush()
        want = before + len(payloads)
        deadline = time.monotonic() + timeout
        while True:
            have = await _stream_count(js, stream)
            if have >= want:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"stream {stream} holds {have - before} of {len(payloads)} "
                                   "published messages (JetStream dropped core publishes?)")
            await asyncio.sleep(0.05)
        return time.monotonic() - t0
    finally:
        await nc.close()


async def paced_publish(url: str, events: list[tuple[int, bytes]], rate: float,
                        pub_times: dict, tick_s: float = 0.005) -> float:
    """Publishes ``events`` at ``rate``/s (core NATS, flushed every tick), recording the
    monotonic publish time of each seq; returns the achieved duration."""
    nc = await _connect(url)
    try:
        n = len(events)
        i = 0
        t0 = time.monotonic()
        while i < n:
            due = min(n, int((time.monotonic() - t0) * rate) + 1)
            while i < due:
                seq, payload = events[i]
                pub_times[seq] = time.monotonic()
                await nc.publish(SUBJECT, payload)
                i += 1
            await nc.flush()
            next_at = t0 + i / rate
            await asyncio.sleep(max(0.0, min(tick_s, next_at - time.monotonic())))
        return time.monotonic() - t0
    finally:
        await nc.close()


# --------------------------------------------------------------------------- lake watcher

class LakeWatcher(threading.Thread):
    """Polls ``<data_root>/bronze/futures/trades`` for new Parquet shards.

    Records, per shard, when it was first seen and its row count; with ``read_seq`` also
    the first time each ``seq`` value was readable (and how many duplicates were seen).
    """

    def __init__(self, data_root: str, interval: float, read_seq: bool):
        super().__init__(name="lake-watcher", daemon=True)
        self.folder = os.path.join(data_root, "bronze", DATASET)
        self.interval = interval
        self.read_seq = read_seq
        self.shards: list[tuple[float, int]] = []     # (first seen, rows)
        self.seen_files: set = set()
        self.seq_seen: dict[int, float] = {}
        self.duplicates = 0
        self.total_rows = 0
        self.errors: list[str] = []
        self._stop_evt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.poll()
            self._stop_evt.wait(self.interval)
        self.poll()

    def stop(self) -> None:
        self._stop_evt.set()
        if self.is_alive():
            self.join(10)

    def poll(self) -> None:
        now = time.monotonic()
        paths = glob.glob(os.path.join(self.folder, "**", "*.parquet"), recursive=True)
        for path in paths:
            if path in self.seen_files:
                continue
            try:
                if self.read_seq:
                    seqs = pq.read_table(path, columns=["seq"]).column(0).to_pylist()
                    rows = len(seqs)
                else:
                    rows = pq.read_metadata(path).num_rows
                    seqs = ()
            except Exception as exc:  # pylint: disable=broad-except
                self.errors.append(f"{path}: {exc!r}")
                continue
            with self._lock:
                self.seen_files.add(path)
                self.shards.append((now, rows))
                self.total_rows += rows
                for s in seqs:
                    if s in self.seq_seen:
                        self.duplicates += 1
                    else:
                        self.seq_seen[s] = now

    def time_reaching(self, n: int) -> Optional[float]:
        """When the readable row count first reached ``n`` (None if it never did)."""
        total = 0
        for t, rows in sorted(self.shards):
            total += rows
            if total >= n:
                return t
        return None

    def first_shard(self) -> Optional[float]:
        return min((t for t, _ in self.shards), default=None)

    def count_seqs(self, pred) -> int:
        with self._lock:
            return sum(1 for s in self.seq_seen if pred(s))


# --------------------------------------------------------------------------- processes

def _command(module: str, extra: list[str], sep: str):
    """Command builder for one system; ``sep`` is its flag word separator (_ or -)."""
    def build(url: str, data_root: str, stop_at_end: bool, max_ack_pending) -> list[str]:
        flag = lambda name: "--" + name.replace("_", sep)
        cmd = [sys.executable, "-m", module, *extra, f"{flag('nats_url')}={url}",
               f"{flag('data_root')}={data_root}"]
        if stop_at_end:
            cmd.append(flag("stop_at_end"))
        if max_ack_pending:
            cmd.append(f"{flag('max_ack_pending')}={max_ack_pending}")
        return cmd
    return build


COMMANDS = {"beam": _command("pipelines.bronze_stream", ["--runner=DirectRunner"], "_"),
            "baseline": _command("benchmarks.bronze_ingest", ["--baseline-consumer"], "-")}


def start_process(cmd: list[str], log_path: str) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def kill_group(proc: Optional[subprocess.Popen]) -> None:
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


# Start-up chatter of Beam / Prism that every run logs at WARNING level.
BENIGN_WARNINGS = ("apitools not found", "Really starting service", "Really destroying service",
                   "empty transform, with payload", "may not be deterministic")


def log_findings(log_path: str) -> dict:
    """Errors, warnings and the final line of a pipeline / consumer log."""
    try:
        text = open(log_path, encoding="utf-8", errors="replace").read()
    except OSError:
        return {"errors": 0, "warnings": 0, "tracebacks": 0, "finished": None, "first_error": None}
    lines = text.splitlines()
    errors = [ln for ln in lines if " ERROR " in ln or ln.startswith(("error:", "ERROR:"))]
    warnings = [ln for ln in lines if (" WARNING " in ln or ln.startswith("WARNING:"))
                and not any(b in ln for b in BENIGN_WARNINGS)]
    finished = next((ln for ln in reversed(lines) if "finished" in ln), None)
    exc_line = None
    if "Traceback (most recent call last)" in text:
        after = text.split("Traceback (most recent call last)", 1)[1].splitlines()
        exc_line = next((ln for ln in after[1:] if ln and not ln.startswith((" ", "\t"))), None)
    return {"errors": len(errors), "warnings": len(warnings),
            "tracebacks": text.count("Traceback (most recent call last)"),
            "finished": finished, "first_error": (errors or warnings or [None])[0],
            "first_traceback": exc_line,
            "tail": "\n".join(lines[-15:])}


# --------------------------------------------------------------------------- (a) drain

@dataclass
class DrainResult:
    system: str
    n: int
    ok: bool = False
    publish_s: float = math.nan
    to_readable_s: float = math.nan      # process start -> all N readable
    startup_s: float = math.nan          # process start -> first shard readable
    steady_s: float = math.nan           # first shard -> all N readable
    wall_s: float = math.nan             # process start -> exit
    cpu_s: float = math.nan              # user + sys CPU of the process and its children
    exit_code: Optional[int] = None
    rows: int = 0
    shards: int = 0
    distinct_seq: int = 0
    log: dict = field(default_factory=dict)
    note: str = ""
    per_instance_rows: list = field(default_factory=list)
    load: float = math.nan               # 1-minute load average when the run started
    cpu: dict = field(default_factory=dict)   # CPU seconds by program during the run

    @property
    def rows_per_s(self) -> float:
        return self.n / self.to_readable_s if self.ok else math.nan

    @property
    def steady_rows_per_s(self) -> float:
        return self.n / self.steady_s if self.ok and self.steady_s > 0 else math.nan


class CpuMeter:
    """CPU seconds (user + system) of process trees, by program name (``python``,
    ``prism``, ``nats-server``), from ``/proc``: ``sample()`` records the latest figure of
    every process below the roots, so processes that exit keep their last sample."""

    _TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, roots: list[int]):
        self.roots = list(roots)
        self.seen: dict = {}                 # (pid, name) -> cpu seconds

    def sample(self) -> None:
        children: dict = {}
        stats: dict = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    raw = fh.read()
            except OSError:
                continue
            name, rest = raw.split("(", 1)[1].rsplit(")", 1)
            fields = rest.split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            stats[int(entry)] = (name, (int(fields[11]) + int(fields[12])) / self._TICK)
        todo = [pid for pid in self.roots if pid in stats]
        while todo:
            pid = todo.pop()
            name, cpu = stats[pid]
            self.seen[(pid, name)] = cpu
            todo.extend(children.get(pid, []))

    def by_name(self) -> dict:
        out: dict = {}
        for (_, name), cpu in self.seen.items():
            out[name] = out.get(name, 0.0) + cpu
        return out


def _command_of(system: str):
    """The command builder and instance count of a drain system ("beam", "beam x2", ...)."""
    name, _, times = system.partition(" x")
    return COMMANDS[name], int(times or 1)


def _instance_share(log_path: str) -> Optional[int]:
    """Messages one consumer process took: the sum of its readers' ``split i finished
    after N messages`` lines (bronze_stream), else its ``rows_written=N`` (the baseline);
    None if the log has neither."""
    try:
        text = open(log_path, encoding="utf-8", errors="replace").read()
    except OSError:
        return None
    splits = re.findall(r"split \d+ finished after (\d+) messages", text)
    if splits:
        return sum(int(n) for n in splits)
    m = re.findall(r"rows_written=(\d+)", text)
    return int(m[-1]) if m else None


def run_drain(system: str, payloads: list[bytes], work: str, args) -> DrainResult:
    """Drains ``payloads`` (published first) with ``system``: "beam", "baseline", or
    "beam x2" (two bronze_stream instances started together on the same consumer)."""
    n = len(payloads)
    res = DrainResult(system, n, load=os.getloadavg()[0])
    command, instances = _command_of(system)
    base = os.path.join(work, f"drain-{system.replace(' ', '')}")
    data_root = os.path.join(base, "lake")
    logs = [os.path.join(base, f"{system.replace(' ', '')}-{i}.log") for i in range(instances)]
    os.makedirs(data_root)
    server = EmbeddedNatsServer(store_dir=os.path.join(base, "nats"))
    procs: list = []
    watcher = LakeWatcher(data_root, interval=0.05, read_seq=False)
    t0 = time.monotonic()
    try:
        server.start()
        res.publish_s = asyncio.run(publish_backlog(server.url, payloads))
        print(f"  [{system}] backlog of {n:,} trades stored in {res.publish_s:.1f}s; "
              f"starting {instances} consumer process(es)", flush=True)
        watcher.start()
        t0 = time.monotonic()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        procs = [start_process(command(server.url, data_root, True, args.max_ack_pending), log)
                 for log in logs]
        meter = CpuMeter([p.pid for p in procs])
        server_cpu = CpuMeter([server.proc.pid])
        server_cpu.sample()
        server_before = server_cpu.by_name()
        deadline = t0 + args.drain_timeout
        t_exit = math.nan
        next_sample = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_sample:
                meter.sample()
                next_sample = time.monotonic() + 0.1
            if all(p.poll() is not None for p in procs):
                if t_exit != t_exit:
                    t_exit = time.monotonic()
                if watcher.total_rows >= n:
                    break
                if time.monotonic() - t_exit > 1.0:      # exited short: a few last polls
                    break
            time.sleep(0.02)
        server_cpu.sample()
        res.cpu = {k: round(v, 2) for k, v in meter.by_name().items()}
        res.cpu["nats-server"] = round(sum(server_cpu.by_name().values())
                                       - sum(server_before.values()), 2)
        if any(p.poll() is None for p in procs):
            res.note = f"did not finish within {args.drain_timeout:.0f}s"
            if watcher.total_rows >= n:
                # Landed everything but did not exit: record, then stop it.
                res.note = "all rows landed but a process did not exit by itself"
        else:
            res.wall_s = t_exit - t0      # observed by the 20 ms poll loop
            codes = [p.returncode for p in procs]
            res.exit_code = next((c for c in codes if c != 0), 0)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)   # the exited process trees
            res.cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    finally:
        watcher.stop()
        for proc in procs:
            kill_group(proc)
        server.stop()
    res.rows = watcher.total_rows
    res.shards = len(watcher.shards)
    reached = watcher.time_reaching(n)
    first = watcher.first_shard()
    if first is not None:
        res.startup_s = first - t0
    if reached is not None:
        res.to_readable_s = reached - t0
        res.steady_s = reached - first
    seqs: set = set()
    for path in watcher.seen_files:
        seqs.update(pq.read_table(path, columns=["seq"]).column(0).to_pylist())
    res.distinct_seq = len(seqs)
    res.ok = reached is not None and res.distinct_seq == n and res.exit_code == 0
    if res.rows != n and not res.note:
        res.note = f"{res.rows:,} rows landed for {n:,} events ({res.distinct_seq:,} distinct)"
    res.log = log_findings(logs[0])
    res.per_instance_rows = [_instance_share(log) for log in logs]
    if args.keep_temp:
        print(f"  [{system}] logs: {', '.join(logs)}")
    return res


# --------------------------------------------------------------------------- (b) latency

@dataclass
class LatencyResult:
    system: str
    events: int
    ok: bool = False
    rate_achieved: float = math.nan
    warmup_s: float = math.nan
    p50: float = math.nan
    p99: float = math.nan
    max: float = math.nan
    mean: float = math.nan
    missing: int = 0
    duplicates: int = 0
    stop_s: float = math.nan
    exit_code: Optional[int] = None
    log: dict = field(default_factory=dict)
    note: str = ""


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


class _Abandon(Exception):
    """The run cannot be measured (note set); clean up and report what is known."""


def run_latency(system: str, events: list[tuple[int, bytes]], warmup: list[bytes], work: str,
                args) -> LatencyResult:
    res = LatencyResult(system, len(events))
    base = os.path.join(work, f"latency-{system}")
    data_root = os.path.join(base, "lake")
    log_path = os.path.join(base, f"{system}.log")
    os.makedirs(data_root)
    server = EmbeddedNatsServer(store_dir=os.path.join(base, "nats"))
    watcher = LakeWatcher(data_root, interval=0.1, read_seq=True)
    proc = None
    pub_times: dict[int, float] = {}
    try:
        server.start()
        watcher.start()
        t0 = time.monotonic()
        proc = start_process(COMMANDS[system](server.url, data_root, False, args.max_ack_pending),
                             log_path)
        asyncio.run(publish_backlog(server.url, warmup))
        deadline = t0 + args.warmup_timeout
        while watcher.count_seqs(lambda s: s < 0) < len(warmup):
            if proc.poll() is not None or time.monotonic() > deadline:
                res.note = ("exited during warm-up" if proc.poll() is not None
                            else f"warm-up not readable within {args.warmup_timeout:.0f}s")
                raise _Abandon
            time.sleep(0.05)
        res.warmup_s = time.monotonic() - t0
        print(f"  [{system}] warm-up readable after {res.warmup_s:.1f}s; publishing "
              f"{len(events):,} events at {args.rate:g}/s", flush=True)
        took = asyncio.run(paced_publish(server.url, events, args.rate, pub_times))
        res.rate_achieved = len(events) / took
        want = len(events)
        deadline = time.monotonic() + args.settle_timeout
        while watcher.count_seqs(lambda s: s > 0) < want and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        # Graceful stop: SIGTERM to the launcher only (it drains Prism itself).
        t_stop = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(args.stop_timeout)
                res.stop_s = time.monotonic() - t_stop
            except subprocess.TimeoutExpired:
                res.note = f"did not stop within {args.stop_timeout:.0f}s of SIGTERM"
        res.exit_code = proc.returncode
    except _Abandon:
        res.exit_code = proc.poll()
    finally:
        watcher.stop()
        kill_group(proc)
        server.stop()
    lat = sorted(watcher.seq_seen[s] - t for s, t in pub_times.items() if s in watcher.seq_seen)
    res.missing = len(events) - len(lat)
    res.duplicates = watcher.duplicates
    if lat:
        res.p50, res.p99, res.max = _percentile(lat, 0.50), _percentile(lat, 0.99), lat[-1]
        res.mean = sum(lat) / len(lat)
    res.ok = res.missing == 0 and res.exit_code == 0
    if res.missing and not res.note:
        res.note = f"{res.missing:,} events never readable"
    res.log = log_findings(log_path)
    return res


# --------------------------------------------------------------------------- baseline consumer

class BaselineWriter:
    """Buffers parsed rows per shard key; writes a shard at ``max_events`` rows or
    ``max_seconds`` after its first row, then acks the messages it holds."""

    def __init__(self, nc, storage: LakeStorage, max_events: int, max_seconds: float):
        self.nc = nc
        self.storage = storage
        self.max_events = max_events
        self.max_seconds = max_seconds
        self.compression = parquet_options()
        self.buffers: dict[str, tuple[float, list, list]] = {}
        self.rows_written = 0
        self.files_written = 0
        self.saw_end = False
        self.closing = False
        self.busy = 0

    async def on_msg(self, msg) -> None:
        # nats-py runs callbacks one at a time in the subscription's task.  Unsubscribing
        # cancels that task, and a cancel inside ``nc.flush()`` leaves a dead PONG future
        # behind (the next flush then times out after 10 s), so ``close`` first waits for
        # the callback in progress; messages arriving after that stay un-acked (redelivered).
        if self.closing:
            return
        self.busy += 1
        try:
            await self._handle(msg)
        finally:
            self.busy -= 1

    async def close(self, sub) -> None:
        """Stops taking messages, writes and acks everything buffered."""
        self.closing = True
        while self.busy:
            await asyncio.sleep(0.005)
        await sub.unsubscribe()
        await self.flush_all()

    async def _handle(self, msg) -> None:
        reply = msg.reply
        stream_seq, ts_ns, pending = parse_ack_token(reply)
        try:
            ev = parse_market_event(msg.subject, msg.data)
            key, row = bronze_key(ev.dataset, ev.partition, ev.date, ev.hour), ev.row
        except Exception as exc:  # pylint: disable=broad-except
            reason = str(exc) if isinstance(exc, InvalidEvent) else f"unexpected: {exc!r}"
            key = dead_letter_key(utc_date_hour(ts_ns)[0])
            row = (ts_ns, msg.subject, stream_seq, reason, bytes(msg.data))
        buf = self.buffers.get(key)
        if buf is None:
            buf = self.buffers[key] = (time.monotonic(), [], [])
        buf[1].append(reply)
        buf[2].append(row)
        if pending == 0:                    # num_pending == 0: the backlog is delivered
            self.saw_end = True
        if len(buf[2]) >= self.max_events:
            await self.flush(key)

    async def flush(self, key: str) -> None:
        buf = self.buffers.pop(key, None)     # popped before any await: no double flush
        if buf is None:
            return
        _, tokens, rows = buf
        folder, schema, sort_col = shard_layout(key)
        table = rows_to_table(rows, schema, sort_by=sort_col)
        self.storage.write_parquet(folder, shard_name(table[sort_col][0].as_py()), table,
                                   *self.compression)
        self.rows_written += table.num_rows
        self.files_written += 1
        for token in tokens:
            await self.nc.publish(token, b"+ACK")
        await self.nc.flush()

    async def flush_due(self) -> None:
        now = time.monotonic()
        for key, (first, _, _) in list(self.buffers.items()):
            if now - first >= self.max_seconds:
                await self.flush(key)

    async def flush_all(self) -> None:
        for key in list(self.buffers):
            await self.flush(key)


async def baseline_consumer(url: str, data_root: str, stop_at_end: bool,
                            max_ack_pending: Optional[int], max_events: int = 1000,
                            max_seconds: float = 5.0) -> int:
    """The no-Beam consumer: runs until the backlog is written (``stop_at_end``) or
    SIGTERM/SIGINT (write what is buffered, ack, exit 0)."""
    t0 = time.monotonic()
    spec = consumer_spec("bronze", max_ack_pending=max_ack_pending, durable=BASELINE_DURABLE)
    nc = await _connect(url)
    js = nc.jetstream()
    stream = (await ensure_streams(js)).get(spec.stream, spec.stream)
    deliver_subject = f"_bench.deliver.{spec.durable}"
    await js.add_consumer(stream, api.ConsumerConfig(      # a push consumer, as the original
        durable_name=spec.durable, deliver_subject=deliver_subject, deliver_group=spec.durable,
        ack_policy=api.AckPolicy.EXPLICIT, ack_wait=spec.ack_wait_s,
        max_ack_pending=spec.max_ack_pending))
    writer = BaselineWriter(nc, LakeStorage(data_root), max_events, max_seconds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if stop_at_end:
        info = await js.consumer_info(stream, spec.durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            stop.set()
    sub = await nc.subscribe(deliver_subject, queue=spec.durable, cb=writer.on_msg,
                             pending_msgs_limit=max(spec.max_ack_pending * 2, 65536),
                             pending_bytes_limit=512 * 1024 * 1024)
    print(f"baseline consumer {spec.durable} on {stream} -> {data_root} "
          f"(flush {max_events} rows / {max_seconds:g}s)", flush=True)
    while not stop.is_set():
        if stop_at_end and writer.saw_end:
            break
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except asyncio.TimeoutError:
            pass
        await writer.flush_due()
    await writer.close(sub)
    await nc.drain()
    print(f"baseline consumer finished (exit 0): rows_written={writer.rows_written} "
          f"files_written={writer.files_written} in {time.monotonic() - t0:.2f}s", flush=True)
    return 0


# --------------------------------------------------------------------------- report

def _f(v: float, fmt: str = "{:,.0f}") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _ratio(a: float, b: float) -> float:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b


def _verdict(ok: bool, value: float) -> str:
    if value is None or math.isnan(value):
        return "MISS (n/a)"
    return "PASS" if ok else "MISS"


def print_summary(drain: dict, lat: dict, args) -> None:
    b, base = drain.get("beam"), drain.get("baseline")
    width = 92
    print()
    print("=" * width)
    load = getattr(args, "loadavg", (math.nan,) * 3)
    print(f"bronze_ingest summary  ({os.cpu_count()} CPUs, load avg at start "
          f"{load[0]:.2f}/{load[1]:.2f}, N={args.trades:,} trades, "
          f"latency {args.rate:g}/s x {args.duration:g}s)")
    print("=" * width)
    row = "{:<44} {:>14} {:>14} {:>16}"
    print(row.format("figure", "beam", "baseline", "beam/baseline"))
    print("-" * width)

    def line(label, attr, fmt="{:,.0f}", src=drain):
        x, y = src.get("beam"), src.get("baseline")
        xv = getattr(x, attr) if x else math.nan
        yv = getattr(y, attr) if y else math.nan
        print(row.format(label, _f(xv, fmt), _f(yv, fmt), _f(_ratio(xv, yv), "{:.2f}x")))

    print("(a) backlog drain")
    line("  rows/s, process start -> all readable", "rows_per_s")
    line("  rows/s, first shard -> all readable", "steady_rows_per_s")
    line("  time to all rows readable [s]", "to_readable_s", "{:.2f}")
    line("  start-up: start -> first shard [s]", "startup_s", "{:.2f}")
    line("  drain excl. start-up [s]", "steady_s", "{:.2f}")
    line("  process wall time [s]", "wall_s", "{:.2f}")
    line("  process CPU, user + sys, children incl. [s]", "cpu_s", "{:.2f}")
    line("  shards written", "shards", "{:,}")
    line("  distinct seq in Bronze", "distinct_seq", "{:,}")
    line("  backlog publish time [s]", "publish_s", "{:.2f}")
    if lat:
        print("(b) steady latency, publish -> readable")
        line("  p50 [s]", "p50", "{:.3f}", lat)
        line("  p99 [s]", "p99", "{:.3f}", lat)
        line("  max [s]", "max", "{:.3f}", lat)
        line("  mean [s]", "mean", "{:.3f}", lat)
        line("  events never readable", "missing", "{:,}", lat)
        line("  duplicate rows", "duplicates", "{:,}", lat)
        line("  achieved publish rate [ev/s]", "rate_achieved", "{:,.0f}", lat)
        line("  start-up incl. warm-up shard [s]", "warmup_s", "{:.2f}", lat)
        line("  SIGTERM -> exit [s]", "stop_s", "{:.2f}", lat)
    print("-" * width)
    print("targets")
    rps = b.rows_per_s if b else math.nan
    ratio = _ratio(rps, base.rows_per_s if base else math.nan)
    trow = "  {:<42} {:>14}   {}"
    print(trow.format(f"Beam drain >= {TARGET_DRAIN_ROWS_S:,} rows/s", _f(rps),
                      _verdict(rps >= TARGET_DRAIN_ROWS_S, rps)))
    print(trow.format(f"Beam drain >= {TARGET_DRAIN_RATIO}x baseline", _f(ratio, "{:.2f}x"),
                      _verdict(ratio >= TARGET_DRAIN_RATIO, ratio)))
    if lat:
        p99 = lat["beam"].p99 if "beam" in lat else math.nan
        print(trow.format(f"Beam steady p99 <= {TARGET_P99_S:g} s", _f(p99, "{:.3f} s"),
                          _verdict(p99 <= TARGET_P99_S, p99)))
    print("-" * width)
    print("runs")
    for phase, results in (("drain", drain), ("latency", lat)):
        for system, r in results.items():
            lg = r.log
            print(f"  {phase:<7} {system:<8} ok={r.ok} exit={r.exit_code} "
                  f"log: {lg.get('errors', 0)} errors, {lg.get('warnings', 0)} warnings (not counting "
                  "known start-up notices), "
                  f"{lg.get('tracebacks', 0)} tracebacks"
                  + (f"; note: {r.note}" if r.note else ""))
            if lg.get("finished"):
                print(f"      {_strip_log_prefix(lg['finished'])}")
            if not r.ok and lg.get("tail"):
                print("      log tail:\n" + "\n".join("        " + ln[:200] for ln in
                                                      lg["tail"].splitlines()))
            if lg.get("first_traceback"):
                print(f"      first traceback ends: {lg['first_traceback'][:200]}")
            if lg.get("first_error"):
                print(f"      first error/warning: {_strip_log_prefix(lg['first_error'])[:200]}")
    print("=" * width)
    if any(" x" in k for k in drain):
        print_scaleout(drain)


def print_scaleout(drain: dict) -> None:
    """(c) the same backlog drained by one and by several bronze_stream instances."""
    one, base = drain.get("beam"), drain.get("baseline")
    many = [(k, r) for k, r in drain.items() if " x" in k]
    width = 92
    print()
    print("(c) horizontal scale-out: the same backlog, one bronze_stream instance vs several "
          "on one durable consumer")
    row = "{:<44} " + " ".join(["{:>14}"] * (2 + len(many)))
    print(row.format("figure", "beam x1", *[k for k, _ in many], "baseline"))
    print("-" * width)
    order = [one] + [r for _, r in many] + [base]
    for label, attr, fmt in (("  rows/s, process start -> all readable", "rows_per_s", "{:,.0f}"),
                             ("  rows/s, first shard -> all readable", "steady_rows_per_s",
                              "{:,.0f}"),
                             ("  time to all rows readable [s]", "to_readable_s", "{:.2f}"),
                             ("  start-up: start -> first shard [s]", "startup_s", "{:.2f}"),
                             ("  load average (1 min) at run start", "load", "{:.2f}")):
        print(row.format(label, *[_f(getattr(r, attr) if r else math.nan, fmt) for r in order]))
    print(row.format("  CPU s: python / prism / nats-server", *[
        "/".join(f"{r.cpu.get(k, 0):.1f}" for k in ("python", "prism", "nats-server"))
        if r else "n/a" for r in order]))
    print(row.format("  cores busy (all CPU / wall to exit)", *[
        _f(sum(r.cpu.values()) / r.wall_s if r and r.cpu and r.wall_s == r.wall_s else math.nan,
           "{:.2f}") for r in order]))
    print(row.format("  messages taken per instance", *[
        "/".join(f"{x:,}" if x is not None else "?" for x in r.per_instance_rows) if r else "n/a"
        for r in order]))
    print("-" * width)
    trow = "  {:<42} {:>14}   {}"
    print("targets")
    for name, r in many:
        for label, attr in (("after start-up", "steady_rows_per_s"),
                            ("end to end", "rows_per_s")):
            x1 = _ratio(getattr(r, attr), getattr(one, attr) if one else math.nan)
            print(trow.format(f"{name} >= {TARGET_SCALEOUT_RATIO}x beam x1 ({label})",
                              _f(x1, "{:.2f}x"), _verdict(x1 >= TARGET_SCALEOUT_RATIO, x1)))
            xb = _ratio(getattr(r, attr), getattr(base, attr) if base else math.nan)
            print(trow.format(f"{name} >= {TARGET_SCALEOUT_VS_BASELINE}x baseline ({label})",
                              _f(xb, "{:.2f}x"), _verdict(xb >= TARGET_SCALEOUT_VS_BASELINE, xb)))
    for name, r in many:
        print(f"  {name}: ok={r.ok} exit={r.exit_code}" + (f"; note: {r.note}" if r.note else ""))
    print("=" * width)


def _strip_log_prefix(line: str) -> str:
    return re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ", "", line)


# --------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bronze_ingest",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--trades", type=int, default=200_000, help="backlog size N (default 200000)")
    p.add_argument("--rate", type=float, default=2000.0, help="steady events/s (default 2000)")
    p.add_argument("--duration", type=float, default=30.0, help="steady seconds (default 30)")
    p.add_argument("--skip-latency", action="store_true", help="only the backlog drain")
    p.add_argument("--instances", type=int, nargs="*", default=[2],
                   help="also drain the same backlog with this many bronze_stream instances "
                        "on the same consumer (default: 2; none: skip the scale-out run)")
    p.add_argument("--max-ack-pending", type=int, default=None,
                   help="override consumers.bronze.max_ack_pending for both systems")
    p.add_argument("--keep-temp", action="store_true", help="keep the temporary folder")
    p.add_argument("--drain-timeout", type=float, default=150.0, help=argparse.SUPPRESS)
    p.add_argument("--warmup-timeout", type=float, default=120.0, help=argparse.SUPPRESS)
    p.add_argument("--settle-timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    p.add_argument("--stop-timeout", type=float, default=45.0, help=argparse.SUPPRESS)
    # Internal: the baseline consumer process.
    p.add_argument("--baseline-consumer", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--nats-url", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data-root", default=None, help=argparse.SUPPRESS)
    p.add_argument("--stop-at-end", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.trades < 1 or args.rate <= 0 or args.duration <= 0:
        p.error("--trades, --rate and --duration must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.baseline_consumer:
        if not args.nats_url or not args.data_root:
            print("error: --baseline-consumer needs --nats-url and --data-root", file=sys.stderr)
            return 2
        return asyncio.run(baseline_consumer(args.nats_url, args.data_root, args.stop_at_end,
                                             args.max_ack_pending))

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)     # unwind: the finally blocks kill every child

    signal.signal(signal.SIGTERM, on_term)
    args.loadavg = os.getloadavg()
    work = tempfile.mkdtemp(prefix="bench-bronze-")
    drain: dict = {}
    lat: dict = {}
    t_all = time.monotonic()
    try:
        print(f"bronze_ingest: work dir {work}", flush=True)
        print(f"(a) backlog drain of {args.trades:,} futures trades", flush=True)
        payloads = drain_payloads(args.trades)
        systems = ["beam", "baseline"] + [f"beam x{k}" for k in args.instances if k > 1]
        for system in systems:
            drain[system] = r = run_drain(system, payloads, work, args)
            print(f"  [{system}] {_f(r.rows_per_s)} rows/s "
                  f"({_f(r.to_readable_s, '{:.2f}')}s to readable, exit {r.exit_code})"
                  + (f" -- {r.note}" if r.note else ""), flush=True)
        del payloads
        if not args.skip_latency:
            print(f"(b) steady latency at {args.rate:g} events/s for {args.duration:g}s",
                  flush=True)
            events = latency_payloads(args.rate, args.duration)
            warmup = warmup_payloads()
            for system in ("beam", "baseline"):
                lat[system] = r = run_latency(system, events, warmup, work, args)
                print(f"  [{system}] p50 {_f(r.p50, '{:.3f}')}s p99 {_f(r.p99, '{:.3f}')}s "
                      f"max {_f(r.max, '{:.3f}')}s (exit {r.exit_code})"
                      + (f" -- {r.note}" if r.note else ""), flush=True)
        print_summary(drain, lat, args)
        print(f"total benchmark time {time.monotonic() - t_all:.0f}s")
    finally:
        if args.keep_temp:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in list(drain.values()) + list(lat.values()) if not r.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
