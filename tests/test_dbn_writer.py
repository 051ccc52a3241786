"""Bus events -> DBN files (io_connectors.dbn.writer), checked by decoding them back with
io_connectors.dbn.decode: exact round trip except the documented LOSSY_FIELDS."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import databento_dbn as dbn
import orjson
import pytest

from io_connectors.dbn import decode as D
from io_connectors.dbn import writer as W
from transforms.market_parse import parse_market_event
from transforms.synthetic_session import synthetic_session

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATE = "2024-12-16"
NS = 10**9
T0 = 1_734_359_400 * NS                      # 2024-12-16 14:30 UTC


def market_only(events):
    return [(s, e) for s, e in events if s.startswith("market.")]


def without_lossy(events, keep_source=True):
    """The input as the decoder can give it back: LOSSY_FIELDS removed (``source`` kept
    when the decoder is told the original source)."""
    out = []
    for s, e in events:
        drop = set(W.LOSSY_FIELDS[s]) - ({"source"} if keep_source else set())
        out.append((s, {k: v for k, v in e.items() if k not in drop}))
    return out


def decode(paths, source="sim", stats=None):
    inst = D.load_instruments(paths)
    return list(D.merge_events([D.iter_events([p], inst, source=source, stats=stats)
                                for p in paths]))


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    d = tmp_path_factory.mktemp("dbn_out")
    events = list(synthetic_session(DATE, scale=0.01, seed=3, signals=False))
    result = W.write_session_dbn(iter(events), str(d))
    return {"dir": str(d), "events": events, "result": result}


# --------------------------------------------------------------------------- synthetic round trip

def test_writes_three_zstd_files_with_counts(session):
    r, events = session["result"], session["events"]
    names = [W.TRADES_FILE, W.MBP10_FILE, W.DEFINITION_FILE]
    assert r.paths == [os.path.join(session["dir"], n) for n in names]
    n_fut = sum(s == "market.futures.trades" for s, _ in events)
    n_opt = sum(s == "market.options.trades" for s, _ in events)
    n_book = sum(s == "market.futures.mbp10" for s, _ in events)
    assert n_fut > 3000 and n_opt > 0 and n_book > 1000
    n_contracts = len({e["symbol"] for s, e in events if "symbol" in e}
                      | {e["option_symbol"] for s, e in events if "option_symbol" in e})
    assert r.counts == {W.TRADES_FILE: n_fut + n_opt, W.MBP10_FILE: n_book,
                        W.DEFINITION_FILE: n_contracts}
    assert dict(r.events) == {"market.futures.trades": n_fut, "market.options.trades": n_opt,
                              "market.futures.mbp10": n_book}
    assert not r.skipped and not r.ignored
    assert dict(r.lossy) == {"opt_bid": n_opt, "opt_ask": n_opt}
    for path, name, schema in zip(r.paths, names, ("trades", "mbp-10", "definition")):
        assert open(path, "rb").read(4) == b"\x28\xb5\x2f\xfd"          # zstd
        assert r.bytes[name] == os.path.getsize(path) > 0
        meta = D.read_metadata(path)
        assert meta.dataset == "GLBX.MDP3" and str(meta.schema.value) == schema
    assert not [f for f in os.listdir(session["dir"]) if f.endswith(".tmp")]


def test_round_trip_is_exact_except_documented_fields(session):
    paths, events = session["result"].paths, session["events"]
    stats = D.DecodeStats()
    got = decode(paths, source="sim", stats=stats)
    want = without_lossy(market_only(events))
    assert len(got) == len(want)
    for (gs, ge), (ws, we) in zip(got, want):            # field by field, same order
        assert gs == ws
        assert ge == we
        assert list(ge) == list(we)                      # even the key order
    assert stats.total_events == len(want)
    assert stats.empty_book_sides == 0 and not stats.unknown_instruments
    assert dict(stats.skipped) == {"definition_record": session["result"].counts[W.DEFINITION_FILE]}
    # default decoder source: only `source` differs
    got_replay = decode(paths, source="replay")
    assert [(s, {**e, "source": "sim"}) for s, e in got_replay] == want
    # every decoded event is a valid bus event
    for s, e in got[:500] + got[-500:]:
        parse_market_event(s, orjson.dumps(e))


def test_definitions_give_futures_and_option_terms(session):
    inst = D.load_instruments([session["result"].paths[2]])
    events = session["events"]
    futs = {i.raw_symbol: i for i in inst.values() if i.kind == "future"}
    assert set(futs) == {"ESH5", "ESZ4"}                   # 2024-12-16: after the Dec roll
    assert futs["ESZ4"].expiry == dt.date(2024, 12, 20) and futs["ESH5"].expiry == dt.date(2025, 3, 21)
    for f in futs.values():
        assert (f.underlying, f.exchange, f.source, f.strike, f.right) == (
            "ES", "XCME", "definition", None, None)
    opts = {i.raw_symbol: i for i in inst.values() if i.kind == "option"}
    seen = {e["option_symbol"]: e for s, e in events if s == "market.options.trades"}
    assert set(opts) == set(seen) and len(opts) >= 3
    for sym, e in seen.items():
        o = opts[sym]
        assert (o.underlying, o.strike, o.right, o.expiry.isoformat()) == (
            e["underlying"], e["strike"], e["right"], e["exp_date"])
    assert {o.right for o in opts.values()} <= {"C", "P"}
    # ids: deterministic and stable (a hash of the contract, not of the session)
    assert session["result"].instruments == {i.raw_symbol: iid for iid, i in inst.items()}
    assert inst[W.instrument_id_for("future", "ESH5")].raw_symbol == "ESH5"
    raws = [r for r in D.iter_records(session["result"].paths[2]) if not isinstance(r, dbn.Metadata)]
    call = next(r for r in raws if r.raw_symbol in opts and opts[r.raw_symbol].right == "C")
    assert call.instrument_class == dbn.InstrumentClass.CALL and call.strike_price % NS == 0
    assert call.security_type == "OOF" and call.underlying == "ES"


def test_output_is_deterministic(session, tmp_path):
    again = W.write_session_dbn(synthetic_session(DATE, scale=0.01, seed=3, signals=False),
                                str(tmp_path))
    for a, b in zip(session["result"].paths, again.paths):
        assert open(a, "rb").read() == open(b, "rb").read()


def test_raw_records_encode_prices_sides_sequence_flags(session):
    r, events = session["result"], session["events"]
    raws = [x for x in D.iter_records(r.paths[0]) if not isinstance(x, dbn.Metadata)]
    trades = [e for s, e in events if s != "market.futures.mbp10"]
    side = {1: "B", -1: "A", 0: "N"}
    for rec, e in zip(raws[:300], trades[:300]):
        assert rec.price == round(e["price"] * 1e9) and rec.size == e["size"]
        assert str(rec.side.value) == side[e["aggressor"]] and rec.sequence == e["seq"]
        assert (rec.ts_event, rec.ts_recv) == (e["ts_event_ns"], e["ts_recv_ns"])
        assert str(rec.action.value) == "T"
    books = [x for x in D.iter_records(r.paths[1]) if not isinstance(x, dbn.Metadata)]
    assert books[0].flags & dbn.F_SNAPSHOT and not any(b.flags & dbn.F_SNAPSHOT for b in books[1:])
    assert all(b.flags & dbn.F_LAST for b in books)
    # header mappings: the futures trades file decodes on its own (options need definitions)
    stats = D.DecodeStats()
    alone = list(D.iter_events([r.paths[0]], source="sim", stats=stats))
    want = [(s, e) for s, e in without_lossy(market_only(events)) if s == "market.futures.trades"]
    assert alone == [(s, {k: v for k, v in e.items() if k != "exchange"}) for s, e in want]
    assert stats.skipped["trade_of_other"] == r.events["market.options.trades"]


# --------------------------------------------------------------------------- edge cases

def fut(ts, **kw):
    e = {"ts_event_ns": ts, "ts_recv_ns": ts + 500, "source": "sim", "symbol": "ESH5",
         "price": 6050.25, "size": 2, "aggressor": 1, "exchange": "XCME", "seq": ts % 1000}
    e.update(kw)
    return "market.futures.trades", e


def opt(ts, **kw):
    e = {"ts_event_ns": ts, "ts_recv_ns": ts + 900, "source": "sim", "underlying": "ES",
         "option_symbol": "ES241220P6000", "exp_date": "2024-12-20", "strike": 6000.0,
         "right": "P", "price": 12.35, "size": 3, "opt_bid": 12.3, "opt_ask": 12.4,
         "aggressor": -1, "seq": 7}
    e.update(kw)
    return "market.options.trades", e


def book(ts, levels, **kw):
    e = {"ts_event_ns": ts, "ts_recv_ns": ts + 100, "source": "sim", "symbol": "ESH5",
         "levels": levels, "is_snapshot": False, "seq": 9}
    e.update(kw)
    return "market.futures.mbp10", e


def lvl(bp, bs, ap, asz):
    return {"bid_px": bp, "bid_sz": bs, "ask_px": ap, "ask_sz": asz}


def test_book_levels_with_missing_sides_round_trip_exactly(tmp_path):
    events = [
        book(T0, [lvl(6050.0, 5, 6050.25, 7)], is_snapshot=True),              # 1 level
        book(T0 + 1, [lvl(6050.0, 5, 0.0, 0), lvl(0.0, 0, 6050.5, 3),         # holes
                      lvl(6049.5, 1, 6050.75, 2)]),
        book(T0 + 2, [lvl(6050.0, 5, 6050.25, 7)] + [lvl(0.0, 0, 0.0, 0)] * 9),  # zero padding
        book(T0 + 3, [lvl(6050.0, 0, 6050.25, 0), lvl(0.0, 4, 6050.5, 1)]),   # sz 0 / px 0
        book(T0 + 4, []),
        book(T0 + 5, [lvl(6050.0 - k * 0.25, k + 1, 6050.25 + k * 0.25, k + 2) for k in range(10)]),
    ]
    r = W.write_session_dbn(events, str(tmp_path))
    assert r.counts[W.MBP10_FILE] == 6 and not r.skipped and not r.lossy
    assert decode(r.paths) == events
    raws = [x for x in D.iter_records(r.paths[1]) if not isinstance(x, dbn.Metadata)]
    assert raws[1].levels[0].ask_px == dbn.UNDEF_PRICE and raws[1].levels[1].bid_px == dbn.UNDEF_PRICE
    assert raws[0].levels[1].bid_px == dbn.UNDEF_PRICE == raws[0].levels[9].ask_px


def test_lossy_skipped_and_ignored_are_counted(tmp_path):
    events = [
        ("levels.signals", {"ts": T0 // 10**6, "levels": []}),
        fut(T0, conditions=[1, 2]),
        opt(T0 + 1, exchange="XCME"),
        fut(T0 + 2, exchange="XNYM"),                         # differs from the contract's first
        fut(T0 + 3, seq=None),                                # explicit None: invalid
        fut(T0 + 4, price=6050.1234567891),                   # not 1e-9 fixed point
        fut(T0 + 5, size=0),
        fut(T0 + 6, symbol="ES H5"),
        fut(T0 + 7, ts_event_ns=5),
        opt(T0 + 8, right="X", option_symbol="ES241220X6000"),
        book(T0 + 9, [lvl(6050.0, 1, 6050.25, 1)] * 11),
        ("market.futures.trades", {k: v for k, v in fut(T0 + 10)[1].items() if k != "seq"}),
        opt(T0 + 11, strike=6005.0),                          # terms differ from the first trade
    ]
    r = W.write_session_dbn(events, str(tmp_path))
    assert dict(r.ignored) == {"levels.signals": 1}
    assert dict(r.skipped) == {"bad_seq": 1, "price_not_fixed_point": 1, "size_out_of_range": 1,
                               "symbol_not_identifier": 1, "ts_event_ns_out_of_range": 1,
                               "bad_right": 1, "more_than_10_levels": 1}
    assert dict(r.lossy) == {"conditions": 1, "exchange": 2, "opt_bid": 2, "opt_ask": 2,
                             "seq": 1, "option_terms": 1}
    assert dict(r.events) == {"market.futures.trades": 3, "market.options.trades": 2}
    got = decode(r.paths)
    assert [e["seq"] for _, e in got] == [0, 7, 2, 0, 7]     # T0 % 1000 == 0; no seq -> 0
    assert "conditions" not in got[0][1] and got[2][1]["exchange"] == "XCME"
    assert "exchange" not in got[1][1] and got[4][1]["strike"] == 6000.0


def test_empty_input_writes_header_only_files(tmp_path):
    r = W.write_session_dbn([], str(tmp_path / "new" / "dir"))
    assert r.counts == {W.TRADES_FILE: 0, W.MBP10_FILE: 0, W.DEFINITION_FILE: 0}
    assert decode(r.paths) == []


def test_failure_leaves_no_temp_files(tmp_path):
    def events():
        yield fut(T0)
        raise RuntimeError("upstream broke")
    with pytest.raises(RuntimeError):
        W.write_session_dbn(events(), str(tmp_path))
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- CLI

def run_replay(*args):
    return subprocess.run([sys.executable, "-m", "pipelines.replay", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_write_dbn_writes_files_that_decode(tmp_path):
    out = tmp_path / "dbn"
    p = run_replay("--source", "synthetic", "--date", DATE, "--scale", "0.005",
                   "--write-dbn", str(out))
    assert p.returncode == 0, p.stderr
    paths = [str(out / n) for n in (W.TRADES_FILE, W.MBP10_FILE, W.DEFINITION_FILE)]
    for path in paths:
        assert f"{path}: " in p.stdout
    want = without_lossy(market_only(synthetic_session(DATE, scale=0.005, seed=0, signals=False)))
    assert decode(paths) == want


def test_cli_write_dbn_with_dbn_source_is_an_error(tmp_path):
    p = run_replay("--source", "dbn", "--files", str(tmp_path / "x.dbn"),
                   "--write-dbn", str(tmp_path / "out"))
    assert p.returncode == 2
    assert "--write_dbn" in p.stderr and not (tmp_path / "out").exists()
