"""The Silver stages by id, derived from the registry (:mod:`transforms.silver.registry`),
plus :func:`run_stages`, the plain-Python composition used by the Beam pipeline's stages and
by tests.

Every stage module is imported here, statically; importing a module registers the stages
it declares with ``@silver_stage``.  Adding a stage = one module (imported below) + the
manifest; ``tests/test_silver_registry.py`` fails when a ``stage_*`` module is not imported.
"""
from __future__ import annotations

import traceback
from typing import Callable, Dict, Iterable, List, Tuple, Union

from transforms.silver import (  # noqa: F401  (imported to register their stages)
    stage_approach, stage_barrier_evolution, stage_bars, stage_episodes, stage_force_mass,
    stage_gex, stage_interaction_zones, stage_kinematics, stage_labels,
    stage_level_distances, stage_levels, stage_load_bronze, stage_market_state,
    stage_order_flow, stage_physics, stage_rth_filter, stage_state_table)
from transforms.silver.day import DayFailure, SilverDay
from transforms.silver.registry import StageSpec, registered

STAGES: Tuple[StageSpec, ...] = registered()
KNOWN_STAGES: Tuple[str, ...] = tuple(s.id for s in STAGES)
REQUIRED_PARAMETERS: Dict[str, List[str]] = {s.id: list(s.parameters) for s in STAGES}
# stage id -> module (below transforms.silver) holding its function
STAGE_MODULES: Dict[str, str] = {s.id: s.module.rsplit(".", 1)[1] for s in STAGES}
_BY_ID: Dict[str, StageSpec] = {s.id: s for s in STAGES}

StageFn = Callable[[SilverDay], SilverDay]
DayOrFailure = Union[SilverDay, DayFailure]


def stage_spec(name: str) -> StageSpec:
    """The registry entry of stage ``name``; KeyError for an unknown stage."""
    if name not in _BY_ID:
        raise KeyError(f"unknown Silver stage {name!r}")
    return _BY_ID[name]


def stage_function(name: str) -> StageFn:
    """The pure function of stage ``name``; KeyError for an unknown stage."""
    return stage_spec(name).function_object()


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
