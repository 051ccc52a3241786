"""``ParseMarketMessages``: NATS messages -> keyed Bronze rows, or dead letters."""
from __future__ import annotations

import apache_beam as beam

from transforms import market_parse
from transforms.partitioning import bronze_key, dead_letter_key

# Element positions of a NatsMessage tuple (see io_connectors.nats_source.NatsMessage);
# repeated here so transforms/ does not import the connector.
_SUBJECT, _PAYLOAD, _STREAM_SEQ, _TS_NS, _ACK = range(5)


class _ParseDoFn(beam.DoFn):
    def process(self, msg):
        subject, payload = msg[_SUBJECT], msg[_PAYLOAD]
        try:
            ev = market_parse.parse_market_event(subject, payload)
        except market_parse.InvalidEvent as exc:
            yield self._dead(msg, str(exc))
            return
        except Exception as exc:  # pylint: disable=broad-except
            yield self._dead(msg, f"unexpected parser error: {type(exc).__name__}: {exc}")
            return
        yield (bronze_key(ev.dataset, ev.partition, ev.date, ev.hour), (msg[_ACK], ev.row))

    @staticmethod
    def _dead(msg, reason):
        ts_ns = msg[_TS_NS]
        date, _ = market_parse.utc_date_hour(ts_ns)
        row = (ts_ns, msg[_SUBJECT], msg[_STREAM_SEQ], reason, bytes(msg[_PAYLOAD]))
        return dead_letter_key(date), (msg[_ACK], row)


class ParseMarketMessages(beam.PTransform):
    """Input: ``NatsMessage`` tuples from ``market.*``.

    Output: one PCollection of ``(shard_key, (ack_token, row_tuple))``.  Valid events are
    keyed by (dataset, symbol root or underlying, UTC date, UTC hour) with rows in the
    dataset's schema order; every other message becomes a dead-letter row (time, subject,
    stream sequence, reason, raw payload) keyed ``_dead_letter|<UTC date>``.  Nothing is
    dropped.  One output rather than two tagged ones on purpose: a Flatten to rejoin them
    would break the runner's fusion and move every event through Prism on its own.
    """

    def expand(self, msgs):
        return msgs | beam.ParDo(_ParseDoFn())
