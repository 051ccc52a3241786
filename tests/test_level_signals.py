"""Parsing ``levels.signals`` snapshots into Gold rows (one per level), and every kind of
invalid snapshot."""
import orjson
import pytest

from transforms.arrow_rows import rows_to_table
from transforms.level_signals import parse_level_signals
from transforms.market_parse import InvalidEvent
from transforms.schemas import LEVEL_SIGNALS

TS_MS = 1734359400_250           # 2024-12-16T14:30:00.250Z


def level(**kw):
    lv = {"id": "PM_HIGH_605775", "price": 6057.75, "kind": "PM_HIGH", "direction": "UP",
          "distance": 4.88, "break_score_raw": 63.05, "break_score_smooth": 61.5,
          "signal": "CONTESTED", "confidence": "MEDIUM",
          "barrier": {"state": "NEUTRAL", "delta_liq": -7, "replenishment_ratio": 1.056,
                      "added": 132, "canceled": 125, "filled": 14},
          "tape": {"imbalance": 0.25, "buy_vol": 10, "sell_vol": 6, "velocity": -0.0125,
                   "sweep": {"detected": True, "direction": "UP", "notional": 1512500.0}},
          "fuel": {"effect": "DAMPEN", "net_dealer_gamma": 12000.5, "call_wall": 6060.0,
                   "put_wall": 6030.0, "hvl": 6050.0},
          "runway": {"direction": "UP", "next_obstacle": {"id": "OR_HIGH_606525", "price": 6065.25},
                     "distance": 7.5, "quality": "OBSTRUCTED"},
          "note": "PM_HIGH 6057.75 contested up, dist 4.88"}
    lv.update(kw)
    return lv


def snapshot(levels=None, **kw):
    ev = {"ts": TS_MS, "spy": {"spot": 6052.875, "bid": 6052.75, "ask": 6053.0},
          "levels": [level(), level(id="PM_LOW_604800", kind="PM_LOW", price=6048.0)]
          if levels is None else levels}
    ev.update(kw)
    return ev


def parse(ev, default="ES"):
    return parse_level_signals(orjson.dumps(ev), default)


def test_one_row_per_level_in_schema_order_and_types():
    snap = parse(snapshot())
    assert (snap.partition, snap.date, snap.hour) == ("ES", "2024-12-16", 14)
    table = rows_to_table(snap.rows, LEVEL_SIGNALS)
    assert table.schema == LEVEL_SIGNALS and table.num_rows == 2
    first, second = table.to_pylist()
    assert first == {
        "ts_event_ns": TS_MS * 1_000_000, "underlying": "ES", "spot": 6052.875,
        "bid": 6052.75, "ask": 6053.0, "level_id": "PM_HIGH_605775", "level_price": 6057.75,
        "level_kind": "PM_HIGH", "direction": "UP", "distance": 4.88,
        "break_score_raw": 63.05, "break_score_smooth": 61.5, "signal": "CONTESTED",
        "confidence": "MEDIUM", "barrier_state": "NEUTRAL", "barrier_delta_liq": -7,
        "barrier_replenishment_ratio": 1.056, "barrier_added": 132, "barrier_canceled": 125,
        "barrier_filled": 14, "tape_imbalance": 0.25, "tape_buy_vol": 10, "tape_sell_vol": 6,
        "tape_velocity": -0.0125, "tape_sweep_detected": True, "tape_sweep_direction": "UP",
        "tape_sweep_notional": 1512500.0, "fuel_effect": "DAMPEN",
        "fuel_net_dealer_gamma": 12000.5, "fuel_call_wall": 6060.0, "fuel_put_wall": 6030.0,
        "fuel_hvl": 6050.0, "runway_direction": "UP", "runway_next_obstacle_id": "OR_HIGH_606525",
        "runway_next_obstacle_price": 6065.25, "runway_distance": 7.5,
        "runway_quality": "OBSTRUCTED", "note": "PM_HIGH 6057.75 contested up, dist 4.88"}
    assert second["level_id"] == "PM_LOW_604800" and second["level_price"] == 6048.0
    assert second["ts_event_ns"] == first["ts_event_ns"] and second["spot"] == 6052.875


def test_integer_json_numbers_become_floats_and_bools_stay_bools():
    snap = parse(snapshot([level(price=6058, distance=5, tape=dict(level()["tape"], velocity=0))]))
    row = rows_to_table(snap.rows, LEVEL_SIGNALS).to_pylist()[0]
    assert row["level_price"] == 6058.0 and isinstance(row["level_price"], float)
    assert isinstance(row["tape_velocity"], float) and row["tape_sweep_detected"] is True


def test_nullable_fields_null_or_absent():
    lv = level(note=None)
    lv["tape"]["sweep"] = {"detected": False, "direction": None, "notional": 0.0}
    lv["fuel"] = {"effect": "NEUTRAL", "net_dealer_gamma": 1.0}          # walls absent
    lv["runway"] = {"direction": "DOWN", "next_obstacle": None, "distance": None,
                    "quality": "CLEAR"}
    absent = level()
    del absent["note"]
    empty_note = level(note="")
    rows = rows_to_table(parse(snapshot([lv, absent, empty_note])).rows, LEVEL_SIGNALS).to_pylist()
    r = rows[0]
    assert r["tape_sweep_detected"] is False and r["tape_sweep_direction"] is None
    assert r["fuel_call_wall"] is None and r["fuel_put_wall"] is None and r["fuel_hvl"] is None
    assert r["runway_next_obstacle_id"] is None and r["runway_next_obstacle_price"] is None
    assert r["runway_distance"] is None and r["note"] is None
    assert rows[1]["note"] is None and rows[2]["note"] == ""


def test_empty_levels_is_a_valid_snapshot_without_rows():
    snap = parse(snapshot([], ts=1734390000_000))            # 2024-12-16T23:00:00Z
    assert snap.rows == [] and (snap.partition, snap.date, snap.hour) == ("ES", "2024-12-16", 23)


def test_underlying_from_the_payload_else_from_the_configured_default():
    assert parse(snapshot(), default="MES").partition == "MES"
    snap = parse(snapshot(underlying="NQ"), default="ES")
    assert snap.partition == "NQ" and {r[1] for r in snap.rows} == {"NQ"}
    with pytest.raises(ValueError, match="default underlying"):
        parse(snapshot(), default="../x")


def test_hour_and_date_are_utc_of_ts():
    snap = parse(snapshot(ts=1734393599_999))                 # 2024-12-16T23:59:59.999Z
    assert (snap.date, snap.hour) == ("2024-12-16", 23)
    assert parse(snapshot(ts=1734393600_000)).date == "2024-12-17"


def test_real_synthetic_payloads_parse():
    from transforms.synthetic_session import synthetic_session
    n = 0
    for subject, ev in synthetic_session("2024-12-16", scale=0.005, seed=3):
        if subject != "levels.signals":
            continue
        snap = parse(ev)
        assert len(snap.rows) == len(ev["levels"]) and snap.partition == "ES"
        rows_to_table(snap.rows, LEVEL_SIGNALS)
        n += 1
        if n == 400:
            break
    assert n == 400


def _without(path):
    ev = snapshot()
    obj = ev
    *parents, last = path
    for p in parents:
        obj = obj[p]
    del obj[last]
    return ev


def _with(path, value):
    ev = snapshot()
    obj = ev
    *parents, last = path
    for p in parents:
        obj = obj[p]
    obj[last] = value
    return ev


INVALID = [
    (b"\xff\xfe\x00", "not valid UTF-8"),
    (b"{not json", "not JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (_without(["ts"]), "missing field 'ts'"),
    (_with(["ts"], 1734359400.5), "'ts' must be an integer"),
    (_with(["ts"], "1734359400000"), "'ts' must be an integer"),
    (_with(["ts"], True), "'ts' must be an integer"),
    (_with(["ts"], 946684799_999), "out of range"),                 # 1999-12-31
    (_with(["ts"], 4102444800_000), "out of range"),                # 2100-01-01
    (_with(["ts"], 1734359400_000_000_000), "out of range"),        # ns instead of ms
    (_without(["spy"]), "missing field 'spy'"),
    (_with(["spy"], [6052.0]), "'spy' must be an object"),
    (_with(["spy", "spot"], "6052"), "spy: field 'spot' must be a number"),
    (_with(["spy", "spot"], 0), "spy: field 'spot'"),
    (_without(["spy", "bid"]), "spy: missing field 'bid'"),
    (_without(["levels"]), "missing field 'levels'"),
    (_with(["levels"], {"id": "x"}), "'levels' must be a list"),
    (_with(["levels"], [level(), 5]), "levels[1]: must be an object"),
    (_with(["underlying"], "../etc"), "'underlying'='../etc' is not a plain identifier"),
    (_with(["underlying"], 7), "'underlying'=7 is not a plain identifier"),
    (_with(["levels", 0, "id"], "../../x"), "levels[0]: field 'id'"),
    (_with(["levels", 1, "kind"], "PM HIGH"), "levels[1]: field 'kind'"),
    (_with(["levels", 0, "kind"], None), "levels[0]: missing field 'kind'"),
    (_with(["levels", 0, "price"], 0.0), "levels[0]: field 'price'"),
    (_with(["levels", 0, "distance"], "far"), "levels[0]: field 'distance' must be a number"),
    (_with(["levels", 0, "confidence"], 0.7), "levels[0]: field 'confidence'"),
    (_with(["levels", 0, "signal"], ""), "levels[0]: field 'signal'"),
    (_without(["levels", 0, "barrier"]), "levels[0]: missing field 'barrier'"),
    (_with(["levels", 0, "barrier", "added"], 1.5), "levels[0]: barrier: field 'added' must be an integer"),
    (_with(["levels", 0, "barrier", "filled"], -1), "levels[0]: barrier: field 'filled'=-1 out of range"),
    (_with(["levels", 0, "barrier", "state"], "a/b"), "levels[0]: barrier: field 'state'"),
    (_with(["levels", 0, "tape", "buy_vol"], "10"), "levels[0]: tape: field 'buy_vol'"),
    (_with(["levels", 0, "tape", "sweep"], None), "levels[0]: tape: missing field 'sweep'"),
    (_with(["levels", 0, "tape", "sweep", "detected"], 1),
     "levels[0]: tape: sweep: field 'detected' must be a boolean"),
    (_with(["levels", 0, "tape", "sweep", "direction"], "up!"), "tape: sweep: field 'direction'"),
    (_with(["levels", 0, "fuel", "call_wall"], "6060"), "levels[0]: fuel: field 'call_wall'"),
    (_with(["levels", 0, "fuel"], "NEUTRAL"), "levels[0]: field 'fuel' must be an object"),
    (_with(["levels", 0, "runway", "next_obstacle"], {"id": "x y", "price": 1.0}),
     "levels[0]: runway: next_obstacle: field 'id'"),
    (_with(["levels", 0, "runway", "next_obstacle"], {"id": "OR_HIGH"}),
     "levels[0]: runway: next_obstacle: missing field 'price'"),
    (_with(["levels", 0, "runway", "distance"], "7.5"), "levels[0]: runway: field 'distance'"),
    (_without(["levels", 0, "runway", "quality"]), "levels[0]: runway: missing field 'quality'"),
    (_with(["levels", 0, "note"], 12), "levels[0]: field 'note' must be a string or null"),
]


@pytest.mark.parametrize("payload,reason", INVALID, ids=[r for _, r in INVALID])
def test_invalid_snapshots_raise_with_a_precise_reason(payload, reason):
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    with pytest.raises(InvalidEvent) as exc:
        parse_level_signals(raw, "ES")
    assert reason in str(exc.value)


def test_a_bad_level_rejects_the_whole_snapshot():
    ev = snapshot([level(), level(id="bad id")])
    with pytest.raises(InvalidEvent, match=r"levels\[1\]"):
        parse(ev)


def test_a_key_written_twice_rejects_the_snapshot():
    good = orjson.dumps(snapshot())
    for bad, key in [(good[:-1] + b',"ts":1734359400000}', "ts"),
                     (good.replace(b'"added":', b'"added":1,"added":', 1), "added")]:
        with pytest.raises(InvalidEvent, match=f"duplicate key '{key}'"):
            parse_level_signals(bad, "ES")
    assert parse_level_signals(good, "ES").rows
