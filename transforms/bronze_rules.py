"""What a valid Bronze row is, in one place: the limits as data, and their vectorised check.

Pure, no Beam.  The limits (timestamp window, sources, identifier shape, integer widths,
string lengths, and an upper bound on every price field per dataset) are the constants and
the ``BronzeRules`` below.  Two implementations read them:

- the per-message parser (``transforms.market_parse`` with ``transforms.json_fields``), one
  JSON object at a time, which raises ``InvalidEvent`` with the reason for the dead letter;
- ``row_mask(table, dataset, rules)`` here, over a whole Arrow table at once, used by the
  columnar paths (streaming futures trades in ``transforms.columnar_trades``, the DBN
  backfill in ``io_connectors.dbn.columnar``): True where the row provably passes every
  rule.  A row it does not accept is never dropped: the callers route it through the
  per-message parser, which gives its row or its dead-letter reason.

Seeded differential tests (tests/test_columnar_trades.py, tests/test_dbn_columnar.py)
prove that every row the mask accepts is accepted by the per-message parser with the same
values.

Price bounds come from ``configs/lake.yaml`` (``bronze.max_price``, one inclusive upper
bound per dataset, applied to each of its price fields, ``PRICE_FIELDS``); the pipelines
pass ``BronzeRules.from_config(...)`` down to the parsers.  ``DEFAULT_RULES`` (the values
shipped in that file) applies where a caller passes none.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.schemas import MBP_LEVELS

TS_MIN_NS = 946_684_800 * 10**9          # 2000-01-01T00:00:00Z (inclusive)
TS_MAX_NS = 4_102_444_800 * 10**9        # 2100-01-01T00:00:00Z (exclusive)
INT16_MIN, INT16_MAX = -32768, 32767
INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_STRING = 64                          # characters of a free-text field (exchange, option symbol)
SOURCES = frozenset({"replay", "sim", "direct_feed"})
RIGHTS = frozenset({"C", "P"})
IDENT_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_]{0,31}"     # symbol, underlying: safe as a folder name
IDENT = re.compile(IDENT_PATTERN)

# The price fields of each dataset (bus field names; the book's are per level).
PRICE_FIELDS = {
    "futures/trades": ("price",),
    "futures/mbp10": ("bid_px", "ask_px"),
    "options/trades": ("price", "strike", "opt_bid", "opt_ask"),
}


@dataclasses.dataclass(frozen=True)
class BronzeRules:
    """The configurable part of the rules: ``max_price[dataset]`` is the inclusive upper
    bound (a float) of every price field of that dataset (``PRICE_FIELDS``), for each of
    the three Bronze datasets.  Frozen, picklable (it travels with the pipeline to the
    workers); ValueError names a missing, unknown or non-positive bound."""
    max_price: Mapping[str, float]

    def __post_init__(self):
        for dataset in PRICE_FIELDS:
            v = self.max_price.get(dataset)
            if type(v) not in (int, float) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"bronze.max_price.{dataset} must be a positive finite "
                                 f"number, got {v!r}")
        unknown = set(self.max_price) - set(PRICE_FIELDS)
        if unknown:
            raise ValueError(f"bronze.max_price: unknown dataset(s) {sorted(unknown)}; "
                             f"known: {sorted(PRICE_FIELDS)}")
        object.__setattr__(self, "max_price", {k: float(v) for k, v in self.max_price.items()})

    def price_max(self, dataset: str) -> float:
        return self.max_price[dataset]

    @classmethod
    def from_config(cls, lake_config: Mapping) -> "BronzeRules":
        """From the ``bronze`` section of configs/lake.yaml (``bronze.max_price``); a
        missing section or dataset keeps the default.  ValueError names a bad value."""
        section = (lake_config or {}).get("bronze") or {}
        given = section.get("max_price") or {}
        if not isinstance(given, Mapping):
            raise ValueError("bronze.max_price must map dataset -> number")
        return cls({**DEFAULT_RULES.max_price, **given})


DEFAULT_RULES = BronzeRules({"futures/trades": 1.0e6, "futures/mbp10": 1.0e6,
                             "options/trades": 1.0e6})


# --------------------------------------------------------------------------- vectorised

def _np(col) -> np.ndarray:
    """A column (Array or ChunkedArray, no nulls where it matters) as a numpy array."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return col.to_numpy(zero_copy_only=False)


def _valid(col) -> np.ndarray:
    """True where the column is not null."""
    if col.null_count == 0:
        return np.ones(len(col), dtype=bool)
    return _np(pc.is_valid(col))


def _filled(col, value) -> np.ndarray:
    return _np(pc.fill_null(col, value)) if col.null_count else _np(col)


def _int_in(col, lo: int, hi: int, nullable: bool = False) -> np.ndarray:
    ok = _valid(col)
    v = _filled(col, lo)
    ok = ok & (v >= lo) & (v <= hi)
    return ok | ~_valid(col) if nullable else ok


def _price(col, lo: float, hi: float, strict: bool, nullable: bool = False) -> np.ndarray:
    valid = _valid(col)
    v = _filled(col, hi).astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        ok = valid & np.isfinite(v) & ((v > lo) if strict else (v >= lo)) & (v <= hi)
    return ok | ~valid if nullable else ok


def _string(col, nullable: bool) -> np.ndarray:
    """A string of 1..MAX_STRING characters (null allowed when ``nullable``)."""
    valid = _valid(col)
    n = _filled(pc.utf8_length(col), 0)
    ok = valid & (n >= 1) & (n <= MAX_STRING)
    return ok | ~valid if nullable else ok


def _in_set(col, values) -> np.ndarray:
    return _filled(pc.is_in(col, value_set=pa.array(sorted(values), pa.string())), False)


def _ident(col) -> np.ndarray:
    return _filled(pc.match_substring_regex(col, f"^{IDENT_PATTERN}$"), False)


def _conditions(col) -> np.ndarray:
    """Null, or a list of 16-bit integers (no null items)."""
    if col.null_count == len(col):
        return np.ones(len(col), dtype=bool)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    items = pc.list_flatten(col)
    if not len(items):
        return np.ones(len(col), dtype=bool)
    bad_item = ~(_valid(items) & (_filled(items, 0) >= INT16_MIN) & (_filled(items, 0) <= INT16_MAX))
    row_of_item = _np(pc.list_parent_indices(col))
    bad = np.zeros(len(col), dtype=bool)
    bad[row_of_item[bad_item]] = True
    return ~bad


def _common(t: pa.Table) -> np.ndarray:
    ok = _int_in(t["ts_event_ns"], TS_MIN_NS, TS_MAX_NS - 1)
    ok &= _int_in(t["ts_recv_ns"], TS_MIN_NS, TS_MAX_NS - 1)
    ok &= _in_set(t["source"], SOURCES)
    ok &= _int_in(t["seq"], -INT64_MAX, INT64_MAX, nullable=True)
    return ok


def _futures_trades(t: pa.Table, rules: BronzeRules) -> np.ndarray:
    hi = rules.price_max("futures/trades")
    ok = _common(t) & _ident(t["symbol"])
    ok &= _price(t["price"], 0.0, hi, strict=True)
    ok &= _int_in(t["size"], 1, INT32_MAX) & _int_in(t["aggressor"], -1, 1)
    ok &= _string(t["exchange"], nullable=True) & _conditions(t["conditions"])
    return ok


def _futures_mbp10(t: pa.Table, rules: BronzeRules) -> np.ndarray:
    hi = rules.price_max("futures/mbp10")
    ok = _common(t) & _ident(t["symbol"]) & _valid(t["is_snapshot"])
    for i in range(1, MBP_LEVELS + 1):
        for side in ("bid", "ask"):
            ok &= _price(t[f"{side}_px_{i}"], 0.0, hi, strict=False)
            ok &= _int_in(t[f"{side}_sz_{i}"], 0, INT32_MAX)
    return ok


def _options_trades(t: pa.Table, rules: BronzeRules) -> np.ndarray:
    hi = rules.price_max("options/trades")
    ok = _common(t) & _ident(t["underlying"]) & _string(t["option_symbol"], nullable=False)
    ok &= _valid(t["exp_date"]) & _in_set(t["right"], RIGHTS)
    ok &= _price(t["strike"], 0.0, hi, strict=True) & _price(t["price"], 0.0, hi, strict=False)
    ok &= _price(t["opt_bid"], 0.0, hi, strict=False, nullable=True)
    ok &= _price(t["opt_ask"], 0.0, hi, strict=False, nullable=True)
    ok &= _int_in(t["size"], 1, INT32_MAX) & _int_in(t["aggressor"], -1, 1)
    ok &= _conditions(t["conditions"])
    return ok


_MASKS = {"futures/trades": _futures_trades, "futures/mbp10": _futures_mbp10,
          "options/trades": _options_trades}


def row_mask(table: pa.Table, dataset: str, rules: BronzeRules = DEFAULT_RULES) -> np.ndarray:
    """Boolean numpy array, one per row of ``table`` (columns named as the dataset's Bronze
    schema; integer columns may be wider than the schema's, e.g. int64 as parsed): True
    where the row passes every Bronze rule of ``dataset`` ("futures/trades", ...), so the
    per-message parser would accept it with these values.  False means "not proven", never
    "drop": the caller routes such rows through the per-message parser."""
    if not table.num_rows:
        return np.ones(0, dtype=bool)
    return _MASKS[dataset](table, rules)
