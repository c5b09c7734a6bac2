"""Unit tests of the NG8 scanner's numeric core: kernels, engine definitions, 512-bit refinement."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scanner import kernels, precision
from scanner.engine import INSTABILITY_SCANS, MIN_ASSETS, EigenEngine


def _returns(n=12, t=400, seed=0, market=0.5):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal(t)
    e = rng.standard_normal((n, t))
    return np.ascontiguousarray(math.sqrt(market) * f + math.sqrt(1 - market) * e) * 1e-3


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "python"])
def test_nested_correlations_equal_numpy_corrcoef(jit):
    rt = _returns()
    windows = np.array([50, 150, 300], dtype=np.int64)
    fn = kernels.nested_correlations if jit else kernels.nested_correlations.py_func
    corr, valid = fn(rt, windows)
    for k, w in enumerate(windows):
        assert valid[k].all()
        np.testing.assert_allclose(corr[k], np.corrcoef(rt[:, -w:]), atol=1e-12)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "python"])
def test_asset_with_nan_or_constant_returns_is_excluded_only_where_it_overlaps(jit):
    rt = _returns()
    rt[3, -100] = np.nan          # inside w150 and w300, outside w50
    rt[5, :] = 0.0                # constant: correlation undefined everywhere
    fn = kernels.nested_correlations if jit else kernels.nested_correlations.py_func
    corr, valid = fn(rt, np.array([50, 150, 300], dtype=np.int64))
    assert valid[0, 3] and not valid[1, 3] and not valid[2, 3]
    assert not valid[:, 5].any()
    assert corr[1, 3].sum() == 0.0 and corr[1, :, 3].sum() == 0.0
    keep = [i for i in range(12) if i not in (3, 5)]
    np.testing.assert_allclose(corr[1][np.ix_(keep, keep)], np.corrcoef(rt[keep, -150:]), atol=1e-12)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "python"])
def test_log_returns_mark_missing_prices_nan(jit):
    p = np.array([[100.0, 10.0], [110.0, np.nan], [121.0, 12.0]])
    fn = kernels.log_returns if jit else kernels.log_returns.py_func
    r = fn(p)
    np.testing.assert_allclose(r[0], [math.log(1.1), math.log(1.1)])
    assert np.isnan(r[1]).all()


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.just(0.0), st.floats(min_value=1e-140, max_value=1e3), st.floats(min_value=-1e3, max_value=-1e-140)))
def test_exact_square_parts_sum_to_the_exact_square(x):
    # domain of log returns: 0 or 1e-140 < |x| (below that the square's low part underflows)
    from fractions import Fraction
    hi, lo = precision.exact_square_parts(np.array([x]))
    assert Fraction(float(hi[0])) + Fraction(float(lo[0])) == Fraction(x) * Fraction(x)


def _arb_exact_rq(x, v):
    """Exact Rayleigh quotient of v on corr(x) at 512 bits (independent of the double-double kernel)."""
    from flint import arb, ctx
    ctx.prec = 512
    n, w = x.shape
    rows = [[arb(float(x[i, t])) for t in range(w)] for i in range(n)]
    m = [sum(r, arb(0)) / w for r in rows]
    c = [[rows[i][t] - m[i] for t in range(w)] for i in range(n)]
    sd = [(sum((ci * ci for ci in c[i]), arb(0)) / w).sqrt() for i in range(n)]
    u = [arb(float(v[i])) / sd[i] for i in range(n)]
    y = [sum((c[i][t] * u[i] for i in range(n)), arb(0)) for t in range(w)]
    return sum((yt * yt for yt in y), arb(0)) / w / sum((arb(float(vi)) ** 2 for vi in v), arb(0))


def test_double_double_rayleigh_quotient_matches_a_512_bit_one_to_1e_28():
    rt = _returns(n=8, t=60, seed=3)
    evals, evecs = np.linalg.eigh(np.corrcoef(rt))
    v = np.ascontiguousarray(evecs[:, ::-1][:, :2])
    gram, vtv, res, bound, dd_rad = precision.rayleigh_dd(np.ascontiguousarray(rt.T), v)
    for a in range(2):
        exact = _arb_exact_rq(rt, v[:, a])
        dd = precision.to_arb_dd(gram[a, a, 0], gram[a, a, 1]) / precision.to_arb_dd(vtv[a, a, 0], vtv[a, a, 1])
        assert abs(float((dd - exact).mid())) < 1e-28 * abs(float(exact.mid()))
        assert abs(gram[a, a, 0] / vtv[a, a, 0] - evals[::-1][a]) < 1e-13
        assert res[a] < 1e-13 and bound[a] < 1e-11


def test_certificate_encloses_lambda1_lambda2_and_the_gap_of_eigh():
    rt = _returns(n=20, t=300, seed=3)
    evals, evecs = np.linalg.eigh(np.corrcoef(rt))
    v = np.ascontiguousarray(evecs[:, ::-1][:, :2])
    cert = precision.certify(*precision.rayleigh_dd(np.ascontiguousarray(rt.T), v), 20)
    l1, l2 = evals[-1] / 20, evals[-2] / 20
    # the float64 eigh values lie within ~1e-15 of the exact ones: inside the balls widened by that
    from flint import arb
    for ball, ref in ((cert.lam1, l1), (cert.lam2, l2), (cert.gap, l1 - l2)):
        assert (ball + arb(0, 1e-14)).contains(arb(ref))
    assert float(cert.lam1.rad()) < 1e-24          # Kato–Temple: quadratic in the residual
    assert float(cert.lam2.rad()) < 1e-12          # Weinstein: linear in λ2's residual
    assert cert.rel_width < precision.WIDE


def test_certificate_of_a_poor_vector_is_wide_but_still_encloses():
    rt = _returns(n=20, t=300, seed=4)
    evals, evecs = np.linalg.eigh(np.corrcoef(rt))
    v = np.ascontiguousarray(evecs[:, ::-1][:, :2]).copy()
    v[:, 0] += 1e-4 * evecs[:, 0]  # a perturbed (still mostly top) vector: wider but honest balls
    v[:, 1] += 1e-4 * evecs[:, 3]
    cert = precision.certify(*precision.rayleigh_dd(np.ascontiguousarray(rt.T), v), 20)
    from flint import arb
    assert cert.lam1.contains(arb(evals[-1] / 20)) or (cert.lam1 + arb(0, 1e-15)).contains(arb(evals[-1] / 20))
    assert (cert.lam2 + arb(0, 1e-15)).contains(arb(evals[-2] / 20))
    assert cert.rel_width > precision.WIDE


def test_one_call_stage_equals_the_rayleigh_and_certificate_functions_window_by_window():
    # the scan's single compiled call (all windows, one moment pass on the time-major ring) gives exactly the
    # floats of window_sums + rayleigh_dd_rows + dd_div_scalar per window, and certify_values the same balls
    rt = _returns(n=13, t=330, seed=5)
    rt[4, 40] = np.nan                     # an asset excluded from the long window only
    windows = np.array([50, 150, 300], dtype=np.int64)
    end = rt.shape[1]
    sums = precision.window_sums(rt, end, windows)
    np.testing.assert_array_equal(precision.window_sums_t(np.ascontiguousarray(rt.T), end, windows), sums)
    rows, vecs = [], []
    for w in windows:
        idx = np.flatnonzero(np.isfinite(sums[list(windows).index(w), :, 0]))
        v = np.ascontiguousarray(np.linalg.eigh(np.corrcoef(rt[idx, -w:]))[1][:, ::-1][:, :2])
        rows.append(idx)
        vecs.append(v)
    assert rows[2].size == 12 and rows[0].size == 13
    offsets = np.concatenate(([0], np.cumsum([r.size for r in rows]))).astype(np.int64)
    out = precision.refine_windows(rt, np.ascontiguousarray(rt.T), end, windows, np.concatenate(rows),
                                   offsets, np.concatenate(vecs))
    assert out.shape == (3, len(precision.STAGE_FIELDS))
    for k, w in enumerate(windows):
        idx, v = rows[k], vecs[k]
        gram, vtv, res, bound, dd_rad = precision.rayleigh_dd_rows(rt, idx, end - w, w, v, sums[k][idx])
        n = idx.size
        want = [gram[0, 0, 0], gram[0, 0, 1], gram[0, 1, 0], gram[0, 1, 1], gram[1, 1, 0], gram[1, 1, 1],
                vtv[0, 0, 0], vtv[0, 0, 1], vtv[0, 1, 0], vtv[0, 1, 1], vtv[1, 1, 0], vtv[1, 1, 1],
                *res, *bound, *dd_rad, *precision.dd_div_scalar(gram[0, 0], vtv[0, 0], n),
                *precision.dd_div_scalar(gram[1, 1], vtv[1, 1], n)]
        assert out[k].tolist() == [float(x) for x in want]
        a = precision.certify(gram, vtv, res, bound, dd_rad, n)
        b = precision.certify_values(*out[k].tolist()[:18], n)
        for x, y in ((a.lam1, b.lam1), (a.lam2, b.lam2), (a.gap, b.gap)):
            assert x.mid() == y.mid() and x.rad() == y.rad()
        assert a.rel_width == b.rel_width < precision.WIDE


def _prices(n, t, seed, stress_at=None):
    rng = np.random.default_rng(seed)
    p = np.full(n, 100.0)
    out = []
    for k in range(t):
        m = 0.85 if stress_at and stress_at[0] <= k < stress_at[1] else 0.1
        f = rng.standard_normal()
        r = (math.sqrt(m) * f + math.sqrt(1 - m) * rng.standard_normal(n)) * 5e-4
        p = p * np.exp(r)
        out.append(p.tolist())
    return out


def test_cold_start_fields_are_null_until_each_window_is_warm():
    eng = EigenEngine([f"A{i}USDT" for i in range(MIN_ASSETS)], precision_mode="float64")
    rows = _prices(MIN_ASSETS, 152, 1)
    res = [eng.enhance(r, k) for k, r in enumerate(rows)]
    assert res[49].warm_windows == [] and res[49].windows[50].lambda_max is None
    assert res[50].warm_windows == [50] and res[50].windows[50].velocity is None
    assert res[51].windows[50].velocity is not None
    assert res[50 + INSTABILITY_SCANS - 2].windows[50].instability is None
    assert res[50 + INSTABILITY_SCANS - 1].windows[50].instability is not None
    assert res[150].warm_windows == [50, 150]
    assert all(r.vel_div is None and r.regime_signal is None for r in res)
    lam = res[-1].windows[50].lambda_max
    assert 1.0 / MIN_ASSETS <= lam <= 1.0


def test_missing_price_drops_asset_from_windows_spanning_the_gap():
    n = 12
    # carry_scans=0: no last-price carry (issue 21 carries up to 2 scans; test_scanner_gaps covers that)
    eng = EigenEngine([f"A{i}USDT" for i in range(n)], precision_mode="float64", carry_scans=0)
    rows = _prices(n, 60, 2)
    rows[30][4] = None
    for k, r in enumerate(rows):
        res = eng.enhance(r, k)
    w = res.windows[50]
    assert w.n_assets == n - 1 and w.loadings[4] is None
    assert res.prices[4] is not None and res.n_assets == n


def test_float64_and_512_bit_paths_make_identical_decisions_on_a_long_run():
    n = 12
    rows = _prices(n, 900, 7, stress_at=(780, 850))
    a = EigenEngine([f"A{i}USDT" for i in range(n)], precision_mode="float64")
    b = EigenEngine([f"A{i}USDT" for i in range(n)], precision_mode="arb512")
    va, vb = [], []
    for k, r in enumerate(rows):
        ra, rb = a.enhance(r, k), b.enhance(r, k)
        va.append(ra.vel_div)
        vb.append(rb.vel_div)
        assert ra.regime_signal == rb.regime_signal
    assert b.fallbacks == 0
    assert [x is None for x in va] == [x is None for x in vb]
    fa = np.array([x for x in va if x is not None])
    fb = np.array([x for x in vb if x is not None])
    assert fa.size >= 140
    np.testing.assert_array_equal(np.sign(fa), np.sign(fb))
    np.testing.assert_array_equal(fa < -0.02, fb < -0.02)
    assert (fa < -0.02).sum() > 0, "the stress burst should produce threshold crossings"
    assert np.max(np.abs(fa - fb)) < 1e-12


def test_product_accumulator_python_and_jit_agree_including_the_ragged_last_row_block():
    rt = _returns(n=11, t=80, seed=5)   # 11 rows: two blocks of 4 and a ragged block of 3
    bad = np.zeros(11, dtype=np.bool_)
    bad[6] = True
    a = np.zeros((11, 11))
    b = np.zeros((11, 11))
    kernels._accumulate_products(rt, a, bad, 10, 80)
    kernels._accumulate_products.py_func(rt, b, bad, 10, 80)
    np.testing.assert_allclose(a, b, rtol=1e-13)
    ref = rt[:, 10:80] @ rt[:, 10:80].T
    keep = [i for i in range(11) if i != 6]
    np.testing.assert_allclose(np.triu(a)[np.ix_(keep, keep)], np.triu(ref)[np.ix_(keep, keep)], rtol=1e-12)
    assert not a[6].any() and not a[:, 6].any()


def test_refined_engine_with_an_asset_missing_from_the_long_windows_matches_eigvalsh():
    n = 14
    rows = _prices(n, 760, 9)
    for k in range(200):
        rows[k][3] = None   # asset 3 only has the last ~559 returns: out of w750, in the others
    eng = EigenEngine([f"A{i}USDT" for i in range(n)], precision_mode="arb512")
    for k, r in enumerate(rows):
        res = eng.enhance(r, k)
    p = np.log(np.array([[np.nan if x is None else x for x in r] for r in rows]))
    rt = np.diff(p, axis=0).T
    for w in (50, 150, 300, 750):
        idx = [i for i in range(n) if np.isfinite(rt[i, -w:]).all()]
        assert (res.windows[w].loadings[3] is None) == (w == 750)
        ev = np.linalg.eigvalsh(np.corrcoef(rt[idx][:, -w:]))[::-1] / len(idx)
        assert res.windows[w].refined and abs(res.windows[w].lambda_max - ev[0]) < 1e-13
        assert abs(res.windows[w].eigengap - (ev[0] - ev[1])) < 1e-13
        assert res.windows[w].certificate.lam1.contains(res.windows[w].lambda_max) or \
            abs(float(res.windows[w].certificate.lam1.mid()) - res.windows[w].lambda_max) < 1e-16
