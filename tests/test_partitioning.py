"""Shard keys, Hive folders and path sanitising."""
import pytest

from transforms.partitioning import bronze_key, dead_letter_key, safe_component, shard_folder, shard_layout
from transforms.schemas import DEAD_LETTER, FUTURES_MBP10


def test_bronze_folders():
    assert shard_folder(bronze_key("futures/trades", "ES", "2024-12-16", 9)) == \
        "bronze/futures/trades/symbol=ES/date=2024-12-16/hour=09"
    assert shard_folder(bronze_key("options/trades", "ES", "2024-12-16", 14)) == \
        "bronze/options/trades/underlying=ES/date=2024-12-16/hour=14"
    folder, schema, sort = shard_layout(bronze_key("futures/mbp10", "NQ", "2025-01-02", 0))
    assert folder.endswith("symbol=NQ/date=2025-01-02/hour=00") and schema == FUTURES_MBP10
    assert sort == "ts_event_ns"


def test_dead_letter_folder():
    folder, schema, sort = shard_layout(dead_letter_key("2024-12-16"))
    assert folder == "bronze/_dead_letter/date=2024-12-16"
    assert schema == DEAD_LETTER and sort == "received_ns"


@pytest.mark.parametrize("bad", ["..", "../x", "a/b", "", ".hidden", "a b", "x\x00"])
def test_unsafe_components_rejected(bad):
    with pytest.raises(ValueError):
        safe_component(bad)
    with pytest.raises(ValueError):
        shard_folder(bronze_key("futures/trades", bad, "2024-12-16", 1))
