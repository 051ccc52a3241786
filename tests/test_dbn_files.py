"""DBN files -> bus events (io_connectors.dbn.decode): real Databento samples and generated files.

Generated files are written with the databento-dbn encoder: ``bytes(Metadata.encode())``
followed by ``bytes(record)`` for each record (``dbn_files.write_dbn`` does exactly that and
zstd-compresses when the name ends in ``.zst``).
"""
from __future__ import annotations

import datetime as dt
import os
import random

import databento_dbn as dbn
import orjson
import pytest

from io_connectors.dbn import decode as D
from transforms.market_parse import parse_market_event

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "databento")
GLBX = os.path.join(DATA, "GLBX.MDP3")
OPRA = os.path.join(DATA, "OPRA.PILLAR")

UNDEF = dbn.UNDEF_PRICE
NS = 10**9


def sample(dataset_dir: str, schema: str) -> str:
    path = os.path.join(dataset_dir, f"test_data.{schema}.dbn.zst")
    if not os.path.isfile(path):
        pytest.skip(f"real DBN sample missing: {path}")
    return path


def raw_records(path: str) -> list:
    return [r for r in D.iter_records(path) if not isinstance(r, dbn.Metadata)]


def validated(events):
    """Every event must pass the bus validator; returns the list and the parsed rows."""
    events = list(events)
    parsed = [parse_market_event(s, orjson.dumps(e)) for s, e in events]
    return events, parsed


# --------------------------------------------------------------------------- real samples

def test_real_es_trades_decode_with_real_symbol_prices_sides_and_timestamps():
    path = sample(GLBX, "trades")
    raws = raw_records(path)
    assert len(raws) == 4 and all(isinstance(r, dbn.TradeMsg) for r in raws)
    inst = D.load_instruments([sample(GLBX, "definition")])
    stats = D.DecodeStats()
    events, parsed = validated(D.iter_events([path], instruments=inst, stats=stats))
    assert [s for s, _ in events] == ["market.futures.trades"] * 4
    assert stats.events == {"market.futures.trades": 4}
    side_map = {"B": 1, "A": -1, "N": 0}
    for (subject, ev), raw, p in zip(events, raws, parsed):
        assert ev["symbol"] == "ESH1"
        assert ev["price"] == raw.price / 1e9
        assert 3700.0 <= ev["price"] <= 3705.0          # ES on 2020-12-28 00:00 UTC
        assert ev["price"] * 4 == int(ev["price"] * 4)  # 0.25 tick
        assert type(ev["size"]) is int and ev["size"] == raw.size >= 1
        assert ev["aggressor"] == side_map[str(raw.side.value)]
        assert ev["ts_event_ns"] == raw.ts_event and ev["ts_recv_ns"] == raw.ts_recv
        assert ev["ts_recv_ns"] > ev["ts_event_ns"]
        assert ev["seq"] == raw.sequence
        assert ev["exchange"] == "XCME" and ev["source"] == "replay"
        assert p.partition == "ES" and p.date == "2020-12-28" and p.hour == 0
    assert [e["price"] for _, e in events] == [3702.75, 3702.75, 3702.5, 3702.75]
    assert [e["aggressor"] for _, e in events] == [1, 1, -1, 1]
    assert events[0][1]["ts_event_ns"] == 1609113600246507011
    assert events[0][1]["seq"] == 145885


def test_real_es_trades_need_no_definition_file_header_mapping_suffices():
    stats = D.DecodeStats()
    events, _ = validated(D.iter_events([sample(GLBX, "trades")], stats=stats))
    assert len(events) == 4 and {e["symbol"] for _, e in events} == {"ESH1"}
    assert "exchange" not in events[0][1]        # not stated without a definition
    assert not stats.unknown_instruments


def test_real_es_definition_loads_instrument():
    inst = D.load_instruments([sample(GLBX, "definition")])
    assert set(inst) == {5482}
    es = inst[5482]
    assert (es.raw_symbol, es.kind, es.underlying, es.exchange) == ("ESH1", "future", "ES", "XCME")
    assert es.expiry == dt.date(2021, 3, 19) and es.strike is None and es.right is None
    assert es.source == "definition"


def test_real_mbp10_levels_best_first():
    path = sample(GLBX, "mbp-10")
    raws = raw_records(path)
    events, parsed = validated(D.iter_events([path]))
    assert len(events) == len(raws) == 4
    for (subject, ev), raw, p in zip(events, raws, parsed):
        assert subject == "market.futures.mbp10" and ev["symbol"] == "ESH1"
        assert ev["is_snapshot"] is False and ev["seq"] == raw.sequence
        assert ev["ts_event_ns"] == raw.ts_event and ev["ts_recv_ns"] == raw.ts_recv
        lv = ev["levels"]
        assert len(lv) == 10
        for got, want in zip(lv, raw.levels):
            assert got == {"bid_px": want.bid_px / 1e9, "bid_sz": want.bid_sz,
                           "ask_px": want.ask_px / 1e9, "ask_sz": want.ask_sz}
        bids = [l["bid_px"] for l in lv]
        asks = [l["ask_px"] for l in lv]
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
        assert bids[0] < asks[0] and 3690 < bids[-1] and asks[-1] < 3715
        # Bronze row: bid_px_1 right after the 4 leading columns
        assert p.row[4] == bids[0] and p.row[24] == asks[0] and p.partition == "ES"
    assert events[0][1]["levels"][0] == {"bid_px": 3702.25, "bid_sz": 19,
                                         "ask_px": 3702.75, "ask_sz": 13}


def test_real_opra_option_trades_take_strike_right_expiry_from_definition():
    inst = D.load_instruments([sample(OPRA, "definition")])
    (iid, opt), = inst.items()
    assert iid == 16783963
    assert (opt.kind, opt.underlying, opt.strike, opt.right, opt.expiry, opt.exchange) == (
        "option", "AAPL", 250.0, "C", dt.date(2025, 2, 21), "OPRA")
    path = sample(OPRA, "trades")
    raws = raw_records(path)
    events, parsed = validated(D.iter_events([path], instruments=inst))
    assert [s for s, _ in events] == ["market.options.trades"] * 4
    for (_, ev), raw, p in zip(events, raws, parsed):
        assert ev["underlying"] == "AAPL" and ev["option_symbol"] == "AAPL  250221C00250000"
        assert ev["exp_date"] == "2025-02-21" and ev["strike"] == 250.0 and ev["right"] == "C"
        assert ev["price"] == raw.price / 1e9 and ev["size"] == raw.size
        assert ev["aggressor"] == 0                      # OPRA side N
        assert ev["seq"] == raw.sequence and ev["ts_event_ns"] == raw.ts_event
        assert p.partition == "AAPL" and p.date == "2025-02-20"
    assert [e["price"] for _, e in events] == [0.24, 0.2, 0.19, 0.19]
    assert [e["size"] for _, e in events] == [1, 2, 1, 4]


def test_real_opra_without_definition_parses_osi_symbol_identically():
    from_def = list(D.iter_events([sample(OPRA, "trades"), sample(OPRA, "definition")]))
    from_map = list(D.iter_events([sample(OPRA, "trades")]))
    assert len(from_map) == 4 and from_map == from_def
    assert D.load_instruments([sample(OPRA, "trades")])[16783963].source == "mapping"


def test_real_tbbo_is_opt_in_and_then_equals_trades():
    inst = D.load_instruments([sample(GLBX, "definition")])
    stats = D.DecodeStats()
    assert list(D.iter_events([sample(GLBX, "tbbo")], instruments=inst, stats=stats)) == []
    assert stats.skipped["unsupported:tbbo:MBP1Msg"] == 4
    tbbo = list(D.iter_events([sample(GLBX, "tbbo")], instruments=inst, tbbo_trades=True))
    trades = list(D.iter_events([sample(GLBX, "trades")], instruments=inst))
    assert tbbo == trades and len(trades) == 4


def test_real_samples_merged_in_event_time_order():
    files = [sample(GLBX, "mbp-10"), sample(OPRA, "trades"), sample(GLBX, "trades"),
             sample(OPRA, "definition"), sample(GLBX, "definition"), sample(GLBX, "mbp-1")]
    inst = D.load_instruments(files)
    stats = D.DecodeStats()
    merged, _ = validated(D.merge_events(
        [D.iter_events([f], instruments=inst, stats=stats) for f in files]))
    keys = [(e["ts_event_ns"], D.SUBJECT_RANK[s]) for s, e in merged]
    assert keys == sorted(keys) and len(merged) == 12
    assert [s for s, _ in merged] == (["market.futures.mbp10"] * 4 + ["market.futures.trades"] * 4
                                      + ["market.options.trades"] * 4)
    assert stats.skipped["unsupported:mbp-1:MBP1Msg"] == 4


# --------------------------------------------------------------------------- generated DBN

T0 = 1_733_149_800 * NS            # 2024-12-02 14:30:00 UTC
ESZ4, ESH5, OPT, SPREAD, UNKNOWN = 101, 102, 201, 301, 999


def utc_ns(*args) -> int:
    return int(dt.datetime(*args, tzinfo=dt.timezone.utc).timestamp()) * NS


def definitions() -> list:
    common = dict(publisher_id=1, ts_event=T0 - 3600 * NS, ts_recv=T0 - 3600 * NS,
                  min_price_increment=250_000_000, display_factor=10_000_000,
                  security_update_action=dbn.SecurityUpdateAction.ADD, exchange="XCME")
    return [
        dbn.InstrumentDefMsg(instrument_id=ESZ4, raw_symbol="ESZ4", asset="ES",
                             security_type="FUT", instrument_class=dbn.InstrumentClass.FUTURE,
                             expiration=utc_ns(2024, 12, 20, 13, 30), **common),
        dbn.InstrumentDefMsg(instrument_id=ESH5, raw_symbol="ESH5", asset="ES",
                             security_type="FUT", instrument_class=dbn.InstrumentClass.FUTURE,
                             expiration=utc_ns(2025, 3, 21, 13, 30), **common),
        dbn.InstrumentDefMsg(instrument_id=OPT, raw_symbol="ESZ4 C6050", asset="ES",
                             security_type="OOF", instrument_class=dbn.InstrumentClass.CALL,
                             underlying="ESZ4", strike_price=6050 * NS,
                             expiration=utc_ns(2024, 12, 20, 20, 30), **common),
        dbn.InstrumentDefMsg(instrument_id=SPREAD, raw_symbol="ESZ4-ESH5", asset="ES",
                             security_type="FUT",
                             instrument_class=dbn.InstrumentClass.FUTURE_SPREAD, **common),
    ]


def gen_trades(rng: random.Random, n: int):
    """Records plus the events they must become (None = must be skipped, with reason)."""
    recs, expected = [], []
    ts = T0
    sides = [(dbn.Side.BID, 1), (dbn.Side.ASK, -1), (dbn.Side.NONE, 0)]
    for i in range(n):
        ts += rng.randint(0, 5_000_000)
        iid = rng.choices([ESZ4, ESH5, OPT, SPREAD, UNKNOWN], [50, 20, 15, 8, 3])[0]
        side, aggr = rng.choice(sides)
        size = rng.randint(1, 60)
        if iid == OPT:
            price = rng.randint(1, 400) * 250_000_000 // 10      # 0.025 ticks, fine
        else:
            price = rng.randint(24_000, 24_400) * 250_000_000    # 6000.00 .. 6100.00
        undefined = iid in (ESZ4, OPT) and rng.random() < 0.04
        if undefined:
            price = UNDEF
        recv = ts + rng.randint(1_000, 900_000)
        seq = 10_000 + i // 2                                     # pairs share a packet seq
        recs.append(dbn.TradeMsg(1, iid, ts, price, size, dbn.Action.TRADE, side, 0, recv,
                                 flags=0, sequence=seq))
        if undefined:
            expected.append("undef")
        elif iid == SPREAD:
            expected.append("spread")
        elif iid == UNKNOWN:
            expected.append("unknown")
        elif iid == OPT:
            expected.append(("market.options.trades", {
                "ts_event_ns": ts, "ts_recv_ns": recv, "source": "replay", "underlying": "ES",
                "option_symbol": "ESZ4 C6050", "exp_date": "2024-12-20", "strike": 6050.0,
                "right": "C", "price": price / 1e9, "size": size, "aggressor": aggr,
                "seq": seq}))
        else:
            expected.append(("market.futures.trades", {
                "ts_event_ns": ts, "ts_recv_ns": recv, "source": "replay",
                "symbol": "ESZ4" if iid == ESZ4 else "ESH5", "price": price / 1e9,
                "size": size, "aggressor": aggr, "exchange": "XCME", "seq": seq}))
    return recs, expected


def gen_books(rng: random.Random, n: int):
    recs, expected = [], []
    ts = T0 + 1_000
    for i in range(n):
        ts += rng.randint(1, 4_000_000)
        iid = rng.choice([ESZ4, ESZ4, ESH5, SPREAD])
        mid = rng.randint(24_000, 24_400)
        bid_depth, ask_depth = rng.randint(0, 10), rng.randint(0, 10)
        pairs, want = [], []
        empty = 0
        for k in range(10):
            bp = (mid - k) * 250_000_000 if k < bid_depth else UNDEF
            ap = (mid + 1 + k) * 250_000_000 if k < ask_depth else UNDEF
            bs = rng.randint(1, 500) if k < bid_depth else 0
            asz = rng.randint(1, 500) if k < ask_depth else 0
            pairs.append(dbn.BidAskPair(bid_px=bp, ask_px=ap, bid_sz=bs, ask_sz=asz,
                                        bid_ct=1, ask_ct=1))
            if k < max(bid_depth, ask_depth):
                want.append({"bid_px": bp / 1e9 if bp != UNDEF else 0.0, "bid_sz": bs,
                             "ask_px": ap / 1e9 if ap != UNDEF else 0.0, "ask_sz": asz})
                empty += (bp == UNDEF) + (ap == UNDEF)
        snap = i < 3
        flags = dbn.F_LAST | (dbn.F_SNAPSHOT if snap else 0)
        recv = ts + 500
        recs.append(dbn.MBP10Msg(1, iid, ts, (mid) * 250_000_000, 1, dbn.Action.ADD,
                                 dbn.Side.BID, 0, recv, flags=flags, sequence=50_000 + i,
                                 levels=pairs))
        if iid == SPREAD:
            expected.append("spread")
        else:
            expected.append((("market.futures.mbp10", {
                "ts_event_ns": ts, "ts_recv_ns": recv, "source": "replay",
                "symbol": "ESZ4" if iid == ESZ4 else "ESH5", "levels": want,
                "is_snapshot": snap, "seq": 50_000 + i}), empty))
    return recs, expected


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    d = tmp_path_factory.mktemp("dbn")
    rng = random.Random(20241202)
    trades, want_trades = gen_trades(rng, 400)
    books, want_books = gen_books(rng, 250)
    defs_path = str(d / "defs.definition.dbn")
    trades_path = str(d / "es.trades.dbn.zst")
    books_path = str(d / "es.mbp-10.dbn.zst")
    # Definitions: uncompressed; data: zstd, headers carry no mappings (definitions decide).
    assert D.write_dbn(defs_path, D.make_metadata("GLBX.MDP3", "definition", T0 - 3600 * NS),
                       definitions()) == 4
    D.write_dbn(trades_path, D.make_metadata("GLBX.MDP3", "trades", T0), trades)
    D.write_dbn(books_path, D.make_metadata("GLBX.MDP3", "mbp-10", T0), books)
    return {"defs": defs_path, "trades": trades_path, "books": books_path,
            "want_trades": want_trades, "want_books": want_books, "n_trades": len(trades)}


def test_generated_files_are_plain_dbn(generated):
    # write_dbn output decodes with databento-dbn's own decoder, without this module.
    dec = dbn.DBNDecoder(compression=dbn.Compression.ZSTD)
    dec.write(open(generated["trades"], "rb").read())
    out = dec.decode()
    assert out[0].dataset == "GLBX.MDP3" and out[0].schema == "trades"
    assert len(out) == 1 + generated["n_trades"] and isinstance(out[1], dbn.TradeMsg)
    dec = dbn.DBNDecoder()
    dec.write(open(generated["defs"], "rb").read())
    assert [r.raw_symbol for r in dec.decode()[1:]] == ["ESZ4", "ESH5", "ESZ4 C6050",
                                                        "ESZ4-ESH5"]


def test_generated_definitions_load(generated):
    inst = D.load_instruments([generated["defs"], generated["trades"], generated["books"]])
    assert set(inst) == {ESZ4, ESH5, OPT, SPREAD}
    assert inst[ESZ4].kind == inst[ESH5].kind == "future"
    assert inst[ESZ4].underlying == inst[ESH5].underlying == "ES"
    assert inst[ESH5].expiry == dt.date(2025, 3, 21)
    o = inst[OPT]
    assert (o.kind, o.underlying, o.strike, o.right, o.expiry) == (
        "option", "ES", 6050.0, "C", dt.date(2024, 12, 20))
    assert inst[SPREAD].kind == "spread"


def test_generated_trades_round_trip_every_field(generated):
    stats = D.DecodeStats()
    events, parsed = validated(D.iter_events([generated["defs"], generated["trades"]],
                                             stats=stats))
    want = generated["want_trades"]
    assert events == [w for w in want if isinstance(w, tuple)]
    assert stats.undefined_prices == want.count("undef") > 0
    assert stats.spreads_filtered == want.count("spread") > 0
    assert stats.unknown_instruments == {UNKNOWN}
    assert stats.unknown_records == want.count("unknown") > 0
    assert stats.events["market.options.trades"] > 20
    assert stats.events["market.futures.trades"] > 200
    assert stats.records == generated["n_trades"] + 4
    for (subject, ev), p in zip(events, parsed):
        assert p.partition == "ES"
        if subject == "market.futures.trades":
            assert p.row[3] in ("ESZ4", "ESH5")      # the contract, not the root
        else:
            assert p.row[5] == (dt.date(2024, 12, 20) - dt.date(1970, 1, 1)).days


def test_generated_books_round_trip_every_field(generated):
    stats = D.DecodeStats()
    inst = D.load_instruments([generated["defs"]])
    events, parsed = validated(D.iter_events([generated["books"]], instruments=inst,
                                             stats=stats))
    want = [w for w in generated["want_books"] if w != "spread"]
    assert events == [w for w, _ in want]
    assert stats.empty_book_sides == sum(n for _, n in want) > 0
    assert stats.spreads_filtered == generated["want_books"].count("spread") > 0
    snaps = [e["is_snapshot"] for _, e in events]
    assert 1 <= sum(snaps) <= 3 and not any(snaps[3:])   # F_SNAPSHOT set on records 0-2 only
    depths = {len(e["levels"]) for _, e in events}
    assert 0 in depths and 10 in depths and len(depths) > 5
    for (_, ev), p in zip(events, parsed):        # Bronze pads missing levels with 0 / 0
        n = len(ev["levels"])
        assert p.row[4 + 2 * n:24] == (0.0, 0) * (10 - n)


def test_include_spreads_still_refuses_symbols_the_bus_cannot_carry(generated):
    stats = D.DecodeStats()
    list(D.iter_events([generated["defs"], generated["trades"]], include_spreads=True,
                       stats=stats))
    assert stats.spreads_filtered == 0
    assert stats.skipped["symbol_not_identifier"] == generated["want_trades"].count("spread")


def test_unknown_instruments_reported_not_guessed(tmp_path):
    path = str(tmp_path / "x.trades.dbn")
    recs = [dbn.TradeMsg(1, iid, T0 + i, 6000 * NS, 1, dbn.Action.TRADE, dbn.Side.BID, 0,
                         T0 + i + 10, flags=0, sequence=i) for i, iid in enumerate([7, 8, 7])]
    D.write_dbn(path, D.make_metadata("GLBX.MDP3", "trades", T0), recs)
    stats = D.DecodeStats()
    assert list(D.iter_events([path], stats=stats)) == []
    assert stats.unknown_instruments == {7, 8} and stats.unknown_records == 3
    # a header mapping names id 7 only -> 7 decodes, 8 is still reported
    meta = D.make_metadata("GLBX.MDP3", "trades", T0,
                           mappings={"ESZ4": [(dt.date(2024, 12, 2), dt.date(2024, 12, 3), 7)]})
    D.write_dbn(path, meta, recs)
    stats = D.DecodeStats()
    events, _ = validated(D.iter_events([path], stats=stats))
    assert [e["symbol"] for _, e in events] == ["ESZ4", "ESZ4"]
    assert stats.unknown_instruments == {8}


def test_header_mappings_resolve_reused_ids_by_date(tmp_path):
    day1 = T0
    day2 = T0 + 86_400 * NS
    meta = D.make_metadata("GLBX.MDP3", "trades", day1, mappings={
        "ESZ4": [(dt.date(2024, 12, 2), dt.date(2024, 12, 3), 5)],
        "ESH5": [(dt.date(2024, 12, 3), dt.date(2024, 12, 4), 5)]})
    recs = [dbn.TradeMsg(1, 5, t, 6000 * NS, 2, dbn.Action.TRADE, dbn.Side.ASK, 0, t + 1,
                         flags=0, sequence=1) for t in (day1, day2)]
    path = str(tmp_path / "reuse.dbn")
    D.write_dbn(path, meta, recs)
    events, _ = validated(D.iter_events([path]))
    assert [e["symbol"] for _, e in events] == ["ESZ4", "ESH5"]


def test_merge_order_rank_and_stability():
    def ev(subject, ts, tag):
        key = "option_symbol" if subject == "market.options.trades" else "symbol"
        return subject, {"ts_event_ns": ts, key: tag}
    book = [ev("market.futures.mbp10", 10, "b1"), ev("market.futures.mbp10", 20, "b2")]
    opts = [ev("market.options.trades", 10, "o1"), ev("market.options.trades", 20, "o2")]
    trades_a = [ev("market.futures.trades", 10, "ta1"), ev("market.futures.trades", 20, "ta2")]
    trades_b = [ev("market.futures.trades", 10, "tb1"), ev("market.futures.trades", 15, "tb2")]
    out = [e.get("symbol") or e.get("option_symbol")
           for _, e in D.merge_events([book, opts, trades_a, trades_b])]
    assert out == ["ta1", "tb1", "o1", "b1", "tb2", "ta2", "o2", "b2"]


def test_merge_with_lag_reorders_slightly_late_events():
    subj = "market.futures.trades"
    a = [(subj, {"ts_event_ns": t, "symbol": f"a{t}"}) for t in (5, 3, 9, 8, 12)]
    b = [(subj, {"ts_event_ns": t, "symbol": f"b{t}"}) for t in (4, 10)]
    plain = [e["ts_event_ns"] for _, e in D.merge_events([a, b])]
    assert plain != sorted(plain)                      # heapq.merge trusts its inputs
    fixed = [e["ts_event_ns"] for _, e in D.merge_events([a, b], max_lag_ns=3)]
    assert fixed == [3, 4, 5, 8, 9, 10, 12]


def test_merge_of_generated_files_is_ordered(generated):
    inst = D.load_instruments([generated["defs"]])
    streams = [D.iter_events([p], instruments=inst) for p in (generated["books"],
                                                             generated["trades"])]
    merged = list(D.merge_events(streams))
    keys = [(e["ts_event_ns"], D.SUBJECT_RANK[s]) for s, e in merged]
    assert keys == sorted(keys)
    assert {s for s, _ in merged} == set(D.SUBJECT_RANK)


def test_event_id_is_deterministic_and_separates_records_of_one_packet(generated):
    events = list(D.iter_events([generated["defs"], generated["trades"]]))
    again = list(D.iter_events([generated["defs"], generated["trades"]]))
    ids = [D.event_id(s, e) for s, e in events]
    assert ids == [D.event_id(s, e) for s, e in again]
    assert len(set(ids)) == len(ids)
    s, e = events[0]
    assert ids[0].startswith(f"{s}:{e['symbol']}:{e['ts_event_ns']}:{e['seq']}:{e['ts_recv_ns']}:")
    sweep = dict(e, price=e["price"] + 0.25)      # same packet, next price level
    assert D.event_id(s, sweep) != ids[0]


def test_streaming_decode_matches_whole_file_and_truncation_is_an_error(generated, tmp_path):
    path = generated["books"]
    small = [bytes(r) for r in list(D.iter_records(path, chunk_size=333))[1:]]
    whole = [bytes(r) for r in list(D.iter_records(path))[1:]]
    assert small == whole and len(whole) == 250
    raw = str(tmp_path / "cut.dbn")
    D.write_dbn(raw, D.make_metadata("GLBX.MDP3", "trades", T0),
                [dbn.TradeMsg(1, 1, T0, NS, 1, dbn.Action.TRADE, dbn.Side.BID, 0, T0,
                              flags=0, sequence=1)] * 3)
    data = open(raw, "rb").read()
    open(raw, "wb").write(data[:-7])
    with pytest.raises(ValueError, match="truncated"):
        list(D.iter_records(raw))


def test_bad_source_rejected():
    with pytest.raises(ValueError, match="source"):
        next(D.iter_events([], source="live"))
