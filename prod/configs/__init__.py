"""Strategy configuration loader: blue.yml / green.yml → typed `StrategyConfig` with champion hash
and drift check (bible §19, shared/ARCHITECTURE.md §6).

Design notes: ``docs/design/prod.configs.md``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from prod.alpha.params import (CHAMPION_ACB, CHAMPION_ENGINE, LONG, SHORT, AcbParams, EngineParams,
                               ParamError)

CONFIG_DIR = Path(__file__).resolve().parent
BLUE_PATH = CONFIG_DIR / "blue.yml"
GREEN_PATH = CONFIG_DIR / "green.yml"
_TOP_KEYS = {"strategy", "direction", "engine", "acb"}
_DIRECTIONS = {"SHORT": SHORT, "LONG": LONG}


class ConfigError(ValueError):
    """The config file is unreadable, malformed or out of range (fix the file)."""


class ConfigDriftError(ConfigError):
    """A blue (champion) config differs from the frozen champion values."""

    def __init__(self, source: str, drifted: dict[str, tuple[Any, Any]]) -> None:
        self.drifted = drifted
        detail = ", ".join(f"{k}: {v[0]!r} != champion {v[1]!r}" for k, v in sorted(drifted.items()))
        super().__init__(f"{source}: champion config drifted, refusing to run; drifted keys: {detail}")


@dataclass(frozen=True)
class StrategyConfig:
    """A loaded strategy: name, engine and ACB parameters, and the champion hash."""
    strategy: str
    engine: EngineParams
    acb: AcbParams
    champion_hash: str
    source: str

    @property
    def direction(self) -> int:
        return self.engine.direction

    def params_dict(self) -> dict[str, Any]:
        return {"engine": self.engine.to_dict(), "acb": self.acb.to_dict()}


def champion_hash(params: Mapping[str, Any]) -> str:
    """Return sha256(json.dumps(params, sort_keys=True))[:16]."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


CHAMPION_HASH = champion_hash({"engine": CHAMPION_ENGINE, "acb": CHAMPION_ACB})


def drift(engine: EngineParams, acb: AcbParams) -> dict[str, tuple[Any, Any]]:
    """Return {key: (value, champion)} for every value that differs from the champion."""
    out: dict[str, tuple[Any, Any]] = {}
    for prefix, have, want in (("engine", engine.to_dict(), CHAMPION_ENGINE),
                               ("acb", acb.to_dict(), CHAMPION_ACB)):
        for k, v in want.items():
            if have.get(k) != v or type(have.get(k)) is not type(v):
                out[f"{prefix}.{k}"] = (have.get(k), v)
    return out


def parse_config(raw: Any, source: str = "<config>", allow_drift: bool = False) -> StrategyConfig:
    """Validate an already-parsed YAML mapping into a StrategyConfig."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: top level must be a mapping")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}")
    strategy = raw.get("strategy")
    if strategy not in ("blue", "green"):
        raise ConfigError(f"{source}: strategy must be 'blue' or 'green', got {strategy!r}")
    dname = raw.get("direction", "SHORT" if strategy == "blue" else "LONG")
    if dname not in _DIRECTIONS:
        raise ConfigError(f"{source}: direction must be SHORT or LONG, got {dname!r}")
    eng_raw = raw.get("engine") or {}
    acb_raw = raw.get("acb") or {}
    if not isinstance(eng_raw, Mapping) or not isinstance(acb_raw, Mapping):
        raise ConfigError(f"{source}: 'engine' and 'acb' must be mappings")
    if "direction" in eng_raw:
        raise ConfigError(f"{source}: engine.direction is set by the top-level 'direction' key")
    try:
        engine = EngineParams.from_dict({**eng_raw, "direction": _DIRECTIONS[dname]}, source)
        acb = AcbParams.from_dict(acb_raw, source)
    except ParamError as e:
        raise ConfigError(str(e)) from None
    if strategy == "blue" and not allow_drift:
        d = drift(engine, acb)
        if d:
            raise ConfigDriftError(source, d)
    h = champion_hash({"engine": engine.to_dict(), "acb": acb.to_dict()})
    return StrategyConfig(strategy, engine, acb, h, source)


def load_config(path: str | Path, allow_drift: bool = False) -> StrategyConfig:
    """Load and validate a strategy YAML file; blue refuses to run when drifted."""
    path = Path(path)
    try:
        # libyaml's parser when present (same SafeLoader resolver, so the same values), else pure Python
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML: {e}") from None
    return parse_config(raw, str(path), allow_drift)


def load_blue() -> StrategyConfig:
    """Load prod/configs/blue.yml (champion SHORT)."""
    return load_config(BLUE_PATH)


def load_green() -> StrategyConfig:
    """Load prod/configs/green.yml (LONG research)."""
    return load_config(GREEN_PATH)
