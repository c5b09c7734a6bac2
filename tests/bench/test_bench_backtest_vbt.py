"""Benchmark: the project's replay against vectorbt on the same bars, side by side in one process
(issue 31) → run_logs/bench_backtest_vs_vectorbt.json.

Both read the same synthetic daily Parquet files (3 days × 50 assets of 5-s bars by default) and are
timed end to end, Parquet load included, in alternating runs after one warm-up each (numba caches):

* project: ``run_backtest`` (png off): ACB, the vol gate, every champion layer, the summary JSON and
  HTML report; once with the compiled bar loop (the default) and, for the before figure, with
  ``python_loop=True`` (``step_bar`` on every bar and the streaming gate, as before issue 31);
* vectorbt: ``load_day`` for each file, then ``Portfolio.from_signals`` on the price matrix with the
  same SHORT entry signal on every asset (vel_div < threshold), the champion's take-profit, an exit
  ``max_hold_bars`` after each signal, fees, and the trade count: a simpler strategy than the engine's.

Reported: wall time per run (median, p99 = slowest of few runs), asset-bars/s end to end, and the ratio
project / vectorbt of asset-bars/s (goal ≥ 5). vectorbt is a bench-only dependency (the ``bench``
extra); without it the test is skipped.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import time

import numpy as np
import pytest

from prod.backtest import synth
from prod.backtest.data import list_day_files, load_day
from prod.backtest.runner import BacktestOptions, run_backtest
from prod.configs import BLUE_PATH, load_config
from tests.helpers import REPO_ROOT

DAYS = int(os.environ.get("DOLPHIN_BENCH_VBT_DAYS", "3"))
RUNS = int(os.environ.get("DOLPHIN_BENCH_VBT_RUNS", "9"))
REF_RUNS = int(os.environ.get("DOLPHIN_BENCH_VBT_REF_RUNS", "3"))
OUT = REPO_ROOT / "run_logs" / "bench_backtest_vs_vectorbt.json"
GOAL_RATIO = 5.0
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _project(data, out, python_loop=False):
    t0 = time.perf_counter()
    res = run_backtest(BacktestOptions(config=BLUE_PATH, data=data, summary=out / "s.json", png=False,
                                       python_loop=python_loop), now=NOW)
    return time.perf_counter() - t0, res.summary


def _vectorbt(vbt, pd, data, params):
    t0 = time.perf_counter()
    days = [load_day(d, p) for d, p in list_day_files(data)]
    close = np.concatenate([d.prices for d in days])
    vd = np.concatenate([d.vel_div for d in days])
    idx = pd.to_datetime(np.concatenate([d.timestamp_ns for d in days]), utc=True)
    entries = np.repeat((vd < params.vel_div_threshold)[:, None], close.shape[1], axis=1)
    exits = np.zeros_like(entries)
    exits[params.max_hold_bars:] = entries[:-params.max_hold_bars]
    pf = vbt.Portfolio.from_signals(pd.DataFrame(close, index=idx, columns=days[0].assets),
                                    short_entries=entries, short_exits=exits, tp_stop=params.fixed_tp_pct,
                                    init_cash=params.initial_capital, fees=params.maker_fee)
    trades = int(np.sum(pf.trades.count()))
    return time.perf_counter() - t0, trades


def _stats(walls: list[float], asset_bars: int) -> dict:
    return {"runs": len(walls), "wall_s_median": statistics.median(walls),
            "wall_s_p99": float(np.percentile(walls, 99)), "wall_s_all": walls,
            "asset_bars_per_s_median": asset_bars / statistics.median(walls)}


@pytest.mark.timeout(1800)
def test_bench_backtest_vs_vectorbt(tmp_path):
    vbt = pytest.importorskip("vectorbt", reason="vectorbt is the bench extra: pip install -e '.[bench]'")
    import pandas as pd

    params = load_config(BLUE_PATH).engine
    data = tmp_path / "days"
    synth.generate(data, DAYS, 42)
    load_before = os.getloadavg()
    _project(data, tmp_path)                                  # warm-up: numba cache load, imports
    _vectorbt(vbt, pd, data, params)
    proj, vb, ref = [], [], []
    summary = vtrades = None
    for r in range(RUNS):                                     # interleaved, so load drifts hit both
        w, summary = _project(data, tmp_path)
        proj.append(w)
        w, vtrades = _vectorbt(vbt, pd, data, params)
        vb.append(w)
        if r < REF_RUNS:
            w, ref_summary = _project(data, tmp_path, python_loop=True)
            ref.append(w)
            assert ref_summary["trade_list"] == summary["trade_list"]
    asset_bars = summary["bars"] * 50
    p, v, o = _stats(proj, asset_bars), _stats(vb, asset_bars), _stats(ref, asset_bars)
    ratio = p["asset_bars_per_s_median"] / v["asset_bars_per_s_median"]
    out = {
        "kind": "bench_backtest_vs_vectorbt", "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(),
        "machine": {"cpus": os.cpu_count(), "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
        "bars": summary["bars"], "assets": 50, "days": DAYS, "vectorbt_version": vbt.__version__,
        "project_compiled": {**p, "trades": summary["trades"],
                             "bar_loop_asset_bars_per_s": asset_bars / summary["timing"]["step_bar_s"]},
        "project_python_loop_before": o,
        "vectorbt": {**v, "trades": vtrades},
        "ratio_project_vs_vectorbt": ratio,
        "ratio_per_run": [b / a for a, b in zip(proj, vb)],
        "ratio_python_loop_vs_vectorbt": o["asset_bars_per_s_median"] / v["asset_bars_per_s_median"],
        "speedup_compiled_vs_python_loop": o["wall_s_median"] / p["wall_s_median"],
        "goal_ratio": GOAL_RATIO, "goal_met": ratio >= GOAL_RATIO,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k not in ("ratio_per_run",)}, indent=1)[:4000])
    assert summary["trades"] > 0 and vtrades > 0 and ratio > 0
