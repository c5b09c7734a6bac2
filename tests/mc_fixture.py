"""A small forewarner model fitted on synthetic samples (no backtest), for tests that need a model file fast.

The samples are a known law: max drawdown grows with the square of leverage × fraction, so a model of
it must give a higher catastrophic probability at a higher leverage.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from prod.configs import StrategyConfig
from prod.mc.model import FEATURES, EnvelopeModel


def synthetic_samples(cfg: StrategyConfig, n: int = 40, seed: int = 3, scale: float = 1.0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``scale`` moves the sampled region: 4.0 puts ``cfg`` itself far outside the envelope (RED)."""
    rng = np.random.default_rng(seed)
    base = scale * np.array([float(getattr(cfg.engine, k)) for k in FEATURES])
    X = base * np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=(n, len(FEATURES))))
    exposure = X[:, 0] * X[:, 1]                        # max_leverage × fraction
    dd = 0.02 * exposure ** 2 * np.exp(rng.normal(0.0, 0.15, n))
    roi = 0.02 * exposure - 0.3 * dd
    return X, dd, roi


def fit_model(cfg: StrategyConfig, path: Path, n: int = 40, seed: int = 3, scale: float = 1.0) -> EnvelopeModel:
    """Fit on :func:`synthetic_samples` for ``cfg`` and save to ``path``."""
    X, dd, roi = synthetic_samples(cfg, n, seed, scale)
    meta = {"trained_at": "2026-01-01T00:00:00+00:00", "config": Path(cfg.source).name, "strategy": cfg.strategy,
            "config_hash": cfg.champion_hash, "base_config": {k: float(getattr(cfg.engine, k)) for k in FEATURES},
            "data": {"dir": "synthetic-law", "date_from": None, "date_to": None, "days": 0, "window_days": 0}}
    m = EnvelopeModel.fit(X, dd, roi, meta, folds=5, seed=seed)
    m.save(path)
    return m
