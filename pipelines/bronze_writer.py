"""``BronzeWriter``: the seed's streaming-write API over the Beam Bronze pipeline.

    writer = BronzeWriter(bus=nats_bus, data_root="data")
    await writer.start()     # launches pipelines.bronze_stream, returns once it consumes
    ...
    await writer.stop()      # SIGTERM: stop consuming, flush every buffer, ack, exit 0

See ``pipelines.stream_writer`` for the process model and the arguments.
"""
from __future__ import annotations

from pipelines.stream_writer import StreamWriter


class BronzeWriter(StreamWriter):
    """Runs the streaming Bronze pipeline (NATS ``market.*`` -> Bronze Parquet) until
    stopped.  Guarantees of the pipeline: at-least-once (a message is acked only after the
    shard holding it is durably written), append-only shards, dead letters for bad input.

    Args: those of ``StreamWriter`` (bus, data_root, runner, extra_args = more
    ``bronze_stream`` flags, log_path).
    """

    module = "pipelines.bronze_stream"
    role = "bronze"
