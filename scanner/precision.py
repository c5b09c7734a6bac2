"""512-bit refinement of the scanner's eigenvalues with python-flint (bible §25), float64 as guard.

The float64 path (numba correlation + LAPACK ``eigh``) gives each window's top two eigenvectors.
This module recomputes the two eigenvalues at 512 bits as Rayleigh quotients of those vectors on the
correlation matrix of the same returns, without ever forming the matrix:

    C = S⁻¹ (RᵀR/W − m mᵀ) S⁻¹   ⇒   vᵀCv = var(R u),  u = S⁻¹ v

so the 512-bit work is two matrix–vector products per eigenvalue plus O(N) scalar operations. The
inputs (float64 log returns) are exact in ``arb``; squares enter exactly through a Veltkamp split, so
column sums, variances and the quotient carry 512-bit error only. A Rayleigh quotient's error is
quadratic in the eigenvector's error, so a float64 eigenvector (error ~1e-16) yields λ to ~1e-30.

Fallback: when python-flint is missing or a result is not a finite, tight ball (radius > 1e-40),
:func:`refine_windows` leaves the window out and the caller keeps the float64 value (logged once by the caller).
"""
from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

PREC_BITS = 512
MAX_RADIUS = 1e-40

try:  # guarded import: the float64 path works without flint
    from flint import arb, arb_mat, ctx

    ctx.prec = PREC_BITS
    HAVE_FLINT = True
except ImportError:  # pragma: no cover - flint is a declared dependency
    arb = arb_mat = ctx = None  # type: ignore[assignment]
    HAVE_FLINT = False

_SPLITTER = 134217729.0  # 2**27 + 1 (Veltkamp)


def exact_square_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (hi, lo) float64 arrays with ``hi + lo == x*x`` exactly (Dekker product).

    Exact for ``x == 0`` and ``1e-140 < |x| < 1e150`` (no underflow of ``lo``), which holds for log
    returns of positive float64 prices.
    """
    hi = x * x
    c = _SPLITTER * x
    xh = c - (c - x)
    xl = x - xh
    lo = ((xh * xh - hi) + 2.0 * xh * xl) + xl * xl
    return hi, lo


def _check(v) -> bool:
    try:
        return v.is_finite() and float(v.rad()) <= MAX_RADIUS
    except Exception:  # noqa: BLE001
        return False


def refine_windows(rt: np.ndarray, jobs: Sequence[tuple[int, np.ndarray, np.ndarray]]) -> dict:
    """Return {W: (λ1/N, λ2/N) as ``arb``} for each job; a window is absent where refinement failed.

    Parameters
    ----------
    rt : float64 array (N, T)
        Log returns of all assets, newest last (NaN outside an asset's valid windows is allowed).
    jobs : sequence of (W, idx, vecs)
        Window length, indices of the included assets, float64 eigenvectors (n_included, 2) with the
        top eigenvector first.

    All windows share one 512-bit copy of the longest window's returns: column sums, exact sums of
    squares and the products ``R u`` come from a few C-level matrix products per scan.
    """
    out: dict = {}
    if not HAVE_FLINT or not jobs:
        return out
    try:
        ctx.prec = PREC_BITS
        n_all = rt.shape[0]
        t_max = max(w for w, _, _ in jobs)
        r = np.nan_to_num(np.ascontiguousarray(rt[:, -t_max:].T), nan=0.0, posinf=0.0, neginf=0.0)
        hi, lo = exact_square_parts(r)
        # nested windows -> disjoint row blocks, newest first: block k = rows of window k not in k-1
        ws = sorted({w for w, _, _ in jobs})
        bounds = [(t_max - w, t_max - (ws[k - 1] if k else 0)) for k, w in enumerate(ws)]
        blocks = [arb_mat(r[a:b].tolist()) for a, b in bounds]
        ones = [arb_mat([[1.0] * (b - a)]) for a, b in bounds]
        csum, csq = {}, {}
        acc_s = acc_q = None
        for k, (a, b) in enumerate(bounds):
            s_b = ones[k] * blocks[k]
            q_b = ones[k] * arb_mat(hi[a:b].tolist()) + ones[k] * arb_mat(lo[a:b].tolist())
            acc_s = s_b if acc_s is None else acc_s + s_b
            acc_q = q_b if acc_q is None else acc_q + q_b
            csum[ws[k]], csq[ws[k]] = acc_s, acc_q
        cols: list[list] = []   # columns of U: S⁻¹v per (window, eigenvector), zero for excluded assets
        meta: list[tuple] = []
        zero = arb(0)
        for w, idx, vecs in jobs:
            aw = arb(w)
            inv_sd = []
            for i in idx:
                i = int(i)
                m = csum[w][0, i] / aw
                var = csq[w][0, i] / aw - m * m
                if not var > 0:
                    break
                inv_sd.append(1 / var.sqrt())
            if len(inv_sd) != len(idx):
                continue
            for e in range(vecs.shape[1]):
                col = [zero] * n_all
                den = arb(0)
                for j, i in enumerate(idx):
                    vj = arb(float(vecs[j, e]))
                    col[int(i)] = inv_sd[j] * vj
                    den += vj * vj
                cols.append(col)
                meta.append((w, den, len(idx)))
        if not cols:
            return out
        u = arb_mat([list(row) for row in zip(*cols)])   # n_all × n_cols
        ysum, ysq = {}, {}
        acc_s = acc_q = None
        for k in range(len(bounds)):
            y = blocks[k] * u                   # block rows × n_cols
            s_b = ones[k] * y
            q_b = y.transpose() * y             # diagonal = sums of squares per column
            acc_s = s_b if acc_s is None else acc_s + s_b
            acc_q = q_b if acc_q is None else acc_q + q_b
            ysum[ws[k]], ysq[ws[k]] = acc_s, acc_q
        lams: dict[int, list] = {}
        for c, (w, den, n) in enumerate(meta):
            aw = arb(w)
            lam = (ysq[w][c, c] / aw - (ysum[w][0, c] / aw) ** 2) / den / arb(n)
            lams.setdefault(w, []).append(lam if _check(lam) else None)
        for w, v in lams.items():
            if len(v) == 2 and v[0] is not None and v[1] is not None:
                out[w] = (v[0], v[1])
        return out
    except Exception as exc:  # noqa: BLE001 - any flint failure means: use the float64 guard
        log.warning("512-bit refinement failed (%s); using float64", exc)
        return {}


def arb_population_std(values: Sequence) -> "arb | None":
    """Population std of ``values`` (arb or float) at 512 bits; None if flint is unavailable."""
    if not HAVE_FLINT:
        return None
    xs = [v if isinstance(v, arb) else arb(float(v)) for v in values]
    n = arb(len(xs))
    m = sum(xs, arb(0)) / n
    acc = sum(((x - m) ** 2 for x in xs), arb(0)) / n
    if acc == 0:
        return arb(0)
    return acc.sqrt()


def to_float(v) -> float:
    """Return the float64 nearest to the midpoint of an ``arb`` (or ``v`` itself if a float)."""
    if isinstance(v, float):
        return v
    return float(v.mid())


def is_arb(v) -> bool:
    return HAVE_FLINT and isinstance(v, arb)


def finite(v) -> bool:
    return math.isfinite(to_float(v))
