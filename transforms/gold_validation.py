"""Checks of a Gold training dataset (pure: Arrow tables and dicts in, report dicts out).

``promotion_gates(table, manifest, silver_validation, causality)`` decides whether a
Silver version may become a training dataset.  Every gate reports ``success`` as True,
False or None (= not checked, with the reason): a gate is never claimed without having been
evaluated.
- ``schema``: the table has exactly the manifest's declared columns and types;
- ``purity``: no duplicate ``event_id``; every date built from its front month only (the
  Silver version's ``front_month_purity`` check); roll-contaminated dates are listed;
- ``labels_named``: the manifest's forward-looking columns are exactly its label group
  and carry label prefixes (so a training job can drop them by name);
- ``causality``: the result of a spot check (see ``pipelines.gold_curator``): features of
  events before a cut time recomputed from Bronze truncated at that time equal the full
  build's.

``dataset_report(table, metadata)`` is ``validate_dataset``'s content: row and column
counts, null rates (columns > 10 % null listed), the ``outcome`` label distribution, date
coverage (start, end, unique dates, signals per date) and whether the row count matches the
metadata, plus ``success``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np
import pyarrow as pa

from transforms.arrow_stats import null_rate
from transforms.feature_manifest import LABEL_PREFIXES, FeatureManifest

HIGH_NULL = 0.10


def _counts(col: pa.ChunkedArray) -> dict[str, int]:
    if len(col) == 0:
        return {}
    values, counts = np.unique(np.asarray(col.to_pylist(), dtype=object).astype(str),
                               return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}


def promotion_gates(table: pa.Table, manifest: FeatureManifest,
                    silver_validation: Optional[Mapping[str, Any]],
                    causality: Optional[Mapping[str, Any]]) -> dict:
    gates: dict[str, dict] = {}
    declared = manifest.arrow_schema().remove_metadata()
    actual = table.schema.remove_metadata()
    gates["schema"] = {"success": actual.equals(declared),
                       "observed": {"columns": len(actual),
                                    "missing": [n for n in declared.names if n not in actual.names],
                                    "extra": [n for n in actual.names if n not in declared.names],
                                    "type_mismatch": [f.name for f in declared
                                                      if f.name in actual.names
                                                      and actual.field(f.name).type != f.type]}}
    ids = table["event_id"].to_pylist() if "event_id" in table.column_names else []
    duplicates = len(ids) - len(set(ids))
    fm = ((silver_validation or {}).get("checks") or {}).get("front_month_purity")
    purity_ok = duplicates == 0 and (fm is None or bool(fm.get("success")))
    gates["purity"] = {
        "success": purity_ok if fm is not None else (False if duplicates else None),
        "observed": {"duplicate_event_ids": duplicates,
                     "impure_dates": (fm or {}).get("impure_dates"),
                     "roll_contaminated_dates": (fm or {}).get("roll_contaminated_dates")},
        "reason": None if fm is not None else "the Silver version has no front_month_purity check"}
    labels = manifest.label_columns
    misnamed = [c for c in labels if not c.startswith(LABEL_PREFIXES)]
    leaking = [c for c in manifest.column_names()
               if c not in labels and c.startswith(LABEL_PREFIXES)]
    gates["labels_named"] = {"success": not misnamed and not leaking,
                             "observed": {"label_columns": labels, "misnamed": misnamed,
                                          "label_like_features": leaking}}
    if causality is None:
        gates["causality"] = {"success": None, "reason": "not checked"}
    else:
        gates["causality"] = dict(causality)
    return gates


def dataset_report(table: pa.Table, metadata: Optional[Mapping[str, Any]]) -> dict:
    rates = {n: round(null_rate(table[n]), 6) for n in table.column_names}
    dates = (table["date"].cast(pa.string()).to_pylist()
             if "date" in table.column_names else [])
    per_date = {}
    for d in dates:
        per_date[d] = per_date.get(d, 0) + 1
    expected = (metadata or {}).get("signal_count")
    report = {
        "row_count": table.num_rows,
        "column_count": table.num_columns,
        "null_rates": rates,
        "high_null_columns": sorted(n for n, r in rates.items() if r > HIGH_NULL),
        "label_distribution": _counts(table["outcome"]) if "outcome" in table.column_names else {},
        "date_coverage": {"start": min(per_date) if per_date else None,
                          "end": max(per_date) if per_date else None,
                          "unique_dates": len(per_date), "signals_per_date": dict(sorted(per_date.items()))},
        "row_count_matches_metadata": expected is not None and int(expected) == table.num_rows,
        "duplicate_event_ids": (table.num_rows - len(set(table["event_id"].to_pylist()))
                                if "event_id" in table.column_names else None),
    }
    report["success"] = bool(report["row_count_matches_metadata"]
                             and report["duplicate_event_ids"] == 0 and table.num_rows > 0)
    return report
