"""Recorder cost on the decision thread, its writer's throughput and the parity replay speed → run_logs/bench_parity.json.

* ``hot_path``: ``begin_scan`` + two clock reads + ``end_scan`` per scan (what the decision thread pays), µs;
* ``writer``: scans per second the writer thread serialises into ``scans.arrow`` (50-asset scans), from the
  first scan queued to the file closed;
* ``replay``: a recorded episode (warm-up, stress, exits; see tests/integration/test_recorder_parity.py) replayed
  by ``prod.backtest.parity.run_parity``, scans per second, with the parity verdict.
"""
from __future__ import annotations

import datetime as dt
import json
import time

import numpy as np

from prod.backtest import parity
from prod.trading.recording import Recorder
from tests.helpers import REPO_ROOT
from tests.integration.test_recorder_parity import _live_run

OUT = REPO_ROOT / "run_logs" / "bench_parity.json"


def test_bench_parity(tmp_path):
    rec = Recorder.start(tmp_path / "rec", time.time, {"bench": True})
    clock = rec.clock(time.time)
    scan = {"scan_number": 1, "vel_div": -0.01, "assets": [f"A{i}USDT" for i in range(50)],
            "asset_prices": [100.0 + i for i in range(50)]}
    n = 5000
    lat = np.empty(n)
    t_first = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        rec.begin_scan(scan, 1.0)
        clock()
        clock()
        rec.end_scan()
        lat[i] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rec.close({})
    drain = time.perf_counter() - t0
    total = time.perf_counter() - t_first      # the first scan queued → the last one written and the file closed
    assert rec.scans == n and rec.failed is None

    run_dir, _cap = _live_run(tmp_path / "episode")
    t0 = time.perf_counter()
    code, diffs, s = parity.run_parity(run_dir)
    replay_s = time.perf_counter() - t0
    assert code == parity.EXIT_OK, diffs
    out = {"kind": "bench_parity", "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(),
           "hot_path": {"scans": n, "median_us": float(np.median(lat) * 1e6),
                        "p99_us": float(np.percentile(lat, 99) * 1e6)},
           "writer": {"scans": n, "drain_after_loop_s": drain, "total_s": total, "scans_per_s": n / total},
           "replay": {"scans": s["scans"], "events": s["events"], "trades": s["trades"], "wall_s": replay_s,
                      "scans_per_s": s["scans"] / replay_s, "parity": "OK" if code == 0 else "FAILED"}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
