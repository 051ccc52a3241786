"""Parsing bus JSON into typed Bronze rows, and every kind of invalid message."""
import datetime as dt

import orjson
import pyarrow as pa
import pytest

from transforms.arrow_rows import rows_to_table
from transforms.market_parse import InvalidEvent, parse_market_event, symbol_root, utc_date_hour
from transforms.schemas import FUTURES_MBP10, FUTURES_TRADES, OPTIONS_TRADES

TS = 1734359400_000000000  # 2024-12-16T14:30:00Z


def trade(**kw):
    ev = dict(ts_event_ns=TS, ts_recv_ns=TS + 1000, source="replay", symbol="ESZ4",
              price=6050.25, size=3, aggressor=-1, exchange="XCME", conditions=[1, 2], seq=42)
    ev.update(kw)
    return orjson.dumps(ev)


def book(levels, **kw):
    ev = dict(ts_event_ns=TS, ts_recv_ns=TS, source="sim", symbol="ESH5", levels=levels,
              is_snapshot=False, seq=7)
    ev.update(kw)
    return orjson.dumps(ev)


def option(**kw):
    ev = dict(ts_event_ns=TS, ts_recv_ns=TS, source="replay", underlying="ES",
              option_symbol="E1AZ4 C6050", exp_date="2024-12-16", strike=6050.0, right="C",
              price=12.5, size=2, opt_bid=12.25, opt_ask=12.75, aggressor=1, conditions=None,
              seq=None)
    ev.update(kw)
    return orjson.dumps(ev)


def test_futures_trade_row_partition_and_types():
    ev = parse_market_event("market.futures.trades", trade())
    assert (ev.dataset, ev.partition, ev.date, ev.hour) == ("futures/trades", "ES", "2024-12-16", 14)
    t = rows_to_table([ev.row], FUTURES_TRADES)
    assert t.schema == FUTURES_TRADES
    rec = t.to_pylist()[0]
    assert rec["symbol"] == "ESZ4" and rec["price"] == 6050.25 and rec["aggressor"] == -1
    assert rec["conditions"] == [1, 2] and rec["seq"] == 42


def test_mbp10_flattened_to_ten_levels_with_zero_fill():
    levels = [dict(bid_px=6050.0 - i * 0.25, bid_sz=10 + i, ask_px=6050.25 + i * 0.25, ask_sz=20 + i)
              for i in range(3)]
    ev = parse_market_event("market.futures.mbp10", book(levels))
    t = rows_to_table([ev.row], FUTURES_MBP10)
    assert t.num_columns == 46
    rec = t.to_pylist()[0]
    assert rec["bid_px_1"] == 6050.0 and rec["bid_sz_3"] == 12 and rec["ask_px_3"] == 6050.75
    assert rec["bid_px_4"] == 0.0 and rec["bid_sz_10"] == 0 and rec["ask_sz_10"] == 0
    assert rec["symbol"] == "ESH5" and ev.partition == "ES" and rec["is_snapshot"] is False


def test_option_trade_exp_date_and_nullable_fields():
    ev = parse_market_event("market.options.trades", option())
    assert ev.dataset == "options/trades" and ev.partition == "ES"
    rec = rows_to_table([ev.row], OPTIONS_TRADES).to_pylist()[0]
    assert rec["exp_date"] == dt.date(2024, 12, 16) and rec["right"] == "C"
    assert rec["conditions"] is None and rec["seq"] is None and rec["opt_ask"] == 12.75


@pytest.mark.parametrize("subject,payload,reason", [
    ("market.futures.trades", b"\xff\xfe{", "not valid UTF-8"),
    ("market.futures.trades", b"{not json", "not JSON"),
    ("market.futures.trades", b"[1,2]", "must be a JSON object"),
    ("market.futures.trades", trade(price=None), "missing field 'price'"),
    ("market.futures.trades", trade(size="3"), "'size' must be an integer"),
    ("market.futures.trades", trade(size=0), "'size'=0 out of range"),
    ("market.futures.trades", trade(price=-1.0), "'price'=-1.0 out of range"),
    ("market.futures.trades", trade(aggressor=2), "'aggressor'=2"),
    ("market.futures.trades", trade(ts_event_ns=5), "'ts_event_ns'=5 out of range"),
    ("market.futures.trades", trade(symbol="../../etc"), "not a plain identifier"),
    ("market.futures.trades", trade(symbol="ES Z4"), "not a plain identifier"),
    ("market.futures.trades", trade(source="bogus"), "'source'='bogus'"),
    ("market.futures.trades", trade(conditions=[1, 70000]), "16-bit"),
    ("market.futures.trades", trade(size=True), "must be an integer"),
    ("market.futures.mbp10", book([{"bid_px": 1.0}]), "levels[0]: missing field 'bid_sz'"),
    ("market.futures.mbp10", book([{}] * 11), "at most 10"),
    ("market.futures.mbp10", book([], is_snapshot="yes"), "'is_snapshot' must be a boolean"),
    ("market.options.trades", option(right="X"), "'right'='X'"),
    ("market.options.trades", option(exp_date="2024-13-01"), "not an ISO date"),
    ("market.options.trades", option(underlying="E/S"), "not a plain identifier"),
    ("market.options.trades", option(strike=0), "'strike'=0.0 out of range"),
    ("market.futures.quotes", trade(), "unknown subject"),
])
def test_invalid_messages_name_the_reason(subject, payload, reason):
    with pytest.raises(InvalidEvent) as exc:
        parse_market_event(subject, payload)
    assert reason in str(exc.value)


def test_symbol_root_and_utc_partition():
    assert symbol_root("ESZ4") == "ES" and symbol_root("ESH25") == "ES"
    assert symbol_root("NQM5") == "NQ" and symbol_root("ES") == "ES"
    assert utc_date_hour(TS) == ("2024-12-16", 14)
    assert utc_date_hour(1734393599_999999999) == ("2024-12-16", 23)
    assert utc_date_hour(1734393600_000000000) == ("2024-12-17", 0)


def test_rows_to_table_sorts_stably_and_rejects_nulls():
    rows = [parse_market_event("market.futures.trades", trade(ts_event_ns=TS + d, seq=d)).row
            for d in (5, 1, 3, 1)]
    t = rows_to_table(rows, FUTURES_TRADES, sort_by="ts_event_ns")
    assert t["seq"].to_pylist() == [1, 1, 3, 5]
    bad = list(rows[0])
    bad[3] = None
    with pytest.raises(ValueError, match="symbol is not nullable"):
        rows_to_table([tuple(bad)], FUTURES_TRADES)
    assert isinstance(t.schema.field("conditions").type, pa.ListType)


# --------------------------------------------------------------------------- strict payloads

@pytest.mark.parametrize("payload,reason", [
    (trade()[:-1] + b',"symbol":"NQZ4"}', "duplicate key 'symbol'"),
    (trade()[:-1] + b',"ts_event_ns":1734400000000000000}', "duplicate key 'ts_event_ns'"),
    (trade()[:-1] + b',"x":1,"x":2}', "duplicate key 'x'"),                    # ignored field
    (trade()[:-1] + b',"x":{"y":1,"y":[1]}}', "duplicate key 'y'"),           # nested object
    (trade()[:-1] + b',"\\u0073ize":3}', "duplicate key 'size'"),            # escaped name
    (trade()[:-1] + b',"size" :3}', "duplicate key 'size'"),                 # space before ':'
    (trade()[:-1] + b',"size"\t:\n3}', "duplicate key 'size'"),
    (trade()[:-1] + b',"x":"\\":","x":2}', "duplicate key 'x'"),           # '":' in a value
])
def test_a_key_written_twice_is_a_dead_letter(payload, reason):
    with pytest.raises(InvalidEvent, match=reason):
        parse_market_event("market.futures.trades", payload)


def test_duplicate_key_in_a_book_level_and_no_false_alarm():
    lvl = b'{"bid_px":1.0,"bid_sz":1,"ask_px":2.0,"ask_sz":2,"ask_sz":3}'
    payload = book([])[:-1].replace(b'"levels":[]', b'"levels":[' + lvl + b"]") + b"}"
    with pytest.raises(InvalidEvent, match="duplicate key 'ask_sz'"):
        parse_market_event("market.futures.mbp10", payload)
    # values holding '":', whitespace and escapes, without any repeated key: accepted
    ok = trade(exchange='a":b')[:-1] + b', "x" : {"x":1, "y":"\\"x\\":"}}'
    assert parse_market_event("market.futures.trades", ok).row[7] == 'a":b'
    levels = [dict(bid_px=1.0, bid_sz=1, ask_px=2.0, ask_sz=2)] * 3
    assert parse_market_event("market.futures.mbp10", book(levels)).row[4] == 1.0


@pytest.mark.parametrize("field,literal", [
    ("seq", b"9223372036854775808"), ("seq", b"123456789012345678901234567890"),
    ("seq", b"-9223372036854775809"), ("size", b"18446744073709551616"),
    ("ts_event_ns", b"99999999999999999999"),
])
def test_integer_beyond_64_bits_is_named_as_such(field, literal):
    payload = trade(**{field: 1}).replace(f'"{field}":1'.encode(), f'"{field}":'.encode() + literal)
    with pytest.raises(InvalidEvent) as exc:
        parse_market_event("market.futures.trades", payload)
    assert f"field '{field}'={int(literal)} is an integer beyond 64 bits" in str(exc.value)


def test_integer_beyond_64_bits_inside_a_book_level_and_real_floats_unchanged():
    payload = book([dict(bid_px=1.0, bid_sz=7, ask_px=2.0, ask_sz=2)]).replace(
        b'"bid_sz":7', b'"bid_sz":36893488147419103232')
    with pytest.raises(InvalidEvent, match=r"levels\[0\]: field 'bid_sz'=36893488147419103232 "
                                           r"is an integer beyond 64 bits"):
        parse_market_event("market.futures.mbp10", payload)
    with pytest.raises(InvalidEvent, match="'size' must be an integer, got float"):
        parse_market_event("market.futures.trades", trade(size=3.0))
    with pytest.raises(InvalidEvent, match="'size' must be an integer, got float"):
        parse_market_event("market.futures.trades", trade(size=1e30))


def test_prices_above_the_dataset_bound_are_dead_letters():
    from transforms.bronze_rules import DEFAULT_RULES, BronzeRules
    hi = DEFAULT_RULES.price_max("futures/trades")
    assert parse_market_event("market.futures.trades", trade(price=hi)).row[4] == hi
    for subject, payload, field in [
            ("market.futures.trades", trade(price=1e30), "price"),
            ("market.futures.trades", trade(price=hi * 1.0000001), "price"),
            ("market.futures.mbp10", book([dict(bid_px=1.0, bid_sz=1, ask_px=1e30, ask_sz=1)]),
             "ask_px"),
            ("market.options.trades", option(strike=1e30), "strike"),
            ("market.options.trades", option(price=1e30), "price"),
            ("market.options.trades", option(opt_bid=1e30), "opt_bid"),
            ("market.options.trades", option(opt_ask=1e30), "opt_ask")]:
        with pytest.raises(InvalidEvent, match=f"field '{field}'=1e\\+30 out of range|"
                                               f"field '{field}'=.* out of range .*<= "):
            parse_market_event(subject, payload)
    tight = BronzeRules({"futures/trades": 7000.0, "futures/mbp10": 7000.0,
                         "options/trades": 100.0})
    with pytest.raises(InvalidEvent, match=r"field 'price'=7000.25 out of range \(> 0.0, <= 7000.0\)"):
        parse_market_event("market.futures.trades", trade(price=7000.25), tight)
    with pytest.raises(InvalidEvent, match="'strike'=6050.0 out of range"):
        parse_market_event("market.options.trades", option(), tight)
    assert parse_market_event("market.futures.trades", trade(price=7000.0), tight).row[4] == 7000.0


def test_rules_from_config_and_bad_values():
    from transforms.bronze_rules import DEFAULT_RULES, BronzeRules
    assert BronzeRules.from_config({}) == DEFAULT_RULES
    r = BronzeRules.from_config({"bronze": {"max_price": {"futures/trades": 10000}}})
    assert r.price_max("futures/trades") == 10000.0
    assert r.price_max("options/trades") == DEFAULT_RULES.price_max("options/trades")
    for bad in ({"futures/trades": -1}, {"futures/trades": "x"}, {"futures/trades": float("inf")},
                {"futures/quotes": 5.0}):
        with pytest.raises(ValueError, match="bronze.max_price"):
            BronzeRules.from_config({"bronze": {"max_price": bad}})


def test_shipped_config_sets_a_bound_for_every_dataset():
    from io_connectors.config import load_config
    from transforms.bronze_rules import PRICE_FIELDS
    section = load_config("lake")["bronze"]["max_price"]
    assert set(section) == set(PRICE_FIELDS)
