"""vol_regime_ok gate (bible §25): 512-bit and float64 dvol agree, and their decisions are identical
on real BTC prices."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from prod.alpha.vol import rolling_dvol_arb512, rolling_dvol_f64, vol_regime_mask, vol_threshold

# shared/ sits beside the repository in CI and on developer machines; a user's clone has none (tests skip)
REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "binance_spot_btcusdt_1m"


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
