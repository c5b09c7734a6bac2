"""Fees, SmartPlacer slippage refund and OB edge (bible §8): the money side of a closed trade.

Decision for §8.2 (the bible names the refund but not its formula): with `use_sp_slippage` the
maker share of exits (`sp_maker_exit_rate`) is assumed to fill passively with no slippage, so
`sp_maker_exit_rate * exit_slip` is added back to the raw pnl fraction.
"""
from __future__ import annotations

import math


def blended_fee_rate(maker_rate: float, maker_fee: float = 0.0002, taker_fee: float = 0.0005) -> float:
    """Return maker_fee*maker_rate + taker_fee*(1-maker_rate) (§8.1)."""
    return maker_fee * maker_rate + taker_fee * (1.0 - maker_rate)


def entry_fee(notional: float, maker_entry_rate: float, maker_fee: float = 0.0002,
              taker_fee: float = 0.0005) -> float:
    """Return the SmartPlacer entry fee; 0.000314 * notional for the champion (§8.1)."""
    return blended_fee_rate(maker_entry_rate, maker_fee, taker_fee) * notional


def exit_fee(notional: float, maker_exit_rate: float, maker_fee: float = 0.0002,
             taker_fee: float = 0.0005) -> float:
    """Return the SmartPlacer exit fee; 0.00035 * notional for the champion."""
    return blended_fee_rate(maker_exit_rate, maker_fee, taker_fee) * notional


def sp_slippage_refund(exit_slip: float, maker_exit_rate: float) -> float:
    """Return the pnl fraction refunded for maker-filled exits (§8.2, decision above)."""
    return maker_exit_rate * exit_slip


def ob_edge_real(depth_quality: float, fill_probability: float, ob_edge_bps: float) -> float:
    """Return the OB edge with a real provider: fill_prob * edge when depth_quality > 0.5 (§8.3)."""
    if not (math.isfinite(depth_quality) and math.isfinite(fill_probability)):
        return 0.0
    if depth_quality > 0.5:
        return min(max(fill_probability, 0.0), 1.0) * ob_edge_bps * 1e-4
    return 0.0


def ob_edge_legacy(u: float, ob_confirm_rate: float, ob_edge_bps: float) -> float:
    """Return the legacy Monte-Carlo OB edge for a uniform draw `u` (§8.3)."""
    return ob_edge_bps * 1e-4 if u < ob_confirm_rate else 0.0
