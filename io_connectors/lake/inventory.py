"""What a lake holds: its datasets with their roots, dates, files, rows, bytes, newest
file and dead letters by reason; and the dead letters themselves.

``datasets(storage)`` enumerates the datasets from the lake modules (never from folder
names written here): the streamed datasets of each layer (``transforms.schemas``), each
layer's dead-letter set, every table of every Silver version (``SilverStore``) and every
Gold training dataset (``TrainingStore``); folders come from ``partition_folder`` and the
stores.  ``summarize(storage, dataset, date)`` lists the dataset's files once (one
recursive listing: local or S3), reads each file's Parquet footer for its row count (in a
small thread pool; footers only), and reads the ``reason`` column of dead-letter files.
Roots and dates come from the Hive folder names below the dataset, by the lake's folder
keys (``ROOT_KEY``, ``DATE_KEY``, ``SESSION_DATE_KEY``); files below any other key (a lake
written before the current layout) are left out, and the CLI names them
(``legacy_layout.legacy_hint``).  ``dead_letters(...)`` reads the dead-letter rows of a
date (or all) for a close look.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import time
from typing import Iterable, Optional

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from io_connectors.lake.silver_store import TABLES, SilverStore
from io_connectors.lake.storage import LakeStorage
from io_connectors.lake.training_store import TrainingStore
from transforms.lake_metrics import reason_class
from transforms.partitioning import DATE_KEY, ROOT_KEY, SESSION_DATE_KEY, partition_folder
from transforms.schemas import DATASETS_BY_LAYER, DEAD_LETTER_PATH

LAYERS = ("bronze", "gold")


# The folder key right below each kind of dataset (files under any other, e.g. a lake
# written before the current layout, are not this dataset's: ``legacy_layout`` says so).
FIRST_KEY = {"stream": ROOT_KEY, "dead_letters": DATE_KEY, "silver": SESSION_DATE_KEY}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One dataset of the lake: its display name, folder (or file) below the root, kind
    (``stream``, ``dead_letters``, ``silver``, ``training``) and, for a training dataset,
    the file."""
    name: str
    folder: str
    kind: str
    file: Optional[str] = None


@dataclasses.dataclass
class DatasetSummary:
    """What ``summarize`` found.  ``newest_mtime`` is the newest file's modification time
    (UTC); ``dead_letters`` counts the rows of a dead-letter set by reason class."""
    name: str
    folder: str
    kind: str
    roots: list
    dates: list
    files: int
    rows: int
    bytes: int
    newest_mtime: Optional[dt.datetime]
    dead_letters: Optional[dict] = None

    def newest_age_s(self, now: Optional[float] = None) -> Optional[float]:
        if self.newest_mtime is None:
            return None
        return max(0.0, (now or time.time()) - self.newest_mtime.timestamp())

    def as_dict(self, now: Optional[float] = None) -> dict:
        out = dataclasses.asdict(self)
        out["newest_mtime"] = self.newest_mtime.isoformat() if self.newest_mtime else None
        age = self.newest_age_s(now)
        out["newest_age_s"] = None if age is None else round(age, 1)
        return out


def datasets(storage: LakeStorage) -> list[Dataset]:
    """Every dataset of the lake, in a stable order (see the module docstring)."""
    out = []
    for layer in LAYERS:
        for path in DATASETS_BY_LAYER[layer]:
            out.append(Dataset(f"{layer}/{path}", partition_folder(layer, path), "stream"))
        out.append(Dataset(f"{layer}/{DEAD_LETTER_PATH}",
                           partition_folder(layer, DEAD_LETTER_PATH), "dead_letters"))
    silver = SilverStore(storage)
    for version in silver.list_versions():
        for table in TABLES:
            folder = silver.table_dir(version, table)
            out.append(Dataset(folder, folder, "silver"))
    training = TrainingStore(storage)
    for name in sorted(training.catalog().get("datasets", {})):
        file = training.data_file(name)
        out.append(Dataset(file.rsplit(".", 1)[0], file.rsplit("/", 1)[0], "training", file))
    return out


def select(all_datasets: Iterable[Dataset], wanted: str) -> list[Dataset]:
    """The datasets named ``wanted``: the whole name or whole path components of it
    (``futures/trades``, ``bronze``, ``v3.1.0``, ``silver/features/v3.1.0/signals``)."""
    w = wanted.strip("/")
    return [d for d in all_datasets
            if d.name == w or d.name.endswith("/" + w) or d.name.startswith(w + "/")
            or f"/{w}/" in d.name]


def _hive(parts: list[str]) -> dict:
    return dict(p.split("=", 1) for p in parts if "=" in p)


def _list(storage: LakeStorage, d: Dataset) -> list[pafs.FileInfo]:
    if d.file is not None:
        info = storage.fs.get_file_info(storage.path(d.file))
        return [info] if info.type == pafs.FileType.File else []
    base = storage.path(d.folder)
    sel = pafs.FileSelector(base, allow_not_found=True, recursive=True)
    return [i for i in storage.fs.get_file_info(sel)
            if i.type == pafs.FileType.File and i.path.endswith(".parquet")
            and not any(p.startswith((".", "_")) for p in i.path[len(base):].split("/") if p)]


def _rows(storage: LakeStorage, path: str) -> int:
    with storage.fs.open_input_file(path) as fh:
        return pq.ParquetFile(fh).metadata.num_rows


def _reasons(storage: LakeStorage, path: str) -> list[str]:
    with storage.fs.open_input_file(path) as fh:
        return pq.read_table(fh, columns=["reason"])["reason"].to_pylist()


def summarize(storage: LakeStorage, d: Dataset, date: Optional[str] = None,
              threads: int = 16) -> DatasetSummary:
    """The dataset's figures, for one date (a ``date=`` / ``session_date=`` partition) or
    all; a training dataset is not partitioned by date and counts whole."""
    base = storage.path(d.folder)
    files, roots, dates = [], set(), set()
    first = FIRST_KEY.get(d.kind)
    for info in _list(storage, d):
        parts = [p for p in info.path[len(base):].split("/") if p]
        if first is not None and not parts[0].startswith(f"{first}="):
            continue
        hive = _hive(parts)
        day = hive.get(DATE_KEY) or hive.get(SESSION_DATE_KEY)
        if date is not None and d.kind != "training" and day != date:
            continue
        files.append(info)
        if ROOT_KEY in hive:
            roots.add(hive[ROOT_KEY])
        if day:
            dates.add(day)
    if d.kind == "training":
        meta = TrainingStore(storage).read_metadata(d.name.rsplit("/", 1)[-1]) or {}
        dates.update(meta.get("dates") or [])
    with concurrent.futures.ThreadPoolExecutor(max(1, min(threads, len(files)))) as pool:
        rows = sum(pool.map(lambda i: _rows(storage, i.path), files))
        dead = None
        if d.kind == "dead_letters":
            dead = {}
            for reasons in pool.map(lambda i: _reasons(storage, i.path), files):
                for r in reasons:
                    c = reason_class(r or "")
                    dead[c] = dead.get(c, 0) + 1
    newest = max((i.mtime for i in files if i.mtime is not None), default=None)
    if newest is not None and newest.tzinfo is None:
        newest = newest.replace(tzinfo=dt.timezone.utc)
    return DatasetSummary(d.name, d.folder, d.kind, sorted(roots), sorted(dates), len(files),
                          rows, sum(i.size or 0 for i in files), newest, dead)


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """One dead-letter row: where it came from, why, and its raw payload."""
    layer: str
    received_ns: int
    subject: str
    stream_seq: Optional[int]
    reason: str
    payload: bytes

    @property
    def reason_class(self) -> str:
        return reason_class(self.reason)


def dead_letters(storage: LakeStorage, date: Optional[str] = None,
                 layers: Iterable[str] = LAYERS) -> list[DeadLetter]:
    """The dead-letter rows of ``layers`` (of one receipt date, or all), oldest first."""
    out = []
    for layer in layers:
        d = Dataset(f"{layer}/{DEAD_LETTER_PATH}", partition_folder(layer, DEAD_LETTER_PATH),
                    "dead_letters")
        base = storage.path(d.folder)
        for info in _list(storage, d):
            if date is not None and _hive(info.path[len(base):].split("/")).get(DATE_KEY) != date:
                continue
            with storage.fs.open_input_file(info.path) as fh:
                table = pq.read_table(fh)
            for row in table.to_pylist():
                out.append(DeadLetter(layer, row["received_ns"], row["subject"],
                                      row.get("stream_seq"), row["reason"], row["payload"]))
    return sorted(out, key=lambda x: (x.received_ns, x.layer))
