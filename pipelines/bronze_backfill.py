"""Bounded Bronze backfill: Databento DBN files straight into Bronze.

    python -m pipelines.bronze_backfill --files F [F ...] --data_root D [--runner ...]

Same layout, schema and validation as the streaming path: the DBN records become bus
events (``io_connectors.dbn.decode``), then go through the same ``ParseMarketMessages``
(invalid ones to the dead-letter set) and ``WriteParquetShards``.  Shards are cut
deterministically and named by a hash of their rows, so re-running a backfill over the
same files adds nothing.
"""
from __future__ import annotations

import logging
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from io_connectors.config import ConfigError, load_config
from io_connectors.dbn.source import ReadDbnMessages
from io_connectors.lake.storage import LakeStorage, parquet_options, resolve_data_root
from io_connectors.lake.parquet_shards import WriteParquetShards
from pipelines.cli import add_log_level, parse_options_cli
from pipelines.runner_setup import (UsageError, configure_logging, fail, prepare_runner,
                                    reject_unknown_flags)
from pipelines.streaming_launcher import summarize
from transforms.bronze_route import ParseMarketMessages
from transforms.flush_policy import BoundedShards
from transforms.partitioning import shard_layout

_LOG = logging.getLogger("bronze_backfill")


class BackfillOptions(PipelineOptions):
    """The backfill's flags (Beam's own options pass through)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--files", nargs="+", default=None, metavar="FILE",
                            help="DBN files (.dbn or .dbn.zst), definitions included")
        parser.add_argument("--data_root", default=None,
                            help="lake root (default: env DATA_ROOT, else configs/lake.yaml)")
        parser.add_argument("--include_spreads", action="store_true",
                            help="keep calendar-spread instruments (default: skipped, counted)")
        parser.add_argument("--shard_max_events", type=int, default=None,
                            help="rows per shard (default: the Bronze flush size)")
        add_log_level(parser)


def build(p: beam.Pipeline, files: list[str], storage: LakeStorage, max_events: int,
          include_spreads: bool = False):
    """Adds the backfill graph to ``p``; returns the (file, rows) PCollection written."""
    return (p
            | "ReadDbn" >> ReadDbnMessages(files, include_spreads=include_spreads)
            | "Parse" >> ParseMarketMessages()
            | "Shards" >> BoundedShards(max_events)
            | "WriteShards" >> WriteParquetShards(storage, shard_layout, None, parquet_options(),
                                                  content_addressed=True))


def main(argv=None) -> int:
    args = parse_options_cli("pipelines.bronze_backfill", __doc__, BackfillOptions, argv,
                             required=("--files",))
    options = BackfillOptions(args)
    o = options.view_as(BackfillOptions)
    configure_logging(o.log_level)
    try:
        reject_unknown_flags(args)
        if not o.files:
            raise UsageError("--files needs at least one DBN file")
        max_events = o.shard_max_events or int(
            load_config("lake").get("flush", {}).get("bronze", {}).get("max_events", 1000))
        if max_events < 1:
            raise UsageError("--shard_max_events must be >= 1")
        storage = LakeStorage(resolve_data_root(o.data_root))
        prepare_runner(options, streaming=False)
    except (UsageError, ConfigError) as exc:
        fail(str(exc))
    p = beam.Pipeline(options=options)
    try:
        build(p, list(o.files), storage, max_events, o.include_spreads)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    result = p.run()
    result.wait_until_finish()
    _LOG.info("backfill of %d files into %s: %s", len(o.files), storage.data_root,
              summarize(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
