"""Golden and property tests for ACB v6 (prod/alpha/acb.py, bible §10, §19.2)."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from prod.alpha.acb import (
    AcbParams, ExternalFactors, base_boost, compute_acb, daily_factors, daily_factors_by_date,
    daily_w750, dynamic_beta, factor_signals, meta_boost, ob_beta_modulation,
    ob_stress_from_regime, w750_threshold,
)


@pytest.mark.parametrize("signals,expected", [(1.0, 1.347), (2.0, 1.549), (3.0, 1.693)])
def test_base_boost_golden_values(signals, expected):
    assert base_boost(signals) == pytest.approx(expected, abs=5e-4)
    assert base_boost(signals) == pytest.approx(1.0 + 0.5 * math.log1p(signals), rel=1e-15)


@pytest.mark.parametrize("signals", [0.0, 0.5, 0.999, -1.0, float("nan")])
def test_base_boost_is_one_below_one_signal(signals):
    assert base_boost(signals) == 1.0


def test_fractional_signals_use_log1p():
    assert base_boost(2.5) == pytest.approx(1.0 + 0.5 * math.log1p(2.5))


@pytest.mark.parametrize("field,value,weight", [
    ("funding_btc", -0.00011, 1.0), ("funding_btc", -0.0001, 0.5), ("funding_btc", -0.00001, 0.5),
    ("funding_btc", 0.0, 0.0), ("funding_btc", 0.0001, 0.0),
    ("dvol_btc", 80.01, 1.0), ("dvol_btc", 80.0, 0.5), ("dvol_btc", 55.01, 0.5), ("dvol_btc", 55.0, 0.0),
    ("taker", 0.79, 1.0), ("taker", 0.80, 0.5), ("taker", 0.89, 0.5), ("taker", 0.90, 0.0),
])
def test_single_factor_thresholds_and_weights(field, value, weight):
    w = factor_signals(ExternalFactors(**{field: value}))
    assert w[field] == weight
    assert sum(w.values()) == weight


def test_fng_alone_never_counts_without_confirmation():
    assert factor_signals(ExternalFactors(fng=10.0))["fng"] == 0.0
    assert compute_acb({"fng": 5}).boost == 1.0


def test_fng_extreme_fear_confirmed_by_one_full_signal():
    w = factor_signals(ExternalFactors(fng=20.0, dvol_btc=90.0))
    assert w == {"funding_btc": 0.0, "dvol_btc": 1.0, "fng": 1.0, "taker": 0.0}
    assert compute_acb(ExternalFactors(fng=20.0, dvol_btc=90.0)).boost == pytest.approx(1.549, abs=5e-4)


def test_fng_extreme_fear_with_mild_confirmation_counts_as_fear():
    w = factor_signals(ExternalFactors(fng=20.0, taker=0.85))
    assert w["fng"] == 0.5 and w["taker"] == 0.5


def test_fng_fear_needs_half_signal_confirmation():
    assert factor_signals(ExternalFactors(fng=30.0, funding_btc=-0.00005))["fng"] == 0.5
    assert factor_signals(ExternalFactors(fng=30.0, funding_btc=0.001))["fng"] == 0.0
    assert factor_signals(ExternalFactors(fng=40.0, dvol_btc=99.0))["fng"] == 0.0


def test_three_full_signals_give_1693():
    r = compute_acb({"funding_btc": -0.0005, "dvol_btc": 85.0, "taker": 0.7, "fng": 60})
    assert r.signals == 3.0
    assert r.boost == pytest.approx(1.693, abs=5e-4)


def test_no_factors_fallback_is_boost_one_and_beta_low():
    r = compute_acb(None)
    assert (r.boost, r.beta, r.signals) == (1.0, 0.2, 0.0)


def test_bad_factor_values_are_treated_as_absent():
    f = ExternalFactors.from_mapping({"funding_btc": "garbage", "dvol_btc": float("nan"),
                                      "fng": float("inf"), "taker": None, "extra": 1})
    assert f.to_dict() == {"funding_btc": None, "dvol_btc": None, "fng": None, "taker": None}
    assert compute_acb(f).boost == 1.0


def test_w750_threshold_is_60th_percentile_and_beta_switch():
    vels = [float(i) for i in range(11)]  # 0..10, p60 = 6.0
    t = w750_threshold(vels + [float("nan")])
    assert t == pytest.approx(6.0)
    assert dynamic_beta(6.0, t) == 0.8
    assert dynamic_beta(5.99, t) == 0.2
    assert dynamic_beta(None, t) == 0.2 and dynamic_beta(1.0, None) == 0.2
    assert w750_threshold([]) is None


def test_ob_sub4_withdrawal_stress_raises_beta_by_at_most_25_percent():
    assert ob_beta_modulation(0.8, 1.0) == pytest.approx(1.0)
    assert ob_beta_modulation(0.2, 0.5) == pytest.approx(0.225)
    assert ob_beta_modulation(0.8, 7.0) == pytest.approx(1.0)   # clamped
    assert ob_beta_modulation(0.8, -1.0) == 0.8
    assert ob_stress_from_regime(1) == 1.0 and ob_stress_from_regime(-1) == 0.0
    assert ob_stress_from_regime(0) == 0.0 and ob_stress_from_regime(None) == 0.0
    r = compute_acb(None, w750_vel=1.0, w750_thresh=0.5, ob_stress=ob_stress_from_regime(1))
    assert r.beta == pytest.approx(1.0) and r.boost == 1.0


def test_meta_boost_scale2():
    assert meta_boost(1.5, 0.8, -0.05) == pytest.approx(1.5 * 1.8)
    assert meta_boost(1.5, 0.8, -0.01) == pytest.approx(1.5)
    assert meta_boost(1.5, 0.8, -0.035) == pytest.approx(1.5 * (1 + 0.8 * 0.125))
    assert meta_boost(1.2, 0.0, -0.09, mc_scale=0.5) == pytest.approx(0.6)


def test_daily_aggregation_is_median_of_first_ten_scans():
    scans = [{"dvol_btc": float(v), "fng": 30.0} for v in (50, 60, 70, 80, 90, 100, 40, 30, 20, 10)]
    scans += [{"dvol_btc": 1000.0, "fng": 1.0}] * 20   # after the 10th: ignored
    f = daily_factors(scans)
    assert f.dvol_btc == pytest.approx(55.0)   # median of 10..100
    assert f.fng == 30.0 and f.funding_btc is None


def test_daily_aggregation_groups_and_sorts_by_timestamp():
    recs = [("2026-01-02", 5.0, {"taker": 0.5})] + [("2026-01-01", float(t), {"taker": 0.7 + t / 100})
                                                     for t in range(12, 0, -1)]
    out = daily_factors_by_date(recs)
    assert list(out) == ["2026-01-01", "2026-01-02"]
    assert out["2026-01-01"].taker == pytest.approx(0.7 + 5.5 / 100)   # timestamps 1..10
    assert out["2026-01-02"].taker == 0.5
    assert daily_w750([float("nan")] + [float(i) for i in range(1, 10)] + [99.0] * 20) == pytest.approx(5.0)
    assert daily_w750([]) is None


def test_params_reject_out_of_range():
    with pytest.raises(ValueError, match="w750_threshold_pct"):
        AcbParams(w750_threshold_pct=120)


_factor = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=64))


@settings(max_examples=200, deadline=None)
@given(_factor, _factor, _factor, _factor, st.floats(-1, 1), st.floats(-1, 1), st.floats(-5, 5))
def test_acb_outputs_always_finite_and_bounded(funding, dvol, fng, taker, w750, thr, stress):
    r = compute_acb(ExternalFactors(funding, dvol, fng, taker), w750, thr, stress)
    assert 0.0 <= r.signals <= 4.0
    assert 1.0 <= r.boost <= 1.0 + 0.5 * math.log1p(4.0)
    assert 0.2 <= r.beta <= 1.0
    assert all(w in (0.0, 0.5, 1.0) for w in r.factor_weights.values())


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 4), st.floats(0, 4))
def test_base_boost_monotone_in_signals(a, b):
    lo, hi = min(a, b), max(a, b)
    assert base_boost(lo) <= base_boost(hi)


def test_adaptive_circuit_breaker_per_date_with_ob_sub4():
    from prod.alpha.acb import AdaptiveCircuitBreaker
    from prod.alpha.ob import InProcessOBProvider

    acb = AdaptiveCircuitBreaker(
        {"2026-01-01": {"funding_btc": -0.001, "dvol_btc": 90.0}, "2026-01-02": {"taker": 0.95}},
        {"2026-01-01": 0.5, "2026-01-02": -0.5, "2026-01-03": None},
    )
    assert acb.w750_threshold == pytest.approx(0.1)   # p60 of [0.5, -0.5]
    d1 = acb.get_dynamic_boost_for_date("2026-01-01")
    assert d1 == {"boost": pytest.approx(1.549, abs=5e-4), "beta": 0.8, "signals": 2.0}
    ob = InProcessOBProvider()
    ob.update_macro({"regime_signal": 1})
    assert acb.get_dynamic_boost_for_date("2026-01-02", ob) == {"boost": 1.0, "beta": pytest.approx(0.25),
                                                                "signals": 0.0}
    assert acb.get_dynamic_boost_for_date("2099-01-01") == {"boost": 1.0, "beta": 0.2, "signals": 0.0}
    assert acb.last is not None and acb.last.w750_vel is None


def test_engine_takes_its_day_boost_from_the_acb():
    from prod.alpha.acb import AdaptiveCircuitBreaker
    from prod.alpha.engine import NDAlphaEngine
    from prod.alpha.params import EngineParams

    eng = NDAlphaEngine(EngineParams(), ("BTCUSDT", "ETHUSDT"))
    eng.set_acb(AdaptiveCircuitBreaker({"2026-01-01": {"funding_btc": -0.001, "dvol_btc": 90.0,
                                                       "taker": 0.5}}, {"2026-01-01": 1.0}))
    eng.begin_day("2026-01-01", "APEX", -1)
    assert eng.day_base_boost == pytest.approx(1.693, abs=5e-4) and eng.day_beta == 0.8


def test_boost_payload_passes_the_bus_schema():
    from prod.bus.maps import ACB_BOOST

    body = compute_acb({"dvol_btc": 99.0}, 0.2, 0.1).boost_payload(1_767_225_600.0)
    typed = ACB_BOOST.coerce(body)
    assert typed.boost == body["boost"] and typed.beta == body["beta"] and typed.computed_at == 1_767_225_600.0
    assert body["boost"] == pytest.approx(1.347, abs=5e-4) and body["signals"] == 1.0 and body["beta"] == 0.8
    assert body["inputs"]["factor_weights"]["dvol_btc"] == 1.0
