"""Exit management (bible §7, §11.7, §21): which exit fires this bar, and at what price.

Design notes: ``docs/design/prod.alpha.md``.
"""
from __future__ import annotations

FIXED_TP = "FIXED_TP"
STOP_LOSS = "STOP_LOSS"
MAX_HOLD = "MAX_HOLD"
HIBERNATE_HALT = "HIBERNATE_HALT"
SUBDAY_ACB = "SUBDAY_ACB_NORMALIZATION"
VD_ADVERSE = "VD_ADVERSE_TURN"
TF_EXHAUST = "TF_EXHAUST"
TF_FLIP = "TF_FLIP"
END_OF_DATA = "END_OF_DATA"


def position_pnl_pct(direction: int, entry_price: float, price: float) -> float:
    """Return the directional price move direction*(price - entry)/entry."""
    return direction * (price - entry_price) / entry_price


def ob_dynamic_params(tp: float, sl: float, max_hold: int, pnl_pct: float, cascade_count: int,
                      regime_signal: int, eff_imb: float, withdrawal_velocity: float
                      ) -> tuple[float, float, int]:
    """Return (tp, sl, max_hold) adjusted for OB duress (§7.2)."""
    dyn_tp, dyn_sl, dyn_hold = tp, sl, max_hold
    stressed = False
    if cascade_count > 0:
        dyn_tp *= 1.40
        dyn_hold = int(max_hold * 0.50)
        stressed = True
    elif regime_signal == 1:
        dyn_sl = 0.10
        if pnl_pct > 0.0:
            dyn_tp *= 0.60
        if eff_imb < -0.10:
            dyn_hold = int(max_hold * 0.40)
        stressed = True
    elif regime_signal == -1 and eff_imb > 0.15:
        dyn_hold = int(max_hold * 1.50)
    if withdrawal_velocity < -0.20 and not stressed:
        dyn_hold = min(dyn_hold, int(max_hold * 0.40))
        if pnl_pct > 0.0:
            dyn_tp *= 0.75
    return dyn_tp, dyn_sl, dyn_hold


def subday_acb_exit_due(old_boost: float, new_boost: float, high: float = 1.25, low: float = 1.10) -> bool:
    """Return True when an ACB update normalises from a high boost (§7.3; arbitrary, §21 TODO-2)."""
    return old_boost >= high and new_boost < low


def evaluate_exit(pnl_pct: float, bars_held: int, tp: float, sl: float, max_hold: int,
                  vd_adverse_run: int, vd_enabled: bool, vd_bars: int,
                  tf_enabled: bool, tf_spread_entry: float, tf_spread_now: float,
                  tf_exhaust_ratio: float, tf_flip_ratio: float) -> str | None:
    """Return the exit reason for this bar or None (§7.1 order, after OB adjustment)."""
    if pnl_pct >= tp:
        return FIXED_TP
    if pnl_pct <= -sl:
        return STOP_LOSS
    if vd_enabled and vd_adverse_run >= vd_bars:
        return VD_ADVERSE
    if tf_enabled and tf_spread_entry != 0.0:
        ratio = tf_spread_now / tf_spread_entry
        if ratio < -tf_flip_ratio:
            return TF_FLIP
        if abs(ratio) < tf_exhaust_ratio:
            return TF_EXHAUST
    if bars_held >= max_hold:
        return MAX_HOLD
    return None


def exit_slippage(reason: str, tp_slip: float, stop_slip: float, other_slip: float) -> float:
    """Return the adverse exit slippage fraction: 5 bps STOP_LOSS, 2 bps otherwise (§7.4)."""
    if reason == STOP_LOSS:
        return stop_slip
    if reason == FIXED_TP:
        return tp_slip
    return other_slip


def exit_fill_price(direction: int, price: float, slip: float) -> float:
    """Return the fill price with slippage against us: SHORT covers at price*(1+slip) (§7.4)."""
    return price * (1.0 - direction * slip)
