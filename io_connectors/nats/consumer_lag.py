"""How far a durable consumer is behind, read from JetStream (``consumer_info``).

``ConsumerLag``: ``num_pending`` (stored, not yet delivered), ``num_ack_pending``
(delivered, not yet acked: the pipeline holds them until their shard is written),
``num_redelivered`` and ``attached`` (a reader is attached: a waiting pull request, or
messages delivered and not yet acked), read in one request.  Lag = ``num_pending + num_ack_pending``.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from nats.js.errors import NotFoundError

from io_connectors.nats.streams import ConsumerSpec, consumer_active, stream_specs


@dataclasses.dataclass(frozen=True)
class ConsumerLag:
    """A durable consumer's state as JetStream reported it (see the module docstring)."""
    stream: str
    durable: str
    num_pending: int
    num_ack_pending: int
    num_redelivered: int
    attached: bool

    @property
    def total(self) -> int:
        return self.num_pending + self.num_ack_pending


async def _stream_name(js, spec: ConsumerSpec) -> str:
    """The stream in use for the configured one: itself, or the stream that captures its
    subjects (``ensure_streams`` accepts such a stream)."""
    try:
        await js.stream_info(spec.stream)
        return spec.stream
    except NotFoundError:
        subjects = next((s.subjects for s in stream_specs() if s.name == spec.stream), ())
        if not subjects:
            raise
        return await js.find_stream_name_by_subject(subjects[0])


async def consumer_lag(js, spec: ConsumerSpec, stream: Optional[str] = None) -> ConsumerLag:
    """The consumer's state now; NotFoundError if the consumer (or stream) does not exist."""
    stream = stream or await _stream_name(js, spec)
    info = await js.consumer_info(stream, spec.durable)
    return ConsumerLag(stream, spec.durable, int(info.num_pending or 0),
                       int(info.num_ack_pending or 0), int(info.num_redelivered or 0),
                       consumer_active(info) or int(info.num_ack_pending or 0) > 0)
