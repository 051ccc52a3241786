"""``market.futures.trades`` batches parsed column-wise with pyarrow (pure, no Beam).

``parse_trade_batch(msgs)`` takes the ``NatsMessage`` tuples of one batch, all on subject
``market.futures.trades``, parses all their payloads in one ``pyarrow.json.read_json`` call
and checks every rule of the per-message parser (``market_parse._futures_trade``,
``_common``, ``_aggressor``, ``_conditions`` and the ``json_fields`` checks) with
``pyarrow.compute``.  It returns, per shard key, a ``ColumnarShardPiece`` (the key, the
ack tokens in row order and a table in exactly the ``FUTURES_TRADES`` schema), or ``None``
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
  have exactly one row per message;
- duplicate keys in ignored fields (pyarrow rejects a repeated field of the schema but not
  a repeated unknown one, nor one inside a nested object; the per-message parser rejects
  every duplicate): a batch is taken only when every key of every payload is one of the
  schema's field names written literally: no nested object (one ``{`` per payload), no
  escaped quote, no whitespace before a colon, and as many ``":`` as ``"<field>":``.

The rules themselves are ``transforms.bronze_rules.row_mask`` (shared with the DBN
backfill), with the price bound of ``rules`` (configs/lake.yaml ``bronze.max_price``).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from transforms.bronze_rules import DEFAULT_RULES, BronzeRules, row_mask
from transforms.market_parse import _NS_PER_HOUR, _utc_date_hour_of, symbol_root
from transforms.partitioning import bronze_key
from transforms.schemas import BRONZE_DATASETS, FUTURES_TRADES

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
_KEYS = tuple(f'"{name}":'.encode() for name in _READ_SCHEMA.names)


class ColumnarShardPiece(NamedTuple):
    """Valid trades of one shard key from one batch, column-wise.

    ``key``: the shard key (``bronze_key``), ``tokens``: their ack tokens in row order,
    ``table``: their rows in ``FUTURES_TRADES`` (same order).  Row ``i`` equals, value for
    value, the row tuple the per-message parser gives for the message of ``tokens[i]``.
    """
    key: str
    tokens: list
    table: pa.Table


class ColumnarShard(NamedTuple):
    """A shard in columnar form, the value of a ``(key, ColumnarShard)`` element for
    ``WriteParquetShards``: ack tokens and a table of the same length in the key's schema
    (any order; the writer sorts)."""
    tokens: list
    table: pa.Table


def table_rows(table: pa.Table) -> list[tuple]:
    """The table's rows as tuples in column order, with the Python values the per-message
    parser gives (int, float, str, None, lists of int)."""
    return list(zip(*(col.to_pylist() for col in table.columns)))


def _valid(t: pa.Table, rules: BronzeRules) -> bool:
    """Every rule of ``market_parse._futures_trade`` holds for every row."""
    return bool(row_mask(t, DATASET, rules).all())


def _only_known_keys(joined: bytes, n: int) -> bool:
    """True when every key of the ``n`` flat payloads in ``joined`` is a literal field name
    of the read schema (so pyarrow sees every key, and rejects any it sees twice)."""
    if (joined.count(b"{") != n or b'\\"' in joined or b" :" in joined or b"\t:" in joined
            or b"\r:" in joined):
        return False
    return joined.count(b'":') == sum(joined.count(k) for k in _KEYS)


def _to_schema(t: pa.Table) -> pa.Table:
    """The parsed table narrowed to ``FUTURES_TRADES`` (types, nullability, order)."""
    arrays = []
    for field in FUTURES_TRADES:
        col = t[field.name].combine_chunks()
        if col.type != field.type:
            col = col.cast(field.type)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=FUTURES_TRADES)


def parse_trade_batch(msgs, rules: BronzeRules = DEFAULT_RULES) -> Optional[list]:
    """NatsMessage tuples of ``market.futures.trades`` -> ``ColumnarShardPiece`` per shard
    key (rows of a key in message order), or ``None`` when any message might not be
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
            or joined.count(b"}\n{") != n - 1 or b"NaN" in joined or b"Infinity" in joined
            or not _only_known_keys(joined, n)):
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
        if table.num_rows != n or not _valid(table, rules):
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
        return [ColumnarShardPiece(key_of(uniq[0]), tokens, table)]
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=len(uniq))
    ordered = table.take(pa.array(order))
    tokens = [tokens[i] for i in order.tolist()]
    pieces, start = [], 0
    for g, c in zip(uniq, counts.tolist()):
        pieces.append(ColumnarShardPiece(key_of(g), tokens[start:start + c],
                                         ordered.slice(start, c)))
        start += c
    return pieces
