"""Stage 12 -- force / mass (feature group ``force_mass``).

In
    ``day.events`` columns of earlier stages: ``ofi_60s`` (stage 8), ``tape_imbalance,
    tape_buy_vol, tape_sell_vol, barrier_depth_end`` (stage 6), ``acceleration_1min``
    (stage 7).  No parameters; no time series is read (the inputs are already causal
    features of the event).

Out (float64)
    ``force = ofi_60s + tape_imbalance * (tape_buy_vol + tape_sell_vol)`` (net signed
    order flow: book OFI plus the signed tape volume at the level).
    ``mass = max(barrier_depth_end, 1.0)`` (defending liquidity, floored at one contract;
    a NaN depth counts as no liquidity, i.e. mass 1.0), so ``mass >= 1`` always.
    ``predicted_acceleration = force / mass`` (always defined since ``mass >= 1``).
    ``acceleration_residual = acceleration_1min - predicted_acceleration``.

Guarantees
    Causal because its inputs are.  Finite whenever the input features are finite.  Pure:
    inputs not mutated; output = ``events`` plus exactly these 4 columns.  Works on 0 events.
"""
from __future__ import annotations

import numpy as np

from transforms.silver.day import SilverDay, add_columns
from transforms.silver.registry import silver_stage

_MIN_MASS = 1.0  # floor of the mass (part of the definition above, not a manifest parameter)
FORCE_MASS_COLUMNS = ("force", "mass", "predicted_acceleration", "acceleration_residual")


@silver_stage("force_mass", step=12, columns=FORCE_MASS_COLUMNS)
def force_mass(day: SilverDay) -> SilverDay:
    day.require("events")
    ev = day.events

    def col(name):
        return ev[name].to_numpy(dtype=float)

    force = col("ofi_60s") + col("tape_imbalance") * (col("tape_buy_vol") + col("tape_sell_vol"))
    mass = np.fmax(col("barrier_depth_end"), _MIN_MASS)
    predicted = force / mass
    residual = col("acceleration_1min") - predicted
    return day.replace(events=add_columns(ev, {
        "force": force.astype(np.float64),
        "mass": mass.astype(np.float64),
        "predicted_acceleration": predicted.astype(np.float64),
        "acceleration_residual": residual.astype(np.float64),
    }))
