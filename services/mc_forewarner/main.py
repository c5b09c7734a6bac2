"""MC-Forewarner producer: assess the active strategy config and publish ``DOLPHIN_FEATURES["mc_forewarner_latest"]``.

The bible's forewarner (§12, §16.8, §28.6) is a trained ML model we do not have. **Our model** is a
Monte Carlo envelope of the config, documented here so its numbers can be read:

1. Per-trade returns ``r = net_pnl / capital_before_trade`` come from, in order of preference:
   ``JOURNAL`` — the paper trader's closed trades (``EXIT`` events of ``<data_dir>/trader/journal.sqlite``,
   opened read-only) when there are at least ``min_journal_trades`` (30); else ``BACKTEST`` — a replay of
   the newest ``backtest_days`` day files of ``<data_dir>/vbt_cache_klines`` through
   :func:`prod.backtest.runner.run_backtest` (needs ≥ ``min_trades`` trades); else ``SYNTHETIC_PRIOR`` — the
   real :class:`~prod.alpha.engine.NDAlphaEngine` of the config run over two seeded in-memory days of
   :func:`prod.backtest.synth.make_day` (boost 1.0).
2. The config is assessed at ``max_leverage = base_max_leverage × day_boost`` (§12); the day boost is
   ``DOLPHIN_FEATURES["acb_boost"].boost`` (1.0 when absent). Returns scale linearly with leverage, so
   every sampled return is multiplied by ``day_boost`` (the source trades ran at boost ≈ 1).
3. ``n_paths`` (≥ 2000) paths of one day's worth of trades (``round(trades per source day)``, ≥ 1) are
   bootstrapped with a seeded RNG (same inputs → same result). Per path: equity = cumprod(1 + r),
   return = equity[-1] − 1, max drawdown from the running peak (start 1.0).
4. ``catastrophic_prob = P(max drawdown > 20 %)``; ``envelope_score = median(return) / (IQR(return) + 1e-9)``
   clipped to [−5, 5]; status by §12: RED if prob > 0.25 or envelope < −1; ORANGE if envelope < 0 or
   prob > 0.10; else OK (:func:`prod.alpha.engine.classify_mc`, the engine's own gate).

``source`` on the bus is one of JOURNAL | BACKTEST | SYNTHETIC_PRIOR (REAL_MODEL is reserved for a trained
model, FALLBACK_ERROR is never written: on error nothing new is written, the error is logged and carried
by the heartbeat, and the safety watchdog keeps the previous value or its ORANGE fallback).

Prefect: :func:`build_flow` wraps the three steps as ``@task``s in a ``@flow`` for a deployment against a
real Prefect server (``PREFECT_API_URL``). The supervised loop does **not** go through Prefect: measured
here, ``import prefect`` takes ≈1.4 s and prefect 3.8's ephemeral (serverless) mode does not start at all
with the installed FastAPI (``TypeError: Body() got an unexpected keyword argument 'min_items'``), so the
loop calls the same plain functions directly and prefect stays an optional import.

The supervised process has the shape of every DOLPHIN service (:class:`prod.runtime.Service`): flags
and ``DOLPHIN_MC_FOREWARNER_*`` variables onto :class:`ForewarnerConfig`, ``run(cfg, bus, clock, stop)``.

    python -m services.mc_forewarner [--interval-s 14400] [--once] [--config prod/configs/blue.yml]
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from prod.bus import maps
from prod.configs import BLUE_PATH, StrategyConfig, load_config
from prod.runtime import Bus, Clock, RateLog, Service, result_within
from prod.settings import Settings, load_settings

log = logging.getLogger("mc_forewarner")
SERVICE_NAME = "mc_forewarner"
MODEL = "bootstrap_envelope_v1"
SOURCES = ("REAL_MODEL", "JOURNAL", "BACKTEST", "SYNTHETIC_PRIOR", "FALLBACK_ERROR")
CATASTROPHIC_DD = 0.20
ENVELOPE_CLIP = 5.0
EPS = 1e-9
SYNTH_SEED = 11
SYNTH_START = dt.date(2026, 1, 1)


@dataclass(frozen=True)
class ForewarnerConfig:
    ENV_PREFIX: ClassVar[str] = "DOLPHIN_MC_FOREWARNER_"
    settings: Settings
    config_path: Path = field(default=BLUE_PATH, metadata={"flags": ("--config",), "help": "strategy config to assess"})
    interval_s: float = field(default=14_400.0, metadata={"help": "seconds between assessments (bible: 4 h)"})
    heartbeat_s: float = 15.0
    n_paths: int = field(default=2000, metadata={"flags": ("--paths",), "help": "bootstrap paths (>= 2000)"})
    seed: int = 7
    min_journal_trades: int = 30
    min_trades: int = 10
    backtest_days: int = 3
    synth_days: int = 2
    hz_timeout_s: float = 5.0
    once: bool = field(default=False, metadata={"help": "assess once, publish and exit (rc 1 on error)"})

    def __post_init__(self) -> None:
        if not 1.0 <= self.interval_s <= 7 * 86_400:
            raise ValueError(f"--interval-s {self.interval_s}: must be in [1, 604800] s")
        if self.n_paths < 2000:
            raise ValueError(f"n_paths {self.n_paths}: must be >= 2000")
        if self.min_journal_trades < 1 or self.min_trades < 1 or self.backtest_days < 1 or self.synth_days < 1:
            raise ValueError("min_journal_trades, min_trades, backtest_days and synth_days must be >= 1")
        if self.heartbeat_s <= 0 or self.hz_timeout_s <= 0:
            raise ValueError("heartbeat_s and hz_timeout_s must be > 0")


@dataclass
class TradeSample:
    """Per-trade returns of one source and how many trades a day it made."""
    source: str
    returns: np.ndarray
    trades_per_day: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Envelope:
    catastrophic_prob: float
    envelope_score: float
    status: str
    n_paths: int
    trades_per_path: int
    median_return: float
    iqr_return: float
    p05_return: float


# ---------------------------------------------------------------- status + simulation (pure)
def classify(catastrophic_prob: float, envelope_score: float) -> str:
    """§12 thresholds: 'RED' | 'ORANGE' | 'OK' (non-finite → RED)."""
    from prod.alpha.engine import classify_mc
    return classify_mc(catastrophic_prob, envelope_score)


def _clean_returns(values: Sequence[float]) -> np.ndarray:
    r = np.asarray([float(v) for v in values], dtype=np.float64)
    return r[np.isfinite(r) & (r > -1.0)]


def simulate(returns: Sequence[float], trades_per_day: float, *, day_boost: float = 1.0,
             n_paths: int = 2000, seed: int = 7) -> Envelope:
    """Bootstrap ``n_paths`` one-day paths of per-trade returns; return the envelope and its §12 status."""
    r = _clean_returns(returns)
    if r.size == 0:
        raise ValueError("no finite per-trade returns to simulate")
    if not (math.isfinite(day_boost) and day_boost > 0):
        raise ValueError(f"day_boost {day_boost!r}: must be finite and > 0")
    n = max(1, int(round(trades_per_day))) if math.isfinite(trades_per_day) else 1
    rng = np.random.default_rng(seed)
    draws = np.clip(r[rng.integers(0, r.size, size=(n_paths, n))] * day_boost, -0.999999, None)
    eq = np.cumprod(1.0 + draws, axis=1)
    eq = np.concatenate([np.ones((n_paths, 1)), eq], axis=1)
    peak = np.maximum.accumulate(eq, axis=1)
    mdd = np.max(1.0 - eq / peak, axis=1)
    ret = eq[:, -1] - 1.0
    prob = float(np.mean(mdd > CATASTROPHIC_DD))
    q25, med, q75, q05 = (float(x) for x in np.quantile(ret, [0.25, 0.5, 0.75, 0.05]))
    iqr = q75 - q25
    env = float(np.clip(med / (iqr + EPS), -ENVELOPE_CLIP, ENVELOPE_CLIP))
    return Envelope(prob, env, classify(prob, env), n_paths, n, med, iqr, q05)


# ---------------------------------------------------------------- trade sources
def journal_returns(trader_dir: Path) -> TradeSample | None:
    """Read the paper trader's closed trades read-only; None when there is no journal."""
    db = Path(trader_dir) / "journal.sqlite"
    if not db.exists():
        return None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)
    try:
        rows = con.execute("SELECT ts, payload FROM events WHERE kind='EXIT' ORDER BY id").fetchall()
    finally:
        con.close()
    rets, days = [], set()
    for ts, payload in rows:
        try:
            p = json.loads(payload)
            net, cap_after = float(p["net"]), float(p["capital_after"])
        except (ValueError, KeyError, TypeError):
            continue   # engine-only exits and garbage carry no realised PnL
        before = cap_after - net
        if not (math.isfinite(net) and math.isfinite(before)) or before <= 0:
            continue
        rets.append(net / before)
        days.add(dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).date())
    if not rets:
        return TradeSample("JOURNAL", np.empty(0), 0.0, {"journal": str(db)})
    return TradeSample("JOURNAL", np.asarray(rets), len(rets) / max(1, len(days)),
                       {"journal": str(db), "days": len(days)})


def _trade_returns(trades: Sequence[dict[str, Any]]) -> np.ndarray:
    out = []
    for t in trades:
        net, after = float(t["net_pnl"]), float(t["capital_after"])
        before = after - net
        if before > 0 and math.isfinite(net):
            out.append(net / before)
    return np.asarray(out, dtype=np.float64)


def backtest_returns(cfg_path: Path, klines_dir: Path, days: int, out_dir: Path) -> TradeSample | None:
    """Replay the newest ``days`` day files through the backtest runner; None when there are none."""
    from prod.backtest.data import list_day_files
    from prod.backtest.runner import BacktestOptions, run_backtest
    files = list_day_files(klines_dir) if Path(klines_dir).is_dir() else []
    if not files:
        return None
    newest = files[-days:]
    with tempfile.TemporaryDirectory(prefix="mcfw_bt_", dir=out_dir if Path(out_dir).is_dir() else None) as tmp:
        res = run_backtest(BacktestOptions(config=cfg_path, data=klines_dir,
                                           date_from=dt.date.fromisoformat(newest[0][0]),
                                           date_to=dt.date.fromisoformat(newest[-1][0]),
                                           summary=Path(tmp) / "summary.json", png=False))
    r = _trade_returns(res.trades)
    ndays = max(1, int(res.summary.get("days") or len(newest)))
    return TradeSample("BACKTEST", r, r.size / ndays,
                       {"data": str(klines_dir), "date_from": newest[0][0], "date_to": newest[-1][0]})


def synthetic_returns(cfg: StrategyConfig, days: int = 2, seed: int = SYNTH_SEED) -> TradeSample:
    """Run the real engine of ``cfg`` over ``days`` seeded in-memory synthetic days (boost 1.0)."""
    from prod.alpha.engine import NDAlphaEngine
    from prod.alpha.vol import VolGate
    from prod.backtest.runner import day_vol_gates
    from prod.backtest.synth import make_day
    from prod.settings import PRIORITY_SYMBOLS
    engine = NDAlphaEngine(cfg.engine, PRIORITY_SYMBOLS)
    gate = VolGate()     # the one volatility gate of the trader and the backtest (prod/alpha/vol.py)
    start_prices, gbar = None, 0
    for k in range(days):
        date = SYNTH_START + dt.timedelta(days=k)
        t = make_day(date, k, seed, start_prices)
        prices = np.column_stack([t.column(s).to_numpy() for s in PRIORITY_SYMBOLS])
        vd = t.column("vel_div").to_numpy().tolist()
        v50 = t.column("v50_lambda_max_velocity").to_numpy().tolist()
        v750 = t.column("v750_lambda_max_velocity").to_numpy().tolist()
        vol_ok = day_vol_gates(gate, prices, PRIORITY_SYMBOLS)
        engine.begin_day(date.isoformat(), posture="APEX", direction=cfg.direction, boost=1.0, beta=0.0)
        for i in range(len(vd)):
            engine.step_bar(gbar, vd[i], prices[i], v50[i], v750[i], vol_ok[i])
            gbar += 1
        start_prices = prices[-1]
        if k == days - 1 and engine.position is not None:
            engine.close_position(gbar - 1, prices[-1])
        engine.end_day()
    r = _trade_returns([t.to_dict() for t in engine.trades])
    return TradeSample("SYNTHETIC_PRIOR", r, r.size / days, {"synth_seed": seed, "synth_days": days})


def gather_returns(fc: ForewarnerConfig, cfg: StrategyConfig) -> TradeSample:
    """Pick the best available source of per-trade returns (journal → backtest → synthetic prior)."""
    s = fc.settings
    try:
        j = journal_returns(Path(s.data_dir) / "trader")
    except sqlite3.Error as exc:
        log.warning("journal %s unreadable (%s); trying the backtest", Path(s.data_dir) / "trader", exc)
        j = None
    if j is not None and j.returns.size >= fc.min_journal_trades:
        return j
    log.info("journal has %d closed trades (< %d); trying the backtest", 0 if j is None else j.returns.size,
             fc.min_journal_trades)
    try:
        b = backtest_returns(Path(cfg.source), Path(s.data_dir) / "vbt_cache_klines", fc.backtest_days,
                             Path(s.run_logs))
    except Exception as exc:  # noqa: BLE001 - a bad data dir must not stop the assessment
        log.warning("backtest over %s failed (%r); using the synthetic prior", Path(s.data_dir) / "vbt_cache_klines",
                    exc)
        b = None
    if b is not None and b.returns.size >= fc.min_trades:
        return b
    return synthetic_returns(cfg, fc.synth_days)


# ---------------------------------------------------------------- assessment + publishing
def assess(fc: ForewarnerConfig, cfg: StrategyConfig, sample: TradeSample, day_boost: float = 1.0,
           now: float | None = None) -> dict[str, Any]:
    """Simulate the envelope of ``sample`` and return the bus payload (§28.6 fields + ours)."""
    now = time.time() if now is None else now
    env = simulate(sample.returns, sample.trades_per_day, day_boost=day_boost, n_paths=fc.n_paths, seed=fc.seed)
    base_lev = float(cfg.engine.max_leverage)
    return {
        "status": env.status, "catastrophic_prob": env.catastrophic_prob, "envelope_score": env.envelope_score,
        "source": sample.source, "n_trades": int(sample.returns.size), "n_paths": env.n_paths,
        "trades_per_path": env.trades_per_path, "trades_per_day": float(sample.trades_per_day),
        "median_return": env.median_return, "iqr_return": env.iqr_return, "p05_return": env.p05_return,
        "config_hash": cfg.champion_hash, "strategy": cfg.strategy, "max_leverage": base_lev * day_boost,
        "base_max_leverage": base_lev, "day_boost": day_boost, "seed": fc.seed, "model": MODEL,
        "source_detail": sample.detail, "ts": now,
        "timestamp": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(),
    }


def read_day_boost(bus: Bus, timeout: float = 5.0) -> float:
    """Return today's ACB boost from the bus, 1.0 when absent, malformed (dropped by the bus) or unreachable."""
    try:
        acb = bus.get(maps.ACB_BOOST, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - BusUnavailable / timeout: assess at boost 1.0
        log.warning("could not read %s (%r); day boost 1.0", maps.KEY_ACB_BOOST, exc)
        return 1.0
    if acb is None:
        return 1.0
    b = float(acb.boost)
    return b if math.isfinite(b) and b > 0 else 1.0


def publish(bus: Bus, payload: dict[str, Any], timeout: float = 5.0) -> None:
    """Write ``payload`` to ``mc_forewarner_latest`` and wait for the member's ack."""
    bus.publish(maps.MC_FOREWARNER, payload, timeout=timeout)


def run_once(fc: ForewarnerConfig, bus: Bus | None) -> dict[str, Any] | None:
    """One assessment cycle: load config, gather, simulate, publish. None (and nothing written) on error."""
    t0 = time.perf_counter()
    try:
        cfg = load_config(fc.config_path)
        if bus is None:
            raise RuntimeError("no bus to publish on")
        boost = read_day_boost(bus, fc.hz_timeout_s)
        sample = gather_returns(fc, cfg)
        payload = assess(fc, cfg, sample, boost)
        publish(bus, payload, fc.hz_timeout_s)
    except Exception as exc:  # noqa: BLE001 - on error: log, write nothing new
        log.exception("assessment failed (%r); %s left unchanged", exc, maps.KEY_MC_FOREWARNER)
        return None
    log.info("mc_forewarner: status=%s prob=%.4f envelope=%.3f source=%s n_trades=%d boost=%.3f in %.2fs",
             payload["status"], payload["catastrophic_prob"], payload["envelope_score"], payload["source"],
             payload["n_trades"], boost, time.perf_counter() - t0)
    return payload


def build_flow():
    """Return the Prefect ``@flow`` (tasks: gather_returns, assess, publish) for a deployment; needs prefect."""
    from prefect import flow, task

    gather_t = task(gather_returns, name="gather_returns", retries=0)
    assess_t = task(assess, name="assess_envelope", retries=0)
    publish_t = task(publish, name="publish_mc", retries=3, retry_delay_seconds=5)

    @flow(name="mc_forewarner_flow")
    def mc_forewarner_flow(config_path: str = str(BLUE_PATH)) -> dict:
        fc = ForewarnerConfig(settings=load_settings(), config_path=Path(config_path))
        bus = Bus(fc.settings, SERVICE_NAME).start()
        try:
            if not bus.wait_connected(fc.settings.hz_connect_timeout_s):
                raise ConnectionError(f"no Hazelcast member at {','.join(fc.settings.hz_members)}")
            cfg = load_config(fc.config_path)
            payload = assess_t(fc, cfg, gather_t(fc, cfg), read_day_boost(bus, fc.hz_timeout_s))
            publish_t(bus, payload, fc.hz_timeout_s)
            return payload
        finally:
            bus.close()

    return mc_forewarner_flow


# ---------------------------------------------------------------- supervised loop
class _Beats:
    """Heartbeats of the loop: fire and forget, except the last one before exiting, which is waited for."""

    def __init__(self, bus: Bus, timeout: float):
        self.bus, self.timeout = bus, timeout
        self.rl = RateLog(log, 60.0)
        self.failed = 0

    def beat(self, wait: bool = False, **fields: Any) -> bool:
        try:
            fut = self.bus.heartbeat(**fields)
            if wait:      # the last heartbeat before exiting must reach the member
                result_within(fut, self.timeout)
            return True
        except Exception as exc:  # noqa: BLE001 - BusUnavailable / timeout: counted, logged rate-limited
            self.failed += 1
            self.rl.warning("hb", "heartbeat failed (%r); %d failed so far", exc, self.failed)
            return False


def run(fc: ForewarnerConfig, bus: Bus, clock: Clock, stop: threading.Event) -> int:
    """Wait for the bus, assess every ``fc.interval_s`` (heartbeat every ``fc.heartbeat_s``) until ``stop``.

    With ``fc.once``: one assessment, its heartbeat waited for, exit 0 (1 on error or when no member
    answers within ``settings.hz_connect_timeout_s``).
    """
    if fc.once:
        if not bus.wait_connected(fc.settings.hz_connect_timeout_s):
            log.error("no Hazelcast member at %s within %.0fs", ",".join(fc.settings.hz_members),
                      fc.settings.hz_connect_timeout_s)
            return 1
    else:
        while not stop.is_set() and not bus.wait_connected(1.0):
            pass
    beats = _Beats(bus, fc.hz_timeout_s)
    while not stop.is_set():
        payload = run_once(fc, bus)
        last = {"last_status": payload["status"], "last_run": payload["ts"]} if payload else {"last_error": True}
        beats.beat(wait=fc.once, **last)
        if fc.once:
            return 0 if payload else 1
        deadline = clock.monotonic() + fc.interval_s
        while not stop.is_set() and clock.monotonic() < deadline:
            clock.wait(stop, min(fc.heartbeat_s, max(0.0, deadline - clock.monotonic())))
            if not stop.is_set():
                beats.beat(**last)
    return 0


def main(argv: list[str] | None = None) -> int:
    return Service.main(SERVICE_NAME, ForewarnerConfig, run, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
