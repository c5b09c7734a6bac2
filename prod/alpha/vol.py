"""The one volatility gate `vol_regime_ok` of DOLPHIN (bible §13.1, §25): rolling 50-bar BTC return
volatility ("dvol") compared with a 60th-percentile threshold, at 512-bit precision with python-flint
(float64 fallback). The live trader and the backtest both use :class:`VolGate`; the array functions
below are its batch form (same formula, same numbers).

Design notes: ``docs/design/prod.alpha.md``.
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any, Optional

import numpy as np
from prod.alpha.jit import njit

DVOL_WINDOW = 50
VOL_PCT = 60.0


@njit(cache=True)
def rolling_dvol_f64(prices, window):
    """Return the rolling population std of simple returns (float64; NaN until `window` returns)."""
    n = prices.shape[0]
    out = np.full(n, np.nan)
    for t in range(window, n):
        s = 0.0
        s2 = 0.0
        ok = True
        for i in range(t - window + 1, t + 1):
            p0 = prices[i - 1]
            p1 = prices[i]
            if not (p0 > 0.0 and p0 < np.inf and p1 > 0.0 and p1 < np.inf):
                ok = False
                break
            r = (p1 - p0) / p0
            s += r
            s2 += r * r
        if ok:
            m = s / window
            v = s2 / window - m * m
            out[t] = math.sqrt(v) if v > 0.0 else 0.0
    return out


def rolling_dvol_arb512(prices: np.ndarray, window: int = DVOL_WINDOW) -> Optional[np.ndarray]:
    """Return the rolling dvol computed in 512-bit arb arithmetic, or None without python-flint."""
    try:
        from flint import arb, ctx
    except ImportError:
        return None
    old = ctx.prec
    ctx.prec = 512
    try:
        n = len(prices)
        out = np.full(n, np.nan)
        p = [float(x) for x in prices]
        good = [math.isfinite(x) and x > 0 for x in p]
        rets: list = [None] * n
        for t in range(1, n):
            if good[t] and good[t - 1]:
                a0 = arb(p[t - 1])
                rets[t] = (arb(p[t]) - a0) / a0
        w = arb(window)
        s = arb(0)
        s2 = arb(0)
        n_bad = 0          # bad returns inside the current window
        for t in range(1, n):
            r = rets[t]
            if r is None:
                n_bad += 1
            else:
                s += r
                s2 += r * r
            if t > window:
                old_r = rets[t - window]
                if old_r is None:
                    n_bad -= 1
                else:
                    s -= old_r
                    s2 -= old_r * old_r
            if t >= window and n_bad == 0:
                m = s / w
                fv = float((s2 / w - m * m).mid())
                out[t] = math.sqrt(fv) if fv > 0 else 0.0
        return out
    finally:
        ctx.prec = old


def vol_threshold(dvols: np.ndarray, pct: float = VOL_PCT) -> float:
    """Return the `pct` percentile of the finite dvol values (NaN when there are none)."""
    d = np.asarray(dvols, dtype=np.float64)
    d = d[np.isfinite(d)]
    return float(np.percentile(d, pct)) if d.size else float("nan")


def vol_regime_mask(btc_prices: np.ndarray, threshold: float, window: int = DVOL_WINDOW,
                    precise: bool = True) -> np.ndarray:
    """Return vol_ok per bar: dvol > threshold (512-bit primary, float64 fallback, §25.5)."""
    prices = np.asarray(btc_prices, dtype=np.float64)
    dvol = rolling_dvol_arb512(prices, window) if precise else None
    if dvol is None:
        dvol = rolling_dvol_f64(prices, window)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(dvol), dvol > threshold, False)


def _flint():
    try:
        from flint import arb, ctx
    except ImportError:
        return None, None
    return arb, ctx


def _good(p: Any) -> float | None:
    """Return ``p`` as a positive finite float, else None (a bad bar)."""
    if p is None or isinstance(p, bool):
        return None
    try:
        v = float(p)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


class VolGate:
    """Streaming ``vol_regime_ok``: one BTC price per bar in, the gate of that bar out.

    ``update(price)`` computes dvol exactly as :func:`rolling_dvol_arb512` does for the same series
    (same running sums, same order of operations, so the same float), then compares it with the
    threshold (fixed, or learned from the previous bars; see the module docstring). A missing or
    bad price is a bad bar: the gate stays closed until the window holds `window` good returns again.
    ``state()`` / ``restore()`` carry the window and the threshold history across a restart.
    """

    STATE_VERSION = 2

    def __init__(self, window: int = DVOL_WINDOW, pct: float = VOL_PCT, threshold: float | None = None,
                 min_history: int = 10, max_history: int = 5000, precise: bool = True):
        if window < 2 or not 0 < pct < 100 or min_history < 1 or max_history < min_history:
            raise ValueError(f"VolGate: bad parameters window={window} pct={pct} "
                             f"min_history={min_history} max_history={max_history}")
        self.window, self.pct, self.threshold = int(window), float(pct), threshold
        self.min_history, self.max_history = int(min_history), int(max_history)
        self._arb, self._ctx = _flint() if precise else (None, None)
        self.precise = self._arb is not None
        self._reset_window()
        self._hist: deque = deque()
        self._sorted: list[float] = []
        self.last_dvol = float("nan")
        self.bars = 0

    def _reset_window(self) -> None:
        self._prices: deque = deque(maxlen=self.window + 1)   # last window+1 prices (None = bad)
        self._rets: deque = deque()                            # returns of the window (None = bad)
        self._n = 0                                            # returns seen (t of the batch form)
        self._n_bad = 0
        z = self._arb(0) if self.precise else 0.0
        self._s, self._s2 = z, z

    # ── dvol ──────────────────────────────────────────────────────────────────────────────
    def _push(self, price: float | None) -> float:
        """Extend the window by one bar; return its dvol (NaN when not defined)."""
        prev = self._prices[-1] if self._prices else None
        first = not self._prices
        self._prices.append(price)
        if first:
            return float("nan")
        arb = self._arb
        old_prec = None
        if arb is not None:
            old_prec, self._ctx.prec = self._ctx.prec, 512
        try:
            if price is not None and prev is not None:
                if arb is not None:
                    a0 = arb(prev)
                    r = (arb(price) - a0) / a0
                else:
                    r = (price - prev) / prev
            else:
                r = None
            self._n += 1
            self._rets.append(r)
            if r is None:
                self._n_bad += 1
            else:
                self._s += r
                self._s2 += r * r
            if self._n > self.window:
                old_r = self._rets.popleft()
                if old_r is None:
                    self._n_bad -= 1
                else:
                    self._s -= old_r
                    self._s2 -= old_r * old_r
            if self._n < self.window or self._n_bad:
                return float("nan")
            if arb is not None:
                m = self._s / arb(self.window)
                fv = float((self._s2 / arb(self.window) - m * m).mid())
            else:
                m = self._s / self.window
                fv = self._s2 / self.window - m * m
            return math.sqrt(fv) if fv > 0 else 0.0
        finally:
            if old_prec is not None:
                self._ctx.prec = old_prec

    def current_threshold(self) -> float | None:
        """The threshold the next bar is compared with (None while too little history)."""
        if self.threshold is not None:
            return self.threshold
        n = len(self._sorted)
        if n < self.min_history:
            return None
        return self._sorted[min(n - 1, int(self.pct / 100.0 * n))]

    def update(self, price: Any) -> bool:
        """Feed the bar's BTC price (None / NaN / ≤ 0 = a bad bar); return ``vol_regime_ok``."""
        self.bars += 1
        dvol = self._push(_good(price))
        self.last_dvol = dvol
        if not math.isfinite(dvol):
            return False
        thr = self.current_threshold()
        ok = thr is not None and dvol > thr
        if self.threshold is None:
            if len(self._hist) == self.max_history:
                old = self._hist.popleft()
                del self._sorted[bisect.bisect_left(self._sorted, old)]
            self._hist.append(dvol)
            bisect.insort(self._sorted, dvol)
        return ok

    # ── restart state ─────────────────────────────────────────────────────────────────────
    def state(self) -> dict:
        """JSON-ready state: the window's prices and the threshold history."""
        return {"v": self.STATE_VERSION, "window": self.window, "prices": list(self._prices),
                "hist": list(self._hist)}

    def restore(self, st: dict) -> None:
        """Rebuild from :meth:`state` (returns recomputed from the prices at 512 bits).

        A state of the previous trader gate (``last_price`` / ``rets``: log returns of another
        formula) keeps its threshold history and restarts the window from its last price.
        """
        self._reset_window()
        self._hist.clear()
        for v in st.get("hist", [])[-self.max_history:]:
            fv = float(v)
            if math.isfinite(fv):
                self._hist.append(fv)
        self._sorted = sorted(self._hist)
        if st.get("v") == self.STATE_VERSION and int(st.get("window", -1)) == self.window:
            for p in [_good(p) for p in st.get("prices", [])][-(self.window + 1):]:
                self._push(p)
        else:
            self._push(_good(st.get("last_price")))


# ── the batch form for a replay: VolGate's decisions, a day at a time, in compiled code ─────────
_ERR_REL = 1e-12          # bound on the relative error of the float64 window variance (≈200 ulp; see BatchVolGate)


@njit(cache=True)
def _dvol_window_f64(ext, start, window):
    """dvol (float64, each window summed afresh) and its error bound for the bars ext[start:].

    ``ext`` holds the prior ``window`` prices (NaN = bad / none) followed by the new bars.
    Returns (dvol, err): dvol NaN where the window holds a bad price.
    """
    m_ = ext.shape[0]
    r = np.zeros(m_)
    bad = np.zeros(m_ + 1, np.int64)          # bad[i+1] = bad returns among r[1..i]
    bad[1] = 1
    for i in range(1, m_):
        p0 = ext[i - 1]
        p1 = ext[i]
        if p0 > 0.0 and p0 < np.inf and p1 > 0.0 and p1 < np.inf:
            r[i] = (p1 - p0) / p0
            bad[i + 1] = bad[i]
        else:
            bad[i + 1] = bad[i] + 1
    n = m_ - start
    d = np.full(n, np.nan)
    err = np.zeros(n)
    for t in range(n):
        e = start + t
        if e < window or bad[e + 1] - bad[e - window + 1] > 0:
            continue
        s = 0.0
        s2 = 0.0
        for i in range(e - window + 1, e + 1):
            s += r[i]
            s2 += r[i] * r[i]
        m = s / window
        v = s2 / window - m * m
        big = _ERR_REL * (s2 / window) + 1e-300
        if v > 0.0:
            dv = math.sqrt(v)
            err[t] = min(math.sqrt(big), big / dv) + 1e-15 * dv
            d[t] = dv
        else:
            d[t] = 0.0
            err[t] = math.sqrt(big)
    return d, err


@njit(cache=True)
def _learned_gate(d, err, hist, hist_err_max, min_history, max_history, pct):
    """Decisions of the learned-threshold gate over one day; (ok, index of the first close call or -1, new hist).

    ``hist`` is the FIFO of the previous finite dvols (oldest first).  The order statistic is kept
    in a Fenwick tree over the ranks of every value the day can hold.
    """
    n = d.shape[0]
    h0 = hist.shape[0]
    nf = 0
    for t in range(n):
        if d[t] == d[t]:
            nf += 1
    uni = np.empty(h0 + nf)
    uni[:h0] = hist
    k = h0
    emax = hist_err_max
    for t in range(n):
        if d[t] == d[t]:
            uni[k] = d[t]
            k += 1
            if err[t] > emax:
                emax = err[t]
    U = uni.shape[0]
    order = np.argsort(uni, kind="mergesort")
    rank = np.empty(U, np.int64)
    for r in range(U):
        rank[order[r]] = r
    tree = np.zeros(U + 1, np.int64)
    fifo = np.empty(U, np.int64)            # universe indices in arrival order
    head = 0
    tail = 0
    for i in range(h0):
        j = rank[i] + 1
        while j <= U:
            tree[j] += 1
            j += j & (-j)
        fifo[tail] = i
        tail += 1
    logU = 1
    while (1 << logU) <= U:
        logU += 1
    ok = np.zeros(n, np.bool_)
    close = -1
    u = h0
    for t in range(n):
        v = d[t]
        if v != v:
            continue
        cnt = tail - head
        if cnt >= min_history:
            kk = min(cnt - 1, int(pct / 100.0 * cnt))
            # (kk+1)-th smallest rank: Fenwick descent
            pos = 0
            rem = kk + 1
            step = 1 << (logU - 1)
            while step > 0:
                nxt = pos + step
                if nxt <= U and tree[nxt] < rem:
                    pos = nxt
                    rem -= tree[nxt]
                step >>= 1
            thr = uni[order[pos]]
            ok[t] = v > thr
            if close < 0 and abs(v - thr) <= err[t] + emax + 1e-300:
                close = t
        if cnt == max_history:
            old = fifo[head]
            head += 1
            j = rank[old] + 1
            while j <= U:
                tree[j] -= 1
                j += j & (-j)
        j = rank[u] + 1
        while j <= U:
            tree[j] += 1
            j += j & (-j)
        fifo[tail] = u
        tail += 1
        u += 1
    new_hist = np.empty(tail - head)
    for i in range(head, tail):
        new_hist[i - head] = uni[fifo[i]]
    return ok, close, new_hist


class BatchVolGate:
    """:class:`VolGate`'s decisions for whole days of BTC prices at once (the backtest's form).

    ``update_many(prices)`` returns, for each price, exactly what ``VolGate.update`` would return had
    it been fed every price so far one at a time.  It computes dvol in float64 (each 50-return window
    summed afresh, in compiled code) with a bound on its error from the 512-bit value, and the learned
    threshold with a Fenwick tree over the day's values.  A decision is taken from the float64 numbers
    only when dvol and the threshold are further apart than their error bounds; at the first bar where
    they are not (a close call: in practice never, but constant prices or repeated windows make one),
    the gate replays every price it was given through a :class:`VolGate` and continues with it, so
    the answer is always the streaming gate's, bit for bit.
    """

    def __init__(self, window: int = DVOL_WINDOW, pct: float = VOL_PCT, threshold: float | None = None,
                 min_history: int = 10, max_history: int = 5000, precise: bool = True):
        self._args = dict(window=window, pct=pct, threshold=threshold, min_history=min_history,
                          max_history=max_history, precise=precise)
        self.window, self.pct, self.threshold = int(window), float(pct), threshold
        self.min_history, self.max_history = int(min_history), int(max_history)
        self._seen: list[np.ndarray] = []               # every price given (for the exact replay)
        self._tail = np.full(self.window, np.nan)       # the last `window` prices (NaN = bad / none)
        self._hist = np.empty(0)
        self._hist_err = 0.0
        self.exact: VolGate | None = None               # set once a close call made the gate replay
        self.bars = 0
        if not VolGate(**self._args).precise:
            # without flint VolGate's float64 running sums drift from the exact value: stream it as is
            self.exact = VolGate(**self._args)

    def update_many(self, prices: np.ndarray) -> np.ndarray:
        """Feed a day's BTC prices (NaN / ≤ 0 = bad bar); return vol_regime_ok per price (bool array)."""
        p = np.asarray(prices, dtype=np.float64).reshape(-1)
        n = p.shape[0]
        self.bars += n
        if self.exact is not None:
            return np.fromiter((self.exact.update(x) for x in p.tolist()), dtype=bool, count=n)
        w = self.window
        ext = np.concatenate([self._tail, p])           # NaN before the first price: no return, no dvol
        d, err = _dvol_window_f64(ext, w, w)
        if self.threshold is not None:
            thr = float(self.threshold)
            fin = np.isfinite(d)
            with np.errstate(invalid="ignore"):
                ok = fin & (d > thr)
                close_calls = np.flatnonzero(fin & (np.abs(d - thr) <= err + 1e-300))
            close = int(close_calls[0]) if close_calls.size else -1
            new_hist = self._hist
        else:
            ok, close, new_hist = _learned_gate(d, err, self._hist, self._hist_err, self.min_history,
                                                self.max_history, self.pct)
        self._seen.append(p)
        if close >= 0:
            return self._replay(p)
        self._tail = ext[-w:].copy()
        self._hist = new_hist
        if n:
            fin = np.isfinite(err)
            self._hist_err = max(self._hist_err, float(err[fin].max()) if fin.any() else 0.0)
        return ok

    def _replay(self, day: np.ndarray) -> np.ndarray:
        g = VolGate(**self._args)
        for arr in self._seen[:-1]:
            for x in arr.tolist():
                g.update(x)
        self.exact = g
        return np.fromiter((g.update(x) for x in day.tolist()), dtype=bool, count=day.shape[0])
