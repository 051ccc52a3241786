"""Databento DBN files -> bus events (``market.futures.trades``, ``market.futures.mbp10``,
``market.options.trades``).

Pure Python on top of ``databento-dbn`` (no Beam, no NATS).  The pieces:

* ``load_instruments(paths)`` -> ``{instrument_id: Instrument}`` from definition records, the
  files' own metadata symbol mappings and ``SymbolMappingMsg`` records.
* ``iter_events(paths, ...)`` -> ``(subject, event)`` pairs whose ``event`` is the bus JSON
  object of ``../shared/reference/original-system.md`` section 1.  Every event it yields passes
  ``transforms.market_parse.parse_market_event(subject, orjson.dumps(event))`` unless a
  price is above its dataset's configured bound (``bronze.max_price``: the parser then
  dead-letters it with that reason); anything that could not (undefined price, unknown
  instrument, spread, zero size, ...) is skipped and counted in a ``DecodeStats``, never
  guessed or emitted as garbage.
* ``merge_events(iterables)`` -> one stream ordered by ``(ts_event_ns, rank)``, rank
  futures trades 0 < option trades 1 < book 2 (stable: ties keep input order).
* ``event_id(subject, event)`` -> deterministic ``Nats-Msg-Id``.
* ``write_dbn(path, metadata, records)`` / ``read_metadata(path)`` -> small encode/decode helpers
  (tests generate DBN files with them).

Conversions: prices are DBN fixed-point integers / 1e9 (float); ``UNDEF_PRICE`` (INT64_MAX)
never becomes a number; side ``B`` -> aggressor 1, ``A`` -> -1, ``N`` -> 0; ``seq`` is the
record's ``sequence``; ``ts_event_ns``/``ts_recv_ns`` are the record's ``ts_event``/``ts_recv``;
``symbol`` is the raw contract symbol (``ESH1``), never the root.

Which records become events:

* ``TradeMsg`` (schema ``trades``) of a future -> ``market.futures.trades``; of an option
  (OPRA equity options, CME options on futures) -> ``market.options.trades``.
* ``MBP1Msg`` with action ``T`` in a ``tbbo`` file -> the same trade events, only when
  ``tbbo_trades=True`` (a tbbo file repeats the trades file's trades; decoding both would
  duplicate them); option trades then also carry ``opt_bid``/``opt_ask`` from the top of
  book when both are defined.
* ``MBP10Msg`` (schema ``mbp-10``) of a future -> ``market.futures.mbp10`` (every record,
  including action ``T`` records, is a book state; trades come from trades files only, so
  decoding a trades file and an mbp-10 file of the same session does not duplicate trades).
  ``levels`` holds up to 10 ``{bid_px, bid_sz, ask_px, ask_sz}``, best first, cut after the
  deepest level where either side is defined; a side that is undefined inside that range is
  written as px 0.0 / sz 0 (the Bronze schema's own "missing level" value) and counted in
  ``DecodeStats.empty_book_sides``.  ``is_snapshot`` is ``flags & F_SNAPSHOT``.
* Everything else (other schemas, option books, definitions in data position, status, ...)
  is counted in ``DecodeStats.skipped`` by reason.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import heapq
import itertools
import os
import re
from collections import Counter
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

import databento_dbn as dbn
import orjson

from transforms.bronze_rules import IDENT as _IDENT
from transforms.bronze_rules import INT32_MAX, SOURCES, TS_MAX_NS, TS_MIN_NS
from transforms.market_parse import symbol_root

__all__ = [
    "Instrument", "DecodeStats", "load_instruments", "iter_events", "merge_events",
    "event_id", "write_dbn", "read_metadata", "iter_records", "instrument_from_definition",
    "instrument_from_symbol", "SUBJECT_RANK", "FileInstruments", "events_of_records",
]

SUBJECT_FUTURES_TRADES = "market.futures.trades"
SUBJECT_FUTURES_MBP10 = "market.futures.mbp10"
SUBJECT_OPTIONS_TRADES = "market.options.trades"
SUBJECT_RANK = {SUBJECT_FUTURES_TRADES: 0, SUBJECT_OPTIONS_TRADES: 1, SUBJECT_FUTURES_MBP10: 2}

UNDEF_PRICE = dbn.UNDEF_PRICE
UNDEF_TIMESTAMP = dbn.UNDEF_TIMESTAMP
PRICE_SCALE = float(dbn.FIXED_PRICE_SCALE)          # 1e9
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20
_AGGRESSOR = {"B": 1, "A": -1, "N": 0}
_FUTURE_SYM = re.compile(r"([A-Z][A-Z0-9]{0,4}?)[FGHJKMNQUVXZ]\d{1,2}")
_OSI_SYM = re.compile(r"([A-Z0-9.]{1,6})\s*(\d{2})(\d{2})(\d{2})([CP])(\d{8})")
_CME_OPT_SYM = re.compile(r"([A-Z0-9]{1,6}?[FGHJKMNQUVXZ]\d{1,2}) ([CP])(\d+)")
_EPOCH = dt.date(1970, 1, 1)
_NS_PER_DAY = 86_400 * 10**9

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------- instruments

@dataclasses.dataclass(frozen=True)
class Instrument:
    """What the decoder knows about one ``instrument_id``.

    ``kind`` is ``'future' | 'option' | 'spread' | 'other'``; ``underlying`` is the product
    root for futures and CME options (``'ES'``) and the underlying symbol for equity options
    (``'AAPL'``); ``strike`` is in price units (already / 1e9), ``right`` ``'C'|'P'``,
    ``expiry`` the UTC date of the definition's expiration.  ``source`` says where it came
    from: ``'definition'`` (a definition record) or ``'mapping'`` (only a symbol mapping, the
    rest inferred from the symbol's shape; fields that the symbol does not state are None).
    """
    instrument_id: int
    raw_symbol: str
    kind: str
    underlying: Optional[str] = None
    strike: Optional[float] = None
    right: Optional[str] = None
    expiry: Optional[dt.date] = None
    exchange: Optional[str] = None
    source: str = "definition"


def _char(v: Any) -> str:
    """Enum-or-str field (``Side``, ``InstrumentClass``, ``Action``) -> its one-char value."""
    return getattr(v, "value", v) or ""


def _utc_date(ts_ns: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=ts_ns // _NS_PER_DAY)


def instrument_from_symbol(instrument_id: int, raw_symbol: str) -> Instrument:
    """Instrument inferred from a raw symbol alone (no definition record).

    ``ESH1`` -> future ``ES``; ``ESH1-ESM1`` -> spread; ``AAPL  250221C00250000`` (OSI) ->
    option with underlying, expiry, right and strike from the symbol; ``ESH5 C5000`` -> option
    with right only (strike scaling and expiry are not stated by a CME symbol, so they stay
    None and its trades are skipped as ``incomplete_option``); anything else -> ``other``.
    """
    sym = raw_symbol.strip()
    if "-" in sym:
        return Instrument(instrument_id, raw_symbol, "spread", source="mapping")
    m = _FUTURE_SYM.fullmatch(sym)
    if m:
        return Instrument(instrument_id, raw_symbol, "future", underlying=m.group(1),
                          source="mapping")
    m = _OSI_SYM.fullmatch(sym)
    if m:
        yy, mm, dd = (int(g) for g in m.group(2, 3, 4))
        try:
            expiry = dt.date(2000 + yy, mm, dd)
        except ValueError:
            expiry = None
        return Instrument(instrument_id, raw_symbol, "option", underlying=m.group(1),
                          strike=int(m.group(6)) / 1000.0, right=m.group(5), expiry=expiry,
                          source="mapping")
    m = _CME_OPT_SYM.fullmatch(sym)
    if m:
        return Instrument(instrument_id, raw_symbol, "option",
                          underlying=symbol_root(m.group(1)), right=m.group(2),
                          source="mapping")
    return Instrument(instrument_id, raw_symbol, "other", source="mapping")


def instrument_from_definition(rec: Any) -> Instrument:
    """``InstrumentDefMsg`` -> ``Instrument``.

    Kind from ``instrument_class`` (F future; C/P option; S/T/M spread) and, when the class
    is blank, from the symbol; a ``-`` in the symbol always means spread.  Underlying: root
    of the definition's ``underlying`` contract (CME options: ``ESH5`` -> ``ES``), else that
    field as is (OPRA: ``AAPL``), else ``asset``, else the symbol's root.
    """
    sym = rec.raw_symbol
    cls = _char(rec.instrument_class)
    inferred = instrument_from_symbol(rec.instrument_id, sym)
    if "-" in sym or cls in ("S", "T", "M"):
        kind = "spread"
    elif cls == "F":
        kind = "future"
    elif cls in ("C", "P"):
        kind = "option"
    elif cls.strip() == "":
        kind = inferred.kind
    else:
        kind = "other"
    und = (rec.underlying or "").strip()
    asset = (rec.asset or "").strip()
    if kind == "future":
        underlying = asset or symbol_root(sym)
    elif und:
        underlying = symbol_root(und)
    else:
        underlying = asset or inferred.underlying
    right = cls if cls in ("C", "P") else inferred.right
    strike = rec.strike_price / PRICE_SCALE if rec.strike_price != UNDEF_PRICE else inferred.strike
    expiry = (_utc_date(rec.expiration) if rec.expiration != UNDEF_TIMESTAMP
              else inferred.expiry)
    return Instrument(rec.instrument_id, sym, kind, underlying=underlying or None,
                      strike=strike if kind == "option" else None,
                      right=right if kind == "option" else None,
                      expiry=expiry, exchange=(rec.exchange or "").strip() or None,
                      source="definition")


# --------------------------------------------------------------------------- raw decoding

def _as_paths(paths: Union[PathLike, Iterable[PathLike]]) -> list[str]:
    if isinstance(paths, (str, bytes, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


def iter_records(path: PathLike, chunk_size: int = _CHUNK) -> Iterator[Any]:
    """Streams one DBN file (plain or zstd, detected from the magic bytes): yields the
    ``Metadata`` first, then every record, in file order, decoded chunk by chunk (memory
    stays bounded for large files).  Older DBN versions are upgraded to the current record
    layouts.  A file that ends inside a record raises ``ValueError`` naming the file."""
    path = os.fspath(path)
    with open(path, "rb") as fh:
        head = fh.read(4)
        compression = dbn.Compression.ZSTD if head == _ZSTD_MAGIC else dbn.Compression.NONE
        dec = dbn.DBNDecoder(compression=compression)
        data = head
        while True:
            data += fh.read(chunk_size)
            if not data:
                break
            try:
                out = dec.write_and_decode(data)
            except dbn.DBNError as exc:
                raise ValueError(f"{path}: not a valid DBN file ({exc})") from None
            data = b""
            yield from out
        try:
            tail = dec.decode()
        except dbn.DBNError as exc:
            raise ValueError(f"{path}: not a valid DBN file ({exc})") from None
        yield from tail
        left = len(dec.buffer())
        if left:
            raise ValueError(f"{path}: truncated DBN file ({left} trailing bytes)")


def read_metadata(path: PathLike) -> Any:
    """The DBN ``Metadata`` header of a file (dataset, schema, stype_in/out, mappings) without
    decoding its records beyond the first chunk."""
    for item in iter_records(path, chunk_size=64 * 1024):
        if isinstance(item, dbn.Metadata):
            return item
        break
    raise ValueError(f"{os.fspath(path)}: no DBN metadata header")


def _schema(meta: Any) -> Optional[str]:
    s = meta.schema
    return None if s is None else str(getattr(s, "value", s))


def _metadata_mappings(meta: Any) -> dict[int, list[tuple[dt.date, dt.date, str]]]:
    """``instrument_id -> [(start_date, end_date_exclusive, raw_symbol), ...]`` from a header
    whose input symbology is raw symbols (other symbologies, e.g. parent ``ES.FUT``, do not
    name the contract and are ignored)."""
    out: dict[int, list] = {}
    if _char(meta.stype_in) != "raw_symbol" or _char(meta.stype_out) != "instrument_id":
        return out
    for raw_symbol, intervals in (meta.mappings or {}).items():
        for iv in intervals:
            try:
                iid = int(iv["symbol"])
            except (KeyError, TypeError, ValueError):
                continue
            out.setdefault(iid, []).append((iv["start_date"], iv["end_date"], raw_symbol))
    for ivs in out.values():
        ivs.sort()
    return out


def _mapping_symbol(rec: Any) -> Optional[str]:
    """Raw contract symbol named by a ``SymbolMappingMsg`` (live data), if any."""
    if _char(rec.stype_out) == "raw_symbol":
        return rec.stype_out_symbol
    if _char(rec.stype_in) == "raw_symbol":
        return rec.stype_in_symbol
    return None


_DEF_TYPES = tuple(t for t in (getattr(dbn, n, None) for n in
                               ("InstrumentDefMsg", "InstrumentDefMsgV1", "InstrumentDefMsgV2",
                                "InstrumentDefMsgV3")) if t is not None)
_MAP_TYPES = tuple(t for t in (getattr(dbn, n, None) for n in
                               ("SymbolMappingMsg", "SymbolMappingMsgV1")) if t is not None)


def load_instruments(paths: Union[PathLike, Iterable[PathLike]],
                     use_mappings: bool = True) -> dict[int, Instrument]:
    """``{instrument_id: Instrument}`` from DBN files.

    In: any DBN files (definition files, data files, live captures).  Definition records
    (schema ``definition``, or files without a single schema) are read in full; for files of
    another schema only the metadata header is read (their mappings), so passing the big
    trades / mbp-10 files costs nothing.  Out: one entry per instrument id; a definition
    record always wins over a symbol-only mapping, a later definition of the same id over
    an earlier one, and among mappings the latest interval wins (ids reused over a multi-day
    range are resolved per date by ``iter_events`` from the file's own header).
    """
    defs: dict[int, Instrument] = {}
    mapped: dict[int, Instrument] = {}
    for path in _as_paths(paths):
        meta = read_metadata(path)
        if use_mappings:
            for iid, ivs in _metadata_mappings(meta).items():
                mapped[iid] = instrument_from_symbol(iid, ivs[-1][2])
        schema = _schema(meta)
        if schema not in (None, "definition"):
            continue
        for rec in iter_records(path):
            if isinstance(rec, _DEF_TYPES):
                defs[rec.instrument_id] = instrument_from_definition(rec)
            elif use_mappings and isinstance(rec, _MAP_TYPES):
                sym = _mapping_symbol(rec)
                if sym:
                    mapped[rec.instrument_id] = instrument_from_symbol(rec.instrument_id, sym)
    mapped.update(defs)
    return mapped


# --------------------------------------------------------------------------- events

@dataclasses.dataclass
class DecodeStats:
    """What ``iter_events`` did.  ``events``: count per subject.  ``undefined_prices``: trades
    skipped because their price was ``UNDEF_PRICE``.  ``empty_book_sides``: book sides inside
    an emitted ``levels`` list that were undefined and written as 0.0 / 0.
    ``spreads_filtered``: records of spread instruments dropped.  ``unknown_instruments``: ids
    with no definition or mapping (their records are skipped; ``unknown_records`` counts them).
    ``skipped``: every other dropped record by reason.  ``files``/``records``: inputs seen."""
    events: Counter = dataclasses.field(default_factory=Counter)
    undefined_prices: int = 0
    empty_book_sides: int = 0
    spreads_filtered: int = 0
    unknown_instruments: set = dataclasses.field(default_factory=set)
    unknown_records: int = 0
    skipped: Counter = dataclasses.field(default_factory=Counter)
    files: int = 0
    records: int = 0

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    def merge(self, other: "DecodeStats") -> None:
        """Adds ``other``'s counts to these (sets of ids: their union)."""
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, Counter):
                mine.update(theirs)
            elif isinstance(mine, set):
                mine |= theirs
            else:
                setattr(self, f.name, mine + theirs)

    def as_dict(self) -> dict:
        return {"events": dict(self.events), "total_events": self.total_events,
                "undefined_prices": self.undefined_prices,
                "empty_book_sides": self.empty_book_sides,
                "spreads_filtered": self.spreads_filtered,
                "unknown_instruments": sorted(self.unknown_instruments),
                "unknown_records": self.unknown_records, "skipped": dict(self.skipped),
                "files": self.files, "records": self.records}


class FileInstruments:
    """Instrument lookup for one file: ``get(instrument_id, ts_ns)`` -> ``Instrument`` or
    None.  Order: given instruments that come from a definition record, then definitions /
    symbol mappings met in the file (``local``), then the header's dated mappings (an id
    reused for another contract on another day resolves by the UTC date of ``ts_ns``),
    then given instruments that only come from a mapping."""

    def __init__(self, base: Mapping[int, Instrument], meta: Any):
        self.base = base
        self.local: dict[int, Instrument] = {}
        self.dated = _metadata_mappings(meta)
        self._cache: dict[tuple[int, str], Instrument] = {}

    def get(self, iid: int, ts_ns: int) -> Optional[Instrument]:
        base = self.base.get(iid)
        if base is not None and base.source == "definition":
            return base
        inst = self.local.get(iid)
        if inst is not None:
            return inst
        ivs = self.dated.get(iid)
        if not ivs:
            return base
        if len(ivs) == 1:
            sym = ivs[0][2]
        else:
            day = _utc_date(ts_ns)
            sym = next((s for start, end, s in ivs if start <= day < end), None)
            if sym is None:
                return base
        key = (iid, sym)
        inst = self._cache.get(key)
        if inst is None:
            inst = self._cache[key] = instrument_from_symbol(iid, sym)
        return inst


def _px(v: int) -> float:
    return v / PRICE_SCALE


def iter_events(paths: Union[PathLike, Iterable[PathLike]],
                instruments: Optional[Mapping[int, Instrument]] = None,
                include_spreads: bool = False, source: str = "replay",
                stats: Optional[DecodeStats] = None,
                tbbo_trades: bool = False) -> Iterator[tuple[str, dict]]:
    """Decodes DBN files into ``(subject, event)`` bus events.

    In: DBN file paths (``.dbn`` or ``.dbn.zst``), decoded one after the other in the given
    order; ``instruments`` from ``load_instruments`` (when None, it is built from the given
    paths first).  Precedence per record: a given instrument from a definition record, then
    definition / ``SymbolMappingMsg`` records met earlier in the same file, then the file's
    header mappings (dated: a reused id resolves by the record's UTC ``ts_recv`` date), then
    a given mapping-only instrument.  Definition files yield no events.  ``tbbo_trades``:
    also turn ``tbbo`` records into trades (off by default: they repeat the trades schema).  Out: per file, events in file order (Databento files are ordered by ``ts_recv``;
    use ``merge_events`` for one ``ts_event`` ordered stream).  Guarantees: every event
    passes ``transforms.market_parse.parse_market_event`` (price bounds aside, see the
    module docstring); symbols are raw contract symbols;
    nothing is guessed: unknown ids, undefined prices, spreads (unless ``include_spreads``),
    zero sizes, out-of-range timestamps and unsupported records are skipped and counted in
    ``stats`` (pass a ``DecodeStats``).  With ``include_spreads`` spread records are decoded
    like futures, but those whose symbol or price the bus contract cannot carry (CME's
    ``ESH1-ESM1`` has a ``-``; spread prices can be <= 0) are still skipped and counted.
    """
    if source not in SOURCES:
        raise ValueError(f"source={source!r} is not one of {sorted(SOURCES)}")
    stats = stats if stats is not None else DecodeStats()
    path_list = _as_paths(paths)
    if instruments is None:
        instruments = load_instruments(path_list)
    for path in path_list:
        yield from _iter_file(path, instruments, include_spreads, source, stats, tbbo_trades)


def _iter_file(path: str, instruments: Mapping[int, Instrument], include_spreads: bool,
               source: str, stats: DecodeStats, tbbo_trades: bool) -> Iterator[tuple[str, dict]]:
    stats.files += 1
    records = iter_records(path)
    meta = next(records, None)
    if not isinstance(meta, dbn.Metadata):
        raise ValueError(f"{path}: no DBN metadata header")
    schema = _schema(meta)
    lookup = FileInstruments(instruments, meta)
    skipped = stats.skipped
    TradeMsg, MBP1Msg, MBP10Msg = dbn.TradeMsg, dbn.MBP1Msg, dbn.MBP10Msg
    for rec in records:
        stats.records += 1
        if isinstance(rec, TradeMsg):
            is_book = False
        elif isinstance(rec, MBP10Msg):
            is_book = True
        elif isinstance(rec, MBP1Msg):
            if not tbbo_trades or schema != "tbbo" or _char(rec.action) != "T":
                skipped[f"unsupported:{schema or 'mixed'}:MBP1Msg"] += 1
                continue
            is_book = False
        elif isinstance(rec, _DEF_TYPES):
            given = instruments.get(rec.instrument_id)
            if given is None or given.source != "definition":
                lookup.local[rec.instrument_id] = instrument_from_definition(rec)
            skipped["definition_record"] += 1
            continue
        elif isinstance(rec, _MAP_TYPES):
            sym = _mapping_symbol(rec)
            given = instruments.get(rec.instrument_id)
            if sym and (given is None or given.source != "definition"):
                lookup.local[rec.instrument_id] = instrument_from_symbol(rec.instrument_id, sym)
            skipped["symbol_mapping_record"] += 1
            continue
        else:
            skipped[f"unsupported:{type(rec).__name__}"] += 1
            continue

        out = _event_of(rec, is_book, lookup, include_spreads, source, stats)
        if out is not None:
            yield out


def events_of_records(records: Iterable[Any], lookup: "FileInstruments", include_spreads: bool,
                      source: str, stats: DecodeStats) -> Iterator[tuple[str, dict]]:
    """``TradeMsg`` / ``MBP10Msg`` records of one file -> their ``(subject, event)`` events,
    exactly as ``iter_events`` makes them (same checks, same counts in ``stats``, except
    ``records``, which the caller counts).  For the records the columnar decoder hands
    back (``io_connectors.dbn.columnar``)."""
    for rec in records:
        out = _event_of(rec, isinstance(rec, dbn.MBP10Msg), lookup, include_spreads, source,
                        stats)
        if out is not None:
            yield out


def _event_of(rec: Any, is_book: bool, lookup: "FileInstruments", include_spreads: bool,
              source: str, stats: DecodeStats) -> Optional[tuple[str, dict]]:
    """One trade (``TradeMsg``, tbbo ``MBP1Msg``) or book (``MBP10Msg``) record -> its
    event, or None (skipped, counted in ``stats``)."""
    skipped = stats.skipped
    ts_event, ts_recv = rec.ts_event, rec.ts_recv
    inst = lookup.get(rec.instrument_id, ts_recv if ts_recv != UNDEF_TIMESTAMP else ts_event)
    if inst is None:
        stats.unknown_instruments.add(rec.instrument_id)
        stats.unknown_records += 1
        return None
    kind = inst.kind
    if kind == "spread":
        if not include_spreads:
            stats.spreads_filtered += 1
            return None
        kind = "future"
    if not (TS_MIN_NS <= ts_event < TS_MAX_NS and TS_MIN_NS <= ts_recv < TS_MAX_NS):
        skipped["timestamp_out_of_range"] += 1
        return None

    if is_book:
        if kind != "future":
            skipped[f"book_of_{kind}"] += 1
            return None
        if not _IDENT.fullmatch(inst.raw_symbol):
            skipped["symbol_not_identifier"] += 1
            return None
        event = _book_event(rec, inst, ts_event, ts_recv, source, stats)
        if event is None:
            return None
        stats.events[SUBJECT_FUTURES_MBP10] += 1
        return SUBJECT_FUTURES_MBP10, event

    # trade (TradeMsg, or tbbo MBP1Msg with action T)
    price = rec.price
    if price == UNDEF_PRICE:
        stats.undefined_prices += 1
        return None
    size = rec.size
    if not 1 <= size <= INT32_MAX:
        skipped["bad_size"] += 1
        return None
    aggressor = _AGGRESSOR.get(_char(rec.side), 0)
    if kind == "future":
        if price <= 0:
            skipped["nonpositive_price"] += 1
            return None
        if not _IDENT.fullmatch(inst.raw_symbol):
            skipped["symbol_not_identifier"] += 1
            return None
        event = {"ts_event_ns": ts_event, "ts_recv_ns": ts_recv, "source": source,
                 "symbol": inst.raw_symbol, "price": _px(price), "size": size,
                 "aggressor": aggressor}
        if inst.exchange:
            event["exchange"] = inst.exchange
        event["seq"] = rec.sequence
        stats.events[SUBJECT_FUTURES_TRADES] += 1
        return SUBJECT_FUTURES_TRADES, event
    if kind == "option":
        if (inst.expiry is None or inst.strike is None or not inst.strike > 0
                or inst.right not in ("C", "P") or not inst.underlying):
            skipped["incomplete_option"] += 1
            return None
        if not _IDENT.fullmatch(inst.underlying):
            skipped["underlying_not_identifier"] += 1
            return None
        if price < 0:
            skipped["negative_price"] += 1
            return None
        opt_sym = inst.raw_symbol
        if not 0 < len(opt_sym) <= 64:
            skipped["option_symbol_length"] += 1
            return None
        event = {"ts_event_ns": ts_event, "ts_recv_ns": ts_recv, "source": source,
                 "underlying": inst.underlying, "option_symbol": opt_sym,
                 "exp_date": inst.expiry.isoformat(), "strike": inst.strike,
                 "right": inst.right, "price": _px(price), "size": size}
        if isinstance(rec, dbn.MBP1Msg):
            top = rec.levels[0]
            if (top.bid_px != UNDEF_PRICE and top.ask_px != UNDEF_PRICE
                    and top.bid_px >= 0 and top.ask_px >= 0):
                event["opt_bid"] = _px(top.bid_px)
                event["opt_ask"] = _px(top.ask_px)
        event["aggressor"] = aggressor
        event["seq"] = rec.sequence
        stats.events[SUBJECT_OPTIONS_TRADES] += 1
        return SUBJECT_OPTIONS_TRADES, event
    skipped[f"trade_of_{kind}"] += 1
    return None


def _book_event(rec: Any, inst: Instrument, ts_event: int, ts_recv: int, source: str,
                stats: DecodeStats) -> Optional[dict]:
    raw = [(l.bid_px, l.bid_sz, l.ask_px, l.ask_sz) for l in rec.levels]
    depth = 0
    for i, (bp, _, ap, _) in enumerate(raw):
        if bp != UNDEF_PRICE or ap != UNDEF_PRICE:
            depth = i + 1
    levels = []
    empty = 0
    for bp, bs, ap, asz in raw[:depth]:
        if bp == UNDEF_PRICE:
            bid_px, bid_sz = 0.0, 0
            empty += 1
        else:
            bid_px, bid_sz = _px(bp), bs
        if ap == UNDEF_PRICE:
            ask_px, ask_sz = 0.0, 0
            empty += 1
        else:
            ask_px, ask_sz = _px(ap), asz
        if bid_px < 0 or ask_px < 0:
            stats.skipped["negative_book_price"] += 1
            return None
        if bid_sz > INT32_MAX or ask_sz > INT32_MAX:
            stats.skipped["bad_size"] += 1
            return None
        levels.append({"bid_px": bid_px, "bid_sz": bid_sz, "ask_px": ask_px, "ask_sz": ask_sz})
    stats.empty_book_sides += empty
    return {"ts_event_ns": ts_event, "ts_recv_ns": ts_recv, "source": source,
            "symbol": inst.raw_symbol, "levels": levels,
            "is_snapshot": bool(rec.flags & dbn.F_SNAPSHOT), "seq": rec.sequence}


# --------------------------------------------------------------------------- merging, ids

def _rank(subject: str) -> int:
    return SUBJECT_RANK.get(subject, len(SUBJECT_RANK))


def _merge_key(item: tuple[str, dict]) -> tuple[int, int]:
    subject, event = item
    return event["ts_event_ns"], _rank(subject)


def _reorder(items: Iterable[tuple[str, dict]], max_lag_ns: int) -> Iterator[tuple[str, dict]]:
    """Sorts a stream that is out of order by at most ``max_lag_ns`` of event time (stable)."""
    heap: list = []
    counter = itertools.count()
    newest = None
    for item in items:
        key = _merge_key(item)
        heapq.heappush(heap, (key, next(counter), item))
        newest = key[0] if newest is None else max(newest, key[0])
        while heap and heap[0][0][0] <= newest - max_lag_ns:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


def merge_events(iterables: Iterable[Iterable[tuple[str, dict]]],
                 max_lag_ns: int = 0) -> Iterator[tuple[str, dict]]:
    """One stream of ``(subject, event)`` from several, ordered by ``(ts_event_ns, rank)``
    with rank futures trades 0 < option trades 1 < book 2; ties keep the order of the inputs
    (earlier iterable first, then each input's own order).  Lazy (``heapq.merge``).

    Each input must already be in that order for the output to be; DBN files are ordered
    by ``ts_recv``, so ``ts_event`` may step back slightly: with ``max_lag_ns > 0`` each
    input is first re-sorted within that event-time horizon (a bounded heap), which makes
    the output ordered whenever no event trails the newest one seen by more than that.
    """
    inputs = [iter(it) for it in iterables]
    if max_lag_ns > 0:
        inputs = [_reorder(it, max_lag_ns) for it in inputs]
    return heapq.merge(*inputs, key=_merge_key)


def event_id(subject: str, event: dict) -> str:
    """Deterministic message identity (``Nats-Msg-Id``) of a bus event:
    ``{subject}:{symbol|option_symbol}:{ts_event_ns}:{seq}:{ts_recv_ns}:{digest}`` where
    ``digest`` is 16 hex chars of BLAKE2b over the event's canonical JSON (sorted keys).

    The same event always gets the same id (re-publishing a file is deduplicated), and
    distinct events always differ: CME packs several records into one packet, so records
    can share ts_event, sequence and ts_recv (a sweep through three price levels, book
    updates in one packet); the digest tells them apart.  Byte-identical events share an id.
    """
    key = event.get("symbol") or event.get("option_symbol") or ""
    digest = hashlib.blake2b(orjson.dumps(event, option=orjson.OPT_SORT_KEYS),
                             digest_size=8).hexdigest()
    return (f"{subject}:{key}:{event.get('ts_event_ns')}:{event.get('seq')}:"
            f"{event.get('ts_recv_ns')}:{digest}")


# --------------------------------------------------------------------------- encoding

def write_dbn(path: PathLike, metadata: Any, records: Iterable[Any],
              compress: Optional[bool] = None) -> int:
    """Writes a DBN file: ``metadata`` (a ``databento_dbn.Metadata``) then each record's
    ``bytes()`` (``TradeMsg``, ``MBP10Msg``, ``InstrumentDefMsg``, ...).  Compressed with
    zstd when ``compress`` is true or, if None, when the name ends in ``.zst``.  Returns the
    number of records written.  The result decodes with ``DBNDecoder`` / ``iter_records``."""
    path = os.fspath(path)
    if compress is None:
        compress = path.endswith(".zst")
    n = 0
    with open(path, "wb") as fh:
        if compress:
            import zstandard
            out = zstandard.ZstdCompressor(level=3).stream_writer(fh, closefd=False)
        else:
            out = fh
        out.write(metadata.encode())
        for rec in records:
            out.write(bytes(rec))
            n += 1
        if compress:
            out.close()
    return n


def make_metadata(dataset: str, schema: Optional[str], start: int, end: Optional[int] = None,
                  symbols: Optional[Sequence[str]] = None,
                  mappings: Optional[Mapping[str, Sequence[tuple[dt.date, dt.date, int]]]] = None
                  ) -> Any:
    """A ``Metadata`` header in raw_symbol -> instrument_id symbology.  ``mappings``:
    ``{raw_symbol: [(start_date, end_date_exclusive, instrument_id), ...]}``."""
    maps = []
    for raw_symbol, ivs in (mappings or {}).items():
        maps.append(_SymbolMapping(raw_symbol, [_Interval(s, e, str(i)) for s, e, i in ivs]))
    return dbn.Metadata(dataset, start, dbn.SType.RAW_SYMBOL, dbn.SType.INSTRUMENT_ID,
                        dbn.Schema.from_str(schema) if schema else None,
                        symbols=list(symbols or []), mappings=maps, end=end)


@dataclasses.dataclass
class _Interval:
    start_date: dt.date
    end_date: dt.date
    symbol: str


@dataclasses.dataclass
class _SymbolMapping:
    raw_symbol: str
    intervals: list
