"""Sweep throughput (issue 32) → run_logs/bench_sweep.json: backtest-days/s of the sweep flow on 1 and 2 local
Dask worker processes, against a real Prefect server.

A 2 × 2 grid (fixed_tp_pct × max_hold_bars) on ``DOLPHIN_BENCH_SWEEP_DAYS`` (4) one-day windows of full
synthetic days (17,280 five-second bars × 50 assets): 16 backtest-days per run. The rate is backtest-days over
the wall time from the first task submitted to the last result (the cluster's start is outside it; each
worker's first task pays its imports and numba's cache load, inside it). ``task_s_median`` is the median time
one backtest takes inside its task. Each worker count runs twice: with the default batching (about four tasks
per worker) and with one cell per task (``batch_1``), which shows the per-task overhead.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import statistics

import pyarrow.parquet as pq
import pytest

from prod.backtest import synth
from prod.configs import BLUE_PATH
from prod.flows import sweep
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.timeout(1800)
DAYS = int(os.environ.get("DOLPHIN_BENCH_SWEEP_DAYS", "4"))
OUT = REPO_ROOT / "run_logs" / "bench_sweep.json"


def test_sweep_throughput_on_1_and_2_workers(prefect_api, tmp_path):
    data = tmp_path / "days"
    synth.generate(data, DAYS, 7)
    spec = sweep.build_spec(BLUE_PATH, data, grid=["fixed_tp_pct=0.008,0.0095", "max_hold_bars=60,120"],
                            window_days=1)
    runs = {}
    for workers, batch in ((1, None), (2, None), (1, 1), (2, 1)):
        res = sweep.run_sweep(spec, tmp_path / f"w{workers}_{batch}" / "s", workers=workers, batch=batch)
        rows = pq.read_table(res["table"]).to_pylist()
        runs[f"workers_{workers}" + ("" if batch is None else f"_batch_{batch}")] = {
            "backtests": res["backtests"], "tasks": res["tasks"], "backtest_days": res["backtest_days"],
            "wall_s": res["wall_s"],
            "backtest_days_per_s": res["backtest_days_per_s"],
            "task_s_median": statistics.median(r["wall_s"] for r in rows), "runner": res["runner"]}
    out = {"kind": "bench_sweep", "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(),
           "grid": "fixed_tp_pct x max_hold_bars = 4 sets", "windows": len(spec.windows),
           "bars_per_day": synth.BARS_PER_DAY, "load_avg": os.getloadavg(), "cpus": os.cpu_count(), **runs}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    assert all(r["backtests"] == 4 * DAYS for k, r in out.items() if k.startswith("workers_"))
