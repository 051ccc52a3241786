"""ParseMarketMessages / ParseMarketBatches: routing of bus messages to keyed rows or
dead letters, per message and per batch."""
import apache_beam as beam
import orjson
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.bronze_route import (ParseMarketBatches, ParseMarketMessages, route_batch,
                                     route_message)
from transforms.partitioning import bronze_key, dead_letter_key

T0 = 1734359400_000000000      # 2024-12-16T14:30:00Z


def _msg(i, payload, subject="market.futures.trades"):
    return (subject, payload, 100 + i, T0 + i, f"$JS.ACK.S.c.1.{100 + i}.{i}.{T0 + i}.0")


def _trade(i, symbol="ESZ4"):
    return orjson.dumps(dict(ts_event_ns=T0 + i, ts_recv_ns=T0 + i + 1, source="sim",
                             symbol=symbol, price=6000.25, size=2, aggressor=1, seq=i))


MSGS = [_msg(0, _trade(0)), _msg(1, b"{not json"), _msg(2, _trade(2, "NQH5")),
        _msg(3, _trade(3), subject="market.unknown"), _msg(4, b"\xff\xfe")]


def test_route_message_keys_rows_and_dead_letters():
    out = [route_message(m) for m in MSGS]
    assert [k for k, _ in out] == [bronze_key("futures/trades", "ES", "2024-12-16", 14),
                                   dead_letter_key("2024-12-16"),
                                   bronze_key("futures/trades", "NQ", "2024-12-16", 14),
                                   dead_letter_key("2024-12-16"),
                                   dead_letter_key("2024-12-16")]
    assert [v[0] for _, v in out] == [m[4] for m in MSGS], "each value carries its ack token"
    token, row = out[0][1]
    assert row[:4] == (T0, T0 + 1, "sim", "ESZ4") and row[-1] == 0
    _, (_, dead) = out[1]
    assert dead[0] == T0 + 1 and dead[1] == "market.futures.trades" and dead[2] == 101
    assert dead[3].startswith("payload is not JSON") and dead[4] == b"{not json"
    assert out[3][1][1][3] == "unknown subject 'market.unknown'"
    assert out[4][1][1][3] == "payload is not valid UTF-8"


def test_batches_route_exactly_like_single_messages(prism_options):
    expected = [route_message(m) for m in MSGS]
    assert route_batch(MSGS) == expected
    with TestPipeline(options=prism_options(streaming=False)) as p:
        singles = p | "msgs" >> beam.Create(MSGS) | ParseMarketMessages()
        batched = (p | "batches" >> beam.Create([MSGS[:2], MSGS[2:]]) | ParseMarketBatches()
                   | beam.FlatMap(lambda batch: batch))
        assert_that(singles, equal_to(expected), label="singles")
        assert_that(batched, equal_to(expected), label="batched")
