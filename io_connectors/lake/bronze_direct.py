"""Write bus events straight into Bronze, without NATS or Beam (test data, benchmarks, demos).

``write_bronze_events(storage, events)`` takes ``(subject, event_dict)`` pairs (the bus
contract, e.g. from ``transforms.synthetic_session``), validates each with the same parser
as the streaming path (``transforms.market_parse``) and writes one zstd shard per
(dataset, partition, UTC date, UTC hour) and ``shard_rows`` rows, in the same layout,
schema and row order as ``pipelines.bronze_stream``.  Subjects that are not market data
(``levels.*``) are skipped and counted; invalid events raise (this writer is for trusted
generated data: the streaming path is the one that dead-letters).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Optional

import orjson

from io_connectors.lake.storage import LakeStorage, parquet_options, shard_name
from transforms.arrow_rows import rows_to_table
from transforms.market_parse import parse_market_event
from transforms.partitioning import bronze_key, shard_layout
from transforms.schemas import BRONZE_DATASETS


def write_bronze_events(storage: LakeStorage, events: Iterable[tuple[str, dict]],
                        shard_rows: int = 100_000,
                        compression: Optional[tuple[str, int]] = None) -> dict[str, int]:
    """Writes the market events of ``events`` to Bronze; returns rows per dataset path plus
    ``skipped`` (non-market subjects) and ``files``."""
    codec, level = compression or parquet_options()
    buffers: dict[str, list[tuple]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)

    def flush(key: str) -> None:
        rows = buffers.pop(key)
        folder, schema, sort = shard_layout(key)
        table = rows_to_table(rows, schema, sort_by=sort)
        storage.write_parquet(folder, shard_name(table[sort][0].as_py()), table, codec, level)
        counts["files"] += 1

    for subject, event in events:
        if subject not in BRONZE_DATASETS:
            counts["skipped"] += 1
            continue
        ev = parse_market_event(subject, orjson.dumps(event))
        key = bronze_key(ev.dataset, ev.partition, ev.date, ev.hour)
        buffers[key].append(ev.row)
        counts[ev.dataset] += 1
        if len(buffers[key]) >= shard_rows:
            flush(key)
    for key in list(buffers):
        flush(key)
    return dict(counts)


def write_synthetic_sessions(storage: LakeStorage, dates: Iterable[str], scale: float = 1.0,
                             seed: int = 0) -> dict[str, dict[str, int]]:
    """Writes ``transforms.synthetic_session`` sessions of ``dates`` (market events only) to
    Bronze; returns the counts per date."""
    from transforms.synthetic_session import synthetic_session
    return {d: write_bronze_events(storage, synthetic_session(d, scale=scale, seed=seed,
                                                              signals=False))
            for d in dates}
