"""``ParseMarketMessages``: NATS messages -> keyed Bronze rows, or dead letters."""
from __future__ import annotations

import apache_beam as beam

from transforms import market_parse
from transforms.partitioning import bronze_key, dead_letter_key

# Element positions of a NatsMessage tuple (see io_connectors.nats_source.NatsMessage);
# repeated here so transforms/ does not import the connector.
_SUBJECT, _PAYLOAD, _STREAM_SEQ, _TS_NS, _ACK = range(5)
DEAD_LETTER_TAG = "dead_letter"


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
        return beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, (dead_letter_key(date), (msg[_ACK], row)))


class ParseMarketMessages(beam.PTransform):
    """Input: ``NatsMessage`` tuples from ``market.*``.

    Output: a tuple of two PCollections ``(rows, dead_letters)``, both
    ``(shard_key, (ack_token, row_tuple))``.  ``rows`` are valid events keyed by
    (dataset, symbol root or underlying, UTC date, UTC hour) with rows in the dataset's
    schema order; ``dead_letters`` hold every other message (raw payload, subject, stream
    sequence, reason, time) keyed by the UTC date of the message.  Nothing is dropped.
    """

    def expand(self, msgs):
        out = msgs | beam.ParDo(_ParseDoFn()).with_outputs(DEAD_LETTER_TAG, main="rows")
        return out.rows, out[DEAD_LETTER_TAG]
