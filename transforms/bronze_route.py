"""``ParseMarketMessages`` / ``ParseMarketBatches``: NATS messages -> keyed Bronze rows,
or dead letters."""
from __future__ import annotations

import apache_beam as beam

from transforms import market_parse
from transforms.bronze_rules import DEFAULT_RULES, BronzeRules
from transforms.columnar_trades import SUBJECT as _TRADES
from transforms.columnar_trades import parse_trade_batch
from transforms.dead_letters import ACK as _ACK, PAYLOAD as _PAYLOAD, SUBJECT as _SUBJECT
from transforms.dead_letters import dead_letter as _dead
from transforms.partitioning import bronze_key


def route_message(msg, rules: BronzeRules = DEFAULT_RULES) -> tuple:
    """One NatsMessage tuple -> ``(shard_key, (ack_token, row_tuple))``: the Bronze row of
    a valid event (by ``rules``), else a dead-letter row.  Never raises."""
    subject, payload = msg[_SUBJECT], msg[_PAYLOAD]
    try:
        ev = market_parse.parse_market_event(subject, payload, rules)
    except market_parse.InvalidEvent as exc:
        return _dead(msg, str(exc))
    except Exception as exc:  # pylint: disable=broad-except
        return _dead(msg, f"unexpected parser error: {type(exc).__name__}: {exc}")
    return bronze_key(ev.dataset, ev.partition, ev.date, ev.hour), (msg[_ACK], ev.row)


class ParseMarketMessages(beam.PTransform):
    """Input: ``NatsMessage`` tuples from ``market.*``.

    Output: one PCollection of ``(shard_key, (ack_token, row_tuple))``.  Valid events are
    keyed by (dataset, symbol root or underlying, UTC date, UTC hour) with rows in the
    dataset's schema order; every other message becomes a dead-letter row (time, subject,
    stream sequence, reason, raw payload) keyed ``_dead_letter|<UTC date>``.  Nothing is
    dropped.  One output rather than two tagged ones on purpose: a Flatten to rejoin them
    would break the runner's fusion and move every event through Prism on its own.
    ``rules``: the Bronze rules (price bounds from configs/lake.yaml ``bronze``).
    """

    def __init__(self, rules: BronzeRules = DEFAULT_RULES):
        super().__init__()
        self._rules = rules

    def expand(self, msgs):
        return msgs | beam.Map(route_message, self._rules)


def route_batch(batch, rules: BronzeRules = DEFAULT_RULES) -> list:
    """A list of NatsMessage tuples -> the list of their ``route_message`` results."""
    return [route_message(m, rules) for m in batch]


# Below this many futures trades in a batch the per-message parser is faster: the columnar
# parse costs about 1 ms per batch plus 1.5-2 us per trade, the per-message one 5-7 us per
# trade (measured on the 2-core benchmark machine).  A backlog drain delivers batches of
# 2000; at a steady low rate batches are small and keep the per-message path.
MIN_COLUMNAR_TRADES = 400


def route_batch_columnar(batch, rules: BronzeRules = DEFAULT_RULES) -> list:
    """``route_batch`` with the batch's ``market.futures.trades`` messages parsed
    column-wise (``transforms.columnar_trades``) when all of them are valid: the output
    list then holds the ``route_message`` results of the other messages, in order, followed
    by one ``ColumnarShardPiece`` per shard key of the trades.  When the columnar parser
    refuses (any trade possibly invalid, or fewer than ``MIN_COLUMNAR_TRADES``), the
    result is exactly ``route_batch(batch)``.  Either way every message is in the output
    once, as the same row or dead letter."""
    trades = [m for m in batch if m[_SUBJECT] == _TRADES]
    if len(trades) >= MIN_COLUMNAR_TRADES:
        pieces = parse_trade_batch(trades, rules)
        if pieces is not None:
            out = ([route_message(m, rules) for m in batch if m[_SUBJECT] != _TRADES]
                   if len(trades) != len(batch) else [])
            out.extend(pieces)
            return out
    return [route_message(m, rules) for m in batch]


class ParseMarketBatches(beam.PTransform):
    """``ParseMarketMessages`` for batched input, one element per batch.

    Input: lists of ``NatsMessage`` tuples (``ReadFromNats(..., batches=True)``).  Output:
    one list per input batch (``route_batch_columnar``) of ``(shard_key, (ack_token,
    row_tuple))`` pairs, with exactly the routing of ``ParseMarketMessages`` (valid row or
    dead letter, nothing dropped), except that the futures trades of a batch whose trades
    are all valid come as ``ColumnarShardPiece(key, tokens, table)`` elements holding the
    same rows.  Meant for ``transforms.flush_policy.BatchedFlushPolicy``, which accepts
    both: a whole batch is one element, so the per-element cost of the runner is paid per
    batch, not per event.  ``rules`` as for ``ParseMarketMessages``.
    """

    def __init__(self, rules: BronzeRules = DEFAULT_RULES):
        super().__init__()
        self._rules = rules

    def expand(self, batches):
        return batches | beam.Map(route_batch_columnar, self._rules)
