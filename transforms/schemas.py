"""The exact Arrow schemas of the lake, in one place, and the subject -> dataset routing.

Bronze schemas follow the original system's contracts (reference §2): non-null unless the
field is marked nullable.  Column order here is the order of the row tuples that the
parser produces and of the columns in every Parquet shard.
"""
from __future__ import annotations

import dataclasses

import pyarrow as pa

MBP_LEVELS = 10


def _f(name: str, typ: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


FUTURES_TRADES = pa.schema([
    _f("ts_event_ns", pa.int64()),
    _f("ts_recv_ns", pa.int64()),
    _f("source", pa.string()),
    _f("symbol", pa.string()),
    _f("price", pa.float64()),
    _f("size", pa.int32()),
    _f("aggressor", pa.int8()),
    _f("exchange", pa.string(), True),
    _f("conditions", pa.list_(pa.int16()), True),
    _f("seq", pa.int64(), True),
])

FUTURES_MBP10 = pa.schema(
    [_f("ts_event_ns", pa.int64()), _f("ts_recv_ns", pa.int64()),
     _f("source", pa.string()), _f("symbol", pa.string())]
    + [f for i in range(1, MBP_LEVELS + 1)
       for f in (_f(f"bid_px_{i}", pa.float64()), _f(f"bid_sz_{i}", pa.int32()))]
    + [f for i in range(1, MBP_LEVELS + 1)
       for f in (_f(f"ask_px_{i}", pa.float64()), _f(f"ask_sz_{i}", pa.int32()))]
    + [_f("is_snapshot", pa.bool_()), _f("seq", pa.int64(), True)]
)

OPTIONS_TRADES = pa.schema([
    _f("ts_event_ns", pa.int64()),
    _f("ts_recv_ns", pa.int64()),
    _f("source", pa.string()),
    _f("underlying", pa.string()),
    _f("option_symbol", pa.string()),
    _f("exp_date", pa.date32()),
    _f("strike", pa.float64()),
    _f("right", pa.string()),
    _f("price", pa.float64()),
    _f("size", pa.int32()),
    _f("opt_bid", pa.float64(), True),
    _f("opt_ask", pa.float64(), True),
    _f("aggressor", pa.int8()),
    _f("conditions", pa.list_(pa.int16()), True),
    _f("seq", pa.int64(), True),
])

DEAD_LETTER = pa.schema([
    _f("received_ns", pa.int64()),
    _f("subject", pa.string()),
    _f("stream_seq", pa.int64(), True),
    _f("reason", pa.string()),
    _f("payload", pa.binary()),
])


@dataclasses.dataclass(frozen=True)
class BronzeDataset:
    """One Bronze dataset: its subject, folder, partition column and schema."""
    subject: str
    path: str               # folder below bronze/, e.g. "futures/trades"
    partition_column: str   # "symbol" (root) or "underlying"
    schema: pa.Schema

    @property
    def identity_columns(self) -> list[str]:
        """Columns whose values identify one event; redelivered copies agree on all of them.

        Every column of the row: a redelivery is a byte-identical copy of the event, while
        two genuine events never agree on both nanosecond timestamps, sequence and values.
        """
        return list(self.schema.names)


BRONZE_DATASETS: dict[str, BronzeDataset] = {
    "market.futures.trades": BronzeDataset("market.futures.trades", "futures/trades", "symbol",
                                           FUTURES_TRADES),
    "market.futures.mbp10": BronzeDataset("market.futures.mbp10", "futures/mbp10", "symbol",
                                          FUTURES_MBP10),
    "market.options.trades": BronzeDataset("market.options.trades", "options/trades",
                                           "underlying", OPTIONS_TRADES),
}

DATASETS_BY_PATH: dict[str, BronzeDataset] = {d.path: d for d in BRONZE_DATASETS.values()}
DEAD_LETTER_PATH = "_dead_letter"


def schema_for(dataset_path: str) -> pa.Schema:
    """Schema of a Bronze dataset folder ("futures/trades", ...) or of the dead-letter set."""
    if dataset_path == DEAD_LETTER_PATH:
        return DEAD_LETTER
    return DATASETS_BY_PATH[dataset_path].schema
