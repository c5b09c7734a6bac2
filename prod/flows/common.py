"""What the DOLPHIN flows share: their settings, the day's engine replay and the JSONL run log.

Design notes: ``docs/design/prod.flows.md``.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from prod.alpha.engine import NDAlphaEngine
from prod.alpha.vol import VolGate
from prod.backtest.runner import day_vol_gates
from prod.configs import StrategyConfig
from prod.settings import REPO_ROOT, ConfigError, Settings, load_settings

DEFAULT_API_URL = "http://127.0.0.1:4200/api"


@dataclass(frozen=True)
class FlowSettings:
    """Retry delay and bus timeout of the flows' tasks."""
    retry_delay_s: float = 10.0
    hz_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.retry_delay_s <= 3600:
            raise ConfigError(f"DOLPHIN_FLOW_RETRY_DELAY_S={self.retry_delay_s}: must be in [0, 3600]")
        if not 0.1 <= self.hz_timeout_s <= 300:
            raise ConfigError(f"DOLPHIN_FLOW_HZ_TIMEOUT_S={self.hz_timeout_s}: must be in [0.1, 300]")


def flow_settings(env: Mapping[str, str] | None = None) -> FlowSettings:
    """Read :class:`FlowSettings` from the environment."""
    env = os.environ if env is None else env
    vals = {}
    for var, name in (("DOLPHIN_FLOW_RETRY_DELAY_S", "retry_delay_s"), ("DOLPHIN_FLOW_HZ_TIMEOUT_S", "hz_timeout_s")):
        if env.get(var):
            try:
                vals[name] = float(env[var])
            except ValueError:
                raise ConfigError(f"{var}={env[var]!r}: not a number") from None
    return FlowSettings(**vals)


def run_settings(hz_members: str | None = None, data_dir: str | None = None, run_logs: str | None = None) -> Settings:
    """Return the process settings with a flow run's overrides applied."""
    members = tuple(m.strip() for m in hz_members.split(",") if m.strip()) if hz_members else None
    return load_settings(hz_members=members, data_dir=data_dir, run_logs=run_logs)


def resolve_config(path: str) -> Path:
    """Return ``path`` as given when absolute, else relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def default_date(now: dt.datetime | None = None) -> str:
    """Return yesterday (UTC): the last complete day, the one a 00:05 run replays."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return (now.date() - dt.timedelta(days=1)).isoformat()


def align_prices(prices: np.ndarray, have: tuple[str, ...], want: tuple[str, ...]) -> np.ndarray:
    """Reorder the (bars × assets) matrix from ``have`` to ``want`` (NaN for a missing asset)."""
    if have == want:
        return np.ascontiguousarray(prices)
    idx = {a: j for j, a in enumerate(have)}
    out = np.full((prices.shape[0], len(want)), np.nan)
    for i, a in enumerate(want):
        if a in idx:
            out[:, i] = prices[:, idx[a]]
    return out


@dataclass(frozen=True)
class DayContext:
    """What the bus says about the day before the engine starts."""
    posture: str
    posture_source: str
    boost: float
    beta: float
    mc_status: str | None


def replay_day(cfg: StrategyConfig, day: Any, ctx: DayContext, start_state: Mapping | None = None,
               start_capital: float | None = None, close_at_end: bool = False) -> tuple[dict, dict]:
    """Run ``begin_day / step_bar × N / end_day`` for one day; return (day result dict, engine state).

    ``start_state`` (an earlier run's ``get_state()``) restores the engine whole; otherwise a fresh
    engine starts from ``start_capital`` (or the config's initial capital). ``close_at_end`` closes a
    position still open after the last bar (END_OF_DATA), so the day's capital is realised.
    """
    gate = VolGate()     # the trader's and the backtest's volatility gate; carried across days in start_state
    if start_state is not None and isinstance(start_state.get("vol_gate"), dict):
        gate.restore(start_state["vol_gate"])
    if start_state is not None:
        start_state = {k: v for k, v in start_state.items() if k != "vol_gate"}
        eng = NDAlphaEngine.from_state(cfg.engine, start_state)
    else:
        eng = NDAlphaEngine(cfg.engine, day.assets)
        if start_capital is not None:
            eng.capital = float(start_capital)
    prices = align_prices(day.prices, tuple(day.assets), tuple(eng.assets))
    start_cap = eng.capital
    eng.begin_day(day.date, posture=ctx.posture, direction=cfg.direction, boost=ctx.boost, beta=ctx.beta,
                  mc_status=ctx.mc_status)
    vd, v50, v750 = day.vel_div.tolist(), day.v50.tolist(), day.v750.tolist()
    base = int(start_state["bar_count"]) if start_state is not None else 0
    skipped = 0
    t0 = time.perf_counter()
    vol_ok = day_vol_gates(gate, prices, tuple(eng.assets))
    for i in range(day.n_bars):
        r = eng.step_bar(base + i, vd[i], prices[i], v50[i], v750[i], vol_ok[i])
        skipped += r.skipped is not None
    if close_at_end and eng.position is not None and day.n_bars:
        eng.close_position(base + day.n_bars - 1, prices[day.n_bars - 1])
    res = eng.end_day()
    out = {"date": res.date, "strategy": cfg.strategy, "capital": res.capital, "start_capital": start_cap,
           "pnl": res.capital - start_cap, "trades": res.trades, "boost": res.boost, "beta": res.beta,
           "mc_status": res.mc_status, "posture": res.posture, "skipped_bars": res.skipped_bars,
           "open_position": eng.position is not None, "bars": day.n_bars, "config_hash": cfg.champion_hash,
           "engine_s": round(time.perf_counter() - t0, 3),
           "exit_reasons": _count(t.reason for t in res.trade_list)}
    return out, {**eng.get_state(include_trades=False), "vol_gate": gate.state()}


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items()))


def append_jsonl(path: Path, record: Mapping[str, Any]) -> Path:
    """Append one JSON line to ``path`` (parents made) and fsync it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def api_url(explicit: str | None = None) -> str:
    """Return the Prefect API URL: ``explicit``, else ``$PREFECT_API_URL``, else the embedded server's."""
    return explicit or os.environ.get("PREFECT_API_URL") or DEFAULT_API_URL


def run_with_api(explicit_url: str | None, call) -> int:
    """Run ``call()`` (a flow) against the Prefect API; print its result; 0 on success, 1 on failure."""
    import logging

    from prefect.settings import PREFECT_API_URL, temporary_settings
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with temporary_settings(updates={PREFECT_API_URL: api_url(explicit_url)}):
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 - the run is Failed in Prefect; say why and exit non-zero
            print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(result, default=str, indent=1, sort_keys=True))
    return 0
