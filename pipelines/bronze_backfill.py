"""Bounded Bronze backfill: Databento DBN files straight into Bronze.

    python -m pipelines.bronze_backfill --files F [F ...] [--data_root D] [--runner ...]

Wiring only:

    ReadDbnShares      files -> shares of files (share k of n decodes every n-th block of
                       records, streaming the file, zstd or not), spread over the workers
    DecodeDbnShares    share -> Bronze rows per shard key, column-wise with every rule as
                       array operations (per message for what that path does not take),
                       dead letters with their reasons; pieces in the staging folder
    WriteBoundedShards per shard key: canonical order, shards of the flush size, each
                       named by a hash of its rows (a re-run adds no file)

Same layout, schemas and rules as the streaming path.  After the job the driver checks
from the records the steps left that every file share and shard key was done (exit 1
naming what is missing otherwise), prints rows, files, dead letters and skips per
dataset, and removes the staging folder.  Without ``--runner`` it runs on the FnApiRunner
with one worker per core, the set-up the README recommends for bulk loads ("Backfill").
"""
from __future__ import annotations

if __name__ == "__main__":      # the driver and, on the default runner, its workers too
    import os as _os
    _os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # idle BLAS threads spin; no BLAS here
    from pipelines.lean_imports import UNUSED_BY_BACKFILL, skip_unused_optional_modules
    skip_unused_optional_modules(UNUSED_BY_BACKFILL)

import logging
import os
import sys
import time
import uuid

import apache_beam as beam
from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions,
                                                  StandardOptions)

from io_connectors.config import ConfigError, bronze_rules, load_config
from io_connectors.dbn.backfill import DecodeDbnShares, ReadDbnShares, unit_records
from io_connectors.dbn.blocks import plan_files, plan_shares, shares_for
from io_connectors.dbn.decode import load_instruments
from io_connectors.dbn.run_report import BackfillReport
from io_connectors.lake.bounded_shards import KEYS, WriteBoundedShards
from io_connectors.lake.staging import Staging
from io_connectors.lake.storage import LakeStorage, parquet_options, resolve_data_root
from io_connectors.preflight import StartupError, check_data_root
from io_connectors.monitoring.batch_progress import Progress
from pipelines.batch_run import run_batch
from pipelines.cli import add_log_level, add_progress, parse_options_cli
from pipelines.runner_setup import (UsageError, configure_logging, dask_partitions, fail,
                                    prepare_runner, reject_unknown_flags,
                                    tune_gc_for_streaming, worker_count)
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
        parser.add_argument("--block_mb", type=float, default=None,
                            help="MB of DBN records per block, the unit of decoding and "
                                 "of memory (default: configs/lake.yaml backfill.block_mb)")
        parser.add_argument("--shares_per_file", type=int, default=None,
                            help="workers sharing one DBN file, each decoding every n-th "
                                 "block (default: configs/lake.yaml backfill."
                                 "shares_per_file)")
        parser.add_argument("--staging_dir", default=None,
                            help="scratch folder for row pieces, seen by every worker "
                                 "(default: <data_root>/_staging/backfill)")
        parser.add_argument("--per_message", action="store_true",
                            help="decode every file record by record through the bus JSON "
                                 "parser (the reference path, about 20x slower)")
        add_progress(parser)
        add_log_level(parser)


def build(p: beam.Pipeline, shares, instruments, storage: LakeStorage, staging: Staging,
          max_events: int, block_bytes: int, rules=None, include_spreads: bool = False):
    """Adds the backfill graph to ``p`` (``shares`` from ``plan_shares``); returns the
    ``(relative_path, rows)`` PCollection of the files written."""
    return (p
            | "ReadDbn" >> ReadDbnShares(shares)
            | "Decode" >> DecodeDbnShares(instruments, staging, rules or bronze_rules(),
                                          block_bytes, include_spreads)
            | "WriteShards" >> WriteBoundedShards(storage, staging, shard_layout, max_events,
                                                  parquet_options()))


def _settings(o: BackfillOptions) -> tuple[int, int]:
    lake = load_config("lake")
    max_events = o.shard_max_events or int(
        lake.get("flush", {}).get("bronze", {}).get("max_events", 1000))
    if max_events < 1:
        raise UsageError("--shard_max_events must be >= 1")
    block_mb = o.block_mb or float(lake.get("backfill", {}).get("block_mb", 8))
    if not 0 < block_mb <= 4096:
        raise UsageError("--block_mb must be in (0, 4096]")
    return max_events, int(block_mb * 2**20)


def _default_runner(options: PipelineOptions, args: list[str], lake: dict) -> None:
    """Without ``--runner``: Beam's FnApiRunner (the DirectRunner's batch engine) in the
    ``backfill.running_mode`` of configs/lake.yaml with one worker per core (unless
    ``--direct_num_workers`` is given): the bulk-load set-up the README recommends."""
    if any(a == "--runner" or a.startswith("--runner=") for a in args):
        return
    options.view_as(StandardOptions).runner = "FnApiRunner"
    direct = options.view_as(DirectOptions)
    mode = lake.get("backfill", {}).get("running_mode", "multi_threading")
    if mode not in ("in_memory", "multi_threading", "multi_processing"):
        raise ConfigError(f"configs/lake.yaml backfill.running_mode={mode!r} is not one of "
                          "in_memory, multi_threading, multi_processing")
    direct.direct_running_mode = mode
    if not any(a.startswith("--direct_num_workers") for a in args):
        direct.direct_num_workers = os.cpu_count() or 1


def _shares_per_file(o: BackfillOptions, options: PipelineOptions, files, lake: dict) -> int:
    """``--shares_per_file``, else configs/lake.yaml ``backfill.shares_per_file``; ``auto``:
    a unit for every worker of the runner (``blocks.shares_for``, ``worker_count``)."""
    if o.shares_per_file is not None:
        if o.shares_per_file < 1:
            raise UsageError("--shares_per_file must be >= 1")
        return o.shares_per_file
    given = lake.get("backfill", {}).get("shares_per_file", "auto")
    if given != "auto":
        if type(given) is not int or given < 1:
            raise ConfigError("configs/lake.yaml backfill.shares_per_file must be a whole "
                              f"number >= 1 or auto, got {given!r}")
        return given
    return shares_for(files, worker_count(options))


def _progress_counts(staging: Staging, shares) -> dict:
    """Files and shares decoded and rows written, from the records the steps leave in the
    staging folder as they finish (any runner)."""
    done = unit_records(staging)
    per_file: dict = {}
    for s in shares:
        per_file.setdefault(s.file.index, []).append(s.unit in done)
    return {"files": sum(all(v) for v in per_file.values()),
            "shares": sum(s.unit in done for s in shares),
            "rows": sum(r["rows"] for r in staging.read_jsons(KEYS))}


def main(argv=None) -> int:
    started = time.monotonic()
    args = parse_options_cli("pipelines.bronze_backfill", __doc__, BackfillOptions, argv,
                             required=("--files",), runner_default=(
                                 "FnApiRunner with one worker per core, configs/lake.yaml "
                                 "backfill.running_mode"), dask=True)
    options = BackfillOptions(args)
    o = options.view_as(BackfillOptions)
    configure_logging(o.log_level)
    try:
        reject_unknown_flags(args)
        if not o.files:
            raise UsageError("--files needs at least one DBN file")
        max_events, block_bytes = _settings(o)
        rules = bronze_rules()
        _default_runner(options, args, load_config("lake"))
        storage = LakeStorage(resolve_data_root(o.data_root))
        staging = Staging(o.staging_dir or f"{storage.data_root}/_staging/backfill",
                          uuid.uuid4().hex[:12])
        prepare_runner(options, streaming=False, dask=True)
        files = plan_files(list(o.files), columnar=not o.per_message)
        shares = plan_shares(files, _shares_per_file(o, options, files, load_config("lake")))
        dask_partitions(options, len(shares))
        instruments = load_instruments([f.path for f in files])
        check_data_root(storage, create=True)        # fail fast: writable, or bucket there
    except (UsageError, ConfigError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    except StartupError as exc:
        fail(str(exc), exc.exit_code)
    p = beam.Pipeline(options=options)
    build(p, shares, instruments, storage, staging, max_events, block_bytes, rules,
          o.include_spreads)
    tune_gc_for_streaming()        # the driver (and in-process runners' workers)
    progress = Progress("backfill", o.progress)
    progress.task("files", total=len(files), unit="file")
    progress.task("shares", total=len(shares), unit="share")
    progress.task("rows", unit="row")
    try:
        run_batch(p, progress, lambda *_: _progress_counts(staging, shares))
        report = BackfillReport.read(staging, shares)
        progress.close(_progress_counts(staging, shares))
    except Exception as exc:  # pylint: disable=broad-except
        # The job failed (a bad file, storage down): files already written stay (each is
        # whole); a re-run writes what is missing.  One line with the cause, not the
        # runner's traceback.
        cause = [line for line in str(exc).strip().splitlines() if line.strip()]
        fail(f"backfill failed ({cause[-1] if cause else repr(exc)}); the files it wrote "
             "are whole and kept, a re-run writes only what is missing", 1)
    finally:
        progress.close()
        staging.remove_run()
    rows = sum(n for d, n in report.rows.items() if not d.startswith("_"))
    elapsed = time.monotonic() - started
    _LOG.info("backfill of %d files (%s records) into %s: %s rows in %.1f s (%s rows/s)%s",
              len(files), f"{report.records:,}", storage.data_root, f"{rows:,}", elapsed,
              f"{rows / max(elapsed, 1e-9):,.0f}", "" if report.complete else ": INCOMPLETE")
    for line in report.lines():
        _LOG.info("  %s", line)
    return 0 if report.complete else 1


if __name__ == "__main__":
    sys.exit(main())
