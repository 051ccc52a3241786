"""Shard keys, the Hive folders of the lake, and the folder key names.

A shard key names one partition of one dataset, e.g. ``futures/trades|ES|2024-12-16|14``
or ``_dead_letter|2024-12-16``.  ``shard_folder`` turns it into the folder below the
data root (``bronze/futures/trades/root=ES/date=2024-12-16/hour=14``); the layer
(``bronze`` or ``gold``) is not part of the key but of the pipeline, which passes its
layout function (``shard_layout`` or ``gold_shard_layout``) to the writer.  Partition values
are plain identifiers by the time they get here (the parser rejects anything else);
``safe_component`` is the last guard against a path escaping its folder.
"""
from __future__ import annotations

import functools
import re

from typing import Optional

from transforms.schemas import DATASETS_BY_LAYER, DEAD_LETTER_PATH, schema_for

# Folder keys.  None of them is the name of a column in the files beneath it, so every
# Hive-aware reader (DuckDB, polars, pyarrow datasets, pandas, Spark) adds them as extra
# columns and never replaces or clashes with a column of the file: the seed's
# ``symbol=ES`` replaced the contract (ESH5) with the root in those readers, and its
# ``underlying=ES`` crashed pandas/pyarrow (string vs dictionary).
ROOT_KEY = "root"                  # symbol root / underlying: ES (files keep ESH5, ES)
DATE_KEY = "date"                  # UTC date of ts_event_ns (dead letters: of receipt)
HOUR_KEY = "hour"                  # UTC hour, two digits
SESSION_DATE_KEY = "session_date"  # Silver: the date a feature set was built for (the
                                   # tables hold a ``date`` column, so not ``date=``)

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SEP = "|"


def safe_component(value: str) -> str:
    """Returns ``value`` if it is safe as one path component, else raises ValueError."""
    if not _SAFE.fullmatch(value) or ".." in value:
        raise ValueError(f"unsafe partition value {value!r}")
    return value


@functools.lru_cache(maxsize=4096)
def shard_key(dataset: str, partition: str, date: str, hour: int) -> str:
    """Key of one (dataset folder, partition value, UTC date, UTC hour) partition."""
    return SEP.join((dataset, partition, date, f"{hour:02d}"))


bronze_key = shard_key


def dead_letter_key(date: str) -> str:
    return SEP.join((DEAD_LETTER_PATH, date))


def partition_folder(layer: str, dataset: str, root: Optional[str] = None,
                     date: Optional[str] = None, hour: Optional[int | str] = None) -> str:
    """Folder (relative to the data root) of a dataset, or of one root / date / hour of
    it: ``partition_folder("bronze", "futures/trades", "ES", "2024-12-16", 14)`` ->
    ``bronze/futures/trades/root=ES/date=2024-12-16/hour=14``.  The dead-letter set
    (``dataset="_dead_letter"``) is partitioned by date only."""
    if dataset == DEAD_LETTER_PATH:
        folder = f"{layer}/{DEAD_LETTER_PATH}"
        return folder if date is None else f"{folder}/{DATE_KEY}={safe_component(date)}"
    DATASETS_BY_LAYER[layer][dataset]          # KeyError for an unknown dataset
    folder = f"{layer}/{dataset}"
    for key, value in ((ROOT_KEY, root), (DATE_KEY, date),
                       (HOUR_KEY, None if hour is None else f"{int(hour):02d}")):
        if value is None:
            break
        folder += f"/{key}={safe_component(value)}"
    return folder


def shard_folder(key: str, layer: str = "bronze") -> str:
    """Folder (relative to the data root) of the shard key."""
    parts = key.split(SEP)
    dataset = parts[0]
    if dataset == DEAD_LETTER_PATH:
        return f"{layer}/{DEAD_LETTER_PATH}/{DATE_KEY}={safe_component(parts[1])}"
    DATASETS_BY_LAYER[layer][dataset]          # KeyError for an unknown dataset
    return (f"{layer}/{dataset}/{ROOT_KEY}={safe_component(parts[1])}"
            f"/{DATE_KEY}={safe_component(parts[2])}/{HOUR_KEY}={safe_component(parts[3])}")


def _layout(key: str, layer: str):
    dataset = key.split(SEP, 1)[0]
    sort = "received_ns" if dataset == DEAD_LETTER_PATH else "ts_event_ns"
    return shard_folder(key, layer), schema_for(dataset, layer), sort


def shard_layout(key: str):
    """(folder, schema, sort column) of a Bronze shard key."""
    return _layout(key, "bronze")


def gold_shard_layout(key: str):
    """(folder, schema, sort column) of a Gold streaming shard key: ``levels/signals|ES|
    2024-12-16|14`` -> ``gold/levels/signals/root=ES/date=2024-12-16/hour=14``, the
    dead-letter key of a date -> ``gold/_dead_letter/date=...``."""
    return _layout(key, "gold")
