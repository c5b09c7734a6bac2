"""Monte Carlo over the champion's parameter space, each sample backtested, then the envelope model fitted.

Design notes: ``docs/design/prod.mc.md``.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from prod.backtest.data import list_day_files
from prod.backtest.runner import BacktestError, BacktestOptions, run_backtest
from prod.configs import StrategyConfig, load_config
from prod.mc.model import FEATURES, EnvelopeModel

log = logging.getLogger("dolphin.mc")

# parameter -> (low, high) multiplicative factor on the base config's value, drawn log-uniformly
PERTURB: dict[str, tuple[float, float]] = {
    "max_leverage": (0.5, 2.0),
    "fraction": (0.5, 2.0),
    "fixed_tp_pct": (0.5, 2.0),
    "max_hold_bars": (0.5, 2.0),
    "vel_div_threshold": (0.5, 1.5),
    "vel_div_extreme": (0.6, 1.6),
}
EXTREME_GAP = 0.005


class TrainError(RuntimeError):
    """Training cannot run (no data, too few samples); the message names what to fix."""


@dataclass(frozen=True)
class TrainOptions:
    """Everything one training run needs."""
    config: Path
    data: Path
    out: Path
    samples: int = 48
    window_days: int = 1
    seed: int = 7
    folds: int = 5
    exf: Path | None = None

    def __post_init__(self) -> None:
        if self.samples < 4:
            raise TrainError(f"--samples {self.samples}: need at least 4")
        if self.window_days < 1:
            raise TrainError(f"--window-days {self.window_days}: must be >= 1")
        if self.folds < 2:
            raise TrainError(f"--folds {self.folds}: must be >= 2")


def sample_config(base: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Return the engine parameters of one perturbed config (``base`` is ``EngineParams.to_dict()``)."""
    eng = dict(base)
    for k, (lo, hi) in PERTURB.items():
        eng[k] = float(base[k]) * math.exp(rng.uniform(math.log(lo), math.log(hi)))
    eng["max_hold_bars"] = max(1, int(round(eng["max_hold_bars"])))
    eng["fraction"] = min(1.0, max(eng["fraction"], float(base["min_fraction"])))
    eng["vel_div_extreme"] = min(eng["vel_div_extreme"], eng["vel_div_threshold"] - EXTREME_GAP)
    eng["abs_max_leverage"] = max(float(base["abs_max_leverage"]), eng["max_leverage"])
    return eng


def _write_config(cfg: StrategyConfig, engine: dict[str, Any], path: Path) -> Path:
    eng = {k: v for k, v in engine.items() if k != "direction"}
    doc = {"strategy": cfg.strategy, "direction": "SHORT" if cfg.direction < 0 else "LONG",
           "engine": eng, "acb": cfg.acb.to_dict()}
    path.write_text(yaml.safe_dump(doc, sort_keys=True), encoding="utf-8")
    return path


def run_samples(opts: TrainOptions, cfg: StrategyConfig, days: list[tuple[str, Path]]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Backtest ``opts.samples`` perturbed configs on random windows; return X, max DD, ROI and the rows."""
    rng = np.random.default_rng(opts.seed)
    base = cfg.engine.to_dict()
    w = min(opts.window_days, len(days))
    X, dd, roi, rows = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="dolphin_mc_") as tmp:
        exf = opts.exf if opts.exf is not None else Path(tmp) / "no_exf.json"   # absent file: boost 1.0
        for i in range(opts.samples):
            eng = sample_config(base, rng)
            start = int(rng.integers(0, len(days) - w + 1))
            d0, d1 = days[start][0], days[start + w - 1][0]
            path = _write_config(cfg, eng, Path(tmp) / f"sample_{i}.yml")
            res = run_backtest(BacktestOptions(
                config=path, data=opts.data, date_from=dt.date.fromisoformat(d0), date_to=dt.date.fromisoformat(d1),
                summary=Path(tmp) / f"summary_{i}.json", exf=exf, png=False, allow_drift=True))
            s = res.summary
            X.append([float(eng[k]) for k in FEATURES])
            dd.append(float(s["max_drawdown_pct"]) / 100.0)
            roi.append(float(s["roi_pct"]) / 100.0)
            rows.append({"date_from": d0, "date_to": d1, "trades": s["trades"], "max_dd_pct": s["max_drawdown_pct"],
                         "roi_pct": s["roi_pct"], **{k: eng[k] for k in FEATURES}})
            log.info("mc sample %d/%d %s..%s lev=%.2f frac=%.3f tp=%.4f hold=%d thr=%.4f ext=%.4f -> "
                     "DD %.2f%% ROI %+.2f%% trades %d", i + 1, opts.samples, d0, d1, *(eng[k] for k in FEATURES),
                     s["max_drawdown_pct"], s["roi_pct"], s["trades"])
    return np.asarray(X), np.asarray(dd), np.asarray(roi), rows


def train(opts: TrainOptions, now: dt.datetime | None = None) -> tuple[EnvelopeModel, dict[str, Any]]:
    """Run the Monte Carlo, fit the model and write it to ``opts.out``; return it and a report."""
    now = now or dt.datetime.now(dt.timezone.utc)
    cfg = load_config(opts.config)
    days = list_day_files(opts.data) if Path(opts.data).is_dir() else []
    if not days:
        raise TrainError(f"no YYYY-MM-DD.parquet day files in {opts.data}")
    t0 = time.perf_counter()
    try:
        X, dd, roi, rows = run_samples(opts, cfg, days)
    except BacktestError as exc:
        raise TrainError(f"backtest of a sample failed: {exc}") from None
    t_mc = time.perf_counter() - t0
    meta = {
        "trained_at": now.isoformat(), "config": Path(cfg.source).name, "strategy": cfg.strategy,
        "config_hash": cfg.champion_hash, "base_config": {k: float(getattr(cfg.engine, k)) for k in FEATURES},
        "data": {"dir": Path(opts.data).name, "date_from": days[0][0], "date_to": days[-1][0], "days": len(days),
                 "window_days": min(opts.window_days, len(days))},
        "perturb": {k: list(v) for k, v in PERTURB.items()}, "seed": opts.seed,
        "acb_exf": None if opts.exf is None else Path(opts.exf).name,
    }
    t1 = time.perf_counter()
    model = EnvelopeModel.fit(X, dd, roi, meta, folds=opts.folds, seed=opts.seed)
    t_fit = time.perf_counter() - t1
    model.meta["training_time_s"] = {"monte_carlo": t_mc, "fit": t_fit, "per_sample": t_mc / len(rows)}
    model.save(opts.out)
    report = {"model": str(opts.out), "samples": len(rows), "training_time_s": model.meta["training_time_s"],
              "out_of_sample": model.meta["out_of_sample"], "n_catastrophic": model.meta["n_catastrophic"],
              "data": model.meta["data"], "config_hash": cfg.champion_hash}
    return model, report
