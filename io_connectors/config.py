"""Loads the YAML files of ``configs/`` with a clear error for a missing or malformed file."""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A configuration file or value is missing or malformed; the message names it."""


def config_dir() -> Path:
    """The configs folder: ``$LAKE_CONFIG_DIR`` if set, else ``<project>/configs``."""
    return Path(os.environ.get("LAKE_CONFIG_DIR", PROJECT_ROOT / "configs"))


@functools.lru_cache(maxsize=None)
def _load(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML in {p}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping at top level, got {type(data).__name__}")
    return data


def load_config(name: str) -> dict:
    """Returns ``configs/<name>.yaml`` as a dict (cached; do not mutate)."""
    return _load(str(config_dir() / f"{name}.yaml"))


def require(cfg: dict, dotted: str, source: str) -> Any:
    """Returns ``cfg[a][b]...`` for ``dotted='a.b'`` or raises ConfigError naming the key."""
    cur: Any = cfg
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise ConfigError(f"{source}: missing key '{dotted}'")
        cur = cur[part]
    return cur


def resolve_path(value: str) -> str:
    """A relative filesystem path is taken from the project root; URLs pass through."""
    if "://" in value or os.path.isabs(value):
        return value
    return str(PROJECT_ROOT / value)


def bronze_rules():
    """The Bronze rules (``transforms.bronze_rules.BronzeRules``) set in configs/lake.yaml
    (``bronze``: price bounds per dataset); ConfigError naming a bad value."""
    from transforms.bronze_rules import BronzeRules
    try:
        return BronzeRules.from_config(load_config("lake"))
    except ValueError as exc:
        raise ConfigError(f"{config_dir() / 'lake.yaml'}: {exc}") from None
