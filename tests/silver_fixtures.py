"""Small hand-built inputs for the Silver stage tests."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import yaml

from transforms.feature_manifest import load_manifest
from transforms.silver.day import SilverDay
from transforms.silver.session import NS_PER_S, local_ns

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST_PATH = os.path.join(ROOT, "configs", "features", "v3.1.0.yaml")
MANIFEST = load_manifest(MANIFEST_PATH)
with open(MANIFEST_PATH, encoding="utf-8") as _fh:
    PARAMS = yaml.safe_load(_fh)["parameters"]


def at(date: str, hhmm: str, seconds: float = 0) -> int:
    return local_ns(date, hhmm) + int(seconds * NS_PER_S)


def trades_frame(rows) -> pd.DataFrame:
    """rows: (ts_ns, price[, size[, aggressor]])."""
    full = [(int(r[0]), float(r[1]), int(r[2]) if len(r) > 2 else 1,
             int(r[3]) if len(r) > 3 else 1) for r in rows]
    return pd.DataFrame(full, columns=["ts_ns", "price", "size", "aggressor"]).astype(
        {"ts_ns": np.int64, "aggressor": np.int8})


def day_with(date: str, trades=None, params=None, **frames) -> SilverDay:
    return SilverDay(date=date, params=params or PARAMS, trades=trades,
                     columns=tuple(MANIFEST.columns()),
                     label_columns=tuple(MANIFEST.label_columns), **frames)
