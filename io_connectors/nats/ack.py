"""Acknowledges JetStream messages by their ack tokens (reply subjects).

Called by sinks after the data that holds the messages is durably written: a JetStream ack
is a publish of ``+ACK`` to the message's reply subject, from any connection.  ``ack``
returns once the server has received every ack (a flush round-trip).

The acks of a shard go out as one write of their ``PUB`` commands instead of one
``publish`` call each (a shard is 1000 acks; per-call overhead was ~2 us of the writer's
time per event).  That uses nats-py's internal ``_send_command`` (nats-py is pinned in
requirements.txt); without it, or for a token that is not a plain subject, ``ack`` falls
back to ``publish`` per token.
"""
from __future__ import annotations

import re
from typing import Iterable

from io_connectors.nats import async_runtime
from io_connectors.nats.settings import NatsSettings

_ACK = b"+ACK"
_NOT_PLAIN = re.compile(r"[^\x21-\x7e]")     # whitespace, control or non-ASCII


def ack_commands(tokens: list[str]) -> bytes:
    """The NATS protocol bytes that publish ``+ACK`` to each token, one ``PUB`` each."""
    return b"".join([b"PUB %s 4\r\n+ACK\r\n" % t.encode() for t in tokens])


async def _publish_acks(nc, tokens: list[str]) -> None:
    send = getattr(nc, "_send_command", None)
    if send is not None and not nc.is_closed and not _NOT_PLAIN.search("".join(tokens)):
        await send(ack_commands(tokens))
    else:
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
