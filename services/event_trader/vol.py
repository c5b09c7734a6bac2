"""vol_regime_ok for the live trader: BTC rolling 50-bar volatility at 512 bits (bible §25).

Each scan's BTC price extends a window of log returns computed with ``flint.arb`` at 512-bit
precision; the rolling standard deviation of the last 50 returns is the bar's volatility. The
regime is "ok" when that volatility exceeds the 60th percentile of the volatilities seen so far
(``VOL_P60``; the bible names the threshold but not its value, so it is learned online from this
trader's own history, at least ``min_history`` values). float64 is the guarded fallback used only
when python-flint is missing or an arb result is not finite; both give the same decisions on
ordinary prices (tests/unit/test_trader.py).
"""
from __future__ import annotations

import bisect
import math
from collections import deque

try:
    from flint import arb, ctx
    ctx.prec = 512
    HAVE_FLINT = True
except ImportError:  # pragma: no cover - flint is a declared dependency
    HAVE_FLINT = False

WINDOW = 50
PERCENTILE = 0.60


def rolling_std_arb(returns) -> float | None:
    """Sample std of arb values at 512 bits, returned as float; None if not finite."""
    n = len(returns)
    if n < 2:
        return None
    s = arb(0)
    for r in returns:
        s += r
    mean = s / n
    acc = arb(0)
    for r in returns:
        d = r - mean
        acc += d * d
    v = float((acc / (n - 1)).sqrt().mid())
    return v if math.isfinite(v) else None


def rolling_std_f64(returns) -> float | None:
    n = len(returns)
    if n < 2:
        return None
    m = sum(returns) / n
    return math.sqrt(sum((r - m) ** 2 for r in returns) / (n - 1))


class VolRegime:
    """Online vol_regime_ok from one price per bar."""

    def __init__(self, window: int = WINDOW, percentile: float = PERCENTILE, min_history: int = 10,
                 max_history: int = 5000, use_arb: bool = True):
        self.window, self.percentile, self.min_history = window, percentile, min_history
        self.use_arb = use_arb and HAVE_FLINT
        self._last_price: float | None = None
        self._rets: deque = deque(maxlen=window)
        self._rets_f: deque = deque(maxlen=window)
        self._sorted: list[float] = []
        self._hist: deque = deque(maxlen=max_history)
        self.last_vol: float | None = None

    def update(self, price) -> bool:
        """Feed the bar's BTC price (bad prices are ignored) and return vol_regime_ok."""
        try:
            p = float(price)
        except (TypeError, ValueError):
            return False
        if not (math.isfinite(p) and p > 0):
            return False
        if self._last_price is not None:
            rf = math.log(p / self._last_price)
            self._rets_f.append(rf)
            if self.use_arb:
                self._rets.append(arb(p).log() - arb(self._last_price).log())
        self._last_price = p
        if len(self._rets_f) < self.window:
            return False
        vol = rolling_std_arb(self._rets) if self.use_arb else None
        if vol is None:
            vol = rolling_std_f64(self._rets_f)
        self.last_vol = vol
        ok = False
        if len(self._sorted) >= self.min_history:
            k = min(len(self._sorted) - 1, int(self.percentile * len(self._sorted)))
            ok = vol > self._sorted[k]
        if len(self._hist) == self._hist.maxlen:
            old = self._hist[0]
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._hist.append(vol)
        bisect.insort(self._sorted, vol)
        return ok

    def state(self) -> dict:
        return {"last_price": self._last_price, "rets": list(self._rets_f), "hist": list(self._hist)}

    def restore(self, st: dict) -> None:
        """Rebuild from :meth:`state` (arb returns are recomputed from the float log returns' prices)."""
        self._last_price = st.get("last_price")
        self._rets_f.clear()
        self._rets.clear()
        for r in st.get("rets", []):
            self._rets_f.append(float(r))
            if self.use_arb:
                self._rets.append(arb(float(r)))
        self._hist.clear()
        self._sorted = []
        for v in st.get("hist", []):
            self._hist.append(float(v))
        self._sorted = sorted(self._hist)
