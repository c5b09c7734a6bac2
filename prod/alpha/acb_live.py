"""The ACB processor's live state machine, pure (bible §10.5, §16.4): what ``services.acb_processor``
recomputes between bus events, and what the backtest replays to see the sub-day ACB updates.

Design notes: ``docs/design/prod.alpha.md``.
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from prod.alpha import acb
from prod.alpha.params import AcbParams

__all__ = ["LiveAcb", "AcbWrite", "percentile_linear", "replay_updates", "DEFAULT_EXF_WINDOW",
           "DEFAULT_SCAN_HISTORY", "DEFAULT_MIN_SCANS", "DEFAULT_W750_RECENT"]

DEFAULT_EXF_WINDOW = 10
DEFAULT_SCAN_HISTORY = 17_280
DEFAULT_MIN_SCANS = 50
DEFAULT_W750_RECENT = 10


def percentile_linear(sorted_vals: Sequence[float], pct: float) -> float | None:
    """``np.percentile(vals, pct)`` (method ``linear``) of already sorted finite values, same float result."""
    n = len(sorted_vals)
    if n == 0:
        return None
    q = pct / 100
    vi = (n - 1) * q
    lo = math.floor(vi)
    if vi >= n - 1:
        return float(sorted_vals[n - 1])
    gamma = vi - lo
    a, b = float(sorted_vals[lo]), float(sorted_vals[lo + 1])
    diff = b - a
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma


def _median(vals: list[float]) -> float | None:
    """``np.median`` of finite values (None when empty), same float result."""
    if not vals:
        return None
    s = sorted(vals)
    n = len(s)
    if n % 2:
        return float(s[n // 2])
    return (s[n // 2 - 1] + s[n // 2]) / 2.0     # np.mean of two float64: their sum over 2


def _finite(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class LiveAcb:
    """The acb_processor's inputs and its computation (see the module doc)."""

    def __init__(self, exf_window: int = DEFAULT_EXF_WINDOW, scan_history: int = DEFAULT_SCAN_HISTORY,
                 min_scans: int = DEFAULT_MIN_SCANS, w750_recent: int = DEFAULT_W750_RECENT,
                 params: AcbParams = acb.DEFAULT_PARAMS) -> None:
        if min(exf_window, scan_history, min_scans, w750_recent) < 1:
            raise ValueError("LiveAcb: windows must be >= 1")
        self.exf_window, self.scan_history, self.min_scans, self.w750_recent = (
            exf_window, scan_history, min_scans, w750_recent)
        self.params = params
        self.exf: deque[dict] = deque(maxlen=exf_window)
        self.last_exf_at: float | None = None
        self.w750: deque[float] = deque(maxlen=scan_history)
        self._sorted: list[float] = []          # the finite values of self.w750, sorted
        self.last_scan: Any = None
        self.regime_signal: Any = None
        self._factors: acb.ExternalFactors | None = None
        self._scale1: tuple[float, float] | None = None     # (boost, signals) of the current window

    # ---- inputs (each returns whether the inputs changed)
    def add_exf(self, pushed_at: float | None, values: Mapping[str, Any]) -> bool:
        if pushed_at == self.last_exf_at:
            return False
        self.last_exf_at = pushed_at
        self.exf.append({k: values.get(k) for k in acb.FACTOR_NAMES})
        self._factors = self._scale1 = None
        return True

    def seed_exf(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Put history rows (oldest first) into the window without the ``_pushed_at`` check; return how many."""
        rows = list(rows)[-self.exf_window:]
        for r in rows:
            self.exf.append({k: r.get(k) for k in acb.FACTOR_NAMES})
        self._factors = self._scale1 = None
        return len(rows)

    def add_scan(self, scan_number: Any, w750: Any) -> bool:
        if scan_number == self.last_scan:
            return False
        self.last_scan = scan_number
        if w750 is None:
            return False
        v = float(w750)
        if len(self.w750) == self.scan_history:
            old = self.w750[0]
            if math.isfinite(old):
                del self._sorted[bisect.bisect_left(self._sorted, old)]
        self.w750.append(v)
        if math.isfinite(v):
            bisect.insort(self._sorted, v)
        return True

    def add_regime(self, regime_signal: Any) -> bool:
        if regime_signal == self.regime_signal:
            return False
        self.regime_signal = regime_signal
        return True

    # ---- outputs
    def factors(self) -> acb.ExternalFactors:
        if self._factors is None:
            self._factors = acb.daily_factors(list(self.exf), self.params) if self.exf else acb.ExternalFactors()
        return self._factors

    def threshold(self) -> float | None:
        """The 60th percentile of the finite history once it holds ``min_scans`` entries, else None."""
        if len(self.w750) < self.min_scans:
            return None
        return percentile_linear(self._sorted, self.params.w750_threshold_pct)

    def w750_now(self) -> float | None:
        if not self.w750:
            return None
        k = min(self.w750_recent, len(self.w750))
        w = self.w750
        return _median([v for v in (w[-1 - j] for j in range(k)) if math.isfinite(v)])

    def compute(self) -> tuple[acb.AcbResult, dict]:
        """Return the ACB result of the current inputs and the inputs as the processor records them."""
        factors = self.factors()
        thr = self.threshold()
        w_now = self.w750_now()
        stress = acb.ob_stress_from_regime(self.regime_signal)
        res = acb.compute_acb(factors, w_now, thr, stress, self.params)
        inputs = {"factors": factors.to_dict(), "w750_vel": w_now, "w750_threshold": thr, "ob_stress": stress,
                  "regime_signal": self.regime_signal, "n_exf": len(self.exf), "n_scans": len(self.w750),
                  "rule": f"median of last {self.exf_window} exf snapshots; w750 p60 over {len(self.w750)} scans"}
        return res, inputs

    def decision(self) -> tuple[float, float, float]:
        """``(boost, beta, signals)`` of the current inputs — :meth:`compute`'s, without building the record:
        what decides whether the processor writes (the replay asks it after every bar)."""
        if self._scale1 is None:
            r = acb.compute_acb(self.factors(), None, None, 0.0, self.params)
            self._scale1 = (r.boost, r.signals)
        p = self.params
        beta = acb.ob_beta_modulation(acb.dynamic_beta(self.w750_now(), self.threshold(), p),
                                      acb.ob_stress_from_regime(self.regime_signal), p)
        return self._scale1[0], beta, self._scale1[1]


@dataclass(frozen=True)
class AcbWrite:
    """One ``acb_boost`` write of the replayed processor: made at ``t`` (s), landing before bar ``bar``."""

    t: float
    bar: int
    boost: float
    beta: float
    signals: float
    cause: str            # "exf" or "scan"


def replay_updates(state: LiveAcb, last: tuple[float, float, float] | None, exf_rows: Sequence[Mapping[str, Any]],
                   ts_s: np.ndarray, scan_numbers: Sequence[Any], w750: Sequence[float],
                   ) -> tuple[list[AcbWrite], tuple[float, float, float] | None]:
    """Feed one day's recorded inputs through ``state`` in time order; return its writes and the last one.

    ``exf_rows`` are ExF history rows (``ts`` seconds + the four factors) with ``ts`` up to the day's last bar;
    ``ts_s``, ``scan_numbers`` and ``w750`` are the day's bars. An exf row at the same time as a bar comes
    first. ``last`` is the decision last written (carried from the day before; None at the start).
    """
    writes: list[AcbWrite] = []
    rows = sorted(exf_rows, key=lambda r: float(r["ts"]))
    n = len(ts_s)
    k = 0

    def emit(t: float, bar: int, cause: str) -> None:
        nonlocal last
        d = state.decision()
        if d != last:
            last = d
            writes.append(AcbWrite(t, bar, d[0], d[1], d[2], cause))

    for i in range(n):
        t_bar = float(ts_s[i])
        while k < len(rows) and float(rows[k]["ts"]) <= t_bar:
            r = rows[k]
            k += 1
            if state.add_exf(float(r["ts"]), r):
                emit(float(r["ts"]), i if float(r["ts"]) < t_bar else i + 1, "exf")
        if state.add_scan(scan_numbers[i], w750[i]):
            emit(t_bar, i + 1, "scan")
    while k < len(rows):     # rows after the last bar (same day): they land on the next day's first bar
        r = rows[k]
        k += 1
        if state.add_exf(float(r["ts"]), r):
            emit(float(r["ts"]), n, "exf")
    return writes, last
