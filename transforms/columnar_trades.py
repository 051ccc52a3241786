"""``market.futures.trades`` batches parsed column-wise with pyarrow (pure, no Beam).

``parse_trade_batch(msgs)`` takes the ``NatsMessage`` tuples of one batch, all on subject
``market.futures.trades``, parses all their payloads in one ``pyarrow.json.read_json`` call
and checks every rule of the per-message parser (``market_parse._futures_trade``,
``_common``, ``_aggressor``, ``_conditions`` and the ``json_fields`` checks) with
``pyarrow.compute``.  It returns, per shard key, a ``(key, transforms.shards.Shard(tokens,
table))`` piece (the ack tokens in row order and a table in exactly the ``FUTURES_TRADES``
schema whose row ``i`` equals, value for value, the row tuple the per-message parser
gives for the message of ``tokens[i]``), or ``None``
whenever it cannot prove that the per-message parser would accept EVERY message and give
identical rows.  ``None`` means: route the whole batch message by message (the old path,
with its rows and dead letters), so this module can only ever accept, never reject.

pyarrow's JSON reader is stricter than JSON in most ways that matter here (checked in
tests/test_columnar_trades.py): it rejects a float, a boolean or a string in an int64
column, a boolean or a string in a float64 column, duplicate top-level keys, non-object
payloads, truncated JSON and lone surrogates, and it raises on invalid UTF-8 in a string
column.  Where it is more lenient than orjson, the batch is refused before parsing:

- ``NaN``, ``Infinity`` and ``-Infinity`` literals (accepted by pyarrow anywhere): any batch
  whose bytes contain ``NaN`` or ``Infinity`` (even inside a string) is refused;
- invalid UTF-8 in an ignored field: the joined bytes must decode as UTF-8;
- nesting deeper than orjson's limit in an ignored field: payloads above
  ``MAX_PAYLOAD_BYTES`` (far below the 1024 brackets that limit needs) are refused;
- several JSON values in one payload, an empty payload, a raw newline in a payload: each
  payload must start with ``{`` and end with ``}`` and hold no newline, and the table must
  have exactly one row per message.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from transforms.market_parse import (INT32_MAX, INT64_MAX, SOURCES, TS_MAX_NS, TS_MIN_NS,
                                     _NS_PER_HOUR, _utc_date_hour_of, symbol_root)
from transforms.partitioning import bronze_key
from transforms.schemas import BRONZE_DATASETS, FUTURES_TRADES
from transforms.shards import Shard

SUBJECT = "market.futures.trades"
DATASET = BRONZE_DATASETS[SUBJECT].path
MAX_PAYLOAD_BYTES = 1000
_PAYLOAD, _ACK = 1, 4

# What the reader parses: integer fields as int64 (narrowed after the range checks),
# conditions as list<int64>; any other field is ignored, as the per-message parser does.
_READ_SCHEMA = pa.schema([
    ("ts_event_ns", pa.int64()), ("ts_recv_ns", pa.int64()), ("source", pa.string()),
    ("symbol", pa.string()), ("price", pa.float64()), ("size", pa.int64()),
    ("aggressor", pa.int64()), ("exchange", pa.string()),
    ("conditions", pa.list_(pa.int64())), ("seq", pa.int64()),
])
_PARSE_OPTIONS = pj.ParseOptions(explicit_schema=_READ_SCHEMA,
                                 unexpected_field_behavior="ignore",
                                 newlines_in_values=False)
_IDENT_RE = r"^[A-Za-z0-9][A-Za-z0-9_]{0,31}$"     # json_fields._IDENT, anchored
_SOURCES = pa.array(sorted(SOURCES), pa.string())


def _all_true(mask) -> bool:
    return pc.all(mask, skip_nulls=False, min_count=0).as_py() is True


def _between(arr, lo, hi):
    return pc.and_kleene(pc.greater_equal(arr, lo), pc.less_equal(arr, hi))


def _valid(t: pa.Table) -> bool:
    """Every rule of ``market_parse._futures_trade`` holds for every row."""
    for name in ("ts_event_ns", "ts_recv_ns", "source", "symbol", "price", "size",
                 "aggressor"):
        if t[name].null_count:
            return False
    if not (_all_true(_between(t["ts_event_ns"], TS_MIN_NS, TS_MAX_NS - 1))
            and _all_true(_between(t["ts_recv_ns"], TS_MIN_NS, TS_MAX_NS - 1))
            and _all_true(pc.is_in(t["source"], value_set=_SOURCES))
            and _all_true(pc.match_substring_regex(t["symbol"], _IDENT_RE))
            and _all_true(pc.and_kleene(pc.is_finite(t["price"]),
                                        pc.greater(t["price"], 0.0)))
            and _all_true(_between(t["size"], 1, INT32_MAX))
            and _all_true(_between(t["aggressor"], -1, 1))):
        return False
    exchange = t["exchange"]
    if exchange.null_count != len(exchange):
        length = pc.utf8_length(exchange)
        if not _all_true(pc.or_kleene(pc.is_null(exchange), _between(length, 1, 64))):
            return False
    seq = t["seq"]
    if seq.null_count != len(seq):
        if not _all_true(pc.or_kleene(pc.is_null(seq), _between(seq, -INT64_MAX, INT64_MAX))):
            return False
    items = pc.list_flatten(t["conditions"])
    if len(items) and (items.null_count or not _all_true(_between(items, -32768, 32767))):
        return False
    return True


def _to_schema(t: pa.Table) -> pa.Table:
    """The parsed table narrowed to ``FUTURES_TRADES`` (types, nullability, order)."""
    arrays = []
    for field in FUTURES_TRADES:
        col = t[field.name].combine_chunks()
        if col.type != field.type:
            col = col.cast(field.type)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=FUTURES_TRADES)


def parse_trade_batch(msgs) -> Optional[list]:
    """NatsMessage tuples of ``market.futures.trades`` -> ``(key, Shard(tokens, table))``
    per shard key (rows of a key in message order), or ``None`` when any message might not be
    accepted by the per-message parser exactly as here (the caller then routes the whole
    batch message by message)."""
    n = len(msgs)
    if not n:
        return None
    payloads = [m[_PAYLOAD] for m in msgs]
    try:
        if max(map(len, payloads)) > MAX_PAYLOAD_BYTES:
            return None
        joined = b"\n".join(payloads)
    except TypeError:
        return None
    # One JSON object per line: exactly n-1 newlines, each between "}" and "{".
    if (joined[:1] != b"{" or joined[-1:] != b"}" or joined.count(b"\n") != n - 1
            or joined.count(b"}\n{") != n - 1 or b"NaN" in joined or b"Infinity" in joined):
        return None
    if not joined.isascii():
        try:
            joined.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        table = pj.read_json(pa.py_buffer(joined),
                             read_options=pj.ReadOptions(use_threads=False,
                                                         block_size=len(joined) + 1),
                             parse_options=_PARSE_OPTIONS)
        if table.num_rows != n or not _valid(table):
            return None
        table = _to_schema(table)
    except Exception:  # pylint: disable=broad-except
        return None
    return _split_by_key(table, [m[_ACK] for m in msgs])


def _split_by_key(table: pa.Table, tokens: list) -> list:
    """Rows grouped by (symbol root, UTC date, UTC hour of ts_event_ns), order kept."""
    hours = pc.divide(table["ts_event_ns"], _NS_PER_HOUR).to_numpy()   # ts > 0: floor
    sym = table["symbol"].combine_chunks().dictionary_encode()
    roots = [symbol_root(s) for s in sym.dictionary.to_pylist()]
    root_ids = {r: i for i, r in enumerate(dict.fromkeys(roots))}
    root_of_sym = np.array([root_ids[r] for r in roots], dtype=np.int64)
    root_idx = root_of_sym[sym.indices.to_numpy()]
    roots_by_id = list(root_ids)
    h0 = int(hours.min())
    group = (hours - h0) * len(roots_by_id) + root_idx
    uniq, inverse = np.unique(group, return_inverse=True)

    def key_of(g):
        hour_off, rid = divmod(int(g), len(roots_by_id))
        date, hour = _utc_date_hour_of(h0 + hour_off)
        return bronze_key(DATASET, roots_by_id[rid], date, hour)

    if len(uniq) == 1:
        return [(key_of(uniq[0]), Shard(tokens, table))]
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=len(uniq))
    ordered = table.take(pa.array(order))
    tokens = [tokens[i] for i in order.tolist()]
    pieces, start = [], 0
    for g, c in zip(uniq, counts.tolist()):
        pieces.append((key_of(g), Shard(tokens[start:start + c], ordered.slice(start, c))))
        start += c
    return pieces
