"""Benchmark (issue 31): ``scanner.import_klines`` on 43 days × 94 symbols of 1 m klines (goal: ≤ 30 s here, ≥ 10×
the per-scan engine). The input is built from the real BTCUSDT 1 m closes in ``shared/data/real`` widened by the
tests' mixing model (tests/bench/klines_input.py; ``DOLPHIN_SHARED_REAL`` may point at that folder). The per-scan
engine path (today's import before issue 31) and the compiled path both run on the first
``DOLPHIN_BENCH_IMPORT_BASE_DAYS`` (2) days (w750 warm from scan 751) for the scans/s ratio on the same slice.
Writes run_logs/bench_import.json: wall and CPU seconds, scans/s of both paths and their ratio."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from scanner import import_klines as ik
from tests.bench.klines_input import build
from tests.helpers import SHARED_REAL

REPO = Path(__file__).resolve().parents[2]
DAYS = int(os.environ.get("DOLPHIN_BENCH_IMPORT_DAYS", "43"))
SYMBOLS = int(os.environ.get("DOLPHIN_BENCH_IMPORT_SYMBOLS", "94"))
BASE_DAYS = int(os.environ.get("DOLPHIN_BENCH_IMPORT_BASE_DAYS", "2"))
GOAL_S = 30.0


def _real() -> Path:
    env = os.environ.get("DOLPHIN_SHARED_REAL")
    return (Path(env) if env else SHARED_REAL) / "binance_spot_btcusdt_1m"


def _timed(files, out: Path, **kw) -> dict:
    lines: list[str] = []
    c0, w0 = time.process_time(), time.perf_counter()
    s = ik.run(files, out, echo=lambda _: None, note=lines.append, **kw)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"scans": s["rows"], "days": len(s["days"]), "wall_s": wall, "cpu_s": cpu, "scans_per_s": s["rows"] / wall,
            "note": lines[-1]}


@pytest.mark.timeout(3600)
def test_bench_import_klines(tmp_path):
    if not _real().is_dir():
        pytest.skip("shared/data/real not present (set DOLPHIN_SHARED_REAL)")
    src = tmp_path / "klines"
    files = build(src, _real(), days=DAYS, symbols=SYMBOLS)
    fast = _timed([src], tmp_path / "fast")
    base_files = [f for f in files if any(f.name.endswith(f"{d}.csv") for d in
                                          sorted({f.name[-14:-4] for f in files})[:BASE_DAYS])]
    slow = _timed(base_files, tmp_path / "slow", per_scan=True)
    same = _timed(base_files, tmp_path / "same")
    res = {"input": f"{DAYS} days x {SYMBOLS} symbols, 1 m", "compiled": fast, "per_scan_engine": slow,
           "compiled_same_slice": same, "speedup_scans_per_s": same["scans_per_s"] / slow["scans_per_s"],
           "goal_total_s": GOAL_S,
           "meets": fast["wall_s"] <= GOAL_S, "loadavg_1m_after": os.getloadavg()[0],
           "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"import bench: {fast['note']}; per-scan engine: {slow['note']}; speedup {res['speedup_scans_per_s']:.1f}x "
          f"on the same {slow['scans']} scans (load {res['loadavg_1m_after']:.1f})")
    (REPO / "run_logs").mkdir(exist_ok=True)
    (REPO / "run_logs" / "bench_import.json").write_text(json.dumps(res, indent=2, sort_keys=True))
    assert fast["scans"] == DAYS * 1440 and fast["days"] == DAYS
