"""Canonical order, cuts and content digests of bounded shards."""
import random

import pyarrow as pa
import pytest

from transforms.arrow_rows import rows_to_table
from transforms.schemas import DEAD_LETTER, FUTURES_TRADES
from transforms.shard_cut import canonical_order, cut_bounds, shard_digests

TS = 1734359400_000000000


def rows(rng, n):
    return [(TS + rng.randrange(50), TS + rng.randrange(50), "replay",
             rng.choice(["ESZ4", "ESH5"]), rng.choice([6050.25, 6050.5, -0.0, 0.0]),
             rng.randrange(1, 4), rng.choice([-1, 0, 1]), rng.choice([None, "XCME", ""]),
             rng.choice([None, [], [1, -2]]), rng.choice([None, 1, 2]))
            for _ in range(n)]


def canonical(table):
    return table.take(canonical_order(table, "ts_event_ns"))


def test_order_and_digests_depend_on_the_rows_only():
    rng = random.Random(3)
    base = rows(rng, 2500)
    t1 = canonical(rows_to_table(base, FUTURES_TRADES))
    shuffled = base[:]
    rng.shuffle(shuffled)
    # another arrival order, in several chunks, some sliced out of bigger tables
    parts = [rows_to_table(shuffled[i:i + 700], FUTURES_TRADES) for i in range(0, 2500, 700)]
    padded = pa.concat_tables([parts[0], parts[0]]).slice(0, parts[0].num_rows)
    t2 = canonical(pa.concat_tables([padded] + parts[1:]))
    assert t1.equals(t2)
    b = cut_bounds(t1.num_rows, 1000)
    assert b == [(0, 1000), (1000, 1000), (2000, 500)]
    d1 = shard_digests(t1, b)
    assert d1 == shard_digests(t2.combine_chunks(), b) == shard_digests(t2, b)
    assert len(set(d1)) == 3 and all(len(d) == 16 for d in d1)
    # the digest of a shard is that of the shard alone
    assert shard_digests(t1.slice(1000, 1000), [(0, 1000)]) == [d1[1]]


@pytest.mark.parametrize("column,value", [
    ("price", 6050.75), ("price", -0.0), ("exchange", None), ("exchange", "XCM"),
    ("conditions", [1]), ("conditions", None), ("seq", None), ("symbol", "ESZ4x"),
])
def test_any_changed_value_changes_the_digest(column, value):
    rng = random.Random(5)
    base = rows(rng, 20)
    t = canonical(rows_to_table(base, FUTURES_TRADES))
    rec = t.to_pylist()
    i = next(j for j, r in enumerate(rec) if repr(r[column]) != repr(value))
    rec[i][column] = value
    changed = pa.Table.from_pylist(rec, schema=FUTURES_TRADES)
    assert shard_digests(changed, [(0, 20)]) != shard_digests(t, [(0, 20)])


def test_binary_payloads_and_string_boundaries():
    a = rows_to_table([(1, "s", 0, "r", b"ab"), (2, "s", 0, "r", b"c")], DEAD_LETTER)
    b = rows_to_table([(1, "s", 0, "r", b"a"), (2, "s", 0, "r", b"bc")], DEAD_LETTER)
    assert shard_digests(a, [(0, 2)]) != shard_digests(b, [(0, 2)])


def test_rows_that_differ_only_in_a_list_column_have_one_order():
    a = (TS, TS, "replay", "ESZ4", 1.0, 1, 0, None, [2], 1)
    b = (TS, TS, "replay", "ESZ4", 1.0, 1, 0, None, [1, 5], 1)
    c = (TS, TS, "replay", "ESZ4", 1.0, 1, 0, None, None, 1)
    orders = {tuple(map(repr, canonical(rows_to_table(list(p), FUTURES_TRADES))["conditions"]
                        .to_pylist())) for p in ([a, b, c], [c, b, a], [b, a, c])}
    assert len(orders) == 1
