"""``BronzeReader``: one date of a Bronze dataset as a clean, sorted pandas DataFrame."""
from __future__ import annotations

import datetime as dt
from typing import Optional

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from io_connectors.lake.legacy_layout import check_bronze_layout
from io_connectors.lake.storage import LakeStorage, resolve_data_root
from transforms.front_month import FrontMonth, NoTradesError, select_front_month
from transforms.partitioning import DATE_KEY, HOUR_KEY, partition_folder
from transforms.schemas import DATASETS_BY_PATH, BronzeDataset

_HOUR_NS = 3_600 * 1_000_000_000
_NULLABLE_INTS = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(),
                  pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}
_HOUR_PARTITIONING = pads.partitioning(pa.schema([(HOUR_KEY, pa.int32())]), flavor="hive")


class BronzeReader:
    """Reads Bronze Parquet (local or S3) for one partition value and one UTC date.

    In: a data root (default ``resolve_data_root()``) or a ready ``LakeStorage``; per call a
    root/underlying (the partition folder value, e.g. ``ES``), a UTC ``date`` ('YYYY-MM-DD')
    and optionally a half-open ``[start_ns, end_ns)`` range on ``ts_event_ns``.

    Out: a pandas DataFrame whose columns are exactly the dataset schema's
    (``transforms.schemas``), in schema order, sorted by ``ts_event_ns`` (stable), with a
    fresh RangeIndex.  dtypes: non-null integers are numpy ints, nullable integers
    (``seq``) pandas ``Int64``, ``conditions`` holds numpy arrays or None, ``exp_date``
    holds ``datetime.date`` objects.

    Guarantees: ``symbol`` is the contract stored in the file (``ESZ4``), never the
    partition folder value (``root=ES``).  Hidden files ('.' prefix), '_' folders/files
    (e.g. ``_dead_letter``) and non-Parquet files are ignored.  A date without data gives an
    empty frame with the schema's columns.  With ``dedupe`` (default) every exchange event is
    returned once: rows equal on ``BronzeDataset.identity_columns`` (the event's own fields:
    time, contract, sequence, price, size, side, book levels; NOT the capture metadata
    ``source``/``ts_recv_ns``) are copies of one event, e.g. a redelivery or the live stream
    and a backfill of the same session, and the first stored copy (in path order) is kept.
    ``dedupe=False`` returns every stored row.  Only the needed hour folders are read, and
    the ``ts_event_ns``/``symbol`` filters are pushed down to Parquet row groups.  A lake
    still in the layout before ``root=`` (``symbol=ES``) raises ``LegacyLayoutError``
    naming the migration command instead of reading nothing.
    """

    def __init__(self, data_root: Optional[str] = None, storage: Optional[LakeStorage] = None):
        self.storage = storage or LakeStorage(data_root or resolve_data_root())

    # ---- public API --------------------------------------------------------------------
    def read_futures_trades(self, symbol: str = "ES", date: Optional[str] = None,
                            start_ns: Optional[int] = None, end_ns: Optional[int] = None,
                            front_month_only: bool = True,
                            specific_contract: Optional[str] = None,
                            dedupe: bool = True) -> pd.DataFrame:
        """Futures trades of root ``symbol`` on ``date``, optionally in ``[start_ns, end_ns)``.

        ``specific_contract`` (e.g. 'ESH5') keeps that contract only and wins over
        ``front_month_only``, which otherwise keeps the date's front month (see
        :meth:`front_month`; it is chosen from the whole date, whatever the time range).
        """
        ds = DATASETS_BY_PATH["futures/trades"]
        if specific_contract or not front_month_only:
            return self._read(ds, symbol, date, start_ns, end_ns, specific_contract, dedupe)
        day = self._read(ds, symbol, date, None, None, None, dedupe=True)
        if day.empty:
            return day
        front = select_front_month(day, date=date).symbol
        if not dedupe:   # the front month is always chosen from deduplicated trades
            return self._read(ds, symbol, date, start_ns, end_ns, front, dedupe=False)
        keep = day["symbol"] == front
        if start_ns is not None:
            keep &= day["ts_event_ns"] >= start_ns
        if end_ns is not None:
            keep &= day["ts_event_ns"] < end_ns
        return day[keep].reset_index(drop=True)

    def read_futures_mbp10(self, symbol: str = "ES", date: Optional[str] = None,
                           start_ns: Optional[int] = None, end_ns: Optional[int] = None,
                           front_month_only: bool = True, specific_contract: Optional[str] = None,
                           dedupe: bool = True) -> pd.DataFrame:
        """MBP-10 book rows of root ``symbol`` on ``date``, optionally in ``[start_ns, end_ns)``.

        ``specific_contract`` keeps that contract only; else ``front_month_only`` keeps the
        front month chosen from the date's TRADES (if the date has no trade, the result is
        empty).
        """
        contract = specific_contract
        if contract is None and front_month_only:
            try:
                contract = self.front_month(symbol, date).symbol
            except NoTradesError:
                return _empty(DATASETS_BY_PATH["futures/mbp10"].schema)
        return self._read(DATASETS_BY_PATH["futures/mbp10"], symbol, date, start_ns, end_ns,
                          contract, dedupe)

    def read_option_trades(self, underlying: str = "ES", date: Optional[str] = None,
                           start_ns: Optional[int] = None, end_ns: Optional[int] = None,
                           dedupe: bool = True) -> pd.DataFrame:
        """Option trades on ``underlying`` on ``date``, optionally in ``[start_ns, end_ns)``."""
        return self._read(DATASETS_BY_PATH["options/trades"], underlying, date, start_ns, end_ns,
                          None, dedupe)

    def front_month(self, symbol: str = "ES", date: Optional[str] = None) -> FrontMonth:
        """Front month of root ``symbol`` on ``date`` from its deduplicated trades (most RTH
        trades; see ``transforms.front_month``).  Raises NoTradesError if there is none."""
        trades = self._read(DATASETS_BY_PATH["futures/trades"], symbol, date, None, None, None,
                            dedupe=True)
        return select_front_month(trades, date=date)

    def available_dates(self, dataset: str = "futures/trades",
                        partition_value: str = "ES") -> list[str]:
        """Sorted dates ('YYYY-MM-DD') that have a folder for ``partition_value`` in
        ``dataset`` ('futures/trades', 'futures/mbp10', 'options/trades'); no file is read."""
        check_bronze_layout(self.storage, "bronze", DATASETS_BY_PATH[dataset].path)
        folder = partition_folder("bronze", dataset, partition_value)
        prefix = f"{DATE_KEY}="
        return sorted(name[len(prefix):] for name in self.storage.list_dirs(folder)
                      if name.startswith(prefix))

    # ---- internals ---------------------------------------------------------------------
    def _read(self, ds: BronzeDataset, value: str, date: str, start_ns: Optional[int],
              end_ns: Optional[int], contract: Optional[str], dedupe: bool) -> pd.DataFrame:
        if not date:
            raise ValueError("date ('YYYY-MM-DD') is required")
        day = dt.date.fromisoformat(date)   # validates the date
        check_bronze_layout(self.storage, "bronze", ds.path)
        rel = partition_folder("bronze", ds.path, value, day.isoformat())
        files = self.storage.list_files(rel)   # visible *.parquet only, no '.'/'_' parts
        if not files:
            return _empty(ds.schema)
        # The dataset starts at the date folder, so only hour=HH is a partition field.
        dataset = pads.dataset(files, schema=ds.schema.append(pa.field(HOUR_KEY, pa.int32())),
                               filesystem=self.storage.fs, format="parquet",
                               partitioning=_HOUR_PARTITIONING,
                               partition_base_dir=self.storage.path(rel))
        table = dataset.to_table(columns=ds.schema.names,
                                 filter=_filter(day, start_ns, end_ns, contract))
        df = _to_pandas(table, ds.schema)
        if dedupe and len(df):
            df = _dedupe(df, ds)
        return df.sort_values("ts_event_ns", kind="stable").reset_index(drop=True)


def _filter(day: dt.date, start_ns, end_ns, contract) -> pc.Expression:
    """Partition filter on hour (derived from the time range) plus row filters."""
    day0 = int(dt.datetime.combine(day, dt.time(), dt.timezone.utc).timestamp()) * 10**9
    expr = pc.scalar(True)
    if start_ns is not None:
        expr &= (pc.field(HOUR_KEY) >= min(23, max(0, (start_ns - day0) // _HOUR_NS)))
        expr &= pc.field("ts_event_ns") >= start_ns
    if end_ns is not None:
        expr &= (pc.field(HOUR_KEY) <= min(23, max(0, (end_ns - 1 - day0) // _HOUR_NS)))
        expr &= pc.field("ts_event_ns") < end_ns
    if contract is not None:
        expr &= pc.field("symbol") == contract
    return expr


def _to_pandas(table: pa.Table, schema: pa.Schema) -> pd.DataFrame:
    df = table.to_pandas()
    for f in schema:   # keep nullable integers exact (no float64 fallback on nulls)
        if f.nullable and pa.types.is_integer(f.type):
            df[f.name] = table[f.name].to_pandas(types_mapper=_NULLABLE_INTS.get)
    return df


def _empty(schema: pa.Schema) -> pd.DataFrame:
    return _to_pandas(schema.empty_table(), schema)


def _dedupe(df: pd.DataFrame, ds: BronzeDataset) -> pd.DataFrame:
    """Keeps the first of rows equal on all identity columns (list cells, if a dataset's
    identity has any, compared as tuples; the returned values are the original ones).
    Fast path: rows unique on the scalar identity columns are unique; only the (rare)
    candidates also compare lists."""
    lists = [f.name for f in ds.schema
             if pa.types.is_list(f.type) and f.name in ds.identity_columns]
    scalars = [c for c in ds.identity_columns if c not in lists]
    if not lists:
        return df[~df.duplicated(scalars)]
    candidates = df.duplicated(scalars, keep=False).to_numpy()
    if not candidates.any():
        return df
    key = df.loc[candidates, ds.identity_columns].copy()
    for name in lists:
        key[name] = key[name].map(lambda v: None if v is None else tuple(v))
    drop = pd.Series(False, index=df.index)
    drop[key.index] = key.duplicated().to_numpy()
    return df[~drop.to_numpy()]
