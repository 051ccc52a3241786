"""Reading a ``validation.json`` (a Silver version's named checks) without knowing its checks.

``failed_checks(validation)``: ``{check name: what failed}`` for every check whose
``success`` is False, whatever checks the document holds (new checks count without a change
here); the detail is the check's own ``failed_dates``, ``violations``, ``unknown_values``,
``impure_dates`` or ``observed``, shortened to one line.
"""
from __future__ import annotations

from typing import Any, Mapping

_DETAIL_KEYS = ("failed_dates", "violations", "unknown_values", "impure_dates", "observed")


def failed_checks(validation: Mapping[str, Any], width: int = 300) -> dict:
    out = {}
    for name, check in (validation.get("checks") or {}).items():
        if isinstance(check, Mapping) and check.get("success") is False:
            detail = next((check[k] for k in _DETAIL_KEYS if check.get(k)), None)
            out[name] = detail if isinstance(detail, (int, float)) else str(detail)[:width]
    return out
