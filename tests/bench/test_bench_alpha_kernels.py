"""Micro-benchmark of the alpha kernels and step_bar paths → run_logs/bench_alpha_kernels.json.

Per-call latency (median, p99) of: `select_asset` (IRP ranking + gates, 50 assets × 50 bars),
`check_dc`, and step_bar on its three paths (flat without signal; in position; flat with a
signal, i.e. IRP + DC + sizing).  Numba's cached compilation is warmed up first.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import time

import numpy as np

from prod.alpha.engine import NDAlphaEngine
from prod.alpha.irp import select_asset
from prod.alpha.params import EngineParams
from prod.alpha.signal import check_dc
from tests.helpers import REPO_ROOT

OUT = REPO_ROOT / "run_logs" / "bench_alpha_kernels.json"
N = int(os.environ.get("DOLPHIN_BENCH_CALLS", "20000"))


def _stats(samples_s) -> dict:
    us = np.asarray(samples_s) * 1e6
    return {"calls": len(us), "median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(us.mean())}


def _time_calls(fn, n=N):
    pc = time.perf_counter
    out = []
    for _ in range(n):
        a = pc()
        fn()
        out.append(pc() - a)
    return out


def test_bench_alpha_kernels():
    rng = np.random.default_rng(0)
    n_assets = 50
    w = np.ascontiguousarray(100 * np.exp(np.cumsum(rng.normal(0, 0.001, (50, n_assets)), axis=0)))
    z, ok = np.zeros(n_assets), np.ones(n_assets, np.bool_)
    seg = np.ascontiguousarray(w[-8:, 0])
    select_asset(w, -1, 500.0, 20, 0.2, z, 0.45, ok)
    check_dc(seg, 7, 0.75, -1)
    res = {"select_asset_50x50": _stats(_time_calls(lambda: select_asset(w, -1, 500.0, 20, 0.2, z, 0.45, ok))),
           "check_dc": _stats(_time_calls(lambda: check_dc(seg, 7, 0.75, -1)))}

    assets = [f"A{i:02d}USDT" for i in range(n_assets)]
    bars = N + 300
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, (bars, n_assets)), axis=0))

    def path(vd: float, max_hold: int) -> dict:
        e = NDAlphaEngine(EngineParams(max_hold_bars=max_hold, fixed_tp_pct=0.5), assets)
        e.begin_day("2026-01-01", "APEX", -1)
        for i in range(300):
            e.step_bar(i, 0.0, prices[i])
        pc = time.perf_counter
        lat = []
        for i in range(300, bars):
            a = pc()
            e.step_bar(i, vd, prices[i], 0.0, 0.0, True)
            lat.append(pc() - a)
        return _stats(lat) | {"bars_per_s": len(lat) / sum(lat)}

    res["step_bar_flat_no_signal"] = path(0.0, 120)
    res["step_bar_in_position"] = path(-0.06, 10 ** 6)             # one entry, then held throughout
    e_try = path(-0.06, 1)                                          # enter / exit alternately
    res["step_bar_signal_every_bar_hold_1"] = e_try
    out = {"kind": "bench_alpha_kernels", "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(),
           "cpus": os.cpu_count(), "load_avg": os.getloadavg(), **res}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=1))
    assert res["step_bar_flat_no_signal"]["bars_per_s"] > 50_000
