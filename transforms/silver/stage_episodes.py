"""Stage 17 -- episodes: one fixed-length, label-free float32 vector per event.

``episodes(day)`` returns ``day.replace(episodes=frame)``; the events frame is not changed.
Inputs: ``day.events`` (stage 15 output), ``day.bars_1m``.  Parameters: ``episodes.dims``
(144), ``episodes.clip`` (4.0), ``episodes.history_steps`` (5), ``episodes.dct_series`` (4),
``episodes.dct_coefficients`` (8), ``episodes.components`` (block sizes, which must add up to
``dims``), ``levels.kind_codes``.

The vector is built ONLY from the event's own identity and feature columns and from 1-minute
bars completed at or before the event (``bar_ns + 60 s <= ts_ns``): no label column is read
to build it, and no later event, bar or trade can change it.  The ``outcome`` column of the
output is the event's primary (4-minute) label copied through as the training target; it is
a label and is never part of ``vector``.

Vector layout (block order as below; :func:`vector_names` gives the name of every position)

context (25)
    one-hot of ``level_kind`` over ``levels.kind_codes`` in ascending code order (PM_HIGH,
    PM_LOW, OR_HIGH, OR_LOW, SMA_200, SMA_400: positions 0-5); direction (+1 UP, -1 DOWN, 0
    otherwise: position 6); then ``minutes_since_open, distance_atr``, the six
    ``dist_<kind>_atr`` in the same kind order, ``stacking_2pt, stacking_5pt, stacking_10pt,
    atr, volatility, gex_asymmetry, gex_ratio, fuel_net_gamma, prior_touches, attempt_index``.
dynamics (37)
    ``velocity_*``, then ``acceleration_*``, then ``jerk_*`` for 1/3/5/10/20 min (15);
    ``ofi_30s, ofi_60s, ofi_120s, ofi_300s, ofi_acceleration`` (5);
    ``depth_change_1/3/5min, depth_pct_change_1/3/5min, depth_current`` (7);
    ``tape_buy_vol, tape_sell_vol, tape_imbalance, tape_velocity`` (4);
    ``barrier_depth_start, barrier_depth_end, barrier_delta_liq, barrier_wall_ratio`` (4);
    ``approach_velocity, approach_distance`` (2).
micro_history (35)
    the last ``history_steps`` (5) rows of ``bars_1m`` that are completed before the event
    (``bar_ns + 60 s <= ts_ns``; "last rows", so a minute without trades has no bar and is
    skipped), oldest first, 7 values each (step-major): ``close - level_price, high -
    level_price, low - level_price, volume, buy_volume - sell_volume, high - low, close -
    open``.  When fewer bars exist the missing (oldest) steps are zeros.
derived_physics (11)
    ``force, mass, predicted_acceleration, acceleration_residual, log_tape_volume,
    log_barrier_depth, tape_volume_nonzero, gex_nonzero`` (booleans as 0/1),
    ``fuel_effect`` code (AMPLIFY -1, NEUTRAL 0, DAMPEN 1), ``barrier_state`` code (VACUUM -2,
    CONSUMED -1, NEUTRAL 0, WEAK 0, ABSORPTION 1, WALL 2; other/missing 0), ``approach_bars``.
trends (4)
    ``momentum_trend``, ``(sma_200 - entry_price) / atr``, ``(sma_400 - entry_price) / atr``
    (0 when atr is 0 or missing), ``sign(velocity_20min)``.
dct (32)
    orthonormal DCT-II (``X_k = s_k sum_n x_n cos(pi k (2n + 1) / 2N)``, ``s_0 = sqrt(1/N)``,
    ``s_k = sqrt(2/N)``, the same as ``scipy.fft.dct(x, type=2, norm='ortho')``; implemented
    with numpy, no scipy dependency) of ``dct_series`` (4) series over the last
    ``DCT_WINDOW_BARS`` (N = 20) completed bars (same bar rule as micro_history, oldest first,
    zero-padded at the front when fewer): ``close - level_price, volume, buy_volume -
    sell_volume, high - low``; the first ``dct_coefficients`` (8) coefficients of each, series
    by series.  A constant series c puts ``c * sqrt(N)`` in coefficient 0 and 0 elsewhere.

Normalisation (per value, no statistics across events, which would leak later events into
earlier ones): NaN -> 0, then ``v = asinh(x)``, then clip to ``[-clip, +clip]``; stored as
float32.  This applies to every position, the one-hot and direction included (so a set
one-hot bit is ``asinh(1) = 0.8814``).

Output frame, one row per event in ``ts_ns`` order (ties by ``event_id``)
    ``event_id, ts_ns, date, level_kind`` (int8), ``level_kind_name, direction``,
    ``time_bucket`` (int8: ``minutes_since_open // 30``, clipped at 0; 0 when missing),
    ``emission_weight`` (float32: ``1 / attempt_index``; 1.0 when attempt_index is missing
    or < 1), ``outcome`` (the primary label, the training target), ``vector`` (np.float32
    array of ``dims`` values).  :data:`EPISODE_SCHEMA` is the matching Arrow schema.

Zero events give an empty frame with these columns.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa

from transforms.silver.day import SilverDay
from transforms.silver.series import safe_div
from transforms.silver.session import NS_PER_MIN
from transforms.silver.registry import silver_stage

BLOCKS: Tuple[str, ...] = ("context", "dynamics", "micro_history", "derived_physics", "trends",
                           "dct")

# Fixed parts of the layout (the one-hot and dist_*_atr columns follow levels.kind_codes).
CONTEXT_HEAD: Tuple[str, ...] = ("minutes_since_open", "distance_atr")
CONTEXT_TAIL: Tuple[str, ...] = ("stacking_2pt", "stacking_5pt", "stacking_10pt", "atr",
                                 "volatility", "gex_asymmetry", "gex_ratio", "fuel_net_gamma",
                                 "prior_touches", "attempt_index")
_KIN_WINDOWS = (1, 3, 5, 10, 20)
DYNAMICS_COLUMNS: Tuple[str, ...] = (
    tuple(f"velocity_{w}min" for w in _KIN_WINDOWS)
    + tuple(f"acceleration_{w}min" for w in _KIN_WINDOWS)
    + tuple(f"jerk_{w}min" for w in _KIN_WINDOWS)
    + ("ofi_30s", "ofi_60s", "ofi_120s", "ofi_300s", "ofi_acceleration")
    + ("depth_change_1min", "depth_change_3min", "depth_change_5min", "depth_pct_change_1min",
       "depth_pct_change_3min", "depth_pct_change_5min", "depth_current")
    + ("tape_buy_vol", "tape_sell_vol", "tape_imbalance", "tape_velocity")
    + ("barrier_depth_start", "barrier_depth_end", "barrier_delta_liq", "barrier_wall_ratio")
    + ("approach_velocity", "approach_distance"))
PHYSICS_NUMERIC: Tuple[str, ...] = ("force", "mass", "predicted_acceleration",
                                    "acceleration_residual", "log_tape_volume",
                                    "log_barrier_depth", "tape_volume_nonzero", "gex_nonzero")
MICRO_FIELDS: Tuple[str, ...] = ("close_minus_level", "high_minus_level", "low_minus_level",
                                 "volume", "buy_minus_sell", "high_minus_low", "close_minus_open")
DCT_SERIES: Tuple[str, ...] = ("close_minus_level", "volume", "buy_minus_sell", "high_minus_low")
DCT_WINDOW_BARS = 20
BAR_NS = NS_PER_MIN                                  # a 1-minute bar is known at bar_ns + 60 s

FUEL_EFFECT_CODES: Dict[str, float] = {"AMPLIFY": -1.0, "NEUTRAL": 0.0, "DAMPEN": 1.0}
BARRIER_STATE_CODES: Dict[str, float] = {"VACUUM": -2.0, "CONSUMED": -1.0, "NEUTRAL": 0.0,
                                         "WEAK": 0.0, "ABSORPTION": 1.0, "WALL": 2.0}
TIME_BUCKET_MIN = 30

OUTPUT_COLUMNS: Tuple[str, ...] = ("event_id", "ts_ns", "date", "level_kind", "level_kind_name",
                                   "direction", "time_bucket", "emission_weight", "outcome",
                                   "vector")


def episode_schema(dims: int = 144) -> pa.Schema:
    """Arrow schema of the episodes frame (``vector`` a fixed-size list of ``dims`` float32)."""
    return pa.schema([
        pa.field("event_id", pa.string()), pa.field("ts_ns", pa.int64()),
        pa.field("date", pa.date32()), pa.field("level_kind", pa.int8()),
        pa.field("level_kind_name", pa.string()), pa.field("direction", pa.string()),
        pa.field("time_bucket", pa.int8()), pa.field("emission_weight", pa.float32()),
        pa.field("outcome", pa.string()), pa.field("vector", pa.list_(pa.float32(), dims)),
    ])


EPISODE_SCHEMA = episode_schema(144)


def _kinds(params_day: SilverDay) -> List[Tuple[str, int]]:
    codes = params_day.param("levels.kind_codes")
    return sorted(((str(n), int(c)) for n, c in codes.items()), key=lambda nc: nc[1])


def _layout(day: SilverDay, physics_numeric: Sequence[str] = PHYSICS_NUMERIC
            ) -> List[Tuple[str, List[str]]]:
    """``[(block, [position names])]`` for ``day``'s parameters; checks every block's size
    against ``episodes.components`` and their sum against ``episodes.dims``."""
    kinds = _kinds(day)
    steps = int(day.param("episodes.history_steps"))
    n_series = int(day.param("episodes.dct_series"))
    n_coef = int(day.param("episodes.dct_coefficients"))
    if n_series != len(DCT_SERIES):
        raise ValueError(f"episodes.dct_series is {n_series}, the layout defines "
                         f"{len(DCT_SERIES)} series {DCT_SERIES}")
    if not 0 < n_coef <= DCT_WINDOW_BARS:
        raise ValueError(f"episodes.dct_coefficients must be in 1..{DCT_WINDOW_BARS}, got {n_coef}")
    layout = [
        ("context", [f"onehot_{n}" for n, _ in kinds] + ["direction"] + list(CONTEXT_HEAD)
         + [f"dist_{n.lower()}_atr" for n, _ in kinds] + list(CONTEXT_TAIL)),
        ("dynamics", list(DYNAMICS_COLUMNS)),
        ("micro_history", [f"bar_t-{steps - i}.{f}" for i in range(steps) for f in MICRO_FIELDS]),
        ("derived_physics", list(physics_numeric) + ["fuel_effect_code", "barrier_state_code",
                                                     "approach_bars"]),
        ("trends", ["momentum_trend", "sma_200_minus_entry_atr", "sma_400_minus_entry_atr",
                    "sign_velocity_20min"]),
        ("dct", [f"dct.{s}.c{k}" for s in DCT_SERIES for k in range(n_coef)]),
    ]
    components = day.param("episodes.components")
    dims = int(day.param("episodes.dims"))
    sizes = {b: int(components[b]) for b in BLOCKS}
    if sum(sizes.values()) != dims:
        raise ValueError(f"episodes.components {sizes} add up to {sum(sizes.values())}, "
                         f"not episodes.dims {dims}")
    for block, names in layout:
        if len(names) != sizes[block]:
            raise ValueError(f"episode block {block!r} has {len(names)} values but "
                             f"episodes.components.{block} is {sizes[block]}")
    return layout


def vector_names(day: SilverDay, physics_numeric: Sequence[str] = PHYSICS_NUMERIC) -> List[str]:
    """``'block.name'`` of every vector position, in order (length ``episodes.dims``)."""
    return [f"{block}.{n}" for block, names in _layout(day, physics_numeric) for n in names]


def block_slices(day: SilverDay) -> Dict[str, slice]:
    """Position range of every block in the vector."""
    out, start = {}, 0
    for block, names in _layout(day):
        out[block] = slice(start, start + len(names))
        start += len(names)
    return out


def dct_ii_matrix(n: int) -> np.ndarray:
    """The ``n x n`` orthonormal DCT-II matrix ``C`` (coefficients = ``C @ x``)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos(np.pi * k * (2 * i + 1) / (2 * n)) * np.sqrt(2.0 / n)
    c[0, :] = np.sqrt(1.0 / n)
    return c


def _num(events: pd.DataFrame, name: str) -> np.ndarray:
    """Column as float64 (booleans 0/1; anything non-numeric or missing NaN)."""
    s = events[name]
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _codes(events: pd.DataFrame, name: str, table: Dict[str, float]) -> np.ndarray:
    return np.array([table.get(v, 0.0) if isinstance(v, str) else 0.0
                     for v in events[name].astype(object)], dtype=float)


def _bar_windows(bars: pd.DataFrame, ts: np.ndarray, width: int):
    """Per event, the row indices (into ``bars`` sorted by bar_ns) of the last ``width`` bars
    completed at or before ``ts`` (``bar_ns + 60 s <= ts``), oldest first; -1 pads the front."""
    if not len(bars) or not len(ts):
        return np.full((len(ts), width), -1, dtype=np.int64)
    end = np.searchsorted(bars["bar_ns"].to_numpy(dtype=np.int64) + BAR_NS, ts, side="right")
    idx = end[:, None] - width + np.arange(width)[None, :]
    return np.where(idx >= 0, idx, -1)


def _bar_fields(bars: pd.DataFrame, idx: np.ndarray, level: np.ndarray, fields: Sequence[str]):
    """``(n_events, width, len(fields))`` bar values for ``idx`` (zeros where ``idx == -1``)."""
    def col(name):
        if not len(bars):
            return np.zeros(0)
        return pd.to_numeric(bars[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)

    o, h, l, c = col("open"), col("high"), col("low"), col("close")
    vol, buy, sell = col("volume"), col("buy_volume"), col("sell_volume")
    safe = np.clip(idx, 0, None)
    lv = level[:, None]
    values = {}
    for f in fields:
        if not len(bars):
            v = np.zeros(idx.shape)
        elif f == "close_minus_level":
            v = c[safe] - lv
        elif f == "high_minus_level":
            v = h[safe] - lv
        elif f == "low_minus_level":
            v = l[safe] - lv
        elif f == "volume":
            v = vol[safe]
        elif f == "buy_minus_sell":
            v = buy[safe] - sell[safe]
        elif f == "high_minus_low":
            v = h[safe] - l[safe]
        elif f == "close_minus_open":
            v = c[safe] - o[safe]
        else:  # pragma: no cover - layout constants only name the fields above
            raise KeyError(f)
        values[f] = np.where(idx >= 0, np.nan_to_num(v, nan=0.0), 0.0)
    return np.stack([values[f] for f in fields], axis=-1)


def required_columns(day: SilverDay, physics_numeric: Sequence[str] = PHYSICS_NUMERIC
                     ) -> List[str]:
    """Event columns the vector is built from (identity and feature columns only)."""
    kinds = _kinds(day)
    return (["ts_ns", "level_kind", "direction", "level_price", "entry_price"]
            + list(CONTEXT_HEAD) + [f"dist_{n.lower()}_atr" for n, _ in kinds]
            + list(CONTEXT_TAIL) + list(DYNAMICS_COLUMNS) + list(physics_numeric)
            + ["fuel_effect", "barrier_state", "approach_bars", "momentum_trend", "sma_200",
               "sma_400", "velocity_20min"])


def episode_vectors(day: SilverDay, events: pd.DataFrame,
                    physics_numeric: Sequence[str] = PHYSICS_NUMERIC,
                    scales: Optional[Mapping[str, float]] = None) -> np.ndarray:
    """``(len(events), dims)`` float32 normalised vectors of ``events`` (rows in frame order)."""
    layout = _layout(day, physics_numeric)
    dims = int(day.param("episodes.dims"))
    clip = float(day.param("episodes.clip"))
    steps = int(day.param("episodes.history_steps"))
    n_coef = int(day.param("episodes.dct_coefficients"))
    kinds = _kinds(day)
    n = len(events)
    if n == 0:
        return np.zeros((0, dims), dtype=np.float32)
    missing = [c for c in required_columns(day, physics_numeric) if c not in events.columns]
    if missing:
        raise ValueError(f"{day.date}: episodes need event column(s) {missing}")

    ts = events["ts_ns"].to_numpy(dtype=np.int64)
    level = _num(events, "level_price")
    kind = events["level_kind"].to_numpy(dtype=np.int64)
    direction = events["direction"].astype(object).to_numpy()
    atr = _num(events, "atr")

    blocks: Dict[str, np.ndarray] = {}
    onehot = np.stack([(kind == code).astype(float) for _, code in kinds], axis=1)
    dir_sign = np.where(direction == "UP", 1.0, np.where(direction == "DOWN", -1.0, 0.0))
    ctx_cols = (list(CONTEXT_HEAD) + [f"dist_{name.lower()}_atr" for name, _ in kinds]
                + list(CONTEXT_TAIL))
    blocks["context"] = np.column_stack([onehot, dir_sign[:, None]]
                                        + [_num(events, c)[:, None] for c in ctx_cols])
    blocks["dynamics"] = np.column_stack([_num(events, c) for c in DYNAMICS_COLUMNS])

    bars = day.bars_1m.sort_values("bar_ns", kind="stable").reset_index(drop=True)
    hist = _bar_fields(bars, _bar_windows(bars, ts, steps), level, MICRO_FIELDS)
    blocks["micro_history"] = hist.reshape(n, steps * len(MICRO_FIELDS))

    blocks["derived_physics"] = np.column_stack(
        [_num(events, c) for c in physics_numeric]
        + [_codes(events, "fuel_effect", FUEL_EFFECT_CODES),
           _codes(events, "barrier_state", BARRIER_STATE_CODES),
           _num(events, "approach_bars")])

    entry = _num(events, "entry_price")
    blocks["trends"] = np.column_stack([
        _num(events, "momentum_trend"),
        safe_div(_num(events, "sma_200") - entry, atr),
        safe_div(_num(events, "sma_400") - entry, atr),
        np.sign(_num(events, "velocity_20min"))])

    series = _bar_fields(bars, _bar_windows(bars, ts, DCT_WINDOW_BARS), level, DCT_SERIES)
    basis = dct_ii_matrix(DCT_WINDOW_BARS)[:n_coef]                 # (n_coef, N)
    coef = np.einsum("kn,ens->esk", basis, series)                  # (events, series, coef)
    blocks["dct"] = coef.reshape(n, len(DCT_SERIES) * n_coef)

    raw = np.concatenate([blocks[b] for b, _ in layout], axis=1)
    assert raw.shape == (n, dims), raw.shape
    raw = np.where(np.isnan(raw), 0.0, raw)
    if scales is not None:
        raw = raw / scale_vector([n for _, names in layout for n in names], scales)
    return np.clip(np.arcsinh(raw), -clip, clip).astype(np.float32)


def scale_key(position: str) -> str:
    """The ``episodes.scales`` key of a vector position: the position itself for a column
    (``ofi_300s``), ``bar.<field>`` for every micro-history step of a bar field
    (``bar_t-3.volume``), ``dct.<series>`` for every coefficient of a DCT series."""
    if position.startswith("bar_t-"):
        return "bar." + position.split(".", 1)[1]
    if position.startswith("dct."):
        return position.rsplit(".", 1)[0]
    return position


def scale_vector(positions: Sequence[str], scales: Mapping[str, float]) -> np.ndarray:
    """Per position, the divisor applied before ``asinh`` (1.0 where no scale is declared);
    ValueError for a declared key that names no position or a scale that is not > 0."""
    keys = [scale_key(p) for p in positions]
    unknown = sorted(set(scales) - set(keys))
    if unknown:
        raise ValueError(f"episodes.scales names no vector position: {unknown}")
    bad = {k: v for k, v in scales.items() if not float(v) > 0}
    if bad:
        raise ValueError(f"episodes.scales must be > 0: {bad}")
    return np.array([float(scales.get(k, 1.0)) for k in keys])


@silver_stage("episodes", step=17, parameters=(
    "episodes.dims", "episodes.clip", "episodes.history_steps", "episodes.dct_series",
    "episodes.dct_coefficients", "episodes.components", "levels.kind_codes"))
def episodes(day: SilverDay) -> SilverDay:
    """Stage 17: one normalised 144-value vector per event (see the module docstring)."""
    return _episodes(day, PHYSICS_NUMERIC, None)


# v3.2.0: the two sparse-feature flags that approach@2 drops give way to two of the
# features v3.2.0 restores, and every input is divided by its declared scale before asinh.
PHYSICS_NUMERIC_V2: Tuple[str, ...] = ("force", "mass", "predicted_acceleration",
                                       "acceleration_residual", "log_tape_volume",
                                       "log_barrier_depth", "book_imbalance_5",
                                       "gamma_at_level_strike")


@silver_stage("episodes", version=2, step=17, parameters=(
    "episodes.dims", "episodes.clip", "episodes.history_steps", "episodes.dct_series",
    "episodes.dct_coefficients", "episodes.components", "episodes.scales", "levels.kind_codes"))
def episodes_v2(day: SilverDay) -> SilverDay:
    """As ``episodes`` with ``derived_physics`` = ``PHYSICS_NUMERIC_V2`` + the three codes, and
    each input x normalised as ``clip(asinh(x / scale), -clip, clip)`` with ``scale`` from
    ``episodes.scales`` (keys: :func:`scale_key`; 1.0 where none is declared), so that a
    typical value lands in the sensitive range of asinh instead of on the clip."""
    return _episodes(day, PHYSICS_NUMERIC_V2, dict(day.param("episodes.scales")))


def _episodes(day: SilverDay, physics_numeric: Sequence[str],
              scales: Optional[Mapping[str, float]]) -> SilverDay:
    day.require("events", "bars_1m")
    dims = int(day.param("episodes.dims"))
    layout = _layout(day, physics_numeric)                         # validate even with 0 events
    if scales is not None:
        scale_vector([n for _, names in layout for n in names], scales)
    events = day.events
    if len(events):
        if "outcome" not in events.columns:
            raise ValueError(f"{day.date}: episodes need the label column 'outcome' "
                             "(the training target; it is not part of the vector)")
        events = events.sort_values(["ts_ns", "event_id"], kind="stable").reset_index(drop=True)
    vectors = episode_vectors(day, events, physics_numeric, scales)
    n = len(events)

    def col(name, default=None):
        if name in events.columns:
            return events[name].reset_index(drop=True)
        return pd.Series([default] * n, dtype=object)

    minutes = _num(events, "minutes_since_open") if n else np.zeros(0)
    bucket = np.clip(np.floor_divide(np.nan_to_num(minutes, nan=0.0), TIME_BUCKET_MIN), 0, 127)
    attempt = _num(events, "attempt_index") if n else np.zeros(0)
    ok = np.isfinite(attempt) & (attempt >= 1)
    weight = np.where(ok, 1.0 / np.where(ok, attempt, 1.0), 1.0)

    out = pd.DataFrame({
        "event_id": col("event_id").astype(object),
        "ts_ns": (events["ts_ns"].to_numpy(dtype=np.int64) if n else np.zeros(0, np.int64)),
        "date": col("date"),
        "level_kind": (events["level_kind"].to_numpy().astype(np.int8) if n
                       else np.zeros(0, np.int8)),
        "level_kind_name": col("level_kind_name").astype(object),
        "direction": col("direction").astype(object),
        "time_bucket": bucket.astype(np.int8),
        "emission_weight": weight.astype(np.float32),
        "outcome": col("outcome").astype(object),
        "vector": pd.Series([vectors[i] for i in range(n)], dtype=object),
    }, columns=list(OUTPUT_COLUMNS))
    assert vectors.shape[1] == dims
    return day.replace(episodes=out)


def positions_of(stage_id: str, day: SilverDay) -> List[str]:
    """``block.name`` of every vector position written by episode stage ``stage_id``."""
    return vector_names(day, PHYSICS_NUMERIC_V2 if stage_id == "episodes@2" else PHYSICS_NUMERIC)
