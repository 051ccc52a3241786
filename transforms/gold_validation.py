"""Checks of a Gold training dataset (pure: Arrow tables and dicts in, report dicts out).

``promotion_gates(table, manifest, silver_validation, causality, dates)`` decides whether a
Silver version may become a training dataset.  Every gate reports ``success`` as True,
False or None (= not checked, with the reason): a gate is never claimed without having been
evaluated.
- ``silver_validation``: the Silver version's ``validation.json`` passed as a whole (its
  overall ``success``, whatever checks it holds; the failed ones are listed) and covers
  every promoted date; a version without one fails;
- ``schema``: the table has exactly the manifest's declared columns and types;
- ``purity``: no duplicate ``event_id``; every date built from its front month only (the
  Silver version's ``front_month_purity`` check); roll-contaminated dates are listed;
- ``labels_named``: the manifest's forward-looking columns are exactly its label group
  and carry label prefixes (so a training job can drop them by name);
- ``causality``: the result of a spot check (``transforms.gold_training.causality_check``):
  features of events before a cut time recomputed from Bronze truncated at that time equal
  the full build's.

``dataset_report(table, metadata)`` is ``validate_dataset``'s content: row and column
counts, null rates (columns > 10 % null listed), the ``outcome`` label distribution, date
coverage (start, end, unique dates, signals per date), whether the row count matches the
metadata, the recorded ``silver_validation`` gate (a dataset promoted over a failed Silver
validation with the override does not validate), plus ``success``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pyarrow as pa

from transforms.arrow_stats import null_rate
from transforms.feature_manifest import LABEL_PREFIXES, FeatureManifest
from transforms.validation_report import failed_checks

HIGH_NULL = 0.10


def _counts(col: pa.ChunkedArray) -> dict[str, int]:
    if len(col) == 0:
        return {}
    values, counts = np.unique(np.asarray(col.to_pylist(), dtype=object).astype(str),
                               return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}


def refusal(gates: Mapping[str, Mapping], overrides: Mapping[str, Any] = (),
            require_all_gates: bool = False) -> Optional[str]:
    """Why a promotion must be refused (the failed gates not overridden and, with
    ``require_all_gates``, the unchecked ones), or None when it may go ahead."""
    failed = {k: g for k, g in gates.items() if g.get("success") is False and k not in overrides}
    unchecked = {k: g.get("reason") for k, g in gates.items() if g.get("success") is None}
    if not failed and not (require_all_gates and unchecked):
        return None
    reasons = [f"gate {k} failed: {g.get('reason') or g.get('observed')}"
               for k, g in failed.items()]
    if require_all_gates:
        reasons += [f"gate {k} not checked: {why}" for k, why in unchecked.items()]
    hint = (" (--allow_failed_validation promotes it anyway, recorded in the metadata)"
            if "silver_validation" in failed else "")
    return "; ".join(reasons) + hint


def training_metadata(name: str, version: str, manifest: FeatureManifest, table: pa.Table,
                      notes: str, gates: Mapping, overrides: Mapping, sha256: str,
                      created_at: str, code: Optional[Mapping] = None) -> dict:
    """``{name}_metadata.json`` of a promoted dataset (the seed's keys plus gates, label
    columns, dates, overrides, SHA-256 of the file and the Silver code version)."""
    dates = sorted(set(table["date"].cast(pa.string()).to_pylist()))
    return {
        "dataset_name": name, "silver_version": version, "created_at": created_at,
        "signal_count": table.num_rows, "feature_count": len(manifest.feature_columns),
        "label_columns": manifest.label_columns,
        "date_range": {"start": dates[0] if dates else None,
                       "end": dates[-1] if dates else None},
        "dates": dates, "notes": notes,
        "manifest": {"version": manifest.version, "description": manifest.description,
                     "parameters": dict(manifest.parameters)},
        "gates": dict(gates), "overrides": dict(overrides), "sha256": sha256,
        "silver_lineage": {"code": code},
    }


def silver_validation_gate(validation: Optional[Mapping[str, Any]],
                           dates: Optional[Sequence[str]] = None) -> dict:
    """The ``silver_validation`` gate (see the module docstring)."""
    if validation is None:
        return {"success": False, "observed": None,
                "reason": "the Silver version has no validation.json (never validated, or "
                          "its build did not finish)"}
    failed = sorted(failed_checks(validation))
    validated = validation.get("dates")
    uncovered = sorted(set(dates or ()) - set(validated)) if validated is not None else []
    ok = validation.get("success") is True and not uncovered
    reasons = ([f"validation.json failed: {', '.join(failed) or 'success is false'}"]
               if validation.get("success") is not True else []) + \
              ([f"dates not covered by validation.json: {', '.join(uncovered)}"]
               if uncovered else [])
    return {"success": ok,
            "observed": {"validation_success": validation.get("success"),
                         "failed_checks": failed, "dates_not_validated": uncovered},
            "reason": "; ".join(reasons) or None}


def promotion_gates(table: pa.Table, manifest: FeatureManifest,
                    silver_validation: Optional[Mapping[str, Any]],
                    causality: Optional[Mapping[str, Any]],
                    dates: Optional[Sequence[str]] = None) -> dict:
    gates: dict[str, dict] = {"silver_validation": silver_validation_gate(silver_validation,
                                                                          dates)}
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
    gate = ((metadata or {}).get("gates") or {}).get("silver_validation")
    report["silver_validation"] = (
        {"success": None, "reason": "not recorded (promoted before this gate existed)"}
        if gate is None else {**gate, "overridden": "silver_validation" in
                              ((metadata or {}).get("overrides") or {})})
    report["success"] = bool(report["row_count_matches_metadata"]
                             and report["duplicate_event_ids"] == 0 and table.num_rows > 0
                             and report["silver_validation"]["success"] is not False)
    return report
