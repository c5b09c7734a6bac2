"""Benchmark of the alpha engine and the backtest replay → run_logs/bench_alpha.json.

Measures (after a warm-up pass, so numba's cached compilation is not counted):
* ``step_bar`` throughput with 50 assets and IRP on, over a synthetic 5-s day (17,280 bars),
  several runs: bars/s median and p99-slowest run, per-bar latency median / p99 (µs);
* the same with every bar carrying an entry signal (vel_div = −0.06: IRP + DC + sizing on every
  flat bar) — the engine's worst case;
* wall time of a 56-day replay of 5-s bars (``run_backtest`` incl. Parquet reading, summary, PNG).
Goal from issue 4: 56-day replay < 30 s, ≥ 50,000 bars/s.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import time

import numpy as np
import pytest

from prod.alpha.engine import NDAlphaEngine
from prod.backtest import synth
from prod.backtest.data import load_day
from prod.backtest.runner import BacktestOptions, run_backtest
from prod.configs import BLUE_PATH, load_config
from tests.helpers import REPO_ROOT

RUNS = int(os.environ.get("DOLPHIN_BENCH_RUNS", "5"))
REPLAY_DAYS = int(os.environ.get("DOLPHIN_BENCH_DAYS", "56"))
OUT = REPO_ROOT / "run_logs" / "bench_alpha.json"


def _day_pass(engine: NDAlphaEngine, day, vd_override: float | None, gbar: int, lat: list[float] | None):
    vd = day.vel_div.tolist() if vd_override is None else [vd_override] * day.n_bars
    v50, v750, prices = day.v50.tolist(), day.v750.tolist(), day.prices
    step = engine.step_bar
    pc = time.perf_counter
    t0 = pc()
    if lat is None:
        for i in range(day.n_bars):
            step(gbar + i, vd[i], prices[i], v50[i], v750[i], i >= 100)
    else:
        for i in range(day.n_bars):
            a = pc()
            step(gbar + i, vd[i], prices[i], v50[i], v750[i], i >= 100)
            lat.append(pc() - a)
    return pc() - t0


def _throughput(day, params, vd_override):
    eng = NDAlphaEngine(params, day.assets)
    eng.begin_day(day.date, "APEX", -1)
    _day_pass(eng, day, vd_override, 0, None)              # warm-up (numba cache load, allocations)
    rates, lat = [], []
    for r in range(RUNS):
        dt_s = _day_pass(eng, day, vd_override, (r + 1) * day.n_bars, lat if r == 0 else None)
        rates.append(day.n_bars / dt_s)
    lat_us = np.asarray(lat) * 1e6
    return {
        "bars_per_run": day.n_bars, "runs": RUNS, "trades": len(eng.trades),
        "bars_per_s_median": statistics.median(rates), "bars_per_s_p99_slowest": float(np.percentile(rates, 1)),
        "bars_per_s_all": rates,
        "latency_us_median": float(np.median(lat_us)), "latency_us_p99": float(np.percentile(lat_us, 99)),
        "latency_us_max": float(lat_us.max()),
    }


@pytest.mark.timeout(1800)
def test_bench_alpha(tmp_path):
    cfg = load_config(BLUE_PATH)
    synth.generate(tmp_path / "one", 1, 42)
    day = load_day("2026-01-01", tmp_path / "one" / "2026-01-01.parquet")
    assert day.n_bars == synth.BARS_PER_DAY and len(day.assets) == 50 and cfg.engine.use_asset_selection

    normal = _throughput(day, cfg.engine, None)
    signal_every_bar = _throughput(day, cfg.engine, -0.06)

    data = tmp_path / "replay"
    t0 = time.perf_counter()
    synth.generate(data, REPLAY_DAYS, 42)
    gen_s = time.perf_counter() - t0
    walls, step_rates = [], []
    summary = None
    for r in range(3):                 # run 0 is cold (imports, file cache); median over all 3
        t0 = time.perf_counter()
        res = run_backtest(BacktestOptions(config=BLUE_PATH, data=data, summary=tmp_path / f"s{r}.json"),
                           dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
        walls.append(time.perf_counter() - t0)
        step_rates.append(res.summary["timing"]["bars_per_s"])
        summary = res.summary
    shutil.rmtree(data, ignore_errors=True)
    bars = summary["bars"]
    out = {
        "kind": "bench_alpha", "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(),
        "machine": {"cpus": os.cpu_count()},
        "step_bar_50_assets_irp_on_synthetic_day": normal,
        "step_bar_50_assets_irp_on_signal_every_bar": signal_every_bar,
        "replay": {
            "days": REPLAY_DAYS, "bars": bars, "runs": len(walls),
            "wall_s_median": statistics.median(walls), "wall_s_all": walls, "wall_s_cold": walls[0],
            "wall_s_warm_min": min(walls[1:]),
            "bars_per_s_end_to_end": bars / statistics.median(walls),
            "step_bar_bars_per_s_median": statistics.median(step_rates),
            "synth_generation_s": gen_s, "trades": summary["trades"], "roi_pct": summary["roi_pct"],
            "goal_wall_s": 30.0, "goal_met": statistics.median(walls) < 30.0,
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "machine"}, indent=1)[:3000])
    assert bars == REPLAY_DAYS * synth.BARS_PER_DAY
    assert normal["bars_per_s_median"] > 0 and summary["trades"] > 0
