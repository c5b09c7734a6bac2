"""Benchmark: the preflight's duration against the simulator over loopback (prod/execution/preflight.py).

Writes run_logs/bench_preflight.json: the first run on a fresh account (margin type and leverage set on
all 50 scanner symbols: up to 100 POSTs, 8 in flight) and ``N`` runs after it (the account already
right: the settings are read from one ``GET /fapi/v2/positionRisk``, nothing is sent), each a new REST
client as ``python -m prod.execution preflight`` makes it; median and p99 in ms, the requests sent and the
request weight used (Binance's weights: positionSide/dual and multiAssetsMargin 30 each, commissionRate 20).
The preflight runs once at trader start and again every ``preflight_retry_s`` while it refuses entries,
so this is a start-up cost, not a hot path; no time is asserted beyond "every run passed".
"""
from __future__ import annotations

import asyncio
import json
import time

import numpy as np

from prod.configs import load_blue
from prod.execution import Credentials
from prod.execution.preflight import PreflightConfig, run_preflight
from prod.execution.rest import OrderRestClient
from prod.settings import load_settings
from tests.helpers import REPO_ROOT, running_venue

N = 15     # ~90 request weight per run: 15 runs stay under the 2000/min soft limit (no throttle pause)


async def _once(port: int) -> tuple[float, int, bool, int]:
    settings = load_settings(env={}, venue_rest=f"http://127.0.0.1:{port}", venue_ws=f"ws://127.0.0.1:{port}")
    cfg = PreflightConfig.from_settings(settings, load_blue().engine)
    t0 = time.perf_counter()
    async with OrderRestClient(cfg.rest_base, Credentials("dolphin-sim-key", "dolphin-sim-secret")) as rest:
        r = await run_preflight(rest, cfg)
        used = rest.used_weight            # the venue's X-MBX-USED-WEIGHT-1M after the run
    return (time.perf_counter() - t0) * 1e3, r.requests, r.ok, used


def test_bench_preflight(tmp_path):
    with running_venue(tmp_path, "--start-balance", "100000", "--symbols", "80", "--klines-1s", "0") as (_p, port):
        first_ms, first_req, ok, _w = asyncio.run(_once(port))
        assert ok
        runs = [asyncio.run(_once(port)) for _ in range(N)]
    assert all(r[2] for r in runs)
    ms = np.asarray([r[0] for r in runs])
    steps = [b[3] - a[3] for a, b in zip(runs, runs[1:]) if b[3] > a[3]]     # within one minute of the venue
    result = {"symbols": 50, "first_run_ms": round(first_ms, 1), "first_run_requests": first_req,
              "repeat_runs": N, "repeat_p50_ms": round(float(np.percentile(ms, 50)), 1),
              "repeat_p99_ms": round(float(np.percentile(ms, 99)), 1),
              "repeat_requests": int(np.median([r[1] for r in runs])),
              "repeat_weight": int(np.median(steps)) if steps else None, "note": "loopback, shared 2-core box"}
    out = REPO_ROOT / "run_logs" / "bench_preflight.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
