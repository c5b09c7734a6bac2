"""One MC-forewarner assessment (bible §12, §28.6): the model's verdict on a config at today's boost, or the fallback.

Design notes: ``docs/design/prod.mc.md``.
"""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from prod.alpha.mc_status import classify_mc
from prod.configs import StrategyConfig
from prod.mc.model import EnvelopeModel, ModelError

REAL_MODEL, FALLBACK_NO_DATA, FALLBACK_ERROR = "REAL_MODEL", "FALLBACK_NO_DATA", "FALLBACK_ERROR"
SOURCES = (REAL_MODEL, FALLBACK_NO_DATA, FALLBACK_ERROR)
FALLBACK_PROB, FALLBACK_ENVELOPE = 0.20, 0.80      # §28.6: FALLBACK_NO_DATA (ORANGE, prob=0.20, env=0.80)
BUS_STATUS = {"OK": "GREEN", "ORANGE": "ORANGE", "RED": "RED"}


def bus_status(prob: float, envelope: float) -> str:
    """§12's classification under §28.6's bus names: 'GREEN' | 'ORANGE' | 'RED'."""
    return BUS_STATUS[classify_mc(prob, envelope)]


def assess(cfg: StrategyConfig, model_path: Path | None, day_boost: float = 1.0,
           now: float | None = None) -> dict[str, Any]:
    """Return the ``mc_forewarner_latest`` payload for ``cfg`` at ``day_boost`` (never raises)."""
    import time
    now = time.time() if now is None else now
    base_lev = float(cfg.engine.max_leverage)
    boost = day_boost if isinstance(day_boost, (int, float)) and math.isfinite(day_boost) and day_boost > 0 else 1.0
    out: dict[str, Any] = {
        "ts": now, "timestamp": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(),
        "config_hash": cfg.champion_hash, "strategy": cfg.strategy, "day_boost": float(boost),
        "base_max_leverage": base_lev, "max_leverage": base_lev * boost,
    }
    if model_path is None or not Path(model_path).is_file():
        why = "no model configured" if model_path is None else f"no model file at {model_path}"
        return {**out, "status": "ORANGE", "source": FALLBACK_NO_DATA, "catastrophic_prob": FALLBACK_PROB,
                "envelope_score": FALLBACK_ENVELOPE, "reason": why, "model": None}
    try:
        model = EnvelopeModel.load(model_path, cfg.champion_hash)
        rep = model.assess_config_dict({**model.base_config, "max_leverage": base_lev * boost})
        if not (math.isfinite(rep.catastrophic_probability) and math.isfinite(rep.envelope_score)):
            raise ValueError(f"{model_path}: the model gave a non-finite assessment")
    except (ModelError, ValueError, OSError, KeyError, TypeError, AttributeError) as exc:
        return {**out, "status": "ORANGE", "source": FALLBACK_ERROR, "catastrophic_prob": None,
                "envelope_score": None, "reason": f"{type(exc).__name__}: {exc}", "model": None}
    m = model.meta
    return {**out, "status": bus_status(rep.catastrophic_probability, rep.envelope_score), "source": REAL_MODEL,
            "catastrophic_prob": rep.catastrophic_probability, "envelope_score": rep.envelope_score,
            "predicted_max_dd": rep.predicted_max_dd, "reason": None,
            "model": {"file": Path(model_path).name, "trained_at": m.get("trained_at"), "data": m.get("data"),
                      "n_samples": m.get("n_samples"), "out_of_sample": m.get("out_of_sample")}}


def assess_error(reason: str, now: float | None = None, cfg: StrategyConfig | None = None) -> dict[str, Any]:
    """Return the ``FALLBACK_ERROR`` payload (ORANGE) for an assessment that could not run."""
    import time
    now = time.time() if now is None else now
    return {"ts": now, "timestamp": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(),
            "status": "ORANGE", "source": FALLBACK_ERROR, "catastrophic_prob": None, "envelope_score": None,
            "reason": reason, "model": None, "config_hash": None if cfg is None else cfg.champion_hash,
            "strategy": None if cfg is None else cfg.strategy}


def default_model_path(data_dir: str | Path, strategy: str) -> Path:
    """Where the service and the flow look for a model when none is configured: ``<data_dir>/mc_models/``."""
    return Path(data_dir) / "mc_models" / f"{strategy}_forewarner.zip"
