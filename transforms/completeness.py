"""Completeness of a bounded run, checked by its driver from what the run wrote.

A runner can report success for a job that dropped work (Beam's DaskRunner does on
several pipeline shapes: see README "Scaling out"), so the batch drivers never trust the
exit status alone: they compare what each input (date, file) should have produced with
what was written, and fail naming the difference.

- ``compare_counts(expected, observed, what)``: ``{key: problem}`` for every key of
  ``expected`` that is missing from ``observed`` or has another count, and every
  unexpected key; empty when the two agree.  ``describe(problems)`` joins them in one line.
- ``counts_by(table, column)``: rows per value of ``column`` of an Arrow table, keyed by
  the value's ISO string (dates) or ``str``.
"""
from __future__ import annotations

from typing import Mapping

import pyarrow as pa


def _key(value) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def counts_by(table: pa.Table, column: str) -> dict[str, int]:
    """Rows of ``table`` per value of ``column`` (keys as strings)."""
    if table is None or table.num_rows == 0:
        return {}
    grouped = table.group_by(column).aggregate([([], "count_all")])
    return {_key(v): int(n) for v, n in zip(grouped[column].to_pylist(),
                                            grouped["count_all"].to_pylist())}


def compare_counts(expected: Mapping[str, int], observed: Mapping[str, int],
                   what: str = "rows") -> dict[str, str]:
    """``{key: problem}`` where ``expected`` and ``observed`` counts differ (empty when they
    agree); a key missing from ``observed`` is named as missing."""
    out = {}
    for key in sorted(expected):
        if key not in observed:
            out[key] = f"missing (expected {expected[key]:,} {what})"
        elif observed[key] != expected[key]:
            out[key] = f"{observed[key]:,} {what}, expected {expected[key]:,}"
    for key in sorted(set(observed) - set(expected)):
        out[key] = f"{observed[key]:,} {what} not asked for"
    return out


def describe(problems: Mapping[str, str]) -> str:
    """``key: problem; key: problem`` in key order."""
    return "; ".join(f"{k}: {v}" for k, v in sorted(problems.items()))
