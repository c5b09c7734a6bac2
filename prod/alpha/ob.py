"""Order-book provider port (bible §9): query types, a null provider, an in-process provider fed
by dicts, OB sub-3 market multiplier and OB sub-4 macro stress for the ACB.

Design notes: ``docs/design/prod.alpha.md``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Protocol


@dataclass(frozen=True, slots=True)
class OBSignal:
    """Per-asset OB signal (§9.1)."""
    imbalance_ma5: float = 0.0
    imbalance_persistence: float = 0.0
    withdrawal_velocity: float = 0.0


@dataclass(frozen=True, slots=True)
class OBMacro:
    """Market-wide OB state (§9.2)."""
    cascade_count: int = 0
    regime_signal: int = 0
    market_imbalance: float = 0.0
    withdrawal_stress: float = 0.0


@dataclass(frozen=True, slots=True)
class OBPlacement:
    """Per-asset placement quality (§9.3)."""
    depth_quality: float = 1.0
    fill_probability: float = 0.5


class OBProvider(Protocol):
    """Port the engine queries; `is_null` True means "no OB data: use legacy paths"."""
    is_null: bool

    def get_signal(self, asset: str) -> Optional[OBSignal]: ...
    def get_macro(self) -> Optional[OBMacro]: ...
    def get_placement(self, asset: str) -> Optional[OBPlacement]: ...


class NullOBProvider:
    """Provider with no data: the engine falls back to the legacy Monte-Carlo OB edge."""
    is_null = True

    def get_signal(self, asset: str) -> Optional[OBSignal]:
        return None

    def get_macro(self) -> Optional[OBMacro]:
        return None

    def get_placement(self, asset: str) -> Optional[OBPlacement]:
        return None


def _f(d: Mapping, key: str, default: float) -> float:
    v = d.get(key, default)
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"OB field {key!r} is not a number: {v!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"OB field {key!r} is not finite: {v!r}")
    return v


class InProcessOBProvider:
    """Provider holding the latest OB values per asset, fed from plain dicts.

    `update_asset(asset, {...})` accepts the keys of OBSignal and OBPlacement; `update_macro({...})`
    the keys of OBMacro.  Non-numeric or non-finite values raise ValueError and leave the previous
    values untouched (the caller logs and drops).
    """
    is_null = False

    def __init__(self) -> None:
        self._signals: dict[str, OBSignal] = {}
        self._placements: dict[str, OBPlacement] = {}
        self._macro: Optional[OBMacro] = None

    def update_asset(self, asset: str, d: Mapping) -> None:
        sig = OBSignal(_f(d, "imbalance_ma5", 0.0), _f(d, "imbalance_persistence", 0.0),
                       _f(d, "withdrawal_velocity", 0.0))
        pl = OBPlacement(_f(d, "depth_quality", 1.0), _f(d, "fill_probability", 0.5))
        self._signals[asset] = sig
        self._placements[asset] = pl

    def update_macro(self, d: Mapping) -> None:
        rs = int(_f(d, "regime_signal", 0))
        if rs not in (-1, 0, 1):
            raise ValueError(f"OB field 'regime_signal' is not -1, 0 or +1: {rs!r}")
        self._macro = OBMacro(max(0, int(_f(d, "cascade_count", 0))), rs,
                              _f(d, "market_imbalance", 0.0), _f(d, "withdrawal_stress", 0.0))

    def clear_macro(self) -> None:
        """Forget the macro (stale or invalid source): the engine sees None, i.e. neutral."""
        self._macro = None

    def get_signal(self, asset: str) -> Optional[OBSignal]:
        return self._signals.get(asset)

    def get_macro(self) -> Optional[OBMacro]:
        return self._macro

    def get_placement(self, asset: str) -> Optional[OBPlacement]:
        return self._placements.get(asset)


def market_ob_multiplier(macro: Optional[OBMacro], direction: int) -> float:
    """Return the OB sub-3 leverage multiplier in [0.85, 1.20] (decision in module docstring)."""
    if macro is None or not math.isfinite(macro.market_imbalance):
        return 1.0
    eff = direction * macro.market_imbalance
    if eff > 0.10:
        return 1.0 + min(0.20, eff)
    if eff < -0.10:
        return max(0.85, 1.0 + eff)
    return 1.0


def macro_stress(macro: Optional[OBMacro]) -> float:
    """Return the OB sub-4 macro withdrawal stress in [0, 1] for the ACB beta."""
    if macro is None:
        return 0.0
    ws = macro.withdrawal_stress if math.isfinite(macro.withdrawal_stress) else 0.0
    s = max(ws, 1.0 if macro.regime_signal == 1 else 0.0, min(1.0, max(0, macro.cascade_count) / 5.0))
    return min(1.0, max(0.0, s))


def ob_beta_multiplier(stress: float, max_boost: float = 0.25) -> float:
    """Return 1 + max_boost * clamp(stress, 0, 1): the ACB beta modulation (OB sub-4)."""
    if not math.isfinite(stress):
        return 1.0
    return 1.0 + max_boost * min(1.0, max(0.0, stress))
