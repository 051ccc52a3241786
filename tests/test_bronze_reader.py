"""BronzeReader on a small hand-built Bronze lake (Hive folders written with pyarrow)."""
from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from io_connectors.lake.bronze_reader import BronzeReader
from io_connectors.lake.legacy_layout import LegacyLayoutError
from io_connectors.lake.storage import LakeStorage
from tests.helpers import lake_folder
from transforms.front_month import NoTradesError
from transforms.schemas import DEAD_LETTER, FUTURES_MBP10, FUTURES_TRADES, OPTIONS_TRADES

D1, D2, D3 = "2024-12-16", "2024-12-17", "2024-12-18"   # EST: RTH = 14:30-21:00 UTC


def ns(date: str, hms: str) -> int:
    return int(dt.datetime.fromisoformat(f"{date}T{hms}+00:00").timestamp()) * 10**9


def trade(ts, symbol, price=6000.0, conditions=(1,), seq=None):
    return dict(ts_event_ns=ts, ts_recv_ns=ts + 500, source="cme", symbol=symbol, price=price,
                size=1, aggressor=1, exchange="XCME",
                conditions=None if conditions is None else list(conditions), seq=seq)


def book(ts, symbol, snapshot=False):
    row = dict(ts_event_ns=ts, ts_recv_ns=ts + 500, source="cme", symbol=symbol,
               is_snapshot=snapshot, seq=ts % 1000)
    for i in range(1, 11):
        row.update({f"bid_px_{i}": 6000.0 - i, f"bid_sz_{i}": i,
                    f"ask_px_{i}": 6000.0 + i, f"ask_sz_{i}": i})
    return row


def option(ts, strike, right="C", price=5.0):
    return dict(ts_event_ns=ts, ts_recv_ns=ts + 500, source="cme", underlying="ES",
                option_symbol=f"ESZ4 {right}{int(strike)}", exp_date=dt.date(2024, 12, 20),
                strike=strike, right=right, price=price, size=2, opt_bid=None, opt_ask=price + .25,
                aggressor=-1, conditions=[7, 8], seq=None)


def write(root, dataset, date, hour, name, rows, schema):
    folder = lake_folder(root, "bronze", dataset, "ES", date, hour)
    os.makedirs(folder, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), os.path.join(folder, name))


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("lake"))
    ft = lambda date, hour, name, rows: write(root, "futures/trades", date, hour,
                                              name, rows, FUTURES_TRADES)
    # D1: ESH5 has the most trades overall (10 overnight + 2 RTH), ESZ4 the most RTH ones (5).
    ft(D1, 3, "part-030000-a.parquet", [trade(ns(D1, f"03:00:{s:02d}"), "ESH5", seq=s)
                                        for s in range(10)])
    # Two files in one hour whose rows interleave: 'a' holds the later timestamps.
    ft(D1, 15, "part-150000-a.parquet", [trade(ns(D1, "15:00:30"), "ESZ4", 6001.0),
                                         trade(ns(D1, "15:00:40"), "ESH5", 6010.0)])
    ft(D1, 15, "part-150000-b.parquet", [trade(ns(D1, "15:00:10"), "ESZ4", 6000.0),
                                         trade(ns(D1, "15:00:20"), "ESZ4", 6000.5, seq=7),
                                         trade(ns(D1, "15:00:35"), "ESH5", 6011.0)])
    # Two genuine fills at the same nanosecond, price, size and side: the venue sequence
    # number tells them apart.
    ft(D1, 16, "part-160000-a.parquet", [trade(ns(D1, "16:00:00"), "ESZ4", 6002.0, (1, 2), 21),
                                         trade(ns(D1, "16:00:00"), "ESZ4", 6002.0, (1,), 22)])
    # Redelivery: a byte-identical copy of a row of part-150000-b in another file.
    ft(D1, 15, "part-150500-c.parquet", [trade(ns(D1, "15:00:20"), "ESZ4", 6000.5, seq=7)])
    # The same fill at 16:00 again from a historical backfill: other capture metadata
    # (source, receive time) and feed attributes (no exchange, no conditions).
    ft(D1, 16, "part-160000-backfill.parquet",
       [dict(trade(ns(D1, "16:00:00"), "ESZ4", 6002.0, None, 22), source="replay",
             ts_recv_ns=ns(D1, "16:00:01"), exchange=None)])
    # Things a reader must not see: an in-flight temp file, a hidden Parquet file and a
    # dead-letter folder (other schema) inside the date folder, plus the real dead letters.
    ft(D1, 15, ".part-150000-z.parquet.0123.tmp", [trade(ns(D1, "15:00:50"), "JUNK")])
    ft(D1, 15, ".hidden.parquet", [trade(ns(D1, "15:00:51"), "JUNK")])
    dead = pa.Table.from_pylist([dict(received_ns=1, subject="x", stream_seq=1, reason="bad",
                                      payload=b"{}")], schema=DEAD_LETTER)
    for folder in (os.path.join(lake_folder(root, "bronze", "futures/trades", "ES", D1),
                                "_dead_letter"),
                   lake_folder(root, "bronze", "_dead_letter", date=D1)):
        os.makedirs(folder)
        pq.write_table(dead, os.path.join(folder, "part-0.parquet"))
    # D2 (roll day): ESZ4 5 RTH trades vs ESH5 4 -> dominance 5/9 < 0.6.
    ft(D2, 15, "part-a.parquet", [trade(ns(D2, f"15:00:{s:02d}"), "ESZ4") for s in range(5)]
       + [trade(ns(D2, f"15:01:{s:02d}"), "ESH5") for s in range(4)])
    # D3: hour 05 holds a corrupt file; only reads that prune hour 05 can succeed.
    ft(D3, 15, "part-a.parquet", [trade(ns(D3, "15:00:00"), "ESZ4")])
    bad = lake_folder(root, "bronze", "futures/trades", "ES", D3, 5)
    os.makedirs(bad)
    with open(os.path.join(bad, "part-bad.parquet"), "wb") as fh:
        fh.write(b"this is not parquet")

    # MBP-10 on D1: ESH5 has MORE book rows, yet the front month (from trades) is ESZ4.
    mbp = [book(ns(D1, f"15:00:{s:02d}"), "ESZ4") for s in (5, 1, 3)] \
        + [book(ns(D1, f"15:00:{s:02d}"), "ESH5") for s in (0, 2, 4, 6, 8)]
    write(root, "futures/mbp10", D1, 15, "part-a.parquet", mbp, FUTURES_MBP10)
    write(root, "futures/mbp10", D1, 16, "part-a.parquet",
          [book(ns(D1, "16:10:00"), "ESZ4", snapshot=True)] * 2, FUTURES_MBP10)

    opts = [option(ns(D1, "15:30:00"), 6000.0), option(ns(D1, "15:10:00"), 6100.0, "P")]
    write(root, "options/trades", D1, 15, "part-a.parquet", opts, OPTIONS_TRADES)
    write(root, "options/trades", D1, 15, "part-b.parquet",
          [dict(opts[0], source="replay", ts_recv_ns=opts[0]["ts_recv_ns"] + 7)], OPTIONS_TRADES)
    return root


@pytest.fixture
def reader(lake):
    return BronzeReader(lake)


def test_real_contract_symbol_survives_the_partition_folder(reader):
    df = reader.read_futures_trades("ES", D1, front_month_only=False)
    assert list(df.columns) == FUTURES_TRADES.names
    assert sorted(df["symbol"].unique()) == ["ESH5", "ESZ4"]
    assert df["symbol"].value_counts().to_dict() == {"ESH5": 12, "ESZ4": 5}


def test_front_month_uses_rth_trades(reader):
    fm = reader.front_month("ES", D1)
    assert (fm.symbol, fm.basis) == ("ESZ4", "rth")
    assert fm.rth_trade_counts == {"ESH5": 2, "ESZ4": 5}
    assert fm.trade_counts == {"ESH5": 12, "ESZ4": 5}
    assert fm.dominance == pytest.approx(5 / 7) and not fm.roll_contaminated
    roll = reader.front_month("ES", D2)
    assert roll.symbol == "ESZ4" and roll.dominance == pytest.approx(5 / 9)
    assert roll.roll_contaminated


def test_default_read_keeps_front_month_only(reader):
    df = reader.read_futures_trades("ES", D1)
    assert set(df["symbol"]) == {"ESZ4"}
    assert df["price"].tolist() == [6000.0, 6000.5, 6001.0, 6002.0, 6002.0]


def test_specific_contract_wins_over_front_month(reader):
    df = reader.read_futures_trades("ES", D1, specific_contract="ESH5")
    assert set(df["symbol"]) == {"ESH5"} and len(df) == 12
    assert reader.read_futures_trades("ES", D1, specific_contract="ESM5").empty


def test_time_range_is_half_open(reader):
    start, end = ns(D1, "15:00:20"), ns(D1, "16:00:00")
    df = reader.read_futures_trades("ES", D1, start_ns=start, end_ns=end, front_month_only=False)
    assert df["ts_event_ns"].tolist() == [start, ns(D1, "15:00:30"), ns(D1, "15:00:35"),
                                          ns(D1, "15:00:40")]
    front = reader.read_futures_trades("ES", D1, start_ns=start, end_ns=end)
    assert front["price"].tolist() == [6000.5, 6001.0]
    late = reader.read_futures_trades("ES", D1, start_ns=end, front_month_only=False)
    assert late["ts_event_ns"].tolist() == [end, end]


def test_hours_outside_the_range_are_not_read(reader):
    start = ns(D3, "14:00:00")
    assert reader.read_futures_trades("ES", D3, start_ns=start,
                                      front_month_only=False)["symbol"].tolist() == ["ESZ4"]
    with pytest.raises(pa.ArrowInvalid):    # without a range the corrupt hour 05 is read
        reader.read_futures_trades("ES", D3, front_month_only=False)


def test_duplicates_dropped_by_default_and_kept_on_request(reader):
    deduped = reader.read_futures_trades("ES", D1, specific_contract="ESZ4")
    raw = reader.read_futures_trades("ES", D1, specific_contract="ESZ4", dedupe=False)
    assert len(raw) == len(deduped) + 2
    assert (raw["ts_event_ns"] == ns(D1, "15:00:20")).sum() == 2
    assert (deduped["ts_event_ns"] == ns(D1, "15:00:20")).sum() == 1
    assert len(reader.read_futures_trades("ES", D1, dedupe=False)) == 7   # front month too
    # Two fills with equal time, price, size and side but their own sequence numbers are
    # two events; the backfilled copy of one (other source, receive time, attributes) is not.
    at_16 = deduped[deduped["ts_event_ns"] == ns(D1, "16:00:00")]
    assert at_16["seq"].tolist() == [21, 22]
    assert at_16["source"].tolist() == ["cme", "cme"]          # the first stored copy kept
    assert sorted(tuple(c) for c in at_16["conditions"]) == [(1,), (1, 2)]
    assert isinstance(at_16["conditions"].iloc[0], np.ndarray)


def test_sorted_across_files_and_hours_with_fresh_index(reader):
    df = reader.read_futures_trades("ES", D1, front_month_only=False)
    assert df["ts_event_ns"].is_monotonic_increasing
    assert df.index.tolist() == list(range(len(df)))
    ts = df["ts_event_ns"]
    hour15 = df[(ts >= ns(D1, "15:00:00")) & (ts < ns(D1, "16:00:00"))]
    assert hour15["price"].tolist() == [6000.0, 6000.5, 6001.0, 6011.0, 6010.0]


def test_nullable_seq_stays_integer(reader):
    df = reader.read_futures_trades("ES", D1, specific_contract="ESZ4")
    assert str(df["seq"].dtype) == "Int64"
    assert df["seq"].isna().sum() == 2 and df["seq"].dropna().tolist() == [7, 21, 22]
    assert df["ts_event_ns"].dtype == np.int64


def test_hidden_temp_files_and_dead_letter_are_ignored(reader):
    df = reader.read_futures_trades("ES", D1, front_month_only=False, dedupe=False)
    assert "JUNK" not in set(df["symbol"])
    assert len(df) == 19 and list(df.columns) == FUTURES_TRADES.names


def test_available_dates(reader):
    assert reader.available_dates() == [D1, D2, D3]
    assert reader.available_dates("futures/mbp10", "ES") == [D1]
    assert reader.available_dates("options/trades", "ES") == [D1]
    assert reader.available_dates("futures/trades", "NQ") == []


def test_option_trades(reader):
    df = reader.read_option_trades("ES", D1)
    assert list(df.columns) == OPTIONS_TRADES.names
    assert df["strike"].tolist() == [6100.0, 6000.0]                 # sorted, deduped
    assert df["option_symbol"].tolist() == ["ESZ4 P6100", "ESZ4 C6000"]
    assert df["exp_date"].tolist() == [dt.date(2024, 12, 20)] * 2
    assert df["opt_bid"].isna().all() and set(df["underlying"]) == {"ES"}
    assert len(reader.read_option_trades("ES", D1, dedupe=False)) == 3
    assert reader.read_option_trades("ES", D1, end_ns=ns(D1, "15:30:00"))["strike"].tolist() \
        == [6100.0]


def test_mbp10_front_month_comes_from_trades(reader):
    df = reader.read_futures_mbp10("ES", D1)
    assert list(df.columns) == FUTURES_MBP10.names
    assert set(df["symbol"]) == {"ESZ4"}
    assert df["ts_event_ns"].tolist() == [ns(D1, f"15:00:0{s}") for s in (1, 3, 5)] \
        + [ns(D1, "16:10:00")]                         # snapshot duplicate dropped
    assert df["is_snapshot"].tolist() == [False, False, False, True]
    assert len(reader.read_futures_mbp10("ES", D1, dedupe=False)) == 5
    h5 = reader.read_futures_mbp10("ES", D1, specific_contract="ESH5")
    assert set(h5["symbol"]) == {"ESH5"}
    both = reader.read_futures_mbp10("ES", D1, front_month_only=False)
    assert both["symbol"].value_counts().to_dict() == {"ESH5": 5, "ESZ4": 4}
    ranged = reader.read_futures_mbp10("ES", D1, start_ns=ns(D1, "15:00:02"),
                                       end_ns=ns(D1, "15:00:05"))
    assert ranged["ts_event_ns"].tolist() == [ns(D1, "15:00:03")]


def test_missing_date_gives_empty_frames_with_schema_columns(reader):
    day = "2024-12-25"
    for df, schema in ((reader.read_futures_trades("ES", day), FUTURES_TRADES),
                       (reader.read_futures_trades("ES", day, front_month_only=False),
                        FUTURES_TRADES),
                       (reader.read_futures_mbp10("ES", day), FUTURES_MBP10),
                       (reader.read_option_trades("ES", day), OPTIONS_TRADES),
                       (reader.read_futures_trades("NQ", D1), FUTURES_TRADES)):
        assert df.empty and list(df.columns) == schema.names
    with pytest.raises(NoTradesError):
        reader.front_month("ES", day)


def test_storage_argument_and_bad_inputs(lake):
    reader = BronzeReader(storage=LakeStorage(lake))
    assert reader.front_month("ES", D1).symbol == "ESZ4"
    with pytest.raises(ValueError):
        reader.read_futures_trades("ES")                  # no date
    with pytest.raises(ValueError):
        reader.read_futures_trades("../ES", D1)           # path escape


def test_a_lake_in_the_old_layout_is_refused_naming_the_migration(tmp_path):
    """A lake written before ``root=`` must not read as empty (issue 8)."""
    old = tmp_path / "bronze" / "futures" / "trades" / "symbol=ES" / f"date={D1}" / "hour=15"
    old.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([trade(ns(D1, "15:00:00"), "ESZ4")],
                                        schema=FUTURES_TRADES), old / "part-a.parquet")
    reader = BronzeReader(str(tmp_path))
    for read in (lambda: reader.read_futures_trades("ES", D1),
                 lambda: reader.available_dates("futures/trades", "ES")):
        with pytest.raises(LegacyLayoutError, match=r"symbol=ES.*pipelines\.lake_migrate"):
            read()
    assert reader.read_option_trades("ES", D1).empty        # other datasets unaffected
