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

import datetime as dt
import json
import sys

from io_connectors.lake.bronze_reader import BronzeReader
from io_connectors.config import ConfigError
from io_connectors.lake.storage import LakeStorage, resolve_data_root
from io_connectors.preflight import StartupError, check_data_root
from pipelines import cli
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
    parser = cli.parser("pipelines.silver_build", __doc__)
    parser.add_argument("--manifest", required=True, metavar="YAML",
                        help="feature-set manifest, e.g. configs/features/v3.1.0.yaml")
    parser.add_argument("--dates", required=True, metavar="DATES",
                        help="D1,D2 (YYYY-MM-DD) | A..B (weekdays from A to B) | all (every "
                             "date with Bronze futures trades)")
    parser.add_argument("--force", action="store_true", help="rebuild dates already built")
    parser.add_argument("--json", action="store_true", help="print the stats as JSON")
    cli.add_batch_flags(parser)
    args, beam_args = cli.parse_batch(parser, argv)
    configure_logging(args.log_level)
    try:
        reject_unknown_flags(beam_args, cli.option_names(parser))
        manifest = load_manifest(args.manifest)
        storage = LakeStorage(resolve_data_root(args.data_root))
        check_data_root(storage, create=False)          # Bronze must be there to read
        dates = parse_dates(args.dates, storage, manifest.parameter("bronze.symbol_root"))
        if not storage.exists("bronze"):
            raise UsageError(f"no Bronze under {storage.data_root} (is --data_root right?); "
                             "nothing was created there")
        builder = SilverFeatureBuilder(storage=storage,
                                       pipeline_args=beam_args or ["--runner=DirectRunner"],
                                       progress=args.progress)
        stats = builder.build_feature_set(manifest, dates, force=args.force)
    except (ManifestError, UsageError, ConfigError, ValueError) as exc:
        fail(str(exc))
    except StartupError as exc:
        fail(str(exc), exc.exit_code)
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
    else:
        version_dir = storage.path(builder.store.version_dir(stats["version"]))
        print("\n".join(summary_lines(stats, version_dir)))
    return 1 if stats["dates_failed"] else 0


def summary_lines(stats: dict, version_dir: str) -> list[str]:
    """The human summary of ``build_feature_set`` stats: one line per date, then the
    counts, the validation of the version and the outcome.  A failed date is never
    summarised as passed: the validation covers the dates that are built (it says how
    many), and the last line says FAILED whenever a date failed or validation failed."""
    lines = [f"silver {stats['version']} -> {version_dir}"]
    for d, info in sorted(stats["per_date"].items()):
        if info["status"] == "built":
            line = f"  {d}  built   {info['signal_count']:>6} signals"
            if info.get("seconds") is not None:
                line += f"  {info['seconds']:.2f} s"
            lines.append(line)
    lines += [f"  {d}  skipped (already built; --force rebuilds)" for d in stats["dates_skipped"]]
    lines += [f"  {d}  FAILED  {why}" for d, why in sorted(stats["dates_failed"].items())]
    lines += [f"  {d}  WARNING {text}" for d, text in sorted(stats.get("warnings", {}).items())]
    lines += [f"  validation check {name} FAILED: {what}"
              for name, what in sorted(stats.get("validation_failed_checks", {}).items())]
    requested = (len(stats["dates_built"]) + len(stats["dates_skipped"])
                 + len(stats["dates_failed"]))
    failed = len(stats["dates_failed"])
    lines.append(f"built {len(stats['dates_built'])}, skipped {len(stats['dates_skipped'])}, "
                 f"{'FAILED' if failed else 'failed'} {failed} of {requested} date(s); "
                 f"{stats['signal_count']} signals in {stats['build_seconds']:.1f} s")
    valid = stats["validation_success"]
    if valid is None:
        lines.append("validation: not run (no date was built by this run)")
    else:
        built_total = stats.get("validated_dates")
        scope = (f"of the {built_total} built date(s) of {stats['version']}"
                 if built_total is not None else f"of the built dates of {stats['version']}")
        lines.append(f"validation {scope}: "
                     f"{'passed' if valid else 'FAILED (see validation.json)'}"
                     + (f"; it does not cover the {failed} failed date(s)" if failed else ""))
    problems = ([f"{failed} date(s) failed"] if failed else []) + (
        ["validation failed"] if valid is False else [])
    lines.append(f"result: FAILED ({', '.join(problems)})" if problems else "result: ok")
    return lines


if __name__ == "__main__":
    sys.exit(main())
