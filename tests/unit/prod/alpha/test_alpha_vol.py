"""vol_regime_ok gate (bible §25): 512-bit and float64 dvol agree, and their decisions are identical
on real BTC prices."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from prod.alpha.vol import BatchVolGate, VolGate, rolling_dvol_arb512, rolling_dvol_f64, vol_regime_mask, vol_threshold
from tests.helpers import SHARED_REAL

# shared/ sits beside the repository in CI and on developer machines; a user's clone has none (tests skip)
REAL = SHARED_REAL / "binance_spot_btcusdt_1m"


def test_dvol_of_alternating_returns_is_their_std():
    p = [100.0]
    for i in range(120):
        p.append(p[-1] * (1.01 if i % 2 == 0 else 0.99))
    p = np.array(p)
    d64 = rolling_dvol_f64(p, 50)
    d512 = rolling_dvol_arb512(p, 50)
    assert np.isnan(d64[:50]).all() and np.isnan(d512[:50]).all()
    assert d64[50:] == pytest.approx(0.01, rel=1e-9)
    assert d512[50:] == pytest.approx(0.01, rel=1e-12)


def test_bad_prices_blank_the_window_and_never_count_as_ok():
    rng = np.random.default_rng(0)
    p = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, 300)))
    p[120] = np.nan
    p[200] = -1.0
    d64, d512 = rolling_dvol_f64(p, 50), rolling_dvol_arb512(p, 50)
    assert np.array_equal(np.isnan(d64), np.isnan(d512))
    assert np.isnan(d512[120:170]).all() and np.isfinite(d512[171])
    mask = vol_regime_mask(p, 0.0)
    assert not mask[:50].any() and not mask[120:170].any() and mask[180]


def _real_closes():
    files = sorted(REAL.glob("BTCUSDT-1m-*.csv"))[:3]
    closes = []
    for f in files:
        with f.open() as fh:
            closes += [float(row[4]) for row in csv.reader(fh) if row]
    return np.array(closes)


@pytest.mark.skipif(not REAL.exists(), reason="shared/data/real not present")
def test_512bit_and_float64_make_identical_decisions_on_real_btc():
    closes = _real_closes()
    assert len(closes) > 1000
    d64, d512 = rolling_dvol_f64(closes, 50), rolling_dvol_arb512(closes, 50)
    ok = np.isfinite(d64)
    assert np.array_equal(ok, np.isfinite(d512))
    assert np.max(np.abs(d64[ok] - d512[ok]) / d512[ok]) < 1e-9
    thr = vol_threshold(d512)
    assert np.array_equal(vol_regime_mask(closes, thr), vol_regime_mask(closes, thr, precise=False))
    assert 0.3 < vol_regime_mask(closes, thr)[50:].mean() < 0.5          # p60 → ~40 % of bars ok


# ── VolGate: the streaming gate the trader and the backtest use ───────────────────────────────
def _walk(n=1500, seed=7):
    rng = np.random.default_rng(seed)
    sig = 0.001 * (1 + (np.arange(n) // 100) % 3)          # regimes of calm and volatile bars
    return 60_000.0 * np.exp(np.cumsum(rng.normal(0, 1, n) * sig))


def test_volgate_dvol_is_the_batch_dvol_bit_for_bit_including_bad_bars():
    p = _walk()
    p[300] = np.nan
    p[700] = -5.0
    g = VolGate()
    d = []
    for x in p:
        g.update(x)
        d.append(g.last_dvol)
    d = np.array(d)
    b = rolling_dvol_arb512(p, 50)
    assert np.array_equal(np.isnan(d), np.isnan(b))
    assert np.array_equal(d[np.isfinite(d)], b[np.isfinite(b)])


def test_volgate_with_a_fixed_threshold_is_the_batch_mask():
    p = _walk()
    thr = vol_threshold(rolling_dvol_arb512(p, 50))
    g = VolGate(threshold=thr)
    assert [g.update(x) for x in p] == vol_regime_mask(p, thr).tolist()


def test_volgate_learned_threshold_is_the_p60_order_statistic_of_previous_bars():
    p = _walk()
    d = rolling_dvol_arb512(p, 50)
    g = VolGate(min_history=10)
    got = [g.update(x) for x in p]
    hist: list[float] = []
    want = []
    for v in d:
        if not np.isfinite(v):
            want.append(False)
            continue
        s = sorted(hist)
        want.append(len(s) >= 10 and v > s[min(len(s) - 1, int(0.6 * len(s)))])
        hist.append(v)
    assert got == want and any(got) and not all(got)


def test_volgate_arb_and_float64_give_the_same_decisions():
    p = _walk(seed=3)
    a, f = VolGate(), VolGate(precise=False)
    assert a.precise and not f.precise
    da, df = [a.update(x) for x in p], [f.update(x) for x in p]
    assert da == df and any(da)
    assert a.last_dvol == pytest.approx(f.last_dvol, rel=1e-9)


def test_volgate_bad_prices_close_the_gate_and_warmup_is_closed():
    g = VolGate()
    for bad in (None, "x", float("nan"), -1.0, 0.0, float("inf"), True):
        assert g.update(bad) is False
    g = VolGate(min_history=1)
    assert not any(g.update(100 + i) for i in range(51))


def test_volgate_state_survives_a_restart_exactly():
    import json
    p = _walk()
    a = VolGate()
    for x in p[:900]:
        a.update(x)
    b = VolGate()
    b.restore(json.loads(json.dumps(a.state(), allow_nan=False)))
    assert [a.update(x) for x in p[900:]] == [b.update(x) for x in p[900:]]
    assert a.last_dvol == b.last_dvol


def test_volgate_restores_the_history_of_the_previous_trader_gate_format():
    g = VolGate(min_history=3)
    g.restore({"last_price": 100.0, "rets": [0.001] * 50, "hist": [0.001, 0.002, 0.003]})
    assert g.current_threshold() == 0.002
    assert not any(g.update(100.0 * 1.01 ** (i % 2)) for i in range(1, 50))   # 49 returns: window not full
    assert np.isnan(g.last_dvol)
    assert g.update(100.0) is True and g.last_dvol == pytest.approx(0.01, rel=0.01)    # the 50th: open


# ── BatchVolGate: the replay's batch form makes VolGate's decisions (issue 31) ─────────────────
def _stream(gate, p):
    return np.array([gate.update(x) for x in p.tolist()], dtype=bool)


def _batched(gate, p, cuts):
    return np.concatenate([gate.update_many(p[a:b]) for a, b in zip([0, *cuts], [*cuts, len(p)])])


def test_batch_gate_decisions_equal_the_streaming_gate_across_odd_blocks_and_bad_prices():
    p = np.concatenate([_walk(seed=5), _walk(seed=6)[:900] * 1.3])
    p[[10, 320, 321, 1700]] = np.nan
    p[900:903] = -1.0
    p[1200] = np.inf
    b = BatchVolGate()
    got = _batched(b, p, [1, 7, 49, 50, 51, 333, 1500, 1501])
    want = _stream(VolGate(), p)
    assert np.array_equal(got, want) and 0 < want.sum() < len(want)
    assert b.exact is None                                  # decided in float64, no replay needed


def test_batch_gate_decisions_with_small_history_limits():
    p = _walk(n=2500, seed=9)
    for kw in ({"min_history": 1, "max_history": 7}, {"max_history": 300}, {"pct": 25.0, "window": 20}):
        assert np.array_equal(_batched(BatchVolGate(**kw), p, [100, 1000]), _stream(VolGate(**kw), p)), kw


def test_batch_gate_replays_through_volgate_on_a_close_call_decisions():
    p = _walk(seed=4)
    thr = float(rolling_dvol_arb512(p, 50)[700])           # a threshold equal to one bar's dvol
    b = BatchVolGate(threshold=thr)
    assert np.array_equal(_batched(b, p, [400, 1000]), _stream(VolGate(threshold=thr), p))
    assert b.exact is not None                              # bar 700 was too close to call in float64


def test_batch_gate_replays_on_repeated_windows_decisions():
    # returns repeating with period 10: every full window holds the same returns, so every dvol ties
    # with the learned threshold and only the 512-bit running sums decide
    base = 100.0 * np.cumprod(1 + np.tile([0.001, -0.002, 0.0015, 0.0, -0.0005, 0.002, -0.001, 0.0007, -0.0012,
                                           0.0003], 40))
    b = BatchVolGate(min_history=3)
    assert np.array_equal(_batched(b, base, [123, 300]), _stream(VolGate(min_history=3), base))
    assert b.exact is not None


def test_batch_gate_without_precision_streams_volgate():
    p = _walk(seed=2)
    b = BatchVolGate(precise=False)
    assert np.array_equal(_batched(b, p, [500]), _stream(VolGate(precise=False), p))


def test_batch_gate_rejects_bad_parameters():
    with pytest.raises(ValueError):
        BatchVolGate(window=1)
