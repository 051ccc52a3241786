"""Shard keys, Hive folders, folder key names and path sanitising."""
import pytest

from transforms.partitioning import (DATE_KEY, HOUR_KEY, ROOT_KEY, SESSION_DATE_KEY, bronze_key,
                                     dead_letter_key, partition_folder, safe_component,
                                     shard_folder, shard_layout)
from transforms.schemas import DATASETS_BY_LAYER, DEAD_LETTER, FUTURES_MBP10, schema_for


def test_bronze_folders():
    assert shard_folder(bronze_key("futures/trades", "ES", "2024-12-16", 9)) == \
        "bronze/futures/trades/root=ES/date=2024-12-16/hour=09"
    assert shard_folder(bronze_key("options/trades", "ES", "2024-12-16", 14)) == \
        "bronze/options/trades/root=ES/date=2024-12-16/hour=14"
    folder, schema, sort = shard_layout(bronze_key("futures/mbp10", "NQ", "2025-01-02", 0))
    assert folder.endswith("root=NQ/date=2025-01-02/hour=00") and schema == FUTURES_MBP10
    assert sort == "ts_event_ns"


def test_partition_folder_matches_the_shard_folders_at_every_depth():
    key = bronze_key("futures/trades", "ES", "2024-12-16", 9)
    assert partition_folder("bronze", "futures/trades", "ES", "2024-12-16", 9) == shard_folder(key)
    assert partition_folder("bronze", "futures/trades", "ES", "2024-12-16") == \
        "bronze/futures/trades/root=ES/date=2024-12-16"
    assert partition_folder("gold", "levels/signals", "ES") == "gold/levels/signals/root=ES"
    assert partition_folder("bronze", "_dead_letter", date="2024-12-16") == \
        shard_folder(dead_letter_key("2024-12-16"))
    with pytest.raises(KeyError):
        partition_folder("bronze", "futures/nope", "ES")


def test_no_folder_key_is_a_column_of_the_files_beneath_it():
    """The clash that made Hive-aware readers replace ESH5 by ES (issue 8)."""
    keys = {ROOT_KEY, DATE_KEY, HOUR_KEY}
    for layer, datasets in DATASETS_BY_LAYER.items():
        for path in list(datasets) + ["_dead_letter"]:
            assert not keys & set(schema_for(path, layer).names), (layer, path)
    assert SESSION_DATE_KEY != "date"


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
