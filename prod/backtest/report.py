"""Backtest performance figures and output files: the summary JSON, the equity-curve PNG and an HTML report.

Design notes: ``docs/design/prod.backtest.md``.
"""
from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

SHARPE_MIN_DAYS = 30          # fewer daily returns than this: the annualised Sharpe is flagged


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
    sharpe_warning: str | None = None
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


def sharpe_warning(days: int, value: float | None, min_days: int = SHARPE_MIN_DAYS) -> str | None:
    """Return the warning for a Sharpe annualised from fewer than ``min_days`` daily returns, else None."""
    if value is None or days >= min_days:
        return None
    return (f"Sharpe {value:.2f} is annualised (x sqrt(365)) from only {days} daily return(s), fewer than "
            f"{min_days}: it is mostly noise (standard error about {math.sqrt(365.0 / max(days, 1)):.1f}); "
            f"replay at least {min_days} days before reading it")


def compute_metrics(initial_capital: float, final_capital: float, trade_pnls: Sequence[float],
                    daily_returns: Sequence[float], equity: Sequence[float]) -> Metrics:
    """Compute the headline figures from trade PnLs, daily returns and the realised equity curve."""
    pnls = np.asarray(trade_pnls, dtype=np.float64)
    n = int(pnls.size)
    sr = sharpe(daily_returns)
    return Metrics(
        initial_capital=float(initial_capital), final_capital=float(final_capital),
        roi_pct=(final_capital / initial_capital - 1.0) * 100.0 if initial_capital > 0 else 0.0,
        profit_factor=profit_factor(pnls), sharpe=sr,
        max_drawdown_pct=max_drawdown(equity) * 100.0,
        win_rate_pct=float((pnls > 0).mean() * 100.0) if n else None,
        trades=n, days=len(daily_returns),
        sharpe_warning=sharpe_warning(len(daily_returns), sr),
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


def offsets_to_datetimes(equity_t: Sequence[float], dates: Sequence[str]) -> list[datetime]:
    """Map the runner's curve positions (``k + fraction`` of day file ``k``) to UTC datetimes.

    ``dates`` are the replayed days (``YYYY-MM-DD``) in order; position ``k + f`` is ``dates[k]`` plus
    ``f`` days, and a position at or past ``len(dates)`` counts on from the last day.
    """
    if not dates:
        raise ValueError("offsets_to_datetimes: no dates to anchor the equity curve")
    days = [datetime.strptime(d, "%Y-%m-%d").replace(tzinfo=timezone.utc) for d in dates]
    out = []
    for t in equity_t:
        k = min(max(int(math.floor(t)), 0), len(days) - 1)
        out.append(days[k] + timedelta(days=float(t) - k))
    return out


def equity_figure(equity_t: Sequence[float], equity: Sequence[float], dates: Sequence[str] | None = None,
                  title: str = "DOLPHIN backtest equity") -> Any:
    """Build the equity-curve figure (x: dates when ``dates`` is given, else days since start)."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    xs: list[Any] = offsets_to_datetimes(equity_t, dates) if dates else list(equity_t)
    ax.plot(xs, list(equity), lw=1.2, color="#1f5fa8", drawstyle="steps-post")
    if dates:
        locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        ax.set_xlabel("date (UTC)")
        fig.autofmt_xdate(rotation=30)
    else:
        ax.set_xlabel("days")
    ax.set_ylabel("capital (USDT)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def write_equity_png(equity_t: Sequence[float], equity: Sequence[float], path: Path,
                     title: str = "DOLPHIN backtest equity", dates: Sequence[str] | None = None) -> Path:
    """Plot the realised equity curve to a PNG with the Agg backend (x: dates when ``dates`` is given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = equity_figure(equity_t, equity, dates, title)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def _svg_line(xs: Sequence[float], ys: Sequence[float], width: int = 900, height: int = 220,
              color: str = "#1f5fa8", fill: bool = False, label: str = "") -> str:
    """Return an inline SVG polyline of ``ys`` over ``xs`` (step-free, scaled to the box), with min/max labels."""
    pts = [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    if len(pts) < 2:
        return f'<p class="muted">{html.escape(label)}: not enough points to draw</p>'
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    dx, dy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    pad = 30
    coords = " ".join(f"{pad + (x - x0) / dx * (width - 2 * pad):.1f},{height - pad - (y - y0) / dy * (height - 2 * pad):.1f}"
                      for x, y in pts)
    area = (f'<polygon points="{pad},{height - pad} {coords} {width - pad},{height - pad}" fill="{color}" '
            f'fill-opacity="0.15"/>') if fill else ""
    return (f'<svg role="img" aria-label="{html.escape(label)}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">{area}<polyline fill="none" stroke="{color}" stroke-width="1.5" '
            f'points="{coords}"/><text x="{pad}" y="14" font-size="11">{html.escape(label)} max {y1:,.4g}</text>'
            f'<text x="{pad}" y="{height - 8}" font-size="11">min {y0:,.4g}</text></svg>')


def drawdown_curve(equity: Sequence[float]) -> list[float]:
    """Return the drawdown in percent of the running peak after each point of ``equity``."""
    out, peak = [], -math.inf
    for v in equity:
        peak = max(peak, v)
        out.append(0.0 if peak <= 0 else (v / peak - 1.0) * 100.0)
    return out


def _fmt_cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:,.6g}"
    return html.escape("" if v is None else str(v))


def write_html_report(summary: dict, equity_t: Sequence[float], equity: Sequence[float], path: Path) -> Path:
    """Write a self-contained HTML report: headline metrics, equity and drawdown charts, per-day PnL, trades.

    No script and no external asset: the file opens the same anywhere, also from a CI artifact.
    """
    path = Path(path)
    e = html.escape
    head = [("strategy", summary.get("strategy")), ("direction", summary.get("direction")),
            ("period", f"{summary.get('date_from')} .. {summary.get('date_to')}"), ("days", summary.get("days")),
            ("bars", summary.get("bars")), ("initial capital", summary.get("initial_capital")),
            ("final capital", summary.get("final_capital")), ("ROI %", summary.get("roi_pct")),
            ("profit factor", summary.get("profit_factor")), ("Sharpe", summary.get("sharpe")),
            ("max drawdown %", summary.get("max_drawdown_pct")), ("win rate %", summary.get("win_rate_pct")),
            ("trades", summary.get("trades")), ("config hash", summary.get("config_hash")),
            ("champion config", summary.get("champion_config"))]
    metrics = "".join(f"<tr><th>{e(k)}</th><td>{_fmt_cell(v)}</td></tr>" for k, v in head)
    day_cols = ("date", "bars", "trades", "pnl", "capital", "return_pct", "boost_start", "boost", "beta", "acb_source",
                "acb_updates", "posture", "mc_status", "mc_source", "mc_prob", "mc_envelope")
    days = "".join("<tr>" + "".join(f"<td>{_fmt_cell(d.get(c))}</td>" for c in day_cols) + "</tr>"
                   for d in summary.get("per_day", []))
    trades = summary.get("trade_list", [])
    tcols = [c for c in ("trade_id", "asset", "direction", "entry_date", "entry_bar", "exit_bar", "entry_price",
                         "exit_price", "notional", "leverage", "bars_held", "reason", "net_pnl")
             if any(c in t for t in trades)]
    trows = "".join("<tr>" + "".join(f"<td>{_fmt_cell(t.get(c))}</td>" for c in tcols) + "</tr>" for t in trades)
    warn_html = "".join(f'<p class="warning" style="color:#b22"><strong>warning:</strong> {e(str(w))}</p>'
                        for w in summary.get("warnings") or [])
    exits = ", ".join(f"{e(str(k))} {v}" for k, v in (summary.get("exit_reasons") or {}).items()) or "none"
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DOLPHIN backtest {e(str(summary.get('strategy')))}
{e(str(summary.get('date_from')))}..{e(str(summary.get('date_to')))}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse;margin:.5em 0 1.5em}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right;font-size:13px}}th{{background:#f3f3f3;text-align:left}}
.muted{{color:#888}}h2{{margin-top:1.2em}}</style></head><body>
<h1>DOLPHIN backtest — {e(str(summary.get('strategy')))} ({e(str(summary.get('direction')))})</h1>
<p class="muted">created {e(str(summary.get('created_utc')))} · config {e(str(summary.get('config')))} ·
data {e(str(summary.get('data_dir')))}</p>
<h2>Headline metrics</h2><table id="metrics">{metrics}</table>{warn_html}
<p>exit reasons: {exits}</p>
<h2>Equity (capital after each trade and day end)</h2>{_svg_line(equity_t, equity, label="capital USDT")}
<h2>Drawdown (% of running peak)</h2>{_svg_line(equity_t, drawdown_curve(equity), color="#b22", fill=True,
                                                label="drawdown %")}
<h2>Per-day PnL</h2><table id="per-day"><tr>{''.join(f'<th>{c}</th>' for c in day_cols)}</tr>{days}</table>
<h2>Trades ({len(trades)})</h2><table id="trades"><tr>{''.join(f'<th>{c}</th>' for c in tcols)}</tr>{trows}</table>
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(doc)
    os.replace(tmp, path)
    return path
