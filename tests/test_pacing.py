import pytest

from transforms.pacing import paced

S = 10**9


def test_gaps_scaled_by_speed_and_capped():
    events = [(0, "a"), (2 * S, "b"), (2 * S, "c"), (3600 * S, "d"), (3601 * S, "e")]
    got = list(paced(events, speed=2.0, max_gap_s=5.0))
    assert [item for _, item in got] == ["a", "b", "c", "d", "e"]
    assert [due for due, _ in got] == [0.0, 1.0, 1.0, 6.0, 6.5]


def test_speed_zero_is_as_fast_as_possible():
    assert [d for d, _ in paced([(0, 1), (10 * S, 2)], speed=0)] == [0.0, 0.0]


def test_out_of_order_timestamps_never_move_time_back():
    got = [d for d, _ in paced([(5 * S, 1), (4 * S, 2), (6 * S, 3)], speed=1.0)]
    assert got == [0.0, 0.0, 1.0]


def test_negative_speed_rejected():
    with pytest.raises(ValueError):
        list(paced([(0, 1)], speed=-1))
