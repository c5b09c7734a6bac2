"""The backtest supervisor flow (bible §17.2, our ``nautilus_prefect_flow``): one day through the engine, guarded.

Design notes: ``docs/design/prod.flows.md``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from prod.bus import maps
from prod.configs import CHAMPION_HASH, ConfigDriftError, StrategyConfig, load_config
from prod.flows import bus_io
from prod.flows.common import DayContext, default_date, flow_settings, replay_day, resolve_config, run_settings
from prod.flows.days import LoadedDay, load_validated_day
from prod.settings import Settings

FLOW = "backtest_flow"
log = logging.getLogger("dolphin.flows.backtest")


@task(name="hz_probe", retries=3, timeout_seconds=30, cache_policy=NO_CACHE)
def hz_probe(settings: Settings, timeout_s: float, date: str) -> float:
    t0 = time.perf_counter()
    with bus_io.connect(settings, timeout_s, FLOW) as c:
        bus_io.heartbeat(c, bus_io.HEARTBEAT_PROBE, timeout_s, run_date=date, flow=FLOW)
    return round(time.perf_counter() - t0, 4)


@task(name="validate_champion", retries=0, timeout_seconds=10, cache_policy=NO_CACHE)
def validate_champion(config: str) -> StrategyConfig:
    cfg = load_config(resolve_config(config))          # a drifted blue config raises ConfigDriftError here
    if cfg.strategy == "blue" and cfg.champion_hash != CHAMPION_HASH:
        raise ConfigDriftError(cfg.source, {"champion_hash": (cfg.champion_hash, CHAMPION_HASH)})
    log.info("config %s: strategy %s hash %s (champion %s)", cfg.source, cfg.strategy, cfg.champion_hash,
             cfg.champion_hash == CHAMPION_HASH)
    return cfg


@task(name="load_bar_data", retries=2, timeout_seconds=120, cache_policy=NO_CACHE)
def load_bar_data(data_dir: Path, date: str) -> LoadedDay:
    return load_validated_day(data_dir, date)


@task(name="read_posture", retries=2, timeout_seconds=20, cache_policy=NO_CACHE)
def read_posture(settings: Settings, timeout_s: float) -> DayContext:
    with bus_io.connect(settings, timeout_s, FLOW) as c:
        posture, src = bus_io.read_posture(c, timeout_s)
        boost, beta = bus_io.read_acb(c, timeout_s)
        mc = bus_io.read_mc_status(c, timeout_s)
    return DayContext(posture, src, boost, beta, mc)


@task(name="restore_capital", retries=2, timeout_seconds=20, cache_policy=NO_CACHE)
def restore_capital(settings: Settings, timeout_s: float, cfg: StrategyConfig, date: str) -> tuple[float, str]:
    with bus_io.connect(settings, timeout_s, FLOW) as c:
        st = bus_io.read(c, maps.STATE_BLUE, bus_io.STATE_BACKTEST_LATEST, timeout_s)
    if st is not None and st.get("strategy") == cfg.strategy:
        if st.get("date", "") < date:
            return float(st["capital"]), f"{bus_io.STATE_BACKTEST_LATEST}@{st.get('date')}"
        if st.get("date") == date and st.get("start_capital") is not None:
            return float(st["start_capital"]), f"{bus_io.STATE_BACKTEST_LATEST}@{date}:start"
    return float(cfg.engine.initial_capital), "initial_capital"


@task(name="run_backtest", retries=0, timeout_seconds=600, cache_policy=NO_CACHE)
def run_backtest(cfg: StrategyConfig, loaded: LoadedDay, ctx: DayContext, capital: float,
                 engine: str = "native") -> dict:
    if engine == "nautilus":     # the bible's BacktestEngine + DolphinActor (docs/nautilus.md; the .[nautilus] extra)
        from prod.nautilus.backtest import replay_day_nautilus
        result = replay_day_nautilus(cfg, loaded.day, ctx, start_capital=capital, close_at_end=True)
        result.update(source=loaded.source, origin=loaded.origin)
        return result
    result, _ = replay_day(cfg, loaded.day, ctx, start_capital=capital, close_at_end=True)
    result.update(source=loaded.source, origin=loaded.origin)
    return result


@task(name="write_hz_result", retries=3, timeout_seconds=30, cache_policy=NO_CACHE)
def write_hz_result(settings: Settings, timeout_s: float, result: dict) -> list[str]:
    now = time.time()
    s = result["strategy"]
    pnl = {**result, "flow": FLOW, "updated_at": now}
    state = {"strategy": s, "capital": result["capital"], "start_capital": result["start_capital"],
             "date": result["date"], "pnl": result["pnl"], "trades": result["trades"], "posture": result["posture"],
             "param_hash": result["config_hash"], "engine": "NDAlphaEngine", "updated_at": now, "flow": FLOW}
    writes = [(bus_io.pnl_map(s), bus_io.pnl_key(FLOW, result["date"]), pnl)]
    if s == "blue":
        writes.append((maps.STATE_BLUE, bus_io.STATE_BACKTEST_LATEST, state))
    with bus_io.connect(settings, timeout_s, FLOW) as c:
        bus_io.write_all(c, writes, timeout_s)
    return [f"{m}[{k}]" for m, k, _ in writes]


@task(name="heartbeat", retries=0, timeout_seconds=15, cache_policy=NO_CACHE)
def heartbeat(settings: Settings, timeout_s: float, date: str, phase: str) -> dict:
    with bus_io.connect(settings, timeout_s, FLOW) as c:
        return bus_io.heartbeat(c, bus_io.HEARTBEAT_BACKTEST, timeout_s, run_date=date, phase=phase, flow=FLOW)


@flow(name="backtest_supervisor_flow", log_prints=True)
def backtest_supervisor_flow(config: str = "prod/configs/blue.yml", date: str | None = None, dry_run: bool = False,
                             hz_members: str | None = None, data_dir: str | None = None, engine: str = "native") -> dict:
    """Run one day (default: yesterday UTC) through the engine behind the §17.2 guards.

    ``engine="nautilus"``: the day runs through a Nautilus BacktestEngine with DolphinActor (``.[nautilus]``)."""
    if engine not in ("native", "nautilus"):
        raise ValueError(f"engine={engine!r}: expected 'native' or 'nautilus'")
    if engine == "nautilus":
        from prod.nautilus import require_nautilus
        require_nautilus()           # one line naming the extra, before anything runs
    date = date or default_date()
    fs = flow_settings()
    settings = run_settings(hz_members, data_dir)
    rd = {"retry_delay_seconds": fs.retry_delay_s}
    t = fs.hz_timeout_s
    if dry_run:
        cfg = validate_champion(config)
        loaded = load_bar_data.with_options(**rd)(settings.data_dir, date)
        return {"dry_run": True, "date": date, "strategy": cfg.strategy, "config_hash": cfg.champion_hash,
                "bars": loaded.day.n_bars, "valid_vel_div": loaded.valid_vel_div, "source": loaded.source,
                "origin": loaded.origin}
    probe_s = hz_probe.with_options(**rd)(settings, t, date)
    cfg = validate_champion(config)
    heartbeat(settings, t, date, "flow_start")
    loaded = load_bar_data.with_options(**rd)(settings.data_dir, date)
    ctx = read_posture.with_options(**rd)(settings, t)
    capital, restored_from = restore_capital.with_options(**rd)(settings, t, cfg, date)
    if ctx.posture == "HIBERNATE":
        heartbeat(settings, t, date, "hibernate")
        result = {"date": date, "strategy": cfg.strategy, "capital": capital, "start_capital": capital, "pnl": 0.0,
                  "trades": 0, "boost": ctx.boost, "beta": ctx.beta, "mc_status": ctx.mc_status or "OK",
                  "posture": "HIBERNATE", "skipped": "HIBERNATE", "bars": loaded.day.n_bars,
                  "config_hash": cfg.champion_hash}
    else:
        heartbeat(settings, t, date, "engine_start")
        result = run_backtest(cfg, loaded, ctx, capital, engine)
    result.update(restored_from=restored_from, posture_source=ctx.posture_source, hz_probe_s=probe_s)
    result["written"] = write_hz_result.with_options(**rd)(settings, t, result)
    heartbeat(settings, t, date, "flow_end")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prod.flows.backtest",
                                 description="DOLPHIN backtest supervisor flow (one day, §17.2 guards)")
    ap.add_argument("--config", default="prod/configs/blue.yml")
    ap.add_argument("--date", default=None, help="YYYY-MM-DD (default: yesterday UTC)")
    ap.add_argument("--dry-run", action="store_true", help="validate the config and the day's data only")
    ap.add_argument("--engine", choices=("native", "nautilus"), default="native",
                    help="nautilus: a Nautilus BacktestEngine with DolphinActor (the .[nautilus] extra)")
    ap.add_argument("--api-url", default=None, help="Prefect API (default: $PREFECT_API_URL or the embedded server)")
    args = ap.parse_args(argv)
    from prod.flows.common import run_with_api
    return run_with_api(args.api_url, lambda: backtest_supervisor_flow(config=args.config, date=args.date,
                                                                       dry_run=args.dry_run, engine=args.engine))


if __name__ == "__main__":
    sys.exit(main())
