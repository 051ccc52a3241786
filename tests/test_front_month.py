"""Front-month selection: RTH bounds across DST, RTH-based choice, dominance, fallbacks."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from transforms.front_month import NoTradesError, rth_bounds_ns, select_front_month


def utc_ns(date: str, hhmm: str) -> int:
    return int(dt.datetime.fromisoformat(f"{date}T{hhmm}+00:00").timestamp()) * 10**9


def trades(date: str, *spec: tuple[str, str, int]) -> pd.DataFrame:
    """spec: (symbol, 'HH:MM' UTC, count) -> one trade per second from that minute."""
    rows = [(sym, utc_ns(date, hhmm) + i * 10**9, date)
            for sym, hhmm, n in spec for i in range(n)]
    return pd.DataFrame(rows, columns=["symbol", "ts_event_ns", "date"])


def test_rth_bounds_summer_edt():
    assert rth_bounds_ns("2024-07-15") == (utc_ns("2024-07-15", "13:30"),
                                           utc_ns("2024-07-15", "20:00"))


def test_rth_bounds_winter_est():
    assert rth_bounds_ns("2024-12-16") == (utc_ns("2024-12-16", "14:30"),
                                           utc_ns("2024-12-16", "21:00"))


def test_rth_bounds_custom_window_and_dst_switch_day():
    # 2024-03-10: US clocks spring forward at 02:00 local; 09:30 is already EDT.
    assert rth_bounds_ns("2024-03-10", "08:00", "09:30") == (utc_ns("2024-03-10", "12:00"),
                                                             utc_ns("2024-03-10", "13:30"))
    assert rth_bounds_ns("2024-07-15", tz="Europe/London") == (utc_ns("2024-07-15", "08:30"),
                                                               utc_ns("2024-07-15", "15:00"))


def test_same_utc_times_pick_different_contracts_in_summer_and_winter():
    # A trades at 14:00 UTC, B at 20:30 UTC.  EDT RTH = 13:30-20:00 UTC holds A only;
    # EST RTH = 14:30-21:00 UTC holds B only.
    summer = select_front_month(trades("2024-07-15", ("ESA", "14:00", 3), ("ESB", "20:30", 2)))
    winter = select_front_month(trades("2024-12-16", ("ESA", "14:00", 3), ("ESB", "20:30", 2)))
    assert (summer.symbol, summer.rth_trade_counts) == ("ESA", {"ESA": 3, "ESB": 0})
    assert (winter.symbol, winter.rth_trade_counts) == ("ESB", {"ESA": 0, "ESB": 2})
    assert summer.basis == winter.basis == "rth"


def test_most_rth_trades_wins_over_most_trades_overall():
    fm = select_front_month(trades("2024-12-16", ("ESZ4", "15:00", 6),
                                   ("ESH5", "03:00", 50), ("ESH5", "16:00", 4)))
    assert fm.symbol == "ESZ4"
    assert fm.trade_counts == {"ESH5": 54, "ESZ4": 6}
    assert fm.rth_trade_counts == {"ESH5": 4, "ESZ4": 6}
    assert fm.dominance == pytest.approx(0.6)
    assert fm.roll_contaminated is False          # exactly 60% is not contaminated


def test_roll_contaminated_below_sixty_percent():
    fm = select_front_month(trades("2024-12-16", ("ESZ4", "15:00", 4), ("ESH5", "16:00", 3)))
    assert fm.symbol == "ESZ4"
    assert fm.dominance == pytest.approx(4 / 7)
    assert fm.roll_contaminated is True


def test_rth_window_is_half_open():
    # 14:30 UTC (09:30 EST) counts, 21:00 UTC (16:00 EST) does not.
    fm = select_front_month(trades("2024-12-16", ("ESZ4", "14:30", 1), ("ESH5", "21:00", 5)))
    assert fm.rth_trade_counts == {"ESH5": 0, "ESZ4": 1}
    assert (fm.symbol, fm.dominance, fm.basis) == ("ESZ4", 1.0, "rth")


def test_fallback_to_all_day_when_no_rth_trade():
    fm = select_front_month(trades("2024-12-14", ("ESZ4", "02:00", 2), ("ESH5", "23:00", 3)))
    assert (fm.symbol, fm.basis) == ("ESH5", "all_day")
    assert fm.dominance == pytest.approx(0.6)
    assert fm.rth_trade_counts == {"ESH5": 0, "ESZ4": 0}


def test_tie_goes_to_lexicographically_smallest_symbol():
    for order in ((("ESZ4", "15:00", 2), ("ESH5", "16:00", 2)),
                  (("ESH5", "16:00", 2), ("ESZ4", "15:00", 2))):
        fm = select_front_month(trades("2024-12-16", *order))
        assert fm.symbol == "ESH5"
        assert fm.dominance == 0.5 and fm.roll_contaminated


def test_accepts_arrow_table_and_explicit_date():
    df = trades("2024-12-16", ("ESZ4", "15:00", 3), ("ESH5", "16:00", 1))
    assert select_front_month(pa.Table.from_pandas(df)).symbol == "ESZ4"
    no_date = df.drop(columns="date")
    assert select_front_month(no_date, date="2024-12-16").symbol == "ESZ4"
    with pytest.raises(ValueError):
        select_front_month(no_date)


def test_rejects_several_dates_and_empty_input():
    mixed = pd.concat([trades("2024-12-16", ("ESZ4", "15:00", 1)),
                       trades("2024-12-17", ("ESH5", "15:00", 1))])
    with pytest.raises(ValueError, match="several dates"):
        select_front_month(mixed)
    assert select_front_month(mixed, date="2024-12-17").symbol == "ESH5"
    with pytest.raises(NoTradesError):
        select_front_month(trades("2024-12-16"), date="2024-12-16")
