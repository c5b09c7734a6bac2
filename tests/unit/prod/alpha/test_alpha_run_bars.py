"""NDAlphaEngine.run_bars (issue 31) is step_bar on every bar: same trades, same state, same skips.

Each case drives two engines over the same bars, one with ``step_bar`` bar by bar (the replay's old
loop, including its post-gap rule: a held bar is not stepped while flat) and one with ``run_bars`` in
blocks, and compares the full ``get_state()`` (histories, learning state, rng, position), every trade
field exactly, and the skip counts.  The data carry bad bars of every kind, held bars, closed vol gates,
and the day / posture / ACB changes the trader makes between bars.
"""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prod.alpha.engine import EngineError, NDAlphaEngine
from prod.alpha.params import EngineParams
from tests.unit.prod.alpha.test_alpha_engine import ASSETS, make_data


def corrupt(data, seed: int, bad: bool = True):
    """Inject bad bars (NaN/inf scalars, all-NaN rows, single bad prices) and a vol mask / hold mask."""
    prices, vd, v50, v750 = (np.array(a, dtype=np.float64, copy=True) for a in data)
    rng = np.random.default_rng(seed)
    n = len(vd)
    if bad:
        vd[rng.choice(n, 15, replace=False)] = np.nan
        v50[rng.choice(n, 8, replace=False)] = np.inf
        v750[rng.choice(n, 8, replace=False)] = -np.inf
        prices[rng.choice(n, 10, replace=False)] = np.nan
        rows = rng.choice(n, 120, replace=False)
        prices[rows, rng.integers(0, prices.shape[1], rows.size)] = rng.choice([np.nan, 0.0, -1.0, np.inf], rows.size)
    vol_ok = rng.random(n) < 0.8
    vol_ok[:200] = True
    hold = np.zeros(n, dtype=bool)
    for s in rng.choice(n - 60, 4, replace=False):
        hold[s:s + int(rng.integers(5, 60))] = True
    return (prices, vd, v50, v750), vol_ok, hold


def step_all(eng, data, vol_ok, hold, lo, hi, skips: Counter):
    prices, vd, v50, v750 = data
    for i in range(lo, hi):
        if hold[i] and eng.position is None:
            skips["held"] += 1
            continue
        r = eng.step_bar(i, vd[i], prices[i], v50[i], v750[i], bool(vol_ok[i]))
        if r.skipped is not None:
            skips[r.skipped] += 1


def block_all(eng, data, vol_ok, hold, lo, hi, skips: Counter, chunk: int):
    prices, vd, v50, v750 = data
    for a in range(lo, hi, chunk):
        b = min(hi, a + chunk)
        out = eng.run_bars(a, vd[a:b], prices[a:b], v50[a:b], v750[a:b], vol_ok[a:b], hold[a:b])
        skips["held"] += out.held
        skips.update(out.skipped)
        for _, r in out.events:
            if r.skipped is not None:
                skips[r.skipped] += 1
        assert out.quiet + len(out.events) + sum(1 for i in range(b - a) if hold[a + i]) >= b - a


def same(e1: NDAlphaEngine, e2: NDAlphaEngine):
    s1, s2 = e1.get_state(), e2.get_state()
    assert json.dumps(s1, sort_keys=True) == json.dumps(s2, sort_keys=True)
    assert [t.to_dict() for t in e1.trades] == [t.to_dict() for t in e2.trades]


def twins(params=None, direction=-1, posture="APEX"):
    out = []
    for _ in range(2):
        e = NDAlphaEngine(params or EngineParams(), ASSETS)
        e.begin_day("2026-01-01", posture, direction)
        out.append(e)
    return out


@pytest.mark.parametrize("seed,params,direction,chunk", [
    (1, EngineParams(), -1, 10_000),
    (2, EngineParams(), -1, 137),
    (3, EngineParams(), 1, 10_000),
    (4, EngineParams(vd_enabled=True, vd_adverse_threshold=0.005, vd_adverse_bars=2), -1, 500),
    (5, EngineParams(tf_enabled=True), -1, 10_000),
    (6, EngineParams(use_asset_selection=False, use_direction_confirm=False, lookback=0), -1, 731),
    (7, EngineParams(max_hold_bars=15, fixed_tp_pct=0.002, stop_pct=0.003), -1, 10_000),
])
def test_run_bars_equals_step_bar_on_every_bar(seed, params, direction, chunk):
    data, vol_ok, hold = corrupt(make_data(seed, bars=3000), seed)
    a, b = twins(params, direction)
    sa, sb = Counter(), Counter()
    step_all(a, data, vol_ok, hold, 0, 3000, sa)
    block_all(b, data, vol_ok, hold, 0, 3000, sb, chunk)
    same(a, b)
    assert +sa == +sb
    assert len(a.trades) > 3 and sa["held"] > 0 and sa["bad_vel_div"] > 0


def test_run_bars_follows_posture_acb_and_day_changes_between_blocks():
    data, vol_ok, hold = corrupt(make_data(11, bars=4000), 11)
    a, b = twins()
    sa, sb = Counter(), Counter()
    cuts = [0, 700, 1300, 1900, 2500, 3100, 4000]
    changes = [
        lambda e: e.set_posture("STALKER"),
        lambda e: e.set_posture("TURTLE"),                  # entries halted, positions still managed
        lambda e: e.update_acb_boost(1.4, 0.5),            # applied at the next bar
        lambda e: e.update_acb_boost(1.0, 0.0),            # a drop from >= 1.25: sub-day exit if in a position
        lambda e: (e.end_day(), e.begin_day("2026-01-02", "APEX", -1, boost=1.3, beta=0.8)),
    ]
    for k in range(len(cuts) - 1):
        step_all(a, data, vol_ok, hold, cuts[k], cuts[k + 1], sa)
        block_all(b, data, vol_ok, hold, cuts[k], cuts[k + 1], sb, 10_000)
        same(a, b)
        if k < len(changes):
            changes[k](a)
            changes[k](b)
    assert +sa == +sb and len(a.trades) > 3


def test_run_bars_exits_on_hibernate_like_step_bar():
    data, vol_ok, hold = corrupt(make_data(12, bars=3000), 12, bad=False)
    a, b = twins()
    sa, sb = Counter(), Counter()
    i = 200
    while a.position is None and i < 2900:             # step both until a position is open
        step_all(a, data, vol_ok, hold, i, i + 1, sa)
        block_all(b, data, vol_ok, hold, i, i + 1, sb, 1)
        i += 1
    assert a.position is not None
    a.set_posture("HIBERNATE")
    b.set_posture("HIBERNATE")
    step_all(a, data, vol_ok, hold, i, 3000, sa)
    block_all(b, data, vol_ok, hold, i, 3000, sb, 10_000)
    same(a, b)
    assert a.trades[-1].reason == "HIBERNATE_HALT"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), chunk=st.integers(1, 2500), direction=st.sampled_from([-1, 1]),
       bad=st.booleans())
def test_run_bars_equals_step_bar_property(seed, chunk, direction, bad):
    data, vol_ok, hold = corrupt(make_data(seed, bars=1500, vd_sigma=0.03), seed, bad)
    a, b = twins(direction=direction)
    sa, sb = Counter(), Counter()
    step_all(a, data, vol_ok, hold, 0, 1500, sa)
    block_all(b, data, vol_ok, hold, 0, 1500, sb, chunk)
    same(a, b)
    assert +sa == +sb


def test_run_bars_refuses_misuse():
    e = NDAlphaEngine(EngineParams(), ASSETS)
    prices, vd, v50, v750 = make_data(1, bars=900)
    ok = np.ones(900, dtype=bool)
    with pytest.raises(EngineError):
        e.run_bars(0, vd, prices, v50, v750, ok)
    e.begin_day("2026-01-01")
    with pytest.raises(ValueError, match="prices"):
        e.run_bars(0, vd, prices[:, :3], v50, v750, ok)
    with pytest.raises(ValueError):
        e.run_bars(0, vd, prices, v50[:10], v750, ok)
