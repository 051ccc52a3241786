"""The 18 stages by name (the names of ``transforms.feature_manifest.KNOWN_STAGES``) and
their pure functions, plus :func:`run_stages`, the plain-Python composition used by the
Beam pipeline's stages and by tests."""
from __future__ import annotations

import importlib
import traceback
from typing import Callable, Iterable, Union

from transforms.feature_manifest import KNOWN_STAGES
from transforms.silver.day import DayFailure, SilverDay

# stage name -> module (below transforms.silver) holding a function of the same name
STAGE_MODULES = {
    "load_bronze": "stage_load_bronze",
    "bars_1m": "stage_bars",
    "bars_2m": "stage_bars",
    "market_state": "stage_market_state",
    "levels": "stage_levels",
    "interaction_zones": "stage_interaction_zones",
    "physics": "stage_physics",
    "kinematics": "stage_kinematics",
    "order_flow": "stage_order_flow",
    "barrier_evolution": "stage_barrier_evolution",
    "level_distances": "stage_level_distances",
    "gex": "stage_gex",
    "force_mass": "stage_force_mass",
    "approach": "stage_approach",
    "labels": "stage_labels",
    "rth_filter": "stage_rth_filter",
    "state_table": "stage_state_table",
    "episodes": "stage_episodes",
}
assert tuple(STAGE_MODULES) == KNOWN_STAGES

StageFn = Callable[[SilverDay], SilverDay]
DayOrFailure = Union[SilverDay, DayFailure]


def stage_function(name: str) -> StageFn:
    """The pure function of stage ``name``; KeyError for an unknown stage."""
    if name not in STAGE_MODULES:
        raise KeyError(f"unknown Silver stage {name!r}")
    module = importlib.import_module(f"transforms.silver.{STAGE_MODULES[name]}")
    return getattr(module, name)


def apply_stage(name: str, day: DayOrFailure, fn: StageFn = None) -> DayOrFailure:
    """Runs one stage; a failed day passes through, an exception becomes a DayFailure
    naming the stage and the error (so one bad date never stops the others)."""
    if isinstance(day, DayFailure):
        return day
    fn = fn or stage_function(name)
    try:
        out = fn(day)
    except Exception as exc:  # pylint: disable=broad-except
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        where = f" at {tb.filename.rsplit('/', 1)[-1]}:{tb.lineno}" if tb else ""
        return DayFailure(day.date, name, f"{type(exc).__name__}: {exc}{where}")
    if not isinstance(out, SilverDay):
        return DayFailure(day.date, name, f"stage returned {type(out).__name__}, not SilverDay")
    return out


def run_stages(day: DayOrFailure, names: Iterable[str]) -> DayOrFailure:
    """Applies the stages ``names`` in order."""
    for name in names:
        day = apply_stage(name, day)
    return day
