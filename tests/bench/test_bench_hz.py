"""Benchmark of the embedded member with the real client: set+get throughput, entry-listener latency.

Writes run_logs/bench_hz.json. Throughput is measured from 1 and 4 client processes, each running
``set`` then ``get`` on its own keys, both blocking (one request in flight per client) and pipelined
(up to 64 futures in flight per client); ops/s counts set and get separately. Listener latency: one
process writes at 200 events/s, another listens and measures time.monotonic() delivery delay.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import threading
import time

from prod.bus.client import make_client
from prod.settings import REPO_ROOT, load_settings
from tests.helpers import Proc, free_port, port_open, wait_until

CTX = mp.get_context("spawn")
ROUNDS = 5
ROUND_S = 2.0


def _client(port: int):
    return make_client(load_settings(env={}, hz_members=(f"127.0.0.1:{port}",)), cluster_connect_timeout=15.0)


def _throughput_proc(port: int, idx: int, mode: str, barrier, out) -> None:
    c = _client(port)
    m = c.get_map(f"bench{idx}")
    mb = m.blocking()
    value = '{"price": 123.45, "qty": 1.5, "ts": 1700000000.0}'
    mb.set("warm", value)
    rates = []
    for _ in range(ROUNDS):
        barrier.wait(60)
        n, i = 0, 0
        t0 = time.perf_counter()
        end = t0 + ROUND_S
        if mode == "blocking":
            while time.perf_counter() < end:
                k = f"k{i % 1000}"
                mb.set(k, value)
                mb.get(k)
                i += 1
                n += 2
        else:
            while time.perf_counter() < end:
                futs = []
                for _ in range(32):
                    k = f"k{i % 1000}"
                    futs.append(m.set(k, value))
                    futs.append(m.get(k))
                    i += 1
                for f in futs:
                    f.result()
                n += len(futs)
        rates.append(n / (time.perf_counter() - t0))
    out.put(rates)
    c.shutdown()


def _throughput(port: int, clients: int, mode: str) -> dict:
    barrier, out = CTX.Barrier(clients), CTX.Queue()
    procs = [CTX.Process(target=_throughput_proc, args=(port, i, mode, barrier, out)) for i in range(clients)]
    for p in procs:
        p.start()
    per_proc = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    totals = [sum(r[i] for r in per_proc) for i in range(ROUNDS)]
    return {"clients": clients, "mode": mode, "rounds": ROUNDS, "round_s": ROUND_S,
            "total_ops_per_s_median": statistics.median(totals), "total_ops_per_s_min": min(totals),
            "total_ops_per_s_max": max(totals)}


def _listener_proc(port: int, n: int, ready, out) -> None:
    c = _client(port)
    m = c.get_map("bench_lat").blocking()
    lat, done = [], threading.Event()

    def cb(e):
        lat.append(time.monotonic() - float(e.value))
        if len(lat) >= n:
            done.set()
    m.add_entry_listener(include_value=True, added_func=cb, updated_func=cb)
    ready.put(True)
    done.wait(120)
    out.put(lat)
    c.shutdown()


def _latency(port: int, rate: float = 200.0, seconds: float = 10.0) -> dict:
    n = int(rate * seconds)
    ready, out = CTX.Queue(), CTX.Queue()
    p = CTX.Process(target=_listener_proc, args=(port, n, ready, out))
    p.start()
    assert ready.get(timeout=60)
    c = _client(port)
    m = c.get_map("bench_lat")
    t0 = time.monotonic()
    for i in range(n):
        target = t0 + i / rate
        while (now := time.monotonic()) < target:
            time.sleep(min(0.002, target - now))
        m.set(f"s{i % 50}", repr(time.monotonic()))      # fire-and-forget: the write rate stays exact
    lat = sorted(out.get(timeout=120))
    p.join(30)
    c.shutdown()
    q = statistics.quantiles(lat, n=100)
    return {"events": len(lat), "rate_per_s": rate, "p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3,
            "max_ms": lat[-1] * 1e3}


def test_bench_hz(tmp_path):
    port = free_port()
    proc = Proc("standins.hz_member", ["--host", "127.0.0.1", "--port", str(port), "--cluster-name", "dolphin"],
                tmp_path / "hz.log").start()
    try:
        wait_until(lambda: port_open(port), 30, what="hz_member port")
        load_before = os.getloadavg()
        results = {
            "load_avg_before": load_before,
            "throughput": [_throughput(port, 1, "blocking"), _throughput(port, 4, "blocking"),
                           _throughput(port, 1, "pipelined"), _throughput(port, 4, "pipelined")],
            "listener_latency": _latency(port),
            "load_avg_after": os.getloadavg(),
            "cpu_count": os.cpu_count(),
            "ts": time.time(),
        }
    finally:
        proc.stop()
    out = REPO_ROOT / "run_logs" / "bench_hz.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    assert results["listener_latency"]["events"] == 2000
    assert all(t["total_ops_per_s_median"] > 0 for t in results["throughput"])
