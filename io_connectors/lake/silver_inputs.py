"""Bronze -> the raw inputs of one Silver date (the I/O half of stage 0, ``load_bronze``).

``ReadSilverInputs(storage, params, columns, label_columns)``: PCollection of dates
('YYYY-MM-DD') -> PCollection of ``SilverDay`` (raw Bronze frames, front month chosen,
lineage recorded) or ``DayFailure`` (no Bronze trades for the date, unreadable files…).
The pure half (column selection, book downsampling) is ``transforms.silver.stage_load_bronze``.

What is read for a date D (the UTC date partition, which holds the whole US/Eastern
session):
- futures trades of ``bronze.symbol_root``, deduplicated on event identity (a session
  both streamed and backfilled counts once; see ``BronzeReader``); the front month is the
  contract with the most RTH trades (``transforms.front_month``); only its trades are kept
  when ``bronze.front_month_only`` (else all contracts);
- MBP-10 of that contract, deduplicated; option trades of the root, deduplicated;
- warm-up: ``ts_event_ns, price`` of the SAME contract on the ``bars.warmup_weekdays``
  weekdays before D (same contract so that a roll does not put the calendar spread into
  the moving averages).  Not deduplicated, deliberately: copies of one event share its
  time and price, so they cannot change a 2-minute close, and the warm-up is the largest
  read of a date.

Lineage (``day.lineage``): per dataset and date read, the files (relative to the data
root), rows in them, rows used, and a SHA-256 over the files' bytes in path order; plus
the front month, its dominance and the roll flag, and the contracts actually used; and
``warmup`` (``transforms.silver.warmup.warmup_lineage``): the warm-up weekdays, those
with no trade of the contract in Bronze (``missing``), and the 2-minute bars they give
against the bars the longest SMA needs (the Silver validation's ``warmup`` check fails a
date without enough of them, naming the missing dates).
"""
from __future__ import annotations

import hashlib
import threading
import time
from typing import Any, Mapping, Sequence

import apache_beam as beam
import pandas as pd

from io_connectors.lake.bronze_reader import BronzeReader
from io_connectors.lake.storage import LakeStorage
from transforms.front_month import NoTradesError, select_front_month
from transforms.partitioning import partition_folder
from transforms.silver.day import DayFailure, SilverDay
from transforms.silver.session import previous_weekdays
from transforms.silver.warmup import warmup_lineage

_CHUNK = 1 << 20


def _files_fingerprint(storage: LakeStorage, rel: str) -> dict[str, Any]:
    files = storage.list_files(rel)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path[len(storage.path("")):].encode())
        with storage.fs.open_input_stream(path) as fh:
            while True:
                block = fh.read(_CHUNK)
                if not block:
                    break
                digest.update(block)
    root = storage.path("")
    return {"folder": rel, "files": [p[len(root):].lstrip("/") for p in files],
            "sha256": digest.hexdigest()}


def _folder(dataset: str, value: str, date: str) -> str:
    return partition_folder("bronze", dataset, value, date)


def read_silver_day(storage: LakeStorage, date: str, params: Mapping[str, Any],
                    columns: Sequence = (), label_columns: Sequence = ()) -> SilverDay:
    """The raw ``SilverDay`` of ``date``; raises NoTradesError if Bronze has no trade."""
    started = time.time()
    reader = BronzeReader(storage=storage)
    root = params["bronze"]["symbol_root"]
    all_trades = reader.read_futures_trades(root, date, front_month_only=False)
    if all_trades.empty:
        raise NoTradesError(f"no Bronze futures trades for {root} on {date} "
                            f"(looked in {_folder('futures/trades', root, date)})")
    front = select_front_month(all_trades, date=date)
    front_only = bool(params["bronze"].get("front_month_only", True))
    trades = all_trades[all_trades["symbol"] == front.symbol] if front_only else all_trades
    mbp = reader.read_futures_mbp10(root, date, specific_contract=front.symbol)
    options = reader.read_option_trades(root, date)
    warm_days = previous_weekdays(date, int(params["bars"]["warmup_weekdays"]))
    warm = [reader.read_futures_trades(root, d, specific_contract=front.symbol, dedupe=False)
            [["ts_event_ns", "price"]] for d in warm_days]
    warmup = pd.concat(warm, ignore_index=True) if warm else pd.DataFrame(
        {"ts_event_ns": pd.Series(dtype="int64"), "price": pd.Series(dtype=float)})

    def entry(dataset: str, value: str, day: str, rows_used: int, rows_read: int) -> dict:
        return {**_files_fingerprint(storage, _folder(dataset, value, day)),
                "rows_read": int(rows_read), "rows_used": int(rows_used)}

    lineage = {
        "date": date, "started_at": started,
        "front_month": front.symbol, "dominance": round(front.dominance, 6),
        "roll_contaminated": front.roll_contaminated,
        "contracts_used": sorted(map(str, trades["symbol"].unique())),
        "warmup": warmup_lineage(warm_days, [w["ts_event_ns"].to_numpy() for w in warm],
                                 params, date, trades["ts_event_ns"].to_numpy()),
        "bronze": {
            "futures/trades": entry("futures/trades", root, date, len(trades), len(all_trades)),
            "futures/mbp10": entry("futures/mbp10", root, date, len(mbp), len(mbp)),
            "options/trades": entry("options/trades", root, date, len(options), len(options)),
            "warmup": [entry("futures/trades", root, d, len(w), len(w))
                       for d, w in zip(warm_days, warm)],
        },
    }
    return SilverDay(date=date, params=params, front_month=front.symbol,
                     dominance=front.dominance, roll_contaminated=front.roll_contaminated,
                     trades=trades.reset_index(drop=True), mbp=mbp, options=options,
                     warmup=warmup, lineage=lineage, columns=tuple(map(tuple, columns)),
                     label_columns=tuple(label_columns))


_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def _slots(n: int) -> threading.BoundedSemaphore:
    """One process-wide semaphore per limit (shared by every DoFn instance and thread)."""
    with _SLOTS_LOCK:
        if n not in _SLOTS:
            _SLOTS[n] = threading.BoundedSemaphore(n)
        return _SLOTS[n]


class _ReadDayDoFn(beam.DoFn):
    def __init__(self, storage, params, columns, label_columns, dates_per_process):
        super().__init__()
        self.storage, self.params = storage, params
        self.columns, self.label_columns = columns, label_columns
        self.dates_per_process = dates_per_process

    def process(self, date):
        # The slot is held across the yield: fused downstream stages (the Silver stages and
        # the writer) process the day inside it, so at most N days are in flight per process.
        with _slots(self.dates_per_process):
            try:
                day = read_silver_day(self.storage, date, self.params, self.columns,
                                      self.label_columns)
            except NoTradesError as exc:
                day = DayFailure(date, "load_bronze", str(exc))
            except Exception as exc:  # pylint: disable=broad-except
                day = DayFailure(date, "load_bronze", f"{type(exc).__name__}: {exc}")
            yield day


class ReadSilverInputs(beam.PTransform):
    """Dates -> raw ``SilverDay`` (or ``DayFailure``): see the module docstring.  The dates
    are reshuffled first so that a runner can spread them over workers.

    ``dates_per_process`` bounds how many dates one SDK worker process holds at once (the
    slot is held while the fused downstream stages run).  A runner that executes many
    bundles as threads of one Python process (Prism: one SDK worker per job) gains nothing
    from running CPU-bound pandas work concurrently under the GIL, and loses memory and
    cache: ten full-scale dates at once took 2.4x the sequential time and 2.5 GB.
    Parallelism across processes (Flink task slots) is unaffected.
    """

    def __init__(self, storage: LakeStorage, params: Mapping[str, Any], columns: Sequence = (),
                 label_columns: Sequence = (), dates_per_process: int = 1):
        super().__init__()
        if dates_per_process < 1:
            raise ValueError("dates_per_process must be >= 1")
        self.storage, self.params = storage, dict(params)
        self.columns, self.label_columns = [tuple(c) for c in columns], list(label_columns)
        self.dates_per_process = dates_per_process

    def expand(self, dates):
        return (dates
                | "Spread" >> beam.Reshuffle()
                | "ReadBronze" >> beam.ParDo(_ReadDayDoFn(self.storage, self.params,
                                                          self.columns, self.label_columns,
                                                          self.dates_per_process)))
