"""Unit tests of the pure OBF feature math and the bus circuit breaker (no I/O)."""
from __future__ import annotations

import json
import math

import pytest

from services.obf_universe.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from services.obf_universe.features import AssetRolling, BookError, FeatureParams, book_features, macro, parse_depth
from prod.settings import load_settings
from services.obf_universe.main import Feed, ObfConfig, State

FIXED = {"e": "depthUpdate", "E": 1700000000123, "T": 1700000000120, "s": "BTCUSDT",
         "b": [["100.0", "2"], ["99.5", "1"], ["98.0", "10"]],
         "a": [["100.2", "1"], ["100.8", "3"], ["102.0", "5"]]}


def test_features_equal_hand_computed_values_on_a_fixed_book():
    f = book_features(parse_depth(FIXED), FeatureParams(depth_ref_usd=1000.0, spread_ref_bps=10.0))
    mid = 100.1
    assert f["best_bid"] == 100.0 and f["best_ask"] == 100.2
    assert f["spread_bps"] == pytest.approx(0.2 / mid * 1e4)          # 19.98 bps
    # within 1% of mid: bids >= 99.099 (100x2, 99.5x1), asks <= 101.101 (100.2x1, 100.8x3)
    depth = 200.0 + 99.5 + 100.2 + 302.4
    assert f["depth_1pct_usd"] == pytest.approx(depth)
    assert f["depth_quality"] == pytest.approx(depth / 1000.0)
    assert f["fill_probability"] == pytest.approx(math.exp(-(0.2 / mid * 1e4) / 10.0))
    assert f["imbalance"] == pytest.approx((13 - 9) / 22)
    assert (f["n_bid_levels"], f["n_ask_levels"]) == (3, 3)


def test_combined_stream_envelope_is_unwrapped():
    b = parse_depth({"stream": "btcusdt@depth5@500ms", "data": FIXED})
    assert b.symbol == "BTCUSDT" and b.event_ms == 1700000000123


@pytest.mark.parametrize("bad,kind", [
    ({**FIXED, "a": [["99.9", "1"]]}, "crossed"),
    ({**FIXED, "a": [["100.0", "1"]]}, "crossed"),
    ({**FIXED, "b": "x"}, "garbage"),
    ({**FIXED, "b": [["nan", "1"]]}, "garbage"),
    ({**FIXED, "b": [["-1", "1"]]}, "garbage"),
    ({**FIXED, "a": []}, "garbage"),
    ({"b": [], "a": []}, "garbage"),
    ([1, 2, 3], "garbage"),
])
def test_bad_books_are_rejected_with_their_kind(bad, kind):
    with pytest.raises(BookError) as ei:
        parse_depth(json.loads(json.dumps(bad)))
    assert ei.value.kind == kind


def _feats(imb, depth, spread):
    return {"imbalance": imb, "depth_1pct_usd": depth, "spread_bps": spread}


def test_rolling_imbalance_ma5_persistence_and_withdrawal_velocity():
    r = AssetRolling(FeatureParams())
    imbs = [0.1, -0.2, 0.3, 0.4, 0.5, 0.6]
    depths = [100.0, 100.0, 90.0, 80.0, 70.0, 50.0]
    for i, d in zip(imbs, depths):
        r.step(_feats(i, d, 1.0), fresh=True)
    assert r.last["imbalance_ma5"] == pytest.approx(sum(imbs[-5:]) / 5)
    assert r.last["imbalance_persistence"] == pytest.approx(5 / 6)       # 5 of 6 positive
    assert r.last["withdrawal_velocity"] == pytest.approx((50.0 / 100.0 - 1.0) / 5)


def test_dark_streak_flags_stale_and_recovers():
    p = FeatureParams(dark_streak_bars=3)
    r = AssetRolling(p)
    f = _feats(0.0, 100.0, 1.0)
    r.step(f, True)
    flags = [r.step(f, False)[0] for _ in range(3)]
    assert flags == [False, False, True] and r.stale
    assert r.step(f, True) == (False, True) and not r.stale


def test_stress_raises_cascade_count_and_regime_signal():
    p = FeatureParams()
    assets = [AssetRolling(p) for _ in range(20)]
    for _ in range(p.warm_bars + 5):
        for a in assets:
            a.step(_feats(0.0, 1e6, 2.0), True)
    calm = macro(assets, p)
    assert (calm.cascade_count, calm.regime_signal) == (0, -1)
    for i, a in enumerate(assets):
        if i < 8:
            a.step(_feats(-0.5, 3e5, 6.0), True)     # depth −70 %, spread ×3
        else:
            a.step(_feats(0.0, 1e6, 2.0), True)
    m = macro(assets, p)
    assert m.cascade_count == 8 and m.regime_signal == 1
    assert m.withdrawal_stress == pytest.approx(8 / 20)


def test_macro_excludes_stale_assets():
    p = FeatureParams(dark_streak_bars=2)
    a = AssetRolling(p)
    for _ in range(p.warm_bars + 2):
        a.step(_feats(0.0, 1e6, 2.0), True)
    assert macro([a], p).n_assets == 1
    a.step(None, False)
    a.step(None, False)
    assert macro([a], p).n_assets == 0


def test_universe_of_540_is_split_200_200_140():
    cfg = ObfConfig(settings=load_settings(env={}))
    st = State()
    Feed(cfg, st, [f"S{i}USDT" for i in range(540)])      # no I/O until the client runs
    assert st.connections == [200, 200, 140]


def test_config_rejects_out_of_range_cadences():
    with pytest.raises(ValueError):
        ObfConfig(settings=load_settings(env={}), refresh_s=6.0)


def test_breaker_opens_after_five_failures_probes_and_closes():
    b = CircuitBreaker(5, base_backoff_s=1.0, max_backoff_s=8.0)
    for _i in range(4):
        assert b.allow(0.0) and b.failure(0.0) is None
    assert b.allow(0.0) and b.failure(0.0) == "opened" and b.state == OPEN
    assert not b.allow(0.5)                       # file-only while open
    assert b.allow(1.0) and b.state == HALF_OPEN  # one probe
    assert not b.allow(1.0)                       # only one at a time
    assert b.failure(1.0) == "reopened" and b.backoff == 2.0
    assert not b.allow(2.9) and b.allow(3.0)
    assert b.failure(3.0) == "reopened" and b.backoff == 4.0
    assert b.allow(7.0)
    assert b.success() == "closed" and b.state == CLOSED and b.backoff == 1.0
    assert b.snapshot()["opened"] == 1 and b.snapshot()["closed"] == 1


def test_breaker_backoff_is_capped():
    b = CircuitBreaker(1, base_backoff_s=1.0, max_backoff_s=3.0)
    b.failure(0.0)
    t = 0.0
    for _ in range(5):
        t = b.open_until
        assert b.allow(t)
        b.failure(t)
    assert b.backoff == 3.0


from hypothesis import given, settings, strategies as st  # noqa: E402

_px = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False)
_qty = st.floats(min_value=0.0, max_value=1e9, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(bid=_px, gap=st.floats(min_value=1e-9, max_value=0.5), nb=st.integers(1, 5), na=st.integers(1, 5),
       qb=st.lists(_qty, min_size=5, max_size=5), qa=st.lists(_qty, min_size=5, max_size=5))
def test_features_of_any_valid_book_are_finite_and_in_range(bid, gap, nb, na, qb, qa):
    ask = bid * (1 + gap)
    msg = {"s": "XUSDT", "E": 1,
           "b": [[repr(bid * (1 - 0.001 * k)), repr(qb[k] + 1e-9)] for k in range(nb)],
           "a": [[repr(ask * (1 + 0.001 * k)), repr(qa[k] + 1e-9)] for k in range(na)]}
    f = book_features(parse_depth(msg))
    assert all(math.isfinite(v) for v in f.values())
    assert f["spread_bps"] > 0 and 0 <= f["depth_quality"] <= 1 and 0 < f["fill_probability"] <= 1
    assert -1 <= f["imbalance"] <= 1 and f["depth_1pct_usd"] >= 0


def test_market_imbalance_is_the_equal_weight_mean_of_imbalance_ma5_over_live_assets():
    p = FeatureParams(dark_streak_bars=2)
    imbs = [-0.6, -0.2, 0.1, 0.3]
    assets = [AssetRolling(p) for _ in imbs]
    for _ in range(p.warm_bars + 5):
        for a, i in zip(assets, imbs):
            a.step(_feats(i, 1e6 if i != 0.3 else 1e3, 2.0), True)   # depth does not weight the mean
    m = macro(assets, p)
    assert m.market_imbalance == pytest.approx(sum(imbs) / 4) and m.as_dict()["market_imbalance"] == m.market_imbalance
    for _ in range(2):                          # the -0.6 asset goes dark: left out of the macro
        assets[0].step(None, False)
        for a, i in zip(assets[1:], imbs[1:]):
            a.step(_feats(i, 1e6, 2.0), True)
    assert macro(assets, p).market_imbalance == pytest.approx(sum(imbs[1:]) / 3)
    assert macro([], p).market_imbalance == 0.0
