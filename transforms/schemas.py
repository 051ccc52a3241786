"""The exact Arrow schemas of the lake, in one place, and the subject -> dataset routing.

Bronze schemas follow the original system's contracts (reference §2), the Gold streaming
level-signal schema the flattening of reference §1: non-null unless the field is marked
nullable.  Column order here is the order of the row tuples that the parsers produce and
of the columns in every Parquet shard.
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


# Gold streaming: one row per level of a ``levels.signals`` snapshot (reference §1).
# ts_event_ns = the payload's ``ts`` (unix ms) x 1e6; spot/bid/ask from ``spy``; the nested
# barrier/tape/fuel/runway objects as prefixed columns.  Counts (barrier added, canceled,
# filled, delta_liq; tape buy/sell volume) are contracts: JSON integers, int64 here (never
# floats).  Every other number is float64; labels (kind, direction, signal, confidence,
# states) are strings.
LEVEL_SIGNALS = pa.schema([
    _f("ts_event_ns", pa.int64()),
    _f("underlying", pa.string()),
    _f("spot", pa.float64()),
    _f("bid", pa.float64()),
    _f("ask", pa.float64()),
    _f("level_id", pa.string()),
    _f("level_price", pa.float64()),
    _f("level_kind", pa.string()),
    _f("direction", pa.string()),
    _f("distance", pa.float64()),
    _f("break_score_raw", pa.float64()),
    _f("break_score_smooth", pa.float64()),
    _f("signal", pa.string()),
    _f("confidence", pa.string()),
    _f("barrier_state", pa.string()),
    _f("barrier_delta_liq", pa.int64()),
    _f("barrier_replenishment_ratio", pa.float64()),
    _f("barrier_added", pa.int64()),
    _f("barrier_canceled", pa.int64()),
    _f("barrier_filled", pa.int64()),
    _f("tape_imbalance", pa.float64()),
    _f("tape_buy_vol", pa.int64()),
    _f("tape_sell_vol", pa.int64()),
    _f("tape_velocity", pa.float64()),
    _f("tape_sweep_detected", pa.bool_()),
    _f("tape_sweep_direction", pa.string(), True),
    _f("tape_sweep_notional", pa.float64()),
    _f("fuel_effect", pa.string()),
    _f("fuel_net_dealer_gamma", pa.float64()),
    _f("fuel_call_wall", pa.float64(), True),
    _f("fuel_put_wall", pa.float64(), True),
    _f("fuel_hvl", pa.float64(), True),
    _f("runway_direction", pa.string()),
    _f("runway_next_obstacle_id", pa.string(), True),
    _f("runway_next_obstacle_price", pa.float64(), True),
    _f("runway_distance", pa.float64(), True),
    _f("runway_quality", pa.string()),
    _f("note", pa.string(), True),
])


# Columns that describe how an event was captured, not the event: the same exchange event
# arriving by the live stream and by a historical backfill differs only in these.
CAPTURE_COLUMNS = ("ts_recv_ns", "source")

# The identity of an exchange event per dataset: the event's own fields (time, contract,
# venue sequence number, price, size, side; every book level).  Two stored rows equal on
# these are copies of one event (a redelivery, or the stream and a backfill of the same
# session); two genuine events never are (the venue sequence number tells apart fills at
# the same nanosecond, price and size).  Columns outside identity and capture (``exchange``,
# ``conditions``, an option's quote at the trade) describe the event and may differ by
# source; they never split one event in two.
FUTURES_TRADES_IDENTITY = ("ts_event_ns", "symbol", "seq", "price", "size", "aggressor")
FUTURES_MBP10_IDENTITY = (("ts_event_ns", "symbol", "seq", "is_snapshot")
                          + tuple(n for n in FUTURES_MBP10.names
                                  if n.startswith(("bid_", "ask_"))))
OPTIONS_TRADES_IDENTITY = ("ts_event_ns", "option_symbol", "seq", "price", "size",
                           "aggressor")
LEVEL_SIGNALS_IDENTITY = ("ts_event_ns", "underlying", "level_id")


@dataclasses.dataclass(frozen=True)
class LakeDataset:
    """One streamed dataset: its subject, folder (below its layer, ``bronze/`` or
    ``gold/``), the column its ``root=`` partition value comes from, its schema and the
    columns that identify one event."""
    subject: str
    path: str               # folder below the layer, e.g. "futures/trades"
    root_column: str        # "symbol" (its root: ESZ4 -> ES) or "underlying"
    schema: pa.Schema
    identity: tuple = ()

    @property
    def identity_columns(self) -> list[str]:
        """Columns whose values identify one exchange event (see ``*_IDENTITY`` above);
        every stored copy of the event agrees on all of them."""
        return list(self.identity or self.schema.names)

    @property
    def capture_columns(self) -> list[str]:
        """Capture metadata (receive time, source): not part of the event's identity."""
        return [c for c in CAPTURE_COLUMNS if c in self.schema.names]


BronzeDataset = LakeDataset      # the name the Bronze reader knows it by

BRONZE_DATASETS: dict[str, BronzeDataset] = {
    "market.futures.trades": BronzeDataset("market.futures.trades", "futures/trades", "symbol",
                                           FUTURES_TRADES, FUTURES_TRADES_IDENTITY),
    "market.futures.mbp10": BronzeDataset("market.futures.mbp10", "futures/mbp10", "symbol",
                                          FUTURES_MBP10, FUTURES_MBP10_IDENTITY),
    "market.options.trades": BronzeDataset("market.options.trades", "options/trades",
                                           "underlying", OPTIONS_TRADES,
                                           OPTIONS_TRADES_IDENTITY),
}

DATASETS_BY_PATH: dict[str, BronzeDataset] = {d.path: d for d in BRONZE_DATASETS.values()}

GOLD_DATASETS: dict[str, LakeDataset] = {
    "levels.signals": LakeDataset("levels.signals", "levels/signals", "underlying",
                                  LEVEL_SIGNALS, LEVEL_SIGNALS_IDENTITY),
}
GOLD_DATASETS_BY_PATH: dict[str, LakeDataset] = {d.path: d for d in GOLD_DATASETS.values()}

# The streamed datasets of each lake layer, by folder.  Each layer also has a dead-letter
# set (``<layer>/_dead_letter/date=YYYY-MM-DD``, schema DEAD_LETTER).
DATASETS_BY_LAYER: dict[str, dict[str, LakeDataset]] = {
    "bronze": DATASETS_BY_PATH,
    "gold": GOLD_DATASETS_BY_PATH,
}
DEAD_LETTER_PATH = "_dead_letter"


def schema_for(dataset_path: str, layer: str = "bronze") -> pa.Schema:
    """Schema of a dataset folder of ``layer`` ("futures/trades", "levels/signals", ...)
    or of the dead-letter set."""
    if dataset_path == DEAD_LETTER_PATH:
        return DEAD_LETTER
    return DATASETS_BY_LAYER[layer][dataset_path].schema
