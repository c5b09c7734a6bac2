"""Incremental window state and warm-started eigen-solver of the NG8 scan.

Design notes: ``docs/design/scanner.md``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy.linalg.lapack import dsyevr as _dsyevr

BLOCK = 12           # Ritz vectors carried per window: λ1, λ2 + guards spanning the sector modes below λ2
EXPAND = 2           # residual / previous-direction columns added per iteration (those of λ1 and λ2)
TOL_VEC = 2e-11      # residual of v1 relative to the λ1−λ2 gap (bounds the loadings' error)
TOL_VAL = 1e-12      # error bound of λ2's Ritz value relative to N (λ2/N to 1e-12)
MAXIT = 12           # iterations for the top pair before a full eigh
MAXIT_LAM2 = 3       # iterations after which a still-clustered λ2 is taken from eigvalsh instead


@njit(cache=True)
def update_moments(s1, q, bad, s2, x, old, has_old, use_s2):
    """Add the return column ``x`` to a window's moments and drop ``old`` if ``has_old``.

    Non-finite entries count in ``bad`` and enter the sums as 0, so they cancel exactly when
    they leave. ``s2`` (N×N, both triangles) is updated only when ``use_s2``.
    """
    n = x.shape[0]
    xa = np.empty(n)
    oa = np.zeros(n)
    for i in range(n):
        v = x[i]
        if np.isfinite(v):
            xa[i] = v
        else:
            xa[i] = 0.0
            bad[i] += 1
        if has_old:
            o = old[i]
            if np.isfinite(o):
                oa[i] = o
            else:
                bad[i] -= 1
        s1[i] += xa[i] - oa[i]
        q[i] += xa[i] * xa[i] - oa[i] * oa[i]
    if use_s2:
        for i in range(n):
            a = xa[i]
            b = oa[i]
            if a == 0.0 and b == 0.0:
                continue
            for j in range(n):
                s2[i, j] += a * xa[j] - b * oa[j]


@njit(cache=True)
def _moments_from_scratch(x):
    n, w = x.shape
    s1 = np.zeros(n)
    q = np.zeros(n)
    bad = np.zeros(n, dtype=np.int64)
    xa = np.empty((n, w))
    for i in range(n):
        for t in range(w):
            v = x[i, t]
            if np.isfinite(v):
                xa[i, t] = v
            else:
                xa[i, t] = 0.0
                bad[i] += 1
            s1[i] += xa[i, t]
            q[i] += xa[i, t] * xa[i, t]
    return s1, q, bad, xa


def moments_from_scratch(x: np.ndarray, use_s2: bool):
    """Return (s1, q, bad, s2) of the return block ``x`` (N×W) computed afresh (drift reset)."""
    s1, q, bad, xa = _moments_from_scratch(x)
    return s1, q, bad, (xa @ xa.T if use_s2 else np.zeros((1, 1)))


@njit(cache=True)
def corr_from_moments(s2, s1, q, idx, w):
    """Pearson correlation matrix of the assets ``idx`` from a window's moments (diag exactly 1).

    Row by row (contiguous, vectorised when every asset is included); entry (a, b) and (b, a) are the same
    products in the same order, so C is symmetric wherever S2 is."""
    n = idx.shape[0]
    inv_w = 1.0 / w
    m = np.empty(n)
    inv_sd = np.empty(n)
    for a in range(n):
        i = idx[a]
        m[a] = s1[i] * inv_w
        inv_sd[a] = 1.0 / math.sqrt(q[i] * inv_w - m[a] * m[a])
    c = np.empty((n, n))
    full = n == s2.shape[0]          # idx is 0..n-1
    for a in range(n):
        i = idx[a]
        ma = m[a]
        sa = inv_sd[a]
        ca = c[a]
        if full:
            row = s2[i]
            for b in range(n):
                ca[b] = min(max((row[b] * inv_w - ma * m[b]) * (sa * inv_sd[b]), -1.0), 1.0)
        else:
            for b in range(n):
                ca[b] = min(max((s2[i, idx[b]] * inv_w - ma * m[b]) * (sa * inv_sd[b]), -1.0), 1.0)
        ca[a] = 1.0
    return c


@njit(cache=True)
def valid_assets(q, s1, bad, w, var_eps):
    """Indices of the assets with W finite, non-constant returns (the inclusion rule)."""
    n = q.shape[0]
    out = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(n):
        m = s1[i] / w
        ref = q[i] / w
        var = ref - m * m
        if bad[i] == 0 and var > var_eps * ref and var > 0.0:
            out[k] = i
            k += 1
    return out[:k].copy()


def standardised(x: np.ndarray, s1: np.ndarray, q: np.ndarray, w: int) -> np.ndarray:
    """Z = (x − m)/sd for the rows of ``x`` (included assets × W) with the window's moments."""
    m = s1 / w
    sd = np.sqrt(q / w - m * m)
    return (x - m[:, None]) / sd[:, None]


@njit(cache=True)
def standardised_rows(x, rows, c0, w, s1, q):
    """:func:`standardised` of ``x[rows, c0:c0 + W]`` in one pass (no gathered copy, no temporaries);
    the same operations per element, so the same values."""
    n = rows.shape[0]
    z = np.empty((n, w))
    for a in range(n):
        r = rows[a]
        m = s1[r] / w
        sd = math.sqrt(q[r] / w - m * m)
        for t in range(w):
            z[a, t] = (x[r, c0 + t] - m) / sd
    return z


def lambda2(c: np.ndarray | None, z: np.ndarray) -> float:
    """λ2 of C alone by ``eigvalsh``: of the W×W dual ZᵀZ/W when W < N, else of C (the clustered-λ2 path)."""
    n, w = z.shape
    if w < n or c is None:
        return float(np.linalg.eigvalsh((z.T @ z) / w)[-2])
    return float(np.linalg.eigvalsh(c)[-2])


def full_top(c: np.ndarray | None, z: np.ndarray | None, k: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` eigenpairs (descending) by LAPACK ``eigh``: of C, or of the dual ZᵀZ/W when given Z."""
    if c is not None:
        ev, vec = np.linalg.eigh(c)
        return ev[::-1][:k].copy(), np.ascontiguousarray(vec[:, ::-1][:, :k])
    w = z.shape[1]
    ev, u = np.linalg.eigh((z.T @ z) / w)
    ev, u = ev[::-1][:k], u[:, ::-1][:, :k]
    v = z @ u
    v /= np.linalg.norm(v, axis=0, keepdims=True)
    return ev.copy(), np.ascontiguousarray(v)


def _rr(basis: np.ndarray, abasis: np.ndarray, k: int):
    t = basis.T @ abasis
    t = 0.5 * (t + t.T)
    ev, y = np.linalg.eigh(t)
    y = y[:, ::-1][:, :k]
    return ev[::-1][:k], y


def warm_top(apply, v0: np.ndarray, *, scale: float = 1.0, tol_vec: float = TOL_VEC,
             tol_val: float = TOL_VAL, maxit: int = MAXIT, maxit_lam2: int = MAXIT_LAM2, expand: int = EXPAND):
    """Top eigenpairs of the symmetric operator ``apply`` from the orthonormal start block ``v0``.

    Returns (eigenvalues descending, vectors, residual norms, iterations, lam2_ok) or None when
    the top pair has not converged after ``maxit`` iterations (the caller falls back to
    :func:`full_top`). Convergence: ‖r1‖ ≤ tol_vec·(θ1−θ2) (so v1's angle error ≤ tol_vec) and
    λ2's Ritz value within ``tol_val·scale`` by the Kato–Temple estimate ‖r2‖²/(θ2−θ3) or the
    Weinstein bound ‖r2‖. When λ2 sits in a cluster (the top of a noise bulk) its Ritz value
    converges slowly: once v1 has converged and ``maxit_lam2`` iterations are spent, the result comes
    back with lam2_ok False and the caller takes λ2 from ``eigvalsh`` (:func:`lambda2`).
    """
    k = v0.shape[1]
    av = apply(v0)
    th, y = _rr(v0, av, k)
    v, av = v0 @ y, av @ y
    p = None
    for it in range(maxit + 1):
        r = av - v * th
        rn = np.sqrt((r * r).sum(axis=0))
        gap12 = th[0] - th[1]
        gap23 = max(th[1] - th[2], 1e-300)
        ok1 = gap12 > 0 and rn[0] <= tol_vec * gap12
        ok2 = rn[1] * rn[1] / gap23 <= tol_val * scale or rn[1] <= tol_val * scale
        if ok1 and ok2:
            return th, v, rn, it, True
        if ok1 and it >= maxit_lam2:
            return th, v, rn, it, False
        if it == maxit:
            return None
        # residuals of the two wanted pairs only (the guard vectors ride along in the Rayleigh–Ritz)
        blk = r[:, :expand] if p is None else np.hstack((r[:, :expand], p[:, :expand]))
        blk = blk - v @ (v.T @ blk)
        blk = blk - v @ (v.T @ blk)
        qm, rr = np.linalg.qr(blk)
        d = np.abs(np.diag(rr))
        keep = d > 1e-13 * max(d.max(), 1e-300)
        if not keep.any():
            return None
        qm = qm[:, keep]
        aq = apply(qm)
        basis = np.hstack((v, qm))
        abasis = np.hstack((av, aq))
        th, y = _rr(basis, abasis, k)
        p = qm @ y[k:]
        v, av = basis @ y, abasis @ y
    return None


SHIFT = 1e-10        # inverse-iteration shift above LAPACK's eigenvalue, relative to λ1 (well above its error)
INV_STEPS = 3        # inverse-iteration steps at most before a full eigh


def top2_lapack(a: np.ndarray) -> tuple[float, float, np.ndarray] | None:
    """λ1, λ2 and their eigenvectors (columns, descending) of the symmetric ``a`` by LAPACK ``dsyevr``
    (MRRR) on the top two indices only: one tridiagonalisation, no other eigenpair."""
    n = a.shape[0]
    w, z, m, _, info = _dsyevr(a, compute_v=1, range="I", il=n - 1, iu=n)
    if info != 0 or m != 2:
        return None
    return float(w[1]), float(w[0]), z[:, ::-1]


def direct_top2(c: np.ndarray | None, z: np.ndarray | None, v0: np.ndarray | None, need_v2: bool,
                tol_vec: float = TOL_VEC, ill_gap: float = 1e-6):
    """λ1, λ2 and their eigenvectors by LAPACK ``dsyevr`` on the top two indices (:func:`top2_lapack`).

    Works on C (N×N) or, given Z (N×W) with W < N, on the dual ZᵀZ/W (its vectors mapped back by Z).
    ``v0``, ``need_v2`` and ``tol_vec`` are kept for the callers (the top two pairs come together).
    Returns (eigenvalues descending [λ1, λ2], vectors N×2) or None (ill-separated λ1, or LAPACK
    failed: the caller runs :func:`full_top`).
    """
    dual = z is not None and (c is None or z.shape[1] < z.shape[0])
    if dual:
        w = z.shape[1]
        a = (z.T @ z) / w
    else:
        a = c
    got = top2_lapack(a)
    if got is None:
        return None
    l1, l2, u = got
    if not (l1 - l2 > ill_gap * l1):
        return None
    if dual:
        v = z @ u
        v /= np.linalg.norm(v, axis=0, keepdims=True)
    else:
        v = u
    return np.array([l1, l2]), np.ascontiguousarray(v)


@njit(cache=True)
def _inverse_batch(cs, sigma, v0, tol, against, steps):
    """:func:`_inverse_vector` for a stack of matrices in compiled code: one LU factorisation (partial
    pivoting) of C − σI per matrix, reused for up to ``steps`` solves; ``against`` (b × N, or 0 rows)
    is projected out after each solve.  Returns (vectors b × N, converged per matrix)."""
    b, n, _ = cs.shape
    out = np.zeros((b, n))
    done = np.zeros(b, dtype=np.bool_)
    lu = np.empty((n, n))
    piv = np.empty(n, dtype=np.int64)
    v = np.empty(n)
    av = np.empty(n)
    for q in range(b):
        for i in range(n):
            for j in range(n):
                lu[i, j] = cs[q, i, j]
            lu[i, i] -= sigma[q]
        singular = False
        for col in range(n):
            p = col
            big = abs(lu[col, col])
            for i in range(col + 1, n):
                if abs(lu[i, col]) > big:
                    big = abs(lu[i, col])
                    p = i
            piv[col] = p
            if big == 0.0:
                singular = True
                break
            if p != col:
                for j in range(n):
                    t = lu[col, j]
                    lu[col, j] = lu[p, j]
                    lu[p, j] = t
            inv = 1.0 / lu[col, col]
            for i in range(col + 1, n):
                f = lu[i, col] * inv
                lu[i, col] = f
                if f != 0.0:
                    for j in range(col + 1, n):
                        lu[i, j] -= f * lu[col, j]
        if singular:
            continue
        for i in range(n):
            v[i] = v0[q, i]
        for _ in range(steps):
            for i in range(n):                       # apply the row swaps, then L, then U
                p = piv[i]
                if p != i:
                    t = v[i]
                    v[i] = v[p]
                    v[p] = t
            for i in range(n):
                acc = v[i]
                for j in range(i):
                    acc -= lu[i, j] * v[j]
                v[i] = acc
            for i in range(n - 1, -1, -1):
                acc = v[i]
                for j in range(i + 1, n):
                    acc -= lu[i, j] * v[j]
                v[i] = acc / lu[i, i]
            if against.shape[0] > 0:
                d = 0.0
                for i in range(n):
                    d += against[q, i] * v[i]
                for i in range(n):
                    v[i] -= d * against[q, i]
            nv = 0.0
            for i in range(n):
                nv += v[i] * v[i]
            nv = math.sqrt(nv)
            if not (nv > 0.0 and nv < np.inf):
                break
            for i in range(n):
                v[i] /= nv
            th = 0.0
            for i in range(n):
                acc = 0.0
                for j in range(n):
                    acc += cs[q, i, j] * v[j]
                av[i] = acc
                th += v[i] * acc
            rn = 0.0
            for i in range(n):
                r = av[i] - th * v[i]
                rn += r * r
            if math.sqrt(rn) <= tol[q]:
                for i in range(n):
                    out[q, i] = v[i]
                done[q] = True
                break
    return out, done


def direct_top2_batch(cs: np.ndarray, v0s: np.ndarray, need_v2: bool, tol_vec: float = TOL_VEC,
                      ill_gap: float = 1e-6) -> list:
    """:func:`direct_top2` on a stack of C matrices (b × N × N) in one LAPACK call each for the eigenvalues
    and the inverse-iteration solves: the small-universe path, where per-call overhead dominates.

    ``v0s`` (b × N × ≥2) seeds the iteration. Returns, per matrix, (eigenvalues [λ1, λ2], vectors N×2) or
    None where that matrix needs the single path (ill-separated λ1, or no convergence).
    """
    b = cs.shape[0]
    ev = np.linalg.eigvalsh(cs)
    l1, l2 = ev[:, -1], ev[:, -2]
    ok = l1 - l2 > ill_gap * l1
    cs = np.ascontiguousarray(cs)
    u1, d1 = _inverse_batch(cs, l1 + SHIFT * l1, np.ascontiguousarray(v0s[:, :, 0]), tol_vec * np.abs(l1 - l2),
                            np.zeros((0, cs.shape[1])), INV_STEPS)
    ok &= d1
    u2 = u1
    if need_v2:
        s2 = v0s[:, :, 1] - u1 * np.einsum("bi,bi->b", u1, v0s[:, :, 1])[:, None]
        u2, d2 = _inverse_batch(cs, l2 + SHIFT * l1, np.ascontiguousarray(s2), tol_vec * l1, u1, INV_STEPS)
        ok &= d2
    return [(np.array([l1[i], l2[i]]), np.ascontiguousarray(np.column_stack((u1[i], u2[i])))) if ok[i] else None
            for i in range(b)]
