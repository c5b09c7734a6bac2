"""Typed, frozen, validated parameters of the alpha engine (bible §19.1, §19.2, §21).

Design notes: ``docs/design/prod.alpha.md``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

SHORT = -1
LONG = 1


class ParamError(ValueError):
    """A parameter is unknown, mistyped or out of range (contract error: fix the config)."""


class _DictParams:
    """``to_dict``/``from_dict`` shared by the frozen parameter sets (unknown keys are refused)."""

    _kind = "parameter"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<dict>"):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ParamError(f"{source}: unknown {cls._kind}(s) {unknown}")
        try:
            return cls(**dict(d))
        except ParamError as e:
            raise ParamError(f"{source}: {e}") from None


@dataclass(frozen=True)
class EngineParams(_DictParams):
    """Every parameter of NDAlphaEngine; defaults are the blue champion (§19.1)."""

    _kind = "engine parameter"

    # direction: -1 SHORT (champion), +1 LONG (green)
    direction: int = SHORT
    # signal gate (§4.1)
    vel_div_threshold: float = -0.02
    vel_div_extreme: float = -0.05
    long_threshold: float = 0.01
    long_extreme: float = 0.04
    # sizing (§6)
    min_leverage: float = 0.5
    max_leverage: float = 5.0
    abs_max_leverage: float = 6.0
    leverage_convexity: float = 3.0
    fraction: float = 0.20
    min_fraction: float = 0.02
    use_dynamic_leverage: bool = True
    use_alpha_layers: bool = True
    bucket_min_trades: int = 5
    stalker_max_leverage: float = 2.0
    # exits (§7)
    fixed_tp_pct: float = 0.0095
    stop_pct: float = 1.0
    max_hold_bars: int = 120
    tp_slippage: float = 0.0002
    stop_slippage: float = 0.0005
    other_slippage: float = 0.0002
    subday_acb_high: float = 1.25
    subday_acb_low: float = 1.10
    # disabled research exits (§21 TODO-1, TODO-6)
    vd_enabled: bool = False
    vd_adverse_threshold: float = 0.02
    vd_adverse_bars: int = 3
    tf_enabled: bool = False
    tf_exhaust_ratio: float = 0.2
    tf_flip_ratio: float = 0.5
    # direction confirmation (§4.2)
    use_direction_confirm: bool = True
    dc_lookback_bars: int = 7
    dc_min_magnitude_bps: float = 0.75
    dc_skip_contradicts: bool = True
    dc_leverage_boost: float = 1.0
    # asset selection IRP (§5)
    use_asset_selection: bool = True
    irp_window: int = 50
    min_irp_alignment: float = 0.45
    irp_noise_max: float = 500.0
    irp_latency_max: int = 20
    irp_alignment_min: float = 0.20
    ob_min_depth_quality: float = 0.20
    fallback_asset: str = "BTCUSDT"
    # fees / SmartPlacer (§8)
    use_sp_fees: bool = True
    use_sp_slippage: bool = True
    sp_maker_entry_rate: float = 0.62
    sp_maker_exit_rate: float = 0.50
    maker_fee: float = 0.0002
    taker_fee: float = 0.0005
    # OB edge (§8.3)
    use_ob_edge: bool = True
    ob_edge_bps: float = 5.0
    ob_confirm_rate: float = 0.40
    # warmup / rng / capital
    lookback: int = 100
    seed: int = 42
    initial_capital: float = 25_000.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            want = f.type
            if want == "bool":
                if not isinstance(v, bool):
                    raise ParamError(f"{f.name}: expected bool, got {v!r}")
            elif want == "int":
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ParamError(f"{f.name}: expected int, got {v!r}")
            elif want == "float":
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ParamError(f"{f.name}: expected finite float, got {v!r}")
                object.__setattr__(self, f.name, float(v))
            elif want == "str":
                if not isinstance(v, str) or not v:
                    raise ParamError(f"{f.name}: expected non-empty str, got {v!r}")
        self._check()

    def _check(self) -> None:
        def need(cond: bool, key: str, msg: str) -> None:
            if not cond:
                raise ParamError(f"{key}: {msg} (got {getattr(self, key)!r})")

        need(self.direction in (SHORT, LONG), "direction", "must be -1 (SHORT) or +1 (LONG)")
        need(self.vel_div_extreme < self.vel_div_threshold < 0, "vel_div_threshold",
             "need vel_div_extreme < vel_div_threshold < 0")
        need(0 < self.long_threshold < self.long_extreme, "long_threshold",
             "need 0 < long_threshold < long_extreme")
        need(0 < self.min_leverage <= self.max_leverage, "min_leverage", "need 0 < min <= max_leverage")
        need(self.max_leverage <= self.abs_max_leverage, "max_leverage", "need <= abs_max_leverage")
        need(self.abs_max_leverage <= 20.0, "abs_max_leverage", "must be <= 20")
        need(self.min_leverage <= self.stalker_max_leverage <= self.abs_max_leverage, "stalker_max_leverage",
             "need min_leverage <= stalker_max_leverage <= abs_max_leverage")
        need(self.leverage_convexity > 0, "leverage_convexity", "must be > 0")
        need(0 < self.min_fraction <= self.fraction <= 1.0, "fraction", "need 0 < min_fraction <= fraction <= 1")
        need(self.bucket_min_trades >= 1, "bucket_min_trades", "must be >= 1")
        need(0 < self.fixed_tp_pct < 1.0, "fixed_tp_pct", "must be in (0, 1)")
        need(0 < self.stop_pct <= 1.0, "stop_pct", "must be in (0, 1]")
        need(self.max_hold_bars >= 1, "max_hold_bars", "must be >= 1")
        for k in ("tp_slippage", "stop_slippage", "other_slippage", "maker_fee", "taker_fee"):
            need(0 <= getattr(self, k) < 0.05, k, "must be in [0, 0.05)")
        need(self.subday_acb_low <= self.subday_acb_high, "subday_acb_low", "need <= subday_acb_high")
        need(self.vd_adverse_bars >= 1, "vd_adverse_bars", "must be >= 1")
        need(self.dc_lookback_bars >= 1, "dc_lookback_bars", "must be >= 1")
        need(self.dc_min_magnitude_bps >= 0, "dc_min_magnitude_bps", "must be >= 0")
        need(self.dc_leverage_boost > 0, "dc_leverage_boost", "must be > 0")
        need(self.irp_window >= 3, "irp_window", "must be >= 3")
        need(self.irp_window > self.dc_lookback_bars, "irp_window", "must exceed dc_lookback_bars")
        need(0 <= self.min_irp_alignment <= 1, "min_irp_alignment", "must be in [0, 1]")
        need(0 <= self.irp_alignment_min <= 1, "irp_alignment_min", "must be in [0, 1]")
        need(self.irp_latency_max >= 1, "irp_latency_max", "must be >= 1")
        for k in ("sp_maker_entry_rate", "sp_maker_exit_rate", "ob_confirm_rate"):
            need(0 <= getattr(self, k) <= 1, k, "must be in [0, 1]")
        need(0 <= self.ob_edge_bps <= 100, "ob_edge_bps", "must be in [0, 100]")
        need(self.lookback >= 0, "lookback", "must be >= 0")
        need(0 <= self.seed < 2**32, "seed", "must be in [0, 2**32)")
        need(self.initial_capital > 0, "initial_capital", "must be > 0")

    # --- helpers -------------------------------------------------------------------------
    def signed_gate(self) -> tuple[float, float]:
        """Return (threshold, extreme) in the SHORT-oriented frame x = -direction*... (see signal.py)."""
        if self.direction == SHORT:
            return self.vel_div_threshold, self.vel_div_extreme
        return -self.long_threshold, -self.long_extreme


@dataclass(frozen=True)
class AcbParams(_DictParams):
    """ACB v6 constants (§10, §19.2); consumed by prod/alpha/acb.py."""

    _kind = "acb parameter"

    beta_high: float = 0.8
    beta_low: float = 0.2
    w750_threshold_pct: float = 60.0
    funding_very_bearish: float = -0.0001
    funding_mild_bearish: float = 0.0
    dvol_extreme: float = 80.0
    dvol_elevated: float = 55.0
    fng_extreme_fear: float = 25.0
    fng_fear: float = 40.0
    taker_selling: float = 0.8
    taker_mild_selling: float = 0.9
    ob_beta_max_boost: float = 0.25

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ParamError(f"{f.name}: expected finite float, got {v!r}")
            object.__setattr__(self, f.name, float(v))
        if not 0 <= self.beta_low <= self.beta_high:
            raise ParamError(f"beta_low: need 0 <= beta_low <= beta_high (got {self.beta_low!r})")
        if not 0 < self.w750_threshold_pct < 100:
            raise ParamError(f"w750_threshold_pct: must be in (0, 100) (got {self.w750_threshold_pct!r})")



#: frozen champion values (§19.1 + §19.2) that a blue config must match exactly
CHAMPION_ENGINE: dict[str, Any] = EngineParams().to_dict()
CHAMPION_ACB: dict[str, Any] = AcbParams().to_dict()
