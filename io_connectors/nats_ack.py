"""Acknowledges JetStream messages by their ack tokens (reply subjects).

Called by sinks after the data that holds the messages is durably written: a JetStream ack
is a publish of ``+ACK`` to the message's reply subject, from any connection.  ``ack``
returns once the server has received every ack (a flush round-trip).
"""
from __future__ import annotations

from typing import Iterable

from io_connectors import async_runtime
from io_connectors.nats_settings import NatsSettings

_ACK = b"+ACK"


async def _publish_acks(nc, tokens: list[str]) -> None:
    for token in tokens:
        await nc.publish(token, _ACK)
    await nc.flush()


def ack(settings: NatsSettings, tokens: Iterable[str], timeout: float = 30.0) -> int:
    """Acks every token; returns how many.  Raises if the server cannot be reached."""
    tokens = [t for t in tokens if t]
    if not tokens:
        return 0
    nc = async_runtime.connection(settings)
    async_runtime.run(_publish_acks(nc, tokens), timeout=timeout)
    return len(tokens)


def parse_ack_token(reply: str) -> tuple[int, int, int]:
    """(stream_seq, ts_ns, num_pending) from a JetStream ack subject (v1 and v2 forms)."""
    t = reply.split(".")
    if len(t) == 9:            # $JS.ACK.<stream>.<consumer>.<dlv>.<sseq>.<cseq>.<ts>.<pending>
        return int(t[5]), int(t[7]), int(t[8])
    if len(t) >= 11:           # $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<dlv>.<sseq>...
        return int(t[7]), int(t[9]), int(t[10])
    raise ValueError(f"not a JetStream ack subject: {reply!r}")
