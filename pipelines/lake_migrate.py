"""Migrate a lake written before the clash-free layout (once).

    python -m pipelines.lake_migrate [--data_root D] [--dry_run]

Moves Bronze and Gold streaming files from ``symbol=``/``underlying=`` folders to
``root=``, rewrites each Silver version from ``date=D/{signals,state_table,episodes}.parquet,
lineage.json`` into one Hive dataset per table (``<table>/session_date=D/part-0.parquet``,
``lineage/D.json``) with microsecond timestamps, and rewrites Gold training files with
nanosecond timestamps (their metadata and catalog SHA-256 follow).  Works on local and S3
lakes; idempotent (run it again to finish an interrupted migration).  Readers refuse an
unmigrated lake with an error naming this command.  Exit status 0 when the lake is in the
current layout afterwards (or, with ``--dry_run``, already was), 1 otherwise, 2 for a bad
flag.
"""
from __future__ import annotations

import argparse
import sys

from io_connectors.config import ConfigError
from io_connectors.lake.legacy_layout import find_legacy, migrate
from io_connectors.lake.storage import LakeStorage, resolve_data_root
from pipelines.runner_setup import configure_logging, fail


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.lake_migrate",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--data_root", default=None,
                    help="lake root (default: env DATA_ROOT, else configs/lake.yaml)")
    ap.add_argument("--dry_run", action="store_true", help="only list what would move")
    ap.add_argument("--log_level", default="WARNING")
    args = ap.parse_args(argv)
    configure_logging(args.log_level)
    try:
        storage = LakeStorage(resolve_data_root(args.data_root))
    except (ConfigError, ValueError) as exc:
        fail(str(exc))
    counts = migrate(storage, dry_run=args.dry_run, say=lambda s: print(f"  {s}"))
    verb = "would move" if args.dry_run else "moved"
    print(f"{storage.data_root}: {verb} {counts['bronze_gold_files']} Bronze/Gold files, "
          f"{counts['silver_files']} Silver files, {counts['training_files']} training files")
    left = find_legacy(storage)
    if args.dry_run:
        return 0 if not left else 1
    if left:
        print(f"still in the old layout: {left}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
