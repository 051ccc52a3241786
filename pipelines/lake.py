"""What the lake holds, and why messages were refused.

    python -m pipelines.lake ls [DATASET] [--date YYYY-MM-DD] [--json] [--data_root D]
    python -m pipelines.lake dead-letters [--date YYYY-MM-DD] [--layer bronze|gold]
                                          [--examples N] [--json] [--data_root D]

``ls`` lists every dataset (Bronze, Gold streaming, the dead-letter sets, each table of
each Silver version, each Gold training dataset) with its roots, dates, files, rows, bytes,
the age of its newest file and, for dead letters, the count per reason class.  DATASET
narrows the list (``futures/trades``, ``bronze``, ``v3.1.0``, ``gold/training/x``).
``dead-letters`` shows the dead letters by reason with raw payload excerpts.  Local and
S3 roots alike (``--data_root s3://bucket/prefix``).  Exit status 0, 1 when there is no
lake at the root, 2 for a bad flag or an unknown dataset.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time

from io_connectors.config import ConfigError
from io_connectors.lake import inventory
from io_connectors.lake.legacy_layout import legacy_hint
from io_connectors.lake.storage import LakeStorage, resolve_data_root
from pipelines import cli
from pipelines.runner_setup import configure_logging, fail


def human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def human_age(seconds) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def _dates(dates: list) -> str:
    if not dates:
        return "-"
    if len(dates) == 1:
        return dates[0]
    return f"{dates[0]}..{dates[-1]} ({len(dates)})"


def ls_lines(summaries: list, root: str, now: float) -> list[str]:
    """The ``ls`` table."""
    head = ("dataset", "roots", "dates", "files", "rows", "bytes", "newest", "dead letters")
    rows = []
    for s in summaries:
        dead = "-" if s.dead_letters is None else (", ".join(
            f"{k} {v:,}" for k, v in sorted(s.dead_letters.items(), key=lambda kv: -kv[1]))
            or "none")
        rows.append((s.name, ",".join(s.roots) or "-", _dates(s.dates), f"{s.files:,}",
                     f"{s.rows:,}", human_bytes(s.bytes), human_age(s.newest_age_s(now)),
                     dead))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {3, 4, 5}
    fmt = lambda r: "  ".join(c.rjust(w) if i in right else c.ljust(w)
                              for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return [f"lake {root}", fmt(head), *[fmt(r) for r in rows]]


def excerpt(payload: bytes, limit: int) -> str:
    text = repr(bytes(payload[:limit]))
    return text + ("…" if len(payload) > limit else "")


def dead_letter_lines(letters: list, examples: int, width: int) -> list[str]:
    """Dead letters grouped by reason class, then by reason, with payload excerpts."""
    import datetime as dt
    if not letters:
        return ["no dead letters"]
    by_class: dict = collections.defaultdict(lambda: collections.defaultdict(list))
    for d in letters:
        by_class[d.reason_class][d.reason].append(d)
    lines = [f"{len(letters):,} dead letters"]
    for cls, reasons in sorted(by_class.items(), key=lambda kv: -sum(map(len, kv[1].values()))):
        lines.append(f"{cls}: {sum(map(len, reasons.values())):,}")
        for reason, items in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"  {len(items):>6,}  {reason}")
            for d in items[:examples]:
                when = dt.datetime.fromtimestamp(d.received_ns / 1e9, dt.timezone.utc)
                seq = "" if d.stream_seq is None else f" seq {d.stream_seq}"
                lines.append(f"          {d.layer} {when:%Y-%m-%dT%H:%M:%SZ} {d.subject}{seq}: "
                             f"{excerpt(d.payload, width)}")
    return lines


def main(argv=None) -> int:
    ap = cli.parser("pipelines.lake", __doc__)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data_root", default=None,
                        help="lake root, local path or s3:// (default: env DATA_ROOT, else "
                             "configs/lake.yaml)")
    common.add_argument("--date", type=cli.iso_date, default=None, metavar="YYYY-MM-DD",
                        help="only this date (UTC date partition; Silver: session date); "
                             "training datasets are not partitioned by date and count whole")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cli.add_log_level(common, default="WARNING")
    ls = sub.add_parser("ls", parents=[common], formatter_class=cli.HelpFormatter,
                        help="datasets with roots, dates, files, rows, bytes, newest file "
                             "and dead letters by reason")
    ls.add_argument("dataset", nargs="?", default=None, metavar="DATASET",
                    help="only datasets with this name or these name parts")
    dl = sub.add_parser("dead-letters", aliases=["dead_letters"], parents=[common],
                        formatter_class=cli.HelpFormatter,
                        help="dead letters by reason with raw payload excerpts")
    dl.add_argument("--layer", choices=inventory.LAYERS, default=None,
                    help="only this layer (default: both)")
    dl.add_argument("--examples", type=int, default=3, metavar="N",
                    help="payload excerpts shown per reason")
    dl.add_argument("--excerpt", type=int, default=80, metavar="BYTES",
                    help="bytes of each payload shown")
    args = cli.parse(ap, argv)
    configure_logging(args.log_level)
    try:
        storage = LakeStorage(resolve_data_root(args.data_root))
    except ConfigError as exc:
        fail(str(exc))
    if not storage.exists(""):
        print(f"error: no lake at {storage.data_root} (is --data_root right?)", file=sys.stderr)
        return 1
    now = time.time()
    if args.command == "ls":
        found = inventory.datasets(storage)
        if args.dataset:
            found = inventory.select(found, args.dataset)
            if not found:
                fail(f"no dataset {args.dataset!r} in {storage.data_root} (known: "
                     f"{', '.join(d.name for d in inventory.datasets(storage))})")
        summaries = [inventory.summarize(storage, d, args.date) for d in found]
        hint = legacy_hint(storage)
        if hint:                       # old-layout folders are not counted above
            print(f"note: {hint}", file=sys.stderr)
        if args.json:
            print(json.dumps([s.as_dict(now) for s in summaries], indent=2, default=str))
        else:
            print("\n".join(ls_lines(summaries, storage.data_root, now)))
        return 0
    letters = inventory.dead_letters(storage, args.date,
                                     [args.layer] if args.layer else inventory.LAYERS)
    if args.json:
        print(json.dumps([{"layer": d.layer, "received_ns": d.received_ns,
                           "subject": d.subject, "stream_seq": d.stream_seq,
                           "reason": d.reason, "reason_class": d.reason_class,
                           "payload_excerpt": excerpt(d.payload, args.excerpt)}
                          for d in letters], indent=2))
    else:
        print("\n".join(dead_letter_lines(letters, args.examples, args.excerpt)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
