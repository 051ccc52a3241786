"""Silver stage 16 (state table): grid over RTH x level kind, as-of levels/prices, forward-filled
event features (never labels), causality."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.silver_fixtures import KINDS, MANIFEST, PARAMS, at, declared_events_frame
from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_MIN, NS_PER_S, local_ns
from transforms.silver.stage_state_table import carried_feature_columns, grid_ns, state_table

DATE = "2024-12-16"


def t(hhmm: str, seconds: float = 0.0, date: str = DATE) -> int:
    return at(date, hhmm, seconds)


def make_events(rows, date: str = DATE) -> pd.DataFrame:
    """Events with every manifest column; ``rows`` are dicts of overrides (need ts_ns, kind)."""
    return declared_events_frame(date, rows)


def make_day(events=None, trades=None, levels=None, date: str = DATE) -> SilverDay:
    if events is None:
        events = make_events([], date)
    if trades is None:
        trades = pd.DataFrame({"ts_ns": np.zeros(0, np.int64), "price": np.zeros(0),
                               "size": np.zeros(0, np.int32), "aggressor": np.zeros(0, np.int8)})
    if levels is None:
        levels = pd.DataFrame({"bar_ns": np.zeros(0, np.int64),
                               **{k: np.zeros(0) for k in KINDS}})
    return SilverDay(date=date, params=PARAMS, events=events, trades=trades, levels=levels)


def make_levels(date: str = DATE, start="09:25", minutes=200, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    bar_ns = t(start, date=date) + np.arange(minutes, dtype=np.int64) * NS_PER_MIN
    cols = {k: 5000.0 + rng.normal(0, 5, minutes).cumsum() for k in KINDS}
    cols["OR_HIGH"][bar_ns < t("09:45", date=date)] = np.nan
    return pd.DataFrame({"bar_ns": bar_ns, **cols})


def make_trades(date: str = DATE, n=4000, seed=1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(t("09:20", date=date), t("12:40", date=date), n)).astype(np.int64)
    return pd.DataFrame({"ts_ns": ts, "price": 5000 + rng.normal(0, 1, n).cumsum(),
                         "size": rng.integers(1, 5, n).astype(np.int32),
                         "aggressor": rng.choice([-1, 1], n).astype(np.int8)})


def random_events(date: str = DATE, n=40, seed=2):
    rng = np.random.default_rng(seed)
    names = list(KINDS)
    rows = []
    for i in range(n):
        ts = int(rng.integers(t("09:30", date=date), t("12:30", date=date)))
        rows.append({"ts_ns": ts, "kind": names[i % len(names)],
                     "level_price": float(5000 + rng.integers(-40, 40)),
                     "tape_imbalance": float(rng.uniform(-1, 1)),
                     "stacking_5pt": int(rng.integers(0, 4)),
                     "gex_nonzero": bool(rng.integers(0, 2)),
                     "barrier_state": str(rng.choice(["WALL", "VACUUM", "NEUTRAL"])),
                     "outcome": str(rng.choice(["BREAK", "REJECT", "CHOP"])),
                     "time_to_break": float(rng.uniform(0, 240))})
    return make_events(rows, date)


# --- grid ------------------------------------------------------------------------------------

@pytest.mark.parametrize("date, utc_open", [
    ("2024-12-16", "14:30"),   # EST
    ("2024-07-15", "13:30"),   # EDT
    ("2024-03-10", "13:30"),   # the spring-forward date itself (EDT from 02:00)
    ("2024-11-03", "14:30"),   # the fall-back date itself (EST from 02:00)
])
def test_grid_is_360_times_6_kinds_across_dst(date, utc_open):
    st = state_table(make_day(date=date)).state_table
    assert len(st) == 360 * 6
    grid = np.unique(st["ts_ns"].to_numpy())
    assert len(grid) == 360
    open_utc = pd.Timestamp(f"{date} {utc_open}", tz="UTC").value
    assert grid[0] == open_utc == local_ns(date, "09:30")
    assert grid[-1] == local_ns(date, "12:30") - 30 * NS_PER_S
    assert (np.diff(grid) == 30 * NS_PER_S).all()
    np.testing.assert_array_equal(grid, grid_ns(make_day(date=date)))
    # sorted by (ts_ns, level_kind), every kind at every grid time, in code order
    assert st["level_kind"].dtype == np.int8 and st["ts_ns"].dtype == np.int64
    np.testing.assert_array_equal(st["level_kind"].to_numpy()[:6], [0, 1, 2, 3, 6, 12])
    assert list(st["level_kind_name"][:6]) == ["PM_HIGH", "PM_LOW", "OR_HIGH", "OR_LOW",
                                                "SMA_200", "SMA_400"]
    keys = list(zip(st["ts_ns"], st["level_kind"]))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert str(st["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert (st["timestamp"].astype("int64").to_numpy() == st["ts_ns"].to_numpy()).all()


def test_grid_step_follows_parameter():
    params = {**PARAMS, "state_table": {"grid_s": 60}}
    day = SilverDay(date=DATE, params=params, events=make_events([]),
                    trades=make_day().trades, levels=make_day().levels)
    assert len(state_table(day).state_table) == 180 * 6


# --- as-of levels and prices -----------------------------------------------------------------

def test_level_price_and_price_are_as_of_the_grid_time():
    levels = pd.DataFrame({"bar_ns": [t("09:31"), t("09:32"), t("09:46")],
                           "PM_HIGH": [5010.0, 5011.0, 5012.0],
                           "PM_LOW": [4990.0, 4990.0, 4990.0],
                           "OR_HIGH": [np.nan, np.nan, 5005.0],
                           "OR_LOW": [np.nan, np.nan, 4995.0],
                           "SMA_200": [5001.0, 5001.5, 5002.0]})          # no SMA_400 column
    trades = pd.DataFrame({"ts_ns": [t("09:30", 10), t("09:31", 30), t("09:31", 31)],
                           "price": [5003.0, 5004.0, 5009.0], "size": [1, 1, 1],
                           "aggressor": [1, -1, 1]})
    st = state_table(make_day(trades=trades, levels=levels)).state_table.set_index(
        ["ts_ns", "level_kind_name"])

    def at(hhmm, s, kind, col):
        return st.loc[(t(hhmm, s), kind), col]

    assert np.isnan(at("09:30", 30, "PM_HIGH", "level_price"))       # before the first bar
    assert at("09:31", 0, "PM_HIGH", "level_price") == 5010.0           # bar_ns == ts counts
    assert at("09:31", 30, "PM_HIGH", "level_price") == 5010.0
    assert at("09:32", 0, "PM_HIGH", "level_price") == 5011.0
    assert at("09:45", 30, "PM_HIGH", "level_price") == 5011.0          # gap: last bar
    assert np.isnan(at("09:45", 30, "OR_HIGH", "level_price"))         # not yet existing
    assert at("09:46", 0, "OR_HIGH", "level_price") == 5005.0
    assert np.isnan(at("10:00", 0, "SMA_400", "level_price"))          # kind without a column

    assert np.isnan(at("09:30", 0, "PM_HIGH", "price"))                # before the first trade
    assert at("09:30", 30, "PM_HIGH", "price") == 5003.0
    assert at("09:31", 30, "PM_HIGH", "price") == 5004.0                # trade at ts counts
    assert at("09:32", 0, "PM_HIGH", "price") == 5009.0
    assert at("09:32", 0, "PM_HIGH", "distance") == 5009.0 - 5011.0
    assert at("09:32", 0, "SMA_200", "distance") == 5009.0 - 5001.5
    assert np.isnan(at("09:31", 0, "OR_LOW", "distance"))


# --- forward-filled events -------------------------------------------------------------------

def test_forward_fill_picks_the_latest_event_of_the_kind():
    ev = make_events([
        {"ts_ns": t("09:35", 5), "kind": "OR_HIGH", "tape_imbalance": 0.25, "stacking_5pt": 2,
         "gex_nonzero": True, "barrier_state": "WALL", "atr": 3.0},
        {"ts_ns": t("09:40"), "kind": "OR_HIGH", "tape_imbalance": -0.5, "stacking_5pt": 1,
         "gex_nonzero": False, "barrier_state": "VACUUM", "atr": 4.0},
        {"ts_ns": t("09:37"), "kind": "PM_LOW", "tape_imbalance": 0.75, "level_price": 4990.0},
    ])
    ids = list(ev["event_id"])
    st = state_table(make_day(events=ev)).state_table.set_index(["ts_ns", "level_kind_name"])
    first, second = ev.loc[0, "event_id"], ev.loc[2, "event_id"]
    pm = ev.loc[1, "event_id"]
    assert {first, second, pm} == set(ids)

    row = st.loc[(t("09:35"), "OR_HIGH")]
    assert row["last_event_id"] is None and np.isnan(row["seconds_since_event"])
    assert np.isnan(row["tape_imbalance"]) and pd.isna(row["stacking_5pt"])
    assert pd.isna(row["gex_nonzero"]) and pd.isna(row["barrier_state"])

    row = st.loc[(t("09:35", 30), "OR_HIGH")]
    assert row["last_event_id"] == first and row["seconds_since_event"] == 25.0
    assert row["tape_imbalance"] == 0.25 and row["stacking_5pt"] == 2
    assert row["gex_nonzero"] is True or row["gex_nonzero"] == True  # noqa: E712 (nullable)
    assert row["barrier_state"] == "WALL" and row["atr"] == 3.0

    row = st.loc[(t("09:39", 30), "OR_HIGH")]
    assert row["last_event_id"] == first and row["seconds_since_event"] == 265.0

    row = st.loc[(t("09:40"), "OR_HIGH")]                              # event at ts counts
    assert row["last_event_id"] == second and row["seconds_since_event"] == 0.0
    assert row["tape_imbalance"] == -0.5 and row["barrier_state"] == "VACUUM"

    row = st.loc[(t("12:29", 30), "OR_HIGH")]
    assert row["last_event_id"] == second
    assert row["seconds_since_event"] == (t("12:29", 30) - t("09:40")) / NS_PER_S

    assert st.loc[(t("09:37"), "PM_LOW"), "last_event_id"] == pm
    assert st.loc[(t("09:37"), "PM_LOW"), "tape_imbalance"] == 0.75
    assert st.loc[(t("09:36", 30), "PM_LOW"), "last_event_id"] is None
    for kind in ("PM_HIGH", "OR_LOW", "SMA_200", "SMA_400"):
        assert st.xs(kind, level="level_kind_name")["last_event_id"].isna().all()

    # nullable dtypes keep integers/booleans honest where no event exists yet
    table = state_table(make_day(events=ev)).state_table
    assert str(table["stacking_5pt"].dtype) == "Int32"
    assert str(table["gex_nonzero"].dtype) == "boolean"
    assert table["tape_imbalance"].dtype == np.float64


def test_simultaneous_events_of_a_kind_resolve_deterministically():
    ts = t("10:00")
    a = make_events([{"ts_ns": ts, "kind": "SMA_200", "level_price": 5000.0, "mass": 1.0},
                     {"ts_ns": ts, "kind": "SMA_200", "level_price": 5001.0, "mass": 2.0}])
    b = a.iloc[::-1].reset_index(drop=True)
    sa = state_table(make_day(events=a)).state_table
    sb = state_table(make_day(events=b)).state_table
    pd.testing.assert_frame_equal(sa, sb)
    row = sa[(sa["ts_ns"] == ts) & (sa["level_kind_name"] == "SMA_200")].iloc[0]
    assert row["last_event_id"] == max(a["event_id"])


def test_carries_exactly_the_manifest_feature_columns_and_no_label():
    ev = random_events()
    ev["bar_ns"] = ev["ts_ns"] // NS_PER_MIN * NS_PER_MIN                # stage-5 bookkeeping
    st = state_table(make_day(events=ev, trades=make_trades(), levels=make_levels())).state_table
    assert carried_feature_columns(ev) == MANIFEST.feature_columns
    assert list(st.columns) == ["ts_ns", "timestamp", "level_kind", "level_kind_name",
                                "level_price", "price", "distance", "last_event_id",
                                "seconds_since_event"] + MANIFEST.feature_columns
    assert not set(st.columns) & set(MANIFEST.label_columns)
    assert not any(c.startswith(("outcome", "time_to_", "excursion_", "strength_"))
                   for c in st.columns)
    assert "bar_ns" not in st.columns


def test_zero_events():
    st = state_table(make_day(trades=make_trades(), levels=make_levels())).state_table
    assert len(st) == 2160
    assert st["last_event_id"].isna().all() and st["seconds_since_event"].isna().all()
    assert list(st.columns[9:]) == MANIFEST.feature_columns
    assert st["tape_imbalance"].isna().all() and st["stacking_2pt"].isna().all()
    assert st["price"].notna().all()
    # a bare empty events frame (no columns) also works
    day = make_day(events=pd.DataFrame(), trades=make_trades(), levels=make_levels())
    bare = state_table(day).state_table
    assert len(bare) == 2160 and list(bare.columns) == list(st.columns[:9])


def test_requires_inputs():
    day = make_day().replace(levels=None)
    with pytest.raises(ValueError, match="levels"):
        state_table(day)


def test_inputs_are_not_mutated_and_output_is_deterministic():
    ev, tr, lv = random_events(), make_trades(), make_levels()
    copies = [x.copy(deep=True) for x in (ev, tr, lv)]
    day = make_day(events=ev, trades=tr, levels=lv)
    out1 = state_table(day)
    out2 = state_table(day)
    for orig, copy in zip((ev, tr, lv), copies):
        pd.testing.assert_frame_equal(orig, copy)
    assert out1.events is ev and day.state_table is None
    pd.testing.assert_frame_equal(out1.state_table, out2.state_table)


# --- causality -------------------------------------------------------------------------------

@pytest.mark.parametrize("cut", ["09:30", "10:17", "11:02", "12:29"])
def test_rows_do_not_change_when_the_future_changes(cut):
    T = t(cut, 30)
    ev, tr, lv = random_events(n=60), make_trades(), make_levels()
    base = state_table(make_day(events=ev, trades=tr, levels=lv)).state_table

    rng = np.random.default_rng(7)
    ev2 = ev.copy()
    later = ev2["ts_ns"] > T
    ev2.loc[later, "tape_imbalance"] = rng.uniform(5, 9, later.sum())      # later features
    ev2.loc[later, "stacking_5pt"] = 99
    ev2["outcome"] = "BREAK"                                                # every label
    ev2["time_to_break"] = -1.0
    extra = make_events([{"ts_ns": T + NS_PER_S, "kind": k, "tape_imbalance": 42.0}
                         for k in KINDS])                                   # new later events
    ev2 = pd.concat([ev2, extra], ignore_index=True).sort_values("ts_ns", kind="stable")
    tr2 = tr.copy()
    tr2.loc[tr2["ts_ns"] > T, "price"] += 100.0
    tr2 = pd.concat([tr2, pd.DataFrame({"ts_ns": [T + 1], "price": [1.0], "size": [1],
                                        "aggressor": [1]})]).sort_values("ts_ns", kind="stable")
    lv2 = lv.copy()
    for k in KINDS:
        lv2.loc[lv2["bar_ns"] > T, k] = -7.0

    moved = state_table(make_day(events=ev2, trades=tr2, levels=lv2)).state_table
    past_b = base[base["ts_ns"] <= T].reset_index(drop=True)
    past_m = moved[moved["ts_ns"] <= T].reset_index(drop=True)
    assert len(past_b) > 0
    pd.testing.assert_frame_equal(past_b, past_m)
    # ...while the future did change (the test has teeth)
    fut_b = base[base["ts_ns"] > T].reset_index(drop=True)
    fut_m = moved[moved["ts_ns"] > T].reset_index(drop=True)
    if len(fut_b):
        assert not fut_b.equals(fut_m)
