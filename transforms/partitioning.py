"""Shard keys and the Hive folder each key writes to.

A shard key names one partition of one dataset, e.g. ``futures/trades|ES|2024-12-16|14``
or ``_dead_letter|2024-12-16``.  ``shard_folder`` turns it into the folder below the
data root (``bronze/futures/trades/symbol=ES/date=2024-12-16/hour=14``); the layer
(``bronze`` or ``gold``) is not part of the key but of the pipeline, which passes its
layout function (``shard_layout`` or ``gold_shard_layout``) to the writer.  Partition values
are plain identifiers by the time they get here (the parser rejects anything else);
``safe_component`` is the last guard against a path escaping its folder.
"""
from __future__ import annotations

import functools
import re

from transforms.schemas import DATASETS_BY_LAYER, DEAD_LETTER_PATH, schema_for

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


def shard_dataset(key: str) -> str:
    """The dataset part of a shard key (``futures/trades``, ``_dead_letter``, ...)."""
    return key.split(SEP, 1)[0]


def dead_letter_key(date: str) -> str:
    return SEP.join((DEAD_LETTER_PATH, date))


def shard_folder(key: str, layer: str = "bronze") -> str:
    """Folder (relative to the data root) of the shard key."""
    parts = key.split(SEP)
    dataset = parts[0]
    if dataset == DEAD_LETTER_PATH:
        return f"{layer}/{DEAD_LETTER_PATH}/date={safe_component(parts[1])}"
    ds = DATASETS_BY_LAYER[layer][dataset]
    return (f"{layer}/{dataset}/{ds.partition_column}={safe_component(parts[1])}"
            f"/date={safe_component(parts[2])}/hour={safe_component(parts[3])}")


def _layout(key: str, layer: str):
    dataset = key.split(SEP, 1)[0]
    sort = "received_ns" if dataset == DEAD_LETTER_PATH else "ts_event_ns"
    return shard_folder(key, layer), schema_for(dataset, layer), sort


def shard_layout(key: str):
    """(folder, schema, sort column) of a Bronze shard key."""
    return _layout(key, "bronze")


def gold_shard_layout(key: str):
    """(folder, schema, sort column) of a Gold streaming shard key: ``levels/signals|ES|
    2024-12-16|14`` -> ``gold/levels/signals/underlying=ES/date=2024-12-16/hour=14``, the
    dead-letter key of a date -> ``gold/_dead_letter/date=...``."""
    return _layout(key, "gold")
