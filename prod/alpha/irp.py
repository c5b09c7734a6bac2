"""Asset selection by Impulse Response Profiling (bible §5): numba kernels and the gate wrapper.

Decision (bible ambiguity): the bible's pseudo-code differences raw prices, but its constants
(efficiency epsilon 1e-6, `noise * 1000` in ARS) only make sense at return scale and raw price
differences would rank assets by their price level.  We use relative returns
r[i] = (p[i+1] - p[i]) / p[i] * direction, which keeps every gate and weight as written.

Kernels work on a 2-D window `prices[t, asset]` (rows = time, oldest first, right-aligned), which
the engine slices from its ring buffer without copying.  Any asset whose window holds a non-finite
or non-positive price is not ranked.
"""
from __future__ import annotations

import math

import numpy as np
from prod.alpha.jit import njit


@njit(cache=True)
def compute_irp(prices, direction):
    """Return (efficiency, alignment, noise, latency, mfe, mae) of one price segment (§5.2).

    Allocation-free (two passes: statistics, then latency), since it runs twice per asset per
    ranking.
    """
    n = prices.shape[0]
    n_ret = n - 1
    cum = 0.0
    mfe = 0.0
    mn = 0.0
    pos = 0
    s = 0.0
    s2 = 0.0
    for i in range(n_ret):
        r = (prices[i + 1] - prices[i]) / prices[i] * direction
        cum += r
        if cum > mfe:
            mfe = cum
        if cum < mn:
            mn = cum
        if r > 0.0:
            pos += 1
        s += r
        s2 += r * r
    mae = -mn if mn < 0.0 else 0.0
    efficiency = mfe / (mae + 1e-6)
    alignment = pos / n_ret
    mean = s / n_ret
    noise = s2 / n_ret - mean * mean
    if noise < 0.0:
        noise = 0.0
    latency = n
    if mfe > 0.0:
        target = 0.1 * mfe
        cum = 0.0
        for i in range(n_ret):
            cum += (prices[i + 1] - prices[i]) / prices[i] * direction
            if cum >= target:
                latency = i + 1
                break
    return efficiency, alignment, noise, latency, mfe, mae


@njit(cache=True)
def compute_ars(efficiency, alignment, noise):
    """Return the Asset Ranking Score 0.5*log1p(eff) + 0.35*alignment - 0.15*noise*1000 (§5.3)."""
    return 0.5 * math.log1p(efficiency) + 0.35 * alignment - 0.15 * noise * 1000.0


@njit(cache=True)
def rank_assets_irp(window, regime_direction, noise_max, latency_max, alignment_min, ars_adj):
    """Rank assets of `window[t, asset]` by ARS, best first (§5.4).

    Each asset is profiled in the regime direction and in the inverse one; the better ARS wins
    and its direction is the asset's action.  Assets failing noise/latency/alignment gates or
    holding a bad price are dropped.  `ars_adj[a]` is the OB sub-1 relative adjustment
    (0 = none) applied as ars + |ars| * adj before sorting.

    Returns (order, ars, alignment, action, n_valid); only order[:n_valid] is meaningful.
    """
    n_t = window.shape[0]
    n_a = window.shape[1]
    n_ret = n_t - 1
    ars = np.full(n_a, -np.inf)
    align = np.zeros(n_a)
    action = np.zeros(n_a, dtype=np.int64)
    order = np.empty(n_a, dtype=np.int64)
    n_valid = 0
    rets = np.empty(n_ret)
    for a in range(n_a):
        ok = True
        for t in range(n_t):
            p = window[t, a]
            if not (p > 0.0 and p < np.inf):
                ok = False
                break
        if not ok:
            continue
        # one pass gives the statistics of both directions (the inverse mirrors the direct one)
        cum = 0.0
        hi = 0.0
        lo = 0.0
        n_up = 0
        n_dn = 0
        s = 0.0
        s2 = 0.0
        for i in range(n_ret):
            r = (window[i + 1, a] - window[i, a]) / window[i, a] * regime_direction
            rets[i] = r
            cum += r
            hi = max(hi, cum)          # branch-free: fresh data defeats the branch predictor
            lo = min(lo, cum)
            n_up += r > 0.0
            n_dn += r < 0.0
            s += r
            s2 += r * r
        mean = s / n_ret
        noise = s2 / n_ret - mean * mean
        if noise < 0.0:
            noise = 0.0
        best_ars = -np.inf
        best_al = 0.0
        best_dir = 0
        for k in range(2):
            sign = 1.0 if k == 0 else -1.0
            mfe = hi if k == 0 else -lo
            mae = -lo if k == 0 else hi
            al = (n_up if k == 0 else n_dn) / n_ret
            if noise > noise_max or al < alignment_min:
                continue
            sc = compute_ars(mfe / (mae + 1e-6), al, noise)
            if not sc > best_ars:
                continue
            # latency gate last: only for a direction that would win
            lat = n_t
            if mfe > 0.0:
                target = 0.1 * mfe
                c = 0.0
                for i in range(n_ret):
                    c += sign * rets[i]
                    if c >= target:
                        lat = i + 1
                        break
            if lat > latency_max:
                continue
            best_ars = sc
            best_al = al
            best_dir = regime_direction if k == 0 else -regime_direction
        if best_dir == 0:
            continue
        adj = ars_adj[a]
        if adj != 0.0:
            best_ars = best_ars + abs(best_ars) * adj
        ars[a] = best_ars
        align[a] = best_al
        action[a] = best_dir
        # stable insertion by descending ARS
        j = n_valid
        while j > 0 and ars[order[j - 1]] < best_ars:
            order[j] = order[j - 1]
            j -= 1
        order[j] = a
        n_valid += 1
    return order, ars, align, action, n_valid


@njit(cache=True)
def select_asset(window, regime_direction, noise_max, latency_max, alignment_min, ars_adj,
                 min_alignment, depth_ok):
    """Return the index of the best asset passing every wrapper gate, or -1 (§5.5).

    Gates in order: alignment >= min_alignment (when > 0), action == regime direction,
    depth_ok[a] (OB depth quality >= 0.20, all True without an OB provider).  No fallback.
    """
    order, ars, align, action, n_valid = rank_assets_irp(
        window, regime_direction, noise_max, latency_max, alignment_min, ars_adj)
    for i in range(n_valid):
        a = order[i]
        if min_alignment > 0.0 and align[a] < min_alignment:
            continue
        if action[a] != regime_direction:
            continue
        if not depth_ok[a]:
            continue
        return a
    return -1


def ob_depth_adjustment(depth_quality: float) -> float:
    """Return the OB sub-1 relative ARS adjustment for a depth quality (§5.5, §9.4).

    Decision (bible gives only "±5%/10%"): >= 1.5 → +10%, >= 1.0 → +5%, < 0.3 → -10%,
    < 0.6 → -5%, else 0.  Non-finite → 0.
    """
    if not math.isfinite(depth_quality):
        return 0.0
    if depth_quality >= 1.5:
        return 0.10
    if depth_quality >= 1.0:
        return 0.05
    if depth_quality < 0.3:
        return -0.10
    if depth_quality < 0.6:
        return -0.05
    return 0.0
