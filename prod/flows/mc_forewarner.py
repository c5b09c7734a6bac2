"""The MC-forewarner flow (bible §12, §16.8), every 4 h: assess the config's envelope, publish OK/ORANGE/RED.

The assessment is :mod:`services.mc_forewarner`'s, called through its public functions (nothing is copied):
``gather_returns`` (journal → backtest → synthetic prior; files only) and ``assess`` (pure). The bus
reads and the write go through :mod:`prod.flows.bus_io`.

=================  =======  =======  ===============================================================
task               retries  timeout  does
=================  =======  =======  ===============================================================
load_config        0        10 s     the strategy config
read_day_boost     2        20 s     ``DOLPHIN_FEATURES[acb_boost].boost`` (1.0 when absent)
gather_returns     1        300 s    per-trade returns of the best available source
assess_envelope    0        120 s    bootstrap the envelope; §12 status
publish_mc         3        30 s     ``DOLPHIN_FEATURES[mc_forewarner_latest]``
=================  =======  =======  ===============================================================

    python -m prod.flows.mc_forewarner [--config prod/configs/blue.yml]
"""
from __future__ import annotations

import argparse
import sys

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from prod.bus import maps
from prod.configs import StrategyConfig, load_config
from prod.flows import bus_io
from prod.flows.common import flow_settings, resolve_config, run_settings
from prod.settings import Settings


def _mf():
    from services.mc_forewarner import main as mf   # imported when a run needs it (numpy, sqlite, backtest)
    return mf


@task(name="load_config", retries=0, timeout_seconds=10, cache_policy=NO_CACHE)
def load_config_task(config: str) -> StrategyConfig:
    return load_config(resolve_config(config))


@task(name="read_day_boost", retries=2, timeout_seconds=20, cache_policy=NO_CACHE)
def read_day_boost(settings: Settings, timeout_s: float) -> float:
    with bus_io.connect(settings, timeout_s, "mc_forewarner_flow") as c:
        return bus_io.read_acb(c, timeout_s)[0]


@task(name="gather_returns", retries=1, timeout_seconds=300, cache_policy=NO_CACHE)
def gather_returns(settings: Settings, config: str, cfg: StrategyConfig):
    mf = _mf()
    fc = mf.ForewarnerConfig(settings=settings, config_path=resolve_config(config))
    return fc, mf.gather_returns(fc, cfg)


@task(name="assess_envelope", retries=0, timeout_seconds=120, cache_policy=NO_CACHE)
def assess_envelope(fc, cfg: StrategyConfig, sample, boost: float) -> dict:
    return _mf().assess(fc, cfg, sample, boost)


@task(name="publish_mc", retries=3, timeout_seconds=30, cache_policy=NO_CACHE)
def publish_mc(settings: Settings, timeout_s: float, payload: dict) -> str:
    with bus_io.connect(settings, timeout_s, "mc_forewarner_flow") as c:
        bus_io.write_all(c, [(maps.FEATURES, maps.KEY_MC_FOREWARNER, payload)], timeout_s)
    return f"{maps.FEATURES}[{maps.KEY_MC_FOREWARNER}]"


@flow(name="mc_forewarner_flow", log_prints=True)
def mc_forewarner_flow(config: str = "prod/configs/blue.yml", hz_members: str | None = None,
                       data_dir: str | None = None) -> dict:
    """Assess ``config`` and publish ``mc_forewarner_latest``; return the payload."""
    fs = flow_settings()
    settings = run_settings(hz_members, data_dir)
    rd = {"retry_delay_seconds": fs.retry_delay_s}
    cfg = load_config_task(config)
    boost = read_day_boost.with_options(**rd)(settings, fs.hz_timeout_s)
    fc, sample = gather_returns.with_options(**rd)(settings, config, cfg)
    payload = assess_envelope(fc, cfg, sample, boost)
    publish_mc.with_options(**rd)(settings, fs.hz_timeout_s, payload)
    return payload


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prod.flows.mc_forewarner",
                                 description="DOLPHIN MC-forewarner flow (one assessment)")
    ap.add_argument("--config", default="prod/configs/blue.yml")
    ap.add_argument("--api-url", default=None, help="Prefect API (default: $PREFECT_API_URL or the embedded server)")
    args = ap.parse_args(argv)
    from prod.flows.common import run_with_api
    return run_with_api(args.api_url, lambda: mc_forewarner_flow(config=args.config))


if __name__ == "__main__":
    sys.exit(main())
