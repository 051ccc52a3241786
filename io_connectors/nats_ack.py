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
