"""Volatility regime gate `vol_regime_ok` (bible §13.1, §25): rolling 50-bar BTC return volatility
("dvol") compared with a percentile threshold, computed at 512-bit precision with python-flint and a
float64 numba fallback.

Definitions (the bible names the computation but not its formula; decided here):
  r_t      = (p_t - p_{t-1}) / p_{t-1}
  dvol_t   = population std of r over the last `window` returns ending at t (NaN before that,
             and NaN while the window holds a non-finite or non-positive price)
  vol_ok_t = dvol_t > threshold, where threshold is the `pct` (60) percentile of a reference set
             of dvol values (`vol_threshold`).
§25: the 512-bit path is primary; `vol_regime_mask` falls back to float64 only when flint is
missing.  Tests show both give identical decisions on real BTC prices.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from numba import njit

DVOL_WINDOW = 50
VOL_PCT = 60.0


@njit(cache=True)
def rolling_dvol_f64(prices, window):
    """Return the rolling population std of simple returns (float64; NaN until `window` returns)."""
    n = prices.shape[0]
    out = np.full(n, np.nan)
    for t in range(window, n):
        s = 0.0
        s2 = 0.0
        ok = True
        for i in range(t - window + 1, t + 1):
            p0 = prices[i - 1]
            p1 = prices[i]
            if not (p0 > 0.0 and p0 < np.inf and p1 > 0.0 and p1 < np.inf):
                ok = False
                break
            r = (p1 - p0) / p0
            s += r
            s2 += r * r
        if ok:
            m = s / window
            v = s2 / window - m * m
            out[t] = math.sqrt(v) if v > 0.0 else 0.0
    return out


def rolling_dvol_arb512(prices: np.ndarray, window: int = DVOL_WINDOW) -> Optional[np.ndarray]:
    """Return the rolling dvol computed in 512-bit arb arithmetic, or None without python-flint."""
    try:
        from flint import arb, ctx
    except ImportError:
        return None
    old = ctx.prec
    ctx.prec = 512
    try:
        n = len(prices)
        out = np.full(n, np.nan)
        p = [float(x) for x in prices]
        good = [math.isfinite(x) and x > 0 for x in p]
        rets: list = [None] * n
        for t in range(1, n):
            if good[t] and good[t - 1]:
                a0 = arb(p[t - 1])
                rets[t] = (arb(p[t]) - a0) / a0
        w = arb(window)
        s = arb(0)
        s2 = arb(0)
        n_bad = 0          # bad returns inside the current window
        for t in range(1, n):
            r = rets[t]
            if r is None:
                n_bad += 1
            else:
                s += r
                s2 += r * r
            if t > window:
                old_r = rets[t - window]
                if old_r is None:
                    n_bad -= 1
                else:
                    s -= old_r
                    s2 -= old_r * old_r
            if t >= window and n_bad == 0:
                m = s / w
                fv = float((s2 / w - m * m).mid())
                out[t] = math.sqrt(fv) if fv > 0 else 0.0
        return out
    finally:
        ctx.prec = old


def vol_threshold(dvols: np.ndarray, pct: float = VOL_PCT) -> float:
    """Return the `pct` percentile of the finite dvol values (NaN when there are none)."""
    d = np.asarray(dvols, dtype=np.float64)
    d = d[np.isfinite(d)]
    return float(np.percentile(d, pct)) if d.size else float("nan")


def vol_regime_mask(btc_prices: np.ndarray, threshold: float, window: int = DVOL_WINDOW,
                    precise: bool = True) -> np.ndarray:
    """Return vol_ok per bar: dvol > threshold (512-bit primary, float64 fallback, §25.5)."""
    prices = np.asarray(btc_prices, dtype=np.float64)
    dvol = rolling_dvol_arb512(prices, window) if precise else None
    if dvol is None:
        dvol = rolling_dvol_f64(prices, window)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(dvol), dvol > threshold, False)
