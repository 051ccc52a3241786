"""Dead letters: a bus message that cannot become a lake row, kept whole with its reason.

A dead-letter row is ``(received_ns, subject, stream_seq, reason, payload)`` (schema
``transforms.schemas.DEAD_LETTER``: JetStream storage time, subject, stream sequence, the
parser's reason and the raw bytes), keyed ``_dead_letter|<UTC date of received_ns>``; the
pipeline's layout puts it under ``<layer>/_dead_letter/date=YYYY-MM-DD``.
"""
from __future__ import annotations

from transforms.market_parse import utc_date_hour
from transforms.partitioning import dead_letter_key

# Element positions of a NatsMessage tuple (see io_connectors.nats.source.NatsMessage);
# repeated here so transforms/ does not import the connector.
SUBJECT, PAYLOAD, STREAM_SEQ, TS_NS, ACK = range(5)


def dead_letter(msg, reason: str) -> tuple:
    """One NatsMessage tuple and a reason -> ``(dead_letter_key, (ack_token, row))``."""
    ts_ns = msg[TS_NS]
    date, _ = utc_date_hour(ts_ns)
    row = (ts_ns, msg[SUBJECT], msg[STREAM_SEQ], reason, bytes(msg[PAYLOAD]))
    return dead_letter_key(date), (msg[ACK], row)
