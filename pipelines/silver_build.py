"""Build a Silver feature set from Bronze.

    python -m pipelines.silver_build --manifest configs/features/v3.1.0.yaml \\
        --dates 2024-12-16,2024-12-17 [--force] [--data_root D] [--runner DirectRunner]

Dates: a comma-separated list, ranges ``2024-12-16..2024-12-20`` (weekdays in between), or
``all`` (every date with Bronze futures trades).  Progress is logged per date; the summary
lists built, skipped and failed dates (with the stage and reason) and the validation
result.  Exit status: 0 when every requested date is built or skipped, 1 when a date
failed, 2 for a bad flag or manifest.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from io_connectors.lake.bronze_reader import BronzeReader
from io_connectors.config import ConfigError
from io_connectors.lake.storage import LakeStorage, resolve_data_root
from pipelines.runner_setup import UsageError, configure_logging, fail, reject_unknown_flags
from pipelines.silver_builder import SilverFeatureBuilder
from transforms.feature_manifest import ManifestError, load_manifest


def parse_dates(spec: str, storage: LakeStorage, root: str) -> list[str]:
    if spec.strip() == "all":
        dates = BronzeReader(storage=storage).available_dates("futures/trades", root)
        if not dates:
            raise UsageError(f"--dates all: no Bronze futures trades for {root} under "
                             f"{storage.data_root}")
        return dates
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        try:
            if ".." in part:
                a, b = (dt.date.fromisoformat(x) for x in part.split("..", 1))
                if b < a:
                    raise UsageError(f"--dates: empty range {part}")
                day = a
                while day <= b:
                    if day.weekday() < 5:
                        out.append(day.isoformat())
                    day += dt.timedelta(days=1)
            else:
                out.append(dt.date.fromisoformat(part).isoformat())
        except ValueError:
            raise UsageError(f"--dates: {part!r} is not YYYY-MM-DD or A..B") from None
    if not out:
        raise UsageError("--dates: no date given")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.silver_build",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, help="feature-set manifest YAML")
    parser.add_argument("--dates", required=True, help="D1,D2 | A..B | all")
    parser.add_argument("--force", action="store_true", help="rebuild dates already built")
    parser.add_argument("--data_root", default=None,
                        help="lake root (default: env DATA_ROOT, else configs/lake.yaml)")
    parser.add_argument("--log_level", default="INFO")
    parser.add_argument("--json", action="store_true", help="print the stats as JSON")
    args, beam_args = parser.parse_known_args(argv)
    configure_logging(args.log_level)
    try:
        manifest = load_manifest(args.manifest)
        storage = LakeStorage(resolve_data_root(args.data_root))
        dates = parse_dates(args.dates, storage, manifest.parameter("bronze.symbol_root"))
        reject_unknown_flags(beam_args, [o for a in parser._actions for o in a.option_strings])
        builder = SilverFeatureBuilder(storage=storage,
                                       pipeline_args=beam_args or ["--runner=DirectRunner"])
        stats = builder.build_feature_set(manifest, dates, force=args.force)
    except (ManifestError, UsageError, ConfigError, ValueError) as exc:
        fail(str(exc))
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
    else:
        print(f"silver {stats['version']} -> {storage.path(builder.store.version_dir(stats['version']))}")
        for d, info in sorted(stats["per_date"].items()):
            line = f"  {d}  {info['status']:<7} {info['signal_count']:>6} signals"
            if info.get("seconds") is not None:
                line += f"  {info['seconds']:.2f} s"
            print(line)
        for d in stats["dates_skipped"]:
            print(f"  {d}  skipped (already built; --force rebuilds)")
        for d, why in sorted(stats["dates_failed"].items()):
            print(f"  {d}  FAILED  {why}")
        for d, text in sorted(stats["warnings"].items()):
            print(f"  {d}  WARNING {text}")
        for name, what in sorted(stats["validation_failed_checks"].items()):
            print(f"  validation check {name} FAILED: {what}")
        print(f"built {len(stats['dates_built'])}, skipped {len(stats['dates_skipped'])}, "
              f"failed {len(stats['dates_failed'])}; {stats['signal_count']} signals in "
              f"{stats['build_seconds']:.1f} s; validation "
              f"{'-' if stats['validation_success'] is None else ('passed' if stats['validation_success'] else 'FAILED (see validation.json)')}")
    return 1 if stats["dates_failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
