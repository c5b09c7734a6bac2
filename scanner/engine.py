"""The NG8 eigenscan computation: one ``enhance()`` pass turns a scan's prices into all four windows.

Definitions (shared/ARCHITECTURE.md §5, exact choices made here):

* History: one price per asset per scan (NaN = missing); returns ``r_t = ln(p_t / p_{t-1})``.
* Window ``W`` ∈ {50, 150, 300, 750} uses the last W returns (W+1 prices). An asset is *included*
  in a window only if all its W returns are finite and not constant; the window is computed when at
  least ``MIN_ASSETS`` (10) assets are included, otherwise all its fields are null.
* ``λ_W`` = top eigenvalue of the Pearson correlation matrix of the included assets divided by their
  count N; ``eigengap_W = (λ1 − λ2)/N``; loadings = top eigenvector, sign chosen so its sum ≥ 0.
* ``velocity_W(t) = λ_W(t) − λ_W(t−1)``; null if either is null or the included asset set changed.
* ``instability_W`` = population standard deviation of the last ``INSTABILITY_SCANS`` = 20
  consecutive values of ``λ_W`` (100 s at the 5 s cadence), all with the same included set; null until
  20 such values exist. ``instability_composite`` = mean of the non-null ``instability_W``.
* ``vel_div = velocity_50 − velocity_750`` (null unless both exist).
* ``regime_signal``: with ``d = λ_50 − λ_750``: +1 if d > +0.05 (short-horizon correlation spike: the
  market moves as one, stress / liquidity withdrawal), −1 if d < −0.05 (short-horizon dispersion),
  0 otherwise; null unless both windows are warm.
* Precision (bible §25): λ1 and λ2 are refined to 512 bits (``scanner.precision``); velocities,
  vel_div and instability are computed from the refined values in ``arb`` and rounded to float64 once.
  float64 is the guarded fallback per window.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from scanner import kernels, precision

log = logging.getLogger(__name__)

WINDOWS: tuple[int, ...] = (50, 150, 300, 750)
INSTABILITY_SCANS = 20
MIN_ASSETS = 10
REGIME_BAND = 0.05
HISTORY_ROWS = max(WINDOWS) + 1


@dataclass
class WindowResult:
    """Eigen statistics of one window for one scan (None = window not warm)."""

    lambda_max: float | None = None
    velocity: float | None = None
    eigengap: float | None = None
    instability: float | None = None
    n_assets: int = 0
    loadings: list | None = None  # aligned with the scan's assets, None for excluded assets
    refined: bool = False


@dataclass
class ScanResult:
    """Everything one ``enhance()`` pass produced for one scan."""

    timestamp_ns: int
    assets: list[str]
    prices: list[float | None]
    windows: dict[int, WindowResult]
    vel_div: float | None
    regime_signal: float | None
    instability_composite: float | None
    n_assets: int
    warm_windows: list[int] = field(default_factory=list)


@dataclass
class _WindowState:
    prev_lambda: object = None  # float or arb
    prev_set: bytes | None = None
    history: deque = field(default_factory=lambda: deque(maxlen=INSTABILITY_SCANS))
    velocity_exact: object = None


def _dual_top2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top two eigenpairs of corr(x) for x (n assets × W returns) with W < n, via the W×W dual.

    With Z the standardised returns (n × W), C = Z Zᵀ/W and G = Zᵀ Z/W share their non-zero
    eigenvalues, and v = Z u / |Z u| maps G's eigenvectors to C's, so an n×n eigenproblem becomes a
    W×W one. Returns (eigenvalues ascending, eigenvectors n × 2 ascending) like ``eigh``.
    """
    z = x - x.mean(axis=1, keepdims=True)
    z /= np.sqrt((z * z).mean(axis=1, keepdims=True))
    w = x.shape[1]
    g = (z.T @ z) / w
    ev, u = np.linalg.eigh(g)
    v = z @ u[:, -2:]
    v /= np.linalg.norm(v, axis=0, keepdims=True)
    return ev[-2:], v


class EigenEngine:
    """Stateful scan engine: feed it one price row per scan with :meth:`enhance`."""

    def __init__(self, assets: Sequence[str], *, precision_mode: str = "arb512"):
        if precision_mode not in ("arb512", "float64"):
            raise ValueError(f"precision_mode={precision_mode!r}: expected 'arb512' or 'float64'")
        self.assets = list(assets)
        self.n = len(self.assets)
        self.use_arb = precision_mode == "arb512" and precision.HAVE_FLINT
        if precision_mode == "arb512" and not precision.HAVE_FLINT:
            log.warning("python-flint not importable: scanner runs on the float64 fallback")
        self._prices = np.full((HISTORY_ROWS, self.n), np.nan)
        self._rets = np.full((self.n, HISTORY_ROWS - 1), np.nan)   # asset × return, newest last
        self._rows = 0
        self._state = {w: _WindowState() for w in WINDOWS}
        self.fallbacks = 0

    @property
    def rows(self) -> int:
        return self._rows

    def append(self, prices: Sequence[float | None]) -> None:
        """Add one price row to the history without computing a scan (backfill)."""
        row = np.array([np.nan if p is None else float(p) for p in prices], dtype=np.float64)
        if row.shape[0] != self.n:
            raise ValueError(f"expected {self.n} prices, got {row.shape[0]}")
        prev = self._prices[-1].copy()
        self._prices[:-1] = self._prices[1:]
        self._prices[-1] = row
        self._rets[:, :-1] = self._rets[:, 1:]
        self._rets[:, -1] = kernels.log_returns(np.vstack((prev, row)))[:, 0]
        self._rows = min(self._rows + 1, HISTORY_ROWS)

    def enhance(self, prices: Sequence[float | None], timestamp_ns: int) -> ScanResult:
        """Append this scan's prices and compute all four windows in one pass."""
        self.append(prices)
        n_ret = self._rows - 1
        warm = [w for w in WINDOWS if w <= n_ret]
        results = {w: WindowResult() for w in WINDOWS}
        exact: dict[int, object] = {}
        if warm:
            rt = np.ascontiguousarray(self._rets[:, HISTORY_ROWS - self._rows:])
            corr, valid = kernels.nested_correlations(np.ascontiguousarray(rt),
                                                      np.array(warm, dtype=np.int64))
            eig = {}
            for k, w in enumerate(warm):
                idx = np.flatnonzero(valid[k])
                if idx.size < MIN_ASSETS:
                    continue
                if w < idx.size:
                    evals, evecs = _dual_top2(rt[idx, -w:])
                else:
                    evals, evecs = np.linalg.eigh(corr[k][np.ix_(idx, idx)])
                eig[w] = (idx, evals, evecs)
            refined: dict = {}
            if self.use_arb and eig:
                jobs = [(w, idx, np.ascontiguousarray(evecs[:, ::-1][:, :2]))
                        for w, (idx, _, evecs) in eig.items()]
                refined = precision.refine_windows(rt, jobs)
                self.fallbacks += len(eig) - len(refined)
            for w, (idx, evals, evecs) in eig.items():
                exact[w] = self._window(w, idx, evals, evecs, refined.get(w), results[w])
        for w in WINDOWS:
            self._advance(w, results[w], exact.get(w))
        r50, r750 = results[50], results[750]
        vel_div = None
        if r50.velocity is not None and r750.velocity is not None:
            vel_div = precision.to_float(self._vel(50) - self._vel(750))
        regime = None
        if r50.lambda_max is not None and r750.lambda_max is not None:
            d = r50.lambda_max - r750.lambda_max
            regime = 1.0 if d > REGIME_BAND else (-1.0 if d < -REGIME_BAND else 0.0)
        inst = [results[w].instability for w in WINDOWS if results[w].instability is not None]
        composite = float(np.mean(inst)) if inst else None
        price_list = [None if not np.isfinite(p) else float(p) for p in self._prices[-1]]
        return ScanResult(
            timestamp_ns=int(timestamp_ns), assets=list(self.assets), prices=price_list,
            windows=results, vel_div=vel_div, regime_signal=regime, instability_composite=composite,
            n_assets=sum(p is not None for p in price_list),
            warm_windows=[w for w in WINDOWS if results[w].lambda_max is not None])

    # ── internals ──────────────────────────────────────────────────────────────────────────
    def _window(self, w: int, idx: np.ndarray, evals: np.ndarray, evecs: np.ndarray, refined,
                res: WindowResult):
        n = idx.size
        v1 = kernels.orient(np.ascontiguousarray(evecs[:, -1]))
        lam1, lam2 = evals[-1] / n, evals[-2] / n
        if refined is not None:
            l1, l2 = refined
            res.lambda_max = precision.to_float(l1)
            res.eigengap = precision.to_float(l1 - l2)
            res.refined = True
            lam_exact = l1
        else:
            res.lambda_max = float(lam1)
            res.eigengap = float(lam1 - lam2)
            lam_exact = float(lam1)
        load: list = [None] * self.n
        for j, i in enumerate(idx):
            load[int(i)] = float(v1[j])
        res.loadings = load
        res.n_assets = int(n)
        mask = np.zeros(self.n, dtype=np.bool_)
        mask[idx] = True
        return lam_exact, mask.tobytes()

    def _vel(self, w: int):
        return self._state[w].velocity_exact

    def _advance(self, w: int, res: WindowResult, got) -> None:
        st = self._state[w]
        lam, cur_set = got if got is not None else (None, None)
        st.velocity_exact = None
        if lam is None:
            st.prev_lambda, st.prev_set = None, None
            st.history.clear()
            return
        if st.prev_lambda is not None and st.prev_set == cur_set:
            prev = st.prev_lambda
            if precision.is_arb(lam) and precision.is_arb(prev):
                vel = lam - prev
            else:
                vel = precision.to_float(lam) - precision.to_float(prev)
            st.velocity_exact = vel
            res.velocity = precision.to_float(vel)
        else:
            st.history.clear()
        st.history.append(lam)
        st.prev_lambda, st.prev_set = lam, cur_set
        if len(st.history) == INSTABILITY_SCANS:
            if self.use_arb and all(precision.is_arb(x) for x in st.history):
                res.instability = precision.to_float(precision.arb_population_std(list(st.history)))
            else:
                res.instability = float(kernels.population_std(
                    np.array([precision.to_float(x) for x in st.history])))
