"""Signal layer (bible §4): vel_div gate and confidence, Direction Confirmation, OB sub-2.

Everything is expressed in one SHORT-oriented frame so the LONG (green) path reuses the same
arithmetic: for SHORT x = vel_div with (threshold, extreme) = (-0.02, -0.05); for LONG
x = -vel_div with (threshold, extreme) = (-long_threshold, -long_extreme).  A signal fires when
x < threshold.  `params.EngineParams.signed_gate()` returns the pair for the configured direction.
"""
from __future__ import annotations

import math

import numpy as np
from prod.alpha.jit import njit

DC_CONTRADICT = -1
DC_NEUTRAL = 0
DC_CONFIRM = 1

OB_SKIP = "ob_contradiction"


def signed_x(vel_div: float, direction: int) -> float:
    """Map vel_div into the SHORT-oriented frame (identity for SHORT, negated for LONG)."""
    return vel_div if direction < 0 else -vel_div


def gate_passes(x: float, threshold: float) -> bool:
    """Return True when the signed vel_div crosses the entry threshold (strict, §4.1)."""
    return x < threshold


def strength_ratio(x: float, threshold: float, extreme: float) -> float:
    """Return clamp((threshold - x) / (threshold - extreme), 0, 1) (§4.1, §6.1)."""
    r = (threshold - x) / (threshold - extreme)
    if r < 0.0:
        return 0.0
    if r > 1.0:
        return 1.0
    return r


def confidence(x: float, threshold: float, extreme: float) -> float:
    """Return the signal confidence 0.50 + 0.40 * ratio, in [0.50, 0.90] (§4.1)."""
    return 0.50 + strength_ratio(x, threshold, extreme) * 0.40


def is_extreme(x: float, extreme: float) -> bool:
    """Return True when the signed vel_div is at or beyond the extreme level (§4.1)."""
    return x <= extreme


@njit(cache=True)
def check_dc(prices, lookback, min_magnitude_bps, direction):
    """Classify the last `lookback` bars of `prices` as CONFIRM (1), NEUTRAL (0) or CONTRADICT (-1).

    p0 = prices[n - lookback - 1], p1 = prices[n - 1]; a move in the trade direction larger than
    `min_magnitude_bps` confirms, one against it contradicts (§4.2).  Too short or non-finite
    input is NEUTRAL.
    """
    n = prices.shape[0]
    if n < lookback + 1:
        return 0
    p0 = prices[n - lookback - 1]
    p1 = prices[n - 1]
    if not (np.isfinite(p0) and np.isfinite(p1)) or p0 <= 0.0:
        return 0
    chg_bps = (p1 - p0) / p0 * 10000.0 * direction
    if chg_bps > min_magnitude_bps:
        return 1
    if chg_bps < -min_magnitude_bps:
        return -1
    return 0


def dc_allows(dc: int, skip_contradicts: bool) -> bool:
    """Return False when DC contradicts and the config hard-skips contradictions (§4.2)."""
    return not (skip_contradicts and dc == DC_CONTRADICT)


def ob_confidence_adjust(conf: float, imbalance_ma5: float, persistence: float,
                         direction: int) -> tuple[float, bool]:
    """Apply OB sub-2 (§4.3); return (adjusted confidence, hard_skip).

    eff_imb = direction * imbalance_ma5 (sell pressure is positive for a SHORT).
    """
    if not (math.isfinite(imbalance_ma5) and math.isfinite(persistence)):
        return conf, False
    eff = direction * imbalance_ma5
    if eff > 0.10:
        return conf * (1.0 + min(0.15, eff * persistence * 0.5)), False
    if eff < -0.15 and persistence > 0.60:
        return conf, True
    if eff < -0.10:
        return conf * max(0.85, 1.0 - abs(eff) * persistence * 0.4), False
    return conf, False
