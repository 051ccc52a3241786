"""Gold training datasets from the command line.

    python -m pipelines.gold_promote --silver_version v3.1.0 --dataset signals_production \\
        [--notes TEXT] [--force] [--dates D1,D2] [--require_all_gates]
        [--allow_failed_validation] [--data_root D]
    python -m pipelines.gold_promote --validate signals_production [--data_root D]
    python -m pipelines.gold_promote --list [--data_root D]

Promotion prints each gate with its outcome; exit status 0 on success, 1 when a gate
refused the promotion or validation failed, 2 for a bad flag, unknown version or dataset.
A Silver version whose validation.json failed is refused (gate ``silver_validation``)
unless ``--allow_failed_validation``, which the dataset's metadata records and
``--validate`` reports (its exit status is then 1).
"""
from __future__ import annotations

import json
import sys

from io_connectors.config import ConfigError
from io_connectors.preflight import StartupError, check_data_root
from pipelines.gold_curator import GoldCurator, PromotionError
from pipelines import cli
from pipelines.runner_setup import UsageError, configure_logging, fail, reject_unknown_flags


def main(argv=None) -> int:
    ap = cli.parser("pipelines.gold_promote", __doc__)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--dataset", metavar="NAME",
                      help="promote into this training dataset (with --silver_version)")
    what.add_argument("--validate", metavar="NAME", help="validate a Gold dataset")
    what.add_argument("--list", action="store_true", help="list the Gold catalog")
    ap.add_argument("--silver_version", metavar="VERSION",
                    help="Silver version to promote, e.g. v3.1.0 (with --dataset)")
    ap.add_argument("--notes", default="", help="free text stored in the metadata")
    ap.add_argument("--force", action="store_true", help="replace an existing dataset")
    ap.add_argument("--dates", type=cli.iso_dates, default=None, metavar="D1,D2",
                    help="only these Silver dates (default: every built date)")
    ap.add_argument("--causality_dates", type=int, default=1, metavar="N",
                    help="dates rebuilt from Bronze for the causality spot check (0: skip)")
    ap.add_argument("--require_all_gates", action="store_true",
                    help="refuse when a gate could not be evaluated")
    ap.add_argument("--allow_failed_validation", action="store_true",
                    help="promote even though the Silver version's validation failed "
                         "(recorded in the dataset's metadata)")
    cli.add_batch_flags(ap)
    args, beam_args = cli.parse_batch(ap, argv)
    configure_logging(args.log_level)
    try:
        reject_unknown_flags(beam_args, cli.option_names(ap))
        curator = GoldCurator(data_root=args.data_root, pipeline_args=beam_args,
                              progress=args.progress)
        check_data_root(curator.storage, create=False)     # fail fast: a lake to read
        if args.list:
            entries = curator.list_datasets()
            for entry in entries:
                print(json.dumps(entry, sort_keys=True))
            if not entries:
                print(f"no Gold training datasets in {curator.storage.data_root}",
                      file=sys.stderr)
            return 0
        if args.validate:
            report = curator.validate_dataset(args.validate)
            print(json.dumps({k: v for k, v in report.items() if k != "null_rates"},
                             indent=2, sort_keys=True, default=str))
            print(f"validation of {args.validate}: "
                  f"{'passed' if report['success'] else 'FAILED'}", file=sys.stderr)
            return 0 if report["success"] else 1
        if not args.silver_version:
            raise UsageError("--dataset needs --silver_version")
        try:
            result = curator.promote_to_training(
                args.silver_version, args.dataset, notes=args.notes, force=args.force,
                dates=args.dates, causality_dates=args.causality_dates,
                require_all_gates=args.require_all_gates,
                allow_failed_validation=args.allow_failed_validation)
        except PromotionError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
    except KeyError as exc:                 # str(KeyError) adds quotes around the message
        fail(str(exc.args[0]) if exc.args else "not found")
    except (UsageError, ConfigError, ValueError) as exc:
        fail(str(exc))
    except StartupError as exc:
        fail(str(exc), exc.exit_code)
    print("\n".join(promotion_lines(args.silver_version, result)))
    return 0


def promotion_lines(version: str, result: dict) -> list[str]:
    """The human summary of a promotion: each gate with its outcome, then the dataset."""
    lines = []
    for name, gate in result["gates"].items():
        outcome = {True: "passed", False: "FAILED", None: "not checked"}[gate.get("success")]
        if name in result.get("overrides", {}):
            outcome += " (overridden by --allow_failed_validation)"
        lines.append(f"  gate {name:<17} {outcome}"
                     + (f"  ({gate['reason']})" if gate.get("reason") else ""))
    unchecked = [n for n, g in result["gates"].items() if g.get("success") is None]
    overridden = [n for n in result.get("overrides", {})]
    lines.append(f"promoted {version} -> {result['path']} ({result['signal_count']} signals, "
                 f"{result['feature_count']} features, {result['date_range']['start']}.."
                 f"{result['date_range']['end']})"
                 + (" replacing the previous dataset" if result["replaced"] else "")
                 + (f"; NOT checked: {', '.join(unchecked)} (--require_all_gates refuses that)"
                    if unchecked else "")
                 + (f"; FAILED but overridden: {', '.join(overridden)}" if overridden else ""))
    return lines


if __name__ == "__main__":
    sys.exit(main())
