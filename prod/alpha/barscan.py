"""Compiled scans over a block of bars that find where NDAlphaEngine has something to decide.

Design notes: ``docs/design/prod.alpha.md``.
"""
from __future__ import annotations

import math

import numpy as np
from prod.alpha.jit import njit

_SLACK = 1e-12      # exit thresholds are approached from the safe side: an almost-exit goes to step_bar


@njit(cache=True)
def scan_flat(i0, vd, v50, v750, prices, vol_ok, hold, thr, short, can_enter, acc):
    """Scan flat bars from ``i0``; stop at the first one the entry gates could pass.

    Returns (event index or n, accepted count, held, bad_vel_div, bad_velocity, no_valid_prices):
    ``held`` bars (``hold`` set) are not given to the engine at all, as the replay's post-gap rule says.
    """
    n = vd.shape[0]
    na = prices.shape[1]
    k_acc = 0
    held = 0
    bad_vd = 0
    bad_vel = 0
    no_prices = 0
    for k in range(i0, n):
        if hold[k]:
            held += 1
            continue
        v = vd[k]
        if not math.isfinite(v):
            bad_vd += 1
            continue
        if not (math.isfinite(v50[k]) and math.isfinite(v750[k])):
            bad_vel += 1
            continue
        x = v if short else -v
        if can_enter and vol_ok[k] and x < thr:
            return k, k_acc, held, bad_vd, bad_vel, no_prices
        any_ok = False
        for a in range(na):
            p = prices[k, a]
            if p > 0.0 and p < np.inf:
                any_ok = True
                break
        if not any_ok:
            no_prices += 1
            continue
        acc[k_acc] = k
        k_acc += 1
    return n, k_acc, held, bad_vd, bad_vel, no_prices


@njit(cache=True)
def scan_position(i0, vd, v50, v750, prices, ai, pdir, entry, tp, sl, max_hold, bars_held, vd_on, vd_thr,
                  vd_bars, run, same_dir, short, acc):
    """Scan bars with an open position on asset ``ai`` from ``i0``; stop at the first bar an exit could
    fire on, or that is bad (``step_bar`` then decides).

    Returns (event index or n, accepted count, bars_held, vd_adverse_run) after the accepted bars.
    """
    n = vd.shape[0]
    k_acc = 0
    for k in range(i0, n):
        v = vd[k]
        if not (math.isfinite(v) and math.isfinite(v50[k]) and math.isfinite(v750[k])):
            return k, k_acc, bars_held, run
        p = prices[k, ai]
        if not (p > 0.0 and p < np.inf):
            return k, k_acc, bars_held, run
        bh = bars_held + 1
        r2 = run
        if vd_on:
            x = v if short else -v
            xs = x if same_dir else -x
            r2 = run + 1 if xs > vd_thr else 0
            if r2 >= vd_bars:
                return k, k_acc, bars_held, run
        pnl = pdir * (p - entry) / entry
        if pnl >= tp - _SLACK or pnl <= -sl + _SLACK or bh >= max_hold:
            return k, k_acc, bars_held, run
        bars_held = bh
        run = r2
        acc[k_acc] = k
        k_acc += 1
    return n, k_acc, bars_held, run


@njit(cache=True)
def push_rows(buf, pos, L, prices, acc, lo, hi):
    """Push the price rows ``acc[lo:hi]`` into the engine's doubled ring buffer (bad prices as NaN);
    return the new write position.  Same writes as ``step_bar``'s push, row by row."""
    na = prices.shape[1]
    for q in range(lo, hi):
        k = acc[q]
        pos += 1
        if pos == L:
            pos = 0
        for a in range(na):
            p = prices[k, a]
            if not (p > 0.0 and p < np.inf):
                p = np.nan
            buf[pos, a] = p
            buf[pos + L, a] = p
    return pos
