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
from llvmlite import ir
from numba import config as numba_config
from numba import njit, types
from numba.extending import intrinsic

log = logging.getLogger(__name__)

PREC_BITS = 512
WIDE = 1e-6          # relative enclosure width above which a window's certificate is logged (< 6 digits)
_U = 2.0 ** -53

try:  # guarded import: the float64 and double-double paths work without flint
    from flint import arb, ctx

    ctx.prec = PREC_BITS
    HAVE_FLINT = True
    _ZERO, _TWO, _FOUR = arb(0), arb(2), arb(4)
except ImportError:  # pragma: no cover - flint is a declared dependency
    arb = ctx = None  # type: ignore[assignment]
    HAVE_FLINT = False

LANES = 8            # interleaved double-double accumulators per asset in the moment pass
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
def _two_prod_dekker(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@intrinsic
def _fma(typingctx, a, b, c):
    """a·b + c with one rounding (LLVM ``llvm.fma.f64``: the FMA instruction, or libm's exact fma)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, args)
    return sig, codegen


if numba_config.DISABLE_JIT:   # plain Python (tests): Dekker's product, the same exact error term
    _two_prod = _two_prod_dekker
else:
    @njit(cache=True, inline="always")
    def _two_prod(a, b):
        # the exact error of a·b: one fused multiply-add (Dekker's split gives the same value)
        p = a * b
        return p, _fma(a, b, -p)


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
    x = np.ascontiguousarray(np.asarray(xt, dtype=np.float64).T)
    return rayleigh_dd_rows(x, np.arange(x.shape[0], dtype=np.int64), 0, x.shape[1], v)


def rayleigh_dd_rows(x, rows, c0, w, v, sums=None):
    """:func:`rayleigh_dd` on the asset-major block ``x[rows, c0:c0 + w]`` (assets × returns) in place:
    the scanner's ring of returns is read directly, without a transposed copy. ``sums`` (rows × 4:
    Σx and Σx² as double-double) may come from :func:`window_sums`, shared by the nested windows."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if sums is None:
        end = int(c0) + int(w)
        sums = _window_sums(np.ascontiguousarray(x[rows, end - int(w):end].T), int(w),
                            np.array([int(w)], dtype=np.int64))[0]
    return _rq_core(x, rows, int(c0), int(w), np.ascontiguousarray(v, dtype=np.float64), sums)


def window_sums(x, end, windows) -> np.ndarray:
    """Σx and Σx² (double-double: hi, lo, hi, lo) of every row of ``x`` over its trailing windows
    ``x[:, end − W:end]`` for the ascending ``windows``, in one backward pass over the longest
    (the nested windows share it). Returns (len(windows), rows, 4); a window holding a non-finite
    return gives non-finite sums for that row."""
    return window_sums_t(np.ascontiguousarray(np.asarray(x, dtype=np.float64).T), end, windows)


def window_sums_t(xt, end, windows) -> np.ndarray:
    """:func:`window_sums` on the time-major ``xt`` (returns × assets, C-contiguous): the engine keeps
    its ring of returns in this layout too, so the pass runs across assets (vectorised) in place."""
    return _window_sums(xt, int(end), np.ascontiguousarray(windows, dtype=np.int64))


@njit(cache=True, fastmath={"reassoc", "contract"})
def _residual_dots(x, rows, c0, w, mh, yhi, ay, acc, acc_abs):
    # float64 sums Σ_t c_it y_t and Σ_t |c_it| ay_t per asset, any summation order: the rounding
    # bound (γ_{W+4}) used by the caller holds for every order and for fused multiply-adds
    n = rows.shape[0]
    for a in range(n):
        r = rows[a]
        m = mh[a]
        s = 0.0
        sa = 0.0
        for t in range(w):
            c = x[r, c0 + t] - m
            s += c * yhi[t]
            sa += abs(c) * ay[t]
        acc[a] = s
        acc_abs[a] = sa


@njit(cache=True, fastmath={"reassoc", "contract"})
def _residual_dots2(x, rows, c0, w, mh, y, ay, acc, acc_abs):
    # :func:`_residual_dots` for the two vectors (rows of y, ay, acc, acc_abs) in one sweep
    n = rows.shape[0]
    y0, y1, ay0, ay1 = y[0], y[1], ay[0], ay[1]
    for a in range(n):
        xr = x[rows[a], c0:c0 + w]
        m = mh[a]
        s0 = 0.0
        sa0 = 0.0
        s1 = 0.0
        sa1 = 0.0
        for t in range(w):
            c = xr[t] - m
            ac = abs(c)
            s0 += c * y0[t]
            sa0 += ac * ay0[t]
            s1 += c * y1[t]
            sa1 += ac * ay1[t]
        acc[0, a] = s0
        acc_abs[0, a] = sa0
        acc[1, a] = s1
        acc_abs[1, a] = sa1


@njit(cache=True, inline="always")
def _lane_acc(xr, sh, sl, qh, ql):
    # one time step into one lane of every asset (contiguous: vectorised across the assets)
    for a in range(xr.shape[0]):
        xv = xr[a]
        s, e = _two_sum(sh[a], xv)
        p, pe = _two_prod(xv, xv)
        s2, e2 = _two_sum(qh[a], p)
        sh[a] = s
        sl[a] += e
        qh[a] = s2
        ql[a] += e2 + pe


@njit(cache=True)
def _window_sums(xt, end, windows):
    # backward from the newest return: segment by segment (newest W first), each in LANES interleaved
    # double-double accumulators per asset (independent chains), added to the running totals at its end;
    # the innermost loop runs across the assets of one time step (contiguous in xt)
    nw = windows.shape[0]
    n = xt.shape[1]
    out = np.empty((nw, n, 4))
    ash = np.empty((LANES, n))      # per lane and asset: Σx hi, lo, Σx² hi, lo
    asl = np.empty((LANES, n))
    aqh = np.empty((LANES, n))
    aql = np.empty((LANES, n))
    tot = np.zeros((n, 4))
    lo = end
    for k in range(nw):
        hi = lo
        lo = end - windows[k]
        ash[:] = 0.0
        asl[:] = 0.0
        aqh[:] = 0.0
        aql[:] = 0.0
        span = hi - lo
        full = span - span % LANES
        for t0 in range(hi - LANES, hi - full - 1, -LANES):
            for j in range(LANES):
                _lane_acc(xt[t0 + j], ash[j], asl[j], aqh[j], aql[j])
        for t in range(hi - full - 1, lo - 1, -1):
            _lane_acc(xt[t], ash[0], asl[0], aqh[0], aql[0])
        for a in range(n):
            sh, sl, qh, ql = tot[a, 0], tot[a, 1], tot[a, 2], tot[a, 3]
            for j in range(LANES):
                sh, sl = _dd_add(sh, sl, ash[j, a], asl[j, a])
                qh, ql = _dd_add(qh, ql, aqh[j, a], aql[j, a])
            tot[a, 0], tot[a, 1], tot[a, 2], tot[a, 3] = sh, sl, qh, ql
            out[k, a, 0] = sh
            out[k, a, 1] = sl
            out[k, a, 2] = qh
            out[k, a, 3] = ql
    return out


@njit(cache=True)
def _rq_core(x, rows, c0, w, v, sums):
    n = rows.shape[0]
    k = v.shape[1]
    inv_w = 1.0 / w
    fw = float(w)
    mh = np.empty(n)
    ml = np.empty(n)
    sdh = np.empty(n)
    sdl = np.empty(n)
    for a in range(n):
        mh[a], ml[a] = _dd_div(sums[a, 0], sums[a, 1], fw, 0.0)
        eh, el = _dd_div(sums[a, 2], sums[a, 3], fw, 0.0)   # E[x²]
        m2h, m2l = _dd_mul(mh[a], ml[a], mh[a], ml[a])
        vh, vl = _dd_add(eh, el, -m2h, -m2l)                 # var = E[x²] − m²
        sdh[a], sdl[a] = _dd_sqrt(vh, vl)
    uh = np.empty((k, n))
    ul = np.empty((k, n))
    for b in range(k):
        for a in range(n):
            uh[b, a], ul[b, a] = _dd_div(v[a, b], 0.0, sdh[a], sdl[a])
    # y_t = Σ_i (x_it − m_i) u_i in double-double, asset by asset (vectorised over t);
    # absy_t = Σ_i |c_it u_i| for the bounds
    yh = np.zeros((k, w))
    yl = np.zeros((k, w))
    absy = np.zeros((k, w))
    a0 = 0
    if k == 2:   # the certificate's pair, two assets per sweep: y read and written once per two assets,
        # each y_t still gets asset a's terms before asset a+1's (the same sums as one asset at a time)
        yh0, yl0, ya0, yh1, yl1, ya1 = yh[0], yl[0], absy[0], yh[1], yl[1], absy[1]
        while a0 + 1 < n:
            xa = x[rows[a0], c0:c0 + w]
            xb = x[rows[a0 + 1], c0:c0 + w]
            mah, mal, mbh, mbl = -mh[a0], ml[a0], -mh[a0 + 1], ml[a0 + 1]
            a0h, a0l, a1h, a1l = uh[0, a0], ul[0, a0], uh[1, a0], ul[1, a0]
            b0h, b0l, b1h, b1l = uh[0, a0 + 1], ul[0, a0 + 1], uh[1, a0 + 1], ul[1, a0 + 1]
            for t in range(w):
                h0, l0, s0, h1, l1, s1 = yh0[t], yl0[t], ya0[t], yh1[t], yl1[t], ya1[t]
                ch, cl = _two_sum(xa[t], mah)
                cl -= mal
                p, pe = _two_prod(ch, a0h)
                pe += ch * a0l + cl * a0h
                h0, e = _two_sum(h0, p)
                l0 += e + pe
                s0 += abs(p)
                p, pe = _two_prod(ch, a1h)
                pe += ch * a1l + cl * a1h
                h1, e = _two_sum(h1, p)
                l1 += e + pe
                s1 += abs(p)
                ch, cl = _two_sum(xb[t], mbh)
                cl -= mbl
                p, pe = _two_prod(ch, b0h)
                pe += ch * b0l + cl * b0h
                h0, e = _two_sum(h0, p)
                l0 += e + pe
                s0 += abs(p)
                p, pe = _two_prod(ch, b1h)
                pe += ch * b1l + cl * b1h
                h1, e = _two_sum(h1, p)
                l1 += e + pe
                s1 += abs(p)
                yh0[t], yl0[t], ya0[t], yh1[t], yl1[t], ya1[t] = h0, l0, s0, h1, l1, s1
            a0 += 2
    for a in range(a0, n):
        r = rows[a]
        m_h = -mh[a]
        m_l = ml[a]
        xr = x[r, c0:c0 + w]
        if k == 2:   # the certificate's pair in one sweep (c_it formed once)
            u0h, u0l, u1h, u1l = uh[0, a], ul[0, a], uh[1, a], ul[1, a]
            yh0, yl0, ya0, yh1, yl1, ya1 = yh[0], yl[0], absy[0], yh[1], yl[1], absy[1]
            for t in range(w):
                ch, cl = _two_sum(xr[t], m_h)
                cl -= m_l
                p, pe = _two_prod(ch, u0h)
                pe += ch * u0l + cl * u0h
                s, e = _two_sum(yh0[t], p)
                yh0[t] = s
                yl0[t] += e + pe
                ya0[t] += abs(p)
                p, pe = _two_prod(ch, u1h)
                pe += ch * u1l + cl * u1h
                s, e = _two_sum(yh1[t], p)
                yh1[t] = s
                yl1[t] += e + pe
                ya1[t] += abs(p)
            continue
        for b in range(k):
            u_h = uh[b, a]
            u_l = ul[b, a]
            yhb = yh[b]
            ylb = yl[b]
            yab = absy[b]
            for t in range(w):
                ch, cl = _two_sum(xr[t], m_h)
                cl -= m_l
                p, pe = _two_prod(ch, u_h)
                pe += ch * u_l + cl * u_h
                s, e = _two_sum(yhb[t], p)
                yhb[t] = s
                ylb[t] += e + pe
                yab[t] += abs(p)
    for b in range(k):
        for t in range(w):
            yh[b, t], yl[b, t] = _two_sum(yh[b, t], yl[b, t])
    gram = np.zeros((k, k, 2))
    vtv = np.zeros((k, k, 2))
    w4 = w - w % 4
    prh = np.empty(w)
    prl = np.empty(w)
    for a in range(k):
        for b in range(a, k):
            # the products y_a,t · y_b,t first (independent: vectorised), then four interleaved
            # double-double sums (independent dependency chains), then combined
            ya_h, ya_l, yb_h, yb_l = yh[a], yl[a], yh[b], yl[b]
            for t in range(w):
                prh[t], prl[t] = _dd_mul(ya_h[t], ya_l[t], yb_h[t], yb_l[t])
            g0h = g0l = g1h = g1l = g2h = g2l = g3h = g3l = 0.0
            for t in range(0, w4, 4):
                g0h, g0l = _dd_add(g0h, g0l, prh[t], prl[t])
                g1h, g1l = _dd_add(g1h, g1l, prh[t + 1], prl[t + 1])
                g2h, g2l = _dd_add(g2h, g2l, prh[t + 2], prl[t + 2])
                g3h, g3l = _dd_add(g3h, g3l, prh[t + 3], prl[t + 3])
            for t in range(w4, w):
                g0h, g0l = _dd_add(g0h, g0l, prh[t], prl[t])
            g0h, g0l = _dd_add(g0h, g0l, g1h, g1l)
            g2h, g2l = _dd_add(g2h, g2l, g3h, g3l)
            gh, gl = _dd_add(g0h, g0l, g2h, g2l)
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
    acc = np.empty((k, n))
    acc_abs = np.empty((k, n))
    ay = np.empty((k, w))
    s_abs = np.zeros(k)
    say = np.zeros(k)
    for b in range(k):
        ayb, yhb, yab = ay[b], yh[b], absy[b]
        for t in range(w):
            ayb[t] = abs(yhb[t]) + yab[t] * 1e-28
        sa = 0.0
        sy = 0.0
        for t in range(w):
            sa += yab[t] * yab[t]
            sy += ayb[t]
        s_abs[b] = sa
        say[b] = sy
    if k == 2:   # both vectors in one sweep (c_it formed once)
        _residual_dots2(x, rows, c0, w, mh, yh, ay, acc, acc_abs)
    else:
        for b in range(k):
            _residual_dots(x, rows, c0, w, mh, yh[b], ay[b], acc[b], acc_abs[b])
    for b in range(k):
        th = (gram[b, b, 0] + gram[b, b, 1]) / (vtv[b, b, 0] + vtv[b, b, 1])
        rr = 0.0
        bb = 0.0
        for i in range(n):
            sd = sdh[i]
            cv = acc[b, i] * inv_w / sd
            ri = cv - th * v[i, b]
            rr += ri * ri
            # |computed − exact|: γ_{W+4} on the dot product and the scaling, plus θ's own rounding
            e = 2.0 * (g_w * (acc_abs[b, i] + abs(ml[i]) * say[b]) * inv_w / sd
                       + 4.0 * _U * (abs(cv) + 2.0 * abs(th * v[i, b])))
            bb += e * e
        res[b] = math.sqrt(rr)
        bound[b] = 2.0 * math.sqrt(bb)
        # θ's double-double error: relative ~ (n + W + 8)·2^-104 of Σ_t (Σ_i |c u|)² / Σ_t y²
        den = gram[b, b, 0] * w
        dd_rad[b] = 4.0 * (n + w + 8) * 2.0 ** -104 * (s_abs[b] / den if den > 0 else 1.0)
    return gram, vtv, res, bound, dd_rad


# one row of :func:`refine_windows` per window: the arguments of :func:`certify_values` (less n), then λ1/N and λ2/N
STAGE_FIELDS = ("g00h", "g00l", "g01h", "g01l", "g11h", "g11l", "e00h", "e00l", "e01h", "e01l", "e11h", "e11l",
                "r0", "r1", "b0", "b1", "d0", "d1", "l1h", "l1l", "l2h", "l2l")


def refine_windows(x, xt, end: int, windows, rows, offsets, vecs) -> np.ndarray:
    """The scan's whole double-double stage in one compiled call: :func:`window_sums_t` on ``xt`` (``x``
    time-major) over the ascending ``windows`` (trailing ``x[:, end − W:end]``), then per window ``k``
    :func:`rayleigh_dd_rows` on its
    included rows ``rows[offsets[k]:offsets[k+1]]`` and vectors ``vecs`` (same rows, 2 columns), and the
    double-double λ1/N, λ2/N of :func:`dd_div_scalar`. Returns (len(windows), len(STAGE_FIELDS)) floats,
    the same values the separate calls give."""
    return _refine_windows(x, xt, int(end), windows, rows, offsets, vecs)


@njit(cache=True)
def _refine_windows(x, xt, end, windows, rows, offsets, vecs):
    nw = windows.shape[0]
    sums = _window_sums(xt, end, windows)
    out = np.empty((nw, 22))
    for k in range(nw):
        w = windows[k]
        r = rows[offsets[k]:offsets[k + 1]]
        n = r.shape[0]
        sk = np.empty((n, 4))
        for a in range(n):
            for j in range(4):
                sk[a, j] = sums[k, r[a], j]
        gram, vtv, res, bound, dd_rad = _rq_core(x, r, end - w, w, vecs[offsets[k]:offsets[k + 1]], sk)
        o = out[k]
        o[0], o[1], o[2], o[3], o[4], o[5] = gram[0, 0, 0], gram[0, 0, 1], gram[0, 1, 0], gram[0, 1, 1], \
            gram[1, 1, 0], gram[1, 1, 1]
        o[6], o[7], o[8], o[9], o[10], o[11] = vtv[0, 0, 0], vtv[0, 0, 1], vtv[0, 1, 0], vtv[0, 1, 1], \
            vtv[1, 1, 0], vtv[1, 1, 1]
        o[12], o[13], o[14], o[15], o[16], o[17] = res[0], res[1], bound[0], bound[1], dd_rad[0], dd_rad[1]
        fn = float(n)
        h, l = _dd_div(gram[0, 0, 0], gram[0, 0, 1], vtv[0, 0, 0], vtv[0, 0, 1])
        o[18], o[19] = _dd_div(h, l, fn, 0.0)
        h, l = _dd_div(gram[1, 1, 0], gram[1, 1, 1], vtv[1, 1, 0], vtv[1, 1, 1])
        o[20], o[21] = _dd_div(h, l, fn, 0.0)
    return out


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
    """Certified enclosures of λ1/N, λ2/N and (λ1−λ2)/N from :func:`rayleigh_dd` output (2 vectors).

    About sixty ``arb`` operations at 512 bits: every input enters as an exact ball (midpoint hi + lo,
    the stated radius), the symmetric 2×2 entries once each."""
    if not HAVE_FLINT:
        return None
    (g00, g01), (_, g11) = gram.tolist()
    (e00, e01), (_, e11) = vtv.tolist()
    return certify_values(g00[0], g00[1], g01[0], g01[1], g11[0], g11[1], e00[0], e00[1], e01[0], e01[1],
                          e11[0], e11[1], *res.tolist(), *bound.tolist(), *dd_rad.tolist(), n)


def certify_values(g00h, g00l, g01h, g01l, g11h, g11l, e00h, e00l, e01h, e01l, e11h, e11l,
                   r0, r1, b0, b1, d0, d1, n: int) -> Certificate | None:
    """:func:`certify` on Python floats (the order of :data:`STAGE_FIELDS`): the scan's path, no arrays."""
    if not HAVE_FLINT:
        return None
    ctx.prec = PREC_BITS
    # the three Gram entries share one radius: arb(hi) + arb(0, r) is arb(hi, r) exactly (exact midpoint sum)
    grad = arb(0, max(d0, d1) * max(abs(g00h), abs(g11h)) + 1e-300)
    g00 = arb(g00h) + grad + arb(g00l)
    g01 = arb(g01h) + grad + arb(g01l)
    g11 = arb(g11h) + grad + arb(g11l)
    e00 = arb(e00h, 2.0 ** -100 * (abs(e00h) + 1e-300)) + arb(e00l)
    e01 = arb(e01h, 2.0 ** -100 * (abs(e01h) + 1e-300)) + arb(e01l)
    e11 = arb(e11h, 2.0 ** -100 * (abs(e11h) + 1e-300)) + arb(e11l)
    th0 = g00 / e00
    th1 = g11 / e11
    rho0 = (arb(r0) + arb(b0)) / e00.sqrt()   # residual of the unit vector
    rho1 = (arb(r1) + arb(b1)) / e11.sqrt()
    # Courant–Fischer: eigenvalues of the 2×2 pencil (G, E) are lower bounds of λ1, λ2
    a2 = e00 * e11 - e01 * e01
    a1 = _TWO * g01 * e01 - g00 * e11 - g11 * e00
    a0 = g00 * g11 - g01 * g01
    disc = a1 * a1 - _FOUR * a2 * a0
    if not (a2 > _ZERO and disc >= _ZERO):
        return None
    sq = disc.sqrt()
    d2 = _TWO * a2
    lo1 = ((sq - a1) / d2).lower()
    lo2 = (-(a1 + sq) / d2).lower()
    sep = th0 - th1 - rho1
    if sep > _ZERO:
        hi1 = (th0 + rho0 * rho0 / sep).upper()
    else:
        hi1 = (th0 + rho0).upper()
    hi2 = (th1 + rho1).upper()
    an = _arb_int(n)
    b1_ = lo1.union(hi1)
    b2_ = lo2.union(hi2)
    lam1 = b1_ / an
    lam2 = b2_ / an
    gap = (b1_ - b2_) / an
    return Certificate(lam1, lam2, gap, max(_rel_width(lam1), _rel_width(lam2), _rel_width(gap)))


def _rel_width(b) -> float:
    return float(b.rad()) / max(abs(float(b.mid())), 1e-300)


_ARB_INT: dict = {}


def _arb_int(n: int):
    """arb(n), built once per asset count (exact; immutable)."""
    b = _ARB_INT.get(n)
    if b is None:
        b = _ARB_INT[n] = arb(n)
    return b


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
