"""Columnar parsing of futures-trade batches: it either refuses a batch (None) or gives
exactly the rows, keys and tokens of the per-message parser."""
import json
import random

import orjson
import pytest

from transforms.bronze_route import MIN_COLUMNAR_TRADES, route_batch, route_batch_columnar
from transforms.columnar_trades import (ColumnarShardPiece, parse_trade_batch, table_rows)
from transforms.schemas import FUTURES_TRADES

SUBJ = "market.futures.trades"
TS = 1734359400_000000000  # 2024-12-16T14:30:00Z
H = 3_600 * 10**9


def trade(rng=None, **kw):
    ev = dict(ts_event_ns=TS, ts_recv_ns=TS + 1000, source="replay", symbol="ESZ4",
              price=6050.25, size=3, aggressor=-1, exchange="XCME", conditions=[1, 2], seq=42)
    if rng is not None:
        ev.update(ts_event_ns=TS + rng.randrange(-3 * H, 3 * H), symbol=rng.choice(
            ["ESZ4", "ESH5", "NQZ4", "CL", "MESZ24"]), price=round(rng.uniform(1, 9999), 2),
            size=rng.randrange(1, 500), aggressor=rng.choice([-1, 0, 1]),
            seq=rng.randrange(0, 10**12))
        for opt in ("exchange", "conditions", "seq"):
            r = rng.random()
            if r < 0.15:
                del ev[opt]
            elif r < 0.3:
                ev[opt] = None
    ev.update(kw)
    return ev


def msg(payload, i):
    return (SUBJ, payload, i, TS + i, f"tok{i}")


def expected(msgs, rules=None):
    """{key: [(token, row), ...]} by the per-message path, or None if any dead letter."""
    from transforms.bronze_rules import DEFAULT_RULES
    out = {}
    for key, value in route_batch(msgs, rules or DEFAULT_RULES):
        if key.startswith("_dead_letter"):
            return None
        out.setdefault(key, []).append(value)
    return out


def got(pieces):
    out = {}
    for p in pieces:
        assert isinstance(p, ColumnarShardPiece)
        assert p.table.schema == FUTURES_TRADES
        assert p.table.num_rows == len(p.tokens)
        assert p.key not in out
        out[p.key] = list(zip(p.tokens, table_rows(p.table)))
    return out


def check(msgs, rules=None):
    from transforms.bronze_rules import DEFAULT_RULES
    rules = rules or DEFAULT_RULES
    pieces = parse_trade_batch(msgs, rules)
    if pieces is None:
        return False
    exp = expected(msgs, rules)
    assert exp is not None, [m[1] for m in msgs]
    res = got(pieces)
    assert res == exp
    # identical Python types too (e.g. 5 vs 5.0, [] vs None)
    for key in exp:
        for (_, a), (_, b) in zip(exp[key], res[key]):
            assert [type(x) for x in a] == [type(x) for x in b]
            if a[8] is not None:
                assert [type(x) for x in a[8]] == [type(x) for x in b[8]]
    return True


def test_valid_batch_is_accepted_and_split_by_key_in_message_order():
    rng = random.Random(1)
    msgs = [msg(orjson.dumps(trade(rng)), i) for i in range(500)]
    assert check(msgs)
    assert len(parse_trade_batch(msgs)) > 5


# Mutations: a field replaced by a value of another type or out of range, removed, nulled;
# raw text edits; each applied to one message of an otherwise valid batch.
BAD_VALUES = [None, True, False, 0, -1, 1, 2, -2, 1.0, 0.0, -0.0, 1e3, 1.5, "1", "", "x" * 65,
              "x" * 64, "ESZ4", "_ES", "ES-Z4", "é", "a\u0000", [], [1], [1.0], [True], [None],
              [40000], [-32768, 32767], [-32769], {}, {"a": 1}, 2**31 - 1, 2**31, 2**63 - 1,
              -(2**63 - 1), 10**20, 1e308, 5e-324, "replay", "sim", "direct_feed", "live",
              946_684_800 * 10**9, 946_684_800 * 10**9 - 1, 4_102_444_800 * 10**9,
              4_102_444_800 * 10**9 - 1, 0.1, 1e-300, 123456789012345678901234567890,
              2**63, -(2**63), 2**64, 1e6, 1e6 + 0.25, 999_999.75, 1e30]
FIELDS = ["ts_event_ns", "ts_recv_ns", "source", "symbol", "price", "size", "aggressor",
          "exchange", "conditions", "seq"]
RAW = [
    lambda p: p[:-1], lambda p: p + b" ", lambda p: b" " + p, lambda p: p + p,
    lambda p: p + b"\n" + p, lambda p: b"", lambda p: b"[" + p + b"]", lambda p: b"5",
    lambda p: b'"x"', lambda p: b"null", lambda p: b"{}", lambda p: p.replace(b"6050.25", b"NaN"),
    lambda p: p.replace(b"6050.25", b"Infinity"), lambda p: p[:-1] + b',"x":NaN}',
    lambda p: p[:-1] + b',"x":"\xff"}', lambda p: p[:-1] + b',"x":' + b"[" * 600 + b"]" * 600 + b"}",
    lambda p: p[:-1] + b',"x":' + b"[" * 300 + b"]" * 300 + b"}",
    lambda p: p[:-1] + b',"seq":1}', lambda p: p[:-1] + b',"\\u0073eq":1}',
    lambda p: p.replace(b'"size":', b'"\\u0073ize":'), lambda p: p.replace(b",", b", \n", 1),
    lambda p: p.replace(b",", b",\t", 1), lambda p: p[:-1] + b',"x":{"y":1,"y":[1,{}]}}',
    lambda p: p[:-1] + b',"x":"NaN"}', lambda p: p.replace(b"XCME", b"X\\nC"),
    lambda p: p.replace(b"XCME", b"\xc3\xa9"), lambda p: p.replace(b"XCME", b"\\ud800"),
    lambda p: p.replace(b"XCME", b"\\ud83d\\ude00"), lambda p: p.replace(b"XCME", b"\xed\xa0\x80"),
    lambda p: p[:-1] + b',"x":123456789012345678901234567890}', lambda p: p[:-1] + b',}',
    lambda p: p.replace(b"6050.25", b"6.05025e3"), lambda p: p.replace(b"6050.25", b"6050.250000000000000001"),
    lambda p: p.replace(b'"size":3', b'"size":3.0'), lambda p: p.replace(b'"size":3', b'"size":3e0'),
    lambda p: p.replace(b'"size":3', b'"size":-0'), lambda p: p.replace(b'"aggressor":-1', b'"aggressor":-0'),
    lambda p: p.replace(b'"size":3', b'"size":03'), lambda p: p.replace(b"{", b"\xef\xbb\xbf{", 1),
    lambda p: p[:-1] + b',"x":1e400}', lambda p: p.replace(b"6050.25", b"1e400"),
    lambda p: p.replace(b"6050.25", b"1e-400"), lambda p: p.replace(b"[1,2]", b"[1,2,]"),
    lambda p: p.replace(b"}", b"}}"), lambda p: p.replace(b'"replay"', b"'replay'"),
    # strict payloads: duplicate keys anywhere, integers beyond 64 bits
    lambda p: p[:-1] + b',"symbol":"NQZ4"}', lambda p: p[:-1] + b',"x":1,"x":2}',
    lambda p: p[:-1] + b',"x":{"y":1,"y":2}}', lambda p: p[:-1] + b',"size" :3}',
    lambda p: p[:-1] + b',"x" :1}', lambda p: p[:-1] + b',"\\"q":1,"\\"q":2}',
    lambda p: p[:-1] + b',"\\"size":1,"\\"size":2}', lambda p: p[:-1] + b',"x":"\\":"}',
    lambda p: p.replace(b'"seq":42', b'"seq":123456789012345678901234567890'),
    lambda p: p.replace(b'"seq":42', b'"seq":9223372036854775808'),
    lambda p: p.replace(b'"size":3', b'"size":-9223372036854775809'),
    lambda p: p.replace(b"6050.25", b"1000000.0"), lambda p: p.replace(b"6050.25", b"1000000.25"),
]


def _mutate(rng, ev):
    kind = rng.random()
    ev = dict(ev)
    ascii_only = rng.random() < 0.5

    def dumps(obj):   # stdlib json: integers beyond 64 bits, non-ASCII text unescaped
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=ascii_only).encode()

    if kind < 0.55:
        ev[rng.choice(FIELDS)] = rng.choice(BAD_VALUES)
        return dumps(ev)
    if kind < 0.65:
        ev.pop(rng.choice(FIELDS), None)
        return dumps(ev)
    if kind < 0.7:
        ev[rng.choice(["extra", "x", "levels", "Price", "SIZE"])] = rng.choice(BAD_VALUES)
        return dumps(ev)
    base = orjson.dumps(trade(**{k: v for k, v in ev.items() if k in ("ts_event_ns",)}))
    return rng.choice(RAW)(base)


@pytest.mark.parametrize("seed", range(6))
def test_differential_against_the_per_message_parser(seed):
    rng = random.Random(seed)
    accepted = refused = 0
    for case in range(700):
        n = rng.choice([1, 2, 3, 17])
        evs = [trade(rng) for _ in range(n)]
        payloads = [orjson.dumps(e) for e in evs]
        for _ in range(rng.choice([1, 1, 2])):
            j = rng.randrange(n)
            payloads[j] = _mutate(rng, evs[j])
        msgs = [msg(p, i) for i, p in enumerate(payloads)]
        if check(msgs):
            accepted += 1
        else:
            refused += 1
        # every message on its own as well
        for m in msgs[:2]:
            check([m])
    assert accepted > 50 and refused > 50


def test_differential_with_a_tight_price_bound():
    """Prices on both sides of a configured bound: both parsers draw the line at the same
    place (a batch with one price above it is refused, the per-message path dead-letters
    that trade)."""
    from transforms.bronze_rules import BronzeRules
    rules = BronzeRules({"futures/trades": 5000.0, "futures/mbp10": 5000.0,
                         "options/trades": 5000.0})
    rng = random.Random(11)
    accepted = refused = 0
    for _ in range(400):
        msgs = [msg(orjson.dumps(trade(rng, price=rng.choice(
            [4999.75, 5000.0, 5000.25, 5000.0000001, round(rng.uniform(1, 5200), 2)]))), i)
                for i in range(rng.choice([1, 2, 5]))]
        if check(msgs, rules):
            accepted += 1
        else:
            refused += 1
            assert expected(msgs, rules) is None or parse_trade_batch(msgs, rules) is None
    assert accepted > 50 and refused > 50


def test_strict_payloads_agree_one_by_one():
    """Each strict-payload case alone and beside a valid trade: the per-message parser
    dead-letters it with its reason, the columnar parser refuses the batch."""
    base = orjson.dumps(trade())
    for bad, reason in [
            (base[:-1] + b',"x":1,"x":2}', "duplicate key 'x'"),
            (base[:-1] + b',"\\"size":1,"\\"size":2}', 'duplicate key \'"size\''),
            (base.replace(b'"seq":42', b'"seq":9223372036854775808'), "beyond 64 bits"),
            (base.replace(b"6050.25", b"1e30"), "'price'=1e+30 out of range")]:
        (key, (_, row)), = route_batch([msg(bad, 0)])
        assert key.startswith("_dead_letter") and reason in row[3], (reason, row[3])
        assert parse_trade_batch([msg(base, 0), msg(bad, 1)]) is None
        assert parse_trade_batch([msg(bad, 0)]) is None


def test_each_single_value_mutation_of_each_field():
    for field in FIELDS:
        for v in BAD_VALUES:
            for ascii_only in (True, False):
                check([msg(json.dumps(trade(**{field: v}), ensure_ascii=ascii_only).encode(), 0)])
        ev = trade()
        del ev[field]
        check([msg(orjson.dumps(ev), 0)])
    base = orjson.dumps(trade())
    for f in RAW:
        check([msg(f(base), 0), msg(base, 1)])
        check([msg(base, 0), msg(f(base), 1)])


def test_pyarrow_leniencies_are_refused():
    base = orjson.dumps(trade())
    ok = msg(base, 0)
    for bad in [base[:-1] + b',"x":NaN}', base[:-1] + b',"x":Infinity}',
                base.replace(b"6050.25", b"NaN"), base[:-1] + b',"x":"\xff"}',
                base[:-1] + b',"x":' + b"[" * 1100 + b"]" * 1100 + b"}",
                base + b" " + base, b"", base + b"\n" + base]:
        assert parse_trade_batch([ok, msg(bad, 1)]) is None
        # two values in one payload with an empty one next to it: row count still matches
    assert parse_trade_batch([msg(base + base, 0), msg(b"", 1)]) is None
    assert parse_trade_batch([msg(base + b"\n" + base, 0), msg(b" ", 1)]) is None


def test_route_batch_columnar_keeps_other_subjects_and_falls_back_whole():
    rng = random.Random(3)
    trades = [msg(orjson.dumps(trade(rng)), i) for i in range(MIN_COLUMNAR_TRADES)]
    other = ("market.futures.mbp10", b"{}", 999, TS, "tokx")
    out = route_batch_columnar(trades + [other])
    pieces = [e for e in out if isinstance(e, ColumnarShardPiece)]
    pairs = [e for e in out if not isinstance(e, ColumnarShardPiece)]
    assert pairs == route_batch([other])
    assert got(pieces) == expected(trades)
    bad = trades + [msg(b"{", len(trades))]
    assert route_batch_columnar(bad) == route_batch(bad)
    few = trades[:MIN_COLUMNAR_TRADES - 1] + [other]
    assert route_batch_columnar(few) == route_batch(few)


# --------------------------------------------------------------------------- cut and write

def _pieces(n, start, rng):
    msgs = [msg(orjson.dumps(trade(rng, symbol="ESZ4", ts_event_ns=TS + i)), start + i)
            for i in range(n)]
    pieces = parse_trade_batch(msgs)
    assert len(pieces) == 1
    return pieces[0], route_batch(msgs)


def _bundle(dofn, batches):
    from apache_beam.utils.timestamp import Timestamp
    dofn.start_bundle()
    full = []
    for i, batch in enumerate(batches):
        full.extend(dofn.process(batch, ts=Timestamp(100 + i)))
    return full, [r.value for r in dofn.finish_bundle()]


def _flat(full):
    from transforms.columnar_trades import ColumnarShard
    out = []
    for key, value in full:
        if isinstance(value, ColumnarShard):
            assert value.table.num_rows == len(value.tokens)
            out.append((key, list(zip(value.tokens, table_rows(value.table)))))
        else:
            out.append((key, value))
    return out


@pytest.mark.parametrize("sizes", [[3, 4, 5], [10], [1, 1, 1, 1, 1, 1, 1], [2, 9, 3, 7]])
def test_cut_full_shards_mixed_columnar_and_tuple_values_match_the_tuple_path(sizes):
    from transforms.columnar_trades import ColumnarShard
    from transforms.flush_policy import _CutFullShards
    rng = random.Random(sum(sizes))
    col_batches, tuple_batches, start = [], [], 0
    for j, n in enumerate(sizes):
        piece, pairs = _pieces(n, start, rng)
        start += n
        # alternate: columnar piece, plain pairs, piece + pairs in one list
        col_batches.append([piece] if j % 3 == 0 else pairs if j % 3 == 1
                           else [piece._replace(tokens=piece.tokens[:1], table=piece.table.slice(0, 1))]
                           + pairs[1:])
        tuple_batches.append(pairs)
    full_c, rest_c = _bundle(_CutFullShards(4), col_batches)
    full_t, rest_t = _bundle(_CutFullShards(4), tuple_batches)
    assert _flat(full_c) == full_t
    assert [(r.value, r.timestamp) for r in rest_c] == [(r.value, r.timestamp) for r in rest_t]
    assert all(len(v.tokens if isinstance(v, ColumnarShard) else v) == 4 for _, v in full_c)
    if sizes == [10]:
        assert all(isinstance(v, ColumnarShard) for _, v in full_c) and len(full_c) == 2


def test_writer_columnar_shard_same_file_content_and_acks(tmp_path, prism_options):
    import apache_beam as beam
    import pyarrow.parquet as pq
    from apache_beam.testing.test_pipeline import TestPipeline
    from io_connectors.lake.storage import LakeStorage
    from io_connectors.lake.parquet_shards import WriteParquetShards
    from transforms.columnar_trades import ColumnarShard
    from transforms.partitioning import shard_layout
    rng = random.Random(5)
    msgs = [msg(orjson.dumps(trade(rng, symbol="ESZ4", ts_event_ns=TS + rng.randrange(50))), i)
            for i in range(60)]
    (piece,) = parse_trade_batch(msgs)
    pairs = route_batch(msgs)
    out = {}
    for name, shard in (("col", (piece.key, ColumnarShard(piece.tokens, piece.table))),
                        ("tup", (piece.key, [v for _, v in pairs]))):
        storage = LakeStorage(str(tmp_path / name))
        with TestPipeline(options=prism_options(streaming=False)) as p:
            _ = p | beam.Create([shard]) | WriteParquetShards(storage, shard_layout, None)
        (f,) = storage.list_files("bronze")
        out[name] = pq.read_table(f)
    assert out["col"].schema == FUTURES_TRADES
    assert out["col"].equals(out["tup"])
