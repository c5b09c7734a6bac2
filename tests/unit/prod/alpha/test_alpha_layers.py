"""Golden and property tests for the alpha layers (bible §4–§9): every worked number of the bible."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prod.alpha import exits as ex
from prod.alpha import fees as fz
from prod.alpha.irp import compute_ars, compute_irp, ob_depth_adjustment, rank_assets_irp, select_asset
from prod.alpha.ob import (InProcessOBProvider, NullOBProvider, OBMacro, macro_stress,
                           market_ob_multiplier, ob_beta_multiplier)
from prod.alpha.signal import (DC_CONFIRM, DC_CONTRADICT, DC_NEUTRAL, check_dc, confidence, dc_allows,
                               gate_passes, is_extreme, ob_confidence_adjust, signed_x, strength_ratio)
from prod.alpha.sizing import (bucket_boost, dynamic_leverage, effective_fraction, final_leverage,
                               regime_size_mult, signal_bucket, streak_mult, strength_score, trend_mult)

THR, EXT = -0.02, -0.05


# ---------------------------------------------------------------- signal §4
def test_vel_div_gate_is_strict_below_minus_002():
    assert gate_passes(-0.0201, THR)
    assert not gate_passes(-0.02, THR)
    assert not gate_passes(0.0, THR)


def test_long_gate_mirrors_short_gate_at_plus_001():
    long_thr = -0.01
    assert gate_passes(signed_x(0.0101, +1), long_thr)
    assert not gate_passes(signed_x(0.01, +1), long_thr)
    assert not gate_passes(signed_x(-0.05, +1), long_thr)


@pytest.mark.parametrize("vd,conf", [(-0.02, 0.50), (-0.035, 0.70), (-0.05, 0.90), (-0.09, 0.90), (0.0, 0.50)])
def test_confidence_is_050_plus_040_ratio(vd, conf):
    assert confidence(vd, THR, EXT) == pytest.approx(conf)


def test_is_extreme_at_minus_005_inclusive():
    assert is_extreme(-0.05, EXT) and not is_extreme(-0.0499, EXT)


def test_strength_ratio_is_clamped():
    assert strength_ratio(-0.2, THR, EXT) == 1.0
    assert strength_ratio(0.3, THR, EXT) == 0.0


def _dc_series(last: float) -> np.ndarray:
    return np.array([100.0] * 7 + [last])


def test_dc_confirms_falling_price_for_short_and_contradicts_rising():
    # 8 prices; lookback 7 compares p[0] with p[7]
    assert check_dc(_dc_series(99.99), 7, 0.75, -1) == DC_CONFIRM        # -1.0 bps
    assert check_dc(_dc_series(100.01), 7, 0.75, -1) == DC_CONTRADICT    # +1.0 bps
    assert check_dc(_dc_series(100.005), 7, 0.75, -1) == DC_NEUTRAL      # +0.5 bps < 0.75


def test_dc_mirrors_for_long_and_short_input_is_neutral():
    assert check_dc(_dc_series(100.01), 7, 0.75, +1) == DC_CONFIRM
    assert check_dc(_dc_series(99.99), 7, 0.75, +1) == DC_CONTRADICT
    assert check_dc(np.array([100.0, 99.0]), 7, 0.75, -1) == DC_NEUTRAL
    assert check_dc(np.array([np.nan] * 8), 7, 0.75, -1) == DC_NEUTRAL


def test_dc_skip_contradicts_kills_only_contradictions():
    assert not dc_allows(DC_CONTRADICT, True)
    assert dc_allows(DC_CONTRADICT, False)
    assert dc_allows(DC_NEUTRAL, True) and dc_allows(DC_CONFIRM, True)


def test_ob_sub2_confirmation_boost_is_capped_at_15pct():
    conf, skip = ob_confidence_adjust(1.0, -0.2, 1.0, -1)   # sell pressure confirms a SHORT
    assert not skip and conf == pytest.approx(1.10)
    conf, _ = ob_confidence_adjust(1.0, -0.9, 1.0, -1)
    assert conf == pytest.approx(1.15)


def test_ob_sub2_hard_skip_and_soft_dampen():
    _, skip = ob_confidence_adjust(0.7, 0.2, 0.7, -1)        # eff -0.2, persistent → skip
    assert skip
    _, skip = ob_confidence_adjust(0.7, 0.2, 0.5, -1)        # not persistent → dampen only
    assert not skip
    conf, skip = ob_confidence_adjust(1.0, 0.12, 0.5, -1)
    assert not skip and conf == pytest.approx(1.0 - 0.12 * 0.5 * 0.4)
    conf, _ = ob_confidence_adjust(1.0, 0.9, 0.5, -1)
    assert conf == pytest.approx(0.85)


# ---------------------------------------------------------------- IRP §5
def test_compute_irp_on_a_clean_fall_in_short_direction():
    seg = 100.0 * np.cumprod(np.full(50, 0.999))
    eff, align, noise, lat, mfe, mae = compute_irp(seg, -1)
    assert align == 1.0 and mae == 0.0 and lat == 5            # 10% of mfe after 5 of 49 steps
    assert mfe == pytest.approx(49 * 0.001, rel=1e-9)
    assert eff == pytest.approx(mfe / 1e-6)
    assert noise == pytest.approx(0.0, abs=1e-15)


def test_compute_irp_without_favourable_move_has_latency_50():
    seg = 100.0 * np.cumprod(np.full(50, 1.001))
    _, align, _, lat, mfe, _ = compute_irp(seg, -1)
    assert mfe == 0.0 and lat == 50 and align == 0.0


def test_compute_ars_formula():
    assert compute_ars(1.0, 0.5, 0.0) == pytest.approx(0.5 * math.log(2.0) + 0.175)
    assert compute_ars(0.0, 0.0, 0.001) == pytest.approx(-0.15)


def _window(n_t=50, seed=0):
    rng = np.random.default_rng(seed)
    fall = 100 * np.cumprod(1 - 0.001 + rng.normal(0, 0.0003, n_t))     # SHORT-friendly
    rise = 50 * np.cumprod(1 + 0.001 + rng.normal(0, 0.0003, n_t))      # inverse (LONG) pick
    flat = 10 * np.cumprod(1 + rng.normal(0, 0.002, n_t))               # noisy
    return np.ascontiguousarray(np.stack([fall, rise, flat], axis=1))


def test_rank_assets_takes_the_better_direction_and_drops_bad_prices():
    w = _window()
    w[10, 2] = np.nan
    order, ars, align, action, n_valid = rank_assets_irp(w, -1, 500.0, 20, 0.20, np.zeros(3))
    assert n_valid == 2
    assert set(order[:2]) == {0, 1}
    assert action[0] == -1 and action[1] == 1            # rising asset chosen in inverse direction
    assert ars[order[0]] >= ars[order[1]]


def test_select_asset_applies_direction_alignment_and_depth_gates_without_fallback():
    w = _window()
    ok = np.ones(3, dtype=np.bool_)
    assert select_asset(w, -1, 500.0, 20, 0.20, np.zeros(3), 0.45, ok) == 0
    assert select_asset(w, +1, 500.0, 20, 0.20, np.zeros(3), 0.45, ok) == 1
    ok[0] = False                                        # OB depth gate rejects the only SHORT pick
    assert select_asset(w, -1, 500.0, 20, 0.20, np.zeros(3), 0.45, ok) == -1
    rising_only = np.ascontiguousarray(w[:, [1]])
    assert select_asset(rising_only, -1, 500.0, 20, 0.20, np.zeros(1), 0.45, np.ones(1, np.bool_)) == -1


def test_alignment_gate_045_rejects_weakly_aligned_assets():
    w = _window()
    assert select_asset(w, -1, 500.0, 20, 0.20, np.zeros(3), 1.01, np.ones(3, np.bool_)) == -1


def test_ob_sub1_adjustment_steps():
    assert [ob_depth_adjustment(v) for v in (2.0, 1.2, 0.8, 0.5, 0.1, float("nan"))] == \
        [0.10, 0.05, 0.0, -0.05, -0.10, 0.0]


# ---------------------------------------------------------------- sizing §6
@pytest.mark.parametrize("vd,bucket", [(-0.075, 0), (-0.09, 0), (-0.0749, 1), (-0.05, 1), (-0.0499, 2),
                                       (-0.035, 2), (-0.0349, 3), (-0.021, 3)])
def test_signal_bucket_edges(vd, bucket):
    assert signal_bucket(vd, THR, EXT) == bucket


@pytest.mark.parametrize("vd,strength,lev", [(-0.02, 0.0, 0.5), (-0.035, 0.5, 0.5 + 0.125 * 4.5),
                                             (-0.05, 1.0, 5.0), (-0.08, 1.0, 5.0),
                                             (-0.03, 1 / 3, 0.5 + 4.5 / 27)])
def test_strength_and_cubic_leverage_points(vd, strength, lev):
    s = strength_score(vd, THR, EXT)
    assert s == pytest.approx(strength)
    assert dynamic_leverage(s, 0.5, 5.0, 3.0) == pytest.approx(lev)


@pytest.mark.parametrize("wins,total,boost", [(61, 100, 1.3), (60, 100, 1.1), (56, 100, 1.1), (50, 100, 1.0),
                                              (45, 100, 1.0), (44, 100, 0.85), (40, 100, 0.85),
                                              (39, 100, 0.7), (0, 4, 1.0)])
def test_bucket_boost_points(wins, total, boost):
    assert bucket_boost(wins, total, 5) == boost


@pytest.mark.parametrize("outcomes,mult", [([False] * 5, 0.5), ([True] + [False] * 4, 0.5),
                                           ([True, True, False, False, False], 0.7),
                                           ([True, True, True, False, False], 1.0),
                                           ([True, True, True, True, False], 1.1), ([True] * 5, 1.1),
                                           ([False] * 4, 1.0)])
def test_streak_mult_points(outcomes, mult):
    assert streak_mult(outcomes) == mult


@pytest.mark.parametrize("trend,mult", [(-0.011, 1.3), (-0.01, 1.0), (0.0, 1.0), (0.01, 1.0), (0.011, 0.7)])
def test_trend_mult_points(trend, mult):
    assert trend_mult(trend) == mult


def test_effective_fraction_worked_values():
    # moderate signal: base_frac 0.11 * 0.55/0.95
    assert effective_fraction(0.5, False, 0.20, 0.02, 1.0, 1.0, 1.0) == pytest.approx(0.11 * 0.55 / 0.95)
    # extreme: 0.20 * 0.70/0.95 * 2 = 0.2947 → clamped to 0.20
    assert effective_fraction(1.0, True, 0.20, 0.02, 1.0, 1.0, 1.0) == 0.20
    assert effective_fraction(0.0, False, 0.20, 0.02, 0.7, 0.7, 0.5) == 0.02


def test_regime_size_mult_acb_scale2():
    assert regime_size_mult(-0.05, THR, EXT, 3.0, 1.347, 0.8, 1.0) == pytest.approx(1.347 * 1.8)
    assert regime_size_mult(-0.035, THR, EXT, 3.0, 1.347, 0.8, 0.5) == pytest.approx(1.347 * 1.1 * 0.5)
    assert regime_size_mult(-0.05, THR, EXT, 3.0, 1.5, 0.0, 0.5) == pytest.approx(0.75)


def test_final_leverage_ceiling_and_stalker_cap():
    rsm = 1.347 * 1.8
    assert final_leverage(5.0, 1.0, rsm, 1.0, 0.5, 5.0, 6.0, False, 2.0) == 6.0      # abs max
    assert final_leverage(5.0, 1.0, rsm, 1.0, 0.5, 5.0, 6.0, True, 2.0) == 2.0       # STALKER
    assert final_leverage(5.0, 1.0, 1.0, 1.0, 0.5, 5.0, 6.0, False, 2.0) == 5.0      # base ceiling
    assert final_leverage(0.5, 1.0, 0.5, 0.85, 0.5, 5.0, 6.0, False, 2.0) == 0.5     # floor
    assert final_leverage(float("nan"), 1.0, 1.0, 1.0, 0.5, 5.0, 6.0, False, 2.0) == 0.5


_fin = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=300, deadline=None)
@given(base=_fin, dc=st.floats(0.5, 2.0), rsm=_fin, mkt=st.floats(0.85, 1.2), stalker=st.booleans())
def test_property_final_leverage_in_bounds(base, dc, rsm, mkt, stalker):
    lev = final_leverage(base, dc, rsm, mkt, 0.5, 5.0, 6.0, stalker, 2.0)
    assert math.isfinite(lev) and 0.5 <= lev <= 6.0
    if stalker:
        assert lev <= 2.0


@settings(max_examples=300, deadline=None)
@given(strength=st.floats(0, 1), extreme=st.booleans(), tm=st.sampled_from([0.7, 1.0, 1.3]),
       bb=st.sampled_from([0.7, 0.85, 1.0, 1.1, 1.3]), sm=st.sampled_from([0.5, 0.7, 1.0, 1.1]))
def test_property_fraction_in_bounds(strength, extreme, tm, bb, sm):
    f = effective_fraction(strength, extreme, 0.20, 0.02, tm, bb, sm)
    assert 0.02 <= f <= 0.20


# ---------------------------------------------------------------- exits §7
def test_fixed_tp_at_95_bps_and_max_hold_at_120():
    args = dict(vd_adverse_run=0, vd_enabled=False, vd_bars=3, tf_enabled=False, tf_spread_entry=0.0,
                tf_spread_now=0.0, tf_exhaust_ratio=0.2, tf_flip_ratio=0.5)
    assert ex.evaluate_exit(0.0095, 1, 0.0095, 1.0, 120, **args) == ex.FIXED_TP
    assert ex.evaluate_exit(0.0094, 1, 0.0095, 1.0, 120, **args) is None
    assert ex.evaluate_exit(0.0, 120, 0.0095, 1.0, 120, **args) == ex.MAX_HOLD
    assert ex.evaluate_exit(0.0, 119, 0.0095, 1.0, 120, **args) is None
    assert ex.evaluate_exit(-1.0, 1, 0.0095, 1.0, 120, **args) == ex.STOP_LOSS
    assert ex.evaluate_exit(-0.99, 1, 0.0095, 1.0, 120, **args) is None


def test_disabled_research_exits_fire_only_when_enabled():
    base = dict(tf_spread_entry=1.0, tf_spread_now=-1.0, tf_exhaust_ratio=0.2, tf_flip_ratio=0.5)
    assert ex.evaluate_exit(0.0, 1, 0.0095, 1.0, 120, 5, False, 3, False, **base) is None
    assert ex.evaluate_exit(0.0, 1, 0.0095, 1.0, 120, 5, True, 3, False, **base) == ex.VD_ADVERSE
    assert ex.evaluate_exit(0.0, 1, 0.0095, 1.0, 120, 0, False, 3, True, **base) == ex.TF_FLIP


def test_short_pnl_pct_is_price_fall():
    assert ex.position_pnl_pct(-1, 100.0, 99.05) == pytest.approx(0.0095)
    assert ex.position_pnl_pct(+1, 100.0, 100.95) == pytest.approx(0.0095)


def test_exit_slippage_5bps_stop_2bps_otherwise_against_us():
    assert ex.exit_slippage(ex.STOP_LOSS, 0.0002, 0.0005, 0.0002) == 0.0005
    assert ex.exit_slippage(ex.FIXED_TP, 0.0002, 0.0005, 0.0002) == 0.0002
    assert ex.exit_slippage(ex.MAX_HOLD, 0.0002, 0.0005, 0.0002) == 0.0002
    assert ex.exit_fill_price(-1, 100.0, 0.0002) == pytest.approx(100.02)
    assert ex.exit_fill_price(-1, 100.0, 0.0005) == pytest.approx(100.05)
    assert ex.exit_fill_price(+1, 100.0, 0.0002) == pytest.approx(99.98)


def test_ob_duress_adjustments():
    assert ex.ob_dynamic_params(0.0095, 1.0, 120, 0.0, 2, 0, 0.0, 0.0) == (pytest.approx(0.0133), 1.0, 60)
    assert ex.ob_dynamic_params(0.0095, 1.0, 120, 0.001, 0, 1, -0.2, 0.0) == (pytest.approx(0.0057), 0.10, 48)
    assert ex.ob_dynamic_params(0.0095, 1.0, 120, -0.001, 0, 1, 0.0, 0.0) == (0.0095, 0.10, 120)
    assert ex.ob_dynamic_params(0.0095, 1.0, 120, 0.0, 0, -1, 0.2, 0.0) == (0.0095, 1.0, 180)
    assert ex.ob_dynamic_params(0.0095, 1.0, 120, 0.001, 0, 0, 0.0, -0.3) == (pytest.approx(0.007125), 1.0, 48)
    # per-asset withdrawal does not stack on a cascade
    assert ex.ob_dynamic_params(0.0095, 1.0, 120, 0.001, 1, 0, 0.0, -0.3)[2] == 60


@pytest.mark.parametrize("old,new,due", [(1.30, 1.05, True), (1.25, 1.0999, True), (1.25, 1.10, False),
                                         (1.24, 1.0, False), (1.35, 1.2, False)])
def test_subday_acb_normalisation_threshold(old, new, due):
    assert ex.subday_acb_exit_due(old, new) is due


# ---------------------------------------------------------------- fees §8
def test_entry_fee_is_0000314_of_notional():
    assert fz.entry_fee(10_000.0, 0.62) == pytest.approx(3.14)
    assert fz.blended_fee_rate(0.62) == pytest.approx(0.000314)
    assert fz.exit_fee(10_000.0, 0.50) == pytest.approx(3.5)


def test_ob_edge_real_and_legacy():
    assert fz.ob_edge_real(0.6, 0.5, 5.0) == pytest.approx(2.5e-4)
    assert fz.ob_edge_real(0.5, 0.9, 5.0) == 0.0
    assert fz.ob_edge_legacy(0.39, 0.40, 5.0) == pytest.approx(5e-4)
    assert fz.ob_edge_legacy(0.40, 0.40, 5.0) == 0.0
    assert fz.sp_slippage_refund(0.0002, 0.5) == pytest.approx(0.0001)


# ---------------------------------------------------------------- OB port §9
def test_in_process_provider_round_trip_and_rejects_garbage():
    ob = InProcessOBProvider()
    ob.update_asset("BTCUSDT", {"imbalance_ma5": -0.2, "imbalance_persistence": 0.7, "depth_quality": 1.3,
                                "fill_probability": 0.8})
    ob.update_macro({"cascade_count": 1, "regime_signal": 1, "market_imbalance": -0.3})
    assert ob.get_signal("BTCUSDT").imbalance_ma5 == -0.2
    assert ob.get_placement("BTCUSDT").depth_quality == 1.3
    assert ob.get_macro().cascade_count == 1
    assert ob.get_signal("ETHUSDT") is None
    with pytest.raises(ValueError, match="imbalance_ma5"):
        ob.update_asset("BTCUSDT", {"imbalance_ma5": float("nan")})
    assert ob.get_signal("BTCUSDT").imbalance_ma5 == -0.2
    null = NullOBProvider()
    assert null.is_null and null.get_macro() is None and null.get_signal("X") is None


def test_market_multiplier_sub3_and_stress_sub4():
    assert market_ob_multiplier(OBMacro(market_imbalance=-0.3), -1) == pytest.approx(1.2)
    assert market_ob_multiplier(OBMacro(market_imbalance=0.3), -1) == pytest.approx(0.85)
    assert market_ob_multiplier(OBMacro(market_imbalance=0.05), -1) == 1.0
    assert market_ob_multiplier(None, -1) == 1.0
    assert macro_stress(OBMacro(regime_signal=1)) == 1.0
    assert macro_stress(OBMacro(cascade_count=1)) == pytest.approx(0.2)
    assert macro_stress(None) == 0.0
    assert ob_beta_multiplier(1.0) == pytest.approx(1.25)
    assert ob_beta_multiplier(5.0) == pytest.approx(1.25)


def test_fused_ranking_matches_the_reference_irp_and_ars_per_asset():
    rng = np.random.default_rng(42)
    w = np.ascontiguousarray(100 * np.exp(np.cumsum(rng.normal(0, 0.001, (50, 30)), axis=0)))
    order, ars, align, action, n_valid = rank_assets_irp(w, -1, 500.0, 20, 0.20, np.zeros(30))
    assert n_valid > 5
    for a in range(30):
        best, best_al, best_dir = -np.inf, 0.0, 0
        for d in (-1, 1):
            eff, al, noise, lat, _, _ = compute_irp(w[:, a].copy(), d)
            if noise > 500.0 or lat > 20 or al < 0.20:
                continue
            sc = compute_ars(eff, al, noise)
            if sc > best:
                best, best_al, best_dir = sc, al, d
        assert action[a] == best_dir
        if best_dir:
            assert ars[a] == pytest.approx(best, rel=1e-12, abs=1e-12) and align[a] == best_al
    ranked = [ars[i] for i in order[:n_valid]]
    assert ranked == sorted(ranked, reverse=True)
