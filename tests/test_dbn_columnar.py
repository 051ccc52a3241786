"""The columnar DBN decoder against the per-message path, on seeded mutations.

For each seed, DBN files full of edge cases (tests/dbn_mutations.py) are decoded twice:
record by record (``decode.iter_events`` -> bus JSON -> ``route_message``, the reference)
and block by block (``blocks.share_blocks`` with a random block size and number of shares
-> ``columnar.decode_block``).
Both must give the same Bronze rows per shard key, the same dead letters with the same
reasons and payloads, and the same decoder counts (skips by reason, events, empty sides).
"""
from __future__ import annotations

import collections
import random

import orjson
import pyarrow as pa
import pytest

from io_connectors.dbn import decode as D
from io_connectors.dbn.blocks import NotColumnar, plan_files, plan_shares, share_blocks
from io_connectors.dbn.columnar import decode_block
from tests.dbn_mutations import write_mutated_session
from transforms.arrow_rows import rows_to_table
from transforms.bronze_route import route_message
from transforms.bronze_rules import DEFAULT_RULES, BronzeRules
from transforms.partitioning import shard_layout
from transforms.shard_cut import canonical_order

TIGHT = BronzeRules({"futures/trades": 6050.0, "futures/mbp10": 6060.0,
                     "options/trades": 5.0})


def _canonical(rows_or_tables: dict) -> dict:
    out = {}
    for key, parts in rows_or_tables.items():
        _, schema, sort_col = shard_layout(key)
        tables = [p if isinstance(p, pa.Table) else rows_to_table(p, schema) for p in parts]
        t = pa.concat_tables(tables)
        out[key] = t.take(canonical_order(t, sort_col))
    return out


def _merged(stats_list) -> dict:
    total = collections.Counter()
    skipped = collections.Counter()
    events = collections.Counter()
    unknown = set()
    for st in stats_list:
        d = st.as_dict()
        for name in ("undefined_prices", "empty_book_sides", "spreads_filtered",
                     "unknown_records", "records"):
            total[name] += d[name]
        skipped.update(d["skipped"])
        events.update(d["events"])
        unknown.update(d["unknown_instruments"])
    return {**total, "skipped": dict(skipped), "events": dict(events),
            "unknown_instruments": sorted(unknown)}


def per_message(paths, rules, include_spreads):
    instruments = D.load_instruments(paths)
    stats = D.DecodeStats()
    rows = collections.defaultdict(list)
    for path in paths:
        for subject, event in D.iter_events([path], instruments, include_spreads, "replay",
                                            stats):
            msg = (subject, orjson.dumps(event), 0, event["ts_event_ns"], None)
            key, (_, row) = route_message(msg, rules)
            rows[key].append(row)
    return {k: [v] for k, v in rows.items()}, _merged([stats])


def columnar(paths, rules, include_spreads, block_bytes, shares):
    instruments = D.load_instruments(paths)
    parts = collections.defaultdict(list)
    stats, blocks = [], []
    for share in plan_shares(plan_files(paths), shares):
        f = share.file
        if share.per_message:            # the definitions file: no market events
            st = D.DecodeStats()
            assert list(D.iter_events([f.path], instruments, include_spreads,
                                      "replay", st)) == []
            stats.append(st)
            continue
        for b, records in share_blocks(share, block_bytes):
            blocks.append((f.index, b))
            lookup = D.FileInstruments(instruments, D.read_metadata(f.path))
            out = decode_block(records, f.schema, lookup, f.version,
                               include_spreads, "replay", rules)
            for key, table in out.tables:
                parts[key].append(table)
            for key, (_, row) in out.routed:
                parts[key].append(rows_to_table([row], shard_layout(key)[1]))
            stats.append(out.stats)
    assert len(blocks) == len(set(blocks))           # no block in two shares
    return dict(parts), _merged(stats), len(blocks)


@pytest.mark.parametrize("seed", range(6))
def test_columnar_decoder_equals_the_per_message_path(seed, tmp_path):
    rng = random.Random(seed)
    paths = write_mutated_session(str(tmp_path / "dbn"), seed)
    rules = TIGHT if seed % 3 == 2 else DEFAULT_RULES
    include_spreads = seed % 2 == 1
    block_bytes = rng.choice([3_000, 20_000, 100_000, 10**8])
    shares = rng.choice([1, 2, 3, 7])
    want_rows, want_stats = per_message(paths, rules, include_spreads)
    got_parts, got_stats, blocks = columnar(paths, rules, include_spreads, block_bytes, shares)
    want, got = _canonical(want_rows), _canonical(got_parts)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].equals(want[key]), key
    assert got_stats == want_stats
    assert blocks >= 2 and (block_bytes > 10**6 or blocks > 2)
    dead = [k for k in want if k.startswith("_dead_letter")]
    assert dead, "the mutations must produce dead letters"


def test_the_mutations_reach_every_rule(tmp_path):
    """Guards the generator: every skip reason and dead-letter reason occurs."""
    paths = write_mutated_session(str(tmp_path / "dbn"), 7, n_trades=6000, n_books=3000)
    rows, stats = per_message(paths, DEFAULT_RULES, include_spreads=False)
    assert set(stats["skipped"]) >= {
        "timestamp_out_of_range", "bad_size", "nonpositive_price", "symbol_not_identifier",
        "incomplete_option", "underlying_not_identifier", "negative_price",
        "option_symbol_length", "trade_of_other", "book_of_option", "book_of_other",
        "negative_book_price", "definition_record"}
    assert stats["undefined_prices"] and stats["spreads_filtered"] and stats["unknown_records"]
    assert stats["empty_book_sides"]
    reasons = [row[3] for k, (v,) in rows.items() if k.startswith("_dead") for row in v]
    assert any(r.startswith("field 'price'=") and "<= 1000000.0" in r for r in reasons)
    assert any(r.startswith("levels[") and "ask_px" in r for r in reasons)
    assert {"ESM5", "NQZ4", "NQM5"} <= {r[3] for k, (v,) in rows.items()
                                        if k.startswith("futures/trades") for r in v}


def test_a_file_holding_other_records_goes_message_by_message(tmp_path):
    """A trades file with a definition record in it is refused by the columnar decoder as
    a whole: every share of it meets the record (NotColumnar), whichever blocks it owns."""
    import zstandard
    from tests.dbn_mutations import definitions, trades_records, T0
    rng = random.Random(1)
    recs = trades_records(rng, 500)
    meta = D.make_metadata("GLBX.MDP3", "trades", T0)
    path = str(tmp_path / "mixed.trades.dbn.zst")
    body = recs[:300].tobytes() + bytes(definitions()[0]) + recs[300:].tobytes()
    with open(path, "wb") as fh:
        fh.write(zstandard.ZstdCompressor().compress(bytes(meta.encode()) + body))
    (f,) = plan_files([path])
    assert f.columnar
    shares = plan_shares([f], 3)
    assert [s.per_message for s in shares] == [False] * 3
    for share in shares:
        owned = []
        with pytest.raises(NotColumnar):
            for b, _ in share_blocks(share, 48 * 100):     # blocks of 100 records
                owned.append(b)
        assert all(b % 3 == share.share and b < 3 for b in owned)   # the record: block 3


def test_truncated_file_is_a_clear_error(tmp_path):
    from tests.dbn_mutations import trades_records, T0
    recs = trades_records(random.Random(2), 50)
    meta = D.make_metadata("GLBX.MDP3", "trades", T0)
    path = str(tmp_path / "cut.trades.dbn")
    with open(path, "wb") as fh:
        fh.write(bytes(meta.encode()) + recs.tobytes()[:-7])
    (f,) = plan_files([path])
    with pytest.raises(ValueError, match="truncated DBN file"):
        list(share_blocks(plan_shares([f], 1)[0], 10**6))


def test_shares_give_every_worker_a_unit_and_no_more():
    from io_connectors.dbn.blocks import DbnFile, shares_for

    def files(n_columnar, n_other=1):
        return ([DbnFile(i, f"{i}.dbn", "trades", 3, True, True, 10) for i in range(n_columnar)]
                + [DbnFile(99, "defs.dbn", "definition", 3, False, False, 1)] * n_other)
    assert shares_for(files(1), 2) == 2 and shares_for(files(1), 4) == 4
    assert shares_for(files(3), 4) == 2 and shares_for(files(3), 2) == 1
    assert shares_for(files(0), 4) == 1 and shares_for(files(5), 1) == 1
    units = plan_shares(files(1), 3)
    assert [u.unit for u in units] == ["00000-s0", "00000-s1", "00000-s2", "00099-m"]
