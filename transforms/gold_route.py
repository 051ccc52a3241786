"""``ParseLevelSignals``: NATS ``levels.*`` messages -> keyed Gold level rows or dead
letters, one element per message; ``FlattenSignalShards``: message shards -> the shard
writer's ``(key, [(token, row), ...])``."""
from __future__ import annotations

import apache_beam as beam

from transforms import level_signals
from transforms.dead_letters import ACK, PAYLOAD, SUBJECT, dead_letter
from transforms.json_fields import InvalidEvent, is_plain_identifier
from transforms.partitioning import shard_key


def route_signal_message(msg, default_underlying: str) -> tuple:
    """One NatsMessage tuple -> ``(shard_key, (ack_token, [row, ...]))``: the Gold rows of
    a valid snapshot (none for an empty ``levels`` list) keyed by (``levels/signals``,
    underlying, UTC date, UTC hour), else ``(dead_letter_key, (ack_token, [dead_row]))``.
    Other ``levels.*`` subjects are dead-lettered.  Never raises."""
    subject = msg[SUBJECT]
    if subject != level_signals.SUBJECT:
        return _dead(msg, f"unknown subject {subject!r}")
    try:
        snap = level_signals.parse_level_signals(msg[PAYLOAD], default_underlying)
    except InvalidEvent as exc:
        return _dead(msg, str(exc))
    except Exception as exc:  # pylint: disable=broad-except
        return _dead(msg, f"unexpected parser error: {type(exc).__name__}: {exc}")
    key = shard_key(level_signals.DATASET, snap.partition, snap.date, snap.hour)
    return key, (msg[ACK], snap.rows)


def _dead(msg, reason):
    key, (token, row) = dead_letter(msg, reason)
    return key, (token, [row])


class ParseLevelSignals(beam.PTransform):
    """Input: ``NatsMessage`` tuples from the ``LEVEL_SIGNALS`` stream (``levels.*``).

    Output: exactly ONE element per message, ``(shard_key, (ack_token, [row, ...]))``:
    a valid ``levels.signals`` snapshot gives its rows (one per level, ``LEVEL_SIGNALS``
    order; an empty list for a snapshot without levels) keyed ``levels/signals|<underlying>
    |<UTC date>|<UTC hour>``; anything else (bad payload, other subject) one dead-letter
    row keyed ``_dead_letter|<UTC date>``.  Nothing is dropped, and all rows of a message
    share its key, so a flush that counts these elements counts messages (snapshots), keeps
    a message's rows in one shard and acks it exactly once.

    Args:
      default_underlying: the partition value of snapshots without an ``underlying`` field
        (configs/lake.yaml ``gold.underlying``); a plain identifier.
    """

    def __init__(self, default_underlying: str):
        super().__init__()
        if not is_plain_identifier(default_underlying):
            raise ValueError(f"default underlying {default_underlying!r} is not a plain "
                             "identifier ([A-Za-z0-9_], 1-32)")
        self._underlying = default_underlying

    def expand(self, msgs):
        return msgs | beam.Map(route_signal_message, self._underlying)


def flatten_signal_shard(shard) -> tuple:
    """``(key, [(token, [row, ...]), ...])`` (a shard of messages) -> ``(key, [(token,
    row), ...])`` for ``WriteParquetShards``: every row of every message, in order; the
    first row of a message carries its ack token and the others ``None``, and a message
    without rows contributes ``(token, None)`` (acked, nothing written).  So each token
    appears exactly once."""
    key, messages = shard
    out = []
    for token, rows in messages:
        if not rows:
            out.append((token, None))
            continue
        out.append((token, rows[0]))
        out.extend((None, row) for row in rows[1:])
    return key, out


class FlattenSignalShards(beam.PTransform):
    """Input: shards of ``ParseLevelSignals`` elements, ``(key, [(token, [row, ...]),
    ...])`` (e.g. from ``FlushPolicy``).  Output: one ``(key, [(token | None, row | None),
    ...])`` per shard, see ``flatten_signal_shard``; the shard boundaries are kept."""

    def expand(self, shards):
        return shards | beam.Map(flatten_signal_shard)
