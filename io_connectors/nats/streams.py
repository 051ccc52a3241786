"""Idempotent JetStream set-up: the lake's streams and its durable push consumers.

``ensure_streams`` creates ``MARKET_DATA`` and ``LEVEL_SIGNALS`` (file storage, 24 h max
age) when missing; a stream that already exists, under the configured name or under
another name that already captures the same subjects, is accepted and used as it is.
"""
from __future__ import annotations

import dataclasses
import logging

from nats.errors import Error as NatsError
from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError

from io_connectors.config import ConfigError, load_config, require

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple
    storage: str = "file"
    max_age_s: float = 86400.0
    duplicate_window_s: float = 120.0


@dataclasses.dataclass(frozen=True)
class ConsumerSpec:
    """A durable push consumer with explicit acks, delivered to a queue group."""
    stream: str
    durable: str
    ack_wait_s: float
    max_ack_pending: int

    @property
    def deliver_subject(self) -> str:
        return f"_lake.deliver.{self.durable}"


def stream_specs() -> list[StreamSpec]:
    cfg = load_config("streams")
    out = []
    for name, s in require(cfg, "streams", "streams.yaml").items():
        subjects = s.get("subjects")
        if not subjects or not all(isinstance(x, str) for x in subjects):
            raise ConfigError(f"streams.yaml: stream {name} needs a list of subjects")
        out.append(StreamSpec(name, tuple(subjects), s.get("storage", "file"),
                              float(s.get("max_age_s", 86400)),
                              float(s.get("duplicate_window_s", 120))))
    return out


def consumer_spec(role: str, ack_wait_s: float | None = None,
                  max_ack_pending: int | None = None, durable: str | None = None) -> ConsumerSpec:
    """The consumer of ``configs/streams.yaml`` ``consumers.<role>``, with overrides."""
    c = require(load_config("streams"), f"consumers.{role}", "streams.yaml")
    spec = ConsumerSpec(stream=c["stream"], durable=durable or c["durable"],
                        ack_wait_s=float(ack_wait_s or c["ack_wait_s"]),
                        max_ack_pending=int(max_ack_pending or c["max_ack_pending"]))
    if spec.ack_wait_s <= 0 or spec.max_ack_pending <= 0:
        raise ConfigError(f"consumer {spec.durable}: ack_wait_s and max_ack_pending must be > 0")
    return spec


async def ensure_streams(js, specs: list[StreamSpec] | None = None) -> dict[str, str]:
    """Creates missing streams; returns {configured name: name of the stream in use}."""
    resolved = {}
    for spec in specs or stream_specs():
        try:
            await js.stream_info(spec.name)
            resolved[spec.name] = spec.name
            continue
        except NotFoundError:
            pass
        config = api.StreamConfig(
            name=spec.name, subjects=list(spec.subjects),
            storage=api.StorageType.FILE if spec.storage == "file" else api.StorageType.MEMORY,
            retention=api.RetentionPolicy.LIMITS, max_age=spec.max_age_s,
            duplicate_window=spec.duplicate_window_s)
        try:
            await js.add_stream(config)
            resolved[spec.name] = spec.name
            _LOG.info("created stream %s %s", spec.name, list(spec.subjects))
        except BadRequestError as exc:
            # Another stream already captures these subjects: accept and use it.
            try:
                other = await js.find_stream_name_by_subject(spec.subjects[0])
            except NatsError:
                raise exc from None
            _LOG.info("subjects of %s are captured by existing stream %s; using it",
                      spec.name, other)
            resolved[spec.name] = other
    return resolved


async def ensure_consumer(js, spec: ConsumerSpec, stream_name: str | None = None) -> None:
    """Creates or updates the durable push consumer (explicit ack, queue-group delivery)."""
    config = api.ConsumerConfig(
        durable_name=spec.durable, deliver_subject=spec.deliver_subject,
        deliver_group=spec.durable, deliver_policy=api.DeliverPolicy.ALL,
        ack_policy=api.AckPolicy.EXPLICIT, ack_wait=spec.ack_wait_s,
        max_ack_pending=spec.max_ack_pending, replay_policy=api.ReplayPolicy.INSTANT)
    await js.add_consumer(stream_name or spec.stream, config)
