"""Backtest performance figures and output files: the summary JSON and the equity-curve PNG.

Definitions (so the numbers can be compared with the bible's reference run, §1):

* ``roi_pct`` — (final capital / initial capital − 1) × 100.
* ``profit_factor`` — sum of winning trade PnL / |sum of losing trade PnL|; ``null`` with no losing trade.
* ``win_rate_pct`` — share of trades with PnL > 0, in percent.
* ``sharpe`` — mean / std (ddof 1) of daily returns × √365 (crypto trades every day); ``null`` with
  fewer than 2 days or zero variance.
* ``max_drawdown_pct`` — largest peak-to-trough fall of the realised equity curve (capital after
  every closed trade and at every day end), in percent of the peak.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np


@dataclass
class Metrics:
    """Headline figures of one replay."""

    initial_capital: float
    final_capital: float
    roi_pct: float
    profit_factor: float | None
    sharpe: float | None
    max_drawdown_pct: float
    win_rate_pct: float | None
    trades: int
    days: int
    extra: dict[str, Any] = field(default_factory=dict)


def max_drawdown(equity: Sequence[float]) -> float:
    """Return the largest peak-to-trough fall of ``equity`` as a fraction of the peak (0..1)."""
    e = np.asarray(equity, dtype=np.float64)
    if e.size == 0:
        return 0.0
    peak = np.maximum.accumulate(e)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, (peak - e) / peak, 0.0)
    return float(np.max(dd))


def profit_factor(pnls: Sequence[float]) -> float | None:
    """Return gross profit / gross loss, or None when there is no loss."""
    p = np.asarray(pnls, dtype=np.float64)
    loss = -p[p < 0].sum()
    if loss <= 0:
        return None
    return float(p[p > 0].sum() / loss)


def sharpe(daily_returns: Sequence[float], periods_per_year: float = 365.0) -> float | None:
    """Return the annualised Sharpe ratio of daily returns (no risk-free rate)."""
    r = np.asarray(daily_returns, dtype=np.float64)
    if r.size < 2:
        return None
    sd = r.std(ddof=1)
    if not sd > 0:
        return None
    return float(r.mean() / sd * math.sqrt(periods_per_year))


def compute_metrics(initial_capital: float, final_capital: float, trade_pnls: Sequence[float],
                    daily_returns: Sequence[float], equity: Sequence[float]) -> Metrics:
    """Compute the headline figures from trade PnLs, daily returns and the realised equity curve."""
    pnls = np.asarray(trade_pnls, dtype=np.float64)
    n = int(pnls.size)
    return Metrics(
        initial_capital=float(initial_capital), final_capital=float(final_capital),
        roi_pct=(final_capital / initial_capital - 1.0) * 100.0 if initial_capital > 0 else 0.0,
        profit_factor=profit_factor(pnls), sharpe=sharpe(daily_returns),
        max_drawdown_pct=max_drawdown(equity) * 100.0,
        win_rate_pct=float((pnls > 0).mean() * 100.0) if n else None,
        trades=n, days=len(daily_returns),
    )


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.generic):
        return _json_safe(x.item())
    return x


def write_json_atomic(obj: Any, path: Path) -> Path:
    """Write ``obj`` as indented JSON (non-finite floats → null) via temp file + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_json_safe(obj), indent=2, sort_keys=False, allow_nan=False))
    os.replace(tmp, path)
    return path


def write_equity_png(equity_t: Sequence[float], equity: Sequence[float], path: Path,
                     title: str = "DOLPHIN backtest equity") -> Path:
    """Plot the realised equity curve (x: days since start) to a PNG with the Agg backend."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(10, 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(list(equity_t), list(equity), lw=1.2, color="#1f5fa8", drawstyle="steps-post")
    ax.set_xlabel("days")
    ax.set_ylabel("capital (USDT)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path
