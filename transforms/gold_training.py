"""Pure parts of a Gold promotion: signals tables concatenated into one training table, and
the causality spot check's comparison.

- ``ConcatenateSignals()``: PCollection of ``pyarrow.Table`` (the signals of each date) ->
  one table (``CombineGlobally``) holding every row, sorted by ``ts_ns, event_id``; None
  when there was no input table.
- ``causality_check(raw_day, manifest, stored)``: rebuilds a date's features from its raw
  Bronze inputs (a ``SilverDay`` as ``io_connectors.lake.silver_inputs`` reads it) twice,
  in full and truncated just after the middle event, and compares the features of the
  events up to the cut; also reports whether the full rebuild reproduces the stored
  features (``stored``: the stored signals as a DataFrame, informational).
- ``merge_checks(checks)``: several dates' spot checks as one gate result.
"""
from __future__ import annotations

from typing import Optional

import apache_beam as beam
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.silver.day import DayFailure, SilverDay
from transforms.silver.stages import run_stages


class _ConcatTables(beam.CombineFn):
    def create_accumulator(self):
        return []

    def add_input(self, acc, table):
        acc.append(table)
        return acc

    def merge_accumulators(self, accs):
        return [t for acc in accs for t in acc]

    def extract_output(self, acc):
        if not acc:
            return None
        table = pa.concat_tables(acc)
        return table.take(pc.sort_indices(
            table, sort_keys=[("ts_ns", "ascending"), ("event_id", "ascending")]))


class ConcatenateSignals(beam.PTransform):
    """Signals tables -> one table of all their rows sorted by ``ts_ns, event_id`` (None
    for no input); tables must share one schema."""

    def expand(self, tables):
        return tables | "Concatenate" >> beam.CombineGlobally(_ConcatTables())


def _same(a: pd.Series, b: pd.Series) -> bool:
    if isinstance(a.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(a):
        # stored times are microseconds (the exact time is ts_ns): compare at that precision
        return a.dt.floor("us").reset_index(drop=True).equals(
            b.dt.floor("us").reset_index(drop=True))
    if a.equals(b):
        return True
    return bool(pd.api.types.is_float_dtype(a) and len(a) == len(b)
                and ((a - b).abs().fillna(0) < 1e-9).all())


def causality_check(raw: SilverDay, manifest, stored: Optional[pd.DataFrame] = None) -> dict:
    """See the module docstring; ``success`` None (with the reason) when the date cannot be
    checked (rebuild failed, fewer than two events)."""
    date = raw.date
    full = run_stages(raw, manifest.stages)
    if isinstance(full, DayFailure):
        return {"success": None, "date": date,
                "reason": f"rebuild failed at {full.stage}: {full.reason}"}
    events = full.events
    if len(events) < 2:
        return {"success": None, "date": date, "reason": "fewer than 2 events on the date"}
    cut = int(events["ts_ns"].iloc[len(events) // 2])

    def upto(df):
        return df[df["ts_event_ns"] <= cut] if df is not None and len(df) else df

    part = run_stages(raw.replace(trades=upto(raw.trades), mbp=upto(raw.mbp),
                                  options=upto(raw.options)), manifest.stages)
    if isinstance(part, DayFailure):
        return {"success": False, "date": date,
                "reason": f"truncated rebuild failed at {part.stage}: {part.reason}"}
    features = [c for c in manifest.column_names() if c not in manifest.label_columns]
    a = events[events["ts_ns"] <= cut][features].reset_index(drop=True)
    b = part.events[part.events["ts_ns"] <= cut][features].reset_index(drop=True)
    differing = ([c for c in features if not a[c].equals(b[c])] if len(a) == len(b)
                 else ["<event count differs>"])
    out = {"success": not differing, "date": date, "cut_ns": cut, "events_compared": len(a),
           "differing_columns": differing}
    if stored is not None:
        mine = events[features].reset_index(drop=True)
        theirs = stored[features].reset_index(drop=True)
        out["reproduces_stored_features"] = bool(
            len(mine) == len(theirs) and all(_same(mine[c], theirs[c]) for c in features))
    return out


def merge_checks(checks: list[dict]) -> dict:
    """Per-date spot checks -> one gate: failed if any evaluated date failed, None (with
    the reasons) if none could be evaluated."""
    evaluated = [c for c in checks if c.get("success") is not None]
    if not evaluated:
        return {"success": None, "reason": "; ".join(c.get("reason", "") for c in checks),
                "checks": checks}
    return {"success": all(c["success"] for c in evaluated), "checks": checks}
