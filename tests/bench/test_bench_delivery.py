"""Delivery benchmark → run_logs/bench_delivery.json: scan → decision with only the member and the trader running.

The focused half of ``test_bench_mesh.py``: the embedded member (with its snapshot store, as in the mesh) and
the real event trader (paper execution: no venue round trip on the decision thread) as processes, the scans
published from this process the way the mesh bench publishes them (≈ 20 scans/s into ``latest_eigen_scan``),
and the trader's own latency log read back (scan ``timestamp_ns`` → listener → decision). A listener in this
process takes the same scans (publisher → member → listener, no trader), so what the trader adds is visible.
With nothing else of the mesh running, the difference to the mesh bench is what the rest of the mesh and the
host cost; minutes faster to run than the mesh bench, for iterating on the trader and the member. The member's
and the trader's CPU time and run-queue wait (``/proc/<pid>/task/*/schedstat``) over the window say how much of
the tail is waiting for a CPU.
"""
from __future__ import annotations

import json
import math
import os
import random
import statistics
import time
from pathlib import Path

import pytest

from prod.bus import maps
from prod.bus.client import make_client
from prod.settings import PRIORITY_SYMBOLS, REPO_ROOT, load_settings
from tests.helpers import Proc, free_port, start_listening, wait_until

N_WARM = 40
N_SCANS = 600
BASE = 10_000_000


def _pct(vals, q):
    s = sorted(vals)
    return s[min(len(s) - 1, int(q * len(s)))]


def _sched(pid: int) -> tuple[float, float]:
    """(CPU seconds, seconds waiting in the CPU run queue) summed over the threads of ``pid`` (/proc schedstat)."""
    cpu = wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            a = (task / "schedstat").read_text().split()
        except OSError:             # a thread that just ended
            continue
        cpu, wait = cpu + int(a[0]), wait + int(a[1])
    return cpu / 1e9, wait / 1e9


def _stats(vals) -> dict:
    vals = list(vals)
    return {"n": len(vals), "p50": _pct(vals, 0.5), "p99": _pct(vals, 0.99), "max": max(vals),
            "mean": statistics.fmean(vals)}


@pytest.mark.timeout(600)
def test_bench_delivery(tmp_path):
    port = free_port()
    member = start_listening("standins.hz_member", ["--host", "127.0.0.1", "--port", str(port), "--cluster-name",
                                                    "dolphin", "--snapshot-dir", str(tmp_path / "hz_snapshot")],
                             tmp_path / "hz_member.log", port, 60)
    trader = Proc("services.event_trader", ["--hz-members", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data"),
                                            "--run-logs", str(tmp_path / "run_logs"), "--execution", "paper"],
                  tmp_path / "trader.log")
    # no DOLPHIN_* from the caller's shell (a user's venue keys, another mesh's settings)
    trader.env = {**{k: v for k, v in trader.env.items() if not k.startswith("DOLPHIN_")},
                  "DOLPHIN_METRICS_PORT_BASE": "0"}      # no /metrics port (never the defaults 9300+)
    trader.start()
    client = make_client(load_settings(env={}, hz_members=(f"127.0.0.1:{port}",)), name="bench-delivery")
    lat_file = tmp_path / "data" / "trader" / "latency.csv"

    def rows(lo: int):
        if not lat_file.exists():
            return []
        return [r for r in (line.split(",") for line in lat_file.read_text().splitlines()) if int(r[0]) >= lo]

    try:
        hb = client.get_map(maps.HEARTBEAT).blocking()
        wait_until(lambda: hb.get("event_trader") is not None or trader.p.poll() is not None, 120,
                   what="trader heartbeat")
        assert trader.p.poll() is None, trader.log_text()[-3000:]
        fm = client.get_map(maps.FEATURES)
        member_ms: dict[int, float] = {}

        def on_probe(ev) -> None:
            t = time.time_ns()
            d = json.loads(ev.value)
            if d.get("scan_number", 0) >= BASE:
                member_ms[d["scan_number"]] = (t - d["timestamp_ns"]) / 1e6

        fm.add_entry_listener(include_value=True, key=maps.KEY_EIGEN_SCAN, added_func=on_probe,
                              updated_func=on_probe).result()
        rng = random.Random(3)
        prices = {a: 100.0 + i for i, a in enumerate(PRIORITY_SYMBOLS)}

        def publish(sn: int, k: int) -> None:
            for a in prices:
                prices[a] *= math.exp(rng.gauss(0, 0.001))
            vd = -0.06 if k % 50 > 40 else 0.0
            scan = {"scan_number": sn, "timestamp_ns": time.time_ns(), "timestamp": "", "bridge_ts": time.time(),
                    "vel_div": vd, "w50_velocity": vd, "w150_velocity": 0.0, "w300_velocity": 0.0,
                    "w750_velocity": 0.0, "instability_50": 0.0, "instability_150": 0.0,
                    "assets": list(prices), "asset_prices": list(prices.values())}
            fm.set(maps.KEY_EIGEN_SCAN, json.dumps(scan)).result()
            time.sleep(0.05)   # ~20 scans/s: a scan cadence, not a wait for a condition

        # warm-up (the first decision loads the engine's compiled kernels), not measured
        for k in range(N_WARM):
            publish(1 + k, 0)
        wait_until(lambda: len(rows(1)) >= N_WARM - 2, 60, interval=0.5, what="warm-up decisions")
        procs = {"hz_member": member.p.pid, "event_trader": trader.p.pid}
        sched0 = {k: _sched(pid) for k, pid in procs.items()}
        t0 = time.monotonic()
        for k in range(N_SCANS):
            publish(BASE + k, k)
        window = time.monotonic() - t0
        sched1 = {k: _sched(pid) for k, pid in procs.items()}
        wait_until(lambda: len(rows(BASE)) >= N_SCANS - 5, 60, interval=0.5, what="trader latency log")
        br = rows(BASE)
        lats = [float(r[1]) for r in br]
        bus = [float(r[2]) for r in br]
        result = {
            "scan_to_decision_ms": {**_stats(lats), "goal_p99_ms": 5.0,
                                    "source": "member + trader (paper) only, scans published like scan_bridge"},
            "of_which_bus_delivery_ms": _stats(bus),
            "of_which_queue_and_decision_ms": _stats(a - b for a, b in zip(lats, bus)),
            "member_delivery_ms": {**_stats(member_ms.values()),
                                   "note": "publish → member → a listener in the bench process (no trader)"},
            # the processes' CPU time and their threads' time runnable but waiting for a CPU over the window:
            # a run-queue wait much larger than the CPU time means the tail is the host's scheduler
            "run_queue": {k: {"cpu_s": sched1[k][0] - sched0[k][0], "waiting_for_cpu_s": sched1[k][1] - sched0[k][1]}
                          for k in procs} | {"window_s": window},
            "host_load_avg_1m": os.getloadavg()[0],
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        out = REPO_ROOT / "run_logs" / "bench_delivery.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        assert len(lats) >= N_SCANS - 5
        assert trader.p.poll() is None, trader.log_text()[-3000:]
    finally:
        client.shutdown()
        trader.stop()
        member.stop()
