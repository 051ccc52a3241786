"""The one registry of Silver stages: each stage function declares itself with
:func:`silver_stage` (its name, its place in the pipeline, the manifest parameters it reads
and the event columns it adds); everything else (the manifest's known stages and required
parameters, the stage look-up of the Beam transforms) is derived from it in
:mod:`transforms.silver.stages`.

A stage is identified by ``name`` (``"physics"``) or, for a later definition of the same
step, ``name@version`` (``"physics@2"``).  A manifest lists stage ids; a version's output
never changes because another version's stage was redefined, since a redefinition is a new
function registered under a new id.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable, Dict, Iterable, Mapping, Sequence, Tuple, Union

ParamGetter = Callable[[str], Any]
Columns = Union[Sequence[str], Callable[[ParamGetter], Iterable[str]]]


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """What a stage declares about itself.

    ``step``: its position in the reference pipeline (0 = load_bronze … 17 = episodes);
    stages run in ``(step, name, version)`` order.  ``parameters``: the dotted manifest
    parameters it reads (a manifest listing the stage must define them).  ``columns``: the
    event columns it adds, a list or a function of a parameter getter (window lists name
    columns).  ``module``/``function``: where the function lives; it is looked up at call
    time, so a test may patch a stage by patching its module.
    """
    name: str
    version: int
    step: int
    parameters: Tuple[str, ...]
    columns: Columns
    module: str
    function: str

    @property
    def id(self) -> str:
        return self.name if self.version == 1 else f"{self.name}@{self.version}"

    def function_object(self) -> Callable:
        return getattr(sys.modules[self.module], self.function)

    def produced_columns(self, params: Mapping[str, Any]) -> list:
        """The event columns this stage adds under the manifest parameters ``params``."""
        if callable(self.columns):
            return list(self.columns(lambda dotted: _dotted(params, dotted)))
        return list(self.columns)


def _dotted(params: Mapping[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(f"manifest parameter {dotted!r} is missing")
        node = node[part]
    return node


_REGISTRY: Dict[str, StageSpec] = {}


def silver_stage(name: str, *, step: int, parameters: Sequence[str] = (),
                 columns: Columns = (), version: int = 1):
    """Registers the decorated ``SilverDay -> SilverDay`` function as stage ``name``
    (``name@version`` for ``version > 1``); returns the function unchanged."""
    def register(fn: Callable) -> Callable:
        spec = StageSpec(name, int(version), int(step), tuple(parameters), columns,
                         fn.__module__, fn.__name__)
        if spec.id in _REGISTRY and _REGISTRY[spec.id].module != spec.module:
            raise ValueError(f"Silver stage {spec.id!r} registered twice "
                             f"({_REGISTRY[spec.id].module} and {spec.module})")
        _REGISTRY[spec.id] = spec
        return fn
    return register


def registered() -> Tuple[StageSpec, ...]:
    """Every registered stage in pipeline order."""
    return tuple(sorted(_REGISTRY.values(), key=lambda s: (s.step, s.name, s.version)))
