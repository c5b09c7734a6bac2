"""The daily paper-trade flow (bible §16.9, §17.3): one day of scans through NDAlphaEngine, results to the bus.

Design notes: ``docs/design/prod.flows.md``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from prod.bus import maps
from prod.configs import StrategyConfig, load_config
from prod.flows import bus_io
from prod.flows.common import (DayContext, append_jsonl, default_date, flow_settings, replay_day, resolve_config,
                               run_settings)
from prod.flows.days import LoadedDay, load_validated_day
from prod.settings import Settings

FLOW = "paper_flow"
log = logging.getLogger("dolphin.flows.paper")


@task(name="load_config", retries=0, timeout_seconds=10, cache_policy=NO_CACHE)
def load_config_task(config: str) -> StrategyConfig:
    return load_config(resolve_config(config))


@task(name="load_day_scans", retries=2, timeout_seconds=120, cache_policy=NO_CACHE)
def load_day_scans(data_dir: Path, date: str) -> LoadedDay:
    d = load_validated_day(data_dir, date)
    log.info("day %s: %d bars (%d with vel_div) from %s %s", date, d.day.n_bars, d.valid_vel_div, d.source, d.origin)
    return d


@task(name="read_day_context", retries=2, timeout_seconds=20, cache_policy=NO_CACHE)
def read_day_context(settings: Settings, timeout_s: float) -> DayContext:
    with bus_io.connect(settings, timeout_s, "paper_flow") as c:
        posture, src = bus_io.read_posture(c, timeout_s)
        boost, beta = bus_io.read_acb(c, timeout_s)
        mc = bus_io.read_mc_status(c, timeout_s)
    log.info("context: posture=%s (%s) boost=%.3f beta=%.2f mc=%s", posture, src, boost, beta, mc)
    return DayContext(posture, src, boost, beta, mc)


def _prev_date(date: str) -> str:
    return (dt.date.fromisoformat(date) - dt.timedelta(days=1)).isoformat()


@task(name="restore_state", retries=2, timeout_seconds=20, cache_policy=NO_CACHE)
def restore_state(settings: Settings, timeout_s: float, strategy: str, date: str) -> dict | None:
    """Return the stored run this day continues from ({date, capital, engine_state, ...}) or None."""
    get = lambda c, k: bus_io.read(c, maps.STATE_BLUE, k, timeout_s)  # noqa: E731
    with bus_io.connect(settings, timeout_s, "paper_flow") as c:
        prev = get(c, bus_io.paper_state_key(strategy, _prev_date(date)))
        if prev is not None:
            return prev
        latest = get(c, bus_io.paper_latest_key(strategy))
        if latest is not None and latest.get("date", "") < date:
            return latest
        same = get(c, bus_io.paper_state_key(strategy, date))
        if same is not None and same.get("restored_from"):
            return get(c, bus_io.paper_state_key(strategy, same["restored_from"]))
    return None


@task(name="run_engine_day", retries=0, timeout_seconds=600, cache_policy=NO_CACHE)
def run_engine_day(cfg: StrategyConfig, loaded: LoadedDay, ctx: DayContext, restored: dict | None) -> tuple[dict, dict]:
    state = None if restored is None else restored.get("engine_state")
    result, engine_state = replay_day(cfg, loaded.day, ctx, start_state=state)
    result.update(source=loaded.source, origin=loaded.origin, posture_source=ctx.posture_source,
                  restored_from=None if restored is None else restored.get("date"))
    log.info("engine %s %s: capital %.2f -> %.2f, %d trades, posture %s", cfg.strategy, result["date"],
             result["start_capital"], result["capital"], result["trades"], result["posture"])
    return result, engine_state


@task(name="write_hz_state", retries=3, timeout_seconds=30, cache_policy=NO_CACHE)
def write_hz_state(settings: Settings, timeout_s: float, result: dict, engine_state: dict) -> list[str]:
    s, date, now = result["strategy"], result["date"], time.time()
    pnl = {**result, "flow": FLOW, "updated_at": now}
    prev_peak = float(result.get("peak_capital_before") or result["start_capital"])
    peak = max(prev_peak, result["capital"])
    state = {"strategy": s, "date": date, "capital": result["capital"], "pnl": result["pnl"],
             "trades": result["trades"], "peak_capital": peak, "drawdown": 1.0 - result["capital"] / peak,
             "restored_from": result["restored_from"], "config_hash": result["config_hash"],
             "engine_state": engine_state, "updated_at": now, "flow": FLOW}
    writes = [(maps.STATE_BLUE, bus_io.paper_state_key(s, date), state),
              (bus_io.pnl_map(s), bus_io.pnl_key(FLOW, date), pnl)]
    with bus_io.connect(settings, timeout_s, "paper_flow") as c:
        latest = bus_io.read(c, maps.STATE_BLUE, bus_io.paper_latest_key(s), timeout_s)
        if latest is None or latest.get("date", "") <= date:    # a back-filled older day never moves latest back
            writes.append((maps.STATE_BLUE, bus_io.paper_latest_key(s), state))
        bus_io.write_all(c, writes, timeout_s)
    return [f"{m}[{k}]" for m, k, _ in writes]


@task(name="log_pnl", retries=0, timeout_seconds=15, cache_policy=NO_CACHE)
def log_pnl(run_logs: Path, result: dict) -> str:
    path = Path(run_logs) / "paper_logs" / result["strategy"] / "paper_pnl.jsonl"
    return str(append_jsonl(path, {**result, "logged_at": time.time()}))


@flow(name="paper_trade_flow", log_prints=True)
def paper_trade_flow(config: str = "prod/configs/blue.yml", date: str | None = None, hz_members: str | None = None,
                     data_dir: str | None = None, run_logs: str | None = None) -> dict:
    """Replay one UTC day (default: yesterday) of ``config`` through the engine and publish the result."""
    date = date or default_date()
    fs = flow_settings()
    settings = run_settings(hz_members, data_dir, run_logs)
    rd = {"retry_delay_seconds": fs.retry_delay_s}
    cfg = load_config_task(config)
    loaded = load_day_scans.with_options(**rd)(settings.data_dir, date)
    ctx = read_day_context.with_options(**rd)(settings, fs.hz_timeout_s)
    restored = restore_state.with_options(**rd)(settings, fs.hz_timeout_s, cfg.strategy, date)
    result, engine_state = run_engine_day(cfg, loaded, ctx, restored)
    result["peak_capital_before"] = None if restored is None else restored.get("peak_capital")
    written = write_hz_state.with_options(**rd)(settings, fs.hz_timeout_s, result, engine_state)
    result["jsonl"] = log_pnl(settings.run_logs, result)
    result["written"] = written
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prod.flows.paper_trade",
                                 description="DOLPHIN paper-trade flow: replay one day through the engine")
    ap.add_argument("--config", default="prod/configs/blue.yml")
    ap.add_argument("--date", default=None, help="YYYY-MM-DD (default: yesterday UTC)")
    ap.add_argument("--api-url", default=None, help="Prefect API (default: $PREFECT_API_URL or the embedded server)")
    args = ap.parse_args(argv)
    from prod.flows.common import run_with_api
    return run_with_api(args.api_url, lambda: paper_trade_flow(config=args.config, date=args.date))


if __name__ == "__main__":
    sys.exit(main())
