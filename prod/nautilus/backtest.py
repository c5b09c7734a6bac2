"""``python -m prod.backtest --engine nautilus``: replay the daily Parquet through a Nautilus ``BacktestEngine``
with :class:`prod.nautilus.actor.DolphinActor` (bible §17.2, §8.3).

Design notes: ``docs/design/prod.nautilus.md``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from prod.nautilus import require_nautilus

require_nautilus()

from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig  # noqa: E402
from nautilus_trader.backtest.models import MakerTakerFeeModel  # noqa: E402
from nautilus_trader.config import LoggingConfig  # noqa: E402
from nautilus_trader.model.currencies import USDT  # noqa: E402
from nautilus_trader.model.data import Bar, BarType  # noqa: E402
from nautilus_trader.model.enums import AccountType, OmsType  # noqa: E402
from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue  # noqa: E402
from nautilus_trader.model.instruments import CryptoPerpetual  # noqa: E402
from nautilus_trader.model.objects import Money, Price, Quantity  # noqa: E402

from prod.alpha.engine import NDAlphaEngine  # noqa: E402
from prod.alpha.vol import VolGate  # noqa: E402
from prod.backtest.data import DayData, DayFileError, load_day  # noqa: E402
from prod.backtest.report import compute_metrics, write_equity_png, write_html_report, write_json_atomic  # noqa: E402
from prod.backtest.runner import (SUMMARY_VERSION, VOL_SYMBOL, BacktestError, BacktestOptions,  # noqa: E402
                                  BacktestResult, _aligned_prices, acb_and_mc, build_engine, config_and_days,
                                  day_vol_gates, gap_holds, missing_days)
from prod.configs import CHAMPION_HASH  # noqa: E402
from prod.nautilus.actor import DolphinActor, DolphinActorConfig, ScanRow  # noqa: E402

log = logging.getLogger("dolphin.backtest.nautilus")

VENUE = Venue("BINANCE")
BAR_SPEC = "5-SECOND-LAST-EXTERNAL"
DEFAULT_LEVERAGE = Decimal(20)


def instrument_id(symbol: str) -> InstrumentId:
    return InstrumentId(Symbol(f"{symbol}-PERP"), VENUE)


def precisions(price: float) -> tuple[int, int]:
    """(price precision, size precision) for an asset trading near ``price`` (module doc)."""
    mag = math.floor(math.log10(price))
    return max(0, min(9, 6 - mag)), max(0, min(8, mag))


def make_instrument(symbol: str, price: float, maker_fee: float, taker_fee: float) -> CryptoPerpetual:
    pp, sp = precisions(price)
    return CryptoPerpetual(
        instrument_id=instrument_id(symbol), raw_symbol=Symbol(symbol), base_currency=_base(symbol), quote_currency=USDT,
        settlement_currency=USDT, is_inverse=False,
        price_precision=pp, size_precision=sp, price_increment=Price(10.0 ** -pp, pp),
        size_increment=Quantity(10.0 ** -sp, sp), ts_event=0, ts_init=0,
        margin_init=Decimal("0.05"), margin_maint=Decimal("0.025"),
        maker_fee=Decimal(str(maker_fee)), taker_fee=Decimal(str(taker_fee)))


def _base(symbol: str):
    from nautilus_trader.model.enums import CurrencyType
    from nautilus_trader.model.objects import Currency
    code = symbol[:-4] if symbol.endswith("USDT") else symbol
    try:
        cur = Currency.from_str(code)
    except ValueError:
        cur = None
    return cur if cur is not None else Currency(code, 8, 0, code, CurrencyType.CRYPTO)


class ReplayFeed:
    """``ts_ns`` → :class:`ScanRow` for the actor (the native runner's per-bar inputs).

    With recorded books (``ob``: an :class:`ObHistory` and the engine's OB provider) each row first feeds the
    provider every book row at or before the bar's time, as the native runner does before each bar.
    """

    def __init__(self) -> None:
        self.rows: dict[int, ScanRow] = {}
        self.ob: tuple[Any, Any] | None = None
        self.ob_bars = 0

    def row(self, ts_ns: int) -> ScanRow | None:
        r = self.rows.get(int(ts_ns))
        if r is not None and self.ob is not None:
            obh, provider = self.ob
            obh.advance(provider, ts_ns / 1e9)
            self.ob_bars += bool(obh.applied)
        return r


@dataclasses.dataclass
class _Prepared:
    feed: ReplayFeed
    bars: dict[str, list[Bar]]
    first_price: dict[str, float]
    total_bars: int
    vol_ok_bars: int
    gap_count: int
    dropped_rows: Counter
    day_bars: list[tuple[str, int, int]]          # (date, first gbar, n)
    skipped_days: list[dict[str, str]]


def _prepare(files: list[tuple[str, Any]], driver_pref: str = VOL_SYMBOL, gaps: bool = True,
             close_at_end: bool = True) -> tuple[tuple[str, ...], _Prepared, str]:
    """Load the days (a path, or an already loaded DayData) with the native runner's rules and build the feed
    rows and the bars. ``gaps=False`` leaves out the gap holds (the flow's one-day replay has none)."""
    assets: tuple[str, ...] = ()
    feed = ReplayFeed()
    cols: dict[str, tuple[list, list]] = {}
    first_price: dict[str, float] = {}
    warned: set[str] = set()
    gate = VolGate()
    prev_ts: int | None = None
    hold_left = 0
    gbar = 0
    total = vol_ok_bars = gap_count = 0
    dropped: Counter = Counter()
    day_bars = []
    skipped_days = []
    last_ts = -1
    last_key: int | None = None
    driver = ""
    driver_px = math.nan
    for date, path in files:
        try:
            day = path if isinstance(path, DayData) else load_day(date, path)
        except DayFileError as exc:
            log.error("backtest: skipping day %s: %s", date, exc)
            skipped_days.append({"date": date, "reason": str(exc)})
            continue
        if not assets:
            assets = day.assets
            driver = driver_pref if driver_pref in assets else assets[0]
            cols = {a: ([], []) for a in assets}
        prices = _aligned_prices(day, assets, warned)
        n = day.n_bars
        vol_ok = day_vol_gates(gate, prices, assets)
        vol_ok_bars += sum(vol_ok)
        steps = np.diff(day.timestamp_ns[day.timestamp_ns > 0])
        bar_ns = float(np.median(steps)) if steps.size else None
        if gaps:
            hold, hold_left, ng = gap_holds(day.timestamp_ns, day.gap_hold, prev_ts, hold_left, bar_ns)
            gap_count += ng
        else:
            hold = np.zeros(n, dtype=bool)
        if n:
            prev_ts = int(day.timestamp_ns[-1])
        day_bars.append((date, gbar, n))
        vd, v50, v750 = day.vel_div.tolist(), day.v50.tolist(), day.v750.tolist()
        dcol = assets.index(driver)
        for i in range(n):
            ts = int(day.timestamp_ns[i])
            row_px = prices[i]
            p = row_px[dcol]
            if p > 0 and math.isfinite(p):
                driver_px = float(p)
            if ts <= last_ts:
                dropped["non_increasing_timestamp"] += 1
            elif not driver_px > 0:
                dropped["no_driver_price"] += 1
            else:
                last_ts = ts
                feed.rows[ts] = ScanRow(date, gbar, vd[i], row_px, v50[i], v750[i], vol_ok[i], bool(hold[i]))
                last_key = ts
                for j, a in enumerate(assets):
                    px = float(row_px[j]) if j != dcol else driver_px
                    if px > 0 and math.isfinite(px):
                        first_price.setdefault(a, px)
                        cols[a][0].append(ts)
                        cols[a][1].append(px)
            gbar += 1
        total += n
    if last_key is not None and close_at_end:
        feed.rows[last_key].last = True
    if dropped:
        log.warning("backtest(nautilus): rows not replayed: %s (the native engine steps on them)", dict(dropped))
    return assets, _Prepared(feed, {a: cols[a] for a in assets} if assets else {}, first_price, total, vol_ok_bars,
                             gap_count, dropped, day_bars, skipped_days), driver


def _bars(symbol: str, ts: list, px: list, pp: int, sp: int) -> list[Bar]:
    bt = BarType.from_str(f"{symbol}-PERP.BINANCE-{BAR_SPEC}")
    vol = Quantity(1e9, sp)
    out = []
    for t, p in zip(ts, px):
        q = Price(p, pp)
        out.append(Bar(bt, q, q, q, q, vol, t, t))
    return out


def load_spreads(ob_dir: Path, assets: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per symbol (snapshot_utc, spread_bps, depth_1pct_usd) of obf_universe's recorded books, in time order; rows
    without a finite positive spread and depth are left out. Unreadable parts were already named by
    :func:`load_ob_history`; here they are skipped silently."""
    import pyarrow.parquet as pq
    parts = sorted(Path(ob_dir).glob("date=*/part-*.parquet")) or sorted(Path(ob_dir).glob("*.parquet"))
    want = set(assets)
    acc: dict[str, list[tuple[float, float, float]]] = {}
    for p in parts:
        try:
            recs = pq.read_table(p, columns=["snapshot_utc", "symbol", "spread_bps", "depth_1pct_usd"]).to_pylist()
        except Exception:  # noqa: BLE001 - named once by load_ob_history
            continue
        for r in recs:
            t, sym, sp, dep = r["snapshot_utc"], r["symbol"], r["spread_bps"], r["depth_1pct_usd"]
            if sym in want and all(isinstance(v, (int, float)) and math.isfinite(v) for v in (t, sp, dep)) \
                    and sp >= 0 and dep > 0:
                acc.setdefault(sym, []).append((float(t), float(sp), float(dep)))
    out = {}
    for sym, lst in acc.items():
        lst.sort()
        a = np.array(lst)
        out[sym] = (a[:, 0], a[:, 1], a[:, 2])
    return out


def _quotes(symbol: str, ts: list, px: list, pp: int, sp: int, book: tuple[np.ndarray, np.ndarray, np.ndarray]):
    """One QuoteTick per scan around the scan's price with the latest recorded spread and depth (§8.3: slippage
    is the spread). Before the first recorded book: bid = ask = the scan price."""
    from nautilus_trader.model.data import QuoteTick
    iid = instrument_id(symbol)
    bt_s, spread, depth = book
    tick = 10.0 ** -pp
    lot = 10.0 ** -sp
    idx = np.searchsorted(bt_s, np.asarray(ts, dtype=np.float64) / 1e9, side="right") - 1
    out = []
    for t, p, k in zip(ts, px, idx.tolist()):
        if k < 0:
            bid = ask = round(p, pp)
            size = 1e9
        else:
            half = p * spread[k] / 2e4
            bid = math.floor((p - half) / tick + 1e-9) * tick
            ask = math.ceil((p + half) / tick - 1e-9) * tick
            size = max(lot, depth[k] / 2.0 / p)
        q = Quantity(size, sp)
        out.append(QuoteTick(iid, Price(bid, pp), Price(ask, pp), q, q, t, t))
    return out


def run_nautilus_backtest(opts: BacktestOptions, now: dt.datetime | None = None, bus: Any = None,
                          log_level: str = "ERROR", before_run: Any = None) -> BacktestResult:
    """Run one replay through a Nautilus BacktestEngine; write the same summary JSON / HTML (/ PNG) as the native run.

    ``bus`` (a started :class:`prod.runtime.bus.Bus`, optional): posture from DOLPHIN_SAFETY, the ACB listener and
    the results to DOLPHIN_PNL_BLUE (§14.6, §14.7). ``before_run(actor)`` is called just before the engine runs.
    """
    if opts.survival:
        raise BacktestError("--survival is not supported with --engine nautilus yet")
    now = now or dt.datetime.now(dt.timezone.utc)
    cfg, files = config_and_days(opts)
    for a, b, nmiss in missing_days([d for d, _ in files]):
        log.warning("backtest: %d day(s) missing between %s and %s (no file)", nmiss, a, b)
    exf_path, exf, acb, mc = acb_and_mc(opts, cfg, files)
    t_start = time.perf_counter()
    assets, prep, driver = _prepare(files)
    if not assets:
        raise BacktestError(f"every day file in {opts.data} was unreadable; see the log")
    params = dataclasses.replace(cfg.engine, use_sp_fees=False, use_sp_slippage=False)   # §8.3
    # with --ob-dir the engine's OB layers see the recorded books, as in the native replay
    engine, obh, provider = build_engine(params, cfg, assets, acb, mc, opts.ob_dir)
    if obh is not None:
        prep.feed.ob = (obh, provider)
    books = load_spreads(opts.ob_dir, assets) if opts.ob_dir is not None else {}
    bt, actor, run_s, build_s, n_data = _run(engine, cfg, prep, driver, bus=bus, log_level=log_level,
                                             before_run=before_run, books=books)
    try:
        summary, equity_t, equity = _summary(opts, cfg, files, now, exf, exf_path, acb, mc, engine, actor, prep,
                                             run_s, build_s, n_data, time.perf_counter() - t_start)
        if obh is not None:
            summary["ob"] = {"dir": str(opts.ob_dir), "files": obh.files, "skipped_files": obh.skipped_files,
                             "symbols": len(obh.times), "rows_applied": obh.applied, "rows_dropped": obh.dropped,
                             "bars_with_ob": prep.feed.ob_bars,
                             "matching": f"quotes at the recorded spread for {len(books)} symbols, bar prices for "
                                         f"{len(assets) - len(books)}"}
    finally:
        bt.dispose()
    summary_path = Path(opts.summary) if opts.summary else Path(opts.out_dir) / f"summary_{now:%Y%m%d_%H%M%S}.json"
    png_path = summary_path.with_suffix(".png") if opts.png else None
    html_path = summary_path.with_suffix(".html")
    summary["equity_png"] = str(png_path) if png_path else None
    summary["html_report"] = str(html_path)
    write_json_atomic(summary, summary_path)
    write_html_report(summary, equity_t, equity, html_path)
    if png_path is not None:
        write_equity_png(equity_t, equity, png_path,
                         f"DOLPHIN {cfg.strategy} (Nautilus) {files[0][0]}..{files[-1][0]}  ROI {summary['roi_pct']:+.2f}%",
                         dates=[d for d, _ in files])
    return BacktestResult(summary, summary_path, png_path, summary["trade_list"])


def _run(engine: NDAlphaEngine, cfg: Any, prep: _Prepared, driver: str, *, bus: Any = None, log_level: str = "ERROR",
         before_run: Any = None, posture: str = "APEX", begin_kwargs: dict | None = None,
         books: dict | None = None):
    """Build the BacktestEngine (venue, instruments, bars), add the actor, run; return (bt, actor, run_s, build_s,
    data points). The caller disposes ``bt``."""
    params = engine.params
    assets = engine.assets
    bt = BacktestEngine(BacktestEngineConfig(trader_id="DOLPHIN-001",
                                             logging=LoggingConfig(log_level=log_level, bypass_logging=False)))
    bt.add_venue(VENUE, OmsType.NETTING, AccountType.MARGIN, [Money(engine.capital, USDT)],
                 base_currency=USDT, default_leverage=DEFAULT_LEVERAGE, fee_model=MakerTakerFeeModel(),
                 bar_execution=True)
    ids: dict[str, InstrumentId] = {}
    size_prec: dict[str, int] = {}
    for a in assets:
        if a not in prep.first_price:
            continue
        inst = make_instrument(a, prep.first_price[a], params.maker_fee, params.taker_fee)
        bt.add_instrument(inst)
        ids[a] = inst.id
        size_prec[a] = inst.size_precision
    t_bars = time.perf_counter()
    n_data = 0
    books = books or {}
    for a in [x for x in assets if x in ids and x != driver] + [driver]:
        inst = bt.cache.instrument(ids[a])
        if a in books:       # recorded books: the matching engine trades against their spread (quotes, not bars)
            data = _quotes(a, *prep.bars[a], inst.price_precision, inst.size_precision, books[a])
        else:
            data = _bars(a, *prep.bars[a], inst.price_precision, inst.size_precision)
        n_data += len(data)
        bt.add_data(data, validate=True, sort=(a == driver))
    prep.bars.clear()
    build_s = time.perf_counter() - t_bars
    driver_bt = ids[driver] if driver in books else BarType.from_str(f"{driver}-PERP.BINANCE-{BAR_SPEC}")
    actor = DolphinActor(DolphinActorConfig(strategy_name=cfg.strategy, direction=cfg.direction), engine, ids,
                         driver_bt, prep.feed, VENUE, bus=bus, size_precision=size_prec, begin_kwargs=begin_kwargs)
    actor.posture = posture
    bt.add_strategy(actor)
    if before_run is not None:
        before_run(actor)
    t0 = time.perf_counter()
    bt.run()
    return bt, actor, time.perf_counter() - t0, build_s, n_data


def replay_day_nautilus(cfg: Any, day: DayData, ctx: Any, start_capital: float | None = None,
                        close_at_end: bool = False, log_level: str = "ERROR") -> dict:
    """The flow's one-day replay (``prod.flows.common.replay_day``) through Nautilus: the day's posture, boost,
    beta and MC status from ``ctx``, a fresh vol gate, ``bar_idx`` from 0; returns the same day result dict."""
    params = dataclasses.replace(cfg.engine, use_sp_fees=False, use_sp_slippage=False)   # §8.3
    engine = NDAlphaEngine(params, day.assets)
    if start_capital is not None:
        engine.capital = float(start_capital)
    start_cap = engine.capital
    assets, prep, driver = _prepare([(day.date, day)], gaps=False, close_at_end=close_at_end)
    if not prep.feed.rows:
        raise BacktestError(f"{day.date}: no replayable bars (no driver price)")
    t0 = time.perf_counter()
    bt, actor, run_s, _, _ = _run(engine, cfg, prep, driver, log_level=log_level, posture=ctx.posture,
                                  begin_kwargs={"boost": ctx.boost, "beta": ctx.beta, "mc_status": ctx.mc_status})
    try:
        res, _ = actor.day_results[-1]
        capital = actor.account_balance_final
        fills = [f for f in actor.trades.values() if f.realized_pnl is not None]
        reasons: dict[str, int] = {}
        for t in res.trade_list:
            reasons[t.reason] = reasons.get(t.reason, 0) + 1
        return {"date": res.date, "strategy": cfg.strategy, "capital": capital, "start_capital": start_cap,
                "pnl": capital - start_cap, "trades": res.trades, "boost": res.boost, "beta": res.beta,
                "mc_status": res.mc_status, "posture": res.posture, "skipped_bars": res.skipped_bars,
                "open_position": engine.position is not None, "bars": day.n_bars, "config_hash": cfg.champion_hash,
                "engine_s": round(time.perf_counter() - t0, 3), "exit_reasons": dict(sorted(reasons.items())),
                "runner": "nautilus", "fees": sum(f.entry_commission + f.exit_commission for f in fills),
                "nautilus_run_s": round(run_s, 3)}
    finally:
        bt.dispose()


def _summary(opts, cfg, files, now, exf, exf_path, acb, mc, engine, actor, prep, run_s, build_s, n_data, wall):
    day_of: list[tuple[int, int, int]] = [(g, n, k) for k, (_, g, n) in enumerate(prep.day_bars)]

    def offset(gbar: int) -> float:
        for g, n, k in day_of:
            if g <= gbar < g + n:
                return k + (gbar - g) / max(n, 1)
        return float(len(day_of))

    trades: list[dict[str, Any]] = []
    diffs: list[dict[str, Any]] = []
    not_taken = 0
    for rec in engine.trades:
        t = rec.to_dict()
        f = actor.trades.get(rec.trade_id)
        if f is None or f.not_taken or f.realized_pnl is None:
            not_taken += 1
            continue
        fees = f.entry_commission + f.exit_commission
        t.update(engine_entry_price=rec.entry_price, engine_exit_price=rec.exit_price, engine_gross_pnl=rec.gross_pnl,
                 engine_net_pnl=rec.net_pnl, entry_price=f.entry_px, exit_price=f.exit_px, qty=f.qty,
                 fees=fees, net_pnl=f.realized_pnl, capital_after=f.capital_after)
        trades.append(t)
        diffs.append(fill_diff(rec, f))
    equity_t, equity = [0.0], [cfg.engine.initial_capital]
    for t in trades:
        equity_t.append(offset(t["exit_bar"]))
        equity.append(t["capital_after"])
    per_day, daily_returns = [], []
    for k, (res, start_cap) in enumerate(actor.day_results):
        ret = (res.capital / start_cap - 1.0) if start_cap > 0 else 0.0
        daily_returns.append(ret)
        equity_t.append(float(k + 1))
        equity.append(res.capital)
        per_day.append({"date": res.date, "bars": prep.day_bars[k][2] if k < len(prep.day_bars) else 0,
                        "trades": res.trades, "pnl": res.pnl, "capital": res.capital, "return_pct": ret * 100.0,
                        "boost": res.boost, "beta": res.beta, "posture": res.posture, "mc_status": res.mc_status,
                        "mc_source": "REAL_MODEL" if mc is not None else "OFF", "skipped_bars": res.skipped_bars,
                        "open_position": res.open_position})
    order = np.argsort(equity_t, kind="stable")
    equity_t = [equity_t[i] for i in order]
    equity = [equity[i] for i in order]
    final = actor.account_balance_final
    m = compute_metrics(cfg.engine.initial_capital, final, [t["net_pnl"] for t in trades], daily_returns, equity)
    summary: dict[str, Any] = {
        "kind": "dolphin_backtest_summary", "version": SUMMARY_VERSION, "engine": "nautilus",
        "created_utc": now.isoformat(), "config": str(opts.config), "strategy": cfg.strategy,
        "direction": "SHORT" if cfg.direction < 0 else "LONG", "config_hash": cfg.champion_hash,
        "champion_config": cfg.champion_hash == CHAMPION_HASH, "data_dir": str(opts.data),
        "date_from": files[0][0], "date_to": files[-1][0], "days": len(per_day), "bars": prep.total_bars,
        "initial_capital": m.initial_capital, "final_capital": m.final_capital, "roi_pct": m.roi_pct,
        "profit_factor": m.profit_factor, "sharpe": m.sharpe, "sharpe_warning": m.sharpe_warning,
        "warnings": [w for w in (m.sharpe_warning,) if w], "max_drawdown_pct": m.max_drawdown_pct,
        "win_rate_pct": m.win_rate_pct, "trades": m.trades,
        "exit_reasons": dict(sorted(Counter(t["reason"] for t in trades).items())),
        "skip_reasons": dict(sorted(actor.skip_reasons.items())), "input_gaps": prep.gap_count,
        "vol_ok_bars": prep.vol_ok_bars, "skipped_days": prep.skipped_days,
        "acb": {"exf_file": str(exf_path) if exf else None, "exf_dates": len(exf), "w750_threshold": acb.w750_threshold},
        "survival": False,
        "mc": {"model": None if mc is None else str(opts.mc_model),
               "days_by_status": dict(sorted(Counter(d["mc_status"] for d in per_day).items()))},
        "ob": None, "per_day": per_day, "trade_list": trades,
        "nautilus": {
            "version": require_nautilus(), "venue": "BINANCE (USDT-M perpetuals, MARGIN, NETTING)",
            "fee_model": f"MakerTakerFeeModel maker {cfg.engine.maker_fee} taker {cfg.engine.taker_fee}",
            "driver_bars": actor.bars, "data_points": n_data, "rows_not_replayed": dict(prep.dropped_rows),
            "entries_not_taken": not_taken, "stale_state_events": actor.stale_state_events,
            "posture_source": actor.posture_source, "bus_errors": actor.bus_errors,
            "fill_diff": diffs, "fill_diff_mean": _mean_diff(diffs)},
        "timing": {"wall_s": wall, "build_bars_s": build_s, "run_s": run_s,
                   "bars_per_s": actor.bars / run_s if run_s > 0 else None,
                   "data_points_per_s": n_data / run_s if run_s > 0 else None},
    }
    return summary, equity_t, equity


def fill_diff(rec, f) -> dict[str, Any]:
    """Nautilus's fill vs the engine's own model for one trade (prices in bps of the engine's, money in USDT)."""
    def bps(a, b):
        return None if a is None or not b else (a / b - 1.0) * 1e4
    return {"trade_id": rec.trade_id, "asset": rec.asset,
            "entry_px_bps": bps(f.entry_px, rec.entry_price), "exit_px_bps": bps(f.exit_px, rec.exit_price),
            "qty_notional": None if f.entry_px is None else f.qty * f.entry_px, "engine_notional": rec.notional,
            "nautilus_fees": f.entry_commission + f.exit_commission, "engine_fees": rec.fees,
            "nautilus_net": f.realized_pnl, "engine_net": rec.net_pnl}


def _mean_diff(diffs: list[dict[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k in ("entry_px_bps", "exit_px_bps", "nautilus_fees", "engine_fees", "nautilus_net", "engine_net"):
        v = [d[k] for d in diffs if d[k] is not None]
        out[k] = float(np.mean(v)) if v else None
    return out
