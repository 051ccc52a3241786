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
