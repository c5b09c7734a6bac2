"""Benchmark of the embedded member against a real Hazelcast 5.3.8 member, in one run, with the real client.

Writes run_logs/bench_hz.json. Both members run side by side and every measurement alternates
between them round by round, so load from other jobs on the machine hits both alike. Per member:
set+get round trip (one client, ``set`` then ``get`` of a ~50-byte JSON value, blocking; medians of
the p50/p99 of 5 rounds of 2,000 pairs, after a 2,000-pair warm-up that also warms the JVM),
entry-listener delivery (one process writes at 200 events/s, another listens and measures
time.monotonic() delay; medians of 2 rounds of 500 events), and set+get throughput from 1 and 4
client processes, blocking and pipelined (ops/s counts set and get separately). ``ratio`` = embedded /
real (goal: <= 1.5 for round trip and listener p50/p99). The real member: CP unsafe mode, 512 MB heap.
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


def _round_trip(port: int, rounds: int = ROUNDS, pairs: int = 2000) -> dict:
    c = _client(port)
    m = c.get_map("bench_rt").blocking()
    value = '{"price": 123.45, "qty": 1.5, "ts": 1700000000.0}'
    for i in range(pairs):                                   # warm-up (and JIT of the real member)
        m.set(f"k{i % 100}", value)
        m.get(f"k{i % 100}")
    p50s, p99s, every = [], [], []
    for _ in range(rounds):
        lat = []
        for i in range(pairs):
            k = f"k{i % 100}"
            t0 = time.perf_counter()
            m.set(k, value)
            m.get(k)
            lat.append(time.perf_counter() - t0)
        q = statistics.quantiles(lat, n=100)
        p50s.append(q[49] * 1e3)
        p99s.append(q[98] * 1e3)
        every += lat
    c.shutdown()
    q = statistics.quantiles(every, n=100)
    return {"pairs": len(every), "rounds": rounds, "p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3,
            "round_p50_ms": p50s, "round_p99_ms": p99s}


def _latency(port: int, rate: float = 200.0, seconds: float = 5.0) -> dict:
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


def _merge_rt(parts: list[dict]) -> dict:
    p50 = [x for p in parts for x in p["round_p50_ms"]]
    p99 = [x for p in parts for x in p["round_p99_ms"]]
    return {"pairs": sum(p["pairs"] for p in parts), "rounds": len(p50), "p50_ms": statistics.median(p50),
            "p99_ms": statistics.median(p99), "round_p50_ms": p50, "round_p99_ms": p99}


def _merge_lat(parts: list[dict]) -> dict:
    return {"events": sum(p["events"] for p in parts), "rate_per_s": parts[0]["rate_per_s"],
            "p50_ms": statistics.median(p["p50_ms"] for p in parts),
            "p99_ms": statistics.median(p["p99_ms"] for p in parts), "max_ms": max(p["max_ms"] for p in parts),
            "rounds": parts}


def _measure_interleaved(ports: dict[str, int]) -> dict:
    """Measure every member in alternating rounds, so load from other jobs hits them alike."""
    kinds = list(ports)
    rt: dict = {k: [] for k in kinds}
    lat: dict = {k: [] for k in kinds}
    thr: dict = {k: [] for k in kinds}
    for k in kinds:                                           # warm-up (JIT of the real member)
        _round_trip(ports[k], rounds=1, pairs=2000)
    for _ in range(ROUNDS):
        for k in kinds:
            rt[k].append(_round_trip(ports[k], rounds=1, pairs=2000))
    for _ in range(2):
        for k in kinds:
            lat[k].append(_latency(ports[k], seconds=2.5))
    for clients, mode in ((1, "blocking"), (4, "blocking"), (1, "pipelined"), (4, "pipelined")):
        for k in kinds:
            thr[k].append(_throughput(ports[k], clients, mode))
    return {k: {"round_trip": _merge_rt(rt[k]), "listener_latency": _merge_lat(lat[k]), "throughput": thr[k]}
            for k in kinds}


def test_bench_hz(tmp_path):
    from standins.hz_real.config import RealMemberConfig
    from standins.hz_real.runner import RealMember
    from tests.conftest import real_member_unavailable
    results: dict = {"load_avg_before": os.getloadavg(), "cpu_count": os.cpu_count(), "ts": time.time(),
                     "method": "both members run side by side; measurements alternate between them round by round"}
    port = free_port()
    proc = Proc("standins.hz_member", ["--host", "127.0.0.1", "--port", str(port), "--cluster-name", "dolphin",
                                       "--no-heartbeat"], tmp_path / "hz.log").start()
    reason = real_member_unavailable()
    real = None
    try:
        wait_until(lambda: port_open(port), 30, what="hz_member port")
        ports = {"embedded": port}
        if reason is None:
            real = RealMember(RealMemberConfig(port=free_port()), tmp_path / "real").start(timeout=180)
            ports["real"] = real.cfg.port
        results.update(_measure_interleaved(ports))
    finally:
        proc.stop()
        if real is not None:
            real.stop()
    if reason is None:
        e, r = results["embedded"], results["real"]
        results["ratio_embedded_over_real"] = {
            "round_trip_p50": e["round_trip"]["p50_ms"] / r["round_trip"]["p50_ms"],
            "round_trip_p99": e["round_trip"]["p99_ms"] / r["round_trip"]["p99_ms"],
            "listener_p50": e["listener_latency"]["p50_ms"] / r["listener_latency"]["p50_ms"],
            "listener_p99": e["listener_latency"]["p99_ms"] / r["listener_latency"]["p99_ms"],
            "throughput_median": [te["total_ops_per_s_median"] / tr["total_ops_per_s_median"]
                                  for te, tr in zip(e["throughput"], r["throughput"])],
        }
    else:
        results["real"] = {"skipped": reason}
    results["load_avg_after"] = os.getloadavg()
    out = REPO_ROOT / "run_logs" / "bench_hz.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    for kind in ("embedded", "real"):
        if "skipped" not in results[kind]:
            assert results[kind]["listener_latency"]["events"] == 1000
            assert results[kind]["round_trip"]["pairs"] == ROUNDS * 2000
            assert all(t["total_ops_per_s_median"] > 0 for t in results[kind]["throughput"])
