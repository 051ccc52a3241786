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

import argparse
import json
import sys

from io_connectors.config import ConfigError
from pipelines.gold_curator import GoldCurator, PromotionError
from pipelines.runner_setup import UsageError, configure_logging, fail, reject_unknown_flags


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.gold_promote",
                                 description=__doc__.split("\n\n")[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--dataset", help="name of the training dataset to promote into")
    what.add_argument("--validate", metavar="NAME", help="validate a Gold dataset")
    what.add_argument("--list", action="store_true", help="list the Gold catalog")
    ap.add_argument("--silver_version", help="Silver version to promote (with --dataset)")
    ap.add_argument("--notes", default="")
    ap.add_argument("--force", action="store_true", help="replace an existing dataset")
    ap.add_argument("--dates", default=None, help="only these Silver dates (D1,D2)")
    ap.add_argument("--causality_dates", type=int, default=1,
                    help="dates rebuilt from Bronze for the causality spot check (0: skip)")
    ap.add_argument("--require_all_gates", action="store_true",
                    help="refuse when a gate could not be evaluated")
    ap.add_argument("--allow_failed_validation", action="store_true",
                    help="promote even though the Silver version's validation failed "
                         "(recorded in the dataset's metadata)")
    ap.add_argument("--data_root", default=None)
    ap.add_argument("--log_level", default="INFO")
    args, beam_args = ap.parse_known_args(argv)
    configure_logging(args.log_level)
    try:
        reject_unknown_flags(beam_args, [o for a in ap._actions for o in a.option_strings])
        curator = GoldCurator(data_root=args.data_root,
                              pipeline_args=beam_args or ["--runner=DirectRunner"])
        if args.list:
            for entry in curator.list_datasets():
                print(json.dumps(entry, sort_keys=True))
            return 0
        if args.validate:
            report = curator.validate_dataset(args.validate)
            print(json.dumps({k: v for k, v in report.items() if k != "null_rates"},
                             indent=2, sort_keys=True, default=str))
            return 0 if report["success"] else 1
        if not args.silver_version:
            raise UsageError("--dataset needs --silver_version")
        dates = [d.strip() for d in args.dates.split(",")] if args.dates else None
        try:
            result = curator.promote_to_training(
                args.silver_version, args.dataset, notes=args.notes, force=args.force,
                dates=dates, causality_dates=args.causality_dates,
                require_all_gates=args.require_all_gates,
                allow_failed_validation=args.allow_failed_validation)
        except PromotionError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
    except (UsageError, ConfigError, ValueError, KeyError) as exc:
        fail(str(exc).strip("'\""))
    for name, gate in result["gates"].items():
        outcome = {True: "passed", False: "FAILED", None: "not checked"}[gate.get("success")]
        if name in result["overrides"]:
            outcome += " (overridden by --allow_failed_validation)"
        print(f"  gate {name:<17} {outcome}{'  (' + gate['reason'] + ')' if gate.get('reason') else ''}")
    print(f"promoted {args.silver_version} -> {result['path']} ({result['signal_count']} signals, "
          f"{result['feature_count']} features, {result['date_range']['start']}.."
          f"{result['date_range']['end']}){' replacing the previous dataset' if result['replaced'] else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
