"""Golden and property tests for the survival stack (prod/alpha/survival.py, bible §11, §19.3)."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from prod.alpha.survival import (
    Posture, SensorReadings, SurvivalParams, SurvivalStack, bounded_recovery, cat1_invariant,
    cat2_structural, cat3_microstructure, cat4_environmental, cat5_capital, combine, posture_for,
)


# --- Cat5 drawdown sigmoid -------------------------------------------------------------------
def test_cat5_is_one_half_at_12_percent_drawdown():
    assert cat5_capital(0.12) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("dd", [0.0, 0.01, 0.03, 0.049])
def test_cat5_near_one_below_5_percent(dd):
    assert cat5_capital(dd) > 0.89


def test_cat5_near_point_one_at_20_percent():
    assert cat5_capital(0.20) == pytest.approx(0.1, abs=0.02)
    assert cat5_capital(0.20) == pytest.approx(1 / (1 + math.exp(2.4)), rel=1e-12)


def test_cat5_handles_extremes_and_nan():
    assert cat5_capital(100.0) == 0.0
    assert cat5_capital(float("nan")) < 1e-10      # unknown drawdown treated as total loss


# --- Cat1..Cat4 --------------------------------------------------------------------------------
def test_cat1_kill_switch():
    assert cat1_invariant(1, 30.0) == 1.0
    assert cat1_invariant(0, 0.0) == 0.0
    assert cat1_invariant(3, 30.01) == 0.0
    assert cat1_invariant(3, float("nan")) == 0.0


def test_cat2_mc_status_and_staleness_decay():
    assert cat2_structural("OK", 6.0) == 1.0
    assert cat2_structural("ORANGE", 0.0) == 0.5
    assert cat2_structural("RED", 1.0) == pytest.approx(0.1)
    assert cat2_structural("OK", 9.0) == pytest.approx(math.exp(-1.0))
    assert cat2_structural("ORANGE", 12.0) == pytest.approx(0.5 * math.exp(-2.0))
    assert cat2_structural(None, 0.0) == 0.5 and cat2_structural("???", 0.0) == 0.5


def test_cat3_microstructure():
    assert cat3_microstructure(True, 2.0, 1.0) == 0.5
    assert cat3_microstructure(False, 1.5, 0.5) == pytest.approx(0.65)
    assert cat3_microstructure(False, 0.0, 0.9) == pytest.approx(0.3)
    assert cat3_microstructure(False, 5.0, 5.0) == 1.0
    assert cat3_microstructure(False, float("nan"), 1.0) == 0.5


def test_cat4_dvol_spike_recovery():
    assert cat4_environmental(None) == 1.0
    assert cat4_environmental(0.0) == pytest.approx(0.3)
    assert cat4_environmental(60.0) == pytest.approx(0.3 + 0.7 * (1 - math.exp(-1)))
    assert cat4_environmental(600.0) > 0.99


# --- combination -------------------------------------------------------------------------------
def test_healthy_readings_give_rm_near_one():
    c = combine(SensorReadings())
    assert c.r_target == pytest.approx(cat5_capital(0.0)) and c.degraded == 0


def test_hierarchical_combination_takes_worst_of_cat2_cat4():
    s = SensorReadings(mc_status="OK", minutes_since_dvol_spike=0.0, drawdown=0.12)
    c = combine(s)
    assert c.degraded == 1   # only cat4 < 0.8
    assert c.r_target == pytest.approx(1.0 * 0.5 * min(1.0, 0.3) * 1.0)


def test_correlated_collapse_halves_target_when_two_sensors_degraded():
    s = SensorReadings(mc_status="ORANGE", ob_stale=True, drawdown=0.0)
    c = combine(s)
    assert c.degraded == 2
    assert c.r_target == pytest.approx(cat5_capital(0.0) * 0.5 * 0.5 * 0.5)


def test_cat1_failure_zeroes_target():
    assert combine(SensorReadings(hz_nodes=0)).r_target == 0.0


# --- dynamics ----------------------------------------------------------------------------------
def test_fast_attack_drops_immediately():
    assert bounded_recovery(0.2, 0.95, 0.1) == 0.2


def test_slow_recovery_formula_and_rate_cap():
    r = bounded_recovery(1.0, 0.5, 1.0)
    assert r == pytest.approx(0.5 + 0.02 * 0.5)
    for dt in (0.1, 1.0, 5.0, 30.0, 60.0, 120.0):
        step = bounded_recovery(1.0, 0.0, dt) - 0.0
        assert step <= 0.05 * dt + 1e-12
        assert step == pytest.approx(min(min(1.0, 0.02 * dt) * 1.0, 0.05 * dt))
    assert bounded_recovery(0.9, 0.5, 0.0) == 0.5


# --- posture -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rm,posture", [
    (1.0, Posture.APEX), (0.90, Posture.APEX), (0.8999, Posture.STALKER), (0.75, Posture.STALKER),
    (0.7499, Posture.TURTLE), (0.50, Posture.TURTLE), (0.4999, Posture.HIBERNATE), (0.0, Posture.HIBERNATE),
    (float("nan"), Posture.HIBERNATE),
])
def test_posture_tightened_thresholds(rm, posture):
    assert posture_for(rm) == posture


def _readings_for_target(dd: float) -> SensorReadings:
    return SensorReadings(drawdown=dd)


def test_hysteresis_down_needs_two_consecutive_updates():
    s = SurvivalStack()
    assert s.update(SensorReadings(), 1.0).posture == Posture.APEX
    bad = SensorReadings(drawdown=0.12)   # Rm 0.5 -> TURTLE candidate
    r1 = s.update(bad, 1.0)
    assert r1.candidate == Posture.TURTLE and r1.posture == Posture.APEX and not r1.changed
    r2 = s.update(bad, 1.0)
    assert r2.posture == Posture.TURTLE and r2.changed


def test_hysteresis_down_streak_broken_by_a_good_update():
    s = SurvivalStack()
    s.update(SensorReadings(), 1.0)
    s.update(SensorReadings(drawdown=0.12), 1.0)
    # Rm stays low (slow recovery) unless the target is high long enough; use long dt to recover fully
    s.update(SensorReadings(), 100.0)
    assert s.posture == Posture.APEX
    assert s.update(SensorReadings(drawdown=0.12), 1.0).posture == Posture.APEX


def test_hysteresis_up_needs_five_consecutive_updates():
    s = SurvivalStack.from_state({"rm": 0.5, "posture": "TURTLE"})
    healthy = SensorReadings()
    postures = [s.update(healthy, 100.0).posture for _ in range(5)]   # dt 100 min: full recovery each
    assert postures == [Posture.TURTLE] * 4 + [Posture.APEX]


def test_hysteresis_up_goes_to_most_severe_candidate_of_streak():
    s = SurvivalStack.from_state({"rm": 0.4, "posture": "HIBERNATE"})
    readings = [SensorReadings(drawdown=0.0)] * 4 + [SensorReadings(drawdown=0.06)]  # last: STALKER (Rm 0.86)
    for r in readings:
        res = s.update(r, 100.0)
    assert res.candidate == Posture.STALKER and s.posture == Posture.STALKER


def test_cat1_kill_bypasses_hysteresis():
    s = SurvivalStack()
    s.update(SensorReadings(), 1.0)
    r = s.update(SensorReadings(heartbeat_age_s=45.0), 0.1)
    assert r.rm == 0.0 and r.posture == Posture.HIBERNATE and r.changed


def test_recovery_from_zero_is_rate_limited():
    s = SurvivalStack()
    s.update(SensorReadings(hz_nodes=0), 1.0)
    r = s.update(SensorReadings(), 1.0)   # one minute later, everything healthy again
    assert r.rm == pytest.approx(0.02 * r.r_target) and r.posture == Posture.HIBERNATE


def test_state_round_trips_through_json_and_continues_identically():
    a = SurvivalStack()
    seq = [SensorReadings(drawdown=d, mc_status=m) for d, m in
           [(0.0, "OK"), (0.13, "OK"), (0.13, "ORANGE"), (0.02, "OK"), (0.0, "OK"), (0.0, "OK")]]
    for r in seq[:3]:
        a.update(r, 2.0)
    b = SurvivalStack.from_state(json.loads(json.dumps(a.state())))
    for r in seq[3:]:
        assert a.update(r, 2.0) == b.update(r, 2.0)
    assert a.state() == b.state()


def test_bad_state_raises_naming_the_problem():
    with pytest.raises(ValueError, match="SurvivalStack state invalid"):
        SurvivalStack.from_state({"posture": "YOLO"})


def test_params_reject_unordered_thresholds():
    with pytest.raises(ValueError):
        SurvivalParams(apex_min=0.7, stalker_min=0.75)


# --- properties --------------------------------------------------------------------------------
_readings = st.builds(
    SensorReadings,
    hz_nodes=st.integers(0, 3),
    heartbeat_age_s=st.one_of(st.floats(0, 100), st.just(float("nan"))),
    mc_status=st.sampled_from(["OK", "ORANGE", "RED", None, "bogus"]),
    staleness_hours=st.floats(0, 48),
    ob_stale=st.booleans(),
    depth_quality=st.one_of(st.floats(-1, 3), st.just(float("nan"))),
    fill_prob=st.one_of(st.floats(-1, 2), st.just(float("nan"))),
    minutes_since_dvol_spike=st.one_of(st.none(), st.floats(0, 1000)),
    drawdown=st.one_of(st.floats(-0.5, 2.0), st.just(float("nan"))),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_readings, st.floats(0, 120)), min_size=1, max_size=30))
def test_rm_always_in_unit_interval_and_posture_consistent(seq):
    s = SurvivalStack()
    for readings, dt in seq:
        r = s.update(readings, dt)
        assert 0.0 <= r.rm <= 1.0 and 0.0 <= r.r_target <= 1.0
        assert r.candidate == posture_for(r.rm)
        assert all(0.0 <= v <= 1.0 for v in r.categories.values())


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1))
def test_posture_monotone_in_rm(a, b):
    lo, hi = min(a, b), max(a, b)
    assert posture_for(hi).severity <= posture_for(lo).severity


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 500))
def test_recovery_never_exceeds_target_nor_cap(target, last, dt):
    r = bounded_recovery(target, last, dt)
    if target < last:
        assert r == target
    else:
        assert last <= r <= target + 1e-12
        assert r - last <= 0.05 * dt + 1e-12


def test_safety_payload_passes_the_bus_schema():
    from prod.bus.maps import SAFETY_LATEST

    res = SurvivalStack().update(SensorReadings(drawdown=0.12), 0.5)
    body = res.safety_payload(1_767_225_600.0)
    typed = SAFETY_LATEST.coerce(body)
    assert typed.posture == body["posture"] and typed.Rm == body["Rm"] and typed.ts == 1_767_225_600.0
    assert body["posture"] == "TURTLE" and body["Rm"] == pytest.approx(0.5)
    assert body["sensors"]["cat5"] == pytest.approx(0.5)
