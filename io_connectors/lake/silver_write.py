"""``WriteSilverDays``: built Silver dates -> published Silver tables + one result per date.

In: PCollection of ``SilverDay`` (all stages applied) or ``DayFailure``.  For a day: the
events are checked against the manifest's declared columns (``to_declared_table``: a
mismatch fails the date, nothing is written), then the date's ``signals`` (exactly the
declared schema, with the manifest version in the schema metadata), ``state_table`` and
``episodes`` (when built) and its lineage are published (``SilverStore.publish_date``:
one atomically replaced file per table, signals last).  For every date, built or failed, a result record is
written to ``_runs/<run_id>/<date>.json`` and emitted: ``{date, status ('built' |
'failed'), stage, reason, signal_count, seconds, lineage}``.  A date that fails while
writing is reported as failed; the others go on.
"""
from __future__ import annotations

import time
import traceback
from typing import Any, Mapping, Optional

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa

from io_connectors.lake.storage import LakeStorage
from io_connectors.lake.silver_store import EPISODES, SIGNALS, STATE_TABLE, SilverStore
from transforms.silver.day import DayFailure
from transforms.silver.stage_rth_filter import to_declared_table


def _frame_table(df: pd.DataFrame, fixed_list: Optional[int] = None) -> pa.Table:
    """A DataFrame as an Arrow table; tz-aware datetimes become timestamp[ns, UTC] (done
    here because pyarrow's own conversion uses an accessor pandas 3.1 deprecates)."""
    df = df.copy()
    stamps = {}
    for name in list(df.columns):
        if isinstance(df[name].dtype, pd.DatetimeTZDtype):
            stamps[name] = pa.array(df[name].dt.tz_convert("UTC").astype("int64").to_numpy(),
                                    pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
            df[name] = 0
    vector = None
    if fixed_list is not None and "vector" in df:
        vector = pa.FixedSizeListArray.from_arrays(
            pa.array(np.concatenate(df["vector"].to_list()).astype(np.float32)
                     if len(df) else np.zeros(0, np.float32)), fixed_list)
        df = df.drop(columns=["vector"])
    table = pa.Table.from_pandas(df, preserve_index=False)
    for name, arr in stamps.items():
        table = table.set_column(table.schema.get_field_index(name), name, arr)
    if vector is not None:
        table = table.append_column("vector", vector)
    return table


def write_day(store: SilverStore, version: str, run_id: str, day, code_version: Mapping,
              compression=("zstd", 3)) -> dict:
    """Publishes one built day (or records a failure); returns the result record."""
    t0 = time.time()
    if isinstance(day, DayFailure):
        result = {"date": day.date, "status": "failed", "stage": day.stage,
                  "reason": day.reason, "signal_count": 0}
    else:
        try:
            signals = to_declared_table(day.events, day.columns)
            signals = signals.replace_schema_metadata(
                {b"feature_manifest_version": version.encode()})
            tables = {SIGNALS: signals}
            if day.state_table is not None:
                tables[STATE_TABLE] = _frame_table(day.state_table)
            if day.episodes is not None:
                dims = int(day.param("episodes.dims"))
                tables[EPISODES] = _frame_table(day.episodes, fixed_list=dims)
            started = day.lineage.get("started_at", t0)
            lineage = {**day.lineage, "version": version, "code": dict(code_version),
                       "signal_count": signals.num_rows,
                       "state_table_rows": tables[STATE_TABLE].num_rows
                       if STATE_TABLE in tables else None,
                       "episode_count": tables[EPISODES].num_rows if EPISODES in tables else None,
                       "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "build_seconds": round(time.time() - started, 3)}
            store.publish_date(version, day.date, tables, lineage, compression)
            result = {"date": day.date, "status": "built", "stage": None, "reason": None,
                      "signal_count": signals.num_rows, "seconds": lineage["build_seconds"],
                      "lineage": lineage}
        except Exception as exc:  # pylint: disable=broad-except
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            result = {"date": day.date, "status": "failed", "stage": "write",
                      "reason": f"{type(exc).__name__}: {exc} at "
                                f"{tb.filename.rsplit('/', 1)[-1]}:{tb.lineno}",
                      "signal_count": 0}
    store.write_json(f"{store.run_dir(version, run_id)}/{result['date']}.json", result)
    return result


class _WriteDayDoFn(beam.DoFn):
    def __init__(self, storage, version, run_id, code_version, compression):
        super().__init__()
        self.storage, self.version, self.run_id = storage, version, run_id
        self.code_version, self.compression = dict(code_version), compression

    def process(self, day):
        yield write_day(SilverStore(self.storage), self.version, self.run_id, day,
                        self.code_version, self.compression)


class WriteSilverDays(beam.PTransform):
    """Built days -> published Silver date folders and result records (module docstring)."""

    def __init__(self, storage: LakeStorage, version: str, run_id: str,
                 code_version: Mapping[str, Any], compression=("zstd", 3)):
        super().__init__()
        self.storage, self.version, self.run_id = storage, version, run_id
        self.code_version, self.compression = dict(code_version), tuple(compression)

    def expand(self, days):
        return days | beam.ParDo(_WriteDayDoFn(self.storage, self.version, self.run_id,
                                               self.code_version, self.compression))
