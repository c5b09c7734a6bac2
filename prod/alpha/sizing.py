"""Position sizing (bible §6, §10.4, §11.7): strength, cubic leverage, buckets, alpha layers,
effective fraction, ACB/MC regime size multiplier, leverage ceiling and STALKER cap.

All functions work in the SHORT-oriented frame of prod/alpha/signal.py (x, threshold, extreme),
so LONG sizing is the mirror image.  Pure scalar Python: these run once per entry (or once per bar
for `regime_size_mult`), where numba dispatch would cost more than the arithmetic.
"""
from __future__ import annotations

import math

_EDGE_EPS = 1e-12


def strength_score(x: float, threshold: float, extreme: float) -> float:
    """Return 1.0 at/after extreme, else clamp((threshold - x)/(threshold - extreme), 0, 1) (§6.1)."""
    if x <= extreme:
        return 1.0
    r = (threshold - x) / (threshold - extreme)
    return 0.0 if r < 0.0 else (1.0 if r > 1.0 else r)


def dynamic_leverage(strength: float, min_lev: float, max_lev: float, convexity: float) -> float:
    """Return min_lev + strength**convexity * (max_lev - min_lev) (§6.2)."""
    return min_lev + (strength ** convexity) * (max_lev - min_lev)


def signal_bucket(x: float, threshold: float, extreme: float) -> int:
    """Return 0 extreme (<= 1.5*extreme), 1 strong (<= extreme), 2 moderate (<= midpoint), 3 weak (§6.3).

    Edges are inclusive and compared with a 1e-12 tolerance, so the bible's literal edges
    (-0.075, -0.05, -0.035) land in the lower bucket despite float rounding of 1.5 * -0.05.
    """
    if x <= extreme * 1.5 + _EDGE_EPS:
        return 0
    if x <= extreme + _EDGE_EPS:
        return 1
    if x <= (threshold + extreme) / 2.0 + _EDGE_EPS:
        return 2
    return 3


def bucket_boost(wins: int, total: int, min_trades: int) -> float:
    """Return the per-bucket win-rate multiplier (§6.4); 1.0 below `min_trades` samples."""
    if total < min_trades or total <= 0:
        return 1.0
    wr = wins / total
    if wr > 0.60:
        return 1.3
    if wr > 0.55:
        return 1.1
    if wr < 0.40:
        return 0.7
    if wr < 0.45:
        return 0.85
    return 1.0


def streak_mult(recent_outcomes: list[bool] | tuple[bool, ...]) -> float:
    """Return the loss-streak multiplier over the last 5 trade outcomes (True = win) (§6.4).

    Fewer than 5 closed trades → 1.0.
    """
    if len(recent_outcomes) < 5:
        return 1.0
    losses = sum(1 for w in recent_outcomes[-5:] if not w)
    if losses >= 4:
        return 0.5
    if losses >= 3:
        return 0.7
    if losses <= 1:
        return 1.1
    return 1.0


def trend_mult(signed_trend: float) -> float:
    """Return the vel_div trend multiplier (§6.4).

    `signed_trend` is the trend in the SHORT frame: x[-1] - x[-10] (for SHORT this is
    vel_div[-1] - vel_div[-10]); < -0.01 deepening → 1.3, > 0.01 recovering → 0.7.
    """
    if signed_trend < -0.01:
        return 1.3
    if signed_trend > 0.01:
        return 0.7
    return 1.0


def effective_fraction(strength: float, extreme: bool, base_fraction: float, min_fraction: float,
                       trend: float, bucket: float, streak: float) -> float:
    """Return the clamped capital fraction (§6.4), always in [min_fraction, base_fraction]."""
    conf = 0.70 if extreme else 0.55
    conf_mult = conf / 0.95
    extreme_boost = 2.0 if extreme else 1.0
    base_frac = min_fraction + strength * (base_fraction - min_fraction)
    f = base_frac * conf_mult * extreme_boost * trend * bucket * streak
    if not math.isfinite(f) or f < min_fraction:
        return min_fraction
    return base_fraction if f > base_fraction else f


def regime_size_mult(x: float, threshold: float, extreme: float, convexity: float,
                     base_boost: float, beta: float, mc_scale: float) -> float:
    """Return the ACB scale-2 per-bar size multiplier (§6.5, §10.4)."""
    if beta > 0.0:
        r = (threshold - x) / (threshold - extreme)
        r = 0.0 if r < 0.0 else (1.0 if r > 1.0 else r)
        return base_boost * (1.0 + beta * r ** convexity) * mc_scale
    return base_boost * mc_scale


def final_leverage(base_leverage: float, dc_lev_mult: float, regime_mult: float, market_ob_mult: float,
                   min_lev: float, max_lev: float, abs_max_lev: float, stalker: bool,
                   stalker_max: float) -> float:
    """Return the clamped final leverage (§6.5, §11.7); always in [min_lev, abs_max_lev].

    Non-finite or non-positive multipliers collapse to the floor `min_lev`.
    """
    ceiling = max_lev * regime_mult * market_ob_mult
    if not math.isfinite(ceiling):
        ceiling = abs_max_lev if ceiling > 0 else min_lev
    ceiling = min(ceiling, abs_max_lev)
    if stalker:
        ceiling = min(ceiling, stalker_max)
    if ceiling < min_lev:
        ceiling = min_lev
    raw = base_leverage * dc_lev_mult * regime_mult * market_ob_mult
    if not math.isfinite(raw) or raw < min_lev:
        return min_lev
    return ceiling if raw > ceiling else raw
