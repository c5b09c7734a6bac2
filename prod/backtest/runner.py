"""Replay daily Parquet files through NDAlphaEngine — the same ``begin_day`` / ``step_bar`` /
``end_day`` the live trader calls — and write the summary JSON and the equity-curve PNG.

Design notes: ``docs/design/prod.backtest.md``.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from numba import njit

from prod.alpha.acb import AdaptiveCircuitBreaker, daily_w750
from prod.alpha.acb_live import LiveAcb, replay_updates
from prod.alpha.engine import NDAlphaEngine
from prod.alpha.params import EngineParams
from prod.alpha.survival import SensorReadings, SurvivalStack
from prod.alpha.vol import BatchVolGate, VolGate
from prod.alpha.ob import InProcessOBProvider
from prod.backtest.data import (EXF_FILENAME, DayData, DayFileError, ObHistory, list_day_files, load_day, load_exf,
                                load_exf_history, load_ob_history)
from prod.backtest.report import compute_metrics, write_equity_png, write_html_report, write_json_atomic
from prod.configs import CHAMPION_HASH, StrategyConfig, load_config

log = logging.getLogger("dolphin.backtest")

SUMMARY_VERSION = 1
VOL_SYMBOL = "BTCUSDT"
_PROGRESS_CHUNK = 2_880
BAR_S = 5.0               # the bar length the champion parameters were validated on
GAP_FACTOR = 2.5          # bar spacing above this × the day's median bar is an input gap (as scanner.engine) ...
MIN_GAP_S = 60.0          # ... and above this many seconds (scanner.engine.MIN_GAP_S: a late bar is not an outage)
GAP_HOLD_BARS = 751       # bars after a gap with no entries: w750 and its velocity valid again (scanner.engine)


def missing_days(dates: list[str]) -> list[tuple[str, str, int]]:
    """Return (last date before, first date after, days missing) for every hole in the sorted ``dates``."""
    out = []
    for a, b in zip(dates, dates[1:]):
        n = (dt.date.fromisoformat(b) - dt.date.fromisoformat(a)).days - 1
        if n > 0:
            out.append((a, b, n))
    return out


@njit(cache=True)
def _gap_hold_scan(ts_ns, hold, prev_ts, left, min_step, hold_bars):
    gaps = 0
    for i in range(ts_ns.shape[0]):
        t = ts_ns[i]
        if min_step > 0.0 and t > 0 and prev_ts > 0 and t - prev_ts > min_step:
            left = hold_bars
            gaps += 1
        prev_ts = t
        if left > 0:
            hold[i] = True
            left -= 1
    return left, gaps


def gap_holds(ts_ns: np.ndarray, flag: np.ndarray | None, prev_ts: int | None, left: int,
              bar_ns: float | None) -> tuple[np.ndarray, int, int]:
    """Bars of one day under the gap hold: the file's ``gap_hold`` flag, or a bar more than
    GAP_FACTOR bars and MIN_GAP_S seconds after the previous one (also across days) and the GAP_HOLD_BARS after it.

    ``left`` carries a hold across midnight; returns (hold per bar, bars still held, gaps found).
    """
    n = ts_ns.shape[0]
    hold = np.zeros(n, dtype=bool) if flag is None else flag.astype(bool).copy()
    min_step = max(GAP_FACTOR * bar_ns, MIN_GAP_S * 1e9) if bar_ns else 0.0
    left, gaps = _gap_hold_scan(np.ascontiguousarray(ts_ns, dtype=np.int64), hold, int(prev_ts or 0), int(left),
                                float(min_step), GAP_HOLD_BARS)
    return hold, int(left), int(gaps)


class BacktestError(RuntimeError):
    """The replay cannot run (no data, bad config); the message names what to fix."""


@dataclass(frozen=True)
class BacktestOptions:
    """Everything one replay needs; built by ``main()`` from the command line."""

    config: Path
    data: Path
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    summary: Path | None = None
    out_dir: Path = Path("run_logs")
    exf: Path | None = None
    png: bool = True
    progress: bool = False
    survival: bool = False
    allow_drift: bool = False
    ob_dir: Path | None = None
    mc_model: Path | None = None
    exf_history: Path | None = None   # exf_fetcher's history dir: sub-day ACB as the live processor
    python_loop: bool = False     # reference mode: step_bar on every bar and the streaming VolGate


class _McRecorder:
    """The engine's §12 port around a forewarner model; keeps the day's report for the summary."""

    def __init__(self, model):
        self.model = model
        self.last = None

    def assess_config_dict(self, cfg):
        self.last = self.model.assess_config_dict(cfg)
        return self.last


def _load_mc(path: Path, config_hash: str) -> _McRecorder:
    from prod.mc.model import EnvelopeModel, ModelError
    try:
        return _McRecorder(EnvelopeModel.load(path, config_hash))
    except FileNotFoundError:
        raise BacktestError(f"--mc-model {path}: no such file") from None
    except ModelError as exc:
        raise BacktestError(f"--mc-model: {exc}") from None


@dataclass
class BacktestResult:
    """The summary written to disk plus where it went."""

    summary: dict[str, Any]
    summary_path: Path
    png_path: Path | None
    trades: list[dict[str, Any]] = field(default_factory=list)


def _w750_by_date(files: list[tuple[str, Path]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for date, path in files:
        try:
            t = pq.read_table(path, columns=["v750_lambda_max_velocity"])
            out[date] = daily_w750(t.column(0).slice(0, 10).to_pylist())
        except Exception:  # noqa: BLE001 - the day is reported when it is loaded
            out[date] = None
    return out


def _aligned_prices(day: DayData, assets: tuple[str, ...], warned: set[str]) -> np.ndarray:
    if day.assets == assets:
        return np.ascontiguousarray(day.prices)
    idx = {a: j for j, a in enumerate(day.assets)}
    out = np.full((day.n_bars, len(assets)), np.nan)
    for i, a in enumerate(assets):
        j = idx.get(a)
        if j is not None:
            out[:, i] = day.prices[:, j]
    missing = [a for a in assets if a not in idx]
    extra = [a for a in day.assets if a not in set(assets)]
    if (missing or extra) and day.date not in warned:
        warned.add(day.date)
        log.warning("backtest: %s: asset columns differ from the first day (missing %s, ignored %s)",
                    day.path, missing[:5], extra[:5])
    return out


def _load_or_error(date: str, path: Path) -> DayData | DayFileError:
    try:
        return load_day(date, path)
    except DayFileError as exc:
        return exc


def prefetched_days(files: list[tuple[str, Path]]):
    """Yield ``(date, path, DayData or DayFileError)`` in order, reading the next file in a thread meanwhile
    (pyarrow releases the GIL, so the read overlaps the replay of the day before)."""
    if not files:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="day-reader") as pool:
        fut = pool.submit(_load_or_error, *files[0])
        for k, (date, path) in enumerate(files):
            res = fut.result()
            if k + 1 < len(files):
                fut = pool.submit(_load_or_error, *files[k + 1])
            yield date, path, res


def day_vol_mask(gate: BatchVolGate, prices: np.ndarray, assets: tuple[str, ...]) -> np.ndarray:
    """Return ``vol_regime_ok`` of every bar of one day as a bool array, advancing the batch ``gate``."""
    col = prices[:, assets.index(VOL_SYMBOL)] if VOL_SYMBOL in assets else np.full(prices.shape[0], np.nan)
    return gate.update_many(col)


def day_vol_gates(gate: VolGate | BatchVolGate, prices: np.ndarray, assets: tuple[str, ...]) -> list[bool]:
    """Return ``vol_regime_ok`` of every bar of one day (rows of ``prices``), advancing ``gate``."""
    if isinstance(gate, BatchVolGate):
        return day_vol_mask(gate, prices, assets).tolist()
    if VOL_SYMBOL not in assets:
        return [gate.update(None) for _ in range(prices.shape[0])]
    col = prices[:, assets.index(VOL_SYMBOL)].tolist()
    return [gate.update(p) for p in col]


def _tally(r: Any, x: float, skip_reasons: Counter[str], equity_t: list[float], equity: list[float],
           peak: float) -> float:
    """Book one bar's result: count its skip reason, or put a closed trade's capital on the equity curve at
    ``x`` (days); return the new peak capital."""
    if r.skipped is not None:
        skip_reasons[r.skipped] += 1
    elif r.exited is not None:
        cap = r.exited.capital_after
        equity_t.append(x)
        equity.append(cap)
        peak = max(peak, cap)
    return peak


def config_and_days(opts: BacktestOptions) -> tuple[StrategyConfig, list[tuple[str, Path]]]:
    """The validated strategy config and the day files to replay (:class:`BacktestError` when there are none)."""
    cfg = load_config(opts.config, allow_drift=opts.allow_drift)
    files = list_day_files(opts.data, opts.date_from, opts.date_to)
    if not files:
        raise BacktestError(f"no YYYY-MM-DD.parquet files in {opts.data}"
                            f" between {opts.date_from or 'start'} and {opts.date_to or 'end'}")
    return cfg, files


def acb_and_mc(opts: BacktestOptions, cfg: StrategyConfig, files: list[tuple[str, Path]]
               ) -> tuple[Path, dict[str, dict[str, float]], AdaptiveCircuitBreaker, _McRecorder | None]:
    """The ExF file read, the ACB built over it and the days' w750, and the MC-Forewarner (``None`` without
    ``--mc-model``): ``(exf_path, exf, acb, mc)``."""
    exf_path = opts.exf if opts.exf is not None else Path(opts.data) / EXF_FILENAME
    exf = load_exf(exf_path)
    acb = AdaptiveCircuitBreaker(exf, _w750_by_date(files), cfg.acb)
    mc = _load_mc(Path(opts.mc_model), cfg.champion_hash) if opts.mc_model is not None else None
    return exf_path, exf, acb, mc


class SubdayAcb:
    """The replayed acb_processor of one backtest (``--exf-history``): its state carries across the days."""

    def __init__(self, exf_dir: Path, cfg: StrategyConfig):
        try:
            self.rows = load_exf_history(exf_dir)
        except DayFileError as exc:
            raise BacktestError(f"--exf-history: {exc}") from None
        self.dir = exf_dir
        self.state = LiveAcb(params=cfg.acb)
        self.last: tuple[float, float, float] | None = self.state.decision()   # the processor's first write
        self._k = 0
        self.writes = 0

    def day(self, day: DayData) -> tuple[tuple[float, float, float], dict[int, tuple[float, float]]]:
        """Feed the day's ExF rows and scans; return the decision the day starts with and {bar: (boost, beta)}
        of the updates landing inside the day (the last one when several land on one bar)."""
        ts = day.timestamp_ns / 1e9
        end = float(ts[-1]) if ts.size else -math.inf
        k0 = self._k
        while self._k < len(self.rows) and self.rows[self._k]["ts"] <= end:
            self._k += 1
        v750 = [v if math.isfinite(v) else None for v in day.v750.tolist()]
        start = self.last
        writes, self.last = replay_updates(self.state, self.last, self.rows[k0:self._k], ts,
                                           day.scan_number.tolist(), v750)
        self.writes += len(writes)
        landing: dict[int, tuple[float, float]] = {}
        for w in writes:
            if w.bar == 0:
                start = (w.boost, w.beta, w.signals)
            elif w.bar < day.n_bars:
                landing[w.bar] = (w.boost, w.beta)
        assert start is not None
        return start, landing


def build_engine(params: EngineParams, cfg: StrategyConfig, assets: tuple[str, ...], acb: AdaptiveCircuitBreaker,
                 mc: _McRecorder | None, ob_dir: Path | None
                 ) -> tuple[NDAlphaEngine, ObHistory | None, InProcessOBProvider | None]:
    """The replay's engine over ``assets`` with the ACB, the MC-Forewarner (when ``mc``) and, with ``ob_dir``, the
    recorded books' OB provider attached: ``(engine, ob history or None, provider or None)``."""
    engine = NDAlphaEngine(params, assets)
    engine.set_acb(acb)
    if mc is not None:
        from prod.mc.model import FEATURES
        engine.set_mc_forewarner(mc, {k: getattr(cfg.engine, k) for k in FEATURES})
    if ob_dir is None:
        return engine, None, None
    try:
        obh = load_ob_history(ob_dir, assets)
    except DayFileError as exc:
        raise BacktestError(f"--ob-dir: {exc}") from None
    provider = InProcessOBProvider()
    engine.set_ob_engine(provider)
    return engine, obh, provider


def run_backtest(opts: BacktestOptions, now: dt.datetime | None = None) -> BacktestResult:
    """Run one replay and write its summary JSON (and PNG); return the summary.

    Raises :class:`BacktestError` when there is nothing to replay, and
    ``prod.configs.ConfigError`` for a bad or drifted config.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    cfg, files = config_and_days(opts)
    exf_path, exf, acb, mc = acb_and_mc(opts, cfg, files)
    sub = SubdayAcb(Path(opts.exf_history), cfg) if opts.exf_history is not None else None
    if sub is not None:
        log.info("backtest: sub-day ACB replayed from %s (%d ExF rows)", sub.dir, len(sub.rows))
    log.info("backtest: config=%s strategy=%s hash=%s champion=%s data=%s days=%d exf=%s (%d dates) "
             "w750_threshold=%s survival=%s", cfg.source, cfg.strategy, cfg.champion_hash,
             cfg.champion_hash == CHAMPION_HASH, opts.data, len(files),
             exf_path if exf else "none (boost 1.0)", len(exf), acb.w750_threshold, opts.survival)

    engine: NDAlphaEngine | None = None
    assets: tuple[str, ...] = ()
    obh: ObHistory | None = None
    ob_provider: InProcessOBProvider | None = None
    ob_bars = 0
    stack = SurvivalStack() if opts.survival else None
    warned: set[str] = set()
    per_day: list[dict[str, Any]] = []
    skipped_days: list[dict[str, str]] = []
    skip_reasons: Counter[str] = Counter()
    equity_t: list[float] = []
    equity: list[float] = []
    daily_returns: list[float] = []
    peak = 0.0
    gbar = 0
    total_bars = 0
    t_start = time.perf_counter()
    bar_time = 0.0

    pbar = None
    if opts.progress:
        from tqdm import tqdm
        pbar = tqdm(total=len(files), unit="day", desc="backtest", dynamic_ncols=True)

    for a, b, nmiss in missing_days([d for d, _ in files]):
        log.warning("backtest: %d day(s) missing between %s and %s (no file): the replay jumps over them",
                    nmiss, a, b)
    bar_lengths_warned: set[float] = set()
    prev_ts: int | None = None
    hold_left = 0
    gap_count = 0
    last_row: np.ndarray | None = None
    gate: VolGate | BatchVolGate = VolGate() if opts.python_loop else BatchVolGate()
    vol_ok_bars = 0
    for k, (date, path, day) in enumerate(prefetched_days(files)):
        if isinstance(day, DayFileError):
            exc = day
            log.error("backtest: skipping day %s: %s", date, exc)
            skipped_days.append({"date": date, "reason": str(exc)})
            if pbar:
                pbar.update(1)
            continue
        if engine is None:
            assets = day.assets
            if VOL_SYMBOL not in assets:
                log.warning("backtest: no %s column in %s: vol_regime_ok stays False, no entries",
                            VOL_SYMBOL, path)
            engine, obh, ob_provider = build_engine(cfg.engine, cfg, assets, acb, mc, opts.ob_dir)
            if obh is not None:
                log.info("backtest: OB layers fed from %s (%d files, %d symbols)", opts.ob_dir, obh.files,
                         len(obh.times))
            peak = engine.capital
            equity_t.append(0.0)
            equity.append(engine.capital)
        prices = _aligned_prices(day, assets, warned)
        posture = "APEX"
        if stack is not None:
            dd = 0.0 if peak <= 0 else max(0.0, (peak - engine.capital) / peak)
            posture = stack.update(SensorReadings(drawdown=dd), 1440.0).posture.value
        start_cap = engine.capital
        if mc is not None:
            mc.last = None
        landing: dict[int, tuple[float, float]] = {}
        if sub is not None:
            start_acb, landing = sub.day(day)
            engine.begin_day(date, posture=posture, direction=cfg.direction, boost=start_acb[0], beta=start_acb[1])
            day_signals = start_acb[2]
        else:
            engine.begin_day(date, posture=posture, direction=cfg.direction)
            day_signals = acb.last.signals if acb.last is not None else 0.0
        boost_start = engine.day_base_boost
        mc_rep = mc.last if mc is not None else None
        vd, v50, v750 = day.vel_div.tolist(), day.v50.tolist(), day.v750.tolist()
        n = day.n_bars
        vol_ok = (day_vol_mask(gate, prices, assets) if isinstance(gate, BatchVolGate)
                  else day_vol_gates(gate, prices, assets))
        vol_ok_bars += int(sum(vol_ok)) if isinstance(vol_ok, list) else int(np.count_nonzero(vol_ok))
        steps = np.diff(day.timestamp_ns[day.timestamp_ns > 0])
        bar_ns = float(np.median(steps)) if steps.size else None
        if bar_ns and abs(bar_ns / 1e9 - BAR_S) > 0.1 * BAR_S and round(bar_ns / 1e9, 3) not in bar_lengths_warned:
            bar_lengths_warned.add(round(bar_ns / 1e9, 3))
            log.warning("backtest: %s: bars are %.3g s long, not the %.0f s the champion parameters were "
                        "validated on", path, bar_ns / 1e9, BAR_S)
        hold, hold_left, ng = gap_holds(day.timestamp_ns, day.gap_hold, prev_ts, hold_left, bar_ns)
        gap_count += ng
        if n:
            prev_ts = int(day.timestamp_ns[-1])
        t0 = time.perf_counter()
        if obh is None and not opts.python_loop:
            cuts = [0, *sorted(landing), n]
            for a, b in zip(cuts, cuts[1:]):     # sub-day ACB: the update is pending before bar ``a``
                if a in landing:
                    engine.update_acb_boost(*landing[a])
                if b <= a:
                    continue
                blk = engine.run_bars(gbar + a, day.vel_div[a:b], prices[a:b], day.v50[a:b], day.v750[a:b],
                                      vol_ok[a:b], hold[a:b])
                if blk.held:
                    skip_reasons["post_gap"] += blk.held
                skip_reasons.update(blk.skipped)
                for i, r in blk.events:
                    peak = _tally(r, k + (a + i) / max(n, 1), skip_reasons, equity_t, equity, peak)
            gbar += n
        step = engine.step_bar
        ts_s = day.timestamp_ns / 1e9 if obh is not None else None
        for i in (range(n) if obh is not None or opts.python_loop else ()):
            if obh is not None and ts_s is not None:
                obh.advance(ob_provider, float(ts_s[i]))     # the books as of this bar (§9), as live
                ob_bars += bool(obh.applied)
            if i in landing:
                engine.update_acb_boost(*landing[i])          # applied at the top of this bar's step (§10.5)
            if hold[i] and engine.position is None:
                skip_reasons["post_gap"] += 1        # the gap gate: no entry until the windows are valid
                gbar += 1
                continue
            r = step(gbar, vd[i], prices[i], v50[i], v750[i], vol_ok[i])
            gbar += 1
            peak = _tally(r, k + i / max(n, 1), skip_reasons, equity_t, equity, peak)
        bar_time += time.perf_counter() - t0
        total_bars += n
        if n:
            last_row = prices[n - 1]
        if k == len(files) - 1 and engine.position is not None and last_row is not None:
            rec = engine.close_position(gbar - 1, last_row)
            if rec is not None:
                equity_t.append(float(k + 1))
                equity.append(rec.capital_after)
        res = engine.end_day()
        ret = (engine.capital / start_cap - 1.0) if start_cap > 0 else 0.0
        daily_returns.append(ret)
        peak = max(peak, engine.capital)
        equity_t.append(float(k + 1))
        equity.append(engine.capital)
        per_day.append({
            "date": date, "bars": n, "trades": res.trades, "pnl": res.pnl, "capital": res.capital,
            "return_pct": ret * 100.0, "boost": res.boost, "beta": res.beta, "boost_start": boost_start,
            "acb_updates": len(landing), "acb_source": "DAILY" if sub is None else "LIVE_REPLAY",
            "signals": day_signals, "posture": res.posture,
            "mc_status": res.mc_status, "mc_source": "REAL_MODEL" if mc_rep is not None else "OFF",
            "mc_prob": None if mc_rep is None else mc_rep.catastrophic_probability,
            "mc_envelope": None if mc_rep is None else mc_rep.envelope_score, "skipped_bars": res.skipped_bars,
            "open_position": res.open_position,
        })
        if pbar:
            pbar.update(1)
            pbar.set_postfix(capital=f"{engine.capital:,.0f}", trades=len(engine.trades))
    if pbar:
        pbar.close()
    if engine is None:
        raise BacktestError(f"every day file in {opts.data} was unreadable; see the log")

    trades = [t.to_dict() for t in engine.trades]
    m = compute_metrics(cfg.engine.initial_capital, engine.capital, [t["net_pnl"] for t in trades],
                        daily_returns, equity)
    wall = time.perf_counter() - t_start
    stamp = now.strftime("%Y%m%d_%H%M%S")
    summary_path = Path(opts.summary) if opts.summary else Path(opts.out_dir) / f"summary_{stamp}.json"
    png_path = summary_path.with_suffix(".png") if opts.png else None
    html_path = summary_path.with_suffix(".html")
    summary: dict[str, Any] = {
        "kind": "dolphin_backtest_summary",
        "version": SUMMARY_VERSION,
        "created_utc": now.isoformat(),
        "config": str(opts.config),
        "strategy": cfg.strategy,
        "direction": "SHORT" if cfg.direction < 0 else "LONG",
        "config_hash": cfg.champion_hash,
        "champion_config": cfg.champion_hash == CHAMPION_HASH,
        "data_dir": str(opts.data),
        "date_from": files[0][0],
        "date_to": files[-1][0],
        "days": len(per_day),
        "bars": total_bars,
        "initial_capital": m.initial_capital,
        "final_capital": m.final_capital,
        "roi_pct": m.roi_pct,
        "profit_factor": m.profit_factor,
        "sharpe": m.sharpe,
        "sharpe_warning": m.sharpe_warning,
        "warnings": [w for w in (m.sharpe_warning,) if w],
        "max_drawdown_pct": m.max_drawdown_pct,
        "win_rate_pct": m.win_rate_pct,
        "trades": m.trades,
        "exit_reasons": dict(sorted(Counter(t["reason"] for t in trades).items())),
        "skip_reasons": dict(sorted(skip_reasons.items())),
        "input_gaps": gap_count,
        "vol_ok_bars": vol_ok_bars,
        "skipped_days": skipped_days,
        "acb": {"exf_file": str(exf_path) if exf else None, "exf_dates": len(exf),
                "w750_threshold": acb.w750_threshold,
                "subday": None if sub is None else {"exf_history": str(sub.dir), "exf_rows": len(sub.rows),
                                                    "writes": sub.writes,
                                                    "updates_landed": sum(d["acb_updates"] for d in per_day)}},
        "survival": opts.survival,
        "mc": {"model": None if mc is None else str(opts.mc_model),
               "model_trained_at": None if mc is None else mc.model.meta.get("trained_at"),
               "days_by_status": dict(sorted(Counter(d["mc_status"] for d in per_day).items()))},
        "ob": None if obh is None else {
            "dir": str(opts.ob_dir), "files": obh.files, "skipped_files": obh.skipped_files,
            "symbols": len(obh.times), "rows_applied": obh.applied, "rows_dropped": obh.dropped,
            "bars_with_ob": ob_bars},
        "per_day": per_day,
        "trade_list": trades,
        "equity_png": str(png_path) if png_path else None,
        "html_report": str(html_path),
        "timing": {"wall_s": wall, "step_bar_s": bar_time,
                   "bars_per_s": total_bars / bar_time if bar_time > 0 else None},
    }
    write_json_atomic(summary, summary_path)
    write_html_report(summary, equity_t, equity, html_path)
    if png_path is not None:
        title = (f"DOLPHIN {cfg.strategy} {files[0][0]}..{files[-1][0]}  ROI {m.roi_pct:+.2f}%  "
                 f"DD {m.max_drawdown_pct:.2f}%  trades {m.trades}")
        write_equity_png(equity_t, equity, png_path, title, dates=[d for d, _ in files])
    if m.sharpe_warning:
        log.warning("backtest: %s", m.sharpe_warning)
    log.info("backtest: %d days, %d bars, %d trades, ROI %+.2f%%, PF %s, Sharpe %s, max DD %.2f%%, "
             "WR %s -> %s", len(per_day), total_bars, m.trades, m.roi_pct, _fmt(m.profit_factor),
             _fmt(m.sharpe), m.max_drawdown_pct, _fmt(m.win_rate_pct), summary_path)
    return BacktestResult(summary, summary_path, png_path, trades)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"
