"""The NG8 eigenscan computation: one ``enhance()`` pass turns a scan's prices into all four windows.

Design notes: ``docs/design/scanner.md``.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from scanner import incremental as inc
from scanner import kernels, precision

log = logging.getLogger(__name__)

WINDOWS: tuple[int, ...] = (50, 150, 300, 750)
INSTABILITY_SCANS = 20
MIN_ASSETS = 10
REGIME_BAND = 0.05
HISTORY_ROWS = max(WINDOWS) + 1
FULL_EVERY = 720          # scans between scheduled full eigh + moment recomputes per window (1 h at 5 s)
DIRECT_MAX_N = 200        # up to this many included assets LAPACK dsyevr (top two) on the incremental C beats iterating
GAP_FACTOR = 2.5          # scan spacing above this × cadence is a gap ...
MIN_GAP_S = 60.0          # ... and above this many seconds: a scan a few seconds late (a busy machine) is a
                          # real return over a longer step, not an outage, and must not cost w750 of warm-up
CARRY_SCANS = 2           # scans a missing symbol keeps its last price before it is excluded
PARTIAL_FRAC = 0.5        # a scan with fewer than this share of symbols priced is partial
GAP_HOLD_RETURNS = max(WINDOWS) + 1   # returns after a gap until w750 and its velocity are valid
ILL_GAP = 1e-6            # (λ1−λ2)/λ1 below this: the top vector is ill-determined → full eigh
DIRECT_HOLD = 60          # scans a window stays on the direct path (dsyevr, top two pairs) after its warm
                          # iteration failed, or needed eigvalsh for λ2 twice within RECUR_SCANS, before it tries warm again
RECUR_SCANS = 10
BATCH_MAX_N = 64          # up to this size the direct path runs the four windows as one batch (compiled LU);
                          # above it LAPACK's blocked solve is faster per window


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
    certificate: object = None   # precision.Certificate (arb balls) when refined


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
    gap_s: float = 0.0            # missing time before this scan (spacing beyond the cadence), 0 if none
    carried: int = 0              # symbols priced from their last price in this scan
    partial: bool = False         # fewer than PARTIAL_FRAC of the symbols had a price
    gap_hold: bool = False        # post-gap: windows not valid again yet, no entries


@dataclass
class _WindowState:
    prev_lambda: object = None  # (hi, lo) double-double
    prev_set: bytes | None = None
    history: deque = field(default_factory=lambda: deque(maxlen=INSTABILITY_SCANS))
    velocity_exact: object = None


@dataclass
class _Moments:
    """Running moments and warm-start vectors of one window (scanner.incremental)."""

    w: int
    use_s2: bool
    s1: np.ndarray
    q: np.ndarray
    bad: np.ndarray
    s2: np.ndarray
    count: int = 0                    # returns currently in the window (≤ w)
    vecs: np.ndarray | None = None    # last Ritz block (included assets × BLOCK)
    idx: np.ndarray | None = None
    since_full: int = 0
    direct_left: int = 0              # scans left on the direct path after the warm iteration did not pay
    last_l2: int = -(10 ** 9)         # return count at the last λ2-by-eigvalsh fallback


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

    def __init__(self, assets: Sequence[str], *, precision_mode: str = "arb512", solver: str = "incremental",
                 full_every: int = FULL_EVERY, direct_max_n: int = DIRECT_MAX_N, direct_hold: int = DIRECT_HOLD,
                 interval_s: float | None = None, carry_scans: int = CARRY_SCANS):
        if precision_mode not in ("arb512", "float64"):
            raise ValueError(f"precision_mode={precision_mode!r}: expected 'arb512' or 'float64'")
        if solver not in ("incremental", "full"):
            raise ValueError(f"solver={solver!r}: expected 'incremental' or 'full'")
        if full_every < 1:
            raise ValueError(f"full_every={full_every!r}: must be >= 1")
        self.assets = list(assets)
        self.n = len(self.assets)
        self.refine = precision_mode == "arb512"
        self.certify = self.refine and precision.HAVE_FLINT
        if precision_mode == "arb512" and not precision.HAVE_FLINT:
            log.warning("python-flint not importable: double-double refinement without arb certificates")
        self.solver = solver
        self.full_every = int(full_every)
        self.direct_max_n = int(direct_max_n)
        self.direct_hold = int(direct_hold)
        # Ritz block: λ1, λ2 and guards covering the sector modes under λ2 (at most a third of the assets)
        self.block = max(4, min(inc.BLOCK, self.n // 3))
        self.expand = inc.EXPAND
        self._last = np.full(self.n, np.nan)          # latest price row
        self._rows = 0
        self._L = HISTORY_ROWS - 1
        self._rb = np.full((self.n, 2 * self._L), np.nan)   # doubled ring of returns: windows are slices
        # the same ring time-major for the precision stage's moment pass (runs across assets)
        self._rbt = np.full((2 * self._L, self.n), np.nan) if self.refine else None
        self._nret = 0                                 # real returns appended so far
        self._state = {w: _WindowState() for w in WINDOWS}
        self._mom = {}
        for w in WINDOWS:
            # S2 (primal C) where the small batch needs it, the direct path works on C (W ≥ N) or the warm
            # iteration applies C (2W ≥ N, only above direct_max_n); the direct path on W < N uses the dual ZᵀZ/W
            s2 = solver == "incremental" and (self.n <= BATCH_MAX_N or w >= self.n
                                             or (2 * w >= self.n and self.n > direct_max_n))
            self._mom[w] = _Moments(w, s2, np.zeros(self.n), np.zeros(self.n), np.zeros(self.n, dtype=np.int64),
                                    np.zeros((self.n, self.n) if s2 else (1, 1)))
        self.fallbacks = 0                              # refined → float64 fallbacks (heartbeat)
        self.stats = {"direct": 0, "warm": 0, "iterations": 0, "cold": 0, "set_changed": 0, "schedule": 0,
                      "not_converged": 0, "ill_conditioned": 0, "direct_fallback": 0, "lambda2_eigvalsh": 0,
                      "wide_certificates": 0}
        self._wide_logged = -1
        self.interval_ns: int | None = None
        self.set_cadence(interval_s)
        self.carry_scans = int(carry_scans)
        self._miss = np.zeros(self.n, dtype=np.int64)   # consecutive scans each symbol had no price
        self._gap_next = False                           # the next return crosses a gap
        self._hold = 0                                   # scans left under gap_hold
        self.gaps = 0                                    # spacing gaps seen

    def set_cadence(self, interval_s: float | None) -> None:
        """Set the scan cadence the spacing-gap rule uses (None: no spacing check) and forget the last timestamp."""
        if interval_s is not None and not interval_s > 0:
            raise ValueError(f"interval_s={interval_s!r}: must be > 0")
        self.interval_ns = None if interval_s is None else int(round(interval_s * 1e9))
        self._prev_ts: int | None = None

    def mark_gap(self) -> None:
        """Make the next return a gap return (non-finite for every asset): windows refill after it."""
        self._gap_next = True
        self._hold = GAP_HOLD_RETURNS
        self.gaps += 1

    @property
    def rows(self) -> int:
        return self._rows

    def _window_block(self, w: int) -> np.ndarray:
        end = (self._nret - 1) % self._L + self._L + 1
        return self._rb[:, end - w:end]

    def append(self, prices: Sequence[float | None]) -> None:
        """Add one price row to the history without computing a scan (backfill)."""
        row = np.array([np.nan if p is None else float(p) for p in prices], dtype=np.float64)
        if row.shape[0] != self.n:
            raise ValueError(f"expected {self.n} prices, got {row.shape[0]}")
        self._append_row(row)

    def _append_row(self, row: np.ndarray) -> None:
        prev = self._last
        self._last = row
        self._rows = min(self._rows + 1, HISTORY_ROWS)
        if self._rows == 1 and self._nret == 0:
            return
        x = kernels.log_returns(np.vstack((prev, row)))[:, 0]
        if self._gap_next:
            x = np.full(self.n, np.nan)
            self._gap_next = False
        j = self._nret
        slot = j % self._L
        if self.solver == "incremental":
            for w in WINDOWS:
                m = self._mom[w]
                has_old = m.count >= w
                old = self._rb[:, (j - w) % self._L] if has_old else x
                inc.update_moments(m.s1, m.q, m.bad, m.s2, x, old, has_old, m.use_s2)
                if not has_old:
                    m.count += 1
        self._rb[:, slot] = x
        self._rb[:, slot + self._L] = x
        if self._rbt is not None:
            self._rbt[slot] = x
            self._rbt[slot + self._L] = x
        self._nret += 1

    def enhance(self, prices: Sequence[float | None], timestamp_ns: int) -> ScanResult:
        """Append this scan's prices and compute all four windows in one pass (gap rules: module doc)."""
        if len(prices) != self.n:
            raise ValueError(f"expected {self.n} prices, got {len(prices)}")
        gap_s = 0.0
        ts = int(timestamp_ns)
        if self.interval_ns is not None and self._prev_ts is not None:
            step = ts - self._prev_ts
            if step > max(GAP_FACTOR * self.interval_ns, MIN_GAP_S * 1e9):
                gap_s = (step - self.interval_ns) / 1e9
                self.mark_gap()
                log.warning("scan input gap: %.1fs since the previous scan (cadence %.1fs); windows refill "
                            "from here, entries held for %d scans", step / 1e9, self.interval_ns / 1e9,
                            GAP_HOLD_RETURNS)
        self._prev_ts = ts
        row = np.array([np.nan if p is None else float(p) for p in prices], dtype=np.float64)
        miss = ~np.isfinite(row)
        priced = self.n - int(np.count_nonzero(miss))
        partial = priced < PARTIAL_FRAC * self.n
        carry = miss & (self._miss < self.carry_scans) & np.isfinite(self._last)
        carried = int(np.count_nonzero(carry))
        if carried:
            row[carry] = self._last[carry]
        self._miss[miss] += 1
        self._miss[~miss] = 0
        if partial and self._hold < self.carry_scans + 2:
            self._hold = self.carry_scans + 2
        self._append_row(row)
        hold = self._hold > 0
        if self._hold > 0:
            self._hold -= 1
        n_ret = min(self._nret, self._L)
        warm = [w for w in WINDOWS if w <= n_ret]
        results = {w: WindowResult() for w in WINDOWS}
        exact: dict[int, object] = {}
        if warm:
            eig = self._eig_full(warm) if self.solver == "full" else self._eig_incremental(warm)
            if self.refine and eig:   # the double-double stage of every window in one compiled call
                ws = list(eig)
                parts = list(eig.values())
                offsets = np.zeros(len(ws) + 1, dtype=np.int64)
                offsets[1:] = np.cumsum([p[0].size for p in parts])
                rows = np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False)
                vecs = np.concatenate([p[2] for p in parts])
                stage = precision.refine_windows(self._rb, self._rbt, (self._nret - 1) % self._L + self._L + 1,
                                                 np.array(ws, dtype=np.int64), rows, offsets, vecs)
                self._stage = dict(zip(ws, stage.tolist()))
            for w, (idx, evals, evecs) in eig.items():
                exact[w] = self._window(w, idx, evals, evecs, results[w])
        for w in WINDOWS:
            self._advance(w, results[w], exact.get(w))
        r50, r750 = results[50], results[750]
        vel_div = None
        if r50.velocity is not None and r750.velocity is not None:
            vel_div = precision.to_float(precision.dd_sub(self._vel(50), self._vel(750)))
        regime = None
        if r50.lambda_max is not None and r750.lambda_max is not None:
            d = r50.lambda_max - r750.lambda_max
            regime = 1.0 if d > REGIME_BAND else (-1.0 if d < -REGIME_BAND else 0.0)
        inst = [results[w].instability for w in WINDOWS if results[w].instability is not None]
        composite = float(np.mean(inst)) if inst else None
        price_list = self._last.tolist()
        bad = ~np.isfinite(self._last)
        if bad.any():
            for i in np.flatnonzero(bad).tolist():
                price_list[i] = None
        return ScanResult(
            timestamp_ns=int(timestamp_ns), assets=list(self.assets), prices=price_list,
            windows=results, vel_div=vel_div, regime_signal=regime, instability_composite=composite,
            n_assets=self.n - int(np.count_nonzero(bad)),
            warm_windows=[w for w in WINDOWS if results[w].lambda_max is not None],
            gap_s=gap_s, carried=carried, partial=partial, gap_hold=hold)

    # ── eigen decompositions ───────────────────────────────────────────────────────────────
    def _eig_full(self, warm: list[int]) -> dict:
        """From scratch: nested correlations + LAPACK per window (the pre-issue-16 computation)."""
        rt = np.ascontiguousarray(self._window_block(max(warm)))
        corr, valid = kernels.nested_correlations(rt, np.array(warm, dtype=np.int64))
        eig = {}
        for k, w in enumerate(warm):
            idx = np.flatnonzero(valid[k])
            if idx.size < MIN_ASSETS:
                continue
            if w < idx.size:
                evals, evecs = _dual_top2(rt[idx, -w:])
            else:
                evals, evecs = np.linalg.eigh(corr[k][np.ix_(idx, idx)])
            eig[w] = (idx, evals[::-1][:2].copy(), np.ascontiguousarray(evecs[:, ::-1][:, :2]))
        return eig

    def _eig_incremental(self, warm: list[int]) -> dict:
        eig = {}
        batch: list = []                      # small windows solved together after the loop
        for k, w in enumerate(warm):
            m = self._mom[w]
            idx = inc.valid_assets(m.q, m.s1, m.bad, w, kernels.VAR_EPS)
            if idx.size < MIN_ASSETS:
                m.vecs = m.idx = None
                continue
            reason = None
            if m.vecs is None:
                reason = "cold"
            elif m.idx.shape != idx.shape or not np.array_equal(m.idx, idx):
                reason = "set_changed"
            elif m.since_full >= self.full_every:
                reason = "schedule"
                s1, q, bad, s2 = inc.moments_from_scratch(np.ascontiguousarray(self._window_block(w)), m.use_s2)
                m.s1, m.q, m.bad = s1, q, bad
                if m.use_s2:
                    m.s2 = s2
            got = None
            small = idx.size <= self.direct_max_n
            if m.direct_left > 0:
                m.direct_left -= 1
            direct = reason is None and (small or m.direct_left > 0)
            batchable = reason is None and small and idx.size <= BATCH_MAX_N and m.use_s2 and m.vecs.shape[1] >= 2
            c = z = None
            if m.use_s2 and not (direct and not batchable and w < idx.size):   # the direct path on the dual needs no C
                c = inc.corr_from_moments(m.s2, m.s1, m.q, idx, w)
                apply = c.__matmul__
            else:
                z = self._z(w, idx)

                def apply(v, z=z, w=w):
                    return z @ (z.T @ v) / w
            if batchable:
                batch.append((w, idx, c))
                continue
            if direct:
                # LAPACK dsyevr on the top two: for small sets, and for a while after the warm
                # iteration did not pay (λ2 in the noise bulk, a weak market factor: see DIRECT_HOLD)
                if z is None and w < idx.size:
                    z = self._z(w, idx)
                d = inc.direct_top2(c, z, m.vecs, self.refine)
                if d is not None:
                    th, v = d
                    self.stats["direct"] += 1
                    m.since_full += 1
                    if small:
                        m.vecs = v
                    else:                        # keep the warm block fresh for the next warm attempt
                        m.vecs = np.linalg.qr(np.hstack((v[:, :2 if self.refine else 1],
                                                         m.vecs[:, 2 if self.refine else 1:])))[0]
                    m.idx = idx
                    eig[w] = (idx, th, v)
                    continue
                reason = "direct_fallback"
            if reason is None:
                got = inc.warm_top(apply, m.vecs, scale=float(idx.size), expand=self.expand)
                if got is None:
                    reason = "not_converged"
                    m.direct_left = self.direct_hold
                elif got[0][0] - got[0][1] < ILL_GAP * got[0][0]:
                    reason = "ill_conditioned"
            if reason is None:
                th, vecs = got[0], got[1]
                if not got[4]:
                    th = th.copy()
                    th[1] = inc.lambda2(c, z if z is not None else self._z(w, idx))
                    self.stats["lambda2_eigvalsh"] += 1
                    if self._nret - m.last_l2 <= RECUR_SCANS:   # λ2 keeps needing eigvalsh: go direct for a while
                        m.direct_left = self.direct_hold
                    m.last_l2 = self._nret
                m.since_full += 1
                self.stats["warm"] += 1
                self.stats["iterations"] += got[3]
            else:
                th, vecs = inc.full_top(c, z, self.block)
                if vecs.shape[1] < self.block:   # fewer assets than the block: pad with orthogonal columns
                    vecs = np.linalg.qr(np.hstack((vecs, np.random.default_rng(0).standard_normal(
                        (vecs.shape[0], self.block - vecs.shape[1])))))[0]
                self.stats[reason] += 1
                if reason == "direct_fallback":
                    m.since_full += 1
                    m.vecs, m.idx = vecs, idx
                    eig[w] = (idx, th[:2].copy(), np.ascontiguousarray(vecs[:, :2]))
                    continue
                # stagger the schedule of the four windows so their full decompositions never coincide
                m.since_full = 0 if reason == "schedule" else (k * self.full_every) // len(WINDOWS)
            m.vecs, m.idx = vecs, idx
            eig[w] = (idx, th[:2].copy(), np.ascontiguousarray(vecs[:, :2]))
        if batch:
            self._direct_batch(batch, eig)
        return {w: eig[w] for w in warm if w in eig}

    def _direct_batch(self, batch: list, eig: dict) -> None:
        """Small windows of equal size: eigvalsh and inverse iteration stacked (inc.direct_top2_batch)."""
        sizes: dict[int, list] = {}
        for item in batch:
            sizes.setdefault(item[1].size, []).append(item)
        for items in sizes.values():
            got = inc.direct_top2_batch(np.stack([c for _, _, c in items]),
                                        np.stack([self._mom[w].vecs[:, :2] for w, _, _ in items]), self.refine)
            for (w, idx, c), d in zip(items, got):
                m = self._mom[w]
                if d is None:
                    d = inc.direct_top2(c, None, m.vecs, self.refine)
                if d is None:
                    th, vecs = inc.full_top(c, None, self.block)
                    self.stats["direct_fallback"] += 1
                    d = (th[:2].copy(), np.ascontiguousarray(vecs[:, :2]))
                else:
                    self.stats["direct"] += 1
                m.since_full += 1
                m.vecs, m.idx = d[1], idx
                eig[w] = (idx, d[0], d[1])

    def _z(self, w: int, idx: np.ndarray) -> np.ndarray:
        """Standardised returns Z (included assets × W) of window ``w`` from its moments."""
        m = self._mom[w]
        end = (self._nret - 1) % self._L + self._L + 1
        return inc.standardised_rows(self._rb, idx, end - w, w, m.s1, m.q)

    # ── internals ──────────────────────────────────────────────────────────────────────────
    def _window(self, w: int, idx: np.ndarray, evals: np.ndarray, evecs: np.ndarray, res: WindowResult):
        n = idx.size
        sign = -1.0 if evecs[:, 0].sum() < 0.0 else 1.0
        v1 = evecs[:, 0] * sign
        lam1 = (float(evals[0]) / n, 0.0)
        lam2 = (float(evals[1]) / n, 0.0)
        if self.refine:
            st = self._stage[w]       # precision.STAGE_FIELDS
            l1 = (st[18], st[19])
            l2 = (st[20], st[21])
            if math.isfinite(l1[0]) and math.isfinite(l2[0]) and abs(l1[0] - lam1[0]) <= 1e-8 * max(lam1[0], 1e-300):
                lam1, lam2 = l1, l2
                res.refined = True
                if self.certify:
                    cert = precision.certify_values(*st[:18], n)
                    res.certificate = cert
                    if cert is None or cert.rel_width > precision.WIDE:
                        self.stats["wide_certificates"] += 1
                        if self._wide_logged < 0 or self._nret - self._wide_logged >= 720:
                            self._wide_logged = self._nret
                            log.warning("w%d: eigenvalue enclosure %s (relative width %s; residuals %s): "
                                        "its digits beyond that width are not certified", w,
                                        "unavailable" if cert is None else "wide",
                                        None if cert is None else f"{cert.rel_width:.1e}", st[12:14])
            else:
                self.fallbacks += 1
        res.lambda_max = precision.to_float(lam1)
        res.eigengap = precision.to_float(precision.dd_sub(lam1, lam2))
        if n == self.n:                  # every asset included (idx is 0..n-1): the vector as it is
            load: list = v1.tolist()
        else:
            load = [None] * self.n
            for i, v in zip(idx.tolist(), v1.tolist()):
                load[i] = v
        res.loadings = load
        res.n_assets = int(n)
        mask = np.zeros(self.n, dtype=np.bool_)
        mask[idx] = True
        return lam1, mask.tobytes()

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
            vel = precision.dd_sub(lam, st.prev_lambda)
            st.velocity_exact = vel
            res.velocity = precision.to_float(vel)
        else:
            st.history.clear()
        st.history.append(lam)
        st.prev_lambda, st.prev_set = lam, cur_set
        if len(st.history) == INSTABILITY_SCANS:
            res.instability = precision.dd_population_std(list(st.history))
