"""What a backfill run did, checked for completeness from the records its steps left.

``BackfillReport.read(staging, shares)`` after the job: every planned share of a file must
have been decoded (its record gives rows per shard key, dead letters by reason, the
decoder's counts), and every shard key written with exactly the rows the shares
produced.  A runner that lost work without failing (the
DaskRunner does, on some shapes) therefore cannot pass for a complete run: ``missing``
names what is absent and the CLI exits 1.
"""
from __future__ import annotations

import collections
import dataclasses

from io_connectors.dbn.backfill import unit_records
from io_connectors.dbn.blocks import DbnShare
from io_connectors.lake.bounded_shards import KEYS
from io_connectors.lake.staging import Staging
from transforms.partitioning import SEP


@dataclasses.dataclass
class BackfillReport:
    """Totals of a run and what is missing (empty when complete).  ``rows``: rows per
    dataset folder (dead letters under ``_dead_letter``); ``files_written`` /
    ``files_present`` per dataset; ``dead_letters`` and ``skipped``: counts by reason;
    ``records``: DBN records read; ``per_message_files``: files the columnar decoder did
    not take; ``decoders`` / ``writers``: how many distinct workers (process, thread)
    decoded shares / wrote shard keys; ``phases``: seconds from the first start to the last
    end of each step (decode, write)."""
    rows: dict
    files_written: dict
    files_present: dict
    dead_letters: dict
    skipped: dict
    records: int
    per_message_files: list
    decoders: int
    writers: int
    phases: dict
    missing: list

    @property
    def complete(self) -> bool:
        return not self.missing

    @classmethod
    def read(cls, staging: Staging, shares: list[DbnShare]) -> "BackfillReport":
        units = unit_records(staging)
        keys = {r["key"]: r for r in staging.read_jsons(KEYS)}
        missing = []
        expected_units = [s.unit for s in shares]
        per_message = sorted({s.file.path for s in shares
                              if units.get(s.unit, {}).get("per_message")})
        rows_by_key = collections.Counter()
        dead = collections.Counter()
        skipped = collections.Counter()
        records = 0
        for unit in expected_units:
            rec = units.get(unit)
            if rec is None:
                missing.append(f"share not decoded: {unit}")
                continue
            rows_by_key.update(rec["rows"])
            dead.update(rec["dead_letters"])
            st = rec["stats"]
            records += st["records"]
            skipped.update(st["skipped"])
            for name in ("undefined_prices", "spreads_filtered", "unknown_records"):
                if st[name]:
                    skipped[name] += st[name]
        rows, written, present = (collections.Counter() for _ in range(3))
        for key, n in sorted(rows_by_key.items()):
            dataset = key.split(SEP, 1)[0]
            rec = keys.get(key)
            if rec is None:
                missing.append(f"shard key not written: {key}")
                continue
            if rec["rows"] != n:
                missing.append(f"shard key {key}: {rec['rows']} rows written of {n}")
            rows[dataset] += rec["rows"]
            written[dataset] += rec["written"]
            present[dataset] += rec["present"]
        def workers(records) -> int:
            return len({(r.get("pid"), r.get("thread")) for r in records})

        def span(records) -> float:
            records = [r for r in records if "started" in r]
            return (max(r["ended"] for r in records) - min(r["started"] for r in records)
                    if records else 0.0)

        phases = {"decode": span(units.values()), "write": span(keys.values())}
        return cls(dict(rows), dict(written), dict(present), dict(dead), dict(skipped),
                   records, per_message, workers(units.values()), workers(keys.values()),
                   phases, missing)

    def lines(self) -> list[str]:
        """The summary a person reads: one line per dataset, then dead letters, skips,
        the files the per-message path took and anything missing."""
        out = []
        for dataset in sorted(self.rows):
            out.append(f"{dataset}: {self.rows[dataset]:,} rows, "
                       f"{self.files_written.get(dataset, 0):,} files written, "
                       f"{self.files_present.get(dataset, 0):,} already present")
        if self.dead_letters:
            out.append("dead letters: " + ", ".join(
                f"{n:,} {reason}" for reason, n in sorted(self.dead_letters.items())))
        if self.skipped:
            out.append("records skipped by the decoder: " + ", ".join(
                f"{n:,} {reason}" for reason, n in sorted(self.skipped.items())))
        out.append(f"file shares decoded by {self.decoders} workers, shard keys written by "
                   f"{self.writers}; " + ", ".join(f"{name} {s:.1f} s"
                                                   for name, s in self.phases.items()))
        if self.per_message_files:
            out.append("decoded message by message: " + ", ".join(self.per_message_files))
        out += [f"MISSING: {m}" for m in self.missing]
        return out
