"""numba kernels of the NG8 eigenscan: nested-window correlation matrices and eigen post-processing.

The rolling correlation is built from raw moments over nested row blocks, so the four windows
(50, 150, 300, 750 returns) cost one pass over the longest window. The eigen decomposition itself
uses LAPACK through :func:`numpy.linalg.eigh` (numba has no LAPACK binding without SciPy, which this
project does not ship); everything around it — moments, masks, sign convention, velocities and
rolling std — runs jitted.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# Relative floor below which a return series counts as constant (correlation undefined).
VAR_EPS = 1e-24


@njit(cache=True, fastmath={"contract", "reassoc", "arcp"})
def nested_correlations(rt, windows):
    """Return correlation matrices and validity masks for nested trailing windows.

    Parameters
    ----------
    rt : float64 array (N, T)
        Log returns, one row per asset, newest column last. NaN marks a missing return.
    windows : int64 array (K,)
        Window lengths in ascending order, each <= T.

    Returns
    -------
    corr : float64 array (K, N, N)
        Pearson correlation of the last ``windows[k]`` returns; rows/columns of invalid assets are 0.
    valid : bool array (K, N)
        True where the asset has ``windows[k]`` finite returns with non-zero variance.
    """
    n, t_len = rt.shape
    k_n = windows.shape[0]
    corr = np.zeros((k_n, n, n))
    valid = np.zeros((k_n, n), dtype=np.bool_)
    s1 = np.zeros(n)
    s2 = np.zeros((n, n))
    bad = np.zeros(n, dtype=np.bool_)
    start_prev = t_len
    for k in range(k_n):
        w = windows[k]
        start = t_len - w
        # accumulate the block [start, start_prev)
        for i in range(n):
            acc = 0.0
            for t in range(start, start_prev):
                x = rt[i, t]
                if not np.isfinite(x):
                    bad[i] = True
                acc += x
            s1[i] += acc
        _accumulate_products(rt, s2, bad, start, start_prev)
        start_prev = start
        inv_w = 1.0 / w
        sd = np.zeros(n)
        for i in range(n):
            if bad[i]:
                continue
            m = s1[i] * inv_w
            var = s2[i, i] * inv_w - m * m
            ref = s2[i, i] * inv_w
            if var > VAR_EPS * ref and var > 0.0:
                valid[k, i] = True
                sd[i] = np.sqrt(var)
        for i in range(n):
            if not valid[k, i]:
                continue
            mi = s1[i] * inv_w
            corr[k, i, i] = 1.0
            for j in range(i + 1, n):
                if not valid[k, j]:
                    continue
                c = (s2[i, j] * inv_w - mi * s1[j] * inv_w) / (sd[i] * sd[j])
                if c > 1.0:
                    c = 1.0
                elif c < -1.0:
                    c = -1.0
                corr[k, i, j] = c
                corr[k, j, i] = c
    return corr, valid


@njit(cache=True, fastmath={"contract", "reassoc", "arcp"})
def _accumulate_products(rt, s2, bad, t0, t1):
    """Add ``sum_t rt[i,t]*rt[j,t]`` over ``t0 <= t < t1`` to ``s2[i, j]`` (j >= i), 4 rows at a time."""
    n = rt.shape[0]
    for i0 in range(0, n, 4):
        i1 = min(i0 + 4, n)
        for j in range(i0, n):
            if bad[j]:
                continue
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            a3 = 0.0
            if i1 - i0 == 4:
                for t in range(t0, t1):
                    x = rt[j, t]
                    a0 += rt[i0, t] * x
                    a1 += rt[i0 + 1, t] * x
                    a2 += rt[i0 + 2, t] * x
                    a3 += rt[i0 + 3, t] * x
                acc = (a0, a1, a2, a3)
                for q in range(4):
                    i = i0 + q
                    if j >= i and not bad[i]:
                        s2[i, j] += acc[q]
            else:
                for i in range(i0, i1):
                    if j < i or bad[i]:
                        continue
                    a = 0.0
                    for t in range(t0, t1):
                        a += rt[i, t] * rt[j, t]
                    s2[i, j] += a


@njit(cache=True)
def log_returns(prices):
    """Return ``ln(p[t]/p[t-1])`` for a (T, N) price matrix as an (N, T-1) array; NaN where undefined."""
    t_len, n = prices.shape
    out = np.empty((n, max(t_len - 1, 0)))
    for i in range(n):
        for t in range(1, t_len):
            a = prices[t - 1, i]
            b = prices[t, i]
            if np.isfinite(a) and np.isfinite(b) and a > 0.0 and b > 0.0:
                out[i, t - 1] = np.log(b / a)
            else:
                out[i, t - 1] = np.nan
    return out


@njit(cache=True)
def orient(v):
    """Return ``v`` with the sign that makes its sum non-negative (a stable loadings convention)."""
    s = 0.0
    for x in v:
        s += x
    if s < 0.0:
        return -v
    return v.copy()


@njit(cache=True)
def population_std(x):
    """Population standard deviation of a 1-D float64 array (two-pass)."""
    n = x.shape[0]
    m = 0.0
    for v in x:
        m += v
    m /= n
    acc = 0.0
    for v in x:
        acc += (v - m) * (v - m)
    return np.sqrt(acc / n)
