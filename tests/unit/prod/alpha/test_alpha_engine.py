"""NDAlphaEngine behaviour: day flow, posture and MC effects, pending ACB, bad bars, determinism,
exact state round-trip, and properties over random (partly corrupt) data (bible §11.7, §12, §13)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prod.alpha.engine import EngineError, NDAlphaEngine, classify_mc
from prod.alpha.ob import InProcessOBProvider, NullOBProvider
from prod.alpha.params import EngineParams, ParamError

N_ASSETS = 12
ASSETS = ["BTCUSDT"] + [f"A{i:02d}USDT" for i in range(1, N_ASSETS)]


def make_data(seed: int, bars: int = 2500, n: int = N_ASSETS, vd_sigma: float = 0.02):
    """Random-walk prices with drift episodes and a noisy vel_div: enough to trade often."""
    rng = np.random.default_rng(seed)
    drift = np.repeat(rng.normal(0, 0.0004, (bars // 100 + 1, n)), 100, axis=0)[:bars]
    rets = drift + rng.normal(0, 0.0012, (bars, n))
    prices = 10.0 * (1 + np.arange(n)) * np.exp(np.cumsum(rets, axis=0))
    vd = rng.normal(0, vd_sigma, bars)
    v50 = rng.normal(0, 0.01, bars)
    return prices, vd, v50, v50 - vd


def run(engine: NDAlphaEngine, data, start: int = 0, stop: int | None = None, results=None):
    prices, vd, v50, v750 = data
    stop = len(vd) if stop is None else stop
    for i in range(start, stop):
        r = engine.step_bar(i, vd[i], prices[i], v50[i], v750[i], True)
        if results is not None:
            results.append(r)
    return engine


def fresh(params: EngineParams | None = None, posture="APEX", **day):
    e = NDAlphaEngine(params or EngineParams(), ASSETS)
    e.begin_day("2026-01-01", posture, -1, **day)
    return e


def trade_dicts(engine):
    return [t.to_dict() for t in engine.trades]


# ---------------------------------------------------------------- day flow
def test_engine_trades_and_reports_the_day():
    e = run(fresh(), make_data(1))
    day = e.end_day()
    assert day.trades == len(e.trades) > 5
    assert day.pnl == pytest.approx(e.capital - 25_000.0)
    assert {t.reason for t in e.trades} <= {"FIXED_TP", "MAX_HOLD", "STOP_LOSS"}
    assert all(t.bars_held <= 120 for t in e.trades)
    json.dumps(day.to_dict())


def test_step_bar_before_begin_day_is_refused():
    e = NDAlphaEngine(EngineParams(), ASSETS)
    with pytest.raises(EngineError):
        e.step_bar(0, -0.03, np.ones(N_ASSETS))


def test_no_entry_during_warmup_lookback_100():
    prices, vd, v50, v750 = make_data(2)
    e = fresh()
    notes = [e.step_bar(i, -0.09, prices[i]).note for i in range(99)]
    assert set(notes) == {"warmup"} and not e.trades and e.position is None


def test_capital_carries_over_days_and_position_survives_end_day():
    data = make_data(3)
    e = fresh()
    i = 0
    while e.position is None or i < 1000:
        run(e, data, i, i + 1)
        i += 1
    cap = e.capital
    d1 = e.end_day()
    assert d1.open_position and d1.capital == cap
    e.begin_day("2026-01-02", "APEX", -1)
    assert e.capital == cap and e.position is not None
    run(e, data, i, 2500)
    d2 = e.end_day()
    carried = [t for t in e.trades if t.entry_date == "2026-01-01" and t.exit_date == "2026-01-02"]
    assert len(carried) == 1
    assert d2.date == "2026-01-02" and d2.pnl == pytest.approx(e.capital - cap)


# ---------------------------------------------------------------- determinism and state
def test_same_data_and_seed_give_identical_trade_list():
    a = run(fresh(), make_data(5))
    b = run(fresh(), make_data(5))
    assert trade_dicts(a) == trade_dicts(b) and len(a.trades) > 5


def test_different_seed_changes_legacy_ob_edge_draws():
    a = run(fresh(), make_data(5))
    b = run(fresh(EngineParams(seed=7)), make_data(5))
    pa = [t.pnl_pct for t in a.trades]
    pb = [t.pnl_pct for t in b.trades]
    assert pa != pb


def test_state_round_trip_mid_position_gives_identical_subsequent_trades():
    data = make_data(6)
    ref = run(fresh(), data)
    e = fresh()
    i = 0
    while not (e.position is not None and len(e.trades) >= 3):
        run(e, data, i, i + 1)
        i += 1
    state = json.loads(json.dumps(e.get_state(), allow_nan=False))
    restored = NDAlphaEngine.from_state(EngineParams(), state)
    assert restored.get_state() == state
    run(restored, data, i)
    assert trade_dicts(restored) == trade_dicts(ref)
    assert restored.capital == ref.capital


def test_numpy_scalars_from_the_caller_stay_json_serialisable():
    prices, vd, v50, v750 = make_data(22)
    e = fresh()
    for i in np.arange(len(vd)):
        e.step_bar(i, np.float64(vd[i]), prices[i], np.float32(v50[i]), v750[i], np.bool_(True))
    assert e.trades
    json.dumps(e.get_state(), allow_nan=False)
    json.dumps(e.end_day().to_dict(), allow_nan=False)


def test_state_without_trades_still_continues_identically():
    data = make_data(6)
    ref = run(fresh(), data)
    e = fresh()
    i = 0
    while not (e.position is not None and len(e.trades) >= 2):
        run(e, data, i, i + 1)
        i += 1
    n_before = len(e.trades)
    state = json.loads(json.dumps(e.get_state(include_trades=False), allow_nan=False))
    assert state["trades"] is None
    restored = run(NDAlphaEngine.from_state(EngineParams(), state), data, i)
    assert trade_dicts(restored) == trade_dicts(ref)[n_before:]
    assert restored.end_day().trades == len(ref.trades) - n_before


def test_state_round_trip_preserves_pending_acb_and_day_gates():
    e = fresh(posture="STALKER", boost=1.3, beta=0.8, mc_status="ORANGE")
    run(e, make_data(7), 0, 150)
    e.update_acb_boost(1.05, 0.2)
    s = json.loads(json.dumps(e.get_state(), allow_nan=False))
    r = NDAlphaEngine.from_state(EngineParams(), s)
    assert (r.posture, r.day_base_boost, r.day_beta, r.mc_status) == ("STALKER", 1.3, 0.8, "ORANGE")
    assert r.get_state()["pending_acb"] == [1.05, 0.2]


def test_state_from_other_params_is_refused():
    s = fresh().get_state()
    with pytest.raises(ValueError, match="params_hash"):
        NDAlphaEngine.from_state(EngineParams(fixed_tp_pct=0.01), s)


# ---------------------------------------------------------------- posture and MC (§11.7, §12)
@pytest.mark.parametrize("posture", ["TURTLE", "HIBERNATE"])
def test_turtle_and_hibernate_never_open(posture):
    e = run(fresh(posture=posture), make_data(8))
    assert not e.trades and e.position is None and e.regime_dd_halt


def test_stalker_caps_leverage_at_2_while_apex_reaches_6():
    data = make_data(9)
    apex = run(fresh(boost=1.693, beta=0.8), data)
    stalker = run(fresh(posture="STALKER", boost=1.693, beta=0.8), data)
    assert max(t.leverage for t in apex.trades) == pytest.approx(6.0)
    assert stalker.trades and max(t.leverage for t in stalker.trades) <= 2.0


def test_hibernate_mid_day_force_closes_with_hibernate_halt():
    data = make_data(10)
    e = fresh()
    i = 0
    while e.position is None:
        run(e, data, i, i + 1)
        i += 1
    e.set_posture("HIBERNATE")
    r = e.step_bar(i, data[1][i], data[0][i])
    assert r.exited is not None and r.exited.reason == "HIBERNATE_HALT"
    assert json.loads(json.dumps(r.to_dict()))["exited"]["reason"] == "HIBERNATE_HALT"
    run(e, data, i + 1)
    assert e.position is None and len(e.trades) == 1


def test_mc_red_halts_and_orange_halves_the_size_multiplier():
    data = make_data(11)
    red = run(fresh(mc_status="RED"), data)
    assert not red.trades and not red.mc_gate_open
    ok = fresh(boost=1.347, beta=0.0)
    orange = fresh(boost=1.347, beta=0.0, mc_status="ORANGE")
    run(ok, data, 0, 10)
    run(orange, data, 0, 10)
    assert ok.regime_size_mult == pytest.approx(1.347)
    assert orange.regime_size_mult == pytest.approx(1.347 * 0.5)


class _Forewarner:
    def __init__(self, cat, env):
        self.cat, self.env, self.seen = cat, env, None

    def assess_config_dict(self, cfg):
        self.seen = cfg

        class R:
            catastrophic_probability = self.cat
            envelope_score = self.env
        return R()


def test_mc_forewarner_hook_is_consulted_by_begin_day():
    fw = _Forewarner(0.3, 0.5)
    e = NDAlphaEngine(EngineParams(), ASSETS)
    e.set_mc_forewarner(fw, {"fraction": 0.2})
    e.begin_day("2026-01-01", "APEX", -1, boost=1.347, beta=0.2)
    assert e.mc_status == "RED" and e.regime_dd_halt
    assert fw.seen == {"fraction": 0.2, "max_leverage": pytest.approx(5.0 * 1.347)}


@pytest.mark.parametrize("cat,env,status", [(0.26, 0.0, "RED"), (0.0, -1.01, "RED"), (0.11, 0.5, "ORANGE"),
                                            (0.0, -0.5, "ORANGE"), (0.10, 0.0, "OK"), (float("nan"), 0, "RED")])
def test_classify_mc_thresholds(cat, env, status):
    assert classify_mc(cat, env) == status


def test_unknown_posture_is_rejected():
    with pytest.raises(ValueError, match="posture"):
        fresh(posture="YOLO")


# ---------------------------------------------------------------- pending ACB (§7.3, §10.5)
def test_acb_update_is_pending_until_next_bar_then_forces_subday_exit():
    data = make_data(12)
    e = fresh(boost=1.30, beta=0.2)
    i = 0
    while e.position is None:
        run(e, data, i, i + 1)
        i += 1
    e.update_acb_boost(1.05, 0.2)
    assert e.day_base_boost == 1.30                       # not applied yet
    r = e.step_bar(i, data[1][i], data[0][i])
    assert e.day_base_boost == 1.05
    assert r.exited is not None and r.exited.reason == "SUBDAY_ACB_NORMALIZATION"


def test_acb_update_without_normalisation_keeps_position():
    data = make_data(12)
    e = fresh(boost=1.20, beta=0.2)
    i = 0
    while e.position is None:
        run(e, data, i, i + 1)
        i += 1
    e.update_acb_boost(1.0, 0.2)
    r = e.step_bar(i, data[1][i], data[0][i])
    assert r.exited is None or r.exited.reason != "SUBDAY_ACB_NORMALIZATION"


def test_invalid_acb_update_is_rejected():
    e = fresh()
    with pytest.raises(ValueError):
        e.update_acb_boost(float("nan"), 0.2)
    with pytest.raises(ValueError):
        e.update_acb_boost(1.2, -1.0)


# ---------------------------------------------------------------- bad bars
def test_bad_scalars_and_shapes_are_skipped_with_a_reason():
    e = fresh()
    p = np.full(N_ASSETS, 100.0)
    assert e.step_bar(0, float("nan"), p).skipped == "bad_vel_div"
    assert e.step_bar(1, -0.03, p, float("inf"), 0.0).skipped == "bad_velocity"
    assert e.step_bar(2, None, p).skipped == "bad_scalar"
    assert e.step_bar(3, -0.03, p[:5]).skipped == "bad_prices_shape"
    assert e.step_bar(4, -0.03, "garbage").skipped == "bad_prices_shape"
    assert e.step_bar(5, -0.03, np.full(N_ASSETS, np.nan)).skipped == "no_valid_prices"
    assert e.step_bar(6, -0.03, {}).skipped == "no_valid_prices"
    assert e.end_day().skipped_bars == 7


def test_bad_asset_prices_are_never_selected():
    prices, vd, v50, v750 = make_data(13)
    prices = prices.copy()
    bad_cols = [0, 3, 5]
    prices[::40, 0] = np.nan
    prices[::40, 3] = 0.0
    prices[::40, 5] = -1.0
    e = run(fresh(), (prices, vd, v50, v750))
    assert e.trades
    assert not {t.asset for t in e.trades} & {ASSETS[c] for c in bad_cols}


def test_missing_assets_in_a_mapping_count_as_bad_prices():
    prices, vd, v50, v750 = make_data(14)
    e = fresh()
    for i in range(len(vd)):
        row = {a: float(prices[i, j]) for j, a in enumerate(ASSETS) if j != 2}
        e.step_bar(i, vd[i], row, v50[i], v750[i])
    assert e.trades and all(t.asset != ASSETS[2] for t in e.trades)


def test_mapping_and_array_inputs_give_the_same_trades():
    prices, vd, v50, v750 = make_data(15)
    a = run(fresh(), (prices, vd, v50, v750))
    b = fresh()
    for i in range(len(vd)):
        b.step_bar(i, vd[i], dict(zip(ASSETS, prices[i].tolist())), v50[i], v750[i])
    assert trade_dicts(a) == trade_dicts(b)


def test_open_position_with_bad_price_is_not_exited_on_that_bar():
    data = make_data(16)
    e = fresh()
    i = 0
    while e.position is None:
        run(e, data, i, i + 1)
        i += 1
    p = data[0][i].copy()
    p[e.position.asset_idx] = np.nan
    r = e.step_bar(i, data[1][i], p)
    assert r.skipped == "bad_position_price" and r.exited is None and e.position is not None


# ---------------------------------------------------------------- ports
def test_null_ob_provider_behaves_like_no_provider():
    data = make_data(17)
    a = run(fresh(), data)
    b = fresh()
    b.set_ob_engine(NullOBProvider())
    run(b, data)
    assert trade_dicts(a) == trade_dicts(b)


def test_ob_provider_contradiction_skips_entries_and_shallow_books_are_rejected():
    data = make_data(18)
    ob = InProcessOBProvider()
    for a in ASSETS:   # persistent buy pressure contradicts every SHORT
        ob.update_asset(a, {"imbalance_ma5": 0.5, "imbalance_persistence": 0.9, "depth_quality": 1.0})
    e = fresh()
    e.set_ob_engine(ob)
    results: list = []
    run(e, data, results=results)
    assert not e.trades and "ob_contradiction" in {r.note for r in results}
    ob2 = InProcessOBProvider()
    for a in ASSETS:
        ob2.update_asset(a, {"depth_quality": 0.1})
    e2 = fresh()
    e2.set_ob_engine(ob2)
    results2: list = []
    run(e2, data, results=results2)
    assert not e2.trades and "no_asset" in {r.note for r in results2}


def test_real_ob_provider_drives_edge_without_rng():
    data = make_data(19)
    ob = InProcessOBProvider()
    for a in ASSETS:
        ob.update_asset(a, {"depth_quality": 1.0, "fill_probability": 1.0})
    e = fresh()
    e.set_ob_engine(ob)
    run(e, data)
    assert e.trades
    rng_keys = fresh().get_state()["rng"]
    assert e.get_state()["rng"] == rng_keys               # the seeded MC fallback was never drawn


# ---------------------------------------------------------------- LONG (green)
def test_long_path_opens_long_positions_on_positive_vel_div():
    prices, vd, v50, v750 = make_data(20)
    e = NDAlphaEngine(EngineParams(direction=1), ASSETS)
    e.begin_day("2026-01-01", "APEX", 1)
    run(e, (prices, -vd, v50, v750))
    assert e.trades and all(t.direction == 1 for t in e.trades)


def test_params_reject_out_of_range_and_unknown_keys():
    with pytest.raises(ParamError, match="fraction"):
        EngineParams(fraction=1.5)
    with pytest.raises(ParamError, match="unknown"):
        EngineParams.from_dict({"frobnicate": 1})
    with pytest.raises(ParamError, match="max_hold_bars"):
        EngineParams(max_hold_bars=1.5)


# ---------------------------------------------------------------- properties
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), posture=st.sampled_from(["APEX", "STALKER", "TURTLE", "HIBERNATE"]),
       boost=st.floats(0.5, 3.0), beta=st.floats(0.0, 1.0), corrupt=st.floats(0.0, 0.2))
def test_property_positions_are_finite_and_bounded(seed, posture, boost, beta, corrupt):
    prices, vd, v50, v750 = make_data(seed, bars=600, vd_sigma=0.03)
    rng = np.random.default_rng(seed)
    prices = prices.copy()
    mask = rng.random(prices.shape) < corrupt
    prices[mask] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -5.0], size=int(mask.sum()))
    vd = vd.copy()
    vd[rng.random(len(vd)) < corrupt] = np.nan
    e = fresh(posture=posture, boost=boost, beta=beta)
    for i in range(len(vd)):
        r = e.step_bar(i, vd[i], prices[i], v50[i], v750[i])
        if r.entered is not None:
            en = r.entered
            assert posture in ("APEX", "STALKER")
            assert all(math.isfinite(v) for v in (en.price, en.notional, en.leverage, en.fraction))
            assert en.price > 0 and en.notional > 0
            assert 0.5 <= en.leverage <= 6.0 and 0.02 <= en.fraction <= 0.20
            if posture == "STALKER":
                assert en.leverage <= 2.0
        if r.exited is not None:
            assert math.isfinite(r.exited.net_pnl) and math.isfinite(r.exited.exit_price)
    assert math.isfinite(e.capital)


def test_hand_computed_trade_end_to_end():
    """One SHORT on BTC, every number by hand: sizing §6, exit §7.4, refund §8.2, legacy edge §8.3, fees §8.1."""
    p = EngineParams(use_asset_selection=False)
    e = NDAlphaEngine(p, ["BTCUSDT", "ETHUSDT"])
    e.begin_day("2026-01-01", "APEX", -1)
    flat = np.array([100.0, 10.0])
    for i in range(100):
        assert e.step_bar(i, 0.0, flat).entered is None
    r = e.step_bar(100, -0.035, flat)
    en = r.entered
    assert en is not None and en.asset == "BTCUSDT" and en.price == 100.0 and en.bucket == 2
    frac = (0.02 + 0.5 * 0.18) * (0.55 / 0.95) * 1.3          # strength 0.5, trend deepening ×1.3
    lev = 0.5 + 0.5 ** 3 * 4.5                                  # 1.0625, boost 1.0, beta 0
    assert en.fraction == pytest.approx(frac) and en.leverage == pytest.approx(lev)
    assert en.notional == pytest.approx(25_000.0 * frac * lev)
    r = e.step_bar(101, -0.01, np.array([99.0, 10.0]))
    t = r.exited
    assert t is not None and t.reason == "FIXED_TP" and t.bars_held == 1
    assert t.exit_price == pytest.approx(99.0 * 1.0002)
    u = np.random.RandomState(42).random_sample()               # 0.3745 < 0.40 → edge granted
    edge = 5e-4 if u < 0.40 else 0.0
    pnl_pct = (100.0 - 99.0 * 1.0002) / 100.0 + 0.5 * 0.0002 + edge
    assert t.pnl_pct == pytest.approx(pnl_pct)
    fees = en.notional * (0.000314 + 0.00035)
    assert t.fees == pytest.approx(fees)
    assert t.net_pnl == pytest.approx(pnl_pct * en.notional - fees)
    assert e.capital == pytest.approx(25_000.0 + t.net_pnl)
