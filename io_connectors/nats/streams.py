"""Idempotent JetStream set-up: the lake's streams and its durable pull consumers.

``ensure_streams`` creates ``MARKET_DATA`` and ``LEVEL_SIGNALS`` (file storage, 24 h max
age) when missing; a stream that already exists, under the configured name or under
another name that already captures the same subjects, is accepted and used as it is.
``ensure_consumer`` creates the durable pull consumer a pipeline reads (every instance of
a pipeline reads the same one and they share its messages), updates its limits, and
converts a push consumer of the same name left by an earlier version.
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


class ConsumerInUse(RuntimeError):
    """The durable consumer cannot be converted while an older version reads it."""


@dataclasses.dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer with explicit acks, shared by every reader of a role."""
    stream: str
    durable: str
    ack_wait_s: float
    max_ack_pending: int
    max_waiting: int = 512         # pull requests the server keeps waiting at once


def control_subjects(run_id: str) -> dict[str, str]:
    """The NATS subjects of one pipeline instance: ``drain`` (a message asks its readers to
    drain) and ``ready`` (each reader announces that it consumes)."""
    return {kind: f"_lake.control.{run_id}.{kind}" for kind in ("drain", "ready")}


def consumer_active(info) -> bool:
    """True while some reader is attached to the consumer: a waiting pull request (or a
    bound subscription of a push consumer)."""
    return bool(getattr(info, "push_bound", False)) or (info.num_waiting or 0) > 0


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
    """Creates the durable pull consumer (explicit acks, from the start of the stream), or
    updates the limits (``ack_wait``, ``max_ack_pending``, ``max_waiting``) of the existing
    one, keeping its position.

    A push consumer of the same name (written by versions before pull consumers) is
    replaced by a pull consumer that starts at its ack floor: nothing unacked is skipped;
    messages acked above the floor are delivered again (duplicates, which the readers
    drop).  While a reader of the old version is still bound to it, ConsumerInUse."""
    stream = stream_name or spec.stream
    try:
        info = await js.consumer_info(stream, spec.durable)
    except NotFoundError:
        info = None
    limits = dict(ack_wait=spec.ack_wait_s, max_ack_pending=spec.max_ack_pending,
                  max_waiting=spec.max_waiting)
    if info is not None and not info.config.deliver_subject:
        config = info.config
        if any(getattr(config, k) != v for k, v in limits.items()):
            for key, value in limits.items():
                setattr(config, key, value)
            await js.add_consumer(stream, config)
        return
    start = {"deliver_policy": api.DeliverPolicy.ALL}
    if info is not None:                      # a push consumer from an earlier version
        if info.push_bound:
            raise ConsumerInUse(
                f"consumer {spec.durable} on {stream} is a push consumer still read by an "
                "earlier version of this pipeline: stop that one first (this version "
                "converts it to a pull consumer that resumes at its ack floor)")
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        start = {"deliver_policy": api.DeliverPolicy.BY_START_SEQUENCE,
                 "opt_start_seq": floor + 1}
        _LOG.warning("converting push consumer %s on %s to a pull consumer resuming at "
                     "stream sequence %d (messages acked above it are delivered again "
                     "and dropped as duplicates by the readers)", spec.durable, stream,
                     floor + 1)
        await js.delete_consumer(stream, spec.durable)
    await js.add_consumer(stream, api.ConsumerConfig(
        durable_name=spec.durable, ack_policy=api.AckPolicy.EXPLICIT,
        replay_policy=api.ReplayPolicy.INSTANT, **start, **limits))
