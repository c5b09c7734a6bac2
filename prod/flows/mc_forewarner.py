"""The MC-forewarner flow (bible §12, §16.8), every 4 h: assess the config as the service does and check the bus.

Design notes: ``docs/design/prod.flows.md``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from prod.bus import maps
from prod.configs import StrategyConfig, load_config
from prod.flows import bus_io
from prod.flows.common import flow_settings, resolve_config, run_settings
from prod.mc.assess import assess, default_model_path
from prod.settings import Settings
from prod.timeparse import parse_timestamp


class McDisagreementError(RuntimeError):
    """The published ``mc_forewarner_latest`` is missing, stale or disagrees with this flow's assessment."""


@task(name="load_config", retries=0, timeout_seconds=10, cache_policy=NO_CACHE)
def load_config_task(config: str) -> StrategyConfig:
    return load_config(resolve_config(config))


@task(name="read_day_boost", retries=2, timeout_seconds=20, cache_policy=NO_CACHE)
def read_day_boost(settings: Settings, timeout_s: float) -> float:
    with bus_io.connect(settings, timeout_s, "mc_forewarner_flow") as c:
        return bus_io.read_acb(c, timeout_s)[0]


@task(name="assess_config", retries=0, timeout_seconds=60, cache_policy=NO_CACHE)
def assess_config(cfg: StrategyConfig, model_path: str, boost: float) -> dict:
    return assess(cfg, Path(model_path), boost)


@task(name="read_published", retries=2, timeout_seconds=20, cache_policy=NO_CACHE)
def read_published(settings: Settings, timeout_s: float) -> dict | None:
    with bus_io.connect(settings, timeout_s, "mc_forewarner_flow") as c:
        return bus_io.read(c, maps.FEATURES, maps.KEY_MC_FOREWARNER, timeout_s)


def compare(assessed: dict, published: dict | None, now: float, max_age_h: float) -> list[str]:
    """Return why ``published`` does not stand for ``assessed`` (empty when it does)."""
    if published is None:
        return [f"nothing published in {maps.FEATURES}[{maps.KEY_MC_FOREWARNER}]: is services.mc_forewarner running?"]
    out = []
    ts = parse_timestamp(published.get("ts"))
    age_h = math.inf if ts is None else (now - ts) / 3600.0
    if age_h > max_age_h:
        out.append(f"published value is {age_h:.1f} h old (> {max_age_h} h)")
    for k in ("status", "source"):
        if published.get(k) != assessed.get(k):
            out.append(f"published {k} {published.get(k)!r} != assessed {assessed.get(k)!r}")
    return out


@flow(name="mc_forewarner_flow", log_prints=True)
def mc_forewarner_flow(config: str = "prod/configs/blue.yml", hz_members: str | None = None,
                       data_dir: str | None = None, model_path: str | None = None, max_age_h: float = 8.0) -> dict:
    """Assess ``config``, compare with the published ``mc_forewarner_latest``; return both (writes nothing)."""
    fs = flow_settings()
    settings = run_settings(hz_members, data_dir)
    rd = {"retry_delay_seconds": fs.retry_delay_s}
    cfg = load_config_task(config)
    model = model_path or str(default_model_path(settings.data_dir, cfg.strategy))
    boost = read_day_boost.with_options(**rd)(settings, fs.hz_timeout_s)
    assessed = assess_config(cfg, model, boost)
    published = read_published.with_options(**rd)(settings, fs.hz_timeout_s)
    problems = compare(assessed, published, time.time(), max_age_h)
    print(f"mc_forewarner: assessed {assessed['status']} {assessed['source']} prob={assessed['catastrophic_prob']} "
          f"envelope={assessed['envelope_score']} boost={boost:.3f}; published "
          f"{None if published is None else (published.get('status'), published.get('source'))}")
    if problems:
        raise McDisagreementError("; ".join(problems))
    return {"assessed": assessed, "published": published}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prod.flows.mc_forewarner",
                                 description="DOLPHIN MC-forewarner flow (one assessment, checked against the bus)")
    ap.add_argument("--config", default="prod/configs/blue.yml")
    ap.add_argument("--model-path", default=None, help="model file (default <data_dir>/mc_models/<strategy>_forewarner.zip)")
    ap.add_argument("--api-url", default=None, help="Prefect API (default: $PREFECT_API_URL or the embedded server)")
    args = ap.parse_args(argv)
    from prod.flows.common import run_with_api
    return run_with_api(args.api_url, lambda: mc_forewarner_flow(config=args.config, model_path=args.model_path))


if __name__ == "__main__":
    sys.exit(main())
