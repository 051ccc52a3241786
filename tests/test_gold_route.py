"""ParseLevelSignals (one element per message: its level rows or a dead letter) and the
flattening of message shards into the shard writer's (token, row) pairs."""
import collections

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to

from tests.test_level_signals import level, snapshot
from transforms.flush_policy import FlushPolicy
from transforms.gold_route import (FlattenSignalShards, ParseLevelSignals,
                                   flatten_signal_shard, route_signal_message)
from transforms.partitioning import dead_letter_key, shard_key

T0 = 1734359400_000000000      # 2024-12-16T14:30:00Z (JetStream storage time)


def _msg(i, payload, subject="levels.signals"):
    if not isinstance(payload, bytes):
        payload = orjson.dumps(payload)
    return (subject, payload, 100 + i, T0 + i, f"$JS.ACK.LEVEL_SIGNALS.g.1.{100 + i}.{i}.{T0 + i}.0")


MSGS = [
    _msg(0, snapshot()),                                            # 2 levels, hour 14
    _msg(1, snapshot([])),                                          # no levels
    _msg(2, b"{not json"),
    _msg(3, snapshot(), subject="levels.other"),                   # unknown levels.* subject
    _msg(4, snapshot([level()], underlying="NQ", ts=1734363000_000)),  # 15:30Z, NQ
    _msg(5, snapshot([level(id="../x")])),
]
ES_14 = shard_key("levels/signals", "ES", "2024-12-16", 14)


def test_route_keys_each_message_once_with_all_its_rows():
    out = [route_signal_message(m, "ES") for m in MSGS]
    assert [k for k, _ in out] == [ES_14, ES_14, dead_letter_key("2024-12-16"),
                                   dead_letter_key("2024-12-16"),
                                   shard_key("levels/signals", "NQ", "2024-12-16", 15),
                                   dead_letter_key("2024-12-16")]
    assert [v[0] for _, v in out] == [m[4] for m in MSGS], "each value carries its ack token"
    assert [len(v[1]) for _, v in out] == [2, 0, 1, 1, 1, 1]
    rows = out[0][1][1]
    assert [r[5] for r in rows] == ["PM_HIGH_605775", "PM_LOW_604800"]
    dead = out[2][1][1][0]
    assert dead[:3] == (T0 + 2, "levels.signals", 102) and dead[4] == b"{not json"
    assert dead[3].startswith("payload is not JSON")
    assert out[3][1][1][0][3] == "unknown subject 'levels.other'"
    assert "levels[0]: field 'id'" in out[5][1][1][0][3]
    assert out[4][1][1][0][1] == "NQ"


def test_parse_level_signals_on_prism_matches_the_routing(prism_options):
    expected = [route_signal_message(m, "MES") for m in MSGS]
    assert expected[0][0] == shard_key("levels/signals", "MES", "2024-12-16", 14)
    with TestPipeline(options=prism_options(streaming=False)) as p:
        out = p | beam.Create(MSGS) | ParseLevelSignals("MES")
        assert_that(out, equal_to(expected))


def test_parse_level_signals_refuses_a_bad_default_underlying():
    with pytest.raises(ValueError, match="plain identifier"):
        ParseLevelSignals("a/b")


def test_flatten_gives_each_token_once_on_the_first_row_of_its_message():
    key, pairs = flatten_signal_shard(("k", [("t1", ["r1a", "r1b", "r1c"]), ("t2", []),
                                             ("t3", ["r3a"])]))
    assert key == "k"
    assert pairs == [("t1", "r1a"), (None, "r1b"), (None, "r1c"), ("t2", None), ("t3", "r3a")]
    assert flatten_signal_shard(("k", [("t", [])])) == ("k", [("t", None)])


def _check_shards(messages, max_messages):
    """Matcher: every message's token exactly once, followed by exactly its own rows, no
    shard with more than ``max_messages`` messages, all rows of a message in one shard."""
    want = {token: (key, rows) for key, (token, rows) in messages}

    def check(shards):
        seen = collections.Counter()
        for key, pairs in shards:
            tokens = [t for t, _ in pairs if t is not None]
            if len(tokens) > max_messages:
                raise BeamAssertException(f"shard of {len(tokens)} messages")
            current = None
            got = collections.defaultdict(list)
            for token, row in pairs:
                if token is not None:
                    current = token
                    seen[token] += 1
                    if want[token][0] != key:
                        raise BeamAssertException(f"{token} in shard {key}")
                elif current is None:
                    raise BeamAssertException("a row before any token")
                if row is not None:
                    got[current].append(row)
            for token in tokens:
                if got[token] != want[token][1]:
                    raise BeamAssertException(f"rows of {token}: {got[token]}")
        if set(seen) != set(want) or max(seen.values()) != 1:
            raise BeamAssertException(f"tokens seen {seen}")
    return check


def test_flush_counts_messages_and_keeps_a_message_in_one_shard(prism_options):
    """FlushPolicy(3) after ParseLevelSignals: at most 3 messages (not rows) per shard,
    each message whole in one shard, its token once."""
    msgs = [_msg(i, snapshot([level(id=f"L{i}_{j}") for j in range(i % 4)])) for i in range(20)]
    msgs += [_msg(20, b"\xff"), _msg(21, snapshot(ts=1734363000_000))]
    parsed = [route_signal_message(m, "ES") for m in msgs]
    stream = (TestStream().add_elements(msgs[:12]).add_elements(msgs[12:])
              .advance_watermark_to_infinity())
    with TestPipeline(options=prism_options()) as p:
        shards = (p | stream | ParseLevelSignals("ES") | FlushPolicy(3, 60)
                  | FlattenSignalShards())
        assert_that(shards, _check_shards(parsed, 3))
