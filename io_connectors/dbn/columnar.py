"""DBN records decoded column-wise: a block of trades or MBP-10 records -> Bronze tables.

``decode_block(records, schema, lookup, ...)`` takes a block of one file's records as a
numpy structured array laid over the raw DBN bytes (``record_dtype(schema)``: the record
layouts ``databento-dbn`` itself declares, the way Databento's client builds its
``to_ndarray``; no Python object per record) and applies, as array operations:

1. the decoder's rules of ``io_connectors.dbn.decode`` (instrument lookup, spreads,
   timestamp window, undefined prices, sizes, book depth and empty sides, option terms),
   counting every skipped record by the same reason in a ``DecodeStats``;
2. every Bronze rule, with ``transforms.bronze_rules.row_mask`` over the Bronze table
   built from the surviving records (the same values the per-message path computes:
   prices ``int / 1e9`` as float64, aggressor from the side, symbols from the lookup).

Records that pass both are returned column-wise, grouped by shard key.  Every other record
that the decoder would emit (a rule fails, e.g. a price above its dataset's bound, or the
mask cannot prove the row) is handed back: decoded by ``databento-dbn`` and sent through
the per-message path (``decode.events_of_records`` -> bus JSON -> ``route_message``),
which gives its row or its dead letter with the reason, exactly as a per-message backfill
would.  tests/test_dbn_columnar.py proves the two paths agree on seeded mutations.

Schemas handled: ``trades`` (futures and option trades, by instrument) and ``mbp-10``
(futures books).  Anything else, and any file holding another record type (definitions,
symbol mappings, ts_out records), is for the per-message path (``columnar_layout``).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import databento_dbn as dbn
import numpy as np
import orjson
import pyarrow as pa

from io_connectors.dbn.decode import (INT32_MAX, PRICE_SCALE, SUBJECT_FUTURES_MBP10,
                                      SUBJECT_FUTURES_TRADES, SUBJECT_OPTIONS_TRADES,
                                      TS_MAX_NS, TS_MIN_NS, UNDEF_PRICE, UNDEF_TIMESTAMP,
                                      DecodeStats, FileInstruments, events_of_records)
from transforms.bronze_route import route_message
from transforms.bronze_rules import DEFAULT_RULES, IDENT, MAX_STRING, BronzeRules, row_mask
from transforms.columnar_keys import group_by_shard_key
from transforms.market_parse import symbol_root
from transforms.schemas import (BRONZE_DATASETS, DATASETS_BY_PATH, FUTURES_MBP10,
                                FUTURES_TRADES, MBP_LEVELS, OPTIONS_TRADES)

_LAYOUTS = {
    "trades": (int(dbn.RType.MBP_0), np.dtype(dbn.TradeMsg._dtypes)),     # pylint: disable=protected-access
    "mbp-10": (int(dbn.RType.MBP_10), np.dtype(dbn.MBP10Msg._dtypes)),    # pylint: disable=protected-access
}
_LEVEL_FIELDS = ("bid_px", "ask_px", "bid_sz", "ask_sz", "bid_ct", "ask_ct")
_LEVEL = np.dtype([(name, _LAYOUTS["mbp-10"][1].fields[f"{name}_00"][0])
                   for name in _LEVEL_FIELDS])
_BOOK_LEVELS = np.dtype({"names": ["levels"], "formats": [(_LEVEL, MBP_LEVELS)],
                         "offsets": [_LAYOUTS["mbp-10"][1].fields["bid_px_00"][1]],
                         "itemsize": _LAYOUTS["mbp-10"][1].itemsize})
assert all(_LAYOUTS["mbp-10"][1].fields[f"{name}_{i:02d}"][1]
           == _BOOK_LEVELS.fields["levels"][1] + i * _LEVEL.itemsize + _LEVEL.fields[name][1]
           for i in range(MBP_LEVELS) for name in _LEVEL_FIELDS), "MBP-10 level layout"
_NS_PER_DAY = 86_400 * 10**9
_DAY_BITS = 20                          # days since 1970 of any uint64 timestamp < 2**18
_FUT_DS = BRONZE_DATASETS[SUBJECT_FUTURES_TRADES].path
_BOOK_DS = BRONZE_DATASETS[SUBJECT_FUTURES_MBP10].path
_OPT_DS = BRONZE_DATASETS[SUBJECT_OPTIONS_TRADES].path
_EPOCH_ORDINAL = 719163                 # date(1970, 1, 1).toordinal()


def columnar_layout(schema: Optional[str]) -> Optional[tuple[int, np.dtype]]:
    """``(rtype, dtype)`` of the records of a single-schema file this module decodes, or
    None (the per-message path takes that file)."""
    return _LAYOUTS.get(schema or "")


def record_dtype(schema: str) -> np.dtype:
    return _LAYOUTS[schema][1]


@dataclasses.dataclass
class DecodedBlock:
    """What ``decode_block`` made of a block.

    ``tables``: ``(shard_key, table)`` for the rows taken column-wise (each table in its
    dataset's Bronze schema, rows in record order); ``routed``: the per-message results of
    the records handed back, ``(shard_key, (None, row_tuple))`` Bronze rows or dead
    letters; ``stats``: the decoder's counts for the block (records, events per subject,
    skips by reason)."""
    tables: list
    routed: list
    stats: DecodeStats


# --------------------------------------------------------------------------- instruments

@dataclasses.dataclass
class _Instruments:
    """The instruments of a block's distinct (instrument_id, UTC day) pairs, as arrays
    indexed by pair, and ``pair`` (the pair of each record)."""
    pair: np.ndarray
    known: np.ndarray
    kind: list                     # kind name per pair (after the spread rule), "" unknown
    kind_code: np.ndarray          # per pair: its kind's position in ``kinds``
    kinds: list                    # the distinct kind names
    symbol: list
    symbol_ok: np.ndarray
    exchange: list
    root: list
    option_ok: np.ndarray          # complete terms (expiry, strike > 0, right, underlying)
    underlying: list
    underlying_ok: np.ndarray
    option_symbol_ok: np.ndarray
    exp_days: np.ndarray
    strike: np.ndarray
    right: list


def _instruments(rec: np.ndarray, lookup: FileInstruments, include_spreads: bool,
                 stats: DecodeStats) -> tuple[_Instruments, np.ndarray]:
    """Resolves each record's instrument the way ``decode`` does (by ``ts_recv``'s UTC date,
    ``ts_event``'s when ``ts_recv`` is undefined); returns the pair arrays and, per record,
    whether the record is a spread that is filtered out."""
    ts = np.where(rec["ts_recv"] != UNDEF_TIMESTAMP, rec["ts_recv"], rec["ts_event"])
    key = (rec["instrument_id"].astype(np.uint64) << np.uint64(_DAY_BITS)) | (
        ts // np.uint64(_NS_PER_DAY))
    uniq = np.unique(key)                 # few; hashed, sorted
    pair = np.searchsorted(uniq, key)
    n = len(uniq)
    known = np.zeros(n, bool)
    symbol_ok = np.zeros(n, bool)
    option_ok = np.zeros(n, bool)
    underlying_ok = np.zeros(n, bool)
    option_symbol_ok = np.zeros(n, bool)
    spread = np.zeros(n, bool)
    exp_days = np.zeros(n, np.int32)
    strike = np.zeros(n, np.float64)
    kind, symbol, exchange, root, underlying, right = ([""] * n for _ in range(6))
    unknown_ids = []
    for i, k in enumerate(uniq.tolist()):
        iid, day = k >> _DAY_BITS, k & ((1 << _DAY_BITS) - 1)
        inst = lookup.get(iid, day * _NS_PER_DAY)
        if inst is None:
            unknown_ids.append(iid)
            continue
        known[i] = True
        k_ = inst.kind
        if k_ == "spread":
            if not include_spreads:
                spread[i] = True
            k_ = "future"
        kind[i] = k_
        symbol[i] = inst.raw_symbol
        symbol_ok[i] = IDENT.fullmatch(inst.raw_symbol) is not None
        exchange[i] = inst.exchange
        root[i] = symbol_root(inst.raw_symbol)
        option_ok[i] = (inst.expiry is not None and inst.strike is not None
                        and inst.strike > 0 and inst.right in ("C", "P")
                        and bool(inst.underlying))
        if option_ok[i]:
            underlying[i] = inst.underlying
            underlying_ok[i] = IDENT.fullmatch(inst.underlying) is not None
            option_symbol_ok[i] = 0 < len(inst.raw_symbol) <= MAX_STRING
            exp_days[i] = inst.expiry.toordinal() - _EPOCH_ORDINAL
            strike[i] = inst.strike
            right[i] = inst.right
    stats.unknown_instruments.update(unknown_ids)
    kinds = sorted(set(kind))
    kind_code = np.array([kinds.index(k) for k in kind], dtype=np.int16)
    return _Instruments(pair, known, kind, kind_code, kinds, symbol, symbol_ok, exchange, root,
                        option_ok,
                        underlying, underlying_ok, option_symbol_ok, exp_days, strike,
                        right), spread[pair]


class _Outcome:
    """Each record's fate, decided rule by rule in the decoder's order: the first rule a
    record fails names its skip reason; records no rule skipped are taken."""

    def __init__(self, n: int):
        self.open = np.ones(n, bool)
        self.skips: list[tuple[str, int]] = []

    def skip(self, mask: np.ndarray, reason: str) -> None:
        hit = self.open & mask
        count = int(hit.sum())
        if count:
            self.skips.append((reason, count))
            self.open &= ~hit

    def take(self, mask: np.ndarray) -> np.ndarray:
        """Indices of the open records in ``mask``, which are then decided."""
        hit = self.open & mask
        self.open &= ~hit
        return np.flatnonzero(hit)

    def count_into(self, stats: DecodeStats) -> None:
        for reason, count in self.skips:
            if reason == "unknown_instrument":
                stats.unknown_records += count
            elif reason == "spread":
                stats.spreads_filtered += count
            elif reason == "undefined_price":
                stats.undefined_prices += count
            else:
                stats.skipped[reason] += count


def _is_kind(inst: _Instruments, code: np.ndarray, kind: str) -> np.ndarray:
    """Per record: its instrument is of ``kind`` (unknown instruments are of none)."""
    if kind not in inst.kinds:
        return np.zeros(len(code), bool)
    return code == inst.kinds.index(kind)


def _common(rec: np.ndarray, inst: _Instruments, spread: np.ndarray) -> _Outcome:
    """The rules every record meets first: known instrument, spreads, timestamp window."""
    out = _Outcome(len(rec))
    out.skip(~inst.known[inst.pair], "unknown_instrument")
    out.skip(spread, "spread")
    lo, hi = np.uint64(TS_MIN_NS), np.uint64(TS_MAX_NS)
    ts_ok = ((rec["ts_event"] >= lo) & (rec["ts_event"] < hi)
             & (rec["ts_recv"] >= lo) & (rec["ts_recv"] < hi))
    out.skip(~ts_ok, "timestamp_out_of_range")
    return out


# --------------------------------------------------------------------------- tables

def _strings(values: list, index: np.ndarray) -> pa.Array:
    """Per-pair strings (None for null) spread to rows."""
    return pa.array(values, pa.string()).take(pa.array(index, pa.int32()))


def _constant(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                          pa.array([value])).cast(pa.string())


def _prices(raw: np.ndarray) -> np.ndarray:
    return raw.astype(np.float64) / PRICE_SCALE


def _aggressor(side: np.ndarray) -> np.ndarray:
    return np.where(side == b"B", 1, np.where(side == b"A", -1, 0)).astype(np.int8)


def _head(rec: np.ndarray, source: str) -> list:
    n = len(rec)
    return [pa.array(rec["ts_event"].astype(np.int64)), pa.array(rec["ts_recv"].astype(np.int64)),
            _constant(source, n)]


def _futures_trades_table(rec, pair, inst: _Instruments, source: str) -> pa.Table:
    n = len(rec)
    arrays = _head(rec, source) + [
        _strings(inst.symbol, pair), pa.array(_prices(rec["price"])),
        pa.array(rec["size"].astype(np.int32)), pa.array(_aggressor(rec["side"])),
        _strings(inst.exchange, pair), pa.nulls(n, FUTURES_TRADES.field("conditions").type),
        pa.array(rec["sequence"].astype(np.int64))]
    return pa.Table.from_arrays(arrays, schema=FUTURES_TRADES)


def _options_trades_table(rec, pair, inst: _Instruments, source: str) -> pa.Table:
    n = len(rec)
    arrays = _head(rec, source) + [
        _strings(inst.underlying, pair), _strings(inst.symbol, pair),
        pa.array(inst.exp_days[pair]).cast(pa.date32()), pa.array(inst.strike[pair]),
        _strings(inst.right, pair), pa.array(_prices(rec["price"])),
        pa.array(rec["size"].astype(np.int32)), pa.nulls(n, pa.float64()),
        pa.nulls(n, pa.float64()), pa.array(_aggressor(rec["side"])),
        pa.nulls(n, OPTIONS_TRADES.field("conditions").type),
        pa.array(rec["sequence"].astype(np.int64))]
    return pa.Table.from_arrays(arrays, schema=OPTIONS_TRADES)


# --------------------------------------------------------------------------- schemas

def _trades(rec: np.ndarray, inst: _Instruments, spread: np.ndarray, source: str):
    """-> (outcome, [(dataset, indices, table, partitions, partition_index, None)])."""
    out = _common(rec, inst, spread)
    price = np.ascontiguousarray(rec["price"])        # each field read once from the
    size = np.ascontiguousarray(rec["size"])          # records, then used several times
    out.skip(price == UNDEF_PRICE, "undefined_price")
    out.skip((size < 1) | (size > INT32_MAX), "bad_size")
    pair = inst.pair
    code = inst.kind_code[pair]
    is_future = _is_kind(inst, code, "future")
    is_option = _is_kind(inst, code, "option")
    out.skip(is_future & (price <= 0), "nonpositive_price")
    out.skip(is_future & ~inst.symbol_ok[pair], "symbol_not_identifier")
    fut = out.take(is_future)
    out.skip(is_option & ~inst.option_ok[pair], "incomplete_option")
    out.skip(is_option & ~inst.underlying_ok[pair], "underlying_not_identifier")
    out.skip(is_option & (price < 0), "negative_price")
    out.skip(is_option & ~inst.option_symbol_ok[pair], "option_symbol_length")
    opt = out.take(is_option)
    for kind in inst.kinds:
        out.skip(_is_kind(inst, code, kind), f"trade_of_{kind}")
    parts = []
    if len(fut):
        roots = sorted(set(inst.root[p] for p in np.unique(pair[fut]).tolist()))
        root_index = np.array([roots.index(r) if r in roots else -1 for r in inst.root])
        parts.append((_FUT_DS, fut, _futures_trades_table(rec[fut], pair[fut], inst, source),
                      roots, root_index[pair[fut]], None))
    if len(opt):
        unds = sorted(set(inst.underlying[p] for p in np.unique(pair[opt]).tolist()))
        und_index = np.array([unds.index(u) if u in unds else -1 for u in inst.underlying])
        parts.append((_OPT_DS, opt, _options_trades_table(rec[opt], pair[opt], inst, source),
                      unds, und_index[pair[opt]], None))
    return out, parts


def _books(rec: np.ndarray, inst: _Instruments, spread: np.ndarray, source: str):
    """-> (outcome, [(dataset, indices, table, partitions, partition_index, empty_sides)])."""
    out = _common(rec, inst, spread)
    pair = inst.pair
    code = inst.kind_code[pair]
    for kind in inst.kinds:
        if kind != "future":
            out.skip(_is_kind(inst, code, kind), f"book_of_{kind}")
    out.skip(~inst.symbol_ok[pair], "symbol_not_identifier")
    lv = rec.view(_BOOK_LEVELS)["levels"]            # (n, 10) views into the records
    bid_px, ask_px = lv["bid_px"], lv["ask_px"]
    has_bid, has_ask = bid_px != UNDEF_PRICE, ask_px != UNDEF_PRICE
    # decode._book_event checks the levels up to the deepest defined one, in order, each
    # for a negative price first, then for a size beyond int32: the first failing level
    # names the reason.  (A level past the depth has no defined side, so cannot fail.)
    negative = (has_bid & (bid_px < 0)) | (has_ask & (ask_px < 0))
    failing = negative | (has_bid & (lv["bid_sz"] > INT32_MAX)) | (
        has_ask & (lv["ask_sz"] > INT32_MAX))
    rows = np.arange(len(rec))
    bad = failing.any(axis=1)
    out.skip(bad & negative[rows, failing.argmax(axis=1)], "negative_book_price")
    out.skip(bad, "bad_size")
    take = out.take(np.ones(len(rec), bool))
    parts = []
    if len(take):
        sub, p = rec[take], pair[take]
        lv = sub.view(_BOOK_LEVELS)["levels"]
        has_bid, has_ask = has_bid[take], has_ask[take]
        # sides left undefined inside a book's depth (decode counts them as empty)
        defined = has_bid | has_ask
        depth = np.where(defined.any(axis=1),
                         MBP_LEVELS - defined[:, ::-1].argmax(axis=1), 0)
        inside = np.arange(MBP_LEVELS)[None, :] < depth[:, None]
        empty = (inside & ~has_bid).sum(axis=1) + (inside & ~has_ask).sum(axis=1)
        arrays = _head(sub, source) + [_strings(inst.symbol, p)]
        for side, has in (("bid", has_bid), ("ask", has_ask)):
            px = np.where(has, _prices(lv[f"{side}_px"]), 0.0).T.copy()    # (10, n)
            sz = np.where(has, lv[f"{side}_sz"], 0).astype(np.int32).T.copy()
            for i in range(MBP_LEVELS):       # schema order: px_1, sz_1, ..., px_10, sz_10
                arrays += [pa.array(px[i]), pa.array(sz[i])]
        arrays.append(pa.array((sub["flags"] & dbn.F_SNAPSHOT) != 0))
        arrays.append(pa.array(sub["sequence"].astype(np.int64)))
        table = pa.Table.from_arrays(arrays, schema=FUTURES_MBP10)
        roots = sorted(set(inst.root[x] for x in np.unique(p).tolist()))
        root_index = np.array([roots.index(r) if r in roots else -1 for r in inst.root])
        parts.append((_BOOK_DS, take, table, roots, root_index[p], empty))
    return out, parts


def decode_block(records: np.ndarray, schema: str, lookup: FileInstruments, version: int,
                 include_spreads: bool = False, source: str = "replay",
                 rules: BronzeRules = DEFAULT_RULES) -> DecodedBlock:
    """Decodes one block of a ``trades`` or ``mbp-10`` file (``records``: structured array
    of ``record_dtype(schema)``, every record of the schema's rtype; ``lookup``: the
    file's instruments; ``version``: the file's DBN version).  See the module docstring."""
    stats = DecodeStats()
    stats.records += len(records)
    if not len(records):
        return DecodedBlock([], [], stats)
    inst, spread = _instruments(records, lookup, include_spreads, stats)
    if schema == "trades":
        outcome, parts = _trades(records, inst, spread, source)
    else:
        outcome, parts = _books(records, inst, spread, source)
    outcome.count_into(stats)
    tables, handed_back = [], []
    for dataset, idx, table, partitions, part_index, empty in parts:
        ok = row_mask(table, dataset, rules)
        if not ok.all():
            handed_back.append(idx[~ok])
            keep = np.flatnonzero(ok)
            table, part_index, idx = table.take(pa.array(keep)), part_index[keep], idx[keep]
            empty = empty[keep] if empty is not None else None
        stats.events[DATASETS_BY_PATH[dataset].subject] += len(idx)
        if empty is not None:
            stats.empty_book_sides += int(empty.sum())
        order, groups = group_by_shard_key(dataset, partitions, part_index,
                                           table["ts_event_ns"].to_numpy())
        if len(groups) > 1 and (order[1:] < order[:-1]).any():   # not already grouped
            table = table.take(pa.array(order))
        tables.extend((key, table.slice(start, stop - start)) for key, start, stop in groups)
    routed = []
    if handed_back:
        back = np.sort(np.concatenate(handed_back))
        decoder = dbn.DBNDecoder(has_metadata=False, input_version=version)
        decoder.write(records[back].tobytes())
        for subject, event in events_of_records(decoder.decode(), lookup, include_spreads,
                                                source, stats):
            msg = (subject, orjson.dumps(event), 0, event["ts_event_ns"], None)
            routed.append(route_message(msg, rules))
    return DecodedBlock(tables, routed, stats)
