"""``GoldWriter``: the seed's streaming Gold API over the Beam Gold streaming pipeline.

    writer = GoldWriter(bus=nats_bus, data_root="data")
    await writer.start()     # launches pipelines.gold_stream, returns once it consumes
    ...
    await writer.stop()      # SIGTERM: stop consuming, flush every buffer, ack, exit 0

See ``pipelines.stream_writer`` for the process model and the arguments.
"""
from __future__ import annotations

from pipelines.stream_writer import StreamWriter


class GoldWriter(StreamWriter):
    """Runs the streaming Gold pipeline (NATS ``levels.signals`` -> one row per level in
    ``gold/levels/signals/root=<U>/date=/hour=``) until stopped.  Guarantees:
    at-least-once (a snapshot is acked only after the shard holding its rows is durably
    written, or, without levels, with its shard), a snapshot's rows always in one shard,
    append-only shards, dead letters in ``gold/_dead_letter`` for bad input.

    Args: those of ``StreamWriter`` (bus, data_root, runner, extra_args = more
    ``gold_stream`` flags such as ``--underlying``, log_path).
    """

    module = "pipelines.gold_stream"
    role = "gold"
