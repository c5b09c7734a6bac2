"""Precision of the scan's eigenvalues: a double-double Rayleigh quotient (fast path) and a
certified ``arb`` enclosure of λ1, λ2 and the eigengap from the known eigenvectors (bible §25).

Design notes: ``docs/design/scanner.md``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numba import njit

log = logging.getLogger(__name__)

PREC_BITS = 512
WIDE = 1e-6          # relative enclosure width above which a window's certificate is logged (< 6 digits)
_U = 2.0 ** -53

try:  # guarded import: the float64 and double-double paths work without flint
    from flint import arb, ctx

    ctx.prec = PREC_BITS
    HAVE_FLINT = True
except ImportError:  # pragma: no cover - flint is a declared dependency
    arb = ctx = None  # type: ignore[assignment]
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


# ── double-double primitives (numba) ────────────────────────────────────────────────────────
@njit(cache=True, inline="always")
def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@njit(cache=True, inline="always")
def _split(a):
    c = 134217729.0 * a
    h = c - (c - a)
    return h, a - h


@njit(cache=True, inline="always")
def _two_prod(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@njit(cache=True, inline="always")
def _dd_add(ah, al, bh, bl):
    s, e = _two_sum(ah, bh)
    e += al + bl
    return _two_sum(s, e)


@njit(cache=True, inline="always")
def _dd_mul(ah, al, bh, bl):
    p, e = _two_prod(ah, bh)
    e += ah * bl + al * bh
    return _two_sum(p, e)


@njit(cache=True, inline="always")
def _dd_div(ah, al, bh, bl):
    q1 = ah / bh
    ph, pl = _dd_mul(q1, 0.0, bh, bl)
    rh, rl = _dd_add(ah, al, -ph, -pl)
    q2 = rh / bh
    ph, pl = _dd_mul(q2, 0.0, bh, bl)
    rh, rl = _dd_add(rh, rl, -ph, -pl)
    q3 = rh / bh
    h, l = _two_sum(q1, q2)
    return _dd_add(h, l, q3, 0.0)


@njit(cache=True, inline="always")
def _dd_sqrt(ah, al):
    if ah <= 0.0:
        return 0.0, 0.0
    x = math.sqrt(ah)
    ph, pl = _two_prod(x, x)
    rh, rl = _dd_add(ah, al, -ph, -pl)
    return _two_sum(x, rh / (2.0 * x))


@njit(cache=True)
def rayleigh_dd(xt, v):
    """Double-double Rayleigh quotients of the columns of ``v`` on corr(x), plus residual data.

    Parameters
    ----------
    xt : float64 (W, n) — the included assets' returns of the window, time-major (all finite).
    v : float64 (n, k) — test vectors (the certificate uses k = 2).

    Returns
    -------
    gram : float64 (k, k, 2) — (VᵀCV)_ab as double-double (hi, lo) pairs.
    vtv : float64 (k, k, 2) — (VᵀV)_ab as double-double.
    res : float64 (k,) — ‖Cv_a − θ_a v_a‖₂ computed in float64.
    bound : float64 (k,) — rigorous bound on ‖(computed − exact) residual‖₂ (rounding only).
    dd_rad : float64 (k,) — bound on the double-double error of θ_a (relative, conservative).
    """
    w, n = xt.shape
    k = v.shape[1]
    inv_w = 1.0 / w
    # Σx and Σx² per asset in double-double (x² exact by TwoProd), one pass, vectorisable over i
    sh = np.zeros(n)
    sl = np.zeros(n)
    qh = np.zeros(n)
    ql = np.zeros(n)
    for t in range(w):
        for i in range(n):
            x = xt[t, i]
            a, e = _two_sum(sh[i], x)
            sh[i] = a
            sl[i] += e
            p, pe = _two_prod(x, x)
            a, e = _two_sum(qh[i], p)
            qh[i] = a
            ql[i] += e + pe
    mh = np.empty(n)
    ml = np.empty(n)
    sdh = np.empty(n)
    sdl = np.empty(n)
    fw = float(w)
    for i in range(n):
        mh[i], ml[i] = _dd_div(sh[i], sl[i], fw, 0.0)
        eh, el = _dd_div(qh[i], ql[i], fw, 0.0)                 # E[x²]
        m2h, m2l = _dd_mul(mh[i], ml[i], mh[i], ml[i])
        vh, vl = _dd_add(eh, el, -m2h, -m2l)                     # var = E[x²] − m²
        sdh[i], sdl[i] = _dd_sqrt(vh, vl)
    uh = np.empty((k, n))
    ul = np.empty((k, n))
    for a in range(k):
        for i in range(n):
            uh[a, i], ul[a, i] = _dd_div(v[i, a], 0.0, sdh[i], sdl[i])
    # y_t = Σ_i (x_it − m_i) u_i in double-double; absy_t = Σ_i |c_it u_i| for the bounds
    y = np.zeros((k, w, 2))
    absy = np.zeros((k, w))
    for t in range(w):
        for a in range(k):
            yh, yl, ya = 0.0, 0.0, 0.0
            for i in range(n):
                ch, cl = _two_sum(xt[t, i], -mh[i])
                cl -= ml[i]
                p, pe = _two_prod(ch, uh[a, i])
                pe += ch * ul[a, i] + cl * uh[a, i]
                yh, e = _two_sum(yh, p)
                yl += e + pe
                ya += abs(p)
            y[a, t, 0], y[a, t, 1] = _two_sum(yh, yl)
            absy[a, t] = ya
    gram = np.zeros((k, k, 2))
    vtv = np.zeros((k, k, 2))
    for a in range(k):
        for b in range(a, k):
            gh, gl = 0.0, 0.0
            for t in range(w):
                ph, pl = _dd_mul(y[a, t, 0], y[a, t, 1], y[b, t, 0], y[b, t, 1])
                gh, gl = _dd_add(gh, gl, ph, pl)
            gh, gl = _dd_div(gh, gl, fw, 0.0)
            gram[a, b, 0], gram[a, b, 1] = gh, gl
            gram[b, a, 0], gram[b, a, 1] = gh, gl
            eh, el = 0.0, 0.0
            for i in range(n):
                ph, pl = _two_prod(v[i, a], v[i, b])
                eh, el = _dd_add(eh, el, ph, pl)
            vtv[a, b, 0], vtv[a, b, 1] = eh, el
            vtv[b, a, 0], vtv[b, a, 1] = eh, el
    # residual r = C v − θ v in float64: (Cv)_i = Σ_t c_it y_t / (W sd_i), with an error bound
    res = np.zeros(k)
    bound = np.zeros(k)
    dd_rad = np.zeros(k)
    g_w = (w + 4) * _U / (1.0 - (w + 4) * _U)
    acc = np.zeros(n)
    acc_abs = np.zeros(n)
    for a in range(k):
        th = (gram[a, a, 0] + gram[a, a, 1]) / (vtv[a, a, 0] + vtv[a, a, 1])
        acc[:] = 0.0
        acc_abs[:] = 0.0
        s_abs = 0.0
        for t in range(w):
            yy = y[a, t, 0]
            ay = abs(yy) + absy[a, t] * 1e-28
            s_abs += absy[a, t] * absy[a, t]
            for i in range(n):
                c = xt[t, i] - mh[i]
                acc[i] += c * yy
                acc_abs[i] += abs(c) * ay + abs(ml[i]) * ay
        rr = 0.0
        bb = 0.0
        for i in range(n):
            sd = sdh[i]
            cv = acc[i] * inv_w / sd
            ri = cv - th * v[i, a]
            rr += ri * ri
            # |computed − exact|: γ_{W+4} on the dot product and the scaling, plus θ's own rounding
            e = 2.0 * (g_w * acc_abs[i] * inv_w / sd + 4.0 * _U * (abs(cv) + 2.0 * abs(th * v[i, a])))
            bb += e * e
        res[a] = math.sqrt(rr)
        bound[a] = 2.0 * math.sqrt(bb)
        # θ's double-double error: relative ~ (n + W + 8)·2^-104 of Σ_t (Σ_i |c u|)² / Σ_t y²
        den = gram[a, a, 0] * w
        dd_rad[a] = 4.0 * (n + w + 8) * 2.0 ** -104 * (s_abs / den if den > 0 else 1.0)
    return gram, vtv, res, bound, dd_rad


@dataclass
class Certificate:
    """Enclosures of one window's λ1/N, λ2/N and eigengap (arb balls; None without flint)."""

    lam1: object
    lam2: object
    gap: object
    rel_width: float          # widest relative radius of the three
    conditional: bool = True  # upper bounds rest on the identification (module docstring)


def to_arb_dd(hi: float, lo: float, rad: float = 0.0):
    """An ``arb`` ball with midpoint hi + lo (exact) and radius ``rad``."""
    b = arb(hi) + arb(lo)
    if rad > 0:
        b = b + arb(0, rad)
    return b


def certify(gram, vtv, res, bound, dd_rad, n: int) -> Certificate | None:
    """Certified enclosures of λ1/N, λ2/N and (λ1−λ2)/N from :func:`rayleigh_dd` output (2 vectors)."""
    if not HAVE_FLINT:
        return None
    ctx.prec = PREC_BITS
    grad = max(dd_rad[0], dd_rad[1]) * max(abs(gram[0, 0, 0]), abs(gram[1, 1, 0])) + 1e-300
    g = [[to_arb_dd(gram[a, b, 0], gram[a, b, 1], grad) for b in range(2)] for a in range(2)]
    e = [[to_arb_dd(vtv[a, b, 0], vtv[a, b, 1], 2.0 ** -100 * (abs(vtv[a, b, 0]) + 1e-300))
          for b in range(2)] for a in range(2)]
    th = [g[a][a] / e[a][a] for a in range(2)]
    rho = [arb(float(res[a])) + arb(float(bound[a])) for a in range(2)]
    rho = [r / e[a][a].sqrt() for a, r in enumerate(rho)]        # residual of the unit vector
    # Courant–Fischer: eigenvalues of the 2×2 pencil (G, E) are lower bounds of λ1, λ2
    a2 = e[0][0] * e[1][1] - e[0][1] * e[0][1]
    a1 = -(g[0][0] * e[1][1] + g[1][1] * e[0][0] - 2 * g[0][1] * e[0][1])
    a0 = g[0][0] * g[1][1] - g[0][1] * g[0][1]
    disc = a1 * a1 - 4 * a2 * a0
    if not (a2 > 0 and disc >= 0):
        return None
    sq = disc.sqrt()
    mu1 = (-a1 + sq) / (2 * a2)
    mu2 = (-a1 - sq) / (2 * a2)
    lo1 = mu1.lower()
    lo2 = mu2.lower()
    sep = th[0] - th[1] - rho[1]
    if sep > 0:
        hi1 = (th[0] + rho[0] * rho[0] / sep).upper()
    else:
        hi1 = (th[0] + rho[0]).upper()
    hi2 = (th[1] + rho[1]).upper()
    an = arb(n)
    lam1 = _ball(lo1, hi1) / an
    lam2 = _ball(lo2, hi2) / an
    gap = (_ball(lo1, hi1) - _ball(lo2, hi2)) / an
    widths = [float(b.rad()) / max(abs(float(b.mid())), 1e-300) for b in (lam1, lam2, gap)]
    return Certificate(lam1, lam2, gap, max(widths))


def _ball(lo, hi):
    return lo.union(hi)


def to_float(v) -> float:
    """Return the float64 nearest to the midpoint of an ``arb``, a double-double tuple or a float."""
    if isinstance(v, tuple):
        return float(v[0] + v[1])
    if isinstance(v, float):
        return v
    return float(v.mid())


# ── double-double scalars in Python (velocities, instability) ───────────────────────────────
def dd_sub(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """a − b for double-double tuples (hi, lo), error ~2^-104 relative."""
    s = a[0] - b[0]
    bb = s - a[0]
    e = (a[0] - (s - bb)) + (-b[0] - bb)
    e += a[1] - b[1]
    h = s + e
    return h, e - (h - s)


def dd_population_std(values: Sequence[tuple[float, float]]) -> float:
    """Population std of double-double values: deviations from the dd mean, then float64."""
    a = np.array(values, dtype=np.float64).reshape(-1, 2)
    return float(_dd_population_std(np.ascontiguousarray(a[:, 0]), np.ascontiguousarray(a[:, 1])))


@njit(cache=True)
def _dd_population_std(hi, lo):
    # the operations of dd_sub / to_float in the same order (sequential sums), so the same float
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
        e += lo[i] - 0.0
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


def dd_div_scalar(num, den, n: int) -> tuple[float, float]:
    """(num/den)/n for double-double pairs ``num``, ``den`` (arrays of 2) → (hi, lo)."""
    h, l = _dd_div(float(num[0]), float(num[1]), float(den[0]), float(den[1]))
    return _dd_div(h, l, float(n), 0.0)
