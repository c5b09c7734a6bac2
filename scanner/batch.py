"""A whole price series through the NG8 scan in compiled code: λ1 per window per scan, no per-scan Python.

Design notes: ``docs/design/scanner.md``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from scanner import kernels
from scanner.incremental import update_moments
from scanner.engine import (CARRY_SCANS, FULL_EVERY, GAP_FACTOR, GAP_HOLD_RETURNS, HISTORY_ROWS,
                            INSTABILITY_SCANS, MIN_ASSETS, MIN_GAP_S, PARTIAL_FRAC, WINDOWS)

log = logging.getLogger(__name__)

TOL_LAMBDA = 1e-13     # λ1/N error aimed at (the engine's agreement tolerance is 1e-10)
MAX_STEPS = 40         # Lanczos steps before LAPACK eigvalsh


@dataclass
class SeriesResult:
    """Per scan (rows) and window (columns, in ``WINDOWS`` order); NaN where the engine gives None."""

    lam: np.ndarray            # λ1/N (T × 4)
    velocity: np.ndarray       # T × 4
    instability: np.ndarray    # T × 4
    vel_div: np.ndarray        # T
    gap_hold: np.ndarray       # T, bool
    gaps: int                  # spacing gaps seen
    stats: dict


@njit(cache=True)
def _prelude(prices, ts_ns, thr_ns, carry_scans, partial_frac, hold_returns):
    """The engine's per-scan input rules: the return each scan appends (row t; NaN where undefined or after a
    gap), whether it appends one, and the gap_hold flag."""
    t_n, n = prices.shape
    x = np.full((t_n, n), np.nan)
    gap_at = np.zeros(t_n, dtype=np.bool_)
    has_ret = np.zeros(t_n, dtype=np.bool_)
    hold_flag = np.zeros(t_n, dtype=np.bool_)
    last = np.full(n, np.nan)
    miss = np.zeros(n, dtype=np.int64)
    row = np.empty(n)
    hold = 0
    gap_next = False
    gaps = 0
    nret = 0
    for t in range(t_n):
        if thr_ns > 0 and t > 0 and ts_ns[t] - ts_ns[t - 1] > thr_ns:
            gap_next = True
            hold = hold_returns
            gaps += 1
            gap_at[t] = True
        priced = 0
        for i in range(n):
            p = prices[t, i]
            if np.isfinite(p):
                priced += 1
                row[i] = p
                miss[i] = 0
            else:
                row[i] = last[i] if (miss[i] < carry_scans and np.isfinite(last[i])) else np.nan
                miss[i] += 1
        if priced < partial_frac * n and hold < carry_scans + 2:
            hold = carry_scans + 2
        if t > 0:
            if gap_next:
                gap_next = False
            else:
                for i in range(n):
                    a = last[i]
                    b = row[i]
                    if np.isfinite(a) and np.isfinite(b) and a > 0.0 and b > 0.0:
                        x[t, i] = np.log(b / a)
            has_ret[t] = True
            nret += 1
        for i in range(n):
            last[i] = row[i]
        hold_flag[t] = hold > 0
        if hold > 0:
            hold -= 1
    return x, has_ret, hold_flag, gap_at


@njit(cache=True)
def _start_vector(prev, idx, k):
    v = np.empty(k)
    nv = 0.0
    for a in range(k):
        # the last top vector plus a fixed small spread, so no direction is ever missing from the start
        v[a] = prev[idx[a]] + 1e-2 * (1.0 + 0.5 * math.sin(1.0 + 7.0 * idx[a])) / math.sqrt(k)
        nv += v[a] * v[a]
    nv = math.sqrt(nv)
    for a in range(k):
        v[a] /= nv
    return v


@njit(cache=True, fastmath={"reassoc", "contract"})
def _top_eigenvalue(c, v0, tol, max_steps):
    """λ1 of the symmetric ``c`` by Lanczos from ``v0`` (unit). Returns (λ1, Ritz vector, steps, converged)."""
    n = c.shape[0]
    m = min(max_steps, n)
    qs = np.zeros((m + 1, n))
    alpha = np.zeros(m)
    beta = np.zeros(m)
    qs[0] = v0
    wv = np.empty(n)
    for j in range(m):
        qj = qs[j]
        for a in range(n):
            acc = 0.0
            for b in range(n):
                acc += c[a, b] * qj[b]
            wv[a] = acc
        al = 0.0
        for a in range(n):
            al += wv[a] * qj[a]
        alpha[j] = al
        for _ in range(2):                          # full reorthogonalisation, twice
            for i in range(j + 1):
                d = 0.0
                for a in range(n):
                    d += wv[a] * qs[i, a]
                for a in range(n):
                    wv[a] -= d * qs[i, a]
        b2 = 0.0
        for a in range(n):
            b2 += wv[a] * wv[a]
        bt = math.sqrt(b2)
        beta[j] = bt
        k = j + 1
        if k == 1:                                  # Ritz value α0, residual β0
            th1 = al
            y = np.ones((1, 1))
            res = bt
            done = res <= tol or bt <= 1e-14 * abs(th1)
        elif k == 2 and bt > 1e-14 * abs(al):      # too early for the gap estimate: go on
            th1 = al
            y = np.ones((1, 1))
            res = 0.0
            done = False
        else:
            tm = np.zeros((k, k))
            for i in range(k):
                tm[i, i] = alpha[i]
                if i + 1 < k:
                    tm[i, i + 1] = beta[i]
                    tm[i + 1, i] = beta[i]
            ev, y = np.linalg.eigh(tm)
            th1 = ev[k - 1]
            res = bt * abs(y[k - 1, k - 1])
            done = res <= tol or bt <= 1e-14 * abs(th1)
            if not done:
                gap = th1 - ev[k - 2]
                done = gap > 0.0 and res * res <= 0.01 * tol * gap
        if done:
            vec = np.zeros(n)
            for i in range(k):
                for a in range(n):
                    vec[a] += y[i, k - 1] * qs[i, a]
            return th1, vec, k, True
        for a in range(n):
            qs[j + 1, a] = wv[a] / bt
    return 0.0, v0, m, False


@njit(cache=True)
def _lambda_series(x, has_ret, w, min_assets, var_eps, full_every, tol_rel, max_steps):
    """λ1/N of window ``w`` at every scan (NaN when not computed), whether the included set equals the previous
    scan's, and counts (Lanczos scans, steps, eigvalsh fallbacks)."""
    t_n, n = x.shape
    lam = np.full(t_n, np.nan)
    same = np.zeros(t_n, dtype=np.bool_)
    s1 = np.zeros(n)
    q = np.zeros(n)
    bad = np.zeros(n, dtype=np.int64)
    s2 = np.zeros((n, n))
    rows = np.empty(t_n, dtype=np.int64)        # scan row of each return, in order
    nret = 0
    prev_vec = np.zeros(n)
    prev_mask = np.zeros(n, dtype=np.bool_)
    prev_ok = False
    since = 0
    lanczos = 0
    steps = 0
    fallbacks = 0
    mask = np.zeros(n, dtype=np.bool_)
    for t in range(t_n):
        if has_ret[t]:
            has_old = nret >= w
            old = x[rows[nret - w]] if has_old else x[t]
            update_moments(s1, q, bad, s2, x[t], old, has_old, True)
            rows[nret] = t
            nret += 1
        if nret < w:
            prev_ok = False
            continue
        since += 1
        scheduled = since >= full_every
        if scheduled:                                # drift reset, as the engine's schedule
            since = 0
            s1[:] = 0.0
            q[:] = 0.0
            bad[:] = 0
            s2[:, :] = 0.0
            for r in range(nret - w, nret):
                update_moments(s1, q, bad, s2, x[rows[r]], x[rows[r]], False, True)
        k = 0
        for i in range(n):
            mi = s1[i] / w
            ref = q[i] / w
            var = ref - mi * mi
            mask[i] = bad[i] == 0 and var > var_eps * ref and var > 0.0
            if mask[i]:
                k += 1
        if k < min_assets:
            prev_ok = False
            prev_vec[:] = 0.0
            continue
        idx = np.empty(k, dtype=np.int64)
        j = 0
        for i in range(n):
            if mask[i]:
                idx[j] = i
                j += 1
        c = _corr(s2, s1, q, idx, w)
        got = False
        th = 0.0
        vec = np.zeros(k)
        if not scheduled:
            th, vec, st, got = _top_eigenvalue(c, _start_vector(prev_vec, idx, k), tol_rel * k, max_steps)
            steps += st
            if got:
                lanczos += 1
        if not got:
            ev, vv = np.linalg.eigh(c)
            th = ev[k - 1]
            vec = vv[:, k - 1].copy()
            fallbacks += 1
        lam[t] = th / k
        eq = prev_ok
        if eq:
            for i in range(n):
                if mask[i] != prev_mask[i]:
                    eq = False
                    break
        same[t] = eq
        prev_vec[:] = 0.0
        for a in range(k):
            prev_vec[idx[a]] = vec[a]
        prev_mask[:] = mask
        prev_ok = True
    return lam, same, lanczos, steps, fallbacks


@njit(cache=True, parallel=True)
def _all_windows(x, has_ret, windows, min_assets, var_eps, full_every, tol_rel, max_steps):
    """:func:`_lambda_series` for every window, the windows spread over numba's threads (both cores)."""
    t_n = x.shape[0]
    k_n = windows.shape[0]
    lam = np.full((t_n, k_n), np.nan)
    same = np.zeros((t_n, k_n), dtype=np.bool_)
    counts = np.zeros((k_n, 3), dtype=np.int64)
    for k in prange(k_n):
        lw, sw, lz, st, fb = _lambda_series(x, has_ret, windows[k], min_assets, var_eps, full_every, tol_rel,
                                            max_steps)
        lam[:, k] = lw
        same[:, k] = sw
        counts[k, 0] = lz
        counts[k, 1] = st
        counts[k, 2] = fb
    return lam, same, counts


@njit(cache=True)
def _corr(s2, s1, q, idx, w):
    n = idx.shape[0]
    inv_w = 1.0 / w
    m = np.empty(n)
    inv_sd = np.empty(n)
    for a in range(n):
        i = idx[a]
        m[a] = s1[i] * inv_w
        inv_sd[a] = 1.0 / math.sqrt(q[i] * inv_w - m[a] * m[a])
    c = np.empty((n, n))
    for a in range(n):
        i = idx[a]
        c[a, a] = 1.0
        for b in range(a + 1, n):
            v = (s2[i, idx[b]] * inv_w - m[a] * m[b]) * inv_sd[a] * inv_sd[b]
            if v > 1.0:
                v = 1.0
            elif v < -1.0:
                v = -1.0
            c[a, b] = v
            c[b, a] = v
    return c


@njit(cache=True)
def _spread(lam, same, scans):
    """Velocity (λ(t) − λ(t−1) on an unchanged set) and the population std of the last ``scans`` λ of one
    unbroken set (the engine's double-double std with zero low parts)."""
    t_n = lam.shape[0]
    vel = np.full(t_n, np.nan)
    inst = np.full(t_n, np.nan)
    run = 0
    for t in range(t_n):
        if np.isnan(lam[t]):
            run = 0
            continue
        if same[t]:
            vel[t] = lam[t] - lam[t - 1]
            run += 1
        else:
            run = 1
        if run >= scans:
            inst[t] = _pop_std(lam[t - scans + 1:t + 1])
    return vel, inst


@njit(cache=True)
def _pop_std(hi):
    n = hi.shape[0]
    acc = 0.0
    for i in range(n):
        acc += hi[i]
    ref = acc / n
    dev = np.empty(n)
    for i in range(n):
        s = hi[i] - ref
        bb = s - hi[i]
        e = (hi[i] - (s - bb)) + (-ref - bb)
        h = s + e
        dev[i] = h + (e - (h - s))
    m = 0.0
    for i in range(n):
        m += dev[i]
    m /= n
    v = 0.0
    for i in range(n):
        v += (dev[i] - m) * (dev[i] - m)
    return math.sqrt(v / n)


def scan_series(prices: np.ndarray, ts_ns: np.ndarray, interval_s: float | None = None, *,
                carry_scans: int = CARRY_SCANS, full_every: int = FULL_EVERY) -> SeriesResult:
    """Scan every row of ``prices`` (T × N, NaN = no price) taken at ``ts_ns`` (int64 ns, increasing) as
    :meth:`EigenEngine.enhance` would in ``float64`` mode with cadence ``interval_s`` (None: no spacing gaps)."""
    prices = np.ascontiguousarray(prices, dtype=np.float64)
    ts = np.ascontiguousarray(ts_ns, dtype=np.int64)
    if prices.ndim != 2 or ts.shape != (prices.shape[0],):
        raise ValueError(f"prices {prices.shape} and timestamps {ts.shape} do not match")
    thr = -1.0 if interval_s is None else max(GAP_FACTOR * round(interval_s * 1e9), MIN_GAP_S * 1e9)
    x, has_ret, hold, gap_at = _prelude(prices, ts, float(thr), int(carry_scans), PARTIAL_FRAC, GAP_HOLD_RETURNS)
    for t in np.flatnonzero(gap_at).tolist():
        step = int(ts[t] - ts[t - 1])
        log.warning("scan input gap: %.1fs since the previous scan (cadence %.1fs); windows refill from here, "
                    "entries held for %d scans", step / 1e9, interval_s, GAP_HOLD_RETURNS)
    t_n = prices.shape[0]
    lam = np.full((t_n, len(WINDOWS)), np.nan)
    vel = np.full_like(lam, np.nan)
    inst = np.full_like(lam, np.nan)
    assert max(WINDOWS) < HISTORY_ROWS
    # longest window first: the threads pick the costliest work first
    order = np.argsort(np.array(WINDOWS))[::-1]
    lam_o, same_o, counts = _all_windows(x, has_ret, np.array(WINDOWS, dtype=np.int64)[order], MIN_ASSETS,
                                         kernels.VAR_EPS, int(full_every), TOL_LAMBDA, MAX_STEPS)
    for j, k in enumerate(order.tolist()):
        lam[:, k] = lam_o[:, j]
        vel[:, k], inst[:, k] = _spread(np.ascontiguousarray(lam_o[:, j]), np.ascontiguousarray(same_o[:, j]),
                                        INSTABILITY_SCANS)
    stats = {"lanczos": int(counts[:, 0].sum()), "steps": int(counts[:, 1].sum()), "eigvalsh": int(counts[:, 2].sum())}
    i50, i750 = WINDOWS.index(50), WINDOWS.index(750)
    vel_div = vel[:, i50] - vel[:, i750]
    return SeriesResult(lam=lam, velocity=vel, instability=inst, vel_div=vel_div, gap_hold=hold, gaps=int(gap_at.sum()),
                        stats=stats)


__all__ = ["SeriesResult", "scan_series"]
